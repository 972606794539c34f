//! `cms-failover status`: where the CMS is active, each store's databases, replication
//! positions and lag, and unfinished journal runs. Read-only.

use failover_core::journal::{JournalRecord, unfinished_runs};
use failover_core::{
    Backend, DatabaseName, DatabasePosition, DatabaseProbe, InstanceAddr, LocationRecord,
    MirrorRole, Position, Topology,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// The CMS's active location: the record with the highest epoch found on any instance.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveLocation {
    /// The record.
    pub record: LocationRecord,
    /// The instances that hold this record.
    pub recorded_on: Vec<InstanceAddr>,
}

/// One instance's state.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    /// The instance.
    pub instance: InstanceAddr,
    /// `active principal`, `active mirror`, `backup principal` or `backup mirror`.
    pub role: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// `@@VERSION`.
    pub version: Option<String>,
    /// Its CMS databases.
    pub databases: Vec<DatabaseProbe>,
    /// The location record it holds.
    pub location: Option<LocationRecord>,
    /// The databases' change positions.
    pub positions: Vec<DatabasePosition>,
}

/// Replication of one database from the writable copy to a standby copy.
#[derive(Debug, Clone, Serialize)]
pub struct LagRow {
    /// The database.
    pub database: DatabaseName,
    /// The writable copy.
    pub source: InstanceAddr,
    /// Its position.
    pub source_position: Option<u128>,
    /// The standby copy.
    pub target: InstanceAddr,
    /// Its position.
    pub target_position: Option<u128>,
    /// `source - target`, when both are known.
    pub lag: Option<u64>,
}

/// A run the journal says started and never finished.
#[derive(Debug, Clone, Serialize)]
pub struct UnfinishedSummary {
    /// Its id.
    pub run_id: String,
    /// Its mode.
    pub mode: String,
    /// The last step it started.
    pub last_state: Option<String>,
    /// Whether it had fenced the source.
    pub fenced: bool,
    /// Whether it had started recording the new location.
    pub recording: bool,
}

/// Everything `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    /// The topology.
    pub topology: Topology,
    /// Where the CMS is active (highest epoch), if any instance holds a record.
    pub active: Option<ActiveLocation>,
    /// Per instance.
    pub instances: Vec<InstanceStatus>,
    /// Writable copies per database (more than one is a split brain).
    pub writable: Vec<(DatabaseName, Vec<InstanceAddr>)>,
    /// Replication lag from the writable copy to every standby copy.
    pub replication: Vec<LagRow>,
    /// Unfinished journal runs.
    pub unfinished_runs: Vec<UnfinishedSummary>,
    /// Anything that needs attention.
    pub warnings: Vec<String>,
}

fn role_of(t: &Topology, i: &InstanceAddr) -> String {
    let store = if t.active.contains(i) {
        "active"
    } else {
        "backup"
    };
    let s = t.store_of(i).expect("instance of the topology");
    let part = if &s.principal == i {
        "principal"
    } else {
        "mirror"
    };
    format!("{store} {part}")
}

/// Reads the status of every instance of `topology` (probe, positions, location record;
/// read-only), and the unfinished runs in `journal`.
pub async fn gather(
    backend: &dyn Backend,
    topology: &Topology,
    journal: &[JournalRecord],
    timeout: Duration,
) -> StatusDoc {
    let probes = failover_core::driver::probe_all(backend, topology, timeout).await;
    let mut instances = Vec::new();
    for (addr, probe) in probes {
        let mut st = InstanceStatus {
            role: role_of(topology, &addr),
            instance: addr.clone(),
            reachable: false,
            error: None,
            version: None,
            databases: Vec::new(),
            location: None,
            positions: Vec::new(),
        };
        match probe {
            Ok(p) => {
                st.reachable = true;
                st.version = Some(p.version.clone());
                st.databases = p.databases;
                if let Ok(Ok(loc)) =
                    tokio::time::timeout(timeout, backend.read_location(&addr)).await
                {
                    st.location = loc;
                }
                let serving: Vec<DatabaseName> = st
                    .databases
                    .iter()
                    .filter(|d| {
                        d.mirroring
                            .as_ref()
                            .is_none_or(|m| m.role == MirrorRole::Principal)
                    })
                    .map(|d| d.name.clone())
                    .collect();
                if !serving.is_empty()
                    && let Ok(Ok(pos)) =
                        tokio::time::timeout(timeout, backend.positions(&addr, &serving)).await
                {
                    st.positions = pos;
                }
            }
            Err(e) => st.error = Some(e.to_string()),
        }
        instances.push(st);
    }
    build(topology, instances, journal)
}

