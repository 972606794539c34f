//! The undo of a run that failed (or was cancelled) after the fence and before the commit
//! point: fence the target again if it may have been opened, then make the source writable
//! again and confirm it, on a fresh deadline. Two copies are never writable.
//!
//! **The opened target refuses to be fenced again** (issue 12 item 3). SQL Server may refuse
//! `SET READ_ONLY` on a database mirroring principal with 1468 (undocumented either way, see
//! `docs/sql-server-behaviour.md`), while `SET READ_WRITE` there is allowed. An unmirrored
//! source is fenced fine, so a run onto a mirrored target only learns this when the undo
//! tries to fence the opened target: rolling back is then impossible without two writable
//! copies. Preflight cannot refuse earlier: it sees that the target is a mirroring principal,
//! but not whether the server refuses the fence there (refusing every failover to a mirrored
//! store would refuse the case that works), and fencing the target as a test would be a
//! change before the fence. What an operator wants then: the target holds every change
//! (a planned run opened it only after it caught up with the fenced source; a disaster
//! recovery accepted the loss when it started), it is the one writable copy, and its
//! mirroring session (the customer's high availability) stays intact. So:
//!
//! - the source stays fenced (making it writable again would make two writable copies);
//! - when the target is known to serve (the run was cancelled right after it was opened, or
//!   the directory swap did not land), the failover is finished instead: the swap is sent
//!   once more, and the run ends as any run past the commit point, with a warning that says
//!   why it did not roll back. It is tried once: a second refusal ends as below;
//! - otherwise (the open itself failed, so the target may be open in part; the mirroring role
//!   switch did not complete, so the roles are in flux; or the retried swap failed again) the
//!   run ends needing restore, and [`UndoFailure::TargetNotRefenced`] says what is writable
//!   (the target), what was left read-only (the source) and what to run: remove mirroring on
//!   the target (`SET PARTNER OFF`), then `cms-failover restore` (which fences it and puts the
//!   CMS back on the source); until then restore opens nothing.

use super::{Action, Cause, Ctx, Results, Run, S, State, errors_of, release};
use crate::model::DatabaseName;
use crate::op::{Op, OpResult};
use crate::outcome::{Failure, Outcome, UndoFailure};
use crate::request::Mode;
use crate::sqlerror::any_in_mirroring_session;

pub(super) fn enter_undoing_promotion(ctx: &mut Ctx, run: &Run) -> Action {
    let op = Op::SetReadOnly {
        instance: run.plan.target.clone(),
        databases: ctx.dbs().to_vec(),
        read_only: true,
    };
    let timeout = ctx.req.settings.undo_timeout;
    ctx.batch(
        S::UndoingPromotion,
        "fence the target again before undoing the source's fence",
        "the failover failed before the commit point",
        "target databases become READ_ONLY",
        vec![op],
        timeout,
        true,
    )
}

/// The target is fenced again: undo the source's fence. If it cannot be, the source stays
/// fenced (two writable copies would be worse): refused with 1468 while the target is known
/// to serve, the failover is finished (see the module docs); otherwise the run needs a
/// restore.
pub(super) fn on_undone_promotion(
    ctx: &mut Ctx,
    run: Box<Run>,
    cause: Cause,
    results: Results,
) -> State {
    let errors = errors_of(results);
    if errors.is_empty() {
        return State::UndoingFence { run, cause };
    }
    if any_in_mirroring_session(&errors) && target_serves(ctx, &cause) {
        let why = match &cause {
            Cause::Failed(f) => f.to_string(),
            Cause::Cancelled(d) => d.clone(),
        };
        // A planned run opens the target only after it caught up; a disaster recovery
        // opens what the backup had, and the operator accepted the loss when confirming.
        let holds = match ctx.req.mode {
            Mode::DisasterRecovery { .. } => {
                "what it lacks was accepted as lost when the disaster recovery was confirmed"
            }
            _ => "it holds every change the source had",
        };
        ctx.f.warnings.push(format!(
            "not rolled back ({why}): the target {} could not be fenced again, SQL Server refuses READ_ONLY there (1468: a database mirroring session); the source stays read-only, so the target is the one writable copy and the failover was finished on it instead ({holds})",
            run.plan.target
        ));
        return State::RecordingLocation(run);
    }
    let left_read_only = run.fenced.clone();
    release(
        run.locks,
        Outcome::needs_restore(
            cause.into_failure(),
            Some(UndoFailure::TargetNotRefenced { errors }),
            left_read_only,
        ),
    )
}

