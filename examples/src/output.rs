//! Text output for people: the numbered what-if plan and the result summary.

use crate::report::{Lags, WaitLag, format_ms, next_step};
use crate::style::{Tone, paint};
use failover_core::driver::StepRecord;
use failover_core::machine::{DcValue, StateName};
use failover_core::{BackendError, ErrorKind, Mode, Outcome, RunReport, Topology};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Failures the run expects and reports once with a count instead of one line each: in
/// disaster recovery, the old source store (principal and mirror) being unreachable or
/// timing out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedFailures {
    /// The instances whose unreachability is expected.
    pub instances: Vec<String>,
}

impl ExpectedFailures {
    /// What `mode` over `topology` expects.
    pub fn of(mode: &Mode, topology: &Topology) -> Self {
        match mode {
            Mode::DisasterRecovery { .. } => Self {
                instances: topology.active.instances().map(|i| i.to_string()).collect(),
            },
            _ => Self::default(),
        }
    }

    /// Whether `e` is one of them.
    pub fn covers(&self, e: &BackendError) -> bool {
        matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout)
            && self.instances.contains(&e.instance)
    }
}

fn header(r: &RunReport, o: &mut String) {
    let _ = writeln!(o, "{}{}", if r.what_if { "What-if: " } else { "" }, what(r));
    facts(r, o);
    let _ = writeln!(o, "  backend:   {}   run id: {}", r.backend, r.run_id);
}

fn what(r: &RunReport) -> &'static str {
    match &r.mode {
        Mode::Planned => "planned failover",
        Mode::DisasterRecovery { .. } => {
            "disaster-recovery failover (--force: replication is not waited for)"
        }
        Mode::Restore => "restore",
    }
}

/// From, to and the databases.
fn facts(r: &RunReport, o: &mut String) {
    let t = &r.topology;
    match &r.mode {
        Mode::Planned => {
            let _ = writeln!(o, "  from:      {}", t.active);
            let _ = writeln!(o, "  to:        {}", t.backup);
        }
        Mode::DisasterRecovery { target } => {
            let _ = writeln!(o, "  from:      {}", t.active);
            let _ = writeln!(o, "  to:        {target}");
        }
        // A restore's plan (and result) names the recorded store it puts back into service.
        Mode::Restore => match &r.outcome {
            Outcome::Succeeded { active, .. } => {
                let _ = writeln!(o, "  store:     {active} (the recorded CMS store)");
            }
            _ => {
                let _ = writeln!(o, "  store:     the recorded CMS store");
            }
        },
    }
    let dbs: Vec<_> = t.databases.iter().map(|d| d.as_str()).collect();
    let _ = writeln!(o, "  databases: {}", dbs.join(", "));
}

fn data_loss(r: &RunReport, o: &mut String) {
    if let Some(dl) = &r.data_loss {
        let _ = writeln!(o, "Data-loss estimate:");
        for d in dl {
            let _ = writeln!(o, "  {d}");
        }
    }
}

fn warnings(r: &RunReport, o: &mut String, colour: bool) {
    for w in &r.warnings {
        let _ = writeln!(o, "{} {w}", paint("warning:", Tone::Warn, colour));
    }
}

