//! The CLI's own view of how a command ended: the core's [`Outcome`] read together with
//! whether the operator asked for a what-if, so a plan never claims a change it did not make.
//!
//! A what-if whose plan has no blocker *would succeed* (exit 0, as the cmdlet's `-WhatIf`
//! returns success); one with a blocker *would be refused* (exit [`EXIT_WOULD_BE_REFUSED`],
//! distinct from 3 so scripts can tell a plan's blocker from a refused run).

use failover_core::{Outcome, RunReport};
use serde::Serialize;

/// Exit code of a what-if whose plan has a blocker: nothing was changed.
pub const EXIT_WOULD_BE_REFUSED: i32 = 10;

/// How a command ended, for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Stable code: `would_succeed`, `would_be_refused`, `succeeded`, `refused`,
    /// `rolled_back`, `needs_restore`, `cancelled`.
    pub code: &'static str,
    /// One line for people: `would succeed: …`, `refused before any change: …`.
    pub text: String,
    /// Whether it is a what-if plan (nothing was changed).
    pub what_if: bool,
    /// The process exit code.
    pub exit_code: i32,
}

impl Verdict {
    /// The verdict of `run`; `what_if` is whether the operator asked for a what-if (a plan
    /// read only to confirm a real run is refused as the real run would be).
    pub fn of(run: &RunReport, what_if: bool) -> Self {
        let o = &run.outcome;
        if !what_if {
            return Self {
                code: o.label(),
                text: o.to_string(),
                what_if,
                exit_code: o.exit_code(),
            };
        }
        match o {
            Outcome::Succeeded { active, .. } => Self {
                code: "would_succeed",
                text: format!(
                    "would succeed: the CMS would become active on {active}; nothing was changed"
                ),
                what_if,
                exit_code: 0,
            },
            Outcome::Refused { refusal } => Self {
                code: "would_be_refused",
                text: format!("would be refused: {refusal}; nothing was changed"),
                what_if,
                exit_code: EXIT_WOULD_BE_REFUSED,
            },
            // A what-if changes nothing, so anything else (cancelled at Ctrl-C) is reported
            // as the core says.
            other => Self {
                code: other.label(),
                text: other.to_string(),
                what_if,
                exit_code: other.exit_code(),
            },
        }
    }

    /// A label for people: `would succeed`, `needs restore`.
    pub fn label(&self) -> String {
        self.code.replace('_', " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_fake::fixtures;
    use failover_core::Mode;

    fn run(outcome: Outcome, what_if: bool) -> RunReport {
        let fx = fixtures::build(&fixtures::Options::default());
        RunReport {
            run_id: "r".into(),
            mode: Mode::Planned,
            what_if,
            topology: fx.topology,
            backend: "fake".into(),
            started_unix_ms: 0,
            finished_unix_ms: 0,
            duration_us: 0,
            steps: Vec::new(),
            states: Vec::new(),
            outcome,
            warnings: Vec::new(),
            blockers: Vec::new(),
            data_loss: None,
            window: None,
            final_state: Vec::new(),
            directory: None,
        }
    }

    #[test]
    fn what_if_never_claims_a_change() {
        let ok = Outcome::Succeeded {
            active: fixtures::backup(),
            epoch: Some(2),
        };
        let v = Verdict::of(&run(ok.clone(), true), true);
        assert_eq!((v.code, v.exit_code), ("would_succeed", 0));
        assert!(v.text.starts_with("would succeed"), "{}", v.text);
        assert!(!v.text.contains("succeeded"), "{}", v.text);
        let real = Verdict::of(&run(ok, false), false);
        assert_eq!((real.code, real.exit_code), ("succeeded", 0));

        let no = Outcome::Refused {
            refusal: Box::new(failover_core::Refusal::JournalUnreadable {
                error: "lag 500".into(),
            }),
        };
        let v = Verdict::of(&run(no.clone(), true), true);
        assert_eq!((v.code, v.exit_code), ("would_be_refused", 10));
        assert!(
            v.text.starts_with("would be refused: ") && v.text.contains("lag 500"),
            "{}",
            v.text
        );
        assert!(v.text.ends_with("; nothing was changed"), "{}", v.text);
        // The plan read to confirm a real run is refused as that run would be.
        let v = Verdict::of(&run(no, true), false);
        assert_eq!((v.code, v.exit_code), ("refused", 3));
    }
}
