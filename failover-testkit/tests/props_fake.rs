//! Property tests of every mode against the in-memory fake (paused time).

use failover_testkit::props::{FakeFactory, Timing, check, rng_seed, scenarios};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("CMS_FAILOVER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn run(sc: &failover_testkit::props::Scenario) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(check(&FakeFactory, sc, Timing::paused()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), rng_seed: rng_seed(), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn every_mode_keeps_the_invariants(sc in scenarios()) {
        if let Err(e) = run(&sc) {
            prop_assert!(false, "{e}");
        }
    }
}