/// The plan as a numbered list: each step, its precondition, what it changes, the SQL it
/// would run; then what would block it right now and the data-loss estimate.
pub fn render_plan(r: &RunReport) -> String {
    let mut o = String::new();
    header(r, &mut o);
    if r.what_if {
        let _ = writeln!(o, "Nothing was changed.");
    }
    let plan = r.plan();
    let _ = writeln!(o);
    if plan.is_empty() {
        let _ = writeln!(o, "Plan: no step would change anything.");
    } else {
        let _ = writeln!(o, "Plan ({} steps that change something):", plan.len());
    }
    for (n, s) in plan.iter().enumerate() {
        let _ = writeln!(o, "{:>2}. {} — {}", n + 1, s.state, s.description);
        let _ = writeln!(o, "    precondition: {}", s.precondition);
        let _ = writeln!(o, "    changes:      {}", s.changes);
        for op in s.ops.iter().filter(|op| op.op.is_mutating()) {
            let _ = writeln!(o, "    - {}", op.summary);
            for sql in &op.sql {
                for line in sql.lines() {
                    let _ = writeln!(o, "        {line}");
                }
            }
        }
    }
    let _ = writeln!(o);
    if r.blockers.is_empty() {
        let _ = writeln!(o, "Nothing blocks this plan right now.");
    } else {
        let _ = writeln!(o, "Blocks it right now:");
        for b in &r.blockers {
            let _ = writeln!(o, "  x {b}");
        }
    }
    if let failover_core::Outcome::Refused { refusal } = &r.outcome
        && !r.blockers.contains(&refusal.to_string())
        && r.what_if
    {
        let _ = writeln!(o, "  x {refusal}");
    }
    for line in crate::witness::lines(r, &crate::witness::of_run(r)) {
        let _ = writeln!(o, "{line}");
    }
    data_loss(r, &mut o);
    warnings(r, &mut o, false);
    o
}

/// The short restatement shown before the confirmation prompt: what will happen, from →
/// to, the databases and (disaster recovery) the data-loss estimate. The full plan with its
/// SQL is `--what-if` (or `--confirm`).
pub fn restatement(plan: &RunReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "About to run a {}:", what(plan));
    facts(plan, &mut o);
    let steps: Vec<String> = plan.plan().iter().map(|s| s.state.to_string()).collect();
    if !steps.is_empty() {
        let _ = writeln!(o, "  changes:   {}", steps.join(" → "));
    }
    if matches!(plan.mode, Mode::DisasterRecovery { .. }) {
        for line in crate::witness::lines(plan, &crate::witness::of_run(plan)) {
            let _ = writeln!(o, "{line}");
        }
        match &plan.data_loss {
            Some(_) => data_loss(plan, &mut o),
            None => {
                let _ = writeln!(
                    o,
                    "Data-loss estimate: unknown (the source could not be read)"
                );
            }
        }
    }
    o
}

/// One line of the summary: a step, or a run of polls of one wait collapsed into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// The state (the waiting state for a collapsed wait).
    pub state: StateName,
    /// `Preflight (again, under the lock)` for the second preflight, else the state name.
    pub label: String,
    /// How many polls (1 for a plain step).
    pub polls: usize,
    /// When it started, ms into the run.
    pub started_ms: u64,
    /// Wall time from the step's (first poll's) start to the next step's start, ms.
    pub elapsed_ms: u64,
    /// Whether it is a wait (polls and pauses).
    pub wait: bool,
}

/// The wait a polling or pause state belongs to (`AwaitingReplication`, `AwaitingCatchUp`,
/// `AwaitingDirectory`, `AwaitingPrincipal`).
pub fn wait_of(s: StateName) -> Option<StateName> {
    match s {
        StateName::AwaitingDirectory | StateName::DirectoryPause => {
            Some(StateName::AwaitingDirectory)
        }
        StateName::AwaitingReplication | StateName::ReplicationPause => {
            Some(StateName::AwaitingReplication)
        }
        StateName::AwaitingCatchUp | StateName::CatchUpPause => Some(StateName::AwaitingCatchUp),
        StateName::AwaitingPrincipal | StateName::PrincipalPause => {
            Some(StateName::AwaitingPrincipal)
        }
        _ => None,
    }
}

