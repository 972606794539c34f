//! Driver unit tests over a mockall backend: the driver's own duties (retries, timeouts,
//! what-if touching nothing, refusals) independent of any real backend.

use crate::backend::*;
use crate::driver::Driver;
use crate::error::{BackendError, ErrorKind, Operation};
use crate::model::*;
use crate::outcome::{Outcome, Refusal, ServingProblem, StoreRole};
use crate::request::{FailoverRequest, Mode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn addr(s: &str) -> InstanceAddr {
    InstanceAddr::parse(s).unwrap()
}

fn topo() -> Topology {
    Topology::new(
        Store::new(addr("a.test"), None).unwrap(),
        Store::new(addr("b.test"), None).unwrap(),
        DatabaseName::cms_defaults(),
    )
    .unwrap()
}

fn probe(i: &InstanceAddr, dbs: &[DatabaseName], read_only: bool) -> InstanceProbe {
    InstanceProbe {
        instance: i.clone(),
        version: "Microsoft SQL Server 2019".into(),
        databases: dbs
            .iter()
            .map(|d| DatabaseProbe {
                in_standby: false,
                name: d.clone(),
                state: DbState::Online,
                read_only,
                mirroring: None,
            })
            .collect(),
        rights: None,
    }
}

type ReadOnly = Arc<std::sync::Mutex<std::collections::HashMap<String, bool>>>;

/// A mock with a healthy estate: A writable, B read-only standby, both caught up at 10.
/// The read-only flag per host lives in `READ_ONLY` so probes see the fence.
fn healthy_with(ro: ReadOnly) -> MockBackend {
    let mut m = MockBackend::new();
    m.expect_name().return_const("mock".to_string());
    m.expect_statements().returning(|_| Vec::new());
    m.expect_warnings().returning(Vec::new);
    m.expect_probe().returning(move |i, d| {
        let r = *ro
            .lock()
            .unwrap()
            .get(i.host().as_str())
            .unwrap_or(&(i.host().as_str() == "b.test"));
        Ok(probe(i, d, r))
    });
    m.expect_read_location().returning(|_| Ok(None));
    m.expect_positions().returning(|_, d| {
        Ok(d.iter()
            .map(|d| DatabasePosition {
                database: d.clone(),
                position: Some(Position(10)),
            })
            .collect())
    });
    m
}

fn healthy() -> MockBackend {
    healthy_with(ReadOnly::default())
}

#[tokio::test(start_paused = true)]
async fn what_if_never_calls_a_mutating_operation() {
    let mut m = healthy();
    m.expect_set_read_only().never();
    m.expect_recover().never();
    m.expect_mirror_failover().never();
    m.expect_acquire_lock().never();
    m.expect_release_lock().never();
    m.expect_write_location().never();
    m.expect_lock_held().never();
    let mut req = FailoverRequest::new("r1", topo(), Mode::Planned).unwrap();
    req.what_if = true;
    let report = Driver::new(Arc::new(m)).run(req).await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{:?}",
        report.outcome
    );
    let plan = report.plan();
    assert!(plan.iter().any(|s| s.description.contains("fence")));
    let swap = plan
        .iter()
        .find(|s| s.description.contains("point the directory at the target"))
        .expect("the directory step is in the plan");
    // What-if shows the request the swap would send (here the SQL record's).
    assert!(
        swap.ops[0].sql[0].contains("cms_failover_location"),
        "{:?}",
        swap.ops[0].sql
    );
    // No change was made: every mutating call of the plan has no attempt (a step may still
    // have made its reads, as the preflight that also takes the lock does).
    assert!(
        plan.iter()
            .flat_map(|s| &s.ops)
            .filter(|o| o.op.is_mutating())
            .all(|o| o.attempts == 0)
    );
    assert!(plan.iter().any(|s| !s.executed));
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_then_succeed() {
    let ro = ReadOnly::default();
    let mut m = healthy_with(ro.clone());
    let fails = Arc::new(AtomicU32::new(0));
    let f2 = fails.clone();
    m.expect_acquire_lock()
        .returning(|_, _| Ok(LockAttempt::Granted));
    m.expect_lock_held().returning(|_, _| Ok(true));
    m.expect_release_lock().returning(|_, _| Ok(()));
    m.expect_recover().returning(|_, _| Ok(()));
    m.expect_write_location().returning(|_, _, _| Ok(()));
    let state = ro.clone();
    m.expect_set_read_only().returning(move |i, _, read_only| {
        if read_only && i.host().as_str() == "a.test" && f2.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(
                BackendError::new(ErrorKind::Transient, Operation::SetReadOnly, i, "5061")
                    .with_code(5061),
            )
        } else {
            state
                .lock()
                .unwrap()
                .insert(i.host().to_string(), read_only);
            Ok(())
        }
    });
    let report = Driver::new(Arc::new(m))
        .run(FailoverRequest::new("r2", topo(), Mode::Planned).unwrap())
        .await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{:?}",
        report.outcome
    );
    assert_eq!(fails.load(Ordering::SeqCst), 3);
    let fence = report
        .steps
        .iter()
        .find(|s| s.description.contains("fence the source"))
        .unwrap();
    assert_eq!(fence.ops[0].attempts, 3);
    assert_eq!(fence.ops[0].retried_errors.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn permission_errors_are_not_retried_and_the_fence_is_undone() {
    let mut m = healthy();
    m.expect_acquire_lock()
        .returning(|_, _| Ok(LockAttempt::Granted));
    m.expect_lock_held().returning(|_, _| Ok(true));
    m.expect_release_lock().returning(|_, _| Ok(()));
    m.expect_recover().returning(|_, _| Ok(()));
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    m.expect_set_read_only().returning(move |i, _, ro| {
        if !ro && i.host().as_str() == "b.test" {
            c2.fetch_add(1, Ordering::SeqCst);
            Err(
                BackendError::new(ErrorKind::Permission, Operation::SetReadOnly, i, "denied")
                    .with_code(229),
            )
        } else {
            Ok(())
        }
    });
    let report = Driver::new(Arc::new(m))
        .run(FailoverRequest::new("r3", topo(), Mode::Planned).unwrap())
        .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a permission error is not retried"
    );
    assert!(
        matches!(report.outcome, Outcome::RolledBack { .. }),
        "{:?}",
        report.outcome
    );
    // The undo re-fenced the target before opening the source again.
    let undo: Vec<_> = report.steps.iter().map(|s| s.state).collect();
    let pos_undo_promo = undo
        .iter()
        .position(|s| *s == crate::StateName::UndoingPromotion)
        .unwrap();
    let pos_undo_fence = undo
        .iter()
        .position(|s| *s == crate::StateName::UndoingFence)
        .unwrap();
    assert!(pos_undo_promo < pos_undo_fence);
}

