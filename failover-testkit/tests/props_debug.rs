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
        lag: 0,
        stalled: false,
        seed: 18162334579999754586,
        fault_rate: 0.0729816497721346,
        crash_at: None,
        cancel_at: Some(3),
        what_if: false,
        source_down: false,
        backup_principal_down: true,
        concurrent: false,
        stall_before_fence: false,
        gate: None,
        read_only_refused_on_mirroring_principal: false,
        backup_on_mirror: false,
        switch_delay: 0,
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
