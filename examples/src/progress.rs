//! Live progress: an indicatif bar on a terminal, plain log lines (tracing) otherwise.

use crate::output::{ExpectedFailures, wait_of};
use crate::report::{Lags, WaitLag};
use failover_core::machine::StateName;
use failover_core::{BackendError, Observer, RunEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Reports [`RunEvent`]s to the operator.
pub struct ProgressObserver {
    bar: Option<ProgressBar>,
    /// The largest total lag seen during the current wait (the bar's length).
    wait_len: Mutex<Option<u64>>,
    /// The last step printed, so polling steps print once.
    last: Mutex<Option<StateName>>,
    /// How many preflights have started (the second runs under the lock).
    preflights: Mutex<usize>,
    /// The total lag at the first and last poll of each wait.
    lags: Mutex<Lags>,
    /// The total lag at each poll (ms since the Unix epoch, lag), for the report's curve.
    curve: Mutex<Vec<(u64, u64)>>,
    /// Failures the run expects (the dead source in disaster recovery): shown once each.
    expected: ExpectedFailures,
    /// How many expected failures each instance had.
    expected_seen: Mutex<BTreeMap<String, usize>>,
    /// The current wait: which, since when, and the last line logged for it.
    wait: Mutex<Option<WaitLog>>,
}

/// A wait as logged: its first poll and the last line written (log lines are throttled to
/// one per [`WAIT_LOG_EVERY`] unless what is awaited changes).
struct WaitLog {
    state: StateName,
    since: std::time::Instant,
    logged_at: std::time::Instant,
    logged: String,
}

/// Without a terminal, a wait logs a line at its first poll, then at most this often, or when
/// what it waits for changes (a DC returns another value): not one line per poll.
pub const WAIT_LOG_EVERY: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProgressObserver {
    /// A bar on stderr when `terminal` (and not `quiet`), log lines otherwise; failures
    /// covered by `expected` are shown once per instance and then only counted.
    pub fn new(terminal: bool, quiet: bool, expected: ExpectedFailures) -> Self {
        let bar = (terminal && !quiet).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(spinner_style());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Self {
            bar,
            wait_len: Mutex::new(None),
            last: Mutex::new(None),
            preflights: Mutex::new(0),
            lags: Mutex::new(Lags::new()),
            curve: Mutex::new(Vec::new()),
            expected,
            expected_seen: Mutex::new(BTreeMap::new()),
            wait: Mutex::new(None),
        }
    }

    /// How long the current wait (`state`'s) has lasted, and whether a log line for
    /// `waiting_for` is due (the first poll, a change, or [`WAIT_LOG_EVERY`] since the last).
    fn wait_tick(&self, state: StateName, waiting_for: &str) -> (Duration, bool) {
        let now = std::time::Instant::now();
        let mut w = lock(&self.wait);
        match w.as_mut() {
            Some(l) if l.state == state => {
                let due =
                    l.logged != waiting_for || now.duration_since(l.logged_at) >= WAIT_LOG_EVERY;
                if due {
                    l.logged_at = now;
                    l.logged = waiting_for.to_string();
                }
                (now.duration_since(l.since), due)
            }
            _ => {
                *w = Some(WaitLog {
                    state,
                    since: now,
                    logged_at: now,
                    logged: waiting_for.to_string(),
                });
                (Duration::ZERO, true)
            }
        }
    }

    /// Stops drawing (call when the run is over) and prints the count of expected
    /// failures per instance.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        for (instance, n) in lock(&self.expected_seen).iter() {
            let msg = format!(
                "{instance}: unreachable, as expected in disaster recovery ({n} failed call(s) in all)"
            );
            match &self.bar {
                Some(_) => eprintln!("  {msg}"),
                None => tracing::info!("{msg}"),
            }
        }
    }

    /// The total lag at each poll whose lag was fully known: (ms since the Unix epoch, lag).
    pub fn lag_curve(&self) -> Vec<(u64, u64)> {
        lock(&self.curve).clone()
    }

    /// The total lag at the first and the last poll of each wait seen so far.
    pub fn lags(&self) -> Lags {
        lock(&self.lags).clone()
    }

    /// Counts `e` if it is expected; returns whether it should still be shown (the first
    /// expected failure of an instance, or any unexpected one).
    fn show(&self, e: &BackendError) -> bool {
        if !self.expected.covers(e) {
            return true;
        }
        let mut seen = lock(&self.expected_seen);
        let n = seen.entry(e.instance.clone()).or_default();
        *n += 1;
        *n == 1
    }

    fn expected_note(&self, e: &BackendError) -> &'static str {
        if self.expected.covers(e) {
            " (expected in disaster recovery; further failures of this instance are counted, not shown)"
        } else {
            ""
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => tracing::info!("{text}"),
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} [{bar:30.green/white}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Formats a remaining time: `4m 52s`, `12s`.
pub fn format_remaining(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}.{}s", s, d.subsec_millis() / 100)
    }
}

