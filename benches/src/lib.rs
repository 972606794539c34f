//! Helpers shared by the benchmarks in `benches/` (see `BENCHMARKS.md` at the repository root):
//! planned-failover requests with bench settings, the step/call accounting of a
//! [`RunReport`], peak memory from `/proc/self/status`, and [`proxy::DelayProxy`], a loopback
//! TCP proxy that injects a network round-trip time between a SQL backend and the simulator,
//! and [`directory::DelayedDirectory`], the in-memory directory behind the same delay.
#![warn(missing_docs)]

pub mod directory;
pub mod proxy;

use failover_core::{FailoverRequest, Mode, RunReport, StateName, Topology};
use std::time::Duration;

/// A planned failover of `topology` with settings suited to benchmarks: `poll` between
/// position polls, generous timeouts (nothing in a bench should time out), no retries
/// (no faults are injected).
pub fn planned(topology: &Topology, run_id: &str, poll: Duration) -> FailoverRequest {
    let mut r = FailoverRequest::new(run_id, topology.clone(), Mode::Planned).expect("request");
    r.settings.step_timeout = Duration::from_secs(30);
    r.settings.poll_interval = poll;
    r.settings.replication_timeout = Duration::from_secs(120);
    r.settings.catch_up_timeout = Duration::from_secs(120);
    r.settings.max_retries = 0;
    r
}

/// The steps of a report that fall inside the write-unavailability window: from `Fencing` to
/// `RecordingLocation` (the directory swap, the commit point), both included.
pub fn window_steps(report: &RunReport) -> &[failover_core::driver::StepRecord] {
    let start = report
        .steps
        .iter()
        .position(|s| s.state == StateName::Fencing);
    let end = report
        .steps
        .iter()
        .rposition(|s| s.state == StateName::RecordingLocation);
    match (start, end) {
        (Some(s), Some(e)) if s <= e => &report.steps[s..=e],
        _ => &[],
    }
}

/// Backend calls made inside the window (each may be more than one network round trip).
pub fn window_calls(report: &RunReport) -> usize {
    window_steps(report)
        .iter()
        .map(|s| s.ops.iter().filter(|o| o.attempts > 0).count())
        .sum()
}

/// Sequential steps inside the window that made at least one call (each costs at least one
/// round trip; the calls of one step run concurrently).
pub fn window_sequential_steps(report: &RunReport) -> usize {
    window_steps(report)
        .iter()
        .filter(|s| s.ops.iter().any(|o| o.attempts > 0))
        .count()
}

/// Sequential steps of the whole run that made at least one call.
pub fn run_sequential_steps(report: &RunReport) -> usize {
    report
        .steps
        .iter()
        .filter(|s| s.ops.iter().any(|o| o.attempts > 0))
        .count()
}

/// The critical path of each step in round trips, from snapshots of the proxies'
/// per-connection exchange counts and of a directory's call count taken when each step
/// started, plus one after the run: per step, the largest number of exchanges on any one
/// connection (calls on one connection follow each other, different connections overlap),
/// and at least one when it called the directory (its calls in a step run concurrently).
pub fn critical_round_trips(marks: &[(Vec<u64>, u64)]) -> Vec<u64> {
    marks
        .windows(2)
        .map(|w| {
            let (before, dir0) = &w[0];
            let (after, dir1) = &w[1];
            let sql = after
                .iter()
                .enumerate()
                .map(|(i, n)| n - before.get(i).copied().unwrap_or(0))
                .max()
                .unwrap_or(0);
            sql.max(u64::from(dir1 > dir0))
        })
        .collect()
}

/// Number of state transitions of a run (states entered minus one).
pub fn transitions(report: &RunReport) -> usize {
    report.states.len().saturating_sub(1)
}

/// A field of `/proc/self/status` in KiB (`VmHWM` = peak resident set, `VmRSS` = current).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The median of `v` (sorted in place); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn critical_path_takes_the_busiest_connection_per_step() {
        // Step 1: two connections open, 3 and 2 exchanges; step 2: one each and a directory
        // call; step 3: the directory only.
        let marks = vec![
            (vec![], 0),
            (vec![3, 2], 0),
            (vec![4, 3], 1),
            (vec![4, 3], 3),
        ];
        assert_eq!(critical_round_trips(&marks), vec![3, 1, 1]);
    }

    #[test]
    fn reads_own_status() {
        // RSS first: the peak read afterwards can only be higher.
        let rss = proc_status_kib("VmRSS").expect("VmRSS on Linux");
        let hwm = proc_status_kib("VmHWM").expect("VmHWM on Linux");
        assert!(hwm >= rss);
        assert_eq!(proc_status_kib("NoSuchField"), None);
    }
}
