//! The wait for a mirroring role switch: after `SET PARTNER FAILOVER` (planned, giving the
//! principal role back to the target store's designated principal) and after
//! `SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS` (disaster recovery, forcing the backup's
//! mirror). SQL Server returns from both statements before the roles switch — "A SET
//! PARTNER or SET WITNESS command can complete successfully when entered, but fail later"
//! (<https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>);
//! meanwhile `sys.database_mirroring` shows the planned switch as
//! `mirroring_state_desc = PENDING_FAILOVER`
//! (<https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>).
//! What a forced mirror shows until its switch lands is not documented; the wait assumes
//! nothing about it (an inference: it may keep showing MIRROR / RESTORING).
//!
//! The instance that should serve is not treated as serving until a probe shows every CMS
//! database on it PRINCIPAL and ONLINE (after a force, a database outside any mirroring
//! session — a log-shipped copy the force does not touch — is left to recovery). Progress
//! goes through the observer; the bound is `mirror_switch_timeout`.
//!
//! Planned: both partners are probed each poll. When the statement itself failed (its
//! answer may have been lost, so the switch may still be under way) and the partner still
//! serves with no switch pending, the partner keeps serving (a working end state). At the
//! timeout, or on cancellation, the promotion is undone: the partner that served is fenced
//! again (the read-only flag travels to whichever partner ends up PRINCIPAL), then the
//! source's fence.
//!
//! Forced: the forced mirror is probed each poll; once it serves, promotion goes on
//! (recovery, opening). A forced service cannot be undone, and a copy that is not PRINCIPAL
//! yet cannot be fenced (`SET READ_ONLY` on a mirror copy is refused), so at the timeout —
//! or on cancellation while it does not serve yet — the run stops where it is: the old
//! source's fence (if it was reachable) is kept so that the forced copy, should its switch
//! land later, is the only one that can become writable, and the run ends
//! [`Outcome::NeedsRestore`] with [`Failure::ForcedSwitchIncomplete`] saying what to check
//! and run. A forced copy that serves when the run is cancelled is fenced again and the
//! fence undone, as for any cancellation after the open.

use super::{Action, Cause, Ctx, Progress, Results, Run, S, State, promote, release};
use crate::error::BackendError;
use crate::model::InstanceAddr;
use crate::op::{Op, OpResult};
use crate::outcome::{Failure, Outcome};
use crate::server::{DbState, InstanceProbe, MirrorRole, MirrorState};
use std::time::Duration;

/// Which statement the wait follows.
#[derive(Debug, Clone)]
enum After {
    /// `SET PARTNER FAILOVER` on `partner` (it served the target store).
    Repointed { partner: InstanceAddr },
    /// `FORCE_SERVICE_ALLOW_DATA_LOSS` on the instance that should serve (the backup's
    /// mirror).
    Forced,
    /// `FORCE_SERVICE_ALLOW_DATA_LOSS` refused with 1455: one look whether the copy already
    /// serves (an automatic failover by the witness landed between preflight and the force),
    /// no waiting.
    ForceRefused,
}

/// What the wait is for.
#[derive(Debug, Clone)]
pub(super) struct Wait {
    /// The instance that should become PRINCIPAL and ONLINE.
    principal: InstanceAddr,
    after: After,
    deadline: Duration,
    /// The statement's error, when it failed (its answer may have been lost).
    error: Option<BackendError>,
}

/// Starts the wait after `SET PARTNER FAILOVER` on `run.plan.target` returned (`error`: it
/// failed).
pub(super) fn start(
    ctx: &Ctx,
    run: Box<Run>,
    principal: InstanceAddr,
    error: Option<BackendError>,
    now: Duration,
) -> State {
    let after = After::Repointed {
        partner: run.plan.target.clone(),
    };
    begin(ctx, run, principal, after, error, now)
}

/// Starts the wait after `FORCE_SERVICE_ALLOW_DATA_LOSS` on `mirror` returned (`error`: no
/// certain answer).
pub(super) fn start_forced(
    ctx: &Ctx,
    run: Box<Run>,
    mirror: InstanceAddr,
    error: Option<BackendError>,
    now: Duration,
) -> State {
    begin(ctx, run, mirror, After::Forced, error, now)
}

