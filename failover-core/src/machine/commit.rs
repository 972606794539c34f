//! The commit point: point the directory at the target with one compare-and-swap (a failed
//! or lost swap is read back: it may have landed), then copy the SQL location record to
//! every reachable instance.
//!
//! The directory is the one commit path: Active Directory's service control point, or the
//! SQL location record itself ([`crate::SqlRecordDirectory`], the default), swapped on the
//! target instance with the run's epoch and run id.

use super::{Action, Cause, Ctx, Results, Run, S, State};
use crate::directory::{CmsLocation, SwapStamp};
use crate::error::BackendError;
use crate::op::{Op, OpResult};
use crate::outcome::Failure;
use crate::request::Mode;
use crate::server::LocationRecord;
use std::time::Duration;

pub(super) fn new_record(ctx: &Ctx, run: &Run) -> LocationRecord {
    LocationRecord {
        epoch: run.plan.max_epoch() + 1,
        active: run.plan.target_store.clone(),
        run_id: ctx.req.run_id.clone(),
    }
}

/// The DC the swap goes to: the target instance for the SQL record, else the first DC.
pub(super) fn write_dc(ctx: &Ctx, run: &Run) -> String {
    if ctx.dir.commit_on_target {
        run.plan.target.to_string()
    } else {
        ctx.dir.controllers.first().cloned().unwrap_or_default()
    }
}

fn new_value(run: &Run) -> CmsLocation {
    CmsLocation::of_store(&run.plan.target_store)
}

pub(super) fn enter_recording(ctx: &mut Ctx, run: &Run) -> Action {
    let record = new_record(ctx, run);
    let dc = write_dc(ctx, run);
    ctx.f.directory_dc = Some(dc.clone());
    let timeout = ctx.req.settings.step_timeout;
    let new = new_value(run);
    let changes = format!(
        "the directory on {dc} points at {new} instead of {} (epoch {})",
        run.plan.directory, record.epoch
    );
    ctx.batch(
        S::RecordingLocation,
        "point the directory at the target (the commit point)",
        "target writable; the directory holds the value read under the lock",
        changes,
        vec![Op::SwapDirectory {
            dc,
            expected: run.plan.directory.clone(),
            new,
            stamp: SwapStamp {
                epoch: record.epoch,
                run_id: record.run_id,
            },
        }],
        timeout,
        true,
    )
}

pub(super) fn on_recorded(ctx: &mut Ctx, run: Box<Run>, results: Results, now: Duration) -> State {
    match results.into_iter().next() {
        Some(Err(error)) => State::ConfirmingRecord { run, error },
        _ => committed(ctx, run, now),
    }
}

/// Past the commit point: the run finishes whatever happens (cancellation is ignored).
fn committed(ctx: &mut Ctx, run: Box<Run>, now: Duration) -> State {
    let record = new_record(ctx, &run);
    ctx.f.epoch = Some(record.epoch);
    if ctx.f.window_start.is_some() {
        ctx.f.window_end = Some(now);
    }
    if ctx.cancel {
        ctx.f.warnings.push("cancellation ignored: the directory already pointed at the target, so the failover was finished".into());
    }
    State::PublishingLocation { run, record }
}

/// Restore puts the directory's store back into service; when the SQL records name another
/// store (a run that crashed between the directory swap and the publish), it publishes a
/// new record (a new epoch) naming the directory's store.
pub(super) fn after_restore_opened(ctx: &mut Ctx, run: Box<Run>) -> State {
    let follows = run
        .plan
        .winner
        .as_ref()
        .is_none_or(|w| w.active == run.plan.target_store);
    if follows {
        return State::Verifying(run);
    }
    let record = new_record(ctx, &run);
    ctx.f.epoch = Some(record.epoch);
    State::PublishingLocation { run, record }
}

pub(super) fn enter_confirming(ctx: &mut Ctx, run: &Run) -> Action {
    let timeout = ctx.req.settings.undo_timeout;
    let dc = write_dc(ctx, run);
    ctx.batch(
        S::ConfirmingRecord,
        "read the directory back (the swap may have landed)",
        "the swap failed or its answer was lost",
        "nothing",
        vec![Op::ReadDirectory { dc }],
        timeout,
        true,
    )
}

