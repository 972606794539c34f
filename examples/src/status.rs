//! `cms-failover status`: where the CMS is active, each store's databases, replication
//! positions and lag, and unfinished journal runs. Read-only.

use failover_core::journal::{JournalEvent, JournalRecord, unfinished_runs};
use failover_core::{
    Backend, DatabaseName, DatabasePosition, DatabaseProbe, InstanceAddr, LocationRecord,
    MirrorRole, Op, Outcome, Position, Store, Topology,
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

/// What a copy is now, from its probe, the location records and the journal (never from
/// the topology file's `[active]` / `[backup]` sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Writable: it serves the CMS databases.
    Active,
    /// Read-only and not fenced by a run: a copy the next failover can move to.
    Standby,
    /// Read-only because a run fenced it (the old principal after a failover), or the
    /// recorded CMS store itself is read-only.
    Fenced,
    /// A database-mirroring mirror (RESTORING): it serves nothing until a mirror failover.
    Mirror,
    /// It did not answer (or refused the login).
    Unreachable,
}

impl Label {
    /// `active`, `standby`, `fenced`, `mirror`, `unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Active => "active",
            Label::Standby => "standby",
            Label::Fenced => "fenced",
            Label::Mirror => "mirror",
            Label::Unreachable => "unreachable",
        }
    }
}

/// Why `status` says the estate is unhealthy; each has its exit code (the most severe
/// problem found decides the exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// A CMS database is writable on two or more copies (split brain): exit 21.
    TwoWritable,
    /// A CMS database is writable nowhere: exit 20.
    NoneWritable,
    /// The journal holds a run that started and never finished: exit 22.
    UnfinishedRun,
    /// The directory (the topology's `[directory]`) and the location records disagree
    /// on where the CMS is: exit 23. Added by the directory check, not by [`gather`].
    DirectoryDisagrees,
    /// An instance of the topology did not answer: exit 24.
    Unreachable,
}

impl ProblemCode {
    /// The `status` exit code of this problem.
    pub fn exit_code(self) -> i32 {
        match self {
            ProblemCode::NoneWritable => EXIT_NONE_WRITABLE,
            ProblemCode::TwoWritable => EXIT_TWO_WRITABLE,
            ProblemCode::UnfinishedRun => EXIT_UNFINISHED_RUN,
            ProblemCode::DirectoryDisagrees => EXIT_DIRECTORY_DISAGREES,
            ProblemCode::Unreachable => EXIT_UNREACHABLE,
        }
    }

    /// The stable code (`none_writable`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::NoneWritable => "none_writable",
            ProblemCode::TwoWritable => "two_writable",
            ProblemCode::UnfinishedRun => "unfinished_run",
            ProblemCode::DirectoryDisagrees => "directory_disagrees",
            ProblemCode::Unreachable => "unreachable",
        }
    }
}

/// `status` exit code: a CMS database is writable nowhere (the CMS is down or fenced).
pub const EXIT_NONE_WRITABLE: i32 = 20;
/// `status` exit code: a CMS database is writable on two copies (split brain).
pub const EXIT_TWO_WRITABLE: i32 = 21;
/// `status` exit code: the journal holds an unfinished run.
pub const EXIT_UNFINISHED_RUN: i32 = 22;
/// `status` exit code: the directory and the location records disagree.
pub const EXIT_DIRECTORY_DISAGREES: i32 = 23;
/// `status` exit code: an instance is unreachable.
pub const EXIT_UNREACHABLE: i32 = 24;

/// One reason the estate is unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub code: ProblemCode,
    /// For people: what, and what to do.
    pub text: String,
}

/// One instance's state.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    /// The instance.
    pub instance: InstanceAddr,
    /// What it is now (from its probe and the records).
    pub label: Label,
    /// Where the topology file lists it: `active principal`, `active mirror`, `backup
    /// principal` or `backup mirror` (the file's sections, not what it is now).
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
    /// Why the estate is unhealthy (empty: healthy).
    pub problems: Vec<Problem>,
}

impl StatusDoc {
    /// Records a problem (also for checks outside this module, such as the directory's).
    pub fn add_problem(&mut self, code: ProblemCode, text: impl Into<String>) {
        self.problems.push(Problem {
            code,
            text: text.into(),
        });
    }

