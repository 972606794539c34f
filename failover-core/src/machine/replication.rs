//! Replication: the gate before the fence (planned: wait until the backup is within the lag
//! limit) and the catch-up after it (read the fenced positions, wait until the backup has
//! applied them; disaster recovery: estimate the data loss instead).
//!
//! With the Backup Service gate (`Settings::backup_service`, planned only) the replication
//! source is the Backup Service's status of `CentralMgmt.CMSMaster` instead of SQL positions
//! (its copies share no log with the source): before the fence `SteadyState` suffices (a
//! backlog is waited out), after it the run waits for `FinalState` (nothing left to copy).
//! A failing, hanging or unparseable status command is a refusal before the fence and a
//! failure that undoes the fence after it.

use super::{Action, Cause, Ctx, Progress, Results, Run, S, State, lock, promote, release};
use crate::backup_service::{BackupServiceSettings, CMS_MODULE, ModuleStatus, Readiness};
use crate::error::{BackendError, ErrorKind, Operation};
use crate::model::DatabaseName;
use crate::op::{Op, OpResult};
use crate::outcome::{DataLossEstimate, Failure, Outcome, Refusal, describe_lag};
use crate::request::Mode;
use crate::server::DatabasePosition;
use std::time::Duration;

/// Per-database lag of `tgt` behind `src` (`None` when either side does not know).
pub fn lags(
    dbs: &[DatabaseName],
    src: &[DatabasePosition],
    tgt: &[DatabasePosition],
) -> Vec<(DatabaseName, Option<u64>)> {
    dbs.iter()
        .map(|d| {
            let lag = match (position(src, d), position(tgt, d)) {
                (Some(s), Some(t)) => Some(t.lag_behind(s)),
                _ => None,
            };
            (d.clone(), lag)
        })
        .collect()
}

fn position(p: &[DatabasePosition], d: &DatabaseName) -> Option<crate::server::Position> {
    p.iter().find(|p| &p.database == d).and_then(|p| p.position)
}

/// The disaster-recovery data-loss estimate: source position minus target position per
/// database, or unknown when the source position was never seen.
pub fn estimate(
    dbs: &[DatabaseName],
    src: Option<&[DatabasePosition]>,
    tgt: Option<&[DatabasePosition]>,
) -> Vec<DataLossEstimate> {
    let find = |p: Option<&[DatabasePosition]>, d: &DatabaseName| {
        p.and_then(|p| p.iter().find(|p| &p.database == d))
            .and_then(|p| p.position)
    };
    dbs.iter()
        .map(|d| {
            let (s, t) = (find(src, d), find(tgt, d));
            DataLossEstimate {
                database: d.clone(),
                source_position: s,
                target_position: t,
                changes_at_risk: match (s, t) {
                    (Some(s), Some(t)) => Some(t.lag_behind(s)),
                    _ => None,
                },
            }
        })
        .collect()
}

/// The positions in a result; `Err(None)` when the result is of the wrong kind or missing.
fn positions_of(
    r: Option<Result<OpResult, BackendError>>,
) -> Result<Vec<DatabasePosition>, Option<BackendError>> {
    match r {
        Some(Ok(OpResult::Positions(p))) => Ok(p),
        Some(Err(e)) => Err(Some(e)),
        _ => Err(None),
    }
}

/// After the fence: undo it because of `failure`.
fn undo(run: Box<Run>, failure: Failure) -> State {
    State::UndoingFence {
        run,
        cause: Cause::Failed(failure),
    }
}

fn caught_up(lag: &[(DatabaseName, Option<u64>)], max: u64) -> bool {
    lag.iter().all(|(_, l)| l.is_some_and(|l| l <= max))
}

/// The lock checks that ride in every gate step (what-if assumes them held): the step that
/// passes the gate confirms the lock too, right before the fence.
fn lock_checks(ctx: &Ctx, run: &Run) -> Vec<Op> {
    let resource = &ctx.req.settings.lock_resource;
    run.locks
        .iter()
        .map(|i| Op::CheckLock {
            instance: i.clone(),
            resource: resource.clone(),
        })
        .collect()
}

