//! Generated multi-run histories against the in-memory fake (paused time): planned
//! failovers, disaster recoveries away from a store that just died (then it returns and
//! `restore` fences it) and restores, each with its own faults and crash point, on one
//! estate. `CMS_FAILOVER_HISTORY_CASES` sets the number of histories (default 2,000); the
//! seed is derived from the commit and printed with the replay command.

use failover_testkit::history::{History, Move, Step, check_history, histories};
use failover_testkit::props::{FakeFactory, Timing, cases_from_env, proptest_config};
use proptest::prelude::*;

const CASES_VAR: &str = "CMS_FAILOVER_HISTORY_CASES";

fn run(h: &History) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(check_history(&FakeFactory, h, Timing::paused()))
}

proptest! {
    #![proptest_config(proptest_config(
        cases_from_env(CASES_VAR, 2_000),
        CASES_VAR,
        "-p failover-testkit --test props_history -- histories_keep_the_invariants --exact",
        7,
    ))]
    #[test]
    fn histories_keep_the_invariants(h in histories()) {
        if let Err(e) = run(&h) {
            prop_assert!(false, "{e}");
        }
    }
}

fn quiet(mv: Move) -> Step {
    Step {
        mv,
        seed: 1,
        fault_rate: 0.0,
        crash_at: None,
    }
}

/// Issue 10, bug 2, as a fixed history: DR to B while A is down, A returns, restore; DR
/// back to A while B is down, B returns, restore: the CMS must end on A. Each run from a
/// fresh journal (another administrator's machine), so only the records carry the epochs.
#[test]
fn dr_there_and_back_with_restores_ends_where_the_last_dr_put_it() {
    for mirrored in [false, true] {
        for shared_journal in [false, true] {
            let h = History {
                mirrored,
                shared_journal,
                steps: vec![quiet(Move::DisasterAway), quiet(Move::DisasterAway)],
            };
            if let Err(e) = run(&h) {
                panic!("mirrored {mirrored}, shared journal {shared_journal}: {e}");
            }
        }
    }
}

/// Issue 10, bug 1, inside a history: the disaster recovery killed at every call (after
/// its commit point included) is completed by running it again, and the next one too.
#[test]
fn dr_killed_anywhere_then_dr_back_converges() {
    for k in 0..40 {
        let mut first = quiet(Move::DisasterAway);
        first.crash_at = Some((k, true));
        let h = History {
            mirrored: false,
            shared_journal: false,
            steps: vec![first, quiet(Move::DisasterAway), quiet(Move::Restore)],
        };
        if let Err(e) = run(&h) {
            panic!("killed at call {k}: {e}");
        }
    }
}

/// The new epoch is at least the operator's clock (`Settings::epoch_clock`), and above
/// every record seen when the clock is behind them.
#[test]
fn the_new_epoch_is_at_least_the_clock_and_above_every_record() {
    use backend_fake::fixtures::{self, Options};
    use failover_core::{Driver, FailoverRequest, Mode, Outcome};
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    for (clock, expected) in [(5_000, 5_001), (0, 2)] {
        let fx = fixtures::build(&Options::default());
        let mut req = FailoverRequest::new("r1", fx.topology.clone(), Mode::Planned).unwrap();
        req.settings.epoch_clock = clock;
        let backend = Arc::new(backend_fake::FakeBackend::new(fx.estate.clone()));
        let report = rt.block_on(Driver::new(backend).run(req));
        assert!(
            matches!(report.outcome, Outcome::Succeeded { .. }),
            "{}",
            report.outcome
        );
        let rec = fx.estate.snapshot().highest_location().cloned().unwrap();
        assert_eq!(rec.epoch, expected, "clock {clock}");
        // Back again with the clock behind the record: the record wins.
        let fx2 = fx.topology.clone();
        let back = failover_core::Topology {
            active: fx2.backup.clone(),
            backup: fx2.active.clone(),
            databases: fx2.databases.clone(),
        };
        for i in back.active.instances() {
            fx.estate.set_reachable(i, false).unwrap();
        }
        let mut req = FailoverRequest::new(
            "r2",
            back.clone(),
            Mode::DisasterRecovery {
                target: back.backup.clone(),
            },
        )
        .unwrap();
        // A clock behind the record (or none).
        req.settings.epoch_clock = clock / 500;
        let backend = Arc::new(backend_fake::FakeBackend::new(fx.estate.clone()));
        let report = rt.block_on(Driver::new(backend).run(req));
        assert!(
            matches!(report.outcome, Outcome::Succeeded { .. }),
            "{}",
            report.outcome
        );
        let rec = fx.estate.snapshot().highest_location().cloned().unwrap();
        assert_eq!(
            rec.epoch,
            expected + 1,
            "clock {clock}, then {}",
            clock / 500
        );
    }
}

/// A history the generated histories found, kept as a fixed case: a planned failover to B
/// under faults, then a disaster recovery back to A (B dead) under faults.
#[test]
fn planned_then_dr_back_under_faults_records_the_recovered_store() {
    let h = History {
        mirrored: false,
        shared_journal: false,
        steps: vec![
            Step {
                mv: Move::Planned,
                seed: 8187596112660380695,
                fault_rate: 0.10503497566438919,
                crash_at: None,
            },
            Step {
                mv: Move::DisasterAway,
                seed: 18408182951264522465,
                fault_rate: 0.08105800726949748,
                crash_at: None,
            },
        ],
    };
    let second = History {
        steps: vec![
            Step {
                mv: Move::Planned,
                seed: 14290408608021503621,
                fault_rate: 0.1334552081965144,
                crash_at: None,
            },
            Step {
                mv: Move::DisasterAway,
                seed: 4783248949194592410,
                fault_rate: 0.16723072960811294,
                crash_at: None,
            },
        ],
        ..h.clone()
    };
    for (i, h) in [h, second].iter().enumerate() {
        if let Err(e) = run(h) {
            panic!("history {i}: {e}");
        }
    }
}
