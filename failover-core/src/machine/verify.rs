//! Verification of the end state: exactly one writable copy of each database, on the target.

use super::{Action, Ctx, Results, Run, S, State, release};
use crate::error::BackendError;
use crate::model::{InstanceAddr, Store};
use crate::op::{Op, OpResult};
use crate::outcome::{Failure, Outcome, Refusal};
use std::collections::BTreeMap;

/// Every instance of the topology and of the target store.
fn all_instances(ctx: &Ctx, run: &Run) -> Vec<InstanceAddr> {
    let mut v: Vec<InstanceAddr> = Vec::new();
    let topo = &ctx.req.topology;
    let stores: [&Store; 3] = [&topo.active, &topo.backup, &run.plan.target_store];
    for i in stores.iter().flat_map(|s| s.instances()) {
        if !v.contains(i) {
            v.push(i.clone());
        }
    }
    v
}

/// The probes that verify the end state (also sent with the publish, see
/// [`super::commit::enter_publishing`]).
pub(super) fn probes(ctx: &Ctx, run: &Run) -> Vec<Op> {
    ctx.probes(&all_instances(ctx, run))
}

pub(super) fn enter(ctx: &mut Ctx, run: &Run) -> Action {
    let ops = probes(ctx, run);
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::Verifying,
        "verify the end state: exactly one writable copy of each database",
        "recorded",
        "nothing",
        ops,
        timeout,
        true,
    )
}

type Probes = BTreeMap<InstanceAddr, Result<crate::server::InstanceProbe, BackendError>>;

/// The problems with the end state (empty: exactly one writable copy, on `target`).
/// Instances that could not be probed cannot be verified: a warning each, not a problem.
fn verify(ctx: &mut Ctx, probes: &Probes, target: &InstanceAddr) -> Vec<String> {
    let mut problems = Vec::new();
    for db in ctx.dbs() {
        let writable: Vec<&InstanceAddr> = probes
            .iter()
            .filter(|(_, p)| {
                p.as_ref()
                    .is_ok_and(|p| p.database(db).is_some_and(|d| d.is_writable()))
            })
            .map(|(i, _)| i)
            .collect();
        match writable.as_slice() {
            [only] if *only == target => {}
            [] => problems.push(format!("{db} is not writable anywhere")),
            [only] => problems.push(format!("{db} is writable on {only}, expected {target}")),
            many => problems.push(format!(
                "{db} is writable on {} copies ({})",
                many.len(),
                many.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    for (i, p) in probes {
        if let Err(e) = p {
            ctx.f.warnings.push(format!(
                "{i} could not be checked at the end ({e}); make sure it does not take writes when it comes back"
            ));
        }
    }
    problems
}

pub(super) fn on_results(
    ctx: &mut Ctx,
    run: Box<Run>,
    ops: &[Op],
    results: Results,
    now: std::time::Duration,
) -> State {
    let mut probes = Probes::new();
    for (op, r) in ops.iter().zip(results) {
        let p = match r {
            Ok(OpResult::Probe(p)) => Ok(p),
            Ok(_) => {
                return ctx.refuse(
                    run.locks,
                    Refusal::UnexpectedResult {
                        state: S::Verifying,
                    },
                );
            }
            Err(e) => Err(e),
        };
        probes.insert(op.instance().cloned().expect("a SQL call"), p);
    }
    // What-if hook: nothing changed, so the end state is not there to verify; what would
    // block the run is the outcome.
    let problems = if ctx.what_if() {
        Vec::new()
    } else {
        verify(ctx, &probes, &run.plan.target)
    };
    ctx.f.probes.extend(probes);
    if !problems.is_empty() {
        return release(
            run.locks,
            Outcome::needs_restore(Failure::EndStateWrong { problems }, None, Vec::new()),
        );
    }
    if ctx.what_if() && !ctx.f.blockers.is_empty() {
        let blockers = ctx.f.blockers.clone();
        return ctx.refuse(run.locks, Refusal::WouldBeBlocked { blockers });
    }
    if ctx.what_if() {
        // Nothing changed: there is no new value to watch for.
        return succeeded(ctx, run);
    }
    super::directory::start(ctx, run, now)
}

/// Releases the locks and succeeds on the target.
pub(super) fn succeeded(ctx: &Ctx, run: Box<Run>) -> State {
    let Run { plan, locks, .. } = *run;
    release(
        locks,
        Outcome::Succeeded {
            active: plan.target,
            epoch: ctx.f.epoch,
        },
    )
}

#[cfg(test)]
pub(super) mod tests {
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::{Failure, Outcome};

    #[test]
    fn a_second_writable_copy_at_the_end_needs_restore() {
        let mut w = World::planned();
        // Someone reopens the source behind the run's back.
        w.on_nth(S::PublishingLocation, 1, |w| w.set_writable(&a(), true));
        let (o, h) = w.run(planned());
        match o.failure() {
            Some(Failure::EndStateWrong { problems }) => assert_eq!(problems.len(), 2),
            _ => panic!("{o}"),
        }
        assert!(
            h.windows(2)
                .any(|p| p == [S::PublishingLocation, S::ReleasingLocks])
        );
    }

    /// Restore whose records already name the directory's store verifies in its own step.
    #[test]
    fn restore_verifies_in_its_own_step() {
        let mut w = World::planned();
        w.set_writable(&a(), false);
        let (o, h) = w.run(restore());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(h.windows(2).any(|p| p == [S::OpeningTarget, S::Verifying]));
        assert!(!h.contains(&S::PublishingLocation));
    }

    /// What-if restore of a healthy estate verifies in its own step, then releases.
    #[test]
    fn what_if_restore_verifies_then_releases() {
        let mut w = World::planned();
        let mut req = restore();
        req.what_if = true;
        let (o, h) = w.run(req);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(h.windows(2).any(|p| p == [S::Verifying, S::ReleasingLocks]));
        assert!(w.mutations().is_empty());
    }

    /// The end state is probed in the publish step (one round trip, not two).
    #[test]
    fn the_end_state_is_verified_with_the_publish() {
        let mut w = World::planned();
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(!h.contains(&S::Verifying));
        assert!(
            h.windows(2)
                .any(|p| p == [S::PublishingLocation, S::AwaitingDirectory])
        );
    }

    #[test]
    fn what_if_succeeds_with_a_plan_and_changes_nothing() {
        let mut w = World::planned();
        let mut req = planned();
        req.what_if = true;
        let (o, _) = w.run(req);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(w.mutations().is_empty());
    }

    #[test]
    fn unreachable_instance_at_the_end_is_a_warning() {
        let mut w = World::dr();
        w.set_down(&a());
        let mut m = crate::machine::Machine::new(dr());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            m.findings()
                .warnings
                .iter()
                .any(|x| x.contains("could not be checked at the end"))
        );
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        a_second_writable_copy_at_the_end_needs_restore,
        restore_verifies_in_its_own_step,
        what_if_restore_verifies_then_releases,
        the_end_state_is_verified_with_the_publish,
        what_if_succeeds_with_a_plan_and_changes_nothing,
        unreachable_instance_at_the_end_is_a_warning,
    ];
}