pub(super) fn enter_awaiting(ctx: &mut Ctx, run: &Run) -> Action {
    if gate(ctx).is_some() {
        let timeout = ctx.req.settings.step_timeout;
        let mut ops = gate_op(run);
        ops.extend(lock_checks(ctx, run));
        return ctx.batch(
            S::AwaitingReplication,
            format!(
                "check that the Backup Service has no backlog ({CMS_MODULE}) and that the lock is still held"
            ),
            "the Backup Service reports SteadyState or FinalState",
            "nothing",
            ops,
            timeout,
            true,
        );
    }
    let st = &ctx.req.settings;
    let (timeout, max_lag) = (st.step_timeout, st.max_lag);
    // Planned plans always name the source; without one the gate cannot pass (one result
    // instead of two is refused as unexpected), it is never skipped.
    let mut ops: Vec<Op> = run
        .plan
        .source
        .iter()
        .chain([&run.plan.target])
        .map(|i| Op::Positions {
            instance: i.clone(),
            databases: ctx.req.topology.databases.clone(),
        })
        .collect();
    ops.extend(lock_checks(ctx, run));
    ctx.batch(
        S::AwaitingReplication,
        "check that replication to the backup is done and that the lock is still held",
        format!("the backup is within {max_lag} change(s) of the source"),
        "nothing",
        ops,
        timeout,
        true,
    )
}

/// The gate: caught up, go on; behind, poll again until the deadline, then refuse.
pub(super) fn on_awaiting(
    ctx: &mut Ctx,
    run: Box<Run>,
    deadline: Duration,
    mut results: Results,
    now: Duration,
) -> State {
    let n_checks = lock_checks(ctx, &run).len();
    let checks = results.split_off(results.len().saturating_sub(n_checks));
    if let Some(bs) = gate(ctx).cloned() {
        return on_gate(ctx, run, deadline, results, checks, now, &bs);
    }
    let st = &ctx.req.settings;
    let (max_lag, poll, timeout) = (st.max_lag, st.poll_interval, st.replication_timeout);
    let mut it = results.into_iter();
    let (src, tgt) = match (it.next(), it.next()) {
        (Some(Ok(OpResult::Positions(s))), Some(Ok(OpResult::Positions(t)))) => (s, t),
        (Some(Err(error)), _) | (_, Some(Err(error))) => {
            let refusal = Refusal::PositionsUnreadable { error };
            if ctx.what_if() {
                // What-if hook: a blocker, and the plan goes on.
                ctx.f.blockers.push(refusal.to_string());
                return lock::confirmed(ctx, run, checks);
            }
            return ctx.refuse(run.locks, refusal);
        }
        _ => {
            return ctx.refuse(
                run.locks,
                Refusal::UnexpectedResult {
                    state: S::AwaitingReplication,
                },
            );
        }
    };
    let lag = lags(ctx.dbs(), &src, &tgt);
    if caught_up(&lag, max_lag) {
        return lock::confirmed(ctx, run, checks);
    }
    if ctx.what_if() {
        return what_if_gate(ctx, run, tgt, lag, now);
    }
    if ctx.cancel {
        return release(
            run.locks,
            Outcome::Cancelled {
                detail: "cancelled while waiting for replication; nothing was changed".into(),
            },
        );
    }
    if now >= deadline {
        return ctx.refuse(run.locks, Refusal::ReplicationTimeout { timeout, lag });
    }
    State::ReplicationPause {
        run,
        deadline,
        until: (now + poll).min(deadline),
        progress: Progress {
            waiting_for: "replication to the backup".into(),
            lag,
            remaining: deadline.saturating_sub(now),
        },
    }
}

/// What-if hook: sample twice, one poll apart. Behind but progressing is a wait (a
/// warning); no progress at all would end in a refusal (a blocker).
fn what_if_gate(
    ctx: &mut Ctx,
    run: Box<Run>,
    tgt: Vec<DatabasePosition>,
    lag: Vec<(DatabaseName, Option<u64>)>,
    now: Duration,
) -> State {
    let st = &ctx.req.settings;
    let Some(first) = ctx.what_if_sample.take() else {
        ctx.what_if_sample = Some(tgt);
        let until = now + st.poll_interval;
        return State::ReplicationPause {
            run,
            deadline: until,
            until,
            progress: Progress {
                waiting_for: "a second replication sample (what-if)".into(),
                lag,
                remaining: st.poll_interval,
            },
        };
    };
    // Progress: the target moved forward (a steady lag under a steady workload is
    // healthy), or the gap is within the gate.
    let progressing = lag.iter().all(|(db, l)| {
        l.is_some_and(|l| l <= st.max_lag)
            || matches!((position(&first, db), position(&tgt, db)), (Some(w), Some(n)) if n > w)
    });
    let text = describe_lag(&lag);
    if progressing {
        let w = format!(
            "replication is behind right now ({text}) but progressing; the run would wait for it, up to {:?}, before fencing",
            st.replication_timeout
        );
        ctx.f.warnings.push(w);
    } else {
        let b = format!(
            "replication is behind ({text}) and made no progress in {:?}; the run would wait up to {:?}, then refuse",
            st.poll_interval, st.replication_timeout
        );
        ctx.f.blockers.push(b);
    }
    // What-if: the lock is assumed held.
    lock::confirmed(ctx, run, Vec::new())
}

