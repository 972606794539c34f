//! The property tests of every mode (failover-testkit's `props`), run through tiberius
//! against the TDS simulator serving the fake estate: fewer cases than against the fake, with
//! the estate's faults showing up on the wire (errors, delays, late answers, dropped
//! connections). `CMS_FAILOVER_WIRE_PROPTEST_CASES` sets the number of cases (default 250; with the
//! other SQL backend's, 500 per CI run). The seed is derived from the commit and printed.

mod common;

use async_trait::async_trait;
use backend_fake::Estate;
use failover_core::Backend;
use failover_testkit::props::{
    BackendFactory, WIRE_CASES_VAR, WithGuard, cases_from_env, run_wire_properties,
};
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
    let cases = cases_from_env(WIRE_CASES_VAR, 250);
    run_wire_properties(
        &SimFactory,
        cases,
        "-p backend-tiberius --test props -- every_mode_keeps_the_invariants_over_tds --exact",
        0,
    );
}
