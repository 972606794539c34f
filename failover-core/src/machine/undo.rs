//! The undo of a run that failed (or was cancelled) after the fence and before the commit
//! point: fence the target again if it may have been opened, then make the source writable
//! again and confirm it, on a fresh deadline. Two copies are never writable.

use super::{Action, Cause, Ctx, Results, Run, S, State, errors_of, release};
use crate::model::DatabaseName;
use crate::op::{Op, OpResult};
use crate::outcome::{Failure, Outcome, UndoFailure};

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
/// fenced (two writable copies would be worse) and the run needs a restore.
pub(super) fn on_undone_promotion(run: Box<Run>, cause: Cause, results: Results) -> State {
    let errors = errors_of(results);
    if errors.is_empty() {
        return State::UndoingFence { run, cause };
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

    pub(crate) const SCENARIOS: &[fn()] = &[
        undo_that_fails_leaves_the_source_fenced_and_says_so,
        undo_that_cannot_be_confirmed_needs_restore,
    ];
}
