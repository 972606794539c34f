//! The property tests' seed: derived from the commit being tested (so every commit checks
//! new histories), overridden by `PROPTEST_RNG_SEED` (replays), printed with a replay command.

use failover_testkit::props::{SeedSource, read_seed, replay_command, seed};

#[test]
fn the_seed_follows_the_commit_and_the_environment_overrides_it() {
    // SAFETY: the only test in this binary; no other thread reads the environment.
    unsafe {
        std::env::remove_var("PROPTEST_RNG_SEED");
        std::env::remove_var("CMS_FAILOVER_PROPTEST_RANDOM");
    }
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    let (s, source) = read_seed();
    match head {
        Some(head) => {
            assert_eq!(source, SeedSource::Commit(head.clone()));
            assert_eq!(s, u64::from_str_radix(&head[..16], 16).unwrap());
        }
        None => assert_eq!(source, SeedSource::Fallback),
    }
    // SAFETY: as above.
    unsafe { std::env::set_var("PROPTEST_RNG_SEED", "12345") };
    assert_eq!(read_seed(), (12345, SeedSource::Env));
    assert_eq!(
        replay_command(12345, "CMS_FAILOVER_PROPTEST_CASES", 7, "-p x --test y"),
        "PROPTEST_RNG_SEED=12345 CMS_FAILOVER_PROPTEST_CASES=7 cargo test -p x --test y"
    );
    // SAFETY: as above.
    unsafe { std::env::remove_var("PROPTEST_RNG_SEED") };
    // A random seed is drawn once: the replay command printed names the seed the runs use.
    // SAFETY: as above.
    unsafe { std::env::set_var("CMS_FAILOVER_PROPTEST_RANDOM", "1") };
    let first = seed();
    assert_eq!(first.1, SeedSource::Random);
    assert_eq!(seed(), first);
    assert_eq!(read_seed().1, SeedSource::Random);
    // SAFETY: as above.
    unsafe { std::env::remove_var("CMS_FAILOVER_PROPTEST_RANDOM") };
}
