//! Issue 12 item 2 at machine level: `SET PARTNER FAILOVER` returns before the roles switch
//! ("can complete successfully when entered, but fail later":
//! <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>).
//! The backup store is served by its mirror partner, so a planned failover gives the
//! principal role back with `SET PARTNER FAILOVER`, and the fake holds the switch for a
//! number of estate ticks. The run waits for the designated principal (PRINCIPAL, ONLINE),
//! showing progress; every mode, and restore after a crash at every call (the wait
//! included), keeps the invariants of `props::check`. The generated property scenarios draw
//! these estates too (`Scenario::backup_on_mirror`, `Scenario::switch_delay`).
//!
//! The same holds for `FORCE_SERVICE_ALLOW_DATA_LOSS` (disaster recovery with the backup
//! principal down): the fake holds the forced switch (`Options::force_delay`), the run waits
//! for the forced mirror before it opens it, and a switch that does not land in time ends
//! needing a restore with the old source's fence kept (`Scenario::force_delay`).

use backend_fake::fixtures::{self, Options};
use failover_core::{
    Driver, FailoverRequest, Failure, InstanceAddr, Mode, Observer, Outcome, RunEvent, StateName,
};
use failover_testkit::props::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn scenario(kind: Kind, switch_delay: u64) -> Scenario {
    Scenario {
        mirrored: true,
        seed: 11,
        backup_on_mirror: true,
        switch_delay,
        ..Scenario::plain(kind)
    }
}

#[test]
fn a_delayed_role_switch_keeps_the_invariants_in_every_mode_and_at_every_crash_point() {
    let rt = paused_runtime();
    for kind in [Kind::Planned, Kind::Disaster, Kind::Restore] {
        for delay in [0, 7, 40] {
            sweep(
                &rt,
                &scenario(kind, delay),
                &format!("{kind:?} delay={delay}"),
                Sweep {
                    crash_points: 40,
                    fault_seeds: 20,
                    fault_rate: 0.2,
                    cancel_every: None,
                },
            );
        }
    }
}

fn forced_scenario(force_delay: u64, source_down: bool) -> Scenario {
    Scenario {
        mirrored: true,
        seed: 13,
        backup_principal_down: true,
        source_down,
        force_delay,
        ..Scenario::plain(Kind::Disaster)
    }
}

#[test]
fn a_delayed_forced_switch_keeps_the_invariants_at_every_crash_point() {
    let rt = paused_runtime();
    for source_down in [true, false] {
        for delay in [7, 40] {
            sweep(
                &rt,
                &forced_scenario(delay, source_down),
                &format!("forced delay={delay} source_down={source_down}"),
                Sweep {
                    crash_points: 40,
                    fault_seeds: 20,
                    fault_rate: 0.2,
                    cancel_every: Some(3),
                },
            );
        }
    }
}

#[derive(Default)]
struct Progress(Mutex<Vec<String>>);

impl Observer for Progress {
    fn on_event(&self, event: &RunEvent) {
        if let RunEvent::Waiting(p) = event {
            self.0.lock().unwrap().push(p.waiting_for.clone());
        }
    }
}

fn planned_on_mirror(delay: u64) -> (fixtures::Fixture, FailoverRequest) {
    let fx = fixtures::build(
        &Options::default()
            .mirrored(true)
            .backup_on_mirror(true)
            .switch_delay(delay),
    );
    let req = FailoverRequest::new("switch-run", fx.topology.clone(), Mode::Planned).unwrap();
    (fx, req)
}

/// The run is not treated as served by the designated principal until it reports PRINCIPAL
/// and ONLINE: it waits (progress names the switch), then records and verifies it.
/// Runs `req` with a progress observer: it must succeed on `serving` after pausing in the
/// role-switch wait, with `serving` the one writable reachable copy. Returns the progress
/// texts.
fn run_waiting(
    fx: &fixtures::Fixture,
    req: FailoverRequest,
    serving: &InstanceAddr,
) -> Vec<String> {
    let rt = paused_runtime();
    let progress = Arc::new(Progress::default());
    let backend = Arc::new(backend_fake::FakeBackend::new(fx.estate.clone()));
    let report = rt.block_on(
        Driver::new(backend)
            .with_observer(progress.clone())
            .run(req),
    );
    assert!(
        matches!(&report.outcome, Outcome::Succeeded { active, .. } if active == serving),
        "{}",
        report.outcome
    );
    assert!(
        report.states.contains(&StateName::PrincipalPause),
        "{:?}",
        report.states
    );
    let snap = fx.estate.snapshot();
    for d in &fx.topology.databases {
        assert_eq!(snap.writable_reachable_copies(d), vec![serving.clone()]);
    }
    progress.0.lock().unwrap().clone()
}

