//! Replays one scenario with the run reports printed (set the fields below by hand).
use failover_testkit::props::*;

#[test]
#[ignore = "debugging aid: edit the scenario and run with --ignored --nocapture"]
fn replay() {
    let sc = Scenario {
        kind: Kind::Disaster,
        mirrored: true,
        backup_mirrored: false,
        restoring_standby: false,
        log_shipping_standby: false,
        lag: 28,
        stalled: false,
        seed: 13798470707012001936,
        fault_rate: 0.012399784852509296,
        crash_at: Some((18, false)),
        cancel_at: None,
        what_if: true,
        source_down: false,
        backup_principal_down: false,
        concurrent: false,
        stall_before_fence: false,
        gate: None,
        read_only_refused_on_mirroring_principal: true,
        backup_on_mirror: true,
        switch_delay: 58,
        automatic_failover: None,
        witness_flip: None,
        source_lost_at: None,
        force_delay: 0,
    };
    // SAFETY: single-threaded test setup.
    unsafe { std::env::set_var("CMS_FAILOVER_PROPTEST_DEBUG", "1") };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let r = rt.block_on(check(&FakeFactory, &sc, Timing::paused()));
    println!("{r:?}");
}