/// The swap failed: committed if the directory holds the new value, else undo the
/// promotion (on a fresh deadline, like any failure before the commit).
pub(super) fn on_confirmed(
    ctx: &mut Ctx,
    run: Box<Run>,
    error: BackendError,
    results: Results,
    now: Duration,
) -> State {
    // The SQL record names a store, not the run: when the target's record already named the
    // target before the swap (a stale record, left by a publish that failed after an earlier
    // failover there), reading it back cannot tell whether the swap wrote this run's epoch,
    // and a commit without it would let a later restore follow an older record elsewhere.
    let proves_nothing = ctx.dir.commit_on_target && run.plan.directory == new_value(&run);
    let (read_back, found) = match results.into_iter().next() {
        Some(Ok(OpResult::Directory(v))) if v == new_value(&run) && !proves_nothing => {
            return committed(ctx, run, now);
        }
        Some(Ok(OpResult::Directory(v))) => {
            if proves_nothing {
                ctx.f.warnings.push(format!(
                    "the location record on {} already named {v} before the swap (a stale record), so reading it back cannot tell whether this run's record was written: treated as not written",
                    run.plan.target
                ));
            }
            (None, Some(Box::new(v)))
        }
        Some(Err(e)) => (Some(e), None),
        _ => (None, None),
    };
    State::UndoingPromotion {
        run,
        cause: Cause::Failed(Failure::RecordFailed {
            error,
            read_back,
            found,
        }),
    }
}

/// The publish, with the end state's verification in the same step: the probes only read
/// which copies are writable, which the record writes do not change, so they run
/// concurrently (after the commit, under the lock) instead of one round trip later.
pub(super) fn enter_publishing(ctx: &mut Ctx, run: &Run, record: &LocationRecord) -> Action {
    let mut ops: Vec<Op> = run
        .plan
        .records
        .iter()
        .filter(|(i, _)| {
            let written_by_swap = ctx.dir.commit_on_target
                && !matches!(ctx.req.mode, Mode::Restore)
                && **i == run.plan.target;
            !written_by_swap && run.plan.reachable.contains(i)
        })
        .map(|(i, r)| Op::WriteLocation {
            instance: i.clone(),
            record: record.clone(),
            expected_epoch: r.as_ref().map(|r| r.epoch),
        })
        .collect();
    ops.extend(super::verify::probes(ctx, run));
    let st = &ctx.req.settings;
    let timeout = if matches!(ctx.req.mode, Mode::DisasterRecovery { .. }) {
        st.dr_fence_timeout
    } else {
        st.step_timeout
    };
    ctx.batch(
        S::PublishingLocation,
        "copy the location record to the reachable instances; verify the end state: exactly one writable copy of each database",
        "the directory points at the target",
        "location records",
        ops,
        timeout,
        true,
    )
}

pub(super) fn enter_republishing(ctx: &mut Ctx, run: &Run) -> Action {
    let ops = match &run.plan.winner {
        Some(w) => run
            .plan
            .stale
            .iter()
            .map(|(i, epoch)| Op::WriteLocation {
                instance: i.clone(),
                record: w.clone(),
                expected_epoch: *epoch,
            })
            .collect(),
        None => Vec::new(),
    };
    let timeout = ctx.req.settings.step_timeout;
    ctx.batch(
        S::RepublishingRecord,
        "copy the winning location record to the reachable instances that lack it",
        "lock held; the records were read under it",
        "location records (the CMS location itself does not change)",
        ops,
        timeout,
        true,
    )
}

/// A copy that fails is a warning: the winner still wins by its epoch.
pub(super) fn on_republished(
    ctx: &mut Ctx,
    mut run: Box<Run>,
    ops: &[Op],
    results: Results,
) -> Box<Run> {
    // What the instances hold now guards the publish after the commit.
    for (op, r) in ops.iter().zip(&results) {
        if let (
            Op::WriteLocation {
                instance, record, ..
            },
            Ok(_),
        ) = (op, r)
        {
            run.plan
                .records
                .insert(instance.clone(), Some(record.clone()));
        }
    }
    warn_unpublished(ctx, ops, results);
    run
}

