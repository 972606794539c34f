//! The failover lock: taken on every instance the run touches, confirmed right before the
//! fence, released at the end whatever happened.

use super::{Action, Ctx, Locked, Plan, Results, Run, S, State, release};
use crate::model::InstanceAddr;
use crate::op::{Op, OpResult};
use crate::outcome::{Outcome, Refusal};
use crate::server::LockAttempt;

pub(super) fn enter_acquiring(ctx: &mut Ctx, plan: &Plan) -> Action {
    let resource = &ctx.req.settings.lock_resource;
    let ops = plan
        .lock_instances()
        .into_iter()
        .map(|i| Op::AcquireLock {
            instance: i,
            resource: resource.clone(),
        })
        .collect();
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::AcquiringLocks,
        "take the failover lock so no other run can start",
        "no other failover or restore is running",
        "an application lock in master (released at the end)",
        ops,
        timeout,
        true,
    )
}

/// Locked everywhere: check again under the lock. Held elsewhere or failed: refuse, releasing
/// whatever was (or may have been) granted.
pub(super) fn on_acquired(ctx: &mut Ctx, plan: Box<Plan>, ops: &[Op], results: Results) -> State {
    let mut locks = Vec::new();
    let mut holders = Vec::new();
    let mut errors = Vec::new();
    for (op, r) in ops.iter().zip(results) {
        match r {
            Ok(OpResult::Lock(LockAttempt::Granted)) => {
                locks.push(op.instance().cloned().expect("a SQL call"))
            }
            Ok(_) => holders.push(op.instance().cloned().expect("a SQL call")),
            Err(e) => {
                // The lock may have been granted before the error: release it too.
                locks.push(op.instance().cloned().expect("a SQL call"));
                errors.push(e);
            }
        }
    }
    if !holders.is_empty() {
        let resource = ctx.req.settings.lock_resource.clone();
        return ctx.refuse(locks, Refusal::LockHeld { resource, holders });
    }
    if !errors.is_empty() {
        return ctx.refuse(locks, Refusal::LockFailed { errors });
    }
    if ctx.cancel {
        return release(
            locks,
            Outcome::Cancelled {
                detail: "cancelled before any change".into(),
            },
        );
    }
    State::Preflight(Some(Locked {
        locks,
        serving: plan.lock_instances(),
    }))
}

pub(super) fn enter_confirming(ctx: &mut Ctx, run: &Run) -> Action {
    let resource = &ctx.req.settings.lock_resource;
    let ops = run
        .locks
        .iter()
        .map(|i| Op::CheckLock {
            instance: i.clone(),
            resource: resource.clone(),
        })
        .collect();
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::ConfirmingLocks,
        "confirm the lock is still held",
        "lock taken",
        "nothing",
        ops,
        timeout,
        true,
    )
}

/// Right before the fence: a lost lock stops the run with nothing changed.
pub(super) fn on_confirmed(ctx: &mut Ctx, run: Box<Run>, ops: &[Op], results: Results) -> State {
    let lost: Vec<InstanceAddr> = ops
        .iter()
        .zip(results)
        .filter(|(_, r)| !matches!(r, Ok(OpResult::LockHeld(true))))
        .map(|(o, _)| o.instance().cloned().expect("a SQL call"))
        .collect();
    if !lost.is_empty() {
        return ctx.refuse(run.locks, Refusal::LockLost { instances: lost });
    }
    if ctx.cancel {
        return release(
            run.locks,
            Outcome::Cancelled {
                detail: "cancelled before any change".into(),
            },
        );
    }
    State::Fencing(run)
}

pub(super) fn enter_releasing(ctx: &mut Ctx, locks: &[InstanceAddr]) -> Action {
    let resource = &ctx.req.settings.lock_resource;
    let ops = locks
        .iter()
        .map(|i| Op::ReleaseLock {
            instance: i.clone(),
            resource: resource.clone(),
        })
        .collect();
    let timeout = ctx.req.settings.undo_timeout;
    ctx.batch(
        S::ReleasingLocks,
        "release the failover lock",
        "none",
        "the application lock is released",
        ops,
        timeout,
        true,
    )
}

