//! Property tests of every mode against the in-memory fake (paused time), in two shards
//! (different seeds) that the test harness runs in parallel. `CMS_FAILOVER_PROPTEST_CASES`
//! sets the number of cases per shard (default 25,000: 50,000 histories per CI run); the
//! seed is derived from the commit and printed with the replay command.

use failover_testkit::props::{
    FAKE_CASES_VAR, FakeFactory, Timing, cases_from_env, check, proptest_config, scenarios,
};
use proptest::prelude::*;

fn cases() -> u32 {
    cases_from_env(FAKE_CASES_VAR, 25_000)
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
    #![proptest_config(proptest_config(
        cases(),
        FAKE_CASES_VAR,
        "-p failover-testkit --test props_fake -- every_mode_keeps_the_invariants_shard_0 --exact",
        0,
    ))]
    #[test]
    fn every_mode_keeps_the_invariants_shard_0(sc in scenarios()) {
        if let Err(e) = run(&sc) {
            prop_assert!(false, "{e}");
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(
        cases(),
        FAKE_CASES_VAR,
        "-p failover-testkit --test props_fake -- every_mode_keeps_the_invariants_shard_1 --exact",
        1,
    ))]
    #[test]
    fn every_mode_keeps_the_invariants_shard_1(sc in scenarios()) {
        if let Err(e) = run(&sc) {
            prop_assert!(false, "{e}");
        }
    }
}
