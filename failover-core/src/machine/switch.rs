//! The wait after `SET PARTNER FAILOVER` (planned, giving the principal role back to the
//! target store's designated principal): SQL Server returns from the statement before the
//! roles switch — "A SET PARTNER or SET WITNESS command can complete successfully when
//! entered, but fail later"
//! (<https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>);
//! meanwhile `sys.database_mirroring` shows `mirroring_state_desc = PENDING_FAILOVER`
//! (<https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>).
//!
//! The designated principal is not treated as serving until a probe shows every CMS
//! database on it PRINCIPAL and ONLINE. Both partners are probed each poll (progress through
//! the observer). When the statement itself failed (its answer may have been lost, so the
//! switch may still be under way) and the partner still serves with no switch pending, the
//! partner keeps serving (as before: a working end state). At the timeout, or on
//! cancellation, the promotion is undone: the partner that served is fenced again (the
//! read-only flag travels to whichever partner ends up PRINCIPAL), then the source's fence.

use super::{Action, Cause, Ctx, Progress, Results, Run, S, State};
use crate::error::BackendError;
use crate::model::InstanceAddr;
use crate::op::{Op, OpResult};
use crate::outcome::Failure;
use crate::server::{DbState, InstanceProbe, MirrorRole, MirrorState};
use std::time::Duration;

/// What the wait is for.
#[derive(Debug, Clone)]
pub(super) struct Wait {
    /// The designated principal, which should become PRINCIPAL.
    principal: InstanceAddr,
    /// The partner the statement was issued on (it served the target store).
    partner: InstanceAddr,
    deadline: Duration,
    /// The statement's error, when it failed.
    error: Option<BackendError>,
}

/// Starts the wait after the statement on `run.plan.target` returned (`error`: it failed).
pub(super) fn start(
    ctx: &Ctx,
    run: Box<Run>,
    principal: InstanceAddr,
    error: Option<BackendError>,
    now: Duration,
) -> State {
    let wait = Wait {
        partner: run.plan.target.clone(),
        principal,
        deadline: now + ctx.req.settings.mirror_switch_timeout,
        error,
    };
    State::AwaitingPrincipal { run, wait }
}

pub(super) fn enter(ctx: &mut Ctx, wait: &Wait) -> Action {
    let ops = ctx.probes([&wait.principal, &wait.partner]);
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::AwaitingPrincipal,
        "wait for the mirroring roles to switch: the designated principal must report PRINCIPAL and ONLINE",
        "SET PARTNER FAILOVER was issued on the serving mirror partner",
        "nothing",
        ops,
        timeout,
        true,
    )
}

/// How one partner looks for the CMS databases.
struct Look {
    /// Every database PRINCIPAL and ONLINE.
    serving: bool,
    /// Some database shows PENDING_FAILOVER.
    pending: bool,
    /// For people: `xds MIRROR PENDING_FAILOVER RESTORING, …` or the error.
    desc: String,
}

fn look(ctx: &Ctx, r: &Result<OpResult, BackendError>) -> Look {
    let p: &InstanceProbe = match r {
        Ok(OpResult::Probe(p)) => p,
        Ok(_) => {
            return Look {
                serving: false,
                pending: false,
                desc: "unexpected result (a backend bug)".into(),
            };
        }
        Err(e) => {
            return Look {
                serving: false,
                pending: false,
                desc: format!("not readable ({e})"),
            };
        }
    };
    let (mut serving, mut pending, mut desc) = (true, false, Vec::new());
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
                let role = match m.role {
                    MirrorRole::Principal => "PRINCIPAL",
                    MirrorRole::Mirror => "MIRROR",
                };
                desc.push(format!("{db} {role} {} {}", m.state.as_desc(), d.state));
            }
            None => {
                serving = false;
                desc.push(format!("{db} not mirrored, {}", d.state));
            }
        }
    }
    Look {
        serving,
        pending,
        desc: desc.join(", "),
    }
}

pub(super) fn on_results(
    ctx: &mut Ctx,
    mut run: Box<Run>,
    wait: Wait,
    ops: &[Op],
    results: Results,
    now: Duration,
) -> State {
    let mut looks = Vec::new();
    for (op, r) in ops.iter().zip(results) {
        looks.push(look(ctx, &r));
        let instance = op.instance().cloned().expect("a SQL call");
        let probe = match r {
            Ok(OpResult::Probe(p)) => Ok(p),
            Ok(_) => continue,
            Err(e) => Err(e),
        };
        ctx.f.probes.insert(instance, probe);
    }
    let (p, q) = (&looks[0], &looks[1]);
    let seen = format!(
        "{}: {}; {}: {}",
        wait.principal, p.desc, wait.partner, q.desc
    );
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
            "could not give the principal role back to {} ({e}); the CMS is served by the mirror partner {}",
            wait.principal, wait.partner
        ));
        return State::RecordingLocation(run);
    }
    if now >= wait.deadline {
        let failure = Failure::MirrorSwitchTimeout {
            principal: wait.principal.clone(),
            partner: wait.partner.clone(),
            timeout: ctx.req.settings.mirror_switch_timeout,
            seen,
        };
        return State::UndoingPromotion {
            run,
            cause: Cause::Failed(failure),
        };
    }
    let until = (now + ctx.req.settings.poll_interval).min(wait.deadline);
    let progress = Progress {
        waiting_for: format!(
            "the mirroring role switch: {} to report PRINCIPAL and ONLINE ({seen})",
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
    if ctx.cancel {
        return State::UndoingPromotion {
            run,
            cause: Cause::Cancelled("cancelled while waiting for the mirroring role switch".into()),
        };
    }
    if now < until {
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

    pub(crate) const SCENARIOS: &[fn()] = &[
        the_run_waits_until_the_designated_principal_serves,
        a_switch_that_never_lands_times_out_and_is_undone,
        cancelled_during_the_wait_is_undone,
        cancelled_as_the_probe_returns_is_undone,
        a_refused_statement_leaves_the_partner_serving,
        a_lost_answer_is_waited_out,
    ];
}