/// The run's steps as summary rows: consecutive polls and pauses of a wait collapsed into
/// one row; each row's time runs to the start of the next (so waits count in full).
pub fn summary_rows(r: &RunReport) -> Vec<SummaryRow> {
    let end_ms = r.duration_us / 1000;
    let mut rows: Vec<SummaryRow> = Vec::new();
    let mut starts: Vec<u64> = Vec::new();
    let mut preflights = 0;
    for s in &r.steps {
        let wait = wait_of(s.state);
        if let (Some(w), Some(last)) = (wait, rows.last_mut())
            && last.wait
            && last.state == w
        {
            if s.state == w {
                last.polls += 1;
            }
            continue;
        }
        let label = if s.state == StateName::Preflight {
            preflights += 1;
            if preflights > 1 {
                "Preflight (again, under the lock)".to_string()
            } else {
                s.state.to_string()
            }
        } else {
            wait.unwrap_or(s.state).to_string()
        };
        rows.push(SummaryRow {
            state: wait.unwrap_or(s.state),
            label,
            polls: usize::from(wait.is_none_or(|w| w == s.state)),
            started_ms: s.started_ms,
            elapsed_ms: s.duration_ms,
            wait: wait.is_some(),
        });
        starts.push(s.started_ms);
    }
    for (i, row) in rows.iter_mut().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(end_ms.max(starts[i]));
        row.elapsed_ms = row.elapsed_ms.max(next.saturating_sub(starts[i]));
    }
    rows
}

fn step_ran(s: &StepRecord) -> bool {
    s.ops.iter().any(|o| o.attempts > 0)
}

fn outcome_tone(o: &Outcome) -> Tone {
    match o {
        Outcome::Succeeded { .. } => Tone::Good,
        Outcome::Refused { .. } | Outcome::Cancelled { .. } => Tone::Warn,
        Outcome::RolledBack { .. } | Outcome::NeedsRestore { .. } => Tone::Bad,
    }
}

/// The result of a run (not what-if): the outcome (coloured when `colour`), the total time
/// and the time spent waiting, the window, one row per step with polls collapsed (lags from
/// `lags`), expected failures once with a count, retries, warnings and what to do next.
pub fn render_result(r: &RunReport, colour: bool, lags: &Lags) -> String {
    let mut o = String::new();
    header(r, &mut o);
    let _ = writeln!(o);
    let result = format!("Result: {}", r.outcome);
    let _ = writeln!(o, "{}", paint(&result, outcome_tone(&r.outcome), colour));
    let rows = summary_rows(r);
    let waited: u64 = rows.iter().filter(|w| w.wait).map(|w| w.elapsed_ms).sum();
    let total = r.duration_us / 1000;
    if waited > 0 {
        let _ = writeln!(
            o,
            "Time: {} in all, {} of it waiting for replication",
            format_ms(total),
            format_ms(waited)
        );
    } else {
        let _ = writeln!(o, "Time: {} in all", format_ms(total));
    }
    // A disaster recovery's outage began when the source died, not at the fence: the
    // window is not shown for it (the outage is, by the caller).
    if let Some(w) = r
        .window
        .as_ref()
        .filter(|_| !matches!(r.mode, Mode::DisasterRecovery { .. }))
    {
        let _ = writeln!(
            o,
            "Write-unavailability window (fence -> new store writable): {}",
            format_ms(w.duration_us / 1000)
        );
    }
    let ran: Vec<&StepRecord> = r.steps.iter().filter(|s| step_ran(s)).collect();
    if !ran.is_empty() {
        let _ = writeln!(o, "Steps:");
        for row in &rows {
            if row.wait {
                let lag = match lags.get(&row.state) {
                    Some(WaitLag {
                        first: Some(a),
                        caught_up: true,
                        ..
                    }) => format!(", lag {a} → caught up"),
                    Some(WaitLag {
                        first: Some(a),
                        last: Some(b),
                        ..
                    }) => format!(", lag {a} → {b}"),
                    _ => String::new(),
                };
                let polls = if row.polls == 1 { "poll" } else { "polls" };
                let _ = writeln!(
                    o,
                    "  {}: {} {polls}, {}{lag}",
                    row.label,
                    row.polls,
                    format_ms(row.elapsed_ms)
                );
            } else {
                let _ = writeln!(o, "  {:<36} {}", row.label, format_ms(row.elapsed_ms));
            }
        }
    }
    let expected = ExpectedFailures::of(&r.mode, &r.topology);
    let errors = r
        .steps
        .iter()
        .flat_map(|s| &s.ops)
        .flat_map(|op| op.retried_errors.iter().chain(op.error.iter()));
    let mut unexpected_retries = 0usize;
    let mut expected_by_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for e in errors {
        if expected.covers(e) {
            *expected_by_instance.entry(e.instance.as_str()).or_default() += 1;
        }
    }
    for op in r.steps.iter().flat_map(|s| &s.ops) {
        unexpected_retries += op
            .retried_errors
            .iter()
            .filter(|e| !expected.covers(e))
            .count();
    }
    for (instance, n) in &expected_by_instance {
        let _ = writeln!(
            o,
            "Source unreachable, as expected in disaster recovery: {n} failed call(s) on {instance}"
        );
    }
    if unexpected_retries > 0 {
        let _ = writeln!(o, "Retried calls: {unexpected_retries}");
    }
    data_loss(r, &mut o);
    directory(r, &mut o);
    warnings(r, &mut o, colour);
    let _ = writeln!(o, "Next: {}", next_step(&r.outcome, r.what_if));
    o
}

