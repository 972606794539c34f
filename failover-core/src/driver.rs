//! Runs a [`Machine`] over a [`Backend`]: per-call timeouts, bounded retries of retryable
//! errors, concurrent batches, the journal, progress events and cancellation.

use crate::backend::{Backend, InstanceProbe};
use crate::backup_service::BackupServiceGate;
use crate::directory::Directory;
use crate::error::{BackendError, ErrorKind, Operation};
use crate::journal::{Journal, JournalEvent, JournalRecord, unfinished_runs};
use crate::machine::{Action, DcValue, DirectoryInfo, Machine, Progress, StateName};
use crate::model::{InstanceAddr, Topology};
use crate::op::{Op, OpResult};
use crate::outcome::{DataLossEstimate, Outcome, Refusal};
use crate::request::{FailoverRequest, Mode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

/// Something that wants to hear about a run as it happens (progress bars, logs).
pub trait Observer: Send + Sync {
    /// Called for every event, in order.
    fn on_event(&self, event: &RunEvent);
}

/// What happens during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// A step started.
    StepStarted {
        /// Its state.
        state: StateName,
        /// What it does.
        description: String,
        /// Whether its calls are actually made (false when what-if skips every call of it).
        executed: bool,
    },
    /// A call failed and will be retried.
    Retrying {
        /// The call.
        op: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Its error.
        error: BackendError,
    },
    /// A call finished (after any retries).
    OpFinished {
        /// The call.
        op: String,
        /// How many attempts it took.
        attempts: u32,
        /// Its error, if it failed.
        error: Option<BackendError>,
    },
    /// Waiting for replication.
    Waiting(Progress),
    /// The run ended.
    Finished(Outcome),
}

/// Cancels a run at its next safe point (Ctrl-C). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CancelHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for CancelHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelHandle {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }
    fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// One call within a step, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    /// The call.
    pub op: Op,
    /// Human-readable form of the call.
    pub summary: String,
    /// The SQL the backend sends for it (empty for non-SQL backends).
    pub sql: Vec<String>,
    /// Attempts made (0: not executed, what-if).
    pub attempts: u32,
    /// How long it took in all, milliseconds.
    pub duration_ms: u64,
    /// Its final error, if any.
    pub error: Option<BackendError>,
    /// Errors of attempts that were retried.
    pub retried_errors: Vec<BackendError>,
}

/// One step of a run, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The state that ran it.
    pub state: StateName,
    /// What it does.
    pub description: String,
    /// What must hold for it.
    pub precondition: String,
    /// What it changes.
    pub changes: String,
    /// Start, milliseconds since the run started.
    pub started_ms: u64,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Duration, milliseconds.
    pub duration_ms: u64,
    /// Whether its calls were made (false: what-if skipped every call; each call's
    /// `attempts` says whether it ran).
    pub executed: bool,
    /// Its calls.
    pub ops: Vec<OpRecord>,
}

/// The write-unavailability window: from the fence to the target writable and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Fence issued, milliseconds since the run started.
    pub start_ms: u64,
    /// Target writable and recorded, milliseconds since the run started.
    pub end_ms: u64,
    /// The window's length, microseconds.
    pub duration_us: u64,
}

/// Everything about one run: the source of the HTML report and the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Run id.
    pub run_id: String,
    /// The mode.
    pub mode: Mode,
    /// Plan only.
    pub what_if: bool,
    /// The topology.
    pub topology: Topology,
    /// The backend's name.
    pub backend: String,
    /// Start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// End, milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// Every step.
    pub steps: Vec<StepRecord>,
    /// The states entered, in order.
    pub states: Vec<StateName>,
    /// How it ended.
    pub outcome: Outcome,
    /// Warnings.
    pub warnings: Vec<String>,
    /// What would block the run (what-if).
    pub blockers: Vec<String>,
    /// Disaster-recovery data-loss estimate.
    pub data_loss: Option<Vec<DataLossEstimate>>,
    /// The write-unavailability window, when a fence was issued and the run committed.
    pub window: Option<Window>,
    /// The last probe of each instance (the final state where the run verified it).
    pub final_state: Vec<(InstanceAddr, Result<InstanceProbe, BackendError>)>,
    /// The directory the run committed to: its DC and each DC's value after the commit.
    #[serde(default)]
    pub directory: Option<DirectoryReport>,
}