/// After `FORCE_SERVICE_ALLOW_DATA_LOSS` on `mirror` was refused with 1455 (`error`): SQL
/// Server sends it on a principal too, so one probe tells whether the copy already serves
/// (automatic failover) and promotion goes on without a second run; otherwise the fence is
/// undone with the refusal, as before.
pub(super) fn check_refused_force(
    ctx: &Ctx,
    run: Box<Run>,
    mirror: InstanceAddr,
    error: BackendError,
    now: Duration,
) -> State {
    begin(ctx, run, mirror, After::ForceRefused, Some(error), now)
}

fn begin(
    ctx: &Ctx,
    run: Box<Run>,
    principal: InstanceAddr,
    after: After,
    error: Option<BackendError>,
    now: Duration,
) -> State {
    let wait = Wait {
        principal,
        after,
        deadline: now + ctx.req.settings.mirror_switch_timeout,
        error,
    };
    State::AwaitingPrincipal { run, wait }
}

pub(super) fn enter(ctx: &mut Ctx, wait: &Wait) -> Action {
    let timeout = ctx.req.settings.step_timeout;
    let (ops, description, precondition) = match &wait.after {
        After::Repointed { partner } => (
            ctx.probes([&wait.principal, partner]),
            "wait for the mirroring roles to switch: the designated principal must report PRINCIPAL and ONLINE",
            "SET PARTNER FAILOVER was issued on the serving mirror partner",
        ),
        After::Forced => (
            ctx.probes([&wait.principal]),
            "wait for the forced mirror to switch: it must report PRINCIPAL and ONLINE",
            "FORCE_SERVICE_ALLOW_DATA_LOSS was issued on the backup's mirror",
        ),
        After::ForceRefused => (
            ctx.probes([&wait.principal]),
            "look whether the backup's mirror already serves as principal (an automatic failover)",
            "FORCE_SERVICE_ALLOW_DATA_LOSS was refused with 1455",
        ),
    };
    ctx.batch(
        S::AwaitingPrincipal,
        description,
        precondition,
        "nothing",
        ops,
        timeout,
        true,
    )
}

/// How one partner looks for the CMS databases.
struct Look {
    /// Every database PRINCIPAL and ONLINE (`unmirrored_ok`: or in no mirroring session).
    serving: bool,
    /// Some database shows PENDING_FAILOVER.
    pending: bool,
    /// Some mirrored database is PRINCIPAL here.
    some_principal: bool,
    /// For people: `xds MIRROR PENDING_FAILOVER RESTORING, …` or the error.
    desc: String,
}

fn look(ctx: &Ctx, r: &Result<OpResult, BackendError>, unmirrored_ok: bool) -> Look {
    let p: &InstanceProbe = match r {
        Ok(OpResult::Probe(p)) => p,
        Ok(_) => {
            return Look {
                serving: false,
                pending: false,
                some_principal: false,
                desc: "unexpected result (a backend bug)".into(),
            };
        }
        Err(e) => {
            return Look {
                serving: false,
                pending: false,
                some_principal: false,
                desc: format!("not readable ({e})"),
            };
        }
    };
    let (mut serving, mut pending, mut some_principal) = (true, false, false);
    let mut desc = Vec::new();
    for db in ctx.dbs() {
        let Some(d) = p.databases.iter().find(|d| &d.name == db) else {
            serving = false;
            desc.push(format!("{db} missing"));
            continue;
        };
        match &d.mirroring {
            Some(m) => {
                serving &= m.role == MirrorRole::Principal && d.state == DbState::Online;
                pending |= m.state == MirrorState::PendingFailover;
                some_principal |= m.role == MirrorRole::Principal;
                let role = match m.role {
                    MirrorRole::Principal => "PRINCIPAL",
                    MirrorRole::Mirror => "MIRROR",
                };
                desc.push(format!("{db} {role} {} {}", m.state.as_desc(), d.state));
            }
            None => {
                serving &= unmirrored_ok;
                desc.push(format!("{db} not mirrored, {}", d.state));
            }
        }
    }
    Look {
        serving,
        pending,
        some_principal,
        desc: desc.join(", "),
    }
}

