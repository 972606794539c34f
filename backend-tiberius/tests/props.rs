//! The property tests of every mode (failover-testkit's `props`), run through tiberius
//! against the TDS simulator serving the fake estate: fewer cases than against the fake, with
//! the estate's faults showing up on the wire (errors, delays, hangs, dropped connections).

mod common;

use async_trait::async_trait;
use backend_fake::Estate;
use failover_core::Backend;
use failover_testkit::props::{BackendFactory, Timing, check, scenarios};
use mssql_sim::SimHandle;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Each client gets its own simulator listeners over the shared estate (like a process
/// connecting afresh); the simulator lives as long as the client.
struct SimFactory;

struct Served {
    backend: backend_tiberius::TiberiusBackend,
    _sim: SimHandle,
}

#[async_trait]
impl failover_core::Backend for Served {
    fn name(&self) -> &str {
        self.backend.name()
    }
    fn statements(&self, op: &failover_core::Op) -> Vec<String> {
        self.backend.statements(op)
    }
    async fn probe(
        &self,
        i: &failover_core::InstanceAddr,
        d: &[failover_core::DatabaseName],
    ) -> Result<failover_core::InstanceProbe, failover_core::BackendError> {
        self.backend.probe(i, d).await
    }
    async fn positions(
        &self,
        i: &failover_core::InstanceAddr,
        d: &[failover_core::DatabaseName],
    ) -> Result<Vec<failover_core::DatabasePosition>, failover_core::BackendError> {
        self.backend.positions(i, d).await
    }
    async fn set_read_only(
        &self,
        i: &failover_core::InstanceAddr,
        d: &[failover_core::DatabaseName],
        ro: bool,
    ) -> Result<(), failover_core::BackendError> {
        self.backend.set_read_only(i, d, ro).await
    }
    async fn recover(
        &self,
        i: &failover_core::InstanceAddr,
        d: &[failover_core::DatabaseName],
    ) -> Result<(), failover_core::BackendError> {
        self.backend.recover(i, d).await
    }
    async fn mirror_failover(
        &self,
        i: &failover_core::InstanceAddr,
        d: &[failover_core::DatabaseName],
        k: failover_core::MirrorFailoverKind,
    ) -> Result<failover_core::InstanceAddr, failover_core::BackendError> {
        self.backend.mirror_failover(i, d, k).await
    }
    async fn acquire_lock(
        &self,
        i: &failover_core::InstanceAddr,
        r: &str,
    ) -> Result<failover_core::LockAttempt, failover_core::BackendError> {
        self.backend.acquire_lock(i, r).await
    }
    async fn release_lock(
        &self,
        i: &failover_core::InstanceAddr,
        r: &str,
    ) -> Result<(), failover_core::BackendError> {
        self.backend.release_lock(i, r).await
    }
    async fn lock_held(
        &self,
        i: &failover_core::InstanceAddr,
        r: &str,
    ) -> Result<bool, failover_core::BackendError> {
        self.backend.lock_held(i, r).await
    }
    async fn read_location(
        &self,
        i: &failover_core::InstanceAddr,
    ) -> Result<Option<failover_core::LocationRecord>, failover_core::BackendError> {
        self.backend.read_location(i).await
    }
    async fn write_location(
        &self,
        i: &failover_core::InstanceAddr,
        r: &failover_core::LocationRecord,
        e: Option<u64>,
    ) -> Result<(), failover_core::BackendError> {
        self.backend.write_location(i, r, e).await
    }
}

#[async_trait]
impl BackendFactory for SimFactory {
    async fn connect(&self, estate: &Estate) -> Arc<dyn Backend> {
        let sim = common::serve(estate.clone()).await;
        let backend = common::backend_with(&sim, Duration::from_secs(5));
        Arc::new(Served { backend, _sim: sim })
    }
}

fn cases() -> u32 {
    std::env::var("CMS_FAILOVER_WIRE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, max_shrink_iters: 64, ..ProptestConfig::default() })]
    #[test]
    fn every_mode_keeps_the_invariants_over_tds(sc in scenarios()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let timing = Timing { hang_as_delay: Some(Duration::from_millis(1600)), ..Timing::wire() };
        if let Err(e) = rt.block_on(check(&SimFactory, &sc, timing)) {
            prop_assert!(false, "{e}");
        }
    }
}
