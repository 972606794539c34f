//! The suite fails a backend that breaks the contract (here: a fence that does nothing and
//! errors without the instance), and names the cases.

use async_trait::async_trait;
use backend_fake::{Estate, FakeBackend};
use failover_core::{
    Backend, BackendError, DatabaseName, DatabasePosition, InstanceAddr, InstanceProbe,
    LocationRecord, LockAttempt, MirrorFailoverKind,
};
use failover_testkit::{Harness, Served, Suite};

struct Broken(FakeBackend);

#[async_trait]
impl Backend for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    async fn probe(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        self.0.probe(i, d).await.map_err(|mut e| {
            e.instance = "somewhere".into();
            e
        })
    }
    async fn positions(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        self.0.positions(i, d).await
    }
    async fn set_read_only(
        &self,
        _: &InstanceAddr,
        _: &[DatabaseName],
        _: bool,
    ) -> Result<(), BackendError> {
        Ok(())
    }
    async fn recover(&self, i: &InstanceAddr, d: &[DatabaseName]) -> Result<(), BackendError> {
        self.0.recover(i, d).await
    }
    async fn mirror_failover(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        k: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError> {
        self.0.mirror_failover(i, d, k).await
    }
    async fn acquire_lock(&self, i: &InstanceAddr, r: &str) -> Result<LockAttempt, BackendError> {
        self.0.acquire_lock(i, r).await
    }
    async fn release_lock(&self, i: &InstanceAddr, r: &str) -> Result<(), BackendError> {
        self.0.release_lock(i, r).await
    }
    async fn lock_held(&self, i: &InstanceAddr, r: &str) -> Result<bool, BackendError> {
        self.0.lock_held(i, r).await
    }
    async fn read_location(
        &self,
        i: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        self.0.read_location(i).await
    }
    async fn write_location(
        &self,
        i: &InstanceAddr,
        r: &LocationRecord,
        e: Option<u64>,
    ) -> Result<(), BackendError> {
        self.0.write_location(i, r, e).await
    }
}

struct BrokenHarness;
struct BrokenServed(Estate);

#[async_trait]
impl Harness for BrokenHarness {
    fn name(&self) -> &str {
        "broken"
    }
    async fn serve(&self, estate: Estate) -> Box<dyn Served> {
        Box::new(BrokenServed(estate))
    }
}

#[async_trait]
impl Served for BrokenServed {
    async fn client(&self) -> Box<dyn Backend> {
        Box::new(Broken(FakeBackend::new(self.0.clone())))
    }
}

#[tokio::test]
async fn broken_backend_fails_the_right_cases() {
    let failures = Suite::run(&BrokenHarness, |_| true).await;
    let names: Vec<&str> = failures.iter().map(|f| f.case).collect();
    for expected in [
        "set_read_only_fences",
        "set_read_only_is_idempotent",
        "set_read_only_on_mirror_is_invalid_state",
        "set_read_only_on_missing_database_is_invalid_state",
        "probe_unreachable_instance",
        "errors_carry_operation_and_instance",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not detected; failures: {names:?}"
        );
    }
    for fine in [
        "probe_is_repeatable",
        "recover_is_idempotent",
        "lock_lost_on_disconnect",
    ] {
        assert!(!names.contains(&fine), "{fine} should pass: {failures:?}");
    }
    let f = failures
        .iter()
        .find(|f| f.case == "probe_unreachable_instance")
        .unwrap();
    assert!(
        f.message.contains("[broken]") && f.message.contains("wrong instance"),
        "{}",
        f.message
    );
}
