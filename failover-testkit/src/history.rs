//! Generated multi-run histories: an operator's bad month, not one bad night.
//!
//! A [`History`] is a sequence of runs against one estate, each run oriented from wherever
//! the CMS is now: planned failovers, disaster recoveries away from a store that has just
//! died (then the dead store returns and `restore` fences its stale copy), and plain
//! restores, with faults and client crashes drawn per run. After every run the estate must
//! have converged: one writable copy of every database, and the highest location record
//! naming it. A disaster recovery that completed must win: once its store is in service,
//! no later `restore` may hand the CMS back to the store it replaced (issue 10, bug 2: DR to
//! B while A is down, A returns, restore, DR back to A while B is down, B returns, restore
//! must end on A). A run killed after its commit point is completed by running it again
//! (disaster recovery) or by `restore` (bug 1), which every crash point below exercises.
//!
//! Runs may share one journal (one operator's machine) or each use a fresh one (another
//! administrator's machine, so nothing but the location records carries the epochs).

use crate::props::{
    BackendFactory, Kind, RunResult, Timing, check_single_writer, converged, fault_config, request,
    restore_until_converged, run_one,
};
use backend_fake::Estate;
use backend_fake::fixtures::{self, Options};
use failover_core::{MemoryJournal, Outcome, Topology};
use proptest::prelude::*;

/// One run of a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// A planned failover from the store in service to its partner.
    Planned,
    /// The store in service dies; disaster recovery to its partner (re-run until it
    /// succeeds); the dead store returns and `restore` fences its stale copy.
    DisasterAway,
    /// A restore on a healthy estate (must keep the store in service).
    Restore,
}

/// One run with its own faults and crash point.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the operator does.
    pub mv: Move,
    /// Fault seed.
    pub seed: u64,
    /// Fault rate per call during the run (recovery runs get up to three faulty attempts,
    /// then one without faults).
    pub fault_rate: f64,
    /// Crash the client at this call (applied or not).
    pub crash_at: Option<(usize, bool)>,
}

/// A generated history.
#[derive(Debug, Clone)]
pub struct History {
    /// Both stores mirrored.
    pub mirrored: bool,
    /// Every run uses the same journal (else each run starts with an empty one).
    pub shared_journal: bool,
    /// The runs, in order.
    pub steps: Vec<Step>,
}

/// The generator of histories (2 to 6 runs).
pub fn histories() -> impl Strategy<Value = History> {
    let step = (
        prop_oneof![
            2 => Just(Move::Planned),
            3 => Just(Move::DisasterAway),
            1 => Just(Move::Restore),
        ],
        any::<u64>(),
        prop_oneof![Just(0.0), 0.0f64..0.2],
        prop::option::weighted(0.3, (0usize..40, any::<bool>())),
    )
        .prop_map(|(mv, seed, fault_rate, crash_at)| Step {
            mv,
            seed,
            fault_rate,
            crash_at,
        });
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(step, 2..=6),
    )
        .prop_map(|(mirrored, shared_journal, steps)| History {
            mirrored,
            shared_journal,
            steps,
        })
}

/// The topology oriented from the store that holds `at` (the store in service) to its
/// partner.
fn oriented(base: &Topology, in_service_is_base_active: bool) -> Topology {
    if in_service_is_base_active {
        base.clone()
    } else {
        Topology {
            active: base.backup.clone(),
            backup: base.active.clone(),
            databases: base.databases.clone(),
        }
    }
}

fn set_store_reachable(
    estate: &Estate,
    store: &failover_core::Store,
    up: bool,
) -> Result<(), String> {
    for i in store.instances() {
        estate.set_reachable(i, up).map_err(|e| e.0)?;
    }
    Ok(())
}

/// The operator's wall clock at run `n` (Unix seconds, an hour apart), as the CLI passes it.
fn clock(n: usize) -> u64 {
    1_800_000_000 + 3_600 * n as u64
}