/// Whether the target is known to serve, so that the failover can be finished on it: the
/// undo came right after the target was opened (a cancellation) or after the directory swap
/// did not land, and the swap has not been retried this way before.
fn target_serves(ctx: &Ctx, cause: &Cause) -> bool {
    let h = &ctx.history;
    let retried = h
        .windows(2)
        .any(|p| p == [S::UndoingPromotion, S::RecordingLocation]);
    let from = h.len().checked_sub(2).map(|i| h[i]);
    !retried
        && matches!(
            (from, cause),
            (Some(S::OpeningTarget), Cause::Cancelled(_)) | (Some(S::ConfirmingRecord), _)
        )
}

pub(super) fn enter_undoing_fence(ctx: &mut Ctx, run: &Run) -> Action {
    let ops = run
        .fenced
        .iter()
        .map(|(i, d)| Op::SetReadOnly {
            instance: i.clone(),
            databases: d.clone(),
            read_only: false,
        })
        .collect();
    let timeout = ctx.req.settings.undo_timeout;
    ctx.batch(
        S::UndoingFence,
        "undo the fence: make the source read-write again",
        "no other copy is writable",
        "source databases become READ_WRITE",
        ops,
        timeout,
        true,
    )
}

pub(super) fn on_undone_fence(run: Box<Run>, cause: Cause, results: Results) -> State {
    let errors = errors_of(results);
    if errors.is_empty() {
        return State::ConfirmingUndo { run, cause };
    }
    let left_read_only = run.fenced.clone();
    release(
        run.locks,
        Outcome::needs_restore(
            cause.into_failure(),
            Some(UndoFailure::FenceNotUndone { errors }),
            left_read_only,
        ),
    )
}

pub(super) fn enter_confirming(ctx: &mut Ctx, run: &Run) -> Action {
    let ops = ctx.probes(run.fenced.iter().map(|(i, _)| i));
    let timeout = ctx.req.settings.undo_timeout;
    ctx.batch(
        S::ConfirmingUndo,
        "confirm the source is back in service",
        "fence undone",
        "nothing",
        ops,
        timeout,
        true,
    )
}