pub(super) fn on_results(
    ctx: &mut Ctx,
    run: Box<Run>,
    wait: Wait,
    ops: &[Op],
    results: Results,
    now: Duration,
) -> State {
    let forced = !matches!(wait.after, After::Repointed { .. });
    let mut looks = Vec::new();
    for (op, r) in ops.iter().zip(results) {
        looks.push(look(ctx, &r, forced));
        let instance = op.instance().cloned().expect("a SQL call");
        let probe = match r {
            Ok(OpResult::Probe(p)) => Ok(p),
            Ok(_) => continue,
            Err(e) => Err(e),
        };
        ctx.f.probes.insert(instance, probe);
    }
    match wait.after.clone() {
        After::Repointed { partner } => on_repointed(ctx, run, wait, &partner, &looks, now),
        After::Forced => on_forced(ctx, run, wait, &looks[0], now),
        After::ForceRefused => on_force_refused(ctx, run, wait, &looks[0]),
    }
}

fn on_force_refused(ctx: &mut Ctx, run: Box<Run>, wait: Wait, p: &Look) -> State {
    let error = wait.error.expect("set by check_refused_force");
    if !p.serving && p.some_principal {
        // One ALTER per database: the refusal ended its own statement, others in the batch
        // were forced (or a database took over by itself). A forced service cannot be undone
        // and the CMS databases must not be split across stores: stop, the old source's
        // fence kept, and say how to finish.
        let failure = Failure::ForcePartlyRefused {
            mirror: wait.principal.clone(),
            error,
            seen: format!("{}: {}", wait.principal, p.desc),
        };
        let left_read_only = run.fenced.clone();
        return release(
            run.locks,
            Outcome::needs_restore(failure, None, left_read_only),
        );
    }
    if !p.serving {
        ctx.f
            .warnings
            .push(super::promote::force_refused_advice(&wait.principal));
        return State::UndoingFence {
            run,
            cause: Cause::Failed(Failure::ForceFailed { error: Some(error) }),
        };
    }
    ctx.f.warnings.push(format!(
        "SQL Server refused to force service on {} ({error}), and it now reports PRINCIPAL and ONLINE: it took over by itself (an automatic failover by the witness after its principal was lost), so it is promoted without forcing",
        wait.principal
    ));
    let seen = format!("{}: {}", wait.principal, p.desc);
    promote_serving(
        ctx,
        run,
        wait.principal,
        "the backup's mirror took over",
        &seen,
    )
}

/// The instance forced (or that took over) serves: it is the target; promotion goes on,
/// unless the run was cancelled (then the promotion is undone: the copy is fenced again).
fn promote_serving(
    ctx: &Ctx,
    mut run: Box<Run>,
    principal: InstanceAddr,
    what: &str,
    seen: &str,
) -> State {
    run.plan.target = principal;
    if ctx.cancel {
        return State::UndoingPromotion {
            run,
            cause: Cause::Cancelled(format!("cancelled after {what} ({seen})")),
        };
    }
    promote(run)
}

fn on_repointed(
    ctx: &mut Ctx,
    mut run: Box<Run>,
    wait: Wait,
    partner: &InstanceAddr,
    looks: &[Look],
    now: Duration,
) -> State {
    let (p, q) = (&looks[0], &looks[1]);
    let seen = format!("{}: {}; {partner}: {}", wait.principal, p.desc, q.desc);
    if ctx.cancel {
        if p.serving {
            run.plan.target = wait.principal.clone();
        }
        return State::UndoingPromotion {
            run,
            cause: Cause::Cancelled(format!(
                "cancelled while waiting for the mirroring role switch ({seen})"
            )),
        };
    }
    if p.serving {
        run.plan.target = wait.principal;
        return State::RecordingLocation(run);
    }
    if let Some(e) = &wait.error
        && q.serving
        && !q.pending
        && !p.pending
    {
        // The statement failed and nothing is switching: the partner serves, as before.
        ctx.f.warnings.push(format!(
            "could not give the principal role back to {} ({e}); the CMS is served by the mirror partner {partner}",
            wait.principal
        ));
        return State::RecordingLocation(run);
    }
    if now >= wait.deadline {
        let failure = Failure::MirrorSwitchTimeout {
            principal: wait.principal.clone(),
            partner: partner.clone(),
            timeout: ctx.req.settings.mirror_switch_timeout,
            seen,
        };
        return State::UndoingPromotion {
            run,
            cause: Cause::Failed(failure),
        };
    }
    pause(ctx, run, wait, seen, now)
}

