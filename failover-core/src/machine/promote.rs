//! Promotion: force the backup's mirror when its principal is down (disaster recovery),
//! bring RESTORING copies online, make the target read-write, and give the principal role
//! back to the store's designated principal (planned).

use super::{Action, Cause, Ctx, Results, Run, S, State, errors_of, promote, release, restore};
use crate::model::InstanceAddr;
use crate::op::{Op, OpResult};
use crate::outcome::{Failure, Outcome};
use crate::request::Mode;
use crate::server::MirrorFailoverKind;
use std::time::Duration;

pub(super) fn enter_forcing(ctx: &mut Ctx, mirror: &InstanceAddr) -> Action {
    let op = Op::MirrorFailover {
        instance: mirror.clone(),
        databases: ctx.dbs().to_vec(),
        kind: MirrorFailoverKind::Forced,
        expected_partner: mirror.clone(),
    };
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::ForcingMirror,
        "force service on the backup's mirror (its principal is down)",
        "the backup principal is unreachable and its mirror is reachable",
        "the mirror becomes principal; the mirroring session is suspended (unsent log is lost)",
        vec![op],
        timeout,
        true,
    )
}

/// SQL Server returns from `FORCE_SERVICE_ALLOW_DATA_LOSS` before the roles switch, so the
/// forced mirror is awaited ([`super::switch`]) before it is recovered or opened; so is an
/// error that leaves the effect unknown (retryable kinds: a timeout, a dropped connection, a
/// busy mirror). A refusal (the server answered and changed nothing) undoes the fence.
/// What-if sends nothing, so nothing is awaited.
pub(super) fn on_forced(
    ctx: &mut Ctx,
    mut run: Box<Run>,
    mirror: InstanceAddr,
    results: Results,
    now: Duration,
) -> State {
    match results.into_iter().next() {
        Some(Ok(OpResult::Partner(p))) => {
            // Servers report the partner as they name it (often NETBIOS\INST); the
            // topology's name for the instance we forced is what clients use.
            if p != mirror {
                ctx.f.warnings.push(format!(
                    "the server reports the new principal as {p}; using the topology's name {mirror}"
                ));
            }
            if ctx.what_if() {
                run.plan.target = mirror;
                return promote(run);
            }
            super::switch::start_forced(ctx, run, mirror, None, now)
        }
        Some(Err(e)) if e.kind.is_retryable() && !ctx.what_if() => {
            super::switch::start_forced(ctx, run, mirror, Some(e), now)
        }
        Some(Err(e)) if e.code == Some(1455) && !ctx.what_if() => {
            super::switch::check_refused_force(ctx, run, mirror, e, now)
        }
        Some(Err(e)) => {
            if e.code == Some(1455) {
                ctx.f.warnings.push(force_refused_advice(&mirror));
            }
            State::UndoingFence {
                run,
                cause: Cause::Failed(Failure::ForceFailed { error: Some(e) }),
            }
        }
        _ => State::UndoingFence {
            run,
            cause: Cause::Failed(Failure::ForceFailed { error: None }),
        },
    }
}

/// What a 1455 at the force means and what to do. SQL Server sends it when the database
/// "is not in the correct state to become the principal database": the witness is set and
/// no longer connected to the mirror
/// (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/force-service-in-a-database-mirroring-session-transact-sql>),
/// or the copy is already the principal: in high-safety mode with a witness the mirror
/// takes over by itself when the principal is lost (automatic failover,
/// <https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/role-switching-during-a-database-mirroring-session-sql-server>),
/// which can land between preflight and the force. Both are safe to run again: a mirror
/// that is now the principal is promoted without forcing.
pub(super) fn force_refused_advice(mirror: &InstanceAddr) -> String {
    format!(
        "SQL Server refused to force service on {mirror} (1455): either its witness is no longer connected to it, or it is already the principal (an automatic failover by the witness after its principal was lost). Check `SELECT mirroring_role_desc, mirroring_witness_state_desc FROM sys.database_mirroring` on {mirror}: if it shows PRINCIPAL, run the disaster recovery again (it promotes {mirror} without forcing); if the witness shows DISCONNECTED, bring the witness back or run `ALTER DATABASE … SET WITNESS OFF` on {mirror}, then run it again"
    )
}

