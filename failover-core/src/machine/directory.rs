//! After the commit: read the directory on every domain controller until each returns the new
//! value (Active Directory is multi-master: the others get the change by replication). A DC
//! that has not converged by the timeout, or cannot be read, is reported with what it
//! returned, as a warning: the failover is done, and the DC converges by itself.
//!
//! The failover lock is released in the watch's first step, with the first reads: the run is
//! committed and its end state verified, and the watch changes nothing, so holding the lock
//! while DCs converge would only keep the next run waiting (and cost a round trip).

use super::{Action, Ctx, DcValue, Progress, Results, Run, S, State};
use crate::directory::CmsLocation;
use crate::op::{Op, OpResult};
use std::time::Duration;

/// What the watch waits for.
#[derive(Debug, Clone)]
pub(super) struct Watch {
    /// The value every DC should return.
    want: CmsLocation,
    /// The DCs still returning another value.
    pending: Vec<String>,
    deadline: Duration,
    /// The locks released with the first reads (empty afterwards).
    release: Vec<crate::model::InstanceAddr>,
}

/// The DCs to watch: the directory's, or (the SQL record) every reachable instance.
fn controllers(ctx: &Ctx, run: &Run) -> Vec<String> {
    if ctx.dir.commit_on_target {
        run.plan.reachable.iter().map(|i| i.to_string()).collect()
    } else {
        ctx.dir.controllers.clone()
    }
}

/// Starts the watch after a verified end state (or succeeds at once with nothing to watch).
pub(super) fn start(ctx: &mut Ctx, mut run: Box<Run>, now: Duration) -> State {
    let pending = controllers(ctx, &run);
    ctx.f.directory_after.clear();
    if pending.is_empty() {
        return super::verify::succeeded(ctx, run);
    }
    let watch = Watch {
        want: CmsLocation::of_store(&run.plan.target_store),
        pending,
        deadline: now + ctx.req.settings.directory_timeout,
        release: std::mem::take(&mut run.locks),
    };
    State::AwaitingDirectory { run, watch }
}

pub(super) fn enter(ctx: &mut Ctx, watch: &Watch) -> Action {
    let mut ops: Vec<Op> = watch
        .pending
        .iter()
        .map(|dc| Op::ReadDirectory { dc: dc.clone() })
        .collect();
    let resource = &ctx.req.settings.lock_resource;
    ops.extend(watch.release.iter().map(|i| Op::ReleaseLock {
        instance: i.clone(),
        resource: resource.clone(),
    }));
    let (timeout, changes) = if watch.release.is_empty() {
        (ctx.req.settings.step_timeout, "nothing")
    } else {
        let st = &ctx.req.settings;
        (
            st.step_timeout.max(st.undo_timeout),
            "the application lock is released",
        )
    };
    let description = if watch.release.is_empty() {
        "read the directory on every domain controller until each returns the new value"
    } else {
        "release the failover lock; read the directory on every domain controller until each returns the new value"
    };
    ctx.batch(
        S::AwaitingDirectory,
        description,
        "committed and verified",
        changes,
        ops,
        timeout,
        true,
    )
}

fn note(ctx: &mut Ctx, v: DcValue) {
    ctx.f.directory_after.retain(|d| d.dc != v.dc);
    ctx.f.directory_after.push(v);
}

pub(super) fn on_results(
    ctx: &mut Ctx,
    run: Box<Run>,
    mut watch: Watch,
    ops: &[Op],
    results: Results,
    now: Duration,
) -> State {
    watch.pending.clear();
    watch.release.clear();
    for (op, r) in ops.iter().zip(results) {
        if matches!(op, Op::ReleaseLock { .. }) {
            super::lock::warn_unreleased(ctx, op, r);
            continue;
        }
        let dc = op.target();
        let v = match r {
            Ok(OpResult::Directory(v)) => {
                let converged = v == watch.want;
                if !converged {
                    watch.pending.push(dc.clone());
                }
                DcValue {
                    dc,
                    value: Some(v),
                    error: None,
                    converged,
                }
            }
            Ok(_) => DcValue {
                dc,
                value: None,
                error: Some("unexpected result (a directory bug)".into()),
                converged: false,
            },
            Err(e) => DcValue {
                dc,
                value: None,
                error: Some(e.to_string()),
                converged: false,
            },
        };
        note(ctx, v);
    }
    if watch.pending.is_empty() || now >= watch.deadline || ctx.cancel {
        return finish(ctx, run, &watch);
    }
    let until = (now + ctx.req.settings.poll_interval).min(watch.deadline);
    // Each lagging DC with what it still returns: the operator sees replication move.
    let behind: Vec<String> = watch
        .pending
        .iter()
        .map(|dc| {
            match ctx
                .f
                .directory_after
                .iter()
                .find(|d| &d.dc == dc)
                .and_then(|d| d.value.as_ref())
            {
                Some(v) => format!("{dc} still returns {v}"),
                None => dc.clone(),
            }
        })
        .collect();
    let progress = Progress {
        waiting_for: format!(
            "directory replication: {} of {} domain controller(s) to return {}: {}",
            watch.pending.len(),
            ctx.f.directory_after.len(),
            watch.want,
            behind.join("; ")
        ),
        lag: Vec::new(),
        remaining: watch.deadline.saturating_sub(now),
    };
    State::DirectoryPause {
        run,
        watch,
        until,
        progress,
    }
}

