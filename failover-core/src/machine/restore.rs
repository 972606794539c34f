//! Restore: put the store the directory points at (for the SQL record: the recorded store)
//! back into service. Its plan (which store, what to
//! fence) lives here; its fence, recovery and opening reuse the other phases' operations and
//! end differently (nothing to undo: a failure needs another restore).

use super::{Observations, Plan, Run};
use crate::directory::CmsLocation;
use crate::model::{DatabaseName, InstanceAddr};
use crate::outcome::{Refusal, StoreRole};
use crate::request::FailoverRequest;

/// The restore plan: the store the directory points at is the target (Microsoft's recovery
/// procedure starts from it); every writable copy outside it is fenced. For the SQL record
/// that is the recorded store.
pub(super) fn plan_restore(
    req: &FailoverRequest,
    obs: &Observations,
    directory: &CmsLocation,
    dbs: &[DatabaseName],
    mut warnings: Vec<String>,
) -> Result<Plan, Box<Refusal>> {
    let topo = &req.topology;
    if obs.directory.is_some() {
        // `plan` checked that it points at one of the two stores.
        let (followed, other) = if directory.points_at(&topo.backup) {
            (&topo.backup, &topo.active)
        } else {
            (&topo.active, &topo.backup)
        };
        if let Some(w) = obs.recorded_active().filter(|w| w.active != *followed) {
            warnings.push(format!(
                "the location records name {} (epoch {}) but the directory points at {directory}: restore follows the directory and records it with a new epoch",
                w.active, w.epoch
            ));
        }
        return plan_on(obs, followed, other, dbs, warnings);
    }
    let (recorded, other) = match obs.recorded_active() {
        Some(r) if r.active.principal == topo.backup.principal => (&topo.backup, &topo.active),
        Some(r) if r.active.principal == topo.active.principal => (&topo.active, &topo.backup),
        Some(r) => {
            return Err(Refusal::RecordedOutsideTopology {
                recorded: r.active.clone(),
                epoch: r.epoch,
            }
            .into());
        }
        None => (&topo.active, &topo.backup),
    };
    plan_on(obs, recorded, other, dbs, warnings)
}

/// Restore onto `recorded`, fencing the writable copies of `other`.
fn plan_on(
    obs: &Observations,
    recorded: &crate::model::Store,
    other: &crate::model::Store,
    dbs: &[DatabaseName],
    mut warnings: Vec<String>,
) -> Result<Plan, Box<Refusal>> {
    let tgt = obs
        .serving(recorded, dbs)
        .map_err(|problems| super::preflight::unusable(StoreRole::Recorded, recorded, problems))?;
    let mut to_fence = Vec::new();
    for i in other.instances() {
        match obs.probe_of(i) {
            Ok(_) => {
                let w = obs.writable_dbs(i);
                if !w.is_empty() {
                    to_fence.push((i.clone(), w));
                }
            }
            Err(problem) => {
                if obs.writable_dbs(&tgt).len() < dbs.len() {
                    return Err(Refusal::CannotCheckOtherCopy { problem }.into());
                }
                warnings.push(format!("could not check {i}: {problem}"));
            }
        }
    }
    let mut plan = obs.plan_for(tgt, recorded.clone(), dbs, warnings);
    plan.to_fence = to_fence;
    Ok(plan)
}

/// What a failed restore leaves read-only: what it fenced, and the recorded store.
pub(super) fn left_read_only(
    run: &Run,
    dbs: &[DatabaseName],
) -> Vec<(InstanceAddr, Vec<DatabaseName>)> {
    let mut v = run.fenced.clone();
    v.push((run.plan.target.clone(), dbs.to_vec()));
    v
}

#[cfg(test)]
pub(super) mod tests {
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::{Failure, Outcome, Refusal};

    /// The interrupted failover had committed: restore finishes it on the backup.
    #[test]
    fn restore_follows_the_record_and_fences_the_other_store() {
        let mut w = World::planned();
        w.record_everywhere(record(2, &topology().backup));
        let (o, h) = w.run(restore());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        assert!(h.starts_with(&[S::Preflight, S::Preflight, S::Fencing]));
        assert!(w.writable(&b()) && !w.any_writable(&a()));
    }

