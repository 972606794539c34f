//! The property tests of every mode, through tiberius and TDS against the simulator, with
//! faults on the wire. Fewer cases than against the fake (each costs real sockets and
//! real timeouts): `CMS_FAILOVER_TIBERIUS_PROPTEST_CASES` (default 24).

mod common;

use backend_fake::Estate;
use failover_core::Backend;
use failover_testkit::props::{BackendFactory, Scenario, Timing, check, scenarios};
use mssql_sim::SimHandle;
use proptest::prelude::*;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Serves the scenario's estate once (on first connect) and hands out fresh backends.
struct WireFactory {
    sim: OnceCell<SimHandle>,
    timing: Timing,
}

#[async_trait::async_trait]
impl BackendFactory for WireFactory {
    async fn connect(&self, estate: &Estate) -> Arc<dyn Backend> {
        let sim = self.sim.get_or_init(|| common::serve(estate.clone())).await;
        Arc::new(common::backend_with(sim, self.timing.step))
    }
}

fn cases() -> u32 {
    std::env::var("CMS_FAILOVER_TIBERIUS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

fn run(sc: &Scenario) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let timing = Timing::wire();
        let factory = WireFactory {
            sim: OnceCell::new(),
            timing,
        };
        check(&factory, sc, timing).await
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn every_mode_keeps_the_invariants_over_tds(sc in scenarios()) {
        if let Err(e) = run(&sc) {
            prop_assert!(false, "{e}");
        }
    }
}