pub(super) fn on_replication_timer(
    ctx: &mut Ctx,
    run: Box<Run>,
    deadline: Duration,
    until: Duration,
    progress: Progress,
    now: Duration,
) -> State {
    if ctx.cancel {
        release(
            run.locks,
            Outcome::Cancelled {
                detail: "cancelled while waiting for replication; nothing was changed".into(),
            },
        )
    } else if now < until {
        State::ReplicationPause {
            run,
            deadline,
            until,
            progress,
        }
    } else {
        State::AwaitingReplication { run, deadline }
    }
}

/// The Backup Service gate's settings when this run gates on it (planned runs only).
fn gate(ctx: &Ctx) -> Option<&BackupServiceSettings> {
    ctx.req
        .settings
        .backup_service
        .as_ref()
        .filter(|_| matches!(ctx.req.mode, Mode::Planned))
}

/// The status read, addressed to the source (planned plans always name one).
fn gate_op(run: &Run) -> Vec<Op> {
    run.plan
        .source
        .iter()
        .map(|i| Op::BackupServiceStatus {
            instance: i.clone(),
        })
        .collect()
}

/// The module status in a result; the error (or a made-up one for a result of the wrong
/// kind) otherwise.
fn status_of(results: Results, run: &Run) -> Result<ModuleStatus, BackendError> {
    match results.into_iter().next() {
        Some(Ok(OpResult::BackupService(s))) => Ok(s),
        Some(Err(e)) => Err(e),
        _ => Err(BackendError::new(
            ErrorKind::Fatal,
            Operation::BackupServiceStatus,
            run.plan
                .source
                .as_ref()
                .map_or("the source".to_string(), |s| s.to_string()),
            "the gate returned no Backup Service status (a driver bug)",
        )),
    }
}

fn blocker(ctx: &mut Ctx, text: String) {
    if !ctx.f.blockers.contains(&text) {
        ctx.f.blockers.push(text);
    }
}

