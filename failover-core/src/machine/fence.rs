//! The fence: the source's databases become read-only (writes stop). Planned: a failed fence
//! is probed to learn what it changed. Disaster recovery: an unreachable source is expected;
//! a reachable one that refuses stops the run. Restore: every writable copy outside the
//! recorded store.

use super::{Action, Cause, Ctx, Results, Run, S, State, errors_of, promote, release};
use crate::error::ErrorKind;
use crate::op::{Op, OpResult};
use crate::outcome::{Failure, Outcome, Refusal};
use crate::request::Mode;
use crate::sqlerror::any_in_mirroring_session;
use std::time::Duration;

pub(super) fn enter_fencing(ctx: &mut Ctx, run: &mut Run, now: Duration) -> Action {
    let ops: Vec<Op> = run
        .plan
        .to_fence
        .iter()
        .map(|(i, d)| Op::SetReadOnly {
            instance: i.clone(),
            databases: d.clone(),
            read_only: true,
        })
        .collect();
    if ctx.f.window_start.is_none() && !matches!(ctx.req.mode, Mode::Restore) {
        ctx.f.window_start = Some(now);
    }
    // Known or suspected fenced from now on: an undo covers them whatever the answer.
    run.fenced.extend(run.plan.to_fence.iter().cloned());
    let st = &ctx.req.settings;
    let (timeout, description) = match ctx.req.mode {
        Mode::Restore => (
            st.step_timeout,
            "fence every writable copy outside the recorded store",
        ),
        Mode::DisasterRecovery { .. } => (
            st.dr_fence_timeout,
            "try to fence the old source (it is expected to be unreachable)",
        ),
        Mode::Planned => (
            st.step_timeout,
            "fence the source: set every CMS database read-only",
        ),
    };
    ctx.batch(
        S::Fencing,
        description,
        "replication caught up; lock held",
        "source databases become READ_ONLY (writes stop)",
        ops,
        timeout,
        true,
    )
}

pub(super) fn on_fenced(
    ctx: &mut Ctx,
    mut run: Box<Run>,
    results: Results,
    now: Duration,
) -> State {
    let errors = errors_of(results);
    match &ctx.req.mode {
        Mode::Restore if errors.is_empty() => promote(run),
        Mode::Restore => {
            let left_read_only = run.fenced.clone();
            release(
                run.locks,
                Outcome::needs_restore(Failure::OthersNotFenced { errors }, None, left_read_only),
            )
        }
        Mode::DisasterRecovery { .. } => {
            let (gone, refused): (Vec<_>, Vec<_>) = errors
                .into_iter()
                .partition(|e| matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout));
            if !refused.is_empty() {
                // The old source is up and refused the fence: promoting now would make two
                // writable copies.
                return State::ProbingFence {
                    run,
                    failure: Failure::OldSourceRefusedFence { errors: refused },
                };
            }
            if !gone.is_empty() {
                let text: Vec<String> = gone.iter().map(|e| e.to_string()).collect();
                ctx.f.warnings.push(format!(
                    "the old source could not be fenced ({}); if it comes back, it must not take writes: run `cms-failover restore` once it is reachable",
                    text.join("; ")
                ));
                run.fenced.clear();
            }
            State::ReadingPositions(run)
        }
        Mode::Planned if !errors.is_empty() => State::ProbingFence {
            run,
            failure: Failure::FenceFailed { errors },
        },
        Mode::Planned if ctx.cancel => State::UndoingFence {
            run,
            cause: Cause::Cancelled("cancelled right after the fence".into()),
        },
        Mode::Planned => super::replication::after_fence(ctx, run, now),
    }
}

pub(super) fn enter_probing(ctx: &mut Ctx, run: &Run) -> Action {
    let ops = ctx.probes(run.plan.to_fence.iter().map(|(i, _)| i));
    let timeout = ctx.req.settings.undo_timeout;
    ctx.batch(
        S::ProbingFence,
        "find out which databases the failed fence changed",
        "fence failed",
        "nothing",
        ops,
        timeout,
        true,
    )
}