/// Runs a history and checks the invariants after every run. `Err` says which run broke
/// which rule.
pub async fn check_history(
    factory: &dyn BackendFactory,
    h: &History,
    t: Timing,
) -> Result<(), String> {
    let fx = fixtures::build(&Options::default().mirrored(h.mirrored));
    let (estate, base) = (fx.estate, fx.topology);
    let shared = MemoryJournal::new();
    // Whether the store in service is the fixture's original active store.
    let mut on_base_active = true;
    for (n, step) in h.steps.iter().enumerate() {
        let journal = if h.shared_journal {
            shared.clone()
        } else {
            MemoryJournal::new()
        };
        let topo = oriented(&base, on_base_active);
        let fail = |what: String| format!("run {n} ({:?}): {what}", step.mv);
        let sc_faults = crate::props::Scenario {
            mirrored: h.mirrored,
            seed: step.seed,
            fault_rate: step.fault_rate,
            crash_at: step.crash_at,
            ..crate::props::Scenario::plain(Kind::Planned)
        };
        estate.set_faults(fault_config(&sc_faults, &t));
        estate.set_faults_enabled(step.fault_rate > 0.0);
        let start = estate.history().len();
        // This step's run (the operator's clock at run `n`), and the recovery after it.
        let run = |kind: Kind| {
            let mut req = request(kind, &topo, &format!("h{n}"), &t);
            req.settings.epoch_clock = clock(n);
            run_one(
                factory,
                &estate,
                &journal,
                req,
                step.crash_at,
                None,
                None,
                None,
                None,
            )
        };
        let settle = |reachable_only: bool, dr: bool| {
            restore_until_converged(
                factory,
                &estate,
                &journal,
                &topo,
                &t,
                reachable_only,
                dr,
                clock(n),
            )
        };
        match step.mv {
            Move::Planned | Move::Restore => {
                let kind = if step.mv == Move::Planned {
                    Kind::Planned
                } else {
                    Kind::Restore
                };
                let r = run(kind).await;
                check_single_writer(&estate, start).map_err(&fail)?;
                let settled = match r {
                    RunResult::Finished(rep) => {
                        !matches!(rep.outcome, Outcome::NeedsRestore { .. })
                    }
                    RunResult::Crashed => false,
                };
                if !settled {
                    settle(false, false).await.map_err(&fail)?;
                }
                estate.set_faults_enabled(false);
                let at = converged(&estate.snapshot(), &topo, false).map_err(&fail)?;
                if step.mv == Move::Restore && !topo.active.contains(&at) {
                    return Err(fail(format!(
                        "a restore of a healthy estate moved the CMS from {} to {at}",
                        topo.active.principal
                    )));
                }
                on_base_active = base.active.contains(&at);
            }
            Move::DisasterAway => {
                set_store_reachable(&estate, &topo.active, false)?;
                let r = run(Kind::Disaster).await;
                let succeeded = matches!(
                    &r,
                    RunResult::Finished(rep) if matches!(rep.outcome, Outcome::Succeeded { .. })
                );
                if !succeeded {
                    // The source is still dead: the operator runs the recovery again.
                    settle(true, true).await.map_err(&fail)?;
                }
                estate.set_faults_enabled(false);
                let at = converged(&estate.snapshot(), &topo, true).map_err(&fail)?;
                if !topo.backup.contains(&at) {
                    return Err(fail(format!(
                        "the disaster recovery to {} ended on {at}",
                        topo.backup.principal
                    )));
                }
                // The dead store returns with its stale, writable copy; restore fences it.
                set_store_reachable(&estate, &topo.active, true)?;
                let before = estate.history().len();
                settle(false, false).await.map_err(&fail)?;
                check_single_writer(&estate, before).map_err(&fail)?;
                let after = converged(&estate.snapshot(), &topo, false).map_err(&fail)?;
                if !topo.backup.contains(&after) {
                    return Err(fail(format!(
                        "restore after the disaster recovery to {} handed the CMS back to \
                         {after}, the store it replaced (its writes are lost)",
                        topo.backup.principal
                    )));
                }
                on_base_active = base.active.contains(&after);
            }
        }
        if !estate.snapshot().locks.is_empty() {
            return Err(fail(format!(
                "locks left behind: {:?}",
                estate.snapshot().locks
            )));
        }
    }
    Ok(())
}