/// What one domain controller returned after the run, for people.
pub fn dc_value_text(v: &DcValue) -> String {
    match (&v.value, &v.error) {
        (Some(x), _) if v.converged => format!("{x} (converged)"),
        (Some(x), _) => format!("{x} (not converged: directory replication is behind)"),
        (None, e) => format!(
            "could not be read ({})",
            e.as_deref().unwrap_or("no answer")
        ),
    }
}

/// Each domain controller's value after the run (when the run committed and read them).
fn directory(r: &RunReport, o: &mut String) {
    let Some(d) = r.directory.as_ref().filter(|d| !d.after.is_empty()) else {
        return;
    };
    let via =
        d.dc.as_ref()
            .map(|dc| format!(", changed on {dc}"))
            .unwrap_or_default();
    let _ = writeln!(o, "Directory ({}{via}) after the run:", d.name);
    for v in &d.after {
        let _ = writeln!(o, "  {}: {}", v.dc, dc_value_text(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_fake::fixtures;
    use failover_core::driver::StepRecord;

    fn step(state: StateName, started_ms: u64, duration_ms: u64) -> StepRecord {
        StepRecord {
            state,
            description: String::new(),
            precondition: String::new(),
            changes: String::new(),
            started_ms,
            started_unix_ms: 0,
            duration_ms,
            executed: true,
            ops: Vec::new(),
        }
    }

    fn run(steps: Vec<StepRecord>, duration_ms: u64) -> RunReport {
        let fx = fixtures::build(&fixtures::Options::default());
        RunReport {
            run_id: "r".into(),
            mode: Mode::Planned,
            what_if: false,
            topology: fx.topology,
            backend: "fake".into(),
            started_unix_ms: 0,
            finished_unix_ms: duration_ms,
            duration_us: duration_ms * 1000,
            steps,
            states: Vec::new(),
            outcome: Outcome::Refused {
                refusal: Box::new(failover_core::Refusal::JournalUnreadable {
                    error: "test".into(),
                }),
            },
            warnings: Vec::new(),
            blockers: Vec::new(),
            data_loss: None,
            window: None,
            final_state: Vec::new(),
            directory: None,
        }
    }

    #[test]
    fn polls_and_pauses_collapse_into_one_timed_row() {
        use StateName as S;
        let mut steps = vec![
            step(S::Preflight, 0, 5),
            step(S::AcquiringLocks, 5, 1),
            step(S::Preflight, 6, 2),
        ];
        for i in 0..4 {
            steps.push(step(S::AwaitingReplication, 10 + i * 1000, 1));
            steps.push(step(S::ReplicationPause, 11 + i * 1000, 0));
        }
        steps.push(step(S::Fencing, 4010, 3));
        let rows = summary_rows(&run(steps, 4020));
        let labels: Vec<_> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Preflight",
                "AcquiringLocks",
                "Preflight (again, under the lock)",
                "AwaitingReplication",
                "Fencing"
            ]
        );
        let wait = &rows[3];
        assert!(wait.wait);
        assert_eq!(wait.polls, 4);
        assert_eq!(wait.elapsed_ms, 4000, "from the first poll to the fence");
        assert_eq!(
            rows[4].elapsed_ms, 10,
            "the last step runs to the end of the run"
        );
        assert_eq!(rows[0].elapsed_ms, 5);
    }

    #[test]
    fn the_directory_wait_is_one_row_and_each_dc_is_listed_after_the_run() {
        use StateName as S;
        let mut steps = vec![step(S::Verifying, 0, 2)];
        for i in 0..5 {
            steps.push(step(S::AwaitingDirectory, 10 + i * 150, 1));
            steps.push(step(S::DirectoryPause, 11 + i * 150, 0));
        }
        steps.push(step(S::ReleasingLocks, 800, 1));
        let mut r = run(steps, 810);
        let rows = summary_rows(&r);
        let labels: Vec<_> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["Verifying", "AwaitingDirectory", "ReleasingLocks"]);
        assert_eq!((rows[1].polls, rows[1].elapsed_ms), (5, 790));
        let loc = |s: &str| {
            let store =
                failover_core::Store::new(failover_core::InstanceAddr::parse(s).unwrap(), None);
            failover_core::CmsLocation::of_store(&store.unwrap())
        };
        r.directory = Some(failover_core::DirectoryReport {
            name: "ldap".into(),
            dc: Some("ldaps://dc01".into()),
            after: vec![
                DcValue {
                    dc: "ldaps://dc01".into(),
                    value: Some(loc("sql-b.cms.test\\RTC")),
                    error: None,
                    converged: true,
                },
                DcValue {
                    dc: "ldaps://dc02".into(),
                    value: Some(loc("sql-a.cms.test\\RTC")),
                    error: None,
                    converged: false,
                },
                DcValue {
                    dc: "ldaps://dc03".into(),
                    value: None,
                    error: Some("connection refused".into()),
                    converged: false,
                },
            ],
        });
        let text = render_result(&r, false, &Lags::new());
        assert!(
            text.contains("Directory (ldap, changed on ldaps://dc01) after the run:"),
            "{text}"
        );
        assert!(
            text.contains("  ldaps://dc01: sql-b.cms.test\\RTC (converged)"),
            "{text}"
        );
        assert!(
            text.contains("  ldaps://dc02: sql-a.cms.test\\RTC (not converged"),
            "{text}"
        );
        assert!(
            text.contains("  ldaps://dc03: could not be read (connection refused)"),
            "{text}"
        );
    }

    /// A what-if disaster recovery that forces `sql-b2`, which reports `witness` for every
    /// CMS database.
    fn forcing_what_if(witness: Option<failover_core::WitnessState>) -> RunReport {
        use failover_core::{InstanceProbe, MirrorFailoverKind, MirrorRole, MirrorState};
        let fx = fixtures::build(&fixtures::Options::default().mirrored(true));
        let (m, p) = (fixtures::backup_mirror(), fixtures::backup());
        let dbs = fx.topology.databases.clone();
        let mut force = step(StateName::ForcingMirror, 0, 0);
        force.ops.push(failover_core::driver::OpRecord {
            op: failover_core::Op::MirrorFailover {
                instance: m.clone(),
                databases: dbs.clone(),
                kind: MirrorFailoverKind::Forced,
                expected_partner: m.clone(),
            },
            summary: String::new(),
            sql: Vec::new(),
            attempts: 0,
            duration_ms: 0,
            error: None,
            retried_errors: Vec::new(),
        });
        let mut r = run(vec![force], 0);
        r.mode =
            Mode::disaster_recovery(true, Some("sql-b.cms.test"), Some("RTC"), None, None).unwrap();
        r.what_if = true;
        let databases = dbs
            .iter()
            .map(|name| failover_core::DatabaseProbe {
                name: name.clone(),
                state: failover_core::DbState::Restoring,
                read_only: false,
                in_standby: false,
                mirroring: Some(failover_core::MirrorInfo {
                    role: MirrorRole::Mirror,
                    state: MirrorState::Disconnected,
                    partner: Some(p.clone()),
                    partner_name: None,
                    safety_full: true,
                    failover_lsn: None,
                    witness: witness.map(|state| failover_core::WitnessInfo {
                        name: fixtures::WITNESS.into(),
                        state,
                    }),
                }),
            })
            .collect();
        r.final_state = vec![(
            m.clone(),
            Ok(InstanceProbe {
                instance: m,
                version: String::new(),
                databases,
                rights: None,
            }),
        )];
        r
    }

    /// The plan of a disaster recovery that forces a mirror says what the mirror's witness
    /// means for `FORCE_SERVICE_ALLOW_DATA_LOSS`: allowed with no witness or one connected
    /// to the mirror; UNKNOWN points at the warning (the core's, with what to run).
    #[test]
    fn a_forcing_plan_says_what_the_mirrors_witness_means() {
        use failover_core::WitnessState as W;
        let m = fixtures::backup_mirror();
        for (state, want) in [
            (
                None,
                format!(
                    "Witness: none on the mirror {m}: FORCE_SERVICE_ALLOW_DATA_LOSS is allowed"
                ),
            ),
            (
                Some(W::Connected),
                format!(
                    "Witness: {} CONNECTED on the mirror {m}: FORCE_SERVICE_ALLOW_DATA_LOSS is allowed",
                    fixtures::WITNESS
                ),
            ),
            (
                Some(W::Unknown),
                format!(
                    "Witness: {} UNKNOWN on the mirror {m}: the force may be refused with 1455 (see the warning)",
                    fixtures::WITNESS
                ),
            ),
        ] {
            let r = forcing_what_if(state);
            let text = render_plan(&r);
            assert!(text.contains(&want), "{state:?}: {text}");
            assert!(restatement(&r).contains(&want), "{state:?}");
        }
        // A witness that differs per database: one line per group, naming the databases.
        let mut r = forcing_what_if(Some(W::Connected));
        if let Ok(p) = &mut r.final_state[0].1 {
            p.databases[1]
                .mirroring
                .as_mut()
                .and_then(|m| m.witness.as_mut())
                .unwrap()
                .state = W::Unknown;
        }
        let text = render_plan(&r);
        let witness: Vec<&str> = text.lines().filter(|l| l.starts_with("Witness")).collect();
        assert_eq!(witness.len(), 2, "{text}");
        assert!(witness[0].starts_with("Witness (xds): "), "{text}");
        assert!(witness[1].contains("UNKNOWN"), "{text}");
    }

    #[test]
    fn expected_failures_are_the_old_source_in_disaster_recovery_only() {
        let fx = fixtures::build(&fixtures::Options::default().mirrored(true));
        let dr =
            Mode::disaster_recovery(true, Some("sql-b.cms.test"), Some("RTC"), None, None).unwrap();
        let e = |i: &failover_core::InstanceAddr, kind| {
            BackendError::new(kind, failover_core::Operation::Probe, i, "down")
        };
        let x = ExpectedFailures::of(&dr, &fx.topology);
        assert!(x.covers(&e(&fixtures::active(), ErrorKind::Unreachable)));
        assert!(x.covers(&e(&fixtures::active_mirror(), ErrorKind::Timeout)));
        assert!(!x.covers(&e(&fixtures::active(), ErrorKind::Permission)));
        assert!(!x.covers(&e(&fixtures::backup(), ErrorKind::Unreachable)));
        let planned = ExpectedFailures::of(&Mode::Planned, &fx.topology);
        assert!(!planned.covers(&e(&fixtures::active(), ErrorKind::Unreachable)));
    }
}
