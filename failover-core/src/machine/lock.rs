//! The failover lock: taken on every instance the run touches, confirmed right before the
//! fence (in the gate's last step, see [`super::replication`]), released at the end whatever
//! happened (after a commit, with the directory watch's first reads).

use super::{Action, Ctx, Locked, Plan, Results, Run, S, State, release};
use crate::error::BackendError;
use crate::model::InstanceAddr;
use crate::op::{Op, OpResult};
use crate::outcome::{Outcome, Refusal};
use crate::server::LockAttempt;

/// The lock calls that ride in the first preflight step: one per instance it probes (what-if
/// assumes them granted). Taking it on every instance the run might touch, before the
/// plan says which ones it needs, costs no extra step: the lock sessions connect while the
/// probes run.
pub(super) fn acquire_ops<'a>(
    ctx: &Ctx,
    instances: impl IntoIterator<Item = &'a InstanceAddr>,
) -> Vec<Op> {
    let resource = &ctx.req.settings.lock_resource;
    instances
        .into_iter()
        .map(|i| Op::AcquireLock {
            instance: i.clone(),
            resource: resource.clone(),
        })
        .collect()
}

/// What the first preflight step's lock calls returned, per instance.
#[derive(Debug, Default)]
pub(super) struct Attempts {
    /// Granted.
    granted: Vec<InstanceAddr>,
    /// Held by another session.
    holders: Vec<InstanceAddr>,
    /// Failed (the lock may have been granted before the error).
    errors: Vec<(InstanceAddr, BackendError)>,
}

impl Attempts {
    /// Notes one lock call's result.
    pub(super) fn note(&mut self, instance: &InstanceAddr, r: Result<OpResult, BackendError>) {
        match r {
            Ok(OpResult::Lock(LockAttempt::Granted)) => self.granted.push(instance.clone()),
            Ok(_) => self.holders.push(instance.clone()),
            Err(e) => self.errors.push((instance.clone(), e)),
        }
    }

    /// Every instance where the lock is (or may be) held: released when the run stops.
    pub(super) fn taken(&self) -> Vec<InstanceAddr> {
        self.granted
            .iter()
            .chain(self.errors.iter().map(|(i, _)| i))
            .cloned()
            .collect()
    }
}

/// The first check passed: the lock must be held on every instance the plan needs (and by no
/// one else anywhere), then the run checks again under it.
pub(super) fn on_first_check(ctx: &mut Ctx, plan: &Plan, attempts: Attempts) -> State {
    let needed = plan.lock_instances();
    if !attempts.holders.is_empty() {
        let resource = ctx.req.settings.lock_resource.clone();
        let holders = attempts.holders.clone();
        return ctx.refuse(attempts.taken(), Refusal::LockHeld { resource, holders });
    }
    let failed: Vec<BackendError> = attempts
        .errors
        .iter()
        .filter(|(i, _)| needed.contains(i))
        .map(|(_, e)| e.clone())
        .collect();
    if !failed.is_empty() {
        return ctx.refuse(attempts.taken(), Refusal::LockFailed { errors: failed });
    }
    // Every instance the run needs is locked. An instance it does not need whose lock call
    // failed is left alone: on the SQL backends a failed lock call discards its session, and
    // the server releases what a session held with it; releasing it would only wait for an
    // instance that is down (a disaster recovery's old source).
    let locks = attempts.granted;
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
        serving: needed,
    }))
}

/// Right before the fence: the lock checks that rode in the gate's last step (`checks`, one
/// per lock, in order; none in what-if). A lost lock stops the run with nothing changed.
pub(super) fn confirmed(ctx: &mut Ctx, run: Box<Run>, checks: Results) -> State {
    let lost: Vec<InstanceAddr> = run
        .locks
        .iter()
        .zip(checks)
        .filter(|(_, r)| !matches!(r, Ok(OpResult::LockHeld(true))))
        .map(|(i, _)| i.clone())
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
        warn_unreleased(ctx, op, r);
    }
    State::Done(outcome)
}

/// The warning for a release `op` that failed (also used where the release rides in another
/// step, see [`super::directory`]).
pub(super) fn warn_unreleased(
    ctx: &mut Ctx,
    op: &Op,
    r: Result<crate::op::OpResult, crate::error::BackendError>,
) {
    if let Err(e) = r {
        ctx.f.warnings.push(format!(
            "releasing the lock on {} failed ({e}); it is released when the connection closes",
            op.target()
        ));
    }
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
            S::Preflight,
            |op| {
                matches!(op, Op::AcquireLock { .. })
                    .then_some(Ok(OpResult::Lock(LockAttempt::Held)))
            },
            9,
        );
        let (o, h) = w.run(planned());
        match o.refusal() {
            Some(Refusal::LockHeld { holders, .. }) => assert_eq!(holders.len(), 2),
            _ => panic!("{o}"),
        }
        assert_eq!(h, [S::Preflight, S::Done]);
    }

    #[test]
    fn lock_held_on_one_instance_releases_the_other() {
        let mut w = World::planned();
        w.answer(
            S::Preflight,
            |op| {
                (matches!(op, Op::AcquireLock { .. }) && op.instance() == Some(&a()))
                    .then_some(Ok(OpResult::Lock(LockAttempt::Held)))
            },
            9,
        );
        let (o, h) = w.run(planned());
        assert!(matches!(o.refusal(), Some(Refusal::LockHeld { .. })), "{o}");
        assert_eq!(h, [S::Preflight, S::ReleasingLocks, S::Done]);
        assert!(
            w.mutations()
                .iter()
                .any(|op| matches!(op, Op::ReleaseLock { instance, .. } if *instance == b()))
        );
    }

    #[test]
    fn lock_error_refuses_and_releases_what_may_have_been_granted() {
        let mut w = World::planned();
        w.fail(
            S::Preflight,
            |op| matches!(op, Op::AcquireLock { .. }) && op.instance() == Some(&a()),
            9,
        );
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
            S::AwaitingReplication,
            |op| matches!(op, Op::CheckLock { .. }).then_some(Ok(OpResult::LockHeld(false))),
            9,
        );
        let (o, h) = w.run(planned());
        assert!(matches!(o.refusal(), Some(Refusal::LockLost { .. })), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingReplication, S::ReleasingLocks])
        );
        assert!(!h.contains(&S::Fencing));
        assert!(
            !w.mutations()
                .iter()
                .any(|op| matches!(op, Op::SetReadOnly { .. }))
        );
    }

    #[test]
    fn cancelled_while_confirming_the_lock_changes_nothing() {
        let mut w = World::planned();
        w.cancel_in(S::AwaitingReplication);
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(!h.contains(&S::Fencing));
    }

    #[test]
    fn failed_release_is_a_warning() {
        let mut w = World::planned();
        // The release rides in the directory watch's first step.
        w.fail(
            S::AwaitingDirectory,
            |op| matches!(op, Op::ReleaseLock { .. }),
            9,
        );
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