    /// Whether nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// The exit code of `status`: 0 when healthy, else the most severe problem's.
    pub fn exit_code(&self) -> i32 {
        self.problems
            .iter()
            .map(|p| p.code)
            .min()
            .map_or(0, ProblemCode::exit_code)
    }

    /// The status of `instance`, if it is in the topology.
    pub fn instance(&self, instance: &InstanceAddr) -> Option<&InstanceStatus> {
        self.instances.iter().find(|i| &i.instance == instance)
    }
}

/// The instances the last successful run in `journal` set read-only (its fence, or a
/// restore fencing the copies outside the recorded store).
pub fn fenced_by_last_run(journal: &[JournalRecord]) -> Vec<InstanceAddr> {
    let mut per_run: Vec<(String, Vec<InstanceAddr>)> = Vec::new();
    let mut last = Vec::new();
    for r in journal {
        match &r.event {
            JournalEvent::Step { ops, .. } => {
                let fenced = ops.iter().filter_map(|o| match o {
                    Op::SetReadOnly {
                        instance,
                        read_only: true,
                        ..
                    } => Some(instance.clone()),
                    _ => None,
                });
                match per_run.iter_mut().find(|(id, _)| id == &r.run_id) {
                    Some((_, v)) => v.extend(fenced),
                    None => per_run.push((r.run_id.clone(), fenced.collect())),
                }
            }
            JournalEvent::Finished {
                outcome: Outcome::Succeeded { .. },
            } => {
                last = per_run
                    .iter()
                    .find(|(id, _)| id == &r.run_id)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
            }
            _ => {}
        }
    }
    last
}

