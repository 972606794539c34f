//! Fault determinism and how FakeBackend manifests faults.

use backend_fake::fixtures::{self};
use backend_fake::{
    FakeBackend, Fault, FaultConfig, FaultRates, ScriptedFault, SqlError, TimeoutFault,
};
use failover_core::{Backend, ErrorKind, InstanceAddr, LockAttempt, Operation};
use std::time::Duration;

fn sequence(
    seed: u64,
    addr: &InstanceAddr,
    interleave: Option<&InstanceAddr>,
) -> Vec<Option<Fault>> {
    let f = fixtures::standard();
    let rates = FaultRates::none()
        .transient(0.1)
        .timeout(0.1)
        .unreachable(0.1)
        .permission(0.05)
        .invalid_state(0.05)
        .fatal(0.05)
        .delay(0.1)
        .crash(0.05);
    f.estate
        .set_faults(FaultConfig::seeded(seed).with_default_rates(rates));
    (0..300)
        .map(|_| {
            if let Some(other) = interleave {
                f.estate.fault_for(other, Operation::SetReadOnly);
                f.estate.fault_for(addr, Operation::Probe);
            }
            f.estate.fault_for(addr, Operation::SetReadOnly)
        })
        .collect()
}

#[test]
fn same_seed_same_faults_regardless_of_other_calls() {
    let a = fixtures::active();
    let b = fixtures::backup();
    let s1 = sequence(42, &a, None);
    assert_eq!(s1, sequence(42, &a, None));
    assert_eq!(
        s1,
        sequence(42, &a, Some(&b)),
        "calls on other instances/operations do not shift it"
    );
    assert_ne!(s1, sequence(43, &a, None));
    let faults = s1.iter().filter(|f| f.is_some()).count();
    assert!(
        (100..=200).contains(&faults),
        "about 60% of 300 calls: {faults}"
    );
    for kind in [
        |f: &Fault| matches!(f, Fault::Hang),
        |f: &Fault| matches!(f, Fault::Disconnect),
        |f: &Fault| matches!(f, Fault::Delay(_)),
        |f: &Fault| matches!(f, Fault::Crash { .. }),
        |f: &Fault| matches!(f, Fault::Error(e) if e.number == 5061 || e.number == 1205),
        |f: &Fault| matches!(f, Fault::Error(e) if e.number == 18456 || e.number == 229),
    ] {
        assert!(s1.iter().flatten().any(kind));
    }
}

#[test]
fn per_operation_rates_and_disable() {
    let f = fixtures::standard();
    let a = fixtures::active();
    f.estate.set_faults(
        FaultConfig::seeded(7)
            .with_rates(Operation::SetReadOnly, FaultRates::none().transient(1.0))
            .with_timeout_as(TimeoutFault::Delay(Duration::from_secs(1))),
    );
    assert_eq!(f.estate.fault_for(&a, Operation::Probe), None);
    assert!(matches!(
        f.estate.fault_for(&a, Operation::SetReadOnly),
        Some(Fault::Error(_))
    ));
    f.estate.set_faults_enabled(false);
    assert_eq!(f.estate.fault_for(&a, Operation::SetReadOnly), None);
}

#[test]
fn scripted_fault_hits_the_nth_call_on_that_instance() {
    let f = fixtures::standard();
    let (a, b) = (fixtures::active(), fixtures::backup());
    let e = Fault::Error(SqlError::could_not_lock("xds"));
    f.estate.set_faults(
        FaultConfig::seeded(0)
            .script(ScriptedFault::on(&a, Operation::SetReadOnly, 3, e.clone()))
            .script(ScriptedFault::any(Operation::Probe, 2, Fault::Hang)),
    );
    assert_eq!(f.estate.fault_for(&a, Operation::SetReadOnly), None);
    assert_eq!(f.estate.fault_for(&b, Operation::SetReadOnly), None);
    assert_eq!(f.estate.fault_for(&a, Operation::SetReadOnly), None);
    assert_eq!(f.estate.fault_for(&a, Operation::SetReadOnly), Some(e));
    assert_eq!(f.estate.fault_for(&a, Operation::Probe), None);
    assert_eq!(f.estate.fault_for(&b, Operation::Probe), Some(Fault::Hang));
}

fn scripted(fault: Fault, op: Operation) -> (fixtures::Fixture, FakeBackend) {
    let f = fixtures::standard();
    f.estate
        .set_faults(FaultConfig::seeded(0).script(ScriptedFault::on(
            &fixtures::active(),
            op,
            1,
            fault,
        )));
    let b = FakeBackend::new(f.estate.clone());
    (f, b)
}

