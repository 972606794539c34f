//! Property tests of the directory as the commit point (see `failover_testkit::dir_props`):
//! directory faults and crash points before and after the swap, against the in-memory fake
//! under paused time. `CMS_FAILOVER_DIR_PROPTEST_CASES` sets the number of cases (default
//! 3,000); the seed is derived from the commit and printed with the replay command.

use failover_testkit::dir_props::{check_directory, dir_scenarios};
use failover_testkit::props::{cases_from_env, proptest_config};
use proptest::prelude::*;

const CASES_VAR: &str = "CMS_FAILOVER_DIR_PROPTEST_CASES";

fn run(sc: &failover_testkit::dir_props::DirScenario) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(check_directory(sc))
}

proptest! {
    #![proptest_config(proptest_config(
        cases_from_env(CASES_VAR, 3_000),
        CASES_VAR,
        "-p failover-testkit --test props_directory -- the_directory_names_the_single_writable_store --exact",
        7,
    ))]
    #[test]
    fn the_directory_names_the_single_writable_store(sc in dir_scenarios()) {
        if let Err(e) = run(&sc) {
            prop_assert!(false, "{e}");
        }
    }
}