/// What `i` is now: unreachable, mirror, active (writable), fenced (read-only and fenced by
/// the last run, or in the recorded store) or standby.
fn label_of(i: &InstanceStatus, recorded: Option<&Store>, fenced: &[InstanceAddr]) -> Label {
    if !i.reachable {
        return Label::Unreachable;
    }
    if i.databases.iter().any(|d| d.is_writable()) {
        return Label::Active;
    }
    if !i.databases.is_empty()
        && i.databases.iter().all(|d| {
            d.mirroring
                .as_ref()
                .is_some_and(|m| m.role == MirrorRole::Mirror)
        })
    {
        return Label::Mirror;
    }
    if fenced.contains(&i.instance) || recorded.is_some_and(|s| s.principal == i.instance) {
        Label::Fenced
    } else {
        Label::Standby
    }
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
            label: Label::Unreachable,
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
    mut instances: Vec<InstanceStatus>,
    journal: &[JournalRecord],
) -> StatusDoc {
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    let mut problem = |code: ProblemCode, text: String| problems.push(Problem { code, text });
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
    let recorded = active.as_ref().map(|a| &a.record.active);
    let fenced = fenced_by_last_run(journal);
    for i in &mut instances {
        i.label = label_of(i, recorded, &fenced);
    }
    // Whether the recorded store (or, with no record, the file's active store) is down: then
    // `restore` cannot help and the way out is a disaster recovery to the other pool.
    let home = recorded.unwrap_or(&topology.active);
    let home_down = home.instances().all(|h| {
        instances
            .iter()
            .find(|i| &i.instance == h)
            .is_none_or(|i| !i.reachable)
    });
    let partner = if home == &topology.active {
        &topology.backup
    } else {
        &topology.active
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
            let text = format!(
                "SPLIT BRAIN: {db} is writable on {} instances ({}); run `cms-failover restore`",
                w.len(),
                w.iter()
                    .map(|i| i.instance.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            warnings.push(text.clone());
            problem(ProblemCode::TwoWritable, text);
        }
        if w.is_empty() {
            let text = if home_down {
                format!(
                    "{db} is writable nowhere and the CMS store {home} is unreachable: `restore` cannot help while it is down; if it is lost, run a disaster recovery to the other pool (`cms-failover failover {}`; the operating guide's disaster-recovery section says what follows)",
                    crate::pair::disaster_recovery_flags(partner)
                )
            } else {
                format!(
                    "{db} is writable nowhere: the CMS is down or fenced (`cms-failover restore` puts the recorded store back into service)"
                )
            };
            warnings.push(text.clone());
            problem(ProblemCode::NoneWritable, text);
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
            let text = format!("{} ({}) is unreachable: {e}", i.instance, i.role);
            warnings.push(text.clone());
            problem(ProblemCode::Unreachable, text);
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
        let text = format!(
            "the journal holds an unfinished {} run {} (last step {}): if it is not running any more, run `cms-failover restore`",
            u.mode,
            u.run_id,
            u.last_state.as_deref().unwrap_or("none")
        );
        warnings.push(text.clone());
        problem(ProblemCode::UnfinishedRun, text);
    }
    StatusDoc {
        topology: topology.clone(),
        active,
        instances,
        writable,
        replication,
        unfinished_runs: unfinished,
        warnings,
        problems,
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
        match &m.witness {
            Some(w) => {
                let _ = write!(s, " witness {} {}", w.name, w.state.as_desc());
            }
            None => s.push_str(" no witness"),
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
        let _ = writeln!(
            o,
            "  {:<24} {:<11} (listed as {})",
            i.instance.to_string(),
            i.label.as_str(),
            i.role
        );
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
    match s.exit_code() {
        0 => {
            let _ = writeln!(o, "Health: healthy");
        }
        code => {
            let codes: Vec<&str> = s.problems.iter().map(|p| p.code.as_str()).collect();
            let _ = writeln!(o, "Health: UNHEALTHY ({}; exit {code})", codes.join(", "));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_fake::fixtures;
    use failover_core::DbState;

    fn copy(instance: InstanceAddr, writable: bool, reachable: bool) -> InstanceStatus {
        InstanceStatus {
            label: Label::Unreachable,
            role: String::new(),
            reachable,
            error: (!reachable).then(|| "connection refused".to_string()),
            version: None,
            databases: if reachable {
                fixtures::databases()
                    .into_iter()
                    .map(|name| DatabaseProbe {
                        name,
                        state: DbState::Online,
                        read_only: !writable,
                        in_standby: false,
                        mirroring: None,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            location: None,
            positions: Vec::new(),
            instance,
        }
    }

    fn codes(s: &StatusDoc) -> Vec<ProblemCode> {
        s.problems.iter().map(|p| p.code).collect()
    }

    #[test]
    fn health_and_labels() {
        let t = fixtures::build(&fixtures::Options::default()).topology;
        let (a, b) = (fixtures::active(), fixtures::backup());

        let s = build(
            &t,
            vec![copy(a.clone(), true, true), copy(b.clone(), false, true)],
            &[],
        );
        assert_eq!((s.exit_code(), s.healthy()), (0, true));
        assert_eq!(s.instance(&a).unwrap().label, Label::Active);
        assert_eq!(s.instance(&b).unwrap().label, Label::Standby);

        // Two writable copies: split brain, the most severe (21).
        let s = build(
            &t,
            vec![copy(a.clone(), true, true), copy(b.clone(), true, true)],
            &[],
        );
        assert!(codes(&s).contains(&ProblemCode::TwoWritable));
        assert_eq!(s.exit_code(), EXIT_TWO_WRITABLE);

        // The source dead: writable nowhere (20) and unreachable (24); no `restore` advice.
        let s = build(
            &t,
            vec![copy(a.clone(), true, false), copy(b.clone(), false, true)],
            &[],
        );
        assert_eq!(
            codes(&s),
            [
                ProblemCode::NoneWritable,
                ProblemCode::NoneWritable,
                ProblemCode::Unreachable
            ]
        );
        assert_eq!(s.exit_code(), EXIT_NONE_WRITABLE);
        assert_eq!(s.instance(&a).unwrap().label, Label::Unreachable);
        let none = &s.problems[0].text;
        assert!(
            none.contains("`restore` cannot help") && none.contains("--force"),
            "{none}"
        );

        // Only an instance unreachable (a standby): 24.
        let s = build(
            &t,
            vec![copy(a.clone(), true, true), copy(b.clone(), false, false)],
            &[],
        );
        assert_eq!(s.exit_code(), EXIT_UNREACHABLE);

        // The hook for the directory check.
        let mut s = build(&t, vec![copy(a, true, true), copy(b, false, true)], &[]);
        s.add_problem(ProblemCode::DirectoryDisagrees, "the directory names sql-b");
        assert_eq!(s.exit_code(), EXIT_DIRECTORY_DISAGREES);
    }
}