#[tokio::test]
async fn error_fault_is_classified_with_operation_and_instance() {
    let (f, b) = scripted(
        Fault::Error(SqlError::could_not_lock("xds")),
        Operation::SetReadOnly,
    );
    let a = fixtures::active();
    let err = b
        .set_read_only(&a, &fixtures::databases(), true)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(err.operation, Operation::SetReadOnly);
    assert_eq!(err.instance, a.to_string());
    assert_eq!(err.code, Some(5061));
    assert!(
        f.estate
            .snapshot()
            .database(&a, &fixtures::databases()[0])
            .unwrap()
            .is_writable()
    );
    // The retry succeeds.
    b.set_read_only(&a, &fixtures::databases(), true)
        .await
        .unwrap();
    assert!(
        f.estate
            .snapshot()
            .writable_copies(&fixtures::databases()[0])
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn hang_never_completes_and_changes_nothing() {
    let (f, b) = scripted(Fault::Hang, Operation::SetReadOnly);
    let a = fixtures::active();
    let r = tokio::time::timeout(
        Duration::from_secs(3600),
        b.set_read_only(&a, &fixtures::databases(), true),
    )
    .await;
    assert!(r.is_err(), "timed out");
    assert_eq!(
        f.estate
            .snapshot()
            .writable_copies(&fixtures::databases()[0]),
        vec![a]
    );
}

#[tokio::test(start_paused = true)]
async fn delay_then_applies() {
    let (f, b) = scripted(Fault::Delay(Duration::from_secs(5)), Operation::SetReadOnly);
    let a = fixtures::active();
    let started = tokio::time::Instant::now();
    b.set_read_only(&a, &fixtures::databases(), true)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(
        f.estate
            .snapshot()
            .writable_copies(&fixtures::databases()[0])
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn crash_applies_or_not_and_never_returns() {
    for applied in [true, false] {
        let (f, b) = scripted(Fault::Crash { applied }, Operation::SetReadOnly);
        let a = fixtures::active();
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            b.set_read_only(&a, &fixtures::databases(), true),
        )
        .await;
        assert!(r.is_err());
        let fenced = f
            .estate
            .snapshot()
            .writable_copies(&fixtures::databases()[0])
            .is_empty();
        assert_eq!(fenced, applied);
    }
}

#[tokio::test]
async fn disconnect_loses_the_lock_and_reconnects() {
    let f = fixtures::standard();
    let a = fixtures::active();
    f.estate
        .set_faults(FaultConfig::seeded(0).script(ScriptedFault::on(
            &a,
            Operation::CheckLock,
            1,
            Fault::Disconnect,
        )));
    let b1 = FakeBackend::new(f.estate.clone());
    let b2 = FakeBackend::new(f.estate.clone());
    assert_eq!(
        b1.acquire_lock(&a, "cms").await.unwrap(),
        LockAttempt::Granted
    );
    assert_eq!(b2.acquire_lock(&a, "cms").await.unwrap(), LockAttempt::Held);
    let err = b1.lock_held(&a, "cms").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unreachable);
    assert_eq!(err.operation, Operation::CheckLock);
    assert!(
        !b1.lock_held(&a, "cms").await.unwrap(),
        "new session, lock gone"
    );
    assert_eq!(
        b2.acquire_lock(&a, "cms").await.unwrap(),
        LockAttempt::Granted
    );
}

#[tokio::test]
async fn dropping_the_backend_releases_its_locks() {
    let f = fixtures::standard();
    let a = fixtures::active();
    let b1 = FakeBackend::new(f.estate.clone());
    b1.acquire_lock(&a, "cms").await.unwrap();
    assert!(f.estate.snapshot().lock_holder(&a, "cms").is_some());
    drop(b1);
    assert!(f.estate.snapshot().lock_holder(&a, "cms").is_none());
}

#[tokio::test]
async fn wrong_login_is_permission() {
    let f = fixtures::standard();
    let b = FakeBackend::new(f.estate.clone()).with_login(fixtures::LOGIN_USER, "nope");
    let err = b
        .probe(&fixtures::active(), &fixtures::databases())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permission);
    assert_eq!(err.code, Some(18456));
    assert!(!format!("{b:?}").contains("nope"), "no password in Debug");
    let ok = FakeBackend::new(f.estate.clone())
        .with_login(fixtures::LOGIN_USER, fixtures::LOGIN_PASSWORD);
    ok.probe(&fixtures::active(), &fixtures::databases())
        .await
        .unwrap();
}