/// The Backup Service gate before the fence: no backlog, go on; a backlog, poll until the
/// deadline, then refuse; blocked or unreadable, refuse. What-if: one sample, a backlog is a
/// warning, the rest blockers.
fn on_gate(
    ctx: &mut Ctx,
    run: Box<Run>,
    deadline: Duration,
    results: Results,
    checks: Results,
    now: Duration,
    bs: &BackupServiceSettings,
) -> State {
    let refusal = match status_of(results, &run) {
        Err(error) => Refusal::BackupServiceUnreadable { error },
        Ok(status) => match status.before_fence() {
            Readiness::Ready => return lock::confirmed(ctx, run, checks),
            Readiness::Blocked(reason) => Refusal::BackupServiceBlocked {
                state: status.export,
                reason,
            },
            Readiness::Copying(state) => {
                let timeout = ctx.req.settings.replication_timeout;
                if ctx.what_if() {
                    ctx.f.warnings.push(format!(
                        "the Backup Service reports a backlog right now ({CMS_MODULE} ExportStatus {state}); the run would wait for it, up to {timeout:?}, before fencing"
                    ));
                    return lock::confirmed(ctx, run, checks);
                }
                if ctx.cancel {
                    return release(
                        run.locks,
                        Outcome::Cancelled {
                            detail: "cancelled while waiting for the Backup Service; nothing was changed"
                                .into(),
                        },
                    );
                }
                if now >= deadline {
                    return ctx.refuse(run.locks, Refusal::BackupServiceTimeout { timeout, state });
                }
                return State::ReplicationPause {
                    run,
                    deadline,
                    until: (now + bs.poll_interval).min(deadline),
                    progress: Progress {
                        waiting_for: format!(
                            "the Backup Service to clear its backlog ({CMS_MODULE} ExportStatus {state})"
                        ),
                        lag: Vec::new(),
                        remaining: deadline.saturating_sub(now),
                    },
                };
            }
        },
    };
    if ctx.what_if() {
        // What-if hook: a blocker (worded as after the fence reads it, so it is listed once),
        // and the plan goes on.
        let text = match &refusal {
            Refusal::BackupServiceBlocked { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        blocker(ctx, text);
        return lock::confirmed(ctx, run, checks);
    }
    ctx.refuse(run.locks, refusal)
}

/// Where a planned run goes once fenced: the Backup Service's final state, or the fenced
/// positions.
pub(super) fn after_fence(ctx: &Ctx, run: Box<Run>, now: Duration) -> State {
    match gate(ctx) {
        Some(bs) => State::AwaitingBackupService {
            run,
            deadline: now + bs.final_state_timeout,
        },
        None => State::ReadingPositions(run),
    }
}

pub(super) fn enter_backup_service(ctx: &mut Ctx, run: &Run) -> Action {
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::AwaitingBackupService,
        format!("wait for the Backup Service to copy the last changes ({CMS_MODULE} FinalState)"),
        "source fenced",
        "nothing",
        gate_op(run),
        timeout,
        true,
    )
}

/// After the fence: `FinalState`, promote; still copying, poll until the deadline, then undo
/// the fence; blocked or unreadable, undo the fence. What-if: nothing was fenced, so nothing
/// is awaited; what it would wait for is a warning.
pub(super) fn on_backup_service(
    ctx: &mut Ctx,
    run: Box<Run>,
    deadline: Duration,
    results: Results,
    now: Duration,
) -> State {
    let bs = gate(ctx).cloned().unwrap_or_default();
    let status = status_of(results, &run);
    if ctx.what_if() {
        match status.as_ref().map(ModuleStatus::after_fence) {
            Ok(Readiness::Ready) => {}
            Ok(Readiness::Copying(state)) => ctx.f.warnings.push(format!(
                "after the fence the run would wait up to {:?} for {CMS_MODULE} to reach FinalState (now {state})",
                bs.final_state_timeout
            )),
            Ok(Readiness::Blocked(reason)) => blocker(ctx, reason),
            Err(error) => blocker(
                ctx,
                Refusal::BackupServiceUnreadable {
                    error: error.clone(),
                }
                .to_string(),
            ),
        }
        return promote(run);
    }
    let status = match status {
        Ok(s) => s,
        Err(error) => return undo(run, Failure::BackupServiceUnreadable { error }),
    };
    match status.after_fence() {
        Readiness::Ready => promote(run),
        Readiness::Blocked(reason) => undo(
            run,
            Failure::BackupServiceBlocked {
                state: status.export,
                reason,
            },
        ),
        Readiness::Copying(state) => {
            if ctx.cancel {
                return State::UndoingFence {
                    run,
                    cause: Cause::Cancelled(
                        "cancelled while waiting for the Backup Service after the fence".into(),
                    ),
                };
            }
            if now >= deadline {
                let timeout = bs.final_state_timeout;
                return undo(run, Failure::BackupServiceTimeout { timeout, state });
            }
            State::BackupServicePause {
                run,
                deadline,
                until: (now + bs.poll_interval).min(deadline),
                progress: Progress {
                    waiting_for: format!(
                        "the Backup Service to copy the last changes ({CMS_MODULE} ExportStatus {state}, waiting for FinalState)"
                    ),
                    lag: Vec::new(),
                    remaining: deadline.saturating_sub(now),
                },
            }
        }
    }
}

pub(super) fn on_backup_service_timer(
    ctx: &Ctx,
    run: Box<Run>,
    deadline: Duration,
    until: Duration,
    progress: Progress,
    now: Duration,
) -> State {
    if ctx.cancel {
        State::UndoingFence {
            run,
            cause: Cause::Cancelled(
                "cancelled while waiting for the Backup Service after the fence".into(),
            ),
        }
    } else if now < until {
        State::BackupServicePause {
            run,
            deadline,
            until,
            progress,
        }
    } else {
        State::AwaitingBackupService { run, deadline }
    }
}

pub(super) fn enter_reading(ctx: &mut Ctx, run: &Run) -> Action {
    let dbs = ctx.dbs().to_vec();
    let dr = matches!(ctx.req.mode, Mode::DisasterRecovery { .. });
    let mut ops = Vec::with_capacity(2);
    if let Some(src) = &run.plan.source {
        ops.push(Op::Positions {
            instance: src.clone(),
            databases: dbs.clone(),
        });
    }
    // The target's position is read in the same round trip (another instance): often it
    // has already caught up and the wait costs nothing more.
    ops.push(Op::Positions {
        instance: run.plan.target.clone(),
        databases: dbs,
    });
    let st = &ctx.req.settings;
    let timeout = if dr {
        st.dr_fence_timeout
    } else {
        st.step_timeout
    };
    ctx.batch(
        S::ReadingPositions,
        "read the source's positions after the fence",
        "source fenced",
        "nothing",
        ops,
        timeout,
        !dr,
    )
}

/// After the fence. Disaster recovery: estimate the loss and promote (forcing the mirror
/// first when needed). Planned: the fenced positions are what the backup must reach.
pub(super) fn on_reading(ctx: &mut Ctx, run: Box<Run>, results: Results, now: Duration) -> State {
    let mut it = results.into_iter();
    let src = positions_of(if run.plan.source.is_some() {
        it.next()
    } else {
        None
    });
    let tgt = positions_of(it.next()).ok();
    if matches!(ctx.req.mode, Mode::DisasterRecovery { .. }) {
        let src = src.ok();
        ctx.f.data_loss = Some(estimate(ctx.dbs(), src.as_deref(), tgt.as_deref()));
        return match run.plan.force_mirror.clone() {
            Some(mirror) => State::ForcingMirror { run, mirror },
            None => promote(run),
        };
    }
    let fenced = match src {
        Ok(p) => p,
        Err(error) => return undo(run, Failure::FencedPositionsUnreadable { error }),
    };
    if ctx.cancel {
        return State::UndoingFence {
            run,
            cause: Cause::Cancelled("cancelled after the fence".into()),
        };
    }
    // What-if hook: nothing was fenced, so there is nothing to catch up with.
    if ctx.what_if() {
        return promote(run);
    }
    if let Some(t) = tgt
        && lags(ctx.dbs(), &fenced, &t)
            .iter()
            .all(|(_, l)| *l == Some(0))
    {
        return promote(run);
    }
    State::AwaitingCatchUp {
        run,
        fenced,
        deadline: now + ctx.req.settings.catch_up_timeout,
    }
}

pub(super) fn enter_catch_up(ctx: &mut Ctx, run: &Run) -> Action {
    let op = Op::Positions {
        instance: run.plan.target.clone(),
        databases: ctx.dbs().to_vec(),
    };
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::AwaitingCatchUp,
        "wait for the backup to reach the source's fenced positions",
        "source fenced",
        "nothing",
        vec![op],
        timeout,
        true,
    )
}