pub(super) fn enter_recovering(ctx: &mut Ctx, run: &Run) -> Action {
    let op = Op::Recover {
        instance: run.plan.target.clone(),
        databases: run.plan.to_recover.clone(),
    };
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::Recovering,
        "bring RESTORING copies on the target online",
        "the target has caught up",
        "RESTORE … WITH RECOVERY (cannot be undone: the copy stops receiving log)",
        vec![op],
        timeout,
        true,
    )
}

pub(super) fn on_recovered(ctx: &mut Ctx, run: Box<Run>, results: Results) -> State {
    let errors = errors_of(results);
    if errors.is_empty() {
        return State::OpeningTarget(run);
    }
    let failure = Failure::RecoveryFailed { errors };
    if matches!(ctx.req.mode, Mode::Restore) {
        let left_read_only = restore::left_read_only(&run, ctx.dbs());
        return release(
            run.locks,
            Outcome::needs_restore(failure, None, left_read_only),
        );
    }
    State::UndoingFence {
        run,
        cause: Cause::Failed(failure),
    }
}

pub(super) fn enter_opening(ctx: &mut Ctx, run: &Run) -> Action {
    let op = Op::SetReadOnly {
        instance: run.plan.target.clone(),
        databases: ctx.dbs().to_vec(),
        read_only: false,
    };
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::OpeningTarget,
        "make the target's databases read-write",
        "every other copy is read-only",
        "target databases become READ_WRITE",
        vec![op],
        timeout,
        true,
    )
}

pub(super) fn on_opened(ctx: &mut Ctx, run: Box<Run>, results: Results) -> State {
    let errors = errors_of(results);
    if matches!(ctx.req.mode, Mode::Restore) {
        if errors.is_empty() {
            return super::commit::after_restore_opened(ctx, run);
        }
        let left_read_only = restore::left_read_only(&run, ctx.dbs());
        return release(
            run.locks,
            Outcome::needs_restore(Failure::OpenFailed { errors }, None, left_read_only),
        );
    }
    if !errors.is_empty() {
        return State::UndoingPromotion {
            run,
            cause: Cause::Failed(Failure::OpenFailed { errors }),
        };
    }
    if ctx.cancel {
        return State::UndoingPromotion {
            run,
            cause: Cause::Cancelled("cancelled after the target was opened".into()),
        };
    }
    match run.plan.repoint_to.clone() {
        Some(principal) if principal != run.plan.target => {
            State::RepointingMirror { run, principal }
        }
        _ => State::RecordingLocation(run),
    }
}

pub(super) fn enter_repointing(ctx: &mut Ctx, run: &Run, principal: &InstanceAddr) -> Action {
    let op = Op::MirrorFailover {
        instance: run.plan.target.clone(),
        databases: ctx.dbs().to_vec(),
        kind: MirrorFailoverKind::Planned,
        expected_partner: principal.clone(),
    };
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::RepointingMirror,
        "give the principal role back to the target store's designated principal",
        "the mirroring session is SYNCHRONIZED with safety FULL",
        "mirroring roles swap (planned, no data loss)",
        vec![op],
        timeout,
        true,
    )
}

