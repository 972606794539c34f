//! The commit point: record the new location on the target with compare-and-swap (a failed
//! write is read back: it may have landed), then copy the record to every other reachable
//! instance.

use super::{Action, Cause, Ctx, Results, Run, S, State};
use crate::error::BackendError;
use crate::op::{Op, OpResult};
use crate::outcome::Failure;
use crate::request::Mode;
use crate::server::LocationRecord;
use std::time::Duration;

fn new_record(ctx: &Ctx, run: &Run) -> LocationRecord {
    LocationRecord {
        epoch: run.plan.max_epoch() + 1,
        active: run.plan.target_store.clone(),
        run_id: ctx.req.run_id.clone(),
    }
}

pub(super) fn enter_recording(ctx: &mut Ctx, run: &Run) -> Action {
    let record = new_record(ctx, run);
    let tgt = run.plan.target.clone();
    let expected_epoch = run
        .plan
        .records
        .get(&tgt)
        .cloned()
        .flatten()
        .map(|r| r.epoch);
    let timeout = ctx.req.settings.step_timeout;
    let changes = format!("location record epoch {} on the target", record.epoch);
    ctx.batch(
        S::RecordingLocation,
        "record the new active location (the commit point)",
        "target writable",
        changes,
        vec![Op::WriteLocation {
            instance: tgt,
            record,
            expected_epoch,
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
        ctx.f.warnings.push("cancellation ignored: the new location was already recorded, so the failover was finished".into());
    }
    State::PublishingLocation { run, record }
}

pub(super) fn enter_confirming(ctx: &mut Ctx, run: &Run) -> Action {
    let timeout = ctx.req.settings.undo_timeout;
    ctx.batch(
        S::ConfirmingRecord,
        "read back the location record",
        "the write failed",
        "nothing",
        vec![Op::ReadLocation {
            instance: run.plan.target.clone(),
        }],
        timeout,
        true,
    )
}

/// The write failed: committed if this run's record is there, else undo the promotion.
pub(super) fn on_confirmed(
    ctx: &mut Ctx,
    run: Box<Run>,
    error: BackendError,
    results: Results,
    now: Duration,
) -> State {
    // Landed only if the record read back is exactly this run's (a run id alone could be
    // reused by a caller; the epoch and the store make it this commit).
    let read_back = match results.into_iter().next() {
        Some(Ok(OpResult::Location(Some(r)))) if r == new_record(ctx, &run) => {
            return committed(ctx, run, now);
        }
        Some(Err(e)) => Some(e),
        _ => None,
    };
    State::UndoingPromotion {
        run,
        cause: Cause::Failed(Failure::RecordFailed { error, read_back }),
    }
}

pub(super) fn enter_publishing(ctx: &mut Ctx, run: &Run, record: &LocationRecord) -> Action {
    let ops = run
        .plan
        .records
        .iter()
        .filter(|(i, _)| **i != run.plan.target && run.plan.reachable.contains(i))
        .map(|(i, r)| Op::WriteLocation {
            instance: i.clone(),
            record: record.clone(),
            expected_epoch: r.as_ref().map(|r| r.epoch),
        })
        .collect();
    let st = &ctx.req.settings;
    let timeout = if matches!(ctx.req.mode, Mode::DisasterRecovery { .. }) {
        st.dr_fence_timeout
    } else {
        st.step_timeout
    };
    ctx.batch(
        S::PublishingLocation,
        "copy the location record to the other reachable instances",
        "recorded on the target",
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
    run: Box<Run>,
    ops: &[Op],
    results: Results,
) -> Box<Run> {
    warn_unpublished(ctx, ops, results);
    run
}

fn warn_unpublished(ctx: &mut Ctx, ops: &[Op], results: Results) {
    for (op, r) in ops.iter().zip(results) {
        if let Err(e) = r {
            ctx.f.warnings.push(format!(
                "the location record could not be copied to {} ({e}); the record with the highest epoch wins",
                op.instance()
            ));
        }
    }
}

pub(super) fn on_published(ctx: &mut Ctx, run: Box<Run>, ops: &[Op], results: Results) -> State {
    warn_unpublished(ctx, ops, results);
    State::Verifying(run)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::error::ErrorKind;
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::op::Op;
    use crate::outcome::{Failure, Outcome};

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
            .map(|op| op.instance().clone())
            .collect();
        assert_eq!(writes, [b(), a()]);
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

    /// A record read back with this run's id but another epoch or store is not this commit
    /// (a caller may reuse run ids): the promotion is undone, not committed.
    #[test]
    fn a_read_back_with_our_run_id_but_another_record_is_not_our_commit() {
        let mut w = World::planned();
        w.fail(S::RecordingLocation, |_| true, 9);
        let req = planned();
        let run_id = req.run_id.clone();
        w.answer(
            S::ConfirmingRecord,
            move |_| {
                let mut r = record(7, &topology().active);
                r.run_id = run_id.clone();
                Some(Ok(crate::op::OpResult::Location(Some(r))))
            },
            1,
        );
        let (o, h) = w.run(req);
        assert!(matches!(o, Outcome::RolledBack { .. }), "{o}");
        assert!(
            h.windows(2)
                .any(|p| p == [S::ConfirmingRecord, S::UndoingPromotion])
        );
        assert!(w.writable(&a()) && !w.any_writable(&b()));
    }

    #[test]
    fn failed_publish_is_a_warning() {
        let mut w = World::planned();
        w.fail(S::PublishingLocation, |_| true, 9);
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

    pub(crate) const SCENARIOS: &[fn()] = &[
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
