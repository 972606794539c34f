//! Issue 12 item 2 at machine level: `SET PARTNER FAILOVER` returns before the roles switch
//! ("can complete successfully when entered, but fail later":
//! <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>).
//! The backup store is served by its mirror partner, so a planned failover gives the
//! principal role back with `SET PARTNER FAILOVER`, and the fake holds the switch for a
//! number of estate ticks. The run waits for the designated principal (PRINCIPAL, ONLINE),
//! showing progress; every mode, and restore after a crash at every call (the wait
//! included), keeps the invariants of `props::check`. The generated property scenarios draw
//! these estates too (`Scenario::backup_on_mirror`, `Scenario::switch_delay`).

use backend_fake::fixtures::{self, Options};
use failover_core::{
    Driver, FailoverRequest, Failure, Mode, Observer, Outcome, RunEvent, StateName,
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
#[test]
fn a_planned_run_waits_for_the_designated_principal_with_progress() {
    let rt = paused_runtime();
    let (fx, req) = planned_on_mirror(30);
    let progress = Arc::new(Progress::default());
    let backend = Arc::new(backend_fake::FakeBackend::new(fx.estate.clone()));
    let report = rt.block_on(
        Driver::new(backend)
            .with_observer(progress.clone())
            .run(req),
    );
    let b = fx.topology.backup.principal.clone();
    assert!(
        matches!(&report.outcome, Outcome::Succeeded { active, .. } if *active == b),
        "{}",
        report.outcome
    );
    assert!(
        report.states.contains(&StateName::PrincipalPause),
        "{:?}",
        report.states
    );
    let seen = progress.0.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|p| p.contains("mirroring role switch") && p.contains("PENDING_FAILOVER")),
        "{seen:?}"
    );
    let snap = fx.estate.snapshot();
    for d in &fx.topology.databases {
        assert_eq!(snap.writable_copies(d), vec![b.clone()]);
    }
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