/// The directory step of a run, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryReport {
    /// The directory's name (`ldap`, `sql-record`, `fake`).
    pub name: String,
    /// The DC the compare-and-swap went to (what-if: would go to); `None` when the run did
    /// not get that far (or, restore, does not swap).
    pub dc: Option<String>,
    /// What each DC returned after the commit (empty when the run did not commit).
    pub after: Vec<DcValue>,
}

impl RunReport {
    /// The steps that change something, in order: the plan of a what-if run.
    pub fn plan(&self) -> Vec<&StepRecord> {
        self.steps
            .iter()
            .filter(|s| s.ops.iter().any(|o| o.op.is_mutating()))
            .collect()
    }
}

/// Runs failovers over a backend.
pub struct Driver {
    backend: Arc<dyn Backend>,
    directory: Option<Arc<dyn Directory>>,
    backup_service: Option<Arc<dyn BackupServiceGate>>,
    journal: Option<Arc<dyn Journal>>,
    observer: Option<Arc<dyn Observer>>,
    cancel: CancelHandle,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Driver {
    /// A driver over `backend`, with no journal and no observer.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            directory: None,
            backup_service: None,
            journal: None,
            observer: None,
            cancel: CancelHandle::new(),
        }
    }

    /// Commits to `directory` (Active Directory's service control point, or a fake). Without
    /// it, the directory is the SQL location record
    /// ([`crate::SqlRecordDirectory`] over this driver's backend).
    pub fn with_directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The directory a run of `req` commits to.
    fn directory_for(&self, req: &FailoverRequest) -> Arc<dyn Directory> {
        self.directory.clone().unwrap_or_else(|| {
            Arc::new(crate::SqlRecordDirectory::new(
                self.backend.clone(),
                req.topology.clone(),
            ))
        })
    }

    /// Journals every step to `journal`.
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Sends progress events to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Reads the Backup Service's status through `gate` for runs whose settings gate on it
    /// (`Settings::backup_service`).
    pub fn with_backup_service(mut self, gate: Arc<dyn BackupServiceGate>) -> Self {
        self.backup_service = Some(gate);
        self
    }

    /// Makes one call: the Backup Service status through the gate, anything else on the
    /// backend.
    async fn execute(&self, op: &Op, directory: &dyn Directory) -> Result<OpResult, BackendError> {
        let Op::BackupServiceStatus { instance } = op else {
            return op.run_on(self.backend.as_ref(), directory).await;
        };
        let error = |kind, message: String| {
            BackendError::new(kind, Operation::BackupServiceStatus, instance, message)
        };
        match &self.backup_service {
            Some(g) => g
                .cms_status()
                .await
                .map(OpResult::BackupService)
                .map_err(|e| error(e.kind, e.message)),
            None => Err(error(
                ErrorKind::Fatal,
                "the run gates on the Backup Service but no status command is configured (add the topology's [backup_service] section)".into(),
            )),
        }
    }

    /// How long one attempt of `op` may take: the batch's timeout, and for the gate at least
    /// its command's own timeout (plus a second for it to be killed and reaped).
    fn call_timeout(&self, op: &Op, batch: Duration) -> Duration {
        match (op, &self.backup_service) {
            (Op::BackupServiceStatus { .. }, Some(g)) => {
                batch.max(g.timeout() + Duration::from_secs(1))
            }
            _ => batch,
        }
    }

    /// What the call sends, for reports: the backend's SQL, or the gate's argv.
    fn statements(&self, op: &Op, directory: &dyn Directory) -> Vec<String> {
        match (op, &self.backup_service) {
            (Op::BackupServiceStatus { .. }, Some(g)) => {
                vec![serde_json::to_string(&g.describe()).unwrap_or_default()]
            }
            _ => statements(self.backend.as_ref(), directory, op),
        }
    }

    /// Uses `cancel` to stop runs.
    pub fn with_cancel(mut self, cancel: CancelHandle) -> Self {
        self.cancel = cancel;
        self
    }

    /// The cancel handle of this driver's runs.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    fn emit(&self, e: RunEvent) {
        if let Some(o) = &self.observer {
            o.on_event(&e);
        }
    }

    fn journal(
        &self,
        run_id: &str,
        seq: &mut u64,
        event: JournalEvent,
    ) -> Result<(), Box<Refusal>> {
        if let Some(j) = &self.journal {
            *seq += 1;
            j.append(&JournalRecord {
                run_id: run_id.to_string(),
                seq: *seq,
                at_unix_ms: unix_ms(),
                event,
            })
            .map_err(|e| {
                Box::new(Refusal::JournalUnwritable {
                    error: e.to_string(),
                })
            })?;
        }
        Ok(())
    }

    /// Runs `req` to one of the outcomes and reports every step.
    ///
    /// A non-restore run is refused when the journal holds an unfinished run (restore
    /// first); a restore run marks the unfinished runs it settles as resolved.
    pub async fn run(&self, req: FailoverRequest) -> RunReport {
        let started = Instant::now();
        let started_unix_ms = unix_ms();
        let backend_warnings = self.backend.warnings();
        for w in &backend_warnings {
            tracing::warn!(backend = self.backend.name(), "{w}");
        }
        let mut steps: Vec<StepRecord> = Vec::new();
        let mut seq = 0u64;
        let directory = self.directory_for(&req);
        let mut machine = Machine::new(req.clone())
            .with_epoch_floor(req.settings.epoch_clock)
            .with_directory(DirectoryInfo {
                controllers: directory.domain_controllers(),
                commit_on_target: directory.commit_on_target(),
            });

        let mut pre_refusal: Option<Box<Refusal>> = None;
        let mut interrupted: Vec<String> = Vec::new();
        if let Some(j) = &self.journal {
            match j.records() {
                Ok(records) => {
                    machine = machine.with_epoch_floor(
                        journal_max_epoch(&records).max(req.settings.epoch_clock),
                    );
                    let unfinished = unfinished_runs(&records);
                    // A planned run on top of a half-done one is refused; restore settles it and a
                    // disaster recovery (forced, idempotent) may be re-run to resume one.
                    if !unfinished.is_empty() && matches!(req.mode, Mode::Planned) && !req.what_if {
                        let u = &unfinished[0];
                        pre_refusal = Some(Box::new(Refusal::UnfinishedRun {
                            run_id: u.run_id.clone(),
                            mode: u.request.mode.to_string(),
                            last_state: u.last_state,
                            settle_with: u.settling_mode().to_string(),
                        }));
                    }
                    interrupted = unfinished.into_iter().map(|u| u.run_id).collect();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    pre_refusal = Some(Box::new(Refusal::JournalUnreadable {
                        error: e.to_string(),
                    }))
                }
            }
        }
        if pre_refusal.is_none()
            && !req.what_if
            && let Err(e) = self.journal(
                &req.run_id,
                &mut seq,
                JournalEvent::Started {
                    request: Box::new(req.clone()),
                },
            )
        {
            pre_refusal = Some(e);
        }
        let outcome = if let Some(refusal) = pre_refusal {
            Outcome::Refused { refusal }
        } else {
            self.drive(
                &mut machine,
                directory.as_ref(),
                started,
                &mut steps,
                &mut seq,
            )
            .await
        };
        if !req.what_if {
            if !matches!(req.mode, Mode::Planned) && matches!(outcome, Outcome::Succeeded { .. }) {
                for id in interrupted.iter().filter(|id| **id != req.run_id) {
                    let _ = self.journal(
                        &req.run_id,
                        &mut seq,
                        JournalEvent::Resolved {
                            interrupted_run_id: id.clone(),
                        },
                    );
                }
            }
            let _ = self.journal(
                &req.run_id,
                &mut seq,
                JournalEvent::Finished {
                    outcome: outcome.clone(),
                },
            );
        }
        self.emit(RunEvent::Finished(outcome.clone()));
        let f = machine.findings();
        let window = match (f.window_start, f.window_end) {
            (Some(s), Some(e)) if !req.what_if => Some(Window {
                start_ms: s.as_millis() as u64,
                end_ms: e.as_millis() as u64,
                duration_us: e.saturating_sub(s).as_micros() as u64,
            }),
            _ => None,
        };
        RunReport {
            run_id: req.run_id.clone(),
            mode: req.mode.clone(),
            what_if: req.what_if,
            topology: req.topology.clone(),
            backend: self.backend.name().to_string(),
            started_unix_ms,
            finished_unix_ms: unix_ms(),
            duration_us: started.elapsed().as_micros() as u64,
            steps,
            states: machine.history().to_vec(),
            outcome,
            warnings: backend_warnings
                .into_iter()
                .chain(f.warnings.iter().cloned())
                .collect(),
            blockers: f.blockers.clone(),
            data_loss: f.data_loss.clone(),
            window,
            final_state: f
                .probes
                .iter()
                .map(|(i, p)| (i.clone(), p.clone()))
                .collect(),
            directory: Some(DirectoryReport {
                name: directory.name().to_string(),
                dc: f.directory_dc.clone(),
                after: f.directory_after.clone(),
            }),
        }
    }

    async fn drive(
        &self,
        machine: &mut Machine,
        directory: &dyn Directory,
        started: Instant,
        steps: &mut Vec<StepRecord>,
        seq: &mut u64,
    ) -> Outcome {
        let what_if = machine.request().what_if;
        let run_id = machine.request().run_id.clone();
        let settings = machine.request().settings.clone();
        let mut cancel_rx = self.cancel.subscribe();
        let mut action = machine.start(started.elapsed());
        loop {
            if self.cancel.is_cancelled() {
                machine.request_cancel();
            }
            match action {
                Action::Finished(outcome) => return outcome,
                Action::Sleep { until, progress } => {
                    self.emit(RunEvent::Waiting(progress));
                    let deadline = started + until;
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = cancel_rx.wait_for(|c| *c) => machine.request_cancel(),
                    }
                    action = machine.on_timer(started.elapsed());
                }
                Action::Execute(batch) => {
                    let mutating = batch.ops.iter().any(Op::is_mutating);
                    // What-if makes only the reads that need no lock; the rest is assumed. A step
                    // counts as executed when any of its calls is made (a preflight that also
                    // takes the lock still probes; each call's record says whether it ran).
                    let executed = !what_if || batch.ops.iter().any(Op::is_dry_run_safe);
                    // Every step with effects is journaled (fsync'ed) before it runs; reads have
                    // no effects to recover from and stay out of the write-unavailability window.
                    if executed
                        && !what_if
                        && mutating
                        && let Err(e) = self.journal(
                            &run_id,
                            seq,
                            JournalEvent::Step {
                                state: batch.state,
                                ops: batch.ops.to_vec(),
                            },
                        )
                    {
                        // Without a journal entry, no change may be made.
                        if mutating && !machine.in_undo() {
                            return Outcome::Refused { refusal: e };
                        }
                    }
                    self.emit(RunEvent::StepStarted {
                        state: batch.state,
                        description: batch.description.to_string(),
                        executed,
                    });
                    let step_start = started.elapsed();
                    let started_unix_ms = unix_ms();
                    let futures = batch.ops.iter().map(|op| {
                        let retry = batch.retry;
                        let timeout = self.call_timeout(op, batch.timeout);
                        let settings = &settings;
                        async move {
                            let t0 = Instant::now();
                            if what_if && !op.is_dry_run_safe() {
                                return (Ok(op.assumed_result()), 0u32, Vec::new(), t0.elapsed());
                            }
                            let mut attempt = 0u32;
                            let mut retried = Vec::new();
                            loop {
                                attempt += 1;
                                let r = match tokio::time::timeout(
                                    timeout,
                                    self.execute(op, directory),
                                )
                                .await
                                {
                                    Ok(r) => {
                                        // A crash point inside the step: the call's effect
                                        // landed, its result is not yet journaled or acted on.
                                        #[cfg(feature = "failpoints")]
                                        crate::journal::failpoints::op_done();
                                        r
                                    }
                                    Err(_) => Err(BackendError::new(
                                        ErrorKind::Timeout,
                                        op.operation(),
                                        op.target(),
                                        format!("no answer within {timeout:?}"),
                                    )),
                                };
                                match r {
                                    Err(e)
                                        if retry
                                            && e.kind.is_retryable()
                                            && attempt <= settings.max_retries =>
                                    {
                                        self.emit(RunEvent::Retrying {
                                            op: op.to_string(),
                                            attempt,
                                            error: e.clone(),
                                        });
                                        retried.push(e);
                                        let backoff = settings.retry_backoff
                                            * 2u32.saturating_pow(attempt - 1);
                                        tokio::time::sleep(backoff).await;
                                    }
                                    other => return (other, attempt, retried, t0.elapsed()),
                                }
                            }
                        }
                    });
                    let outcomes = futures::future::join_all(futures).await;
                    let mut results = Vec::with_capacity(outcomes.len());
                    let mut records = Vec::with_capacity(outcomes.len());
                    for (op, (r, attempts, retried, took)) in batch.ops.iter().zip(outcomes) {
                        if attempts > 0 {
                            self.emit(RunEvent::OpFinished {
                                op: op.to_string(),
                                attempts,
                                error: r.as_ref().err().cloned(),
                            });
                        }
                        records.push(OpRecord {
                            op: op.clone(),
                            summary: op.to_string(),
                            sql: self.statements(op, directory),
                            attempts,
                            duration_ms: took.as_millis() as u64,
                            error: r.as_ref().err().cloned(),
                            retried_errors: retried,
                        });
                        results.push(r);
                    }
                    let now = started.elapsed();
                    steps.push(StepRecord {
                        state: batch.state,
                        description: batch.description.to_string(),
                        precondition: batch.precondition.to_string(),
                        changes: batch.changes.to_string(),
                        started_ms: step_start.as_millis() as u64,
                        started_unix_ms,
                        duration_ms: now.saturating_sub(step_start).as_millis() as u64,
                        executed,
                        ops: records,
                    });
                    if self.cancel.is_cancelled() {
                        machine.request_cancel();
                    }
                    action = machine.on_results(results, now);
                }
            }
        }
    }
}

