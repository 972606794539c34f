//! Issue 10, bug 1: a run killed at any call (after its commit point included) is completed
//! by re-running it (disaster recovery) or by `restore` (planned), and the journal is
//! settled either way. `check` re-runs / restores after the crash and fails unless the
//! estate converged and no unfinished run is left in the journal.
use failover_testkit::props::*;

fn scenario(kind: Kind, crash_at: usize) -> Scenario {
    Scenario {
        crash_at: Some((crash_at, true)),
        ..Scenario::plain(kind)
    }
}

fn every_crash_point(kind: Kind) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // More calls than any of these runs makes: the last points crash nothing.
    for k in 0..40 {
        let sc = scenario(kind, k);
        assert_scenario(&rt, &sc, &format!("{kind:?} killed at call {k}"));
    }
}

#[test]
fn disaster_recovery_killed_anywhere_is_completed_by_running_it_again() {
    every_crash_point(Kind::Disaster);
}

#[test]
fn planned_killed_anywhere_is_completed_by_restore() {
    every_crash_point(Kind::Planned);
}