#[tokio::test(start_paused = true)]
async fn a_hung_call_times_out_with_the_timeout_kind() {
    let mut m = MockBackend::new();
    m.expect_name().return_const("mock".to_string());
    m.expect_statements().returning(|_| Vec::new());
    m.expect_warnings().returning(Vec::new);
    m.expect_read_location().returning(|_| Ok(None));
    m.expect_acquire_lock()
        .returning(|_, _| Ok(LockAttempt::Granted));
    m.expect_release_lock().returning(|_, _| Ok(()));
    m.expect_probe().returning(|i, _| {
        Err(BackendError::new(
            ErrorKind::Timeout,
            Operation::Probe,
            i,
            "no answer",
        ))
    });
    let mut req = FailoverRequest::new("r4", topo(), Mode::Planned).unwrap();
    req.settings.step_timeout = Duration::from_secs(1);
    let report = Driver::new(Arc::new(m)).run(req).await;
    match report.outcome.refusal() {
        Some(Refusal::StoreUnusable {
            role: StoreRole::Active,
            problems,
            ..
        }) => assert!(
            matches!(
                problems.as_slice(),
                [ServingProblem::Unprobed {
                    error: Some(BackendError {
                        kind: ErrorKind::Timeout,
                        ..
                    }),
                    ..
                }]
            ),
            "{problems:?}"
        ),
        _ => panic!("expected refusal, got {:?}", report.outcome),
    }
    // Probes were retried (timeout is retryable): 1 + max_retries attempts.
    assert_eq!(report.steps[0].ops[0].attempts, 4);
}

#[tokio::test(start_paused = true)]
async fn a_held_lock_refuses_before_any_change() {
    let mut m = healthy();
    m.expect_acquire_lock().returning(|i, _| {
        Ok(if i.host().as_str() == "b.test" {
            LockAttempt::Held
        } else {
            LockAttempt::Granted
        })
    });
    m.expect_release_lock().times(1).returning(|_, _| Ok(()));
    m.expect_set_read_only().never();
    let report = Driver::new(Arc::new(m))
        .run(FailoverRequest::new("r5", topo(), Mode::Planned).unwrap())
        .await;
    match report.outcome.refusal() {
        Some(Refusal::LockHeld { holders, .. }) => assert_eq!(holders, &[addr("b.test")]),
        _ => panic!("expected refusal, got {:?}", report.outcome),
    }
}

