//! Text output for people: the numbered what-if plan and the result summary.

use crate::report::{format_ms, next_step};
use failover_core::{Mode, RunReport};
use std::fmt::Write as _;

fn header(r: &RunReport, o: &mut String) {
    let t = &r.topology;
    let (what, from, to) = match &r.mode {
        Mode::Planned => (
            "planned failover",
            t.active.to_string(),
            t.backup.to_string(),
        ),
        Mode::DisasterRecovery { target } => (
            "disaster-recovery failover (--force: replication is not waited for)",
            t.active.to_string(),
            target.to_string(),
        ),
        Mode::Restore => (
            "restore",
            "the recorded store".to_string(),
            "back into service".to_string(),
        ),
    };
    let _ = writeln!(o, "{}{what}", if r.what_if { "What-if: " } else { "" });
    let _ = writeln!(o, "  from:      {from}");
    let _ = writeln!(o, "  to:        {to}");
    let dbs: Vec<_> = t.databases.iter().map(|d| d.as_str()).collect();
    let _ = writeln!(o, "  databases: {}", dbs.join(", "));
    let _ = writeln!(o, "  backend:   {}   run id: {}", r.backend, r.run_id);
}

fn data_loss(r: &RunReport, o: &mut String) {
    if let Some(dl) = &r.data_loss {
        let _ = writeln!(o, "Data-loss estimate:");
        for d in dl {
            let _ = writeln!(o, "  {d}");
        }
    }
}

fn warnings(r: &RunReport, o: &mut String) {
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {w}");
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
    data_loss(r, &mut o);
    warnings(r, &mut o);
    o
}

/// The result of a run (not what-if) in a few lines.
pub fn render_result(r: &RunReport) -> String {
    let mut o = String::new();
    header(r, &mut o);
    let _ = writeln!(o);
    let _ = writeln!(o, "Result: {}", r.outcome);
    if let Some(w) = &r.window {
        let _ = writeln!(
            o,
            "Write-unavailability window (fence -> new store writable): {}",
            format_ms(w.duration_us / 1000)
        );
    }
    let steps: Vec<String> = r
        .steps
        .iter()
        .filter(|s| s.ops.iter().any(|o| o.attempts > 0))
        .map(|s| format!("{} {}", s.state, format_ms(s.duration_ms)))
        .collect();
    if !steps.is_empty() {
        let _ = writeln!(o, "Steps: {}", steps.join(" · "));
    }
    let retries: u32 = r
        .steps
        .iter()
        .flat_map(|s| &s.ops)
        .map(|o| o.retried_errors.len() as u32)
        .sum();
    if retries > 0 {
        let _ = writeln!(o, "Retried calls: {retries}");
    }
    data_loss(r, &mut o);
    warnings(r, &mut o);
    let _ = writeln!(o, "Next: {}", next_step(&r.outcome, r.what_if));
    o
}