/// Repointing is best effort: the mirror partner serving is a working end state. SQL Server
/// returns from `SET PARTNER FAILOVER` before the roles switch, so the designated principal
/// is awaited ([`super::switch`]); so is a failed statement (its answer may have been lost),
/// which leaves the partner serving once a probe shows nothing switching. What-if sends
/// nothing, so nothing is awaited.
pub(super) fn on_repointed(
    ctx: &mut Ctx,
    mut run: Box<Run>,
    principal: InstanceAddr,
    results: Results,
    now: Duration,
) -> State {
    match results.into_iter().next() {
        Some(Ok(OpResult::Partner(_))) if ctx.what_if() => {
            run.plan.target = principal;
            State::RecordingLocation(run)
        }
        Some(Ok(OpResult::Partner(_))) => super::switch::start(ctx, run, principal, None, now),
        Some(Err(e)) => super::switch::start(ctx, run, principal, Some(e), now),
        _ => State::RecordingLocation(run),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::error::ErrorKind;
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::{Failure, Outcome, Refusal, UndoFailure};
    use crate::server::WitnessState;

    #[test]
    fn failed_open_fences_the_target_again_then_undoes_the_fence() {
        let mut w = World::planned();
        w.fail_after_effect(S::OpeningTarget, crate::error::ErrorKind::Timeout);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                (&o, o.failure()),
                (Outcome::RolledBack { .. }, Some(Failure::OpenFailed { .. }))
            ),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::OpeningTarget, S::UndoingPromotion])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::UndoingPromotion, S::UndoingFence])
        );
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    #[test]
    fn cancelled_after_the_open_is_undone() {
        let mut w = World::planned();
        w.cancel_in(S::OpeningTarget);
        let (o, _) = w.run(planned());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    #[test]
    fn failed_recovery_undoes_the_fence() {
        let mut w = World::planned();
        w.set_restoring(&b());
        w.fail(S::Recovering, |_| true, 9);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::RolledBack { .. },
                    Some(Failure::RecoveryFailed { .. })
                )
            ),
            "{o}"
        );
        assert!(h.windows(2).any(|p| p == [S::Recovering, S::UndoingFence]));
    }

    #[test]
    fn planned_on_a_mirror_partner_gives_the_role_back() {
        let mut w = World::planned_mirrored();
        let (o, h) = w.run(planned_mirrored());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::OpeningTarget, S::RepointingMirror])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::RepointingMirror, S::AwaitingPrincipal])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingPrincipal, S::RecordingLocation])
        );
    }

    #[test]
    fn what_if_does_not_wait_for_the_role_switch() {
        let mut w = World::planned_mirrored();
        let mut req = planned_mirrored();
        req.what_if = true;
        let (_, h) = w.run(req);
        assert!(
            h.windows(2)
                .any(|p| p == [S::RepointingMirror, S::RecordingLocation]),
            "{h:?}"
        );
        assert!(!h.contains(&S::AwaitingPrincipal), "{h:?}");
        assert!(w.durable_mutations().is_empty());
    }

    #[test]
    fn dr_force_failure_undoes_the_fence() {
        let mut w = World::dr_mirrored();
        w.fail(S::ForcingMirror, |_| true, 9);
        let (o, h) = w.run(dr_mirrored());
        assert!(
            matches!(o.failure(), Some(Failure::ForceFailed { .. })),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::ForcingMirror, S::UndoingFence])
        );
    }

    /// The mirror to be forced sees its witness DISCONNECTED: 1455 is certain, so the run is
    /// refused before any durable change, naming `SET WITNESS OFF`.
    #[test]
    fn dr_refused_when_the_mirror_sees_its_witness_disconnected() {
        let mut w = World::dr_mirrored();
        w.set_witness(&bm(), WitnessState::Disconnected);
        let (o, h) = w.run(dr_mirrored());
        let Some(
            r @ Refusal::WitnessDisconnected {
                instance,
                databases,
                witness,
            },
        ) = o.refusal()
        else {
            panic!("{o}")
        };
        assert_eq!(instance, &bm());
        assert_eq!(databases.len(), 2, "{r}");
        assert_eq!(witness, "TCP://wit.test:5022");
        let text = r.to_string();
        assert!(
            text.contains("1455")
                && text.contains("SET WITNESS OFF")
                && text.contains("either partner"),
            "{text}"
        );
        assert!(!h.contains(&S::ForcingMirror), "{h:?}");
        assert!(
            w.durable_mutations().is_empty(),
            "{:?}",
            w.durable_mutations()
        );
    }

    /// A witness connected to the mirror, or one the mirror does not know about (UNKNOWN),
    /// does not stop the force.
    #[test]
    fn dr_forces_the_mirror_when_its_witness_is_connected_or_unknown() {
        for state in [WitnessState::Connected, WitnessState::Unknown] {
            let mut w = World::dr_mirrored();
            w.set_witness(&bm(), state);
            let (o, h) = w.run(dr_mirrored());
            assert!(matches!(o, Outcome::Succeeded { .. }), "{state:?}: {o}");
            assert!(h.contains(&S::ForcingMirror), "{h:?}");
        }
    }

    /// The witness dropped off between preflight and the force: 1455 (classified
    /// `InvalidState`) at the force ends the run as a failed force with the fence undone,
    /// never half-way.
    #[test]
    fn dr_1455_at_the_force_ends_with_the_fence_undone() {
        assert_eq!(crate::sqlerror::classify(1455), ErrorKind::InvalidState);
        let mut w = World::dr_mirrored();
        w.set_witness(&bm(), WitnessState::Connected);
        w.fail_kind(S::ForcingMirror, |_| true, ErrorKind::InvalidState, 9);
        let (o, h) = w.run(dr_mirrored());
        assert!(
            matches!(o.failure(), Some(Failure::ForceFailed { .. })),
            "{o}"
        );
        assert!(!matches!(o, Outcome::NeedsRestore { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::ForcingMirror, S::UndoingFence]),
            "{h:?}"
        );
        assert_eq!(h.last(), Some(&S::Done), "{h:?}");
    }

    /// A 1455 at the force while the mirror still does not serve (a look after the refusal
    /// shows it MIRROR): the run ends as a failed force with the fence undone, and the report
    /// says what 1455 means here and what to run (`switch.rs` has the case where it serves).
    #[test]
    fn dr_1455_at_the_force_says_the_mirror_may_already_be_the_principal() {
        let mut w = World::dr_mirrored();
        w.refuse_force_1455();
        let mut m = w.machine(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(
            matches!(o.failure(), Some(Failure::ForceFailed { .. })),
            "{o}"
        );
        let warnings = m.findings().warnings.join("\n");
        assert!(
            warnings.contains("1455")
                && warnings.contains("already the principal")
                && warnings.contains("run the disaster recovery again")
                && warnings.contains(&bm().to_string()),
            "{warnings}"
        );
    }

    #[test]
    fn dr_forced_mirror_with_a_restoring_copy_is_recovered() {
        let mut w = World::dr_mirrored();
        // xds is a mirror copy; lis a log-shipped copy (RESTORING, no mirroring session).
        w.set_restoring_unmirrored_db(&bm(), 1);
        let (o, h) = w.run(dr_mirrored());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::ForcingMirror, S::AwaitingPrincipal])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingPrincipal, S::Recovering])
        );
    }

    #[test]
    fn target_that_cannot_be_fenced_again_needs_restore() {
        let mut w = World::planned();
        w.fail(S::OpeningTarget, |_| true, 9);
        w.fail(S::UndoingPromotion, |_| true, 9);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                &o,
                Outcome::NeedsRestore {
                    failure,
                    undo: Some(UndoFailure::TargetNotRefenced { .. }),
                    ..
                } if matches!(**failure, Failure::OpenFailed { .. })
            ),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::UndoingPromotion, S::ReleasingLocks])
        );
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        failed_open_fences_the_target_again_then_undoes_the_fence,
        cancelled_after_the_open_is_undone,
        failed_recovery_undoes_the_fence,
        planned_on_a_mirror_partner_gives_the_role_back,
        what_if_does_not_wait_for_the_role_switch,
        dr_force_failure_undoes_the_fence,
        dr_forced_mirror_with_a_restoring_copy_is_recovered,
        dr_refused_when_the_mirror_sees_its_witness_disconnected,
        dr_forces_the_mirror_when_its_witness_is_connected_or_unknown,
        dr_1455_at_the_force_ends_with_the_fence_undone,
        dr_1455_at_the_force_says_the_mirror_may_already_be_the_principal,
        target_that_cannot_be_fenced_again_needs_restore,
    ];
}