impl Observer for ProgressObserver {
    fn on_event(&self, event: &RunEvent) {
        match event {
            RunEvent::StepStarted {
                state,
                description,
                executed,
            } => {
                let skipped = if *executed {
                    ""
                } else {
                    " (what-if: not executed)"
                };
                let mut last = lock(&self.last);
                if let Some(w) = last.and_then(wait_of)
                    && wait_of(*state).is_none()
                    && !matches!(
                        state,
                        StateName::ReleasingLocks
                            | StateName::UndoingFence
                            | StateName::UndoingPromotion
                    )
                    && let Some(l) = lock(&self.lags).get_mut(&w)
                {
                    l.caught_up = true;
                }
                // The check under the lock is a second Preflight right after the first (the
                // lock is taken in the first one's step), not a poll to collapse.
                let repeat = *last == Some(*state) && *state != StateName::Preflight;
                *last = Some(*state);
                let label = if *state == StateName::Preflight {
                    let mut n = lock(&self.preflights);
                    *n += 1;
                    if *n > 1 {
                        "Preflight (again, under the lock)".to_string()
                    } else {
                        state.to_string()
                    }
                } else {
                    state.to_string()
                };
                if repeat {
                    tracing::debug!("step {state} again");
                } else if let Some(b) = &self.bar {
                    *lock(&self.wait_len) = None;
                    b.set_style(spinner_style());
                    b.println(format!("→ {label}: {description}{skipped}"));
                    b.set_message(format!("{label}: {description}{skipped}"));
                } else {
                    tracing::info!("step {label}: {description}{skipped}");
                }
            }
            RunEvent::Retrying { op, attempt, error } => {
                if !self.show(error) {
                    return;
                }
                let note = self.expected_note(error);
                let msg = format!("retrying {op} after attempt {attempt}: {error}{note}");
                match &self.bar {
                    Some(b) => b.println(format!("  ! {msg}")),
                    None if note.is_empty() => tracing::warn!("{msg}"),
                    None => tracing::info!("{msg}"),
                }
            }
            RunEvent::OpFinished {
                op,
                attempts,
                error,
            } => match error {
                Some(e) => {
                    if !self.show(e) {
                        return;
                    }
                    let note = self.expected_note(e);
                    let msg = format!("{op} failed after {attempts} attempt(s): {e}{note}");
                    match &self.bar {
                        Some(b) => b.println(format!("  x {msg}")),
                        None if note.is_empty() => tracing::warn!("{msg}"),
                        None => tracing::info!("{msg}"),
                    }
                }
                None => tracing::debug!("{op}: ok ({attempts} attempt(s))"),
            },
            RunEvent::Waiting(p) => {
                let known: Vec<u64> = p.lag.iter().filter_map(|(_, l)| *l).collect();
                let total: u64 = known.iter().sum();
                // A wait without positions (the directory's) has no lag to record.
                let all_known = known.len() == p.lag.len() && !p.lag.is_empty();
                if all_known {
                    let at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    lock(&self.curve).push((at, total));
                }
                let last = *lock(&self.last);
                if let Some(state) = last.filter(|_| !p.lag.is_empty()) {
                    let now = all_known.then_some(total);
                    let mut lags = lock(&self.lags);
                    let l = lags
                        .entry(wait_of(state).unwrap_or(state))
                        .or_insert(WaitLag {
                            first: now,
                            ..WaitLag::default()
                        });
                    l.last = now;
                }
                let wait = lock(&self.last)
                    .map(|s| wait_of(s).unwrap_or(s))
                    .unwrap_or(StateName::AwaitingReplication);
                let (waited, due) = self.wait_tick(wait, &p.waiting_for);
                // A wait without positions (the directory's) shows no empty "lag".
                let lags = if p.lag.is_empty() {
                    String::new()
                } else {
                    let l = p
                        .lag
                        .iter()
                        .map(|(d, l)| format!("{d} {}", l.map_or("?".into(), |l| l.to_string())))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!(": lag {l}")
                };
                let msg = format!(
                    "{}{lags}; waited {}, {} left",
                    p.waiting_for,
                    format_remaining(waited),
                    format_remaining(p.remaining)
                );
                match &self.bar {
                    Some(b) => {
                        let mut len = lock(&self.wait_len);
                        let l = len.get_or_insert(total.max(1));
                        if total > *l {
                            *l = total;
                        }
                        b.set_style(bar_style());
                        b.set_length(*l);
                        b.set_position(l.saturating_sub(total));
                        b.set_message(msg);
                    }
                    None if due => tracing::info!("waiting for {msg}"),
                    None => tracing::debug!("waiting for {msg}"),
                }
            }
            RunEvent::Finished(outcome) => {
                self.line(&format!("finished: {}", outcome.label().replace('_', " ")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait logs its first poll, then only when what it waits for changes (or a second
    /// passed): not one line per 150 ms poll.
    #[test]
    fn wait_lines_are_throttled_unless_what_is_awaited_changes() {
        let o = ProgressObserver::new(false, true, ExpectedFailures::default());
        let s = StateName::AwaitingDirectory;
        assert!(
            o.wait_tick(s, "dc02 still returns sql-a").1,
            "the first poll"
        );
        let (_, due) = o.wait_tick(s, "dc02 still returns sql-a");
        assert!(!due, "the same message right after");
        assert!(o.wait_tick(s, "dc02 still returns sql-c").1, "a change");
        // Another wait starts its own clock and logs at once.
        let (waited, due) = o.wait_tick(StateName::AwaitingReplication, "x");
        assert!(due && waited == Duration::ZERO);
    }
}