/// A release that fails is a warning: the lock goes with the session.
pub(super) fn on_released(ctx: &mut Ctx, outcome: Outcome, ops: &[Op], results: Results) -> State {
    for (op, r) in ops.iter().zip(results) {
        if let Err(e) = r {
            ctx.f.warnings.push(format!(
                "releasing the lock on {} failed ({e}); it is released when the connection closes",
                op.target()
            ));
        }
    }
    State::Done(outcome)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::op::{Op, OpResult};
    use crate::outcome::{Outcome, Refusal};
    use crate::server::LockAttempt;

    #[test]
    fn lock_held_elsewhere_with_none_taken_ends_at_once() {
        let mut w = World::planned();
        w.answer(
            S::AcquiringLocks,
            |_| Some(Ok(OpResult::Lock(LockAttempt::Held))),
            9,
        );
        let (o, h) = w.run(planned());
        match o.refusal() {
            Some(Refusal::LockHeld { holders, .. }) => assert_eq!(holders.len(), 2),
            _ => panic!("{o}"),
        }
        assert_eq!(h, [S::Preflight, S::AcquiringLocks, S::Done]);
    }

    #[test]
    fn lock_held_on_one_instance_releases_the_other() {
        let mut w = World::planned();
        w.answer(
            S::AcquiringLocks,
            |op| (op.instance() == Some(&a())).then_some(Ok(OpResult::Lock(LockAttempt::Held))),
            9,
        );
        let (o, h) = w.run(planned());
        assert!(matches!(o.refusal(), Some(Refusal::LockHeld { .. })), "{o}");
        assert_eq!(
            h,
            [S::Preflight, S::AcquiringLocks, S::ReleasingLocks, S::Done]
        );
        assert!(
            w.mutations()
                .iter()
                .any(|op| matches!(op, Op::ReleaseLock { instance, .. } if *instance == b()))
        );
    }

    #[test]
    fn lock_error_refuses_and_releases_what_may_have_been_granted() {
        let mut w = World::planned();
        w.fail(S::AcquiringLocks, |op| op.instance() == Some(&a()), 9);
        let (o, _) = w.run(planned());
        assert!(
            matches!(o.refusal(), Some(Refusal::LockFailed { .. })),
            "{o}"
        );
        let released: Vec<_> = w
            .mutations()
            .into_iter()
            .filter(|op| matches!(op, Op::ReleaseLock { .. }))
            .collect();
        assert_eq!(released.len(), 2);
    }

    #[test]
    fn lock_lost_before_the_fence_changes_nothing() {
        let mut w = World::planned();
        w.answer(
            S::ConfirmingLocks,
            |_| Some(Ok(OpResult::LockHeld(false))),
            9,
        );
        let (o, h) = w.run(planned());
        assert!(matches!(o.refusal(), Some(Refusal::LockLost { .. })), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::ConfirmingLocks, S::ReleasingLocks])
        );
        assert!(!h.contains(&S::Fencing));
    }

    #[test]
    fn cancelled_while_confirming_the_lock_changes_nothing() {
        let mut w = World::planned();
        w.cancel_in(S::ConfirmingLocks);
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(!h.contains(&S::Fencing));
    }

    #[test]
    fn failed_release_is_a_warning() {
        let mut w = World::planned();
        w.fail(S::ReleasingLocks, |_| true, 9);
        let mut m = crate::machine::Machine::new(planned());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            m.findings()
                .warnings
                .iter()
                .any(|x| x.contains("releasing the lock"))
        );
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        lock_held_elsewhere_with_none_taken_ends_at_once,
        lock_held_on_one_instance_releases_the_other,
        lock_error_refuses_and_releases_what_may_have_been_granted,
        lock_lost_before_the_fence_changes_nothing,
        cancelled_while_confirming_the_lock_changes_nothing,
        failed_release_is_a_warning,
    ];
}
