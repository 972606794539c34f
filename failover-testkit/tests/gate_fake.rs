//! The fake Backup Service gate against the fake estate: an honest gate lets a lagging
//! planned failover through only once the backup caught up after the fence; a failing
//! command refuses before any change; a gate that never reaches `FinalState` rolls back.

use backend_fake::FakeBackend;
use backend_fake::fixtures::{self, Options};
use failover_core::backup_service::ExportState::{self, *};
use failover_core::{BackupServiceSettings, Driver, FailoverRequest, Mode, Outcome, Refusal};
use failover_testkit::gate::{FakeGate, GateAnswer};
use std::sync::Arc;
use std::time::Duration;

async fn run(opts: Options, script: Vec<GateAnswer>) -> (Outcome, Vec<ExportState>, bool) {
    let fx = fixtures::build(&opts);
    let gate = Arc::new(FakeGate::new(
        fx.estate.clone(),
        fx.topology.clone(),
        script,
        Duration::from_secs(2),
        true,
    ));
    let mut req = FailoverRequest::new("g", fx.topology.clone(), Mode::Planned).unwrap();
    req.settings.backup_service = Some(BackupServiceSettings {
        final_state_timeout: Duration::from_secs(20),
        poll_interval: Duration::from_millis(500),
    });
    let report = Driver::new(Arc::new(FakeBackend::new(fx.estate.clone())))
        .with_backup_service(gate.clone())
        .run(req)
        .await;
    let a = &fx.topology.active.principal;
    let source_writable = fx.estate.snapshot().instances[a]
        .databases
        .iter()
        .all(|d| d.is_writable());
    let states = gate.answers().into_iter().map(|(_, s)| s).collect();
    (report.outcome, states, source_writable)
}

#[tokio::test(start_paused = true)]
async fn an_honest_gate_lets_a_lagging_failover_through_after_final_state() {
    let script = vec![
        GateAnswer::State(NonSteadyState),
        GateAnswer::State(SteadyState),
        GateAnswer::State(SteadyState),
    ];
    let (o, states, _) = run(Options::default().lag(20), script).await;
    assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
    // A backlog waited out, SteadyState passes the gate, SteadyState after the fence is
    // waited for, then the estate's FinalState.
    assert_eq!(
        states,
        [NonSteadyState, SteadyState, SteadyState, FinalState],
        "{states:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_or_stuck_command_refuses_before_any_change() {
    for answer in [GateAnswer::Fails, GateAnswer::Garbage] {
        let (o, _, writable) = run(Options::default(), vec![answer]).await;
        assert!(
            matches!(o.refusal(), Some(Refusal::BackupServiceUnreadable { .. })),
            "{o}"
        );
        assert!(writable);
    }
    // Stuck and timing out are retried (a time-out may pass): four stuck calls refuse.
    let (o, _, writable) = run(Options::default(), vec![GateAnswer::Stuck; 4]).await;
    assert!(
        matches!(o.refusal(), Some(Refusal::BackupServiceUnreadable { error }) if error.kind == failover_core::ErrorKind::Timeout),
        "{o}"
    );
    assert!(writable);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_copy_after_the_fence_rolls_back() {
    // The gate passes on SteadyState; the stalled link never lets the backup catch up.
    let script = vec![GateAnswer::State(SteadyState)];
    let (o, states, writable) = run(Options::default().lag(3).stalled(true), script).await;
    assert!(
        matches!(
            o.failure(),
            Some(failover_core::Failure::BackupServiceTimeout { .. })
        ),
        "{o}"
    );
    assert!(matches!(o, Outcome::RolledBack { .. }), "{o}");
    assert!(!states.contains(&FinalState), "{states:?}");
    assert!(writable);
}