fn warn_unpublished(ctx: &mut Ctx, ops: &[Op], results: Results) {
    for (op, r) in ops.iter().zip(results) {
        if let Err(e) = r {
            ctx.f.warnings.push(format!(
                "the location record could not be copied to {} ({e}); the record with the highest epoch wins",
                op.target()
            ));
        }
    }
}

/// Copies that failed are warnings; the probes of the same step verify the end state.
pub(super) fn on_published(
    ctx: &mut Ctx,
    run: Box<Run>,
    ops: &[Op],
    results: Results,
    now: Duration,
) -> State {
    let (mut writes, mut probes) = (Vec::new(), Vec::new());
    for (op, r) in ops.iter().zip(results) {
        if matches!(op, Op::Probe { .. }) {
            probes.push((op.clone(), r));
        } else {
            writes.push((op.clone(), r));
        }
    }
    let (write_ops, write_results): (Vec<Op>, Results) = writes.into_iter().unzip();
    warn_unpublished(ctx, &write_ops, write_results);
    let (probe_ops, probe_results): (Vec<Op>, Results) = probes.into_iter().unzip();
    super::verify::on_results(ctx, run, &probe_ops, probe_results, now)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::error::ErrorKind;
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::op::Op;
    use crate::outcome::{Failure, Outcome};

    /// The swap writes the record on the target (the SQL record is the directory); the
    /// publish copies it to the other instances.
    #[test]
    fn planned_records_epoch_one_and_publishes_it() {
        let mut w = World::planned();
        let (o, h) = w.run(planned());
        assert!(
            matches!(&o, Outcome::Succeeded { active, epoch: Some(1) } if *active == b()),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::RecordingLocation, S::PublishingLocation])
        );
        let writes: Vec<_> = w
            .mutations()
            .into_iter()
            .filter(|op| matches!(op, Op::WriteLocation { .. }))
            .map(|op| op.instance().cloned().expect("a SQL call"))
            .collect();
        assert_eq!(writes, [a()]);
        let swaps: Vec<_> = w
            .mutations()
            .into_iter()
            .filter_map(|op| match op {
                Op::SwapDirectory { dc, stamp, .. } => Some((dc, stamp.epoch)),
                _ => None,
            })
            .collect();
        assert_eq!(swaps, [(b().to_string(), 1)]);
        assert_eq!(w.record_on(&b()), w.record_on(&a()));
        assert_eq!(w.record_on(&b()).unwrap().run_id, "run-1");
    }

    #[test]
    fn write_that_landed_but_lost_its_answer_is_committed() {
        let mut w = World::planned();
        w.fail_after_effect(S::RecordingLocation, ErrorKind::Timeout);
        let (o, h) = w.run(planned());
        assert!(
            matches!(o, Outcome::Succeeded { epoch: Some(1), .. }),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::RecordingLocation, S::ConfirmingRecord])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::ConfirmingRecord, S::PublishingLocation])
        );
    }

    #[test]
    fn write_that_did_not_land_undoes_the_promotion() {
        let mut w = World::planned();
        w.fail(S::RecordingLocation, |_| true, 9);
        let (o, h) = w.run(planned());
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::RolledBack { .. },
                    Some(Failure::RecordFailed {
                        read_back: None,
                        ..
                    })
                )
            ),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::ConfirmingRecord, S::UndoingPromotion])
        );
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    /// The target's own record already names the target (stale: a publish that failed
    /// after an earlier failover there). A failed swap read back shows the new value, as it
    /// did before the swap, which proves nothing: the promotion is undone, never committed
    /// without this run's record (a later restore would follow an older record elsewhere).
    #[test]
    fn a_swap_read_back_that_showed_the_same_value_before_is_not_a_commit() {
        let mut w = World::dr();
        w.set_record(&b(), record(1, &topology().backup));
        w.fail(S::RecordingLocation, |_| true, 9);
        let mut m = w.machine(dr());
        let o = w.drive(&mut m);
        assert!(
            matches!(o.failure(), Some(Failure::RecordFailed { .. })),
            "{o}"
        );
        assert!(
            m.history()
                .windows(2)
                .any(|p| p == [S::ConfirmingRecord, S::UndoingPromotion]),
            "{:?}",
            m.history()
        );
        assert!(!w.any_writable(&b()), "the target is fenced again");
        let warnings = m.findings().warnings.join("\n");
        assert!(warnings.contains("cannot tell"), "{warnings}");
    }

    #[test]
    fn failed_publish_is_a_warning() {
        let mut w = World::planned();
        w.fail(
            S::PublishingLocation,
            |op| matches!(op, Op::WriteLocation { .. }),
            9,
        );
        let mut m = crate::machine::Machine::new(planned());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(!m.findings().warnings.is_empty());
    }

    /// Preflight copies the winning record to reachable instances that lack it, under the
    /// lock, before the mode's first step.
    fn republished(req: crate::request::FailoverRequest, w: &mut World, next: S) {
        let (o, h) = w.run(req);
        assert!(o.refusal().is_none() && o.failure().is_none(), "{o}");
        assert!(
            h.windows(2).any(|p| p == [S::RepublishingRecord, next]),
            "{h:?}"
        );
    }

    #[test]
    fn planned_republishes_a_stale_record_before_the_gate() {
        let mut w = World::planned();
        w.set_record(&a(), record(4, &topology().active));
        republished(planned(), &mut w, S::AwaitingReplication);
        // The stale copy was brought up to date, then the commit went one above.
        assert_eq!(w.record_on(&b()).unwrap().epoch, 5);
        assert_eq!(w.record_on(&a()).unwrap().epoch, 5);
    }

    #[test]
    fn dr_republishes_before_the_fence() {
        let mut w = World::dr();
        w.set_record(&b(), record(2, &topology().active));
        republished(dr(), &mut w, S::Fencing);
    }

    #[test]
    fn restore_republishes_then_opens() {
        let mut w = World::planned();
        w.set_writable(&a(), false);
        w.set_record(&a(), record(2, &topology().active));
        republished(restore(), &mut w, S::OpeningTarget);
        assert_eq!(w.record_on(&b()), Some(record(2, &topology().active)));
    }

    #[test]
    fn restore_republishes_then_recovers() {
        let mut w = World::planned();
        w.set_writable(&a(), false);
        w.set_restoring(&b());
        w.set_record(&b(), record(2, &topology().backup));
        republished(restore(), &mut w, S::Recovering);
        assert_eq!(w.record_on(&a()), Some(record(2, &topology().backup)));
    }

    /// Active Directory: the swap goes to the first DC, then the record is published to
    /// every instance (the target too), and every DC returns the new value.
    #[test]
    fn ad_swap_is_the_commit_and_the_record_follows_everywhere() {
        let mut w = World::planned().with_ad(2);
        let (o, h) = w.run(planned());
        assert!(
            matches!(&o, Outcome::Succeeded { active, epoch: Some(1) } if *active == b()),
            "{o}"
        );
        let nb = value(&topology().backup);
        assert_eq!((w.directory_on(0), w.directory_on(1)), (nb.clone(), nb));
        assert_eq!(w.record_on(&a()).unwrap().epoch, 1);
        assert_eq!(w.record_on(&a()), w.record_on(&b()));
        assert!(h.windows(2).any(|p| p == [S::AwaitingDirectory, S::Done]));
    }

    /// Someone else changed the directory: the swap conflicts, the read-back shows their
    /// value, and the fence is undone (nothing left fenced, the target fenced again).
    #[test]
    fn ad_conflict_rolls_back_and_reports_the_value_found() {
        let mut w = World::planned().with_ad(2);
        w.on_nth(S::OpeningTarget, 1, |w| {
            w.set_directory(value(&elsewhere()))
        });
        let (o, _) = w.run(planned());
        match o.failure() {
            Some(Failure::RecordFailed {
                found: Some(f),
                read_back: None,
                ..
            }) => assert_eq!(**f, value(&elsewhere())),
            _ => panic!("{o}"),
        }
        assert!(matches!(o, Outcome::RolledBack { .. }), "{o}");
        assert!(w.writable(&a()) && !w.any_writable(&b()));
        assert_eq!(w.directory_on(0), value(&elsewhere()), "their value stays");
        assert_eq!(w.record_on(&a()), None, "no record was published");
    }

    /// The swap landed but its answer was lost: read back, committed.
    #[test]
    fn ad_lost_answer_is_read_back_and_committed() {
        let mut w = World::planned().with_ad(1);
        w.fail_after_effect(S::RecordingLocation, ErrorKind::Timeout);
        let (o, _) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert_eq!(w.directory_on(0), value(&topology().backup));
    }

    /// The swap's answer was lost and the read-back failed too: the swap may have landed,
    /// so after the undo the run needs a restore, which follows the directory.
    #[test]
    fn ad_unknown_swap_needs_restore_which_follows_the_directory() {
        let mut w = World::planned().with_ad(1);
        w.fail_after_effect(S::RecordingLocation, ErrorKind::Timeout);
        w.fail_kind(S::ConfirmingRecord, |_| true, ErrorKind::Unreachable, 9);
        let (o, _) = w.run(planned());
        assert!(
            matches!(
                (&o, o.failure()),
                (
                    Outcome::NeedsRestore { .. },
                    Some(Failure::RecordFailed {
                        read_back: Some(_),
                        ..
                    })
                )
            ),
            "{o}"
        );
        assert!(o.to_string().contains("restore"), "{o}");
        let (o, _) = w.run(restore());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        assert!(w.writable(&b()) && !w.any_writable(&a()));
    }

    /// A DC unreachable after the commit is reported, not a failure.
    #[test]
    fn ad_dc_unreachable_after_the_commit_is_a_warning() {
        let mut w = World::planned().with_ad(2);
        w.on_nth(S::PublishingLocation, 1, |w| w.set_dc_up(1, false));
        let mut m = w.machine(planned());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            m.findings()
                .warnings
                .iter()
                .any(|x| x.contains("dc02.cms.test could not be read")),
            "{:?}",
            m.findings().warnings
        );
    }

    /// A crash between the directory swap and the publish leaves the directory on B and
    /// the records on A: restore follows the directory, fences A and records B at a new
    /// epoch everywhere.
    #[test]
    fn ad_restore_follows_the_directory_and_records_it() {
        let mut w = World::planned().with_ad(2);
        w.record_everywhere(record(2, &topology().active));
        w.set_directory(value(&topology().backup));
        let (o, h) = w.run(restore());
        assert!(
            matches!(&o, Outcome::Succeeded { active, epoch: Some(3) } if *active == b()),
            "{o}"
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::OpeningTarget, S::PublishingLocation])
        );
        assert!(w.writable(&b()) && !w.any_writable(&a()));
        for i in [a(), b()] {
            let r = w.record_on(&i).unwrap();
            assert_eq!((r.epoch, &r.active), (3, &topology().backup));
        }
    }

    /// A disaster recovery re-run after its swap: the directory already names the target,
    /// the swap is a no-op and the run completes.
    #[test]
    fn ad_dr_rerun_after_the_swap_completes() {
        let mut w = World::dr().with_ad(1);
        w.set_down(&a());
        w.set_directory(value(&topology().backup));
        let (o, _) = w.run(dr());
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == b()),
            "{o}"
        );
        assert_eq!(w.record_on(&b()).unwrap().active, topology().backup);
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        a_swap_read_back_that_showed_the_same_value_before_is_not_a_commit,
        ad_swap_is_the_commit_and_the_record_follows_everywhere,
        ad_conflict_rolls_back_and_reports_the_value_found,
        ad_lost_answer_is_read_back_and_committed,
        ad_unknown_swap_needs_restore_which_follows_the_directory,
        ad_dc_unreachable_after_the_commit_is_a_warning,
        ad_restore_follows_the_directory_and_records_it,
        ad_dr_rerun_after_the_swap_completes,
        planned_republishes_a_stale_record_before_the_gate,
        dr_republishes_before_the_fence,
        restore_republishes_then_opens,
        restore_republishes_then_recovers,
        planned_records_epoch_one_and_publishes_it,
        write_that_landed_but_lost_its_answer_is_committed,
        write_that_did_not_land_undoes_the_promotion,
        failed_publish_is_a_warning,
    ];
}
