//! Helpers shared by the benchmarks in `benches/` (see `BENCHMARKS.md` at the repository root):
//! planned-failover requests with bench settings, the step/call accounting of a
//! [`RunReport`], peak memory from `/proc/self/status`, and [`proxy::DelayProxy`], a loopback
//! TCP proxy that injects a network round-trip time between a SQL backend and the simulator.
#![warn(missing_docs)]

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
/// `RecordingLocation`, both included.
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
    fn reads_own_status() {
        // RSS first: the peak read afterwards can only be higher.
        let rss = proc_status_kib("VmRSS").expect("VmRSS on Linux");
        let hwm = proc_status_kib("VmHWM").expect("VmHWM on Linux");
        assert!(hwm >= rss);
        assert_eq!(proc_status_kib("NoSuchField"), None);
    }
}