fn on_forced(ctx: &mut Ctx, run: Box<Run>, wait: Wait, p: &Look, now: Duration) -> State {
    let seen = format!("{}: {}", wait.principal, p.desc);
    if p.serving {
        if let Some(e) = &wait.error {
            ctx.f.warnings.push(format!(
                "forcing service on {} got no certain answer ({e}), but it now reports PRINCIPAL and ONLINE: the force took effect",
                wait.principal
            ));
        }
        return promote_serving(
            ctx,
            run,
            wait.principal,
            "the forced mirror switched",
            &seen,
        );
    }
    if ctx.cancel || now >= wait.deadline {
        // Nothing to undo: the force cannot be, and the copy cannot be fenced until it is
        // PRINCIPAL. The old source stays fenced (when it was reachable).
        let failure = Failure::ForcedSwitchIncomplete {
            mirror: wait.principal.clone(),
            timeout: ctx.req.settings.mirror_switch_timeout,
            error: wait.error.clone(),
            cancelled: ctx.cancel,
            seen,
        };
        let left_read_only = run.fenced.clone();
        return release(
            run.locks,
            Outcome::needs_restore(failure, None, left_read_only),
        );
    }
    pause(ctx, run, wait, seen, now)
}

fn pause(ctx: &Ctx, run: Box<Run>, wait: Wait, seen: String, now: Duration) -> State {
    let until = (now + ctx.req.settings.poll_interval).min(wait.deadline);
    let what = match wait.after {
        After::Repointed { .. } => "the mirroring role switch",
        After::Forced | After::ForceRefused => "the forced mirroring role switch",
    };
    let progress = Progress {
        waiting_for: format!(
            "{what}: {} to report PRINCIPAL and ONLINE ({seen})",
            wait.principal
        ),
        lag: Vec::new(),
        remaining: wait.deadline.saturating_sub(now),
    };
    State::PrincipalPause {
        run,
        wait,
        until,
        progress,
    }
}