/// The backup reached every fenced position: promote. Otherwise poll until the deadline,
/// then undo the fence.
pub(super) fn on_catch_up(
    ctx: &mut Ctx,
    run: Box<Run>,
    fenced: Vec<DatabasePosition>,
    deadline: Duration,
    results: Results,
    now: Duration,
) -> State {
    let tgt = match positions_of(results.into_iter().next()) {
        Ok(p) => p,
        Err(error) => return undo(run, Failure::BackupPositionsUnreadable { error }),
    };
    let lag = lags(ctx.dbs(), &fenced, &tgt);
    if lag.iter().all(|(_, l)| *l == Some(0)) {
        return promote(run);
    }
    if ctx.cancel {
        return State::UndoingFence {
            run,
            cause: Cause::Cancelled("cancelled while the backup was catching up".into()),
        };
    }
    let st = &ctx.req.settings;
    if now >= deadline {
        let timeout = st.catch_up_timeout;
        return undo(run, Failure::CatchUpTimeout { timeout, lag });
    }
    State::CatchUpPause {
        run,
        fenced,
        deadline,
        until: (now + st.catch_up_poll_interval).min(deadline),
        progress: Progress {
            waiting_for: "the backup to reach the fenced positions".into(),
            lag,
            remaining: deadline.saturating_sub(now),
        },
    }
}