/// The run is not treated as served by the designated principal until it reports PRINCIPAL
/// and ONLINE: it waits (progress names the switch), then records and verifies it.
#[test]
fn a_planned_run_waits_for_the_designated_principal_with_progress() {
    let (fx, req) = planned_on_mirror(30);
    let b = fx.topology.backup.principal.clone();
    let seen = run_waiting(&fx, req, &b);
    assert!(
        seen.iter()
            .any(|p| p.contains("mirroring role switch") && p.contains("PENDING_FAILOVER")),
        "{seen:?}"
    );
}

/// A switch that does not land in time: the run undoes itself (the source serves, the
/// target store's serving partner is fenced again, so the late switch stays read-only) and
/// says what state the pair is in.
#[test]
fn a_switch_that_does_not_land_in_time_is_rolled_back_with_guidance() {
    let rt = paused_runtime();
    let (fx, mut req) = planned_on_mirror(u64::MAX);
    req.settings.mirror_switch_timeout = Duration::from_secs(10);
    let backend = Arc::new(backend_fake::FakeBackend::new(fx.estate.clone()));
    let report = rt.block_on(Driver::new(backend).run(req));
    assert!(
        matches!(
            (&report.outcome, report.outcome.failure()),
            (
                Outcome::RolledBack { .. },
                Some(Failure::MirrorSwitchTimeout { .. })
            )
        ),
        "{}",
        report.outcome
    );
    let text = report.outcome.to_string();
    assert!(
        text.contains("PENDING_FAILOVER") && text.contains("sys.database_mirroring"),
        "{text}"
    );
    let a = fx.topology.active.principal.clone();
    let snap = fx.estate.snapshot();
    for d in &fx.topology.databases {
        assert_eq!(snap.writable_copies(d), vec![a.clone()]);
        let b2 = fx.topology.backup.mirror.clone().unwrap();
        assert!(snap.database(&b2, d).unwrap().read_only, "{d} fenced again");
    }
}

fn dr_with_the_backup_principal_down(force_delay: u64) -> (fixtures::Fixture, FailoverRequest) {
    let fx = fixtures::build(&Options::default().mirrored(true).force_delay(force_delay));
    for i in fx.topology.active.instances() {
        fx.estate.set_reachable(i, false).unwrap();
    }
    fx.estate
        .set_reachable(&fx.topology.backup.principal, false)
        .unwrap();
    let mode = Mode::DisasterRecovery {
        target: fx.topology.backup.clone(),
    };
    let req = FailoverRequest::new("force-run", fx.topology.clone(), mode).unwrap();
    (fx, req)
}

/// Disaster recovery: the forced mirror is not opened until it reports PRINCIPAL and
/// ONLINE; the wait shows progress naming the forced switch.
#[test]
fn a_disaster_recovery_waits_for_the_forced_mirror_with_progress() {
    let (fx, req) = dr_with_the_backup_principal_down(30);
    let b2 = fx.topology.backup.mirror.clone().unwrap();
    let seen = run_waiting(&fx, req, &b2);
    assert!(
        seen.iter()
            .any(|p| p.contains("forced mirroring role switch")),
        "{seen:?}"
    );
}

/// A forced switch that does not land in time: the run stops needing a restore, opens
/// nothing, says what to check; once the switch lands, the disaster recovery run again
/// finishes from the forced copy.
#[test]
fn a_forced_switch_that_does_not_land_in_time_needs_restore_then_dr_again_finishes() {
    let rt = paused_runtime();
    let (fx, mut req) = dr_with_the_backup_principal_down(1_000);
    req.settings.mirror_switch_timeout = Duration::from_secs(10);
    let backend = Arc::new(backend_fake::FakeBackend::new(fx.estate.clone()));
    let report = rt.block_on(Driver::new(backend.clone()).run(req.clone()));
    assert!(
        matches!(
            (&report.outcome, report.outcome.failure()),
            (
                Outcome::NeedsRestore { .. },
                Some(Failure::ForcedSwitchIncomplete { .. })
            )
        ),
        "{}",
        report.outcome
    );
    let text = report.outcome.to_string();
    assert!(
        text.contains("cannot be undone") && text.contains("sys.database_mirroring"),
        "{text}"
    );
    let b2 = fx.topology.backup.mirror.clone().unwrap();
    for d in &fx.topology.databases {
        assert!(
            fx.estate.snapshot().writable_reachable_copies(d).is_empty(),
            "{d}"
        );
        assert!(fx.estate.force_pending(d, &b2), "{d}");
    }
    fx.estate.advance(1_000);
    let mut again = req;
    again.run_id = "force-run-2".into();
    let report = rt.block_on(Driver::new(backend).run(again));
    assert!(
        matches!(&report.outcome, Outcome::Succeeded { active, .. } if *active == b2),
        "{}",
        report.outcome
    );
    let snap = fx.estate.snapshot();
    for d in &fx.topology.databases {
        assert_eq!(snap.writable_reachable_copies(d), vec![b2.clone()]);
    }
}