pub(super) fn on_timer(
    ctx: &Ctx,
    run: Box<Run>,
    wait: Wait,
    until: Duration,
    progress: Progress,
    now: Duration,
) -> State {
    // Planned: cancelled, undo. Forced: look once more (a copy that serves by now is fenced
    // again; one that does not cannot be).
    if ctx.cancel && matches!(wait.after, After::Repointed { .. }) {
        return State::UndoingPromotion {
            run,
            cause: Cause::Cancelled("cancelled while waiting for the mirroring role switch".into()),
        };
    }
    if now < until && !ctx.cancel {
        return State::PrincipalPause {
            run,
            wait,
            until,
            progress,
        };
    }
    State::AwaitingPrincipal { run, wait }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::error::ErrorKind;
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::{Failure, Outcome};
    use std::time::Duration;

    fn succeeded_on(o: &Outcome, i: &crate::model::InstanceAddr) -> bool {
        matches!(o, Outcome::Succeeded { active, .. } if active == i)
    }

    #[test]
    fn the_run_waits_until_the_designated_principal_serves() {
        let mut w = World::planned_mirrored();
        w.delay_switch(3);
        let (o, h) = w.run(planned_mirrored());
        assert!(succeeded_on(&o, &b()), "{o}");
        let pauses = h.iter().filter(|s| **s == S::PrincipalPause).count();
        assert!(pauses >= 1, "{h:?}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::RepointingMirror, S::AwaitingPrincipal])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingPrincipal, S::RecordingLocation])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::PrincipalPause, S::AwaitingPrincipal])
        );
        assert!(w.writable(&b()) && !w.any_writable(&a()) && !w.any_writable(&bm()));
    }

    #[test]
    fn a_switch_that_never_lands_times_out_and_is_undone() {
        let mut w = World::planned_mirrored();
        w.delay_switch(usize::MAX);
        let mut req = planned_mirrored();
        req.settings.mirror_switch_timeout = Duration::from_secs(5);
        let (o, h) = w.run(req);
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::RolledBack { .. },
                    Some(Failure::MirrorSwitchTimeout { .. })
                )
            ),
            "{o}"
        );
        let text = o.to_string();
        assert!(
            text.contains("sys.database_mirroring") && text.contains("PENDING_FAILOVER"),
            "{text}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingPrincipal, S::UndoingPromotion])
        );
        // The source serves again; the target store's serving partner is fenced again.
        assert!(w.writable(&a()) && !w.any_writable(&bm()) && !w.any_writable(&b()));
    }

    #[test]
    fn cancelled_during_the_wait_is_undone() {
        let mut w = World::planned_mirrored();
        w.delay_switch(usize::MAX);
        w.cancel_on_sleep_in(S::PrincipalPause);
        let (o, h) = w.run(planned_mirrored());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::PrincipalPause, S::UndoingPromotion])
        );
        assert!(w.writable(&a()) && !w.any_writable(&bm()));
    }

    #[test]
    fn cancelled_as_the_probe_returns_is_undone() {
        let mut w = World::planned_mirrored();
        w.delay_switch(usize::MAX);
        w.cancel_in(S::AwaitingPrincipal);
        let (o, _) = w.run(planned_mirrored());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(w.writable(&a()) && !w.any_writable(&bm()));
    }

    #[test]
    fn a_refused_statement_leaves_the_partner_serving() {
        let mut w = World::planned_mirrored();
        w.fail_kind(S::RepointingMirror, |_| true, ErrorKind::InvalidState, 1);
        let (o, h) = w.run(planned_mirrored());
        assert!(succeeded_on(&o, &bm()), "{o}");
        assert!(!h.contains(&S::PrincipalPause), "{h:?}");
    }

    #[test]
    fn a_lost_answer_is_waited_out() {
        let mut w = World::planned_mirrored();
        w.delay_switch(2);
        w.fail_after_effect(S::RepointingMirror, ErrorKind::Timeout);
        let (o, h) = w.run(planned_mirrored());
        assert!(succeeded_on(&o, &b()), "{o}");
        assert!(h.contains(&S::PrincipalPause), "{h:?}");
    }

    /// Disaster recovery: the forced mirror is not recovered or opened before it reports
    /// PRINCIPAL and ONLINE.
    /// The backup's mirror took over by itself (automatic failover) between preflight and
    /// the force, which SQL Server then refuses with 1455: one probe shows it serving, and
    /// the same run promotes it (no second run), saying why.
    #[test]
    fn a_force_refused_because_the_mirror_already_took_over_promotes_it() {
        let mut w = World::dr_mirrored();
        w.refuse_force_1455();
        w.on_nth(S::ForcingMirror, 1, |w| w.took_over(&bm()));
        let mut m = w.machine(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(succeeded_on(&o, &bm()), "{o}");
        let h = m.history();
        for pair in [
            [S::ForcingMirror, S::AwaitingPrincipal],
            [S::AwaitingPrincipal, S::OpeningTarget],
        ] {
            assert!(h.windows(2).any(|p| p == pair), "{pair:?}: {h:?}");
        }
        assert!(!h.contains(&S::PrincipalPause), "no waiting: {h:?}");
        assert!(w.writable(&bm()), "the copy that took over is opened");
        let warnings = m.findings().warnings.join("\n");
        assert!(
            warnings.contains("1455") && warnings.contains("took over by itself"),
            "{warnings}"
        );
    }

    /// A 1455 whose mirror does not serve (its witness dropped off): one look, then the
    /// fence is undone with the advice, no waiting.
    #[test]
    fn a_force_refused_while_the_mirror_does_not_serve_undoes_the_fence() {
        let mut w = World::dr_mirrored();
        w.refuse_force_1455();
        let mut m = w.machine(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(
            matches!(o.failure(), Some(Failure::ForceFailed { error: Some(e) }) if e.code == Some(1455)),
            "{o}"
        );
        assert!(!matches!(o, Outcome::NeedsRestore { .. }), "{o}");
        let h = m.history();
        assert!(
            h.windows(3)
                .any(|p| p == [S::ForcingMirror, S::AwaitingPrincipal, S::UndoingFence]),
            "{h:?}"
        );
        assert!(!h.contains(&S::PrincipalPause), "no waiting: {h:?}");
        assert!(!w.any_writable(&bm()), "nothing opened on the mirror");
        assert!(
            m.findings()
                .warnings
                .iter()
                .any(|t| t.contains("SET WITNESS OFF")),
            "{:?}",
            m.findings().warnings
        );
    }

    /// The force refused with 1455 for one database after another was forced (one ALTER
    /// per database; the witness dropped off between them): the CMS is split across stores
    /// and a force cannot be undone, so the run stops needing a restore, nothing opened,
    /// and says how to finish.
    #[test]
    fn a_force_refused_for_one_database_after_another_was_forced_needs_restore() {
        let mut w = World::dr_mirrored();
        w.refuse_force_1455();
        w.on_nth(S::ForcingMirror, 1, |w| {
            w.took_over_only(&bm(), |d| d == "xds")
        });
        let mut m = w.machine(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::NeedsRestore { .. }), "{o}");
        assert_eq!(o.code(), Some("force_partly_refused"));
        let text = o.to_string();
        assert!(
            text.contains("SET WITNESS OFF") && text.contains("run the disaster recovery again"),
            "{text}"
        );
        let h = m.history();
        assert!(
            h.windows(3)
                .any(|p| p == [S::ForcingMirror, S::AwaitingPrincipal, S::ReleasingLocks]),
            "{h:?}"
        );
        assert!(!h.contains(&S::UndoingFence), "the fence is kept: {h:?}");
        assert!(!h.contains(&S::OpeningTarget), "nothing opened: {h:?}");
        assert!(
            !w.writable(&bm()),
            "lis was not forced, so the store does not serve"
        );
    }

    #[test]
    fn a_forced_mirror_is_awaited_before_it_is_opened() {
        let mut w = World::dr_mirrored();
        w.delay_force(3);
        let (o, h) = w.run(dr_mirrored());
        assert!(succeeded_on(&o, &bm()), "{o}");
        for pair in [
            [S::ForcingMirror, S::AwaitingPrincipal],
            [S::AwaitingPrincipal, S::PrincipalPause],
            [S::PrincipalPause, S::AwaitingPrincipal],
            [S::AwaitingPrincipal, S::OpeningTarget],
        ] {
            assert!(h.windows(2).any(|p| p == pair), "{pair:?}: {h:?}");
        }
        assert!(w.writable(&bm()));
    }

    /// The force never lands: it cannot be undone and the copy cannot be fenced, so the run
    /// ends needing a restore, the reachable old source kept fenced, nothing opened, and the
    /// failure says what to check and run.
    #[test]
    fn a_forced_switch_that_never_lands_needs_restore_with_the_fence_kept() {
        let mut w = World::dr_mirrored();
        w.set_up(&a());
        w.delay_force(usize::MAX);
        let mut req = dr_mirrored();
        req.settings.mirror_switch_timeout = Duration::from_secs(5);
        let (o, h) = w.run(req);
        let Outcome::NeedsRestore {
            failure,
            undo: None,
            left_read_only,
        } = &o
        else {
            panic!("{o}")
        };
        assert!(
            matches!(
                &**failure,
                Failure::ForcedSwitchIncomplete { mirror, cancelled: false, error: None, .. } if *mirror == bm()
            ),
            "{o}"
        );
        assert_eq!(o.code(), Some("forced_switch_incomplete"));
        assert!(left_read_only.iter().any(|(i, _)| *i == a()), "{o}");
        let text = o.to_string();
        for needle in [
            "cannot be undone",
            "sys.database_mirroring",
            "run the disaster recovery again",
            "mirror_switch",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingPrincipal, S::ReleasingLocks]),
            "{h:?}"
        );
        assert!(!h.contains(&S::OpeningTarget), "{h:?}");
        assert!(!w.any_writable(&a()) && !w.any_writable(&bm()));
    }

    /// Cancelled while the forced mirror has not switched: the run looks once more, then
    /// stops needing a restore (nothing can be undone).
    #[test]
    fn cancelled_before_the_forced_switch_lands_needs_restore() {
        let mut w = World::dr_mirrored();
        w.delay_force(usize::MAX);
        w.cancel_on_sleep_in(S::PrincipalPause);
        let (o, h) = w.run(dr_mirrored());
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::NeedsRestore { .. },
                    Some(Failure::ForcedSwitchIncomplete {
                        cancelled: true,
                        ..
                    })
                )
            ),
            "{o}"
        );
        assert!(o.to_string().contains("cancelled before"), "{o}");
        let tail: Vec<_> = h.iter().rev().take(4).rev().copied().collect();
        assert_eq!(
            tail,
            [
                S::PrincipalPause,
                S::AwaitingPrincipal,
                S::ReleasingLocks,
                S::Done
            ],
            "{h:?}"
        );
    }

    /// Cancelled as the probe shows the forced copy serving: it is fenced again and the
    /// fence undone, as for a cancellation after the open.
    #[test]
    fn cancelled_once_the_forced_mirror_serves_is_undone() {
        let mut w = World::dr_mirrored();
        w.delay_force(1);
        w.cancel_in(S::AwaitingPrincipal);
        let (o, h) = w.run(dr_mirrored());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingPrincipal, S::UndoingPromotion]),
            "{h:?}"
        );
        assert!(!w.any_writable(&bm()));
    }

    /// The force's answer was lost (a timeout): its effect is unknown, so the run waits for
    /// the copy, and goes on with a warning once it serves.
    #[test]
    fn a_lost_force_answer_is_waited_out() {
        let mut w = World::dr_mirrored();
        w.delay_force(2);
        w.fail_after_effect(S::ForcingMirror, ErrorKind::Timeout);
        let mut m = w.machine(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(succeeded_on(&o, &bm()), "{o}");
        assert!(
            m.findings()
                .warnings
                .iter()
                .any(|x| x.contains("no certain answer")),
            "{:?}",
            m.findings().warnings
        );
    }

    /// What-if sends nothing, so nothing is awaited after the (assumed) force.
    #[test]
    fn what_if_does_not_wait_for_the_forced_switch() {
        for restoring in [false, true] {
            let mut w = World::dr_mirrored();
            if restoring {
                w.set_restoring_unmirrored_db(&bm(), 1);
            }
            let mut req = dr_mirrored();
            req.what_if = true;
            let (_, h) = w.run(req);
            let next = if restoring {
                S::Recovering
            } else {
                S::OpeningTarget
            };
            assert!(h.windows(2).any(|p| p == [S::ForcingMirror, next]), "{h:?}");
            assert!(!h.contains(&S::AwaitingPrincipal), "{h:?}");
        }
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        a_forced_mirror_is_awaited_before_it_is_opened,
        a_force_refused_because_the_mirror_already_took_over_promotes_it,
        a_force_refused_while_the_mirror_does_not_serve_undoes_the_fence,
        a_force_refused_for_one_database_after_another_was_forced_needs_restore,
        a_forced_switch_that_never_lands_needs_restore_with_the_fence_kept,
        cancelled_before_the_forced_switch_lands_needs_restore,
        cancelled_once_the_forced_mirror_serves_is_undone,
        a_lost_force_answer_is_waited_out,
        what_if_does_not_wait_for_the_forced_switch,
        the_run_waits_until_the_designated_principal_serves,
        a_switch_that_never_lands_times_out_and_is_undone,
        cancelled_during_the_wait_is_undone,
        cancelled_as_the_probe_returns_is_undone,
        a_refused_statement_leaves_the_partner_serving,
        a_lost_answer_is_waited_out,
    ];
}
