//! The driver over the fake estate committing to the in-memory directory: the report's
//! directory step, its DC and each DC's value after; what-if shows the request and changes
//! nothing; a lagging DC is reported with its value.

use backend_fake::fixtures::{self, Options};
use backend_fake::{FakeBackend, FakeDirectory};
use failover_core::{
    CmsLocation, Directory, Driver, FailoverRequest, Mode, Outcome, Refusal, StateName,
};
use std::sync::Arc;
use std::time::Duration;

fn setup(dcs: usize) -> (fixtures::Fixture, Arc<FakeDirectory>) {
    let fx = fixtures::build(&Options::default());
    let dir = Arc::new(FakeDirectory::new(
        CmsLocation::of_store(&fx.topology.active),
        dcs,
    ));
    (fx, dir)
}

/// AD replication: copies the newest value to the DCs that are not lagging, now and then.
fn replicating(dir: &Arc<FakeDirectory>) -> tokio::task::JoinHandle<()> {
    let dir = dir.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            dir.replicate();
        }
    })
}

fn planned(fx: &fixtures::Fixture) -> FailoverRequest {
    let mut r = FailoverRequest::new("run-d", fx.topology.clone(), Mode::Planned).unwrap();
    r.settings.poll_interval = Duration::from_millis(200);
    r.settings.directory_timeout = Duration::from_secs(2);
    r
}

#[tokio::test(start_paused = true)]
async fn the_report_shows_the_directory_step_and_every_dc_after() {
    let (fx, dir) = setup(2);
    let replication = replicating(&dir);
    let driver =
        Driver::new(Arc::new(FakeBackend::new(fx.estate.clone()))).with_directory(dir.clone());
    let report = driver.run(planned(&fx)).await;
    replication.abort();
    // The second DC got the value by replication while the run waited for it.
    assert!(
        report.states.contains(&StateName::DirectoryPause),
        "{:?}",
        report.states
    );
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{}",
        report.outcome
    );
    let want = CmsLocation::of_store(&fx.topology.backup);
    let d = report.directory.as_ref().expect("a directory report");
    assert_eq!(d.name, "fake");
    assert_eq!(d.dc.as_deref(), Some("dc01.cms.test"));
    assert_eq!(d.after.len(), 2);
    assert!(
        d.after
            .iter()
            .all(|v| v.converged && v.value.as_ref() == Some(&want))
    );
    let step = report
        .steps
        .iter()
        .find(|s| s.state == StateName::RecordingLocation)
        .expect("the directory step");
    assert_eq!(step.ops[0].op.target(), "dc01.cms.test");
    assert_eq!(dir.swaps().len(), 1);
    // The SQL record followed the directory on every instance.
    let snap = fx.estate.snapshot();
    for i in fx.topology.instances() {
        assert_eq!(
            snap.location(i).map(|r| &r.active),
            Some(&fx.topology.backup),
            "{i}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn what_if_shows_the_swap_and_changes_nothing() {
    let (fx, dir) = setup(1);
    let before = fx.estate.history().len();
    let mut req = planned(&fx);
    req.what_if = true;
    let report = Driver::new(Arc::new(FakeBackend::new(fx.estate.clone())))
        .with_directory(dir.clone())
        .run(req)
        .await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{}",
        report.outcome
    );
    let step = report
        .plan()
        .into_iter()
        .find(|s| s.state == StateName::RecordingLocation)
        .expect("the swap is in the plan");
    assert!(!step.executed);
    assert!(
        step.ops[0].sql[0].contains("sql-b.cms.test\\RTC"),
        "{:?}",
        step.ops[0].sql
    );
    assert!(dir.swaps().is_empty());
    assert_eq!(
        dir.value_on("dc01.cms.test"),
        Some(CmsLocation::of_store(&fx.topology.active))
    );
    let changes =
        failover_testkit::props::db_changes_between(&fx.estate, before, fx.estate.history().len());
    assert!(changes.is_empty(), "{changes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_lagging_dc_is_reported_with_its_value_not_failed() {
    let (fx, dir) = setup(2);
    dir.set_lagging("dc02.cms.test", true);
    let _replication = replicating(&dir);
    let report = Driver::new(Arc::new(FakeBackend::new(fx.estate.clone())))
        .with_directory(dir.clone())
        .run(planned(&fx))
        .await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{}",
        report.outcome
    );
    let old = CmsLocation::of_store(&fx.topology.active);
    let d = report.directory.unwrap();
    assert_eq!(d.after[1].value.as_ref(), Some(&old));
    assert!(!d.after[1].converged);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("dc02.cms.test still returns")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test(start_paused = true)]
async fn a_directory_pointing_elsewhere_refuses_before_any_change() {
    let (fx, dir) = setup(1);
    dir.change_behind_our_back("dc01.cms.test", CmsLocation::of_store(&fx.topology.backup));
    let before = fx.estate.snapshot();
    let report = Driver::new(Arc::new(FakeBackend::new(fx.estate.clone())))
        .with_directory(dir.clone())
        .run(planned(&fx))
        .await;
    assert!(
        matches!(
            report.outcome.refusal(),
            Some(Refusal::DirectoryMismatch { .. })
        ),
        "{}",
        report.outcome
    );
    assert_eq!(report.outcome.exit_code(), 3);
    let after = fx.estate.snapshot();
    for i in fx.topology.instances() {
        assert_eq!(after.location(i), before.location(i), "{i}");
        for db in &fx.topology.databases {
            assert_eq!(
                after.database(i, db).map(|d| d.is_writable()),
                before.database(i, db).map(|d| d.is_writable()),
                "nothing changed on {i}"
            );
        }
    }
    assert!(dir.swaps().is_empty());
    let _ = dir.domain_controllers();
}

/// The SQL record as the directory: a swap whose record write fails as `InvalidState`
/// (taken for "someone else wrote a record first") is read back, and it counts as landed
/// only with the new value at the swap's epoch or later. A stale record that already names
/// the new store (a publish that failed after an earlier failover there) is not the swap:
/// the swap fails, the record keeps its old epoch; without the fault the same swap writes it.
#[tokio::test(start_paused = true)]
async fn a_record_swap_read_back_as_the_stale_value_did_not_land() {
    use backend_fake::{Fault, FaultConfig, ScriptedFault, SqlError};
    use failover_core::{Operation, SqlRecordDirectory, SwapStamp};
    let fx = fixtures::build(&Options::default());
    let a = fx.topology.active.principal.clone();
    let dir = SqlRecordDirectory::new(
        Arc::new(FakeBackend::new(fx.estate.clone())),
        fx.topology.clone(),
    );
    let value = CmsLocation::of_store(&fx.topology.active);
    let old_epoch = fx.estate.snapshot().location(&a).map(|r| r.epoch);
    let stamp = SwapStamp {
        epoch: 100,
        run_id: "run-s".into(),
    };
    fx.estate
        .set_faults(FaultConfig::default().script(ScriptedFault::on(
            &a,
            Operation::WriteLocation,
            1,
            Fault::Error(SqlError::alter_failed("injected")),
        )));
    fx.estate.set_faults_enabled(true);
    let r = dir
        .compare_and_swap_stamped(&a.to_string(), &value, &value, &stamp)
        .await;
    assert!(r.is_err(), "the stale value is not the swap: {r:?}");
    let epoch = || fx.estate.snapshot().location(&a).map(|r| r.epoch);
    assert_eq!(epoch(), old_epoch, "nothing written");
    dir.compare_and_swap_stamped(&a.to_string(), &value, &value, &stamp)
        .await
        .expect("the swap without the fault");
    assert_eq!(epoch(), Some(100));
}