/// A failed fence that changed something (or may have) is undone; one that changed
/// nothing ends rolled back at once, or, refused with 1468 (the source is in a database
/// mirroring session and the server refuses `SET READ_ONLY` there), as a refusal: the fence
/// is the first change of a planned or disaster-recovery run, so nothing was changed, and
/// the refusal says what the operator can do (`docs/sql-server-behaviour.md`, item 3).
pub(super) fn on_probed(mut run: Box<Run>, failure: Failure, results: Results) -> State {
    let probes: Vec<_> = results.into_iter().collect();
    let fenced_or_unknown = probes.iter().any(|r| match r {
        Ok(OpResult::Probe(p)) => p.databases.iter().any(|d| d.read_only),
        _ => true,
    });
    // 1468 names "a database mirroring session or an availability group": no mirroring
    // session on the probed copies means the group.
    let availability_group = !probes.iter().any(|r| {
        matches!(r, Ok(OpResult::Probe(p)) if p.databases.iter().any(|d| d.mirroring.is_some()))
    });
    if fenced_or_unknown {
        return State::UndoingFence {
            run,
            cause: Cause::Failed(failure),
        };
    }
    run.fenced.clear();
    let outcome = match failure {
        Failure::FenceFailed { errors } | Failure::OldSourceRefusedFence { errors }
            if any_in_mirroring_session(&errors) =>
        {
            Refusal::FenceRefusedInMirroringSession {
                errors,
                availability_group,
            }
            .into()
        }
        failure => Outcome::rolled_back(failure),
    };
    release(run.locks, outcome)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::error::ErrorKind;
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::{Failure, Outcome, Refusal};

    #[test]
    fn failed_fence_that_changed_nothing_rolls_back_at_once() {
        let mut w = World::planned();
        w.fail(S::Fencing, |_| true, 9);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::RolledBack { .. },
                    Some(Failure::FenceFailed { .. })
                )
            ),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::ProbingFence, S::ReleasingLocks])
        );
        assert!(w.writable(&a()));
    }

    #[test]
    fn failed_fence_that_did_land_is_undone() {
        let mut w = World::planned();
        // The fence lands, then the answer is lost.
        w.fail_after_effect(S::Fencing, ErrorKind::Timeout);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::RolledBack { .. },
                    Some(Failure::FenceFailed { .. })
                )
            ),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::ProbingFence, S::UndoingFence])
        );
        assert!(w.writable(&a()));
    }

    #[test]
    fn cancelled_right_after_the_fence_undoes_it() {
        let mut w = World::planned();
        w.cancel_in(S::Fencing);
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(h.windows(2).any(|p| p == [S::Fencing, S::UndoingFence]));
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    #[test]
    fn dr_old_source_that_refuses_the_fence_stops_the_run() {
        let mut w = World::dr();
        w.fail_kind(S::Fencing, |_| true, ErrorKind::Permission, 9);
        let (o, h) = w.run(dr());
        assert!(
            matches!(o.failure(), Some(Failure::OldSourceRefusedFence { .. })),
            "{o}"
        );
        assert!(h.contains(&S::ProbingFence) && !h.contains(&S::OpeningTarget));
    }

    #[test]
    fn dr_unreachable_old_source_is_a_warning() {
        let mut w = World::dr();
        // The old source goes down just as it is fenced.
        w.on_nth(S::Fencing, 1, |w| w.set_down(&a()));
        let mut m = crate::machine::Machine::new(dr());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            m.history()
                .windows(2)
                .any(|p| p == [S::ReadingPositions, S::OpeningTarget])
        );
        assert!(!m.findings().warnings.is_empty());
    }

    /// SQL Server's answer to `SET READ_ONLY` on a mirroring principal where it refuses it
    /// (issue 12 item 3): 1468, invalid state.
    pub(crate) fn refused_in_mirroring_session(
        op: &crate::op::Op,
    ) -> Option<Result<crate::op::OpResult, crate::error::BackendError>> {
        matches!(op, crate::op::Op::SetReadOnly { read_only: true, .. }).then(|| {
            Err(crate::error::BackendError::new(
                ErrorKind::InvalidState,
                op.operation(),
                op.target(),
                "The operation cannot be performed on database \"xds\" because it is involved in a database mirroring session or an availability group.",
            )
            .with_code(crate::sqlerror::IN_MIRRORING_SESSION))
        })
    }

    /// Runs `req` on `w` with every fence refused with 1468 and checks the refusal: exit 3,
    /// the code, the operator's way out, the lock released, nothing durable changed, the
    /// source still writable and `target` not.
    ///
    /// `availability_group`: the source is in no mirroring session, so the refusal names the
    /// availability group and its way out.
    fn refused_by_mirroring(
        mut w: World,
        req: crate::request::FailoverRequest,
        target: crate::model::InstanceAddr,
        availability_group: bool,
    ) {
        w.answer(S::Fencing, refused_in_mirroring_session, usize::MAX);
        let (o, h) = w.run(req);
        assert!(
            matches!(
                o.refusal(),
                Some(Refusal::FenceRefusedInMirroringSession { availability_group: ag, .. })
                    if *ag == availability_group
            ),
            "{o}"
        );
        assert_eq!(o.code(), Some("fence_refused_in_mirroring_session"));
        assert_eq!(o.exit_code(), 3);
        let text = o.to_string();
        let way_out = if availability_group {
            text.contains("ALTER AVAILABILITY GROUP [<ag>] REMOVE DATABASE [<db>];")
                && !text.contains("SET PARTNER OFF")
        } else {
            text.contains("SET PARTNER OFF") && text.contains("SET PARTNER SUSPEND")
        };
        assert!(text.contains("nothing was changed") && way_out, "{text}");
        assert!(
            h.ends_with(&[S::Fencing, S::ProbingFence, S::ReleasingLocks, S::Done]),
            "{h:?}"
        );
        let durable = w.durable_mutations();
        assert!(durable.is_empty(), "{durable:?}");
        assert!(w.writable(&a()) && !w.any_writable(&target));
    }

    /// Planned, the source's databases in no mirroring session refusing the fence with 1468
    /// (an availability group): refused before any change, and the way out is the group's
    /// (`REMOVE DATABASE`), not mirroring's.
    #[test]
    fn a_fence_refused_with_1468_outside_a_mirroring_session_names_the_availability_group() {
        refused_by_mirroring(World::planned(), planned(), b(), true);
    }

    /// Planned, the source a mirroring principal on a server that refuses READ_ONLY there:
    /// the probe finds nothing fenced, the run ends refused (exit 3), the lock released,
    /// nothing durable changed, and the text says what to do.
    #[test]
    fn planned_fence_refused_in_a_mirroring_session_is_a_refusal_that_changes_nothing() {
        refused_by_mirroring(World::planned_mirrored(), planned_mirrored(), bm(), false);
    }

    /// Disaster recovery with the old source up and refusing the fence with 1468: refused
    /// before any change as well (promoting would make two writable copies). Its databases
    /// are in no mirroring session, so the refusal names the availability group.
    #[test]
    fn dr_old_source_refusing_the_fence_in_a_mirroring_session_is_a_refusal() {
        refused_by_mirroring(World::dr(), dr(), b(), true);
    }

    /// Part of the fence landed (a database outside the session) and the rest was refused
    /// with 1468: the run is undone as any failed fence, and the failure says why.
    #[test]
    fn a_fence_refused_in_part_by_mirroring_is_undone_and_says_why() {
        let mut w = World::planned();
        w.on_nth(S::Fencing, 1, |w| w.set_writable(&a(), false));
        w.answer(S::Fencing, refused_in_mirroring_session, usize::MAX);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::RolledBack { .. },
                    Some(Failure::FenceFailed { .. })
                )
            ),
            "{o}"
        );
        assert!(o.to_string().contains("SET PARTNER OFF"), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::ProbingFence, S::UndoingFence])
        );
        assert!(w.writable(&a()));
    }

    /// Restore must fence the copy outside the recorded store; refused with 1468 it opens
    /// nothing (never two writable copies) and says to remove mirroring there first.
    #[test]
    fn restore_whose_other_copy_refuses_the_fence_in_a_mirroring_session_opens_nothing() {
        let mut w = World::planned();
        w.record_everywhere(record(2, &topology().backup));
        w.answer(S::Fencing, refused_in_mirroring_session, usize::MAX);
        let (o, h) = w.run(restore());
        assert!(
            matches!(o.failure(), Some(Failure::OthersNotFenced { .. })),
            "{o}"
        );
        let text = o.to_string();
        assert!(
            text.contains("SET PARTNER OFF") && text.contains("run restore again"),
            "{text}"
        );
        assert!(!h.contains(&S::OpeningTarget), "{h:?}");
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        a_fence_refused_with_1468_outside_a_mirroring_session_names_the_availability_group,
        restore_whose_other_copy_refuses_the_fence_in_a_mirroring_session_opens_nothing,
        planned_fence_refused_in_a_mirroring_session_is_a_refusal_that_changes_nothing,
        dr_old_source_refusing_the_fence_in_a_mirroring_session_is_a_refusal,
        a_fence_refused_in_part_by_mirroring_is_undone_and_says_why,
        failed_fence_that_changed_nothing_rolls_back_at_once,
        failed_fence_that_did_land_is_undone,
        cancelled_right_after_the_fence_undoes_it,
        dr_old_source_that_refuses_the_fence_stops_the_run,
        dr_unreachable_old_source_is_a_warning,
    ];
}