/// What a call sends, for what-if plans and reports: the backend's SQL, or the directory's
/// request for its compare-and-swap (for LDAP, the modify as LDIF).
fn statements(backend: &dyn Backend, directory: &dyn Directory, op: &Op) -> Vec<String> {
    match op {
        Op::SwapDirectory { expected, new, .. } => directory.describe_swap(expected, new),
        Op::ReadDirectory { .. } => Vec::new(),
        _ => backend.statements(op),
    }
}

/// The highest epoch any journaled run wrote (or set out to write): a new epoch must exceed
/// it even when the instance that holds it is down.
pub fn journal_max_epoch(records: &[JournalRecord]) -> u64 {
    records
        .iter()
        .filter_map(|r| match &r.event {
            JournalEvent::Step { ops, .. } => Some(ops),
            _ => None,
        })
        .flatten()
        .filter_map(|op| match op {
            Op::WriteLocation { record, .. } => Some(record.epoch),
            Op::SwapDirectory { stamp, .. } => Some(stamp.epoch),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Convenience: the result of one call, for callers that only probe (status).
pub async fn probe_all(
    backend: &dyn Backend,
    topology: &Topology,
    timeout: Duration,
) -> Vec<(InstanceAddr, Result<InstanceProbe, BackendError>)> {
    let futs = topology.instances().map(|i| {
        let op = Op::Probe {
            instance: i.clone(),
            databases: topology.databases.clone(),
        };
        async move {
            let r = match tokio::time::timeout(timeout, op.run(backend)).await {
                Ok(Ok(OpResult::Probe(p))) => Ok(p),
                Ok(Ok(_)) => unreachable!("probe returns a probe"),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(BackendError::new(
                    ErrorKind::Timeout,
                    op.operation(),
                    op.target(),
                    format!("no answer within {timeout:?}"),
                )),
            };
            (op.instance().cloned().expect("a SQL call"), r)
        }
    });
    futures::future::join_all(futs).await
}