#[test]
fn every_transition_in_the_diagram() {
    let d = crate::machine::mermaid();
    for (a, b, _) in crate::machine::TRANSITIONS {
        assert!(d.contains(&format!("{a} --> ")), "{a}");
        let _ = b;
    }
    assert!(d.starts_with("stateDiagram-v2"));
}

/// A gate answering from a list (then `FinalState`), hanging when told to.
struct ScriptedGate {
    answers: std::sync::Mutex<Vec<Option<crate::backup_service::ExportState>>>,
    calls: AtomicU32,
}

#[async_trait::async_trait]
impl crate::BackupServiceGate for ScriptedGate {
    fn describe(&self) -> Vec<String> {
        vec!["status-cmd".into(), "--pool".into(), "p1".into()]
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(40)
    }
    async fn cms_status(
        &self,
    ) -> Result<crate::backup_service::ModuleStatus, crate::BackupServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = {
            let mut a = self.answers.lock().unwrap();
            if a.is_empty() {
                Some(crate::backup_service::ExportState::FinalState)
            } else {
                a.remove(0)
            }
        };
        match next {
            Some(s) => Ok(crate::backup_service::ModuleStatus::cms(s)),
            None => std::future::pending().await,
        }
    }
}

fn gated_request(id: &str) -> FailoverRequest {
    let mut req = FailoverRequest::new(id, topo(), Mode::Planned).unwrap();
    req.settings.step_timeout = Duration::from_secs(1);
    req.settings.backup_service = Some(crate::BackupServiceSettings::default());
    req
}

#[tokio::test(start_paused = true)]
async fn the_gate_is_read_through_the_driver_with_its_own_timeout() {
    use crate::backup_service::ExportState::*;
    let ro = ReadOnly::default();
    let mut m = healthy_with(ro.clone());
    m.expect_acquire_lock()
        .returning(|_, _| Ok(LockAttempt::Granted));
    m.expect_lock_held().returning(|_, _| Ok(true));
    m.expect_release_lock().returning(|_, _| Ok(()));
    m.expect_set_read_only().returning(move |i, _, read_only| {
        ro.lock().unwrap().insert(i.host().to_string(), read_only);
        Ok(())
    });
    m.expect_write_location().returning(|_, _, _| Ok(()));
    // One hang (cut at the gate's 40 s + 1 s, not the 1 s step timeout, then retried),
    // then SteadyState before the fence and FinalState after it.
    let gate = Arc::new(ScriptedGate {
        answers: std::sync::Mutex::new(vec![None, Some(SteadyState)]),
        calls: AtomicU32::new(0),
    });
    let started = tokio::time::Instant::now();
    let report = Driver::new(Arc::new(m))
        .with_backup_service(gate.clone())
        .run(gated_request("g1"))
        .await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{:?}",
        report.outcome
    );
    assert_eq!(gate.calls.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() >= Duration::from_secs(41));
    let gate_step = report
        .steps
        .iter()
        .find(|s| {
            s.ops
                .iter()
                .any(|o| o.op.operation() == Operation::BackupServiceStatus)
        })
        .unwrap();
    assert_eq!(gate_step.ops[0].attempts, 2);
    assert_eq!(gate_step.ops[0].retried_errors[0].kind, ErrorKind::Timeout);
    assert_eq!(gate_step.ops[0].sql, ["[\"status-cmd\",\"--pool\",\"p1\"]"]);
    // The SQL positions are not the replication source of a gated run.
    assert!(
        report
            .steps
            .iter()
            .flat_map(|s| &s.ops)
            .all(|o| o.op.operation() != Operation::Positions)
    );
}

#[tokio::test(start_paused = true)]
async fn a_gated_run_without_a_gate_is_refused_with_what_to_add() {
    let mut m = healthy();
    m.expect_acquire_lock()
        .returning(|_, _| Ok(LockAttempt::Granted));
    m.expect_release_lock().returning(|_, _| Ok(()));
    m.expect_lock_held().returning(|_, _| Ok(true));
    m.expect_set_read_only().never();
    let report = Driver::new(Arc::new(m)).run(gated_request("g2")).await;
    match report.outcome.refusal() {
        Some(r @ Refusal::BackupServiceUnreadable { .. }) => {
            assert!(r.to_string().contains("[backup_service]"), "{r}")
        }
        other => panic!("{other:?}"),
    }
}