    #[test]
    fn restore_with_nothing_to_fence_opens_the_recorded_store() {
        let mut w = World::planned();
        w.set_writable(&a(), false);
        let (o, h) = w.run(restore());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == a()),
            "{o}"
        );
        assert!(h.contains(&S::OpeningTarget) && !h.contains(&S::Fencing));
        assert!(h.ends_with(&[S::Verifying, S::AwaitingDirectory, S::Done]));
    }

    #[test]
    fn restore_recovers_a_restoring_copy_when_nothing_is_fenced() {
        let mut w = World::planned();
        w.record_everywhere(record(2, &topology().backup));
        w.set_writable(&a(), false);
        w.set_restoring(&b());
        let (o, h) = w.run(restore());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        assert_eq!(&h[..3], &[S::Preflight, S::Preflight, S::Recovering]);
    }

    #[test]
    fn restore_fences_then_recovers() {
        let mut w = World::planned();
        w.record_everywhere(record(2, &topology().backup));
        w.set_restoring(&b());
        let (o, h) = w.run(restore());
        assert!(o.refusal().is_none() && o.failure().is_none(), "{o}");
        assert!(
            h.windows(2).any(|p| p == [S::Fencing, S::Recovering]),
            "{h:?}"
        );
    }

    #[test]
    fn restore_that_cannot_fence_the_other_store_needs_restore() {
        let mut w = World::planned();
        w.record_everywhere(record(2, &topology().backup));
        w.fail(S::Fencing, |_| true, 9);
        let (o, h) = w.run(restore());
        assert!(
            matches!(o.failure(), Some(Failure::OthersNotFenced { .. })),
            "{o}"
        );
        assert!(h.windows(2).any(|p| p == [S::Fencing, S::ReleasingLocks]));
    }

    #[test]
    fn restore_whose_recovery_fails_needs_restore() {
        let mut w = World::planned();
        w.set_writable(&a(), false);
        w.record_everywhere(record(2, &topology().backup));
        w.set_restoring(&b());
        w.fail(S::Recovering, |_| true, 9);
        let (o, h) = w.run(restore());
        assert!(
            matches!(o.failure(), Some(Failure::RecoveryFailed { .. })),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::Recovering, S::ReleasingLocks])
        );
        match o {
            Outcome::NeedsRestore { left_read_only, .. } => {
                assert!(left_read_only.iter().any(|(i, _)| *i == b()))
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn restore_whose_open_fails_needs_restore() {
        let mut w = World::planned();
        w.set_writable(&a(), false);
        w.fail(S::OpeningTarget, |_| true, 9);
        let (o, h) = w.run(restore());
        assert!(
            matches!(o.failure(), Some(Failure::OpenFailed { .. })),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::OpeningTarget, S::ReleasingLocks])
        );
    }

    #[test]
    fn restore_refuses_a_record_outside_the_topology() {
        let mut w = World::planned();
        w.record_everywhere(record(2, &elsewhere()));
        let (o, _) = w.run(restore());
        assert!(
            matches!(o.refusal(), Some(Refusal::RecordedOutsideTopology { .. })),
            "{o}"
        );
    }

    /// Issue 10, bug 2: DR to B while A is down, A returns, restore; DR back to A while B is
    /// down, B returns, restore. The last DR made A active: restore must keep A, not reopen
    /// B (epochs were reused, and the tie went to B by address order).
    #[test]
    fn restore_after_two_disaster_recoveries_keeps_the_last_one() {
        let mut w = World::dr();
        w.set_down(&a());
        let (o, _) = w.run(dr());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        w.set_up(&a());
        let (o, _) = w.run(restore());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        w.set_down(&b());
        let (o, _) = w.run(dr_back());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == a()),
            "{o}"
        );
        w.set_up(&b());
        let (o, _) = w.run(restore());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == a()),
            "{o}"
        );
        assert!(w.writable(&a()) && !w.any_writable(&b()));
        assert_eq!(w.record_on(&a()), w.record_on(&b()));
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        restore_after_two_disaster_recoveries_keeps_the_last_one,
        restore_follows_the_record_and_fences_the_other_store,
        restore_with_nothing_to_fence_opens_the_recorded_store,
        restore_recovers_a_restoring_copy_when_nothing_is_fenced,
        restore_fences_then_recovers,
        restore_that_cannot_fence_the_other_store_needs_restore,
        restore_whose_recovery_fails_needs_restore,
        restore_whose_open_fails_needs_restore,
        restore_refuses_a_record_outside_the_topology,
    ];
}
