//! The database-mirroring witness, for people: what the partners report
//! (`mirroring_witness_name`, `mirroring_witness_state_desc`) and what it means for a run.
//!
//! A disaster recovery that forces a mirror (`SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS`)
//! needs "WITNESS is set to OFF or is connected to the mirror server", otherwise 1455
//! (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/force-service-in-a-database-mirroring-session-transact-sql>).
//! The core refuses a DISCONNECTED witness and warns of an UNKNOWN one; these lines say
//! which case the run is in.

use crate::status::StatusDoc;
use failover_core::driver::RunReport;
use failover_core::machine::StateName;
use failover_core::{DatabaseName, DatabaseProbe, InstanceAddr, Mode, WitnessInfo, WitnessState};

/// Each instance's CMS databases, as probed.
pub type Probes<'a> = Vec<(&'a InstanceAddr, &'a [DatabaseProbe])>;

/// The probes a what-if read (its last probe of each instance: nothing changed).
pub fn of_run(r: &RunReport) -> Probes<'_> {
    r.final_state
        .iter()
        .filter_map(|(i, p)| p.as_ref().ok().map(|p| (i, p.databases.as_slice())))
        .collect()
}

/// The probes of a status document.
pub fn of_status(s: &StatusDoc) -> Probes<'_> {
    s.instances
        .iter()
        .filter(|i| i.reachable)
        .map(|i| (&i.instance, i.databases.as_slice()))
        .collect()
}

/// The mirror the run forces (its `ForcingMirror` step), if any.
fn forced_mirror(r: &RunReport) -> Option<&InstanceAddr> {
    r.steps
        .iter()
        .filter(|s| s.state == StateName::ForcingMirror)
        .flat_map(|s| &s.ops)
        .find_map(|o| o.op.instance())
}

/// The witness of `d` as its instance reports it (`None`: not mirrored or no witness).
fn witness_of(d: &DatabaseProbe) -> Option<&WitnessInfo> {
    d.mirroring.as_ref().and_then(|m| m.witness.as_ref())
}

/// `witness W CONNECTED` / `no witness` per group of databases with the same answer.
fn groups<'a>(
    dbs: &'a [DatabaseProbe],
    wanted: &[DatabaseName],
) -> Vec<(Option<&'a WitnessInfo>, Vec<&'a str>)> {
    let mut out: Vec<(Option<&WitnessInfo>, Vec<&str>)> = Vec::new();
    for d in dbs
        .iter()
        .filter(|d| wanted.contains(&d.name) && d.mirroring.is_some())
    {
        let w = witness_of(d);
        match out.iter_mut().find(|(x, _)| *x == w) {
            Some((_, names)) => names.push(d.name.as_str()),
            None => out.push((w, vec![d.name.as_str()])),
        }
    }
    out
}

/// For a disaster recovery that forces a mirror: the witness that mirror reports and what
/// it means for `FORCE_SERVICE_ALLOW_DATA_LOSS`. Otherwise one line naming each witness
/// and its state as each partner reports it; nothing when no session has a witness.
pub fn lines(r: &RunReport, probes: &Probes<'_>) -> Vec<String> {
    let dbs = &r.topology.databases;
    if let (Mode::DisasterRecovery { .. }, Some(m)) = (&r.mode, forced_mirror(r)) {
        let Some((_, on_mirror)) = probes.iter().find(|(i, _)| *i == m) else {
            return Vec::new();
        };
        let g = groups(on_mirror, dbs);
        let single = g.len() == 1;
        return g
            .into_iter()
            .map(|(w, names)| {
                let which = if single {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                };
                let meaning = match w.map(|w| w.state) {
                    None | Some(WitnessState::Connected) => {
                        "FORCE_SERVICE_ALLOW_DATA_LOSS is allowed"
                    }
                    Some(WitnessState::Unknown) => {
                        "the force may be refused with 1455 (see the warning)"
                    }
                    Some(WitnessState::Disconnected) => {
                        "the force would be refused with 1455 (see the refusal)"
                    }
                };
                match w {
                    None => format!("Witness{which}: none on the mirror {m}: {meaning}"),
                    Some(w) => format!(
                        "Witness{which}: {} {} on the mirror {m}: {meaning}",
                        w.name,
                        w.state.as_desc()
                    ),
                }
            })
            .collect();
    }
    // Not forcing: one informative line, each witness with what each partner reports.
    let mut seen: Vec<(&str, Vec<String>)> = Vec::new();
    for (i, on) in probes {
        for (w, _) in groups(on, dbs) {
            let Some(w) = w else { continue };
            let entry = format!("{} on {i}", w.state.as_desc());
            match seen.iter_mut().find(|(n, _)| *n == w.name) {
                Some((_, v)) if v.contains(&entry) => {}
                Some((_, v)) => v.push(entry),
                None => seen.push((w.name.as_str(), vec![entry])),
            }
        }
    }
    if seen.is_empty() {
        return Vec::new();
    }
    let text: Vec<String> = seen
        .into_iter()
        .map(|(n, v)| format!("{n} ({})", v.join(", ")))
        .collect();
    vec![format!("Witness: {}", text.join("; "))]
}

/// The witness lines of a report: from the status read before the run, or (a what-if,
/// which changes nothing) from the run's own probes.
pub fn report_lines(r: &RunReport, before: Option<&StatusDoc>) -> Vec<String> {
    match before {
        Some(s) => lines(r, &of_status(s)),
        None if r.what_if => lines(r, &of_run(r)),
        None => Vec::new(),
    }
}