/// Confirmed: rolled back (or cancelled). Not confirmed: what is still read-only needs a
/// restore.
pub(super) fn on_confirmed(
    ctx: &mut Ctx,
    run: Box<Run>,
    cause: Cause,
    ops: &[Op],
    results: Results,
) -> State {
    let mut still = Vec::new();
    for (op, r) in ops.iter().zip(results) {
        match r {
            Ok(OpResult::Probe(p)) => {
                let ro: Vec<DatabaseName> = p
                    .databases
                    .iter()
                    .filter(|d| d.read_only)
                    .map(|d| d.name.clone())
                    .collect();
                if !ro.is_empty() {
                    still.push((op.instance().cloned().expect("a SQL call"), ro));
                }
            }
            _ => still.push((
                op.instance().cloned().expect("a SQL call"),
                ctx.dbs().to_vec(),
            )),
        }
    }
    if !still.is_empty() {
        return release(
            run.locks,
            Outcome::needs_restore(cause.into_failure(), Some(UndoFailure::NotConfirmed), still),
        );
    }
    let outcome = match cause {
        // The directory could not be read back: the swap may have landed, so the directory
        // may name the target that was just fenced again. Restore follows the directory.
        Cause::Failed(
            failure @ Failure::RecordFailed {
                read_back: Some(_), ..
            },
        ) => Outcome::needs_restore(failure, None, Vec::new()),
        Cause::Failed(failure) => Outcome::rolled_back(failure),
        Cause::Cancelled(d) => Outcome::Cancelled {
            detail: format!("{d}; the fence was undone"),
        },
    };
    release(run.locks, outcome)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::error::ErrorKind;
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::{Failure, Outcome, UndoFailure};

    #[test]
    fn undo_that_fails_leaves_the_source_fenced_and_says_so() {
        let mut w = World::planned();
        w.fail(S::OpeningTarget, |_| true, 9);
        w.fail(S::UndoingFence, |_| true, 9);
        let (o, h) = w.run(planned());
        match &o {
            Outcome::NeedsRestore {
                failure,
                undo: Some(UndoFailure::FenceNotUndone { .. }),
                left_read_only,
            } if matches!(**failure, Failure::OpenFailed { .. }) => {
                assert_eq!(left_read_only[0].0, a())
            }
            _ => panic!("{o}"),
        }
        assert!(
            h.windows(2)
                .any(|p| p == [S::UndoingFence, S::ReleasingLocks])
        );
    }

    #[test]
    fn undo_that_cannot_be_confirmed_needs_restore() {
        let mut w = World::planned();
        w.fail(S::OpeningTarget, |_| true, 9);
        w.fail(S::ConfirmingUndo, |_| true, 9);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                &o,
                Outcome::NeedsRestore {
                    undo: Some(UndoFailure::NotConfirmed),
                    ..
                }
            ),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::UndoingFence, S::ConfirmingUndo])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::ConfirmingUndo, S::ReleasingLocks])
        );
    }

    /// The target refuses `SET READ_ONLY` with 1468 (a mirroring principal on a server that
    /// refuses the fence there; the source is unmirrored, so its fence worked).
    fn target_refuses_the_fence(w: &mut World) {
        w.answer(
            S::UndoingPromotion,
            crate::machine::fence::tests::refused_in_mirroring_session,
            usize::MAX,
        );
    }

    /// Cancelled right after the target was opened, the target refusing to be fenced again:
    /// the failover is finished on it (planned and disaster recovery), the source stays
    /// fenced, and a warning says why it was not rolled back.
    #[test]
    fn cancelled_after_the_open_of_a_target_that_refuses_the_fence_finishes_the_failover() {
        let cases = [
            (
                World::planned(),
                planned(),
                "it holds every change the source had",
            ),
            (World::dr(), dr(), "accepted as lost"),
        ];
        for (mut w, req, holds) in cases {
            w.cancel_in(S::OpeningTarget);
            target_refuses_the_fence(&mut w);
            let mut m = w.machine(req);
            let o = w.drive(&mut m);
            assert!(
                matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
                "{o}"
            );
            let h = m.history();
            assert!(
                h.windows(2)
                    .any(|p| p == [S::UndoingPromotion, S::RecordingLocation]),
                "{h:?}"
            );
            assert!(!h.contains(&S::UndoingFence), "{h:?}");
            let warnings = m.findings().warnings.join("\n");
            assert!(
                warnings.contains("not rolled back")
                    && warnings.contains("1468")
                    && warnings.contains("one writable copy")
                    && warnings.contains(holds),
                "{warnings}"
            );
            assert!(w.writable(&b()) && !w.any_writable(&a()));
        }
    }

    /// The directory swap did not land and the target refuses to be fenced again: the swap
    /// is sent once more, and the run succeeds on the target.
    #[test]
    fn a_swap_that_did_not_land_is_sent_again_when_the_target_refuses_the_fence() {
        let mut w = World::planned();
        w.fail(S::RecordingLocation, |_| true, 1);
        target_refuses_the_fence(&mut w);
        let (o, h) = w.run(planned());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        assert!(
            h.windows(3).any(|p| p
                == [
                    S::ConfirmingRecord,
                    S::UndoingPromotion,
                    S::RecordingLocation
                ]),
            "{h:?}"
        );
        assert!(w.writable(&b()) && !w.any_writable(&a()));
        assert_eq!(w.record_on(&b()).map(|r| r.active), Some(topology().backup));
    }

    /// Checks a run that ended needing restore because the target refused to be fenced again:
    /// the source left read-only, the target the one writable copy, and the text says so and
    /// what to run.
    fn needs_restore_with_the_target_writable(o: &Outcome, w: &World) {
        match o {
            Outcome::NeedsRestore {
                undo: Some(UndoFailure::TargetNotRefenced { .. }),
                left_read_only,
                ..
            } => assert_eq!(left_read_only[0].0, a()),
            _ => panic!("{o}"),
        }
        let text = o.to_string();
        assert!(
            text.contains("one writable copy")
                && text.contains("SET PARTNER OFF")
                && text.contains("cms-failover restore")
                && text.contains(&b().to_string()),
            "{text}"
        );
        assert!(w.writable(&b()) && !w.any_writable(&a()));
    }

    /// The retried swap fails too: tried once only, the run needs restore and says that the
    /// target is the one writable copy and what to run.
    #[test]
    fn a_swap_that_fails_again_needs_restore_with_the_target_the_one_writable_copy() {
        let mut w = World::planned();
        w.fail(S::RecordingLocation, |_| true, 9);
        target_refuses_the_fence(&mut w);
        let (o, h) = w.run(planned());
        needs_restore_with_the_target_writable(&o, &w);
        let retries = h
            .windows(2)
            .filter(|p| *p == [S::UndoingPromotion, S::RecordingLocation])
            .count();
        assert_eq!(retries, 1, "{h:?}");
        assert!(h.ends_with(&[S::UndoingPromotion, S::ReleasingLocks, S::Done]));
    }

    /// The open failed after taking effect (the target may be open in part): not finished,
    /// the run needs restore and says what is writable.
    #[test]
    fn a_failed_open_of_a_target_that_refuses_the_fence_needs_restore_and_says_what_is_writable() {
        let mut w = World::planned();
        w.fail_after_effect(S::OpeningTarget, ErrorKind::Timeout);
        target_refuses_the_fence(&mut w);
        let (o, h) = w.run(planned());
        needs_restore_with_the_target_writable(&o, &w);
        assert!(!h.contains(&S::RecordingLocation), "{h:?}");
    }

    /// The mirroring role switch did not complete (roles in flux) and the serving partner
    /// refuses to be fenced again: not finished either.
    #[test]
    fn a_switch_timeout_with_a_partner_that_refuses_the_fence_needs_restore() {
        let mut w = World::planned_mirrored();
        w.delay_switch(usize::MAX);
        target_refuses_the_fence(&mut w);
        let mut req = planned_mirrored();
        req.settings.mirror_switch_timeout = std::time::Duration::from_secs(5);
        let (o, h) = w.run(req);
        assert!(
            matches!(
                &o,
                Outcome::NeedsRestore {
                    undo: Some(UndoFailure::TargetNotRefenced { .. }),
                    ..
                }
            ),
            "{o}"
        );
        assert!(o.to_string().contains("SET PARTNER OFF"), "{o}");
        assert!(!h.contains(&S::RecordingLocation), "{h:?}");
        assert!(!w.any_writable(&a()));
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        undo_that_fails_leaves_the_source_fenced_and_says_so,
        undo_that_cannot_be_confirmed_needs_restore,
        cancelled_after_the_open_of_a_target_that_refuses_the_fence_finishes_the_failover,
        a_swap_that_did_not_land_is_sent_again_when_the_target_refuses_the_fence,
        a_swap_that_fails_again_needs_restore_with_the_target_the_one_writable_copy,
        a_failed_open_of_a_target_that_refuses_the_fence_needs_restore_and_says_what_is_writable,
        a_switch_timeout_with_a_partner_that_refuses_the_fence_needs_restore,
    ];
}
