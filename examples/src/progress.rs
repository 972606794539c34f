//! Live progress: an indicatif bar on a terminal, plain log lines (tracing) otherwise.

use failover_core::{Observer, RunEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use std::time::Duration;

/// Reports [`RunEvent`]s to the operator.
pub struct ProgressObserver {
    bar: Option<ProgressBar>,
    /// The largest total lag seen during the current wait (the bar's length).
    wait_len: Mutex<Option<u64>>,
    /// The last step printed, so polling steps print once.
    last: Mutex<Option<failover_core::StateName>>,
}

impl ProgressObserver {
    /// A bar on stderr when `terminal` (and not `quiet`), log lines otherwise.
    pub fn new(terminal: bool, quiet: bool) -> Self {
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
        }
    }

    /// Stops drawing (call when the run is over).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
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
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                let repeat = *last == Some(*state);
                *last = Some(*state);
                if repeat {
                    tracing::debug!("step {state} again");
                } else if let Some(b) = &self.bar {
                    *self.wait_len.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    b.set_style(spinner_style());
                    b.println(format!("→ {state}: {description}{skipped}"));
                    b.set_message(format!("{state}: {description}{skipped}"));
                } else {
                    tracing::info!("step {state}: {description}{skipped}");
                }
            }
            RunEvent::Retrying { op, attempt, error } => {
                let msg = format!("retrying {op} after attempt {attempt}: {error}");
                match &self.bar {
                    Some(b) => b.println(format!("  ! {msg}")),
                    None => tracing::warn!("{msg}"),
                }
            }
            RunEvent::OpFinished {
                op,
                attempts,
                error,
            } => match error {
                Some(e) => {
                    let msg = format!("{op} failed after {attempts} attempt(s): {e}");
                    match &self.bar {
                        Some(b) => b.println(format!("  x {msg}")),
                        None => tracing::warn!("{msg}"),
                    }
                }
                None => tracing::debug!("{op}: ok ({attempts} attempt(s))"),
            },
            RunEvent::Waiting(p) => {
                let known: Vec<u64> = p.lag.iter().filter_map(|(_, l)| *l).collect();
                let total: u64 = known.iter().sum();
                let lags = p
                    .lag
                    .iter()
                    .map(|(d, l)| format!("{d} {}", l.map_or("?".into(), |l| l.to_string())))
                    .collect::<Vec<_>>()
                    .join(", ");
                let msg = format!(
                    "{}: lag {lags}; {} left",
                    p.waiting_for,
                    format_remaining(p.remaining)
                );
                match &self.bar {
                    Some(b) => {
                        let mut len = self.wait_len.lock().unwrap_or_else(|p| p.into_inner());
                        let l = len.get_or_insert(total.max(1));
                        if total > *l {
                            *l = total;
                        }
                        b.set_style(bar_style());
                        b.set_length(*l);
                        b.set_position(l.saturating_sub(total));
                        b.set_message(msg);
                    }
                    None => tracing::info!("waiting for {msg}"),
                }
            }
            RunEvent::Finished(outcome) => {
                self.line(&format!("finished: {}", outcome.label().replace('_', " ")));
            }
        }
    }
}