pub(super) fn on_catch_up_timer(
    ctx: &Ctx,
    run: Box<Run>,
    fenced: Vec<DatabasePosition>,
    deadline: Duration,
    until: Duration,
    progress: Progress,
    now: Duration,
) -> State {
    if ctx.cancel {
        State::UndoingFence {
            run,
            cause: Cause::Cancelled("cancelled while the backup was catching up".into()),
        }
    } else if now < until {
        State::CatchUpPause {
            run,
            fenced,
            deadline,
            until,
            progress,
        }
    } else {
        State::AwaitingCatchUp {
            run,
            fenced,
            deadline,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::{Failure, Outcome, Refusal};

    /// The run undid the fence from `state` and the source serves alone again.
    fn rolled_back_from(w: &World, o: &Outcome, h: &[S], state: S) {
        assert!(matches!(o, Outcome::RolledBack { .. }), "{o}");
        assert!(h.windows(2).any(|p| p == [state, S::UndoingFence]), "{h:?}");
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    #[test]
    fn lagging_replication_is_polled_until_it_catches_up() {
        let mut w = World::planned();
        w.set_lag(5);
        w.on_nth(S::AwaitingReplication, 3, |w| w.set_lag(0));
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        let polls = h.iter().filter(|s| **s == S::ReplicationPause).count();
        assert_eq!(polls, 2, "{h:?}");
    }

    #[test]
    fn replication_that_never_catches_up_is_refused_unfenced() {
        let mut w = World::planned();
        w.set_lag(5);
        let (o, h) = w.run(planned());
        match o.refusal() {
            Some(Refusal::ReplicationTimeout { lag, .. }) => {
                assert!(lag.iter().all(|(_, l)| *l == Some(5)))
            }
            _ => panic!("{o}"),
        }
        assert!(!h.contains(&S::Fencing));
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingReplication, S::ReleasingLocks])
        );
    }

    #[test]
    fn cancelled_during_the_replication_pause_changes_nothing() {
        let mut w = World::planned();
        w.set_lag(5);
        w.cancel_on_sleep();
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::ReplicationPause, S::ReleasingLocks])
        );
    }

    #[test]
    fn backup_catching_up_after_the_fence_is_awaited() {
        let mut w = World::planned();
        // The fence moves the source on by 2; the backup applies it two polls later.
        w.on_nth(S::ReadingPositions, 1, |w| w.set_target_behind(2));
        w.on_nth(S::AwaitingCatchUp, 2, |w| w.set_target_behind(0));
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(h.contains(&S::CatchUpPause));
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingCatchUp, S::OpeningTarget])
        );
    }

    #[test]
    fn backup_that_never_catches_up_undoes_the_fence() {
        let mut w = World::planned();
        w.on_nth(S::ReadingPositions, 1, |w| w.set_target_behind(2));
        let (o, h) = w.run(planned());
        assert!(
            matches!(o.failure(), Some(Failure::CatchUpTimeout { .. })),
            "{o}"
        );
        rolled_back_from(&w, &o, &h, S::AwaitingCatchUp);
    }

    #[test]
    fn backup_positions_error_during_catch_up_undoes_the_fence() {
        let mut w = World::planned();
        w.on_nth(S::ReadingPositions, 1, |w| w.set_target_behind(2));
        w.fail(S::AwaitingCatchUp, |_| true, 9);
        let (o, _) = w.run(planned());
        assert!(
            matches!(
                o.failure(),
                Some(Failure::BackupPositionsUnreadable { error: Some(_) })
            ),
            "{o}"
        );
    }

    #[test]
    fn cancelled_during_the_catch_up_pause_undoes_the_fence() {
        let mut w = World::planned();
        w.on_nth(S::ReadingPositions, 1, |w| w.set_target_behind(2));
        w.cancel_on_sleep();
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::CatchUpPause, S::UndoingFence])
        );
        assert!(w.writable(&a()));
    }

    #[test]
    fn fenced_positions_unreadable_undoes_the_fence() {
        let mut w = World::planned();
        w.fail(S::ReadingPositions, |op| op.instance() == Some(&a()), 9);
        let (o, h) = w.run(planned());
        assert!(
            matches!(o.failure(), Some(Failure::FencedPositionsUnreadable { .. })),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::ReadingPositions, S::UndoingFence])
        );
    }

    #[test]
    fn restoring_backup_caught_up_is_recovered_then_opened() {
        let mut w = World::planned();
        w.set_restoring(&b());
        w.on_nth(S::ReadingPositions, 1, |w| w.set_target_behind(1));
        w.on_nth(S::AwaitingCatchUp, 1, |w| w.set_target_behind(0));
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingCatchUp, S::Recovering])
        );
    }

    #[test]
    fn what_if_samples_twice_and_reports_a_stalled_backup() {
        let mut w = World::planned();
        w.set_lag(5);
        let mut req = planned();
        req.what_if = true;
        let (o, h) = w.run(req);
        assert!(
            matches!(o.refusal(), Some(Refusal::WouldBeBlocked { blockers }) if blockers.len() == 1),
            "{o}"
        );
        assert_eq!(h.iter().filter(|s| **s == S::ReplicationPause).count(), 1);
        assert!(w.mutations().is_empty());
    }

    #[test]
    fn dr_estimates_the_loss_and_forces_the_mirror() {
        let mut w = World::dr_mirrored();
        let mut m = crate::machine::Machine::new(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == bm()),
            "{o}"
        );
        let h = m.history();
        assert!(
            h.windows(2)
                .any(|p| p == [S::ReadingPositions, S::ForcingMirror])
        );
        let loss = m.findings().data_loss.clone().unwrap();
        assert!(loss.iter().all(|l| l.changes_at_risk.is_none()), "{loss:?}");
    }

    use crate::backup_service::ExportState::{self, *};
    use crate::error::{BackendError, ErrorKind, Operation};
    use crate::op::Op;

    /// The SQL positions are never read when the run gates on the Backup Service.
    fn no_positions(w: &mut World) {
        for s in [
            S::AwaitingReplication,
            S::ReadingPositions,
            S::AwaitingCatchUp,
        ] {
            w.fail(s, |op| matches!(op, Op::Positions { .. }), 99);
        }
    }

    fn gated(state: ExportState) -> World {
        let mut w = World::planned();
        no_positions(&mut w);
        w.set_backup_state(state);
        w
    }

    fn command_failed(kind: ErrorKind) -> Result<crate::op::OpResult, BackendError> {
        Err(BackendError::new(
            kind,
            Operation::BackupServiceStatus,
            a(),
            "the Backup Service status command `ssh` failed (exit status: 255); its standard error: Permission denied (publickey)",
        ))
    }

    #[test]
    fn gate_backlog_is_waited_out_then_final_state_awaited_after_the_fence() {
        let mut w = gated(NonSteadyState);
        w.on_nth(S::AwaitingReplication, 3, |w| {
            w.set_backup_state(SteadyState)
        });
        w.on_nth(S::AwaitingBackupService, 3, |w| {
            w.set_backup_state(FinalState)
        });
        let (o, h) = w.run(planned_gated());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        let count = |s: S| h.iter().filter(|x| **x == s).count();
        assert_eq!(count(S::ReplicationPause), 2, "{h:?}");
        assert_eq!(count(S::BackupServicePause), 2, "{h:?}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::Fencing, S::AwaitingBackupService])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingBackupService, S::OpeningTarget])
        );
        assert!(!h.contains(&S::ReadingPositions), "{h:?}");
    }

    #[test]
    fn gate_final_state_recovers_a_restoring_target() {
        let mut w = gated(FinalState);
        w.set_restoring(&b());
        let (o, h) = w.run(planned_gated());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingBackupService, S::Recovering])
        );
    }

    #[test]
    fn gate_backlog_that_never_clears_is_refused_unfenced() {
        let mut w = gated(NonSteadyState);
        let (o, h) = w.run(planned_gated());
        assert!(
            matches!(
                o.refusal(),
                Some(Refusal::BackupServiceTimeout {
                    state: NonSteadyState,
                    ..
                })
            ),
            "{o}"
        );
        assert!(!h.contains(&S::Fencing));
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    #[test]
    fn gate_blocked_states_are_refused_before_the_fence() {
        for state in [NotInitialized, ErrorState] {
            let mut w = gated(state);
            let (o, h) = w.run(planned_gated());
            match o.refusal() {
                Some(r @ Refusal::BackupServiceBlocked { state: s, .. }) => {
                    assert_eq!(*s, state);
                    assert!(r.to_string().contains(&state.to_string()), "{r}");
                }
                _ => panic!("{o}"),
            }
            assert!(!h.contains(&S::Fencing));
            assert!(
                w.mutations()
                    .iter()
                    .all(|m| !matches!(m, Op::SetReadOnly { .. }))
            );
        }
    }

    #[test]
    fn gate_command_failure_or_hang_is_refused_showing_its_stderr() {
        for kind in [ErrorKind::Fatal, ErrorKind::Timeout] {
            let mut w = gated(FinalState);
            w.answer(
                S::AwaitingReplication,
                move |_| Some(command_failed(kind)),
                1,
            );
            let (o, h) = w.run(planned_gated());
            match o.refusal() {
                Some(r @ Refusal::BackupServiceUnreadable { .. }) => {
                    assert!(
                        r.to_string().contains("Permission denied (publickey)"),
                        "{r}"
                    )
                }
                _ => panic!("{o}"),
            }
            assert!(!h.contains(&S::Fencing));
        }
    }

    #[test]
    fn gate_final_state_never_reached_undoes_the_fence() {
        let mut w = gated(SteadyState);
        let (o, h) = w.run(planned_gated());
        assert!(
            matches!(
                o.failure(),
                Some(Failure::BackupServiceTimeout {
                    state: SteadyState,
                    ..
                })
            ),
            "{o}"
        );
        rolled_back_from(&w, &o, &h, S::AwaitingBackupService);
    }

    #[test]
    fn gate_error_or_blocked_after_the_fence_undoes_it() {
        let mut w = gated(FinalState);
        w.answer(
            S::AwaitingBackupService,
            |_| Some(command_failed(ErrorKind::Fatal)),
            1,
        );
        let (o, _) = w.run(planned_gated());
        match o.failure() {
            Some(f @ Failure::BackupServiceUnreadable { .. }) => {
                assert!(f.to_string().contains("Permission denied"), "{f}")
            }
            _ => panic!("{o}"),
        }
        assert!(matches!(o, Outcome::RolledBack { .. }), "{o}");
        assert!(w.writable(&a()) && !w.any_writable(&b()));

        let mut w = gated(SteadyState);
        w.on_nth(S::AwaitingBackupService, 1, |w| {
            w.set_backup_state(ErrorState)
        });
        let (o, _) = w.run(planned_gated());
        assert!(
            matches!(
                o.failure(),
                Some(Failure::BackupServiceBlocked {
                    state: ErrorState,
                    ..
                })
            ),
            "{o}"
        );
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    #[test]
    fn cancelled_while_waiting_for_final_state_undoes_the_fence() {
        let mut w = gated(SteadyState);
        w.cancel_on_sleep();
        let (o, h) = w.run(planned_gated());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::BackupServicePause, S::UndoingFence])
        );
        assert!(w.writable(&a()));
    }

    #[test]
    fn what_if_with_the_gate_warns_of_waits_and_lists_blockers() {
        let mut w = gated(NonSteadyState);
        let mut req = planned_gated();
        req.what_if = true;
        let mut m = crate::machine::Machine::new(req.clone());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        let warnings = &m.findings().warnings;
        assert!(
            warnings.iter().any(|w| w.contains("backlog"))
                && warnings.iter().any(|w| w.contains("FinalState")),
            "{warnings:?}"
        );
        assert!(w.mutations().is_empty());

        let mut w = gated(ErrorState);
        let (o, _) = w.run(req);
        assert!(
            matches!(o.refusal(), Some(Refusal::WouldBeBlocked { blockers }) if blockers.len() == 1),
            "{o}"
        );
        assert!(w.mutations().is_empty());
    }

    #[test]
    fn the_gate_is_ignored_by_disaster_recovery() {
        let mut w = World::dr();
        w.set_backup_state(ErrorState);
        let mut req = dr();
        req.settings.backup_service = planned_gated().settings.backup_service;
        let (o, h) = w.run(req);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(!h.contains(&S::AwaitingBackupService));
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        gate_backlog_is_waited_out_then_final_state_awaited_after_the_fence,
        gate_final_state_recovers_a_restoring_target,
        gate_backlog_that_never_clears_is_refused_unfenced,
        gate_blocked_states_are_refused_before_the_fence,
        gate_command_failure_or_hang_is_refused_showing_its_stderr,
        gate_final_state_never_reached_undoes_the_fence,
        gate_error_or_blocked_after_the_fence_undoes_it,
        cancelled_while_waiting_for_final_state_undoes_the_fence,
        what_if_with_the_gate_warns_of_waits_and_lists_blockers,
        the_gate_is_ignored_by_disaster_recovery,
        lagging_replication_is_polled_until_it_catches_up,
        replication_that_never_catches_up_is_refused_unfenced,
        cancelled_during_the_replication_pause_changes_nothing,
        backup_catching_up_after_the_fence_is_awaited,
        backup_that_never_catches_up_undoes_the_fence,
        backup_positions_error_during_catch_up_undoes_the_fence,
        cancelled_during_the_catch_up_pause_undoes_the_fence,
        fenced_positions_unreadable_undoes_the_fence,
        restoring_backup_caught_up_is_recovered_then_opened,
        what_if_samples_twice_and_reports_a_stalled_backup,
        dr_estimates_the_loss_and_forces_the_mirror,
    ];
}