pub(super) fn on_timer(
    ctx: &mut Ctx,
    run: Box<Run>,
    watch: Watch,
    until: Duration,
    progress: Progress,
    now: Duration,
) -> State {
    if ctx.cancel {
        ctx.f.warnings.push(
            "cancelled while waiting for directory replication; the failover itself is done".into(),
        );
        return finish(ctx, run, &watch);
    }
    if now < until {
        return State::DirectoryPause {
            run,
            watch,
            until,
            progress,
        };
    }
    State::AwaitingDirectory { run, watch }
}

/// Reports every DC that did not return the new value, then succeeds.
fn finish(ctx: &mut Ctx, run: Box<Run>, watch: &Watch) -> State {
    let lagging: Vec<String> = ctx
        .f
        .directory_after
        .iter()
        .filter(|d| !d.converged)
        .map(|d| match (&d.value, &d.error) {
            (Some(v), _) => format!(
                "domain controller {} still returns {v}, not {} (directory replication is behind; it converges by itself, check with `cms-failover status`)",
                d.dc, watch.want
            ),
            (None, e) => format!(
                "domain controller {} could not be read after the commit ({}); check it returns {} once it is back",
                d.dc,
                e.as_deref().unwrap_or("no answer"),
                watch.want
            ),
        })
        .collect();
    ctx.f.warnings.extend(lagging);
    super::verify::succeeded(ctx, run)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::machine::S;
    use crate::machine::script::*;
    use crate::outcome::Outcome;

    /// A lagging DC converges while the run waits: no warning.
    #[test]
    fn waits_until_every_dc_returns_the_new_value() {
        let mut w = World::planned().with_ad(3);
        w.lag_dc(2, 2);
        let mut m = w.machine(planned());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        let h = m.history();
        assert!(
            h.windows(2)
                .any(|p| p == [S::AwaitingDirectory, S::DirectoryPause])
        );
        assert!(
            h.windows(2)
                .any(|p| p == [S::DirectoryPause, S::AwaitingDirectory])
        );
        let after = &m.findings().directory_after;
        assert_eq!(after.len(), 3);
        assert!(after.iter().all(|d| d.converged), "{after:?}");
        assert!(
            m.findings()
                .warnings
                .iter()
                .all(|w| !w.contains("domain controller"))
        );
    }

    /// A DC that never converges is reported with its value when the timeout ends the wait.
    #[test]
    fn a_dc_that_does_not_converge_is_a_warning_with_its_value() {
        let mut w = World::planned().with_ad(2);
        w.lag_dc(1, usize::MAX);
        let mut m = w.machine(planned());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        let warning = m
            .findings()
            .warnings
            .iter()
            .find(|w| w.contains("dc02"))
            .cloned()
            .unwrap_or_default();
        assert!(warning.contains("still returns a.test"), "{warning}");
        let dc2 = &m.findings().directory_after[1];
        assert!(!dc2.converged && dc2.value.is_some());
    }

    /// Cancelling while waiting stops the wait; the failover is done.
    #[test]
    fn cancel_during_the_wait_stops_watching() {
        let mut w = World::planned().with_ad(2);
        w.lag_dc(1, usize::MAX);
        w.cancel_on_sleep();
        let mut m = w.machine(planned());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(
            m.history()
                .windows(2)
                .any(|p| p == [S::DirectoryPause, S::Done])
        );
    }

    /// The lock is released with the first reads, not after the watch.
    #[test]
    fn the_lock_is_released_with_the_first_reads() {
        let mut w = World::planned().with_ad(2);
        w.lag_dc(1, 2);
        let mut m = w.machine(planned());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        let h = m.history();
        assert!(!h.contains(&S::ReleasingLocks), "{h:?}");
        assert!(h.windows(2).any(|p| p == [S::AwaitingDirectory, S::Done]));
        let releases = w
            .mutations()
            .into_iter()
            .filter(|op| matches!(op, crate::op::Op::ReleaseLock { .. }))
            .count();
        assert_eq!(releases, 2, "each lock released once");
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        waits_until_every_dc_returns_the_new_value,
        a_dc_that_does_not_converge_is_a_warning_with_its_value,
        cancel_during_the_wait_stops_watching,
        the_lock_is_released_with_the_first_reads,
    ];
}