fn build(
    topology: &Topology,
    instances: Vec<InstanceStatus>,
    journal: &[JournalRecord],
) -> StatusDoc {
    let mut warnings = Vec::new();
    // The one rule of the core: the highest epoch wins; different stores at that epoch are
    // a tie the operator must resolve.
    let records = instances.iter().filter_map(|i| i.location.as_ref());
    let active = match failover_core::location::winning_record(records) {
        Ok(Some(record)) => Some(ActiveLocation {
            record: record.clone(),
            recorded_on: instances
                .iter()
                .filter(|i| i.location.as_ref() == Some(record))
                .map(|i| i.instance.clone())
                .collect(),
        }),
        Ok(None) => {
            warnings.push("no instance holds a location record (or none could be reached)".into());
            None
        }
        Err(tie) => {
            warnings.push(tie.to_string());
            None
        }
    };

    let mut writable = Vec::new();
    let mut replication = Vec::new();
    let pos_of = |i: &InstanceStatus, db: &DatabaseName| {
        i.positions
            .iter()
            .find(|p| &p.database == db)
            .and_then(|p| p.position.map(|p| p.0))
    };
    for db in &topology.databases {
        let w: Vec<&InstanceStatus> = instances
            .iter()
            .filter(|i| i.databases.iter().any(|d| &d.name == db && d.is_writable()))
            .collect();
        if w.len() > 1 {
            warnings.push(format!(
                "SPLIT BRAIN: {db} is writable on {} instances ({}); run `cms-failover restore`",
                w.len(),
                w.iter()
                    .map(|i| i.instance.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if w.is_empty() {
            warnings.push(format!(
                "{db} is writable nowhere: the CMS is down or fenced (`cms-failover restore` puts the recorded store back into service)"
            ));
        }
        writable.push((db.clone(), w.iter().map(|i| i.instance.clone()).collect()));
        if let Some(src) = w.first() {
            let src_store = topology.store_of(&src.instance);
            for t in &instances {
                if Some(&t.instance) == Some(&src.instance)
                    || topology.store_of(&t.instance) == src_store
                {
                    continue;
                }
                let Some(d) = t.databases.iter().find(|d| &d.name == db) else {
                    continue;
                };
                if d.mirroring
                    .as_ref()
                    .is_some_and(|m| m.role == MirrorRole::Mirror)
                {
                    continue;
                }
                let sp = pos_of(src, db);
                let tp = pos_of(t, db);
                replication.push(LagRow {
                    database: db.clone(),
                    source: src.instance.clone(),
                    source_position: sp,
                    target: t.instance.clone(),
                    target_position: tp,
                    lag: sp.zip(tp).map(|(s, t)| Position(t).lag_behind(Position(s))),
                });
            }
        }
    }
    for i in &instances {
        if let Some(e) = &i.error {
            warnings.push(format!("{} ({}) is unreachable: {e}", i.instance, i.role));
        }
    }
    let unfinished: Vec<UnfinishedSummary> = unfinished_runs(journal)
        .into_iter()
        .map(|u| UnfinishedSummary {
            run_id: u.run_id,
            mode: u.request.mode.to_string(),
            last_state: u.last_state.map(|s| s.as_str().to_string()),
            fenced: u.fenced,
            recording: u.recording,
        })
        .collect();
    for u in &unfinished {
        warnings.push(format!(
            "the journal holds an unfinished {} run {} (last step {}): if it is not running any more, run `cms-failover restore`",
            u.mode,
            u.run_id,
            u.last_state.as_deref().unwrap_or("none")
        ));
    }
    StatusDoc {
        topology: topology.clone(),
        active,
        instances,
        writable,
        replication,
        unfinished_runs: unfinished,
        warnings,
    }
}

fn db_line(d: &DatabaseProbe) -> String {
    let mut s = format!(
        "{} {}{}",
        d.name,
        d.state,
        if d.read_only {
            " READ_ONLY"
        } else {
            " READ_WRITE"
        }
    );
    if d.in_standby {
        s.push_str(" STANDBY (promoted with RESTORE … WITH RECOVERY)");
    }
    if let Some(m) = &d.mirroring {
        let role = match m.role {
            MirrorRole::Principal => "PRINCIPAL",
            MirrorRole::Mirror => "MIRROR",
        };
        let _ = write!(s, " mirroring {role} {}", m.state.as_desc());
        if let Some(p) = &m.partner {
            let _ = write!(s, " (partner {p})");
        }
    }
    if d.is_writable() {
        s.push_str("  <- writable");
    }
    s
}

/// The status as text for people.
pub fn render_text(s: &StatusDoc) -> String {
    let mut o = String::new();
    match &s.active {
        Some(a) => {
            let _ = writeln!(
                o,
                "CMS active on: {} (epoch {}, run {}; recorded on {})",
                a.record.active,
                a.record.epoch,
                a.record.run_id,
                a.recorded_on
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        None => {
            let _ = writeln!(o, "CMS active on: unknown (no location record found)");
        }
    }
    for i in &s.instances {
        let _ = writeln!(o, "  {} [{}]", i.instance, i.role);
        if !i.reachable {
            let _ = writeln!(
                o,
                "      unreachable: {}",
                i.error.as_deref().unwrap_or("?")
            );
            continue;
        }
        for d in &i.databases {
            let pos = i
                .positions
                .iter()
                .find(|p| p.database == d.name)
                .and_then(|p| p.position)
                .map(|p| format!(" @{p}"))
                .unwrap_or_default();
            let _ = writeln!(o, "      {}{pos}", db_line(d));
        }
    }
    if !s.replication.is_empty() {
        let _ = writeln!(o, "Replication:");
        for r in &s.replication {
            let f = |v: Option<u128>| v.map_or("?".to_string(), |v| v.to_string());
            let _ = writeln!(
                o,
                "  {}: {} @{} -> {} @{}  lag {}",
                r.database,
                r.source,
                f(r.source_position),
                r.target,
                f(r.target_position),
                f(r.lag.map(u128::from))
            );
        }
    }
    if s.unfinished_runs.is_empty() {
        let _ = writeln!(o, "Journal: no unfinished run");
    }
    for w in &s.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}
