//! The property tests of every mode (failover-testkit's `props`), run through tiberius
//! against the TDS simulator serving the fake estate: fewer cases than against the fake, with
//! the estate's faults showing up on the wire (errors, delays, late answers, dropped
//! connections). `CMS_FAILOVER_WIRE_PROPTEST_CASES` sets the number of cases (default 48).

mod common;

use async_trait::async_trait;
use backend_fake::Estate;
use failover_core::Backend;
use failover_testkit::props::{BackendFactory, WithGuard, run_wire_properties};
use std::sync::Arc;
use std::time::Duration;

/// Each client gets its own simulator listeners over the shared estate (like a process
/// connecting afresh); the simulator lives as long as the client.
struct SimFactory;

#[async_trait]
impl BackendFactory for SimFactory {
    async fn connect(&self, estate: &Estate) -> Arc<dyn Backend> {
        let sim = common::serve(estate.clone()).await;
        let backend = Arc::new(common::backend_with(&sim, Duration::from_secs(5)));
        Arc::new(WithGuard::new(backend, sim))
    }
}

#[test]
fn every_mode_keeps_the_invariants_over_tds() {
    let cases = std::env::var("CMS_FAILOVER_WIRE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    run_wire_properties(&SimFactory, cases);
}
