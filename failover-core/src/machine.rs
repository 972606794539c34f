//! The sans-IO failover state machine.
//!
//! The machine never performs IO and never reads a clock: the driver passes the time in and
//! feeds it the results of the [`Op`]s it asked for. Each state is named for what it waits
//! for; every transition it may take is listed in [`TRANSITIONS`] (checked at run time in
//! debug builds), which is also where the diagram in the docs comes from ([`mermaid`]).

use crate::backend::*;
use crate::error::{BackendError, ErrorKind};
use crate::model::{DatabaseName, InstanceAddr, Store};
use crate::op::{Op, OpResult};
use crate::outcome::{DataLossEstimate, Outcome};
use crate::request::{FailoverRequest, Mode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run these calls (concurrently), then call [`Machine::on_results`] with their results
    /// in the same order.
    Execute(Batch),
    /// Wait until `until` (time since the run started), then call [`Machine::on_timer`].
    Sleep {
        /// The wake-up time.
        until: Duration,
        /// What is being waited for.
        progress: Progress,
    },
    /// The run is over.
    Finished(Outcome),
}

/// A step: one batch of independent calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The state that waits for the results.
    pub state: StateName,
    /// What the step does, for people.
    pub description: String,
    /// What must hold for the step to make sense.
    pub precondition: String,
    /// What it changes ("nothing" for read-only steps).
    pub changes: String,
    /// The calls.
    pub ops: Vec<Op>,
    /// Timeout of each call attempt.
    pub timeout: Duration,
    /// Whether failed calls with a retryable kind may be retried.
    pub retry: bool,
}

/// Replication progress, reported while waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// What is awaited.
    pub waiting_for: String,
    /// Per-database lag (in positions; `None` = unknown).
    pub lag: Vec<(DatabaseName, Option<u64>)>,
    /// Time left before giving up.
    pub remaining: Duration,
}

/// The states, named for what they wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum StateName {
    Preflight,
    AcquiringLocks,
    AwaitingReplication,
    ReplicationPause,
    ConfirmingLocks,
    Fencing,
    ProbingFence,
    ReadingPositions,
    AwaitingCatchUp,
    CatchUpPause,
    ForcingMirror,
    Recovering,
    OpeningTarget,
    RepointingMirror,
    RecordingLocation,
    ConfirmingRecord,
    PublishingLocation,
    Verifying,
    UndoingPromotion,
    UndoingFence,
    ConfirmingUndo,
    ReleasingLocks,
    Done,
}

impl StateName {
    /// Every state, in rough order of a run.
    pub const ALL: [StateName; 23] = [
        StateName::Preflight,
        StateName::AcquiringLocks,
        StateName::AwaitingReplication,
        StateName::ReplicationPause,
        StateName::ConfirmingLocks,
        StateName::Fencing,
        StateName::ProbingFence,
        StateName::ReadingPositions,
        StateName::AwaitingCatchUp,
        StateName::CatchUpPause,
        StateName::ForcingMirror,
        StateName::Recovering,
        StateName::OpeningTarget,
        StateName::RepointingMirror,
        StateName::RecordingLocation,
        StateName::ConfirmingRecord,
        StateName::PublishingLocation,
        StateName::Verifying,
        StateName::UndoingPromotion,
        StateName::UndoingFence,
        StateName::ConfirmingUndo,
        StateName::ReleasingLocks,
        StateName::Done,
    ];

    /// The name as text.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Preflight => "Preflight",
            StateName::AcquiringLocks => "AcquiringLocks",
            StateName::AwaitingReplication => "AwaitingReplication",
            StateName::ReplicationPause => "ReplicationPause",
            StateName::ConfirmingLocks => "ConfirmingLocks",
            StateName::Fencing => "Fencing",
            StateName::ProbingFence => "ProbingFence",
            StateName::ReadingPositions => "ReadingPositions",
            StateName::AwaitingCatchUp => "AwaitingCatchUp",
            StateName::CatchUpPause => "CatchUpPause",
            StateName::ForcingMirror => "ForcingMirror",
            StateName::Recovering => "Recovering",
            StateName::OpeningTarget => "OpeningTarget",
            StateName::RepointingMirror => "RepointingMirror",
            StateName::RecordingLocation => "RecordingLocation",
            StateName::ConfirmingRecord => "ConfirmingRecord",
            StateName::PublishingLocation => "PublishingLocation",
            StateName::Verifying => "Verifying",
            StateName::UndoingPromotion => "UndoingPromotion",
            StateName::UndoingFence => "UndoingFence",
            StateName::ConfirmingUndo => "ConfirmingUndo",
            StateName::ReleasingLocks => "ReleasingLocks",
            StateName::Done => "Done",
        }
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

use StateName as S;

/// Every transition the machine can take: (from, to, why).
pub const TRANSITIONS: &[(StateName, StateName, &str)] = &[
    (S::Preflight, S::AcquiringLocks, "checks pass"),
    (S::Preflight, S::Done, "refused"),
    (
        S::Preflight,
        S::ReleasingLocks,
        "re-check under the lock failed / cancelled",
    ),
    (
        S::Preflight,
        S::AwaitingReplication,
        "planned: re-checked under the lock",
    ),
    (
        S::Preflight,
        S::Fencing,
        "disaster recovery / restore: re-checked under the lock",
    ),
    (S::Preflight, S::Recovering, "restore: nothing to fence"),
    (
        S::AcquiringLocks,
        S::Preflight,
        "locked: check again under the lock",
    ),
    (
        S::AcquiringLocks,
        S::ReleasingLocks,
        "lock held elsewhere / cancelled",
    ),
    (
        S::AcquiringLocks,
        S::Done,
        "lock held elsewhere (none taken)",
    ),
    (S::AwaitingReplication, S::ReplicationPause, "lagging"),
    (S::AwaitingReplication, S::ConfirmingLocks, "caught up"),
    (
        S::AwaitingReplication,
        S::ReleasingLocks,
        "timeout / error / cancelled",
    ),
    (S::ReplicationPause, S::AwaitingReplication, "poll again"),
    (S::ReplicationPause, S::ReleasingLocks, "cancelled"),
    (S::ConfirmingLocks, S::Fencing, "locks still held"),
    (
        S::ConfirmingLocks,
        S::ReleasingLocks,
        "lock lost / cancelled",
    ),
    (S::Fencing, S::ReadingPositions, "fenced"),
    (S::Fencing, S::ProbingFence, "fence failed"),
    (
        S::Fencing,
        S::UndoingFence,
        "cancelled right after the fence",
    ),
    (S::Fencing, S::Recovering, "restore: others fenced"),
    (
        S::Fencing,
        S::ReleasingLocks,
        "restore: could not fence the other store",
    ),
    (S::ProbingFence, S::UndoingFence, "partly fenced"),
    (S::ProbingFence, S::ReleasingLocks, "nothing fenced"),
    (
        S::ReadingPositions,
        S::AwaitingCatchUp,
        "planned: fenced positions known",
    ),
    (
        S::ReadingPositions,
        S::ForcingMirror,
        "disaster recovery: mirror must be forced",
    ),
    (
        S::ReadingPositions,
        S::Recovering,
        "disaster recovery: target serving",
    ),
    (S::ReadingPositions, S::UndoingFence, "error / cancelled"),
    (S::AwaitingCatchUp, S::CatchUpPause, "target behind"),
    (S::AwaitingCatchUp, S::Recovering, "target caught up"),
    (
        S::AwaitingCatchUp,
        S::UndoingFence,
        "timeout / error / cancelled",
    ),
    (S::CatchUpPause, S::AwaitingCatchUp, "poll again"),
    (S::CatchUpPause, S::UndoingFence, "cancelled"),
    (S::ForcingMirror, S::Recovering, "mirror serving"),
    (S::ForcingMirror, S::UndoingFence, "force failed"),
    (S::Recovering, S::OpeningTarget, "online"),
    (
        S::Preflight,
        S::OpeningTarget,
        "restore: nothing to fence or recover",
    ),
    (
        S::Fencing,
        S::OpeningTarget,
        "restore: others fenced, nothing to recover",
    ),
    (
        S::ReadingPositions,
        S::OpeningTarget,
        "target already caught up / nothing to recover",
    ),
    (
        S::AwaitingCatchUp,
        S::OpeningTarget,
        "caught up, nothing to recover",
    ),
    (
        S::ForcingMirror,
        S::OpeningTarget,
        "mirror serving, nothing to recover",
    ),
    (S::Recovering, S::UndoingFence, "recovery failed"),
    (S::Recovering, S::ReleasingLocks, "restore: recovery failed"),
    (
        S::OpeningTarget,
        S::RepointingMirror,
        "planned: mirror partner serves",
    ),
    (S::OpeningTarget, S::RecordingLocation, "writable"),
    (S::OpeningTarget, S::Verifying, "restore: writable"),
    (
        S::OpeningTarget,
        S::UndoingPromotion,
        "open failed / cancelled",
    ),
    (S::OpeningTarget, S::ReleasingLocks, "restore: open failed"),
    (
        S::RepointingMirror,
        S::RecordingLocation,
        "repointed (or left as is)",
    ),
    (S::RecordingLocation, S::PublishingLocation, "recorded"),
    (S::RecordingLocation, S::ConfirmingRecord, "write failed"),
    (
        S::ConfirmingRecord,
        S::PublishingLocation,
        "the write did land",
    ),
    (S::ConfirmingRecord, S::UndoingPromotion, "not recorded"),
    (S::PublishingLocation, S::Verifying, "published"),
    (
        S::Verifying,
        S::ReleasingLocks,
        "verified / verification failed",
    ),
    (S::UndoingPromotion, S::UndoingFence, "target fenced again"),
    (
        S::UndoingPromotion,
        S::ReleasingLocks,
        "target could not be fenced again",
    ),
    (S::UndoingFence, S::ConfirmingUndo, "source writable again"),
    (S::UndoingFence, S::ReleasingLocks, "undo failed"),
    (
        S::ConfirmingUndo,
        S::ReleasingLocks,
        "confirmed / not confirmed",
    ),
    (S::ReleasingLocks, S::Done, "released"),
];

/// The state diagram, generated from [`TRANSITIONS`], as Mermaid `stateDiagram-v2` text.
pub fn mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n    [*] --> Preflight\n");
    for (from, to, why) in TRANSITIONS {
        let to_s = if *to == S::Done {
            "[*]".to_string()
        } else {
            to.to_string()
        };
        out.push_str(&format!("    {from} --> {to_s}: {why}\n"));
    }
    out
}

/// Data the machine carries from state to state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Findings {
    /// The instance that served the CMS before the run (planned/DR), or the store demoted by
    /// a restore.
    pub source_serving: Option<InstanceAddr>,
    /// The instance being made (or kept) active.
    pub target_serving: Option<InstanceAddr>,
    /// The store being made active.
    pub target_store: Option<Store>,
    /// Databases fenced on each instance by this run (known or suspected).
    pub fenced: Vec<(InstanceAddr, Vec<DatabaseName>)>,
    /// Whether the target may have been made writable.
    pub promoted: bool,
    /// Whether the new location was recorded (the commit point).
    pub recorded: bool,
    /// The epoch written.
    pub epoch: Option<u64>,
    /// Source positions right after the fence.
    pub fenced_positions: Vec<DatabasePosition>,
    /// Disaster-recovery data-loss estimate.
    pub data_loss: Option<Vec<DataLossEstimate>>,
    /// Things the operator should know that did not stop the run.
    pub warnings: Vec<String>,
    /// What would block the run right now (what-if).
    pub blockers: Vec<String>,
    /// When the fence was issued (write unavailability starts).
    pub window_start: Option<Duration>,
    /// When the target was writable and recorded (write unavailability ends).
    pub window_end: Option<Duration>,
    /// The last probe of each instance.
    pub probes: BTreeMap<InstanceAddr, Result<InstanceProbe, BackendError>>,
}

#[derive(Debug, Clone)]
enum State {
    Preflight {
        locked: bool,
    },
    AcquiringLocks,
    AwaitingReplication {
        deadline: Duration,
    },
    ReplicationPause {
        deadline: Duration,
        until: Duration,
        progress: Progress,
    },
    ConfirmingLocks,
    Fencing,
    ProbingFence {
        reason: String,
    },
    ReadingPositions,
    AwaitingCatchUp {
        deadline: Duration,
    },
    CatchUpPause {
        deadline: Duration,
        until: Duration,
        progress: Progress,
    },
    ForcingMirror {
        mirror: InstanceAddr,
    },
    Recovering,
    OpeningTarget,
    RepointingMirror {
        principal: InstanceAddr,
    },
    RecordingLocation,
    ConfirmingRecord {
        error: String,
    },
    PublishingLocation,
    Verifying,
    UndoingPromotion {
        reason: Failure,
    },
    UndoingFence {
        reason: Failure,
    },
    ConfirmingUndo {
        reason: Failure,
    },
    ReleasingLocks {
        outcome: Outcome,
    },
    Done(Outcome),
}

/// Why an undo runs: a failure or a cancellation.
#[derive(Debug, Clone)]
enum Failure {
    Error(String),
    Cancelled(String),
}

impl Failure {
    fn text(&self) -> &str {
        match self {
            Failure::Error(s) | Failure::Cancelled(s) => s,
        }
    }
}

impl State {
    fn name(&self) -> StateName {
        match self {
            State::Preflight { .. } => S::Preflight,
            State::AcquiringLocks => S::AcquiringLocks,
            State::AwaitingReplication { .. } => S::AwaitingReplication,
            State::ReplicationPause { .. } => S::ReplicationPause,
            State::ConfirmingLocks => S::ConfirmingLocks,
            State::Fencing => S::Fencing,
            State::ProbingFence { .. } => S::ProbingFence,
            State::ReadingPositions => S::ReadingPositions,
            State::AwaitingCatchUp { .. } => S::AwaitingCatchUp,
            State::CatchUpPause { .. } => S::CatchUpPause,
            State::ForcingMirror { .. } => S::ForcingMirror,
            State::Recovering => S::Recovering,
            State::OpeningTarget => S::OpeningTarget,
            State::RepointingMirror { .. } => S::RepointingMirror,
            State::RecordingLocation => S::RecordingLocation,
            State::ConfirmingRecord { .. } => S::ConfirmingRecord,
            State::PublishingLocation => S::PublishingLocation,
            State::Verifying => S::Verifying,
            State::UndoingPromotion { .. } => S::UndoingPromotion,
            State::UndoingFence { .. } => S::UndoingFence,
            State::ConfirmingUndo { .. } => S::ConfirmingUndo,
            State::ReleasingLocks { .. } => S::ReleasingLocks,
            State::Done(_) => S::Done,
        }
    }
}

type Results = Vec<Result<OpResult, BackendError>>;

/// The failover state machine for one run.
#[derive(Debug)]
pub struct Machine {
    req: FailoverRequest,
    state: State,
    f: Findings,
    /// Instances where this run holds (or may hold) the lock.
    locks: Vec<InstanceAddr>,
    /// Per instance: the location record read in preflight.
    records: BTreeMap<InstanceAddr, Option<LocationRecord>>,
    /// Databases to fence per instance (planned/DR: the source; restore: the other store).
    to_fence: Vec<(InstanceAddr, Vec<DatabaseName>)>,
    /// Databases of the target that are RESTORING and need recovery.
    to_recover: Vec<DatabaseName>,
    cancel: bool,
    what_if_sample: Option<Vec<DatabasePosition>>,
    last_ops: Vec<Op>,
    history: Vec<StateName>,
}

impl Machine {
    /// A machine for `req`, in its first state.
    pub fn new(req: FailoverRequest) -> Self {
        Self {
            req,
            state: State::Preflight { locked: false },
            f: Findings::default(),
            locks: Vec::new(),
            records: BTreeMap::new(),
            to_fence: Vec::new(),
            to_recover: Vec::new(),
            cancel: false,
            what_if_sample: None,
            last_ops: Vec::new(),
            history: vec![S::Preflight],
        }
    }

    /// The request being run.
    pub fn request(&self) -> &FailoverRequest {
        &self.req
    }

    /// The current state's name.
    pub fn state(&self) -> StateName {
        self.state.name()
    }

    /// Every state entered so far, in order.
    pub fn history(&self) -> &[StateName] {
        &self.history
    }

    /// What the run found out so far.
    pub fn findings(&self) -> &Findings {
        &self.f
    }

    /// Asks the run to stop at the next safe point. Before the fence the run stops with no
    /// change; after the fence and before the commit point the fence is undone; after the
    /// commit point the run finishes (cancelling would leave a half-done failover).
    pub fn request_cancel(&mut self) {
        self.cancel = true;
    }

    /// Whether the run is past the commit point (cancellation no longer stops it).
    pub fn committed(&self) -> bool {
        self.f.recorded
    }

    /// Whether the current step must not be cut short by cancellation (undo and release).
    pub fn in_undo(&self) -> bool {
        matches!(
            self.state,
            State::UndoingPromotion { .. }
                | State::UndoingFence { .. }
                | State::ConfirmingUndo { .. }
                | State::ReleasingLocks { .. }
        )
    }

    /// The first action.
    pub fn start(&mut self, now: Duration) -> Action {
        self.enter(now)
    }

    /// Feeds the results of the last [`Action::Execute`].
    pub fn on_results(&mut self, results: Results, now: Duration) -> Action {
        assert_eq!(results.len(), self.last_ops.len(), "one result per op");
        let state = std::mem::replace(
            &mut self.state,
            State::Done(Outcome::Refused {
                reason: "poisoned".into(),
            }),
        );
        let next = self.transition(state, results, now);
        self.go(next);
        self.enter(now)
    }

    /// Wakes the machine after an [`Action::Sleep`] (or early, after a cancellation).
    pub fn on_timer(&mut self, now: Duration) -> Action {
        let state = std::mem::replace(
            &mut self.state,
            State::Done(Outcome::Refused {
                reason: "poisoned".into(),
            }),
        );
        let next = match state {
            State::ReplicationPause {
                deadline,
                until,
                progress,
            } => {
                if self.cancel {
                    self.release(Outcome::Cancelled {
                        detail: "cancelled while waiting for replication; nothing was changed"
                            .into(),
                    })
                } else if now < until {
                    State::ReplicationPause {
                        deadline,
                        until,
                        progress,
                    }
                } else {
                    State::AwaitingReplication { deadline }
                }
            }
            State::CatchUpPause {
                deadline,
                until,
                progress,
            } => {
                if self.cancel {
                    State::UndoingFence {
                        reason: Failure::Cancelled(
                            "cancelled while the backup was catching up".into(),
                        ),
                    }
                } else if now < until {
                    State::CatchUpPause {
                        deadline,
                        until,
                        progress,
                    }
                } else {
                    State::AwaitingCatchUp { deadline }
                }
            }
            other => other,
        };
        self.go(next);
        self.enter(now)
    }

    fn state_name_of_prev(&self) -> StateName {
        *self.history.last().unwrap_or(&S::Preflight)
    }

    fn go(&mut self, next: State) {
        let from = self.state_name_of_prev();
        let to = next.name();
        debug_assert!(
            from == to || TRANSITIONS.iter().any(|(a, b, _)| *a == from && *b == to),
            "transition {from} -> {to} is not in TRANSITIONS"
        );
        if from != to {
            self.history.push(to);
        }
        self.state = next;
    }

    fn dbs(&self) -> Vec<DatabaseName> {
        self.req.topology.databases.clone()
    }

    fn batch(
        &mut self,
        description: impl Into<String>,
        precondition: impl Into<String>,
        changes: impl Into<String>,
        ops: Vec<Op>,
        timeout: Duration,
        retry: bool,
    ) -> Action {
        self.last_ops = ops.clone();
        Action::Execute(Batch {
            state: self.state.name(),
            description: description.into(),
            precondition: precondition.into(),
            changes: changes.into(),
            ops,
            timeout,
            retry,
        })
    }

    /// Releases any locks, then ends with `outcome`.
    fn release(&mut self, outcome: Outcome) -> State {
        State::ReleasingLocks { outcome }
    }

    fn refuse(&mut self, reason: impl Into<String>) -> State {
        let outcome = Outcome::Refused {
            reason: reason.into(),
        };
        if self.locks.is_empty() {
            State::Done(outcome)
        } else {
            State::ReleasingLocks { outcome }
        }
    }

    fn lock_instances(&self) -> Vec<InstanceAddr> {
        let mut v: Vec<InstanceAddr> = Vec::new();
        let fence = self.to_fence.iter().map(|(i, _)| i);
        for i in self
            .f
            .target_serving
            .iter()
            .chain(self.f.source_serving.iter())
            .chain(fence)
        {
            if !v.contains(i) {
                v.push(i.clone());
            }
        }
        v
    }

    /// Produces the action for the current state (its "entry").
    fn enter(&mut self, now: Duration) -> Action {
        let st = self.req.settings.clone();
        let dbs = self.dbs();
        let what_if = self.req.what_if;
        match self.state.clone() {
            State::Preflight { .. } => {
                let mut instances: Vec<InstanceAddr> = Vec::new();
                let stores: Vec<&Store> = match &self.req.mode {
                    Mode::Planned | Mode::Restore => {
                        vec![&self.req.topology.active, &self.req.topology.backup]
                    }
                    Mode::DisasterRecovery { target } => vec![&self.req.topology.active, target],
                };
                for s in stores {
                    for i in s.instances() {
                        if !instances.contains(i) {
                            instances.push(i.clone());
                        }
                    }
                }
                let mut ops = Vec::new();
                for i in &instances {
                    ops.push(Op::Probe {
                        instance: i.clone(),
                        databases: dbs.clone(),
                    });
                    ops.push(Op::ReadLocation {
                        instance: i.clone(),
                    });
                }
                let timeout = if matches!(self.req.mode, Mode::DisasterRecovery { .. }) {
                    st.dr_fence_timeout
                        .max(st.step_timeout.min(Duration::from_secs(10)))
                } else {
                    st.step_timeout
                };
                self.batch(
                    "probe every instance and read the recorded CMS location",
                    "none",
                    "nothing",
                    ops,
                    timeout,
                    true,
                )
            }
            State::AcquiringLocks => {
                let ops = self
                    .lock_instances()
                    .into_iter()
                    .map(|i| Op::AcquireLock {
                        instance: i,
                        resource: st.lock_resource.clone(),
                    })
                    .collect();
                self.batch(
                    "take the failover lock so no other run can start",
                    "no other failover or restore is running",
                    "an application lock in master (released at the end)",
                    ops,
                    st.step_timeout,
                    true,
                )
            }
            State::AwaitingReplication { .. } => {
                let src = self.f.source_serving.clone().expect("source");
                let tgt = self.f.target_serving.clone().expect("target");
                self.batch(
                    "check that replication to the backup is done",
                    format!(
                        "the backup is within {} change(s) of the source",
                        st.max_lag
                    ),
                    "nothing",
                    vec![
                        Op::Positions {
                            instance: src,
                            databases: dbs.clone(),
                        },
                        Op::Positions {
                            instance: tgt,
                            databases: dbs,
                        },
                    ],
                    st.step_timeout,
                    true,
                )
            }
            State::ReplicationPause {
                until, progress, ..
            }
            | State::CatchUpPause {
                until, progress, ..
            } => Action::Sleep { until, progress },
            State::ConfirmingLocks => {
                let ops = self
                    .locks
                    .iter()
                    .map(|i| Op::CheckLock {
                        instance: i.clone(),
                        resource: st.lock_resource.clone(),
                    })
                    .collect();
                self.batch(
                    "confirm the lock is still held",
                    "lock taken",
                    "nothing",
                    ops,
                    st.step_timeout,
                    true,
                )
            }
            State::Fencing => {
                let ops: Vec<Op> = self
                    .to_fence
                    .iter()
                    .map(|(i, d)| Op::SetReadOnly {
                        instance: i.clone(),
                        databases: d.clone(),
                        read_only: true,
                    })
                    .collect();
                if self.f.window_start.is_none() && !matches!(self.req.mode, Mode::Restore) {
                    self.f.window_start = Some(now);
                }
                for (i, d) in &self.to_fence {
                    self.f.fenced.push((i.clone(), d.clone()));
                }
                let (timeout, retry) = match self.req.mode {
                    Mode::DisasterRecovery { .. } => (st.dr_fence_timeout, true),
                    _ => (st.step_timeout, true),
                };
                let description = match self.req.mode {
                    Mode::Restore => "fence every writable copy outside the recorded store",
                    Mode::DisasterRecovery { .. } => {
                        "try to fence the old source (it is expected to be unreachable)"
                    }
                    Mode::Planned => "fence the source: set every CMS database read-only",
                };
                self.batch(
                    description,
                    "replication caught up; lock held",
                    "source databases become READ_ONLY (writes stop)",
                    ops,
                    timeout,
                    retry,
                )
            }
            State::ProbingFence { .. } => {
                let ops = self
                    .to_fence
                    .iter()
                    .map(|(i, _)| Op::Probe {
                        instance: i.clone(),
                        databases: dbs.clone(),
                    })
                    .collect();
                self.batch(
                    "find out which databases the failed fence changed",
                    "fence failed",
                    "nothing",
                    ops,
                    st.undo_timeout,
                    true,
                )
            }
            State::ReadingPositions => {
                let mut ops = Vec::new();
                let dr = matches!(self.req.mode, Mode::DisasterRecovery { .. });
                if let Some(src) = self.f.source_serving.clone() {
                    ops.push(Op::Positions {
                        instance: src,
                        databases: dbs.clone(),
                    });
                }
                // The target's position is read in the same round trip (another instance):
                // often it has already caught up and the wait costs nothing more.
                ops.push(Op::Positions {
                    instance: self.target_reader(),
                    databases: dbs.clone(),
                });
                let timeout = if dr {
                    st.dr_fence_timeout
                } else {
                    st.step_timeout
                };
                self.batch(
                    "read the source's positions after the fence",
                    "source fenced",
                    "nothing",
                    ops,
                    timeout,
                    !dr,
                )
            }
            State::AwaitingCatchUp { .. } => {
                let tgt = self.f.target_serving.clone().expect("target");
                self.batch(
                    "wait for the backup to reach the source's fenced positions",
                    "source fenced",
                    "nothing",
                    vec![Op::Positions {
                        instance: tgt,
                        databases: dbs,
                    }],
                    st.step_timeout,
                    true,
                )
            }
            State::ForcingMirror { mirror } => {
                let ops = vec![Op::MirrorFailover {
                    instance: mirror.clone(),
                    databases: dbs,
                    kind: MirrorFailoverKind::Forced,
                    expected_partner: mirror,
                }];
                self.batch(
                    "force service on the backup's mirror (its principal is down)",
                    "the backup principal is unreachable and its mirror is reachable",
                    "the mirror becomes principal; the mirroring session is suspended (unsent log is lost)",
                    ops,
                    st.step_timeout,
                    true,
                )
            }
            State::Recovering => {
                let tgt = self.f.target_serving.clone().expect("target");
                let ops = if self.to_recover.is_empty() {
                    Vec::new()
                } else {
                    vec![Op::Recover {
                        instance: tgt,
                        databases: self.to_recover.clone(),
                    }]
                };
                self.f.promoted = true;
                self.batch(
                    "bring RESTORING copies on the target online",
                    "the target has caught up",
                    "RESTORE … WITH RECOVERY (cannot be undone: the copy stops receiving log)",
                    ops,
                    st.step_timeout,
                    true,
                )
            }
            State::OpeningTarget => {
                self.f.promoted = true;
                let tgt = self.f.target_serving.clone().expect("target");
                self.batch(
                    "make the target's databases read-write",
                    "every other copy is read-only",
                    "target databases become READ_WRITE",
                    vec![Op::SetReadOnly {
                        instance: tgt,
                        databases: dbs,
                        read_only: false,
                    }],
                    st.step_timeout,
                    true,
                )
            }
            State::RepointingMirror { principal } => {
                let tgt = self.f.target_serving.clone().expect("target");
                self.batch(
                    "give the principal role back to the target store's designated principal",
                    "the mirroring session is SYNCHRONIZED with safety FULL",
                    "mirroring roles swap (planned, no data loss)",
                    vec![Op::MirrorFailover {
                        instance: tgt,
                        databases: dbs,
                        kind: MirrorFailoverKind::Planned,
                        expected_partner: principal,
                    }],
                    st.step_timeout,
                    true,
                )
            }
            State::RecordingLocation => {
                let tgt = self.f.target_serving.clone().expect("target");
                let record = self.new_record();
                let expected = self.records.get(&tgt).cloned().flatten().map(|r| r.epoch);
                self.batch(
                    "record the new active location (the commit point)",
                    "target writable",
                    format!("location record epoch {} on the target", record.epoch),
                    vec![Op::WriteLocation {
                        instance: tgt,
                        record,
                        expected_epoch: expected,
                    }],
                    st.step_timeout,
                    true,
                )
            }
            State::ConfirmingRecord { .. } => {
                let tgt = self.f.target_serving.clone().expect("target");
                self.batch(
                    "read back the location record",
                    "the write failed",
                    "nothing",
                    vec![Op::ReadLocation { instance: tgt }],
                    st.undo_timeout,
                    true,
                )
            }
            State::PublishingLocation => {
                let tgt = self.f.target_serving.clone().expect("target");
                let record = self.new_record();
                let ops = self
                    .records
                    .iter()
                    .filter(|(i, _)| **i != tgt)
                    .filter(|(i, _)| matches!(self.f.probes.get(*i), Some(Ok(_))))
                    .map(|(i, r)| Op::WriteLocation {
                        instance: i.clone(),
                        record: record.clone(),
                        expected_epoch: r.as_ref().map(|r| r.epoch),
                    })
                    .collect();
                let timeout = if matches!(self.req.mode, Mode::DisasterRecovery { .. }) {
                    st.dr_fence_timeout
                } else {
                    st.step_timeout
                };
                self.batch(
                    "copy the location record to the other reachable instances",
                    "recorded on the target",
                    "location records",
                    ops,
                    timeout,
                    false,
                )
            }
            State::Verifying => {
                let mut ops = Vec::new();
                for i in self.all_instances() {
                    ops.push(Op::Probe {
                        instance: i,
                        databases: dbs.clone(),
                    });
                }
                self.batch(
                    "verify the end state: exactly one writable copy of each database",
                    "recorded",
                    "nothing",
                    ops,
                    st.step_timeout,
                    true,
                )
            }
            State::UndoingPromotion { .. } => {
                let tgt = self.f.target_serving.clone().expect("target");
                self.batch(
                    "fence the target again before undoing the source's fence",
                    "the failover failed before the commit point",
                    "target databases become READ_ONLY",
                    vec![Op::SetReadOnly {
                        instance: tgt,
                        databases: dbs,
                        read_only: true,
                    }],
                    st.undo_timeout,
                    true,
                )
            }
            State::UndoingFence { .. } => {
                let ops = self
                    .f
                    .fenced
                    .iter()
                    .map(|(i, d)| Op::SetReadOnly {
                        instance: i.clone(),
                        databases: d.clone(),
                        read_only: false,
                    })
                    .collect();
                self.batch(
                    "undo the fence: make the source read-write again",
                    "no other copy is writable",
                    "source databases become READ_WRITE",
                    ops,
                    st.undo_timeout,
                    true,
                )
            }
            State::ConfirmingUndo { .. } => {
                let mut ops = Vec::new();
                for (i, _) in self.f.fenced.clone() {
                    ops.push(Op::Probe {
                        instance: i,
                        databases: dbs.clone(),
                    });
                }
                self.batch(
                    "confirm the source is back in service",
                    "fence undone",
                    "nothing",
                    ops,
                    st.undo_timeout,
                    true,
                )
            }
            State::ReleasingLocks { .. } => {
                let ops = self
                    .locks
                    .iter()
                    .map(|i| Op::ReleaseLock {
                        instance: i.clone(),
                        resource: st.lock_resource.clone(),
                    })
                    .collect();
                self.batch(
                    "release the failover lock",
                    "none",
                    "the application lock is released",
                    ops,
                    st.undo_timeout,
                    true,
                )
            }
            State::Done(outcome) => {
                let _ = what_if;
                Action::Finished(outcome)
            }
        }
    }

    fn all_instances(&self) -> Vec<InstanceAddr> {
        let mut v: Vec<InstanceAddr> = Vec::new();
        let mut add = |s: &Store| {
            for i in s.instances() {
                if !v.contains(i) {
                    v.push(i.clone());
                }
            }
        };
        add(&self.req.topology.active);
        add(&self.req.topology.backup);
        if let Some(t) = &self.f.target_store {
            add(t);
        }
        v
    }

    /// The instance whose positions stand for the target (the serving partner, or the mirror
    /// that is about to be forced).
    fn target_reader(&self) -> InstanceAddr {
        self.f.target_serving.clone().expect("target")
    }

    fn max_epoch(&self) -> u64 {
        self.records
            .values()
            .flatten()
            .map(|r| r.epoch)
            .max()
            .unwrap_or(0)
    }

    fn new_record(&self) -> LocationRecord {
        LocationRecord {
            epoch: self.max_epoch() + 1,
            active: self.f.target_store.clone().expect("target store"),
            run_id: self.req.run_id.clone(),
        }
    }

    fn transition(&mut self, state: State, results: Results, now: Duration) -> State {
        let ops = std::mem::take(&mut self.last_ops);
        let st = self.req.settings.clone();
        let what_if = self.req.what_if;
        match state {
            State::Preflight { locked } => self.after_preflight(&ops, results, locked, now),
            State::AcquiringLocks => {
                let mut held_elsewhere = Vec::new();
                let mut errors = Vec::new();
                for (op, r) in ops.iter().zip(results) {
                    match r {
                        Ok(OpResult::Lock(LockAttempt::Granted)) => {
                            self.locks.push(op.instance().clone())
                        }
                        Ok(_) => held_elsewhere.push(op.instance().to_string()),
                        Err(e) => {
                            // The lock may have been granted before the error: release it too.
                            self.locks.push(op.instance().clone());
                            errors.push(e.to_string());
                        }
                    }
                }
                if !held_elsewhere.is_empty() {
                    return self.refuse(format!(
                        "another failover or restore holds the lock `{}` on {}; wait for it to finish (check `cms-failover status`)",
                        st.lock_resource,
                        held_elsewhere.join(", ")
                    ));
                }
                if !errors.is_empty() {
                    return self.refuse(format!(
                        "could not take the failover lock: {}",
                        errors.join("; ")
                    ));
                }
                if self.cancel {
                    return self.release(Outcome::Cancelled {
                        detail: "cancelled before any change".into(),
                    });
                }
                State::Preflight { locked: true }
            }
            State::AwaitingReplication { deadline } => {
                let mut pos = results.into_iter();
                let src = pos.next().expect("src");
                let tgt = pos.next().expect("tgt");
                let (src, tgt) = match (src, tgt) {
                    (Ok(OpResult::Positions(s)), Ok(OpResult::Positions(t))) => (s, t),
                    (Err(e), _) | (_, Err(e)) => {
                        if what_if {
                            self.f
                                .blockers
                                .push(format!("cannot read replication positions: {e}"));
                            return State::ConfirmingLocks;
                        }
                        return self.refuse(format!("cannot read replication positions: {e}"));
                    }
                    _ => return self.refuse("unexpected result reading positions"),
                };
                let lag = lags(&self.req.topology.databases, &src, &tgt);
                let caught_up = lag.iter().all(|(_, l)| l.is_some_and(|l| l <= st.max_lag));
                if caught_up {
                    return State::ConfirmingLocks;
                }
                let text = describe_lag(&lag);
                if what_if {
                    // Sample twice, one poll apart: behind but progressing is a wait, not a
                    // blocker; no progress at all would end in a refusal.
                    match self.what_if_sample.take() {
                        None => {
                            self.what_if_sample = Some(tgt.clone());
                            let until = now + st.poll_interval;
                            return State::ReplicationPause {
                                deadline: until,
                                until,
                                progress: Progress {
                                    waiting_for: "a second replication sample (what-if)".into(),
                                    lag,
                                    remaining: st.poll_interval,
                                },
                            };
                        }
                        Some(first) => {
                            // Progress: the target moved forward (a steady lag under a
                            // steady workload is healthy), or the gap is within the gate.
                            let progressing = lag.iter().all(|(db, l)| {
                                let was = first
                                    .iter()
                                    .find(|p| &p.database == db)
                                    .and_then(|p| p.position);
                                let now_pos = tgt
                                    .iter()
                                    .find(|p| &p.database == db)
                                    .and_then(|p| p.position);
                                l.is_some_and(|l| l <= st.max_lag)
                                    || matches!((was, now_pos), (Some(w), Some(n)) if n > w)
                            });
                            if progressing {
                                self.f.warnings.push(format!(
                                    "replication is behind right now ({text}) but progressing; the run would wait for it, up to {:?}, before fencing",
                                    st.replication_timeout
                                ));
                            } else {
                                self.f.blockers.push(format!(
                                    "replication is behind ({text}) and made no progress in {:?}; the run would wait up to {:?}, then refuse",
                                    st.poll_interval, st.replication_timeout
                                ));
                            }
                            return State::ConfirmingLocks;
                        }
                    }
                }
                if self.cancel {
                    return self.release(Outcome::Cancelled {
                        detail: "cancelled while waiting for replication; nothing was changed"
                            .into(),
                    });
                }
                if now >= deadline {
                    return self.refuse(format!(
                        "replication did not catch up within {:?} ({text}); the source was not fenced. Check the backup service / replication link, then try again or raise the replication timeout",
                        st.replication_timeout
                    ));
                }
                let until = (now + st.poll_interval).min(deadline);
                State::ReplicationPause {
                    deadline,
                    until,
                    progress: Progress {
                        waiting_for: "replication to the backup".into(),
                        lag,
                        remaining: deadline.saturating_sub(now),
                    },
                }
            }
            State::ConfirmingLocks => {
                let lost: Vec<String> = ops
                    .iter()
                    .zip(results)
                    .filter(|(_, r)| !matches!(r, Ok(OpResult::LockHeld(true))))
                    .map(|(o, _)| o.instance().to_string())
                    .collect();
                if !lost.is_empty() {
                    return self.refuse(format!("the failover lock was lost on {} (connection dropped); nothing was changed", lost.join(", ")));
                }
                if self.cancel {
                    return self.release(Outcome::Cancelled {
                        detail: "cancelled before any change".into(),
                    });
                }
                State::Fencing
            }
            State::Fencing => {
                let errors: Vec<BackendError> =
                    results.into_iter().filter_map(Result::err).collect();
                match &self.req.mode {
                    Mode::Restore => {
                        if errors.is_empty() {
                            self.promote()
                        } else {
                            let fenced = self.f.fenced.clone();
                            self.release(Outcome::NeedsRestore {
                                reason: format!(
                                    "could not fence the copies outside the recorded store ({}); the recorded store was left read-only so that two copies are never writable",
                                    join_errors(&errors)
                                ),
                                left_read_only: fenced,
                            })
                        }
                    }
                    Mode::DisasterRecovery { .. } => {
                        let refused: Vec<&BackendError> = errors
                            .iter()
                            .filter(|e| {
                                !matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout)
                            })
                            .collect();
                        if !refused.is_empty() {
                            // The old source is up and refused the fence: promoting now would
                            // make two writable copies.
                            let text = refused
                                .iter()
                                .map(|e| e.to_string())
                                .collect::<Vec<_>>()
                                .join("; ");
                            return State::ProbingFence {
                                reason: format!(
                                    "the old source is reachable but could not be fenced ({text}); fix that, or use a planned failover"
                                ),
                            };
                        }
                        if !errors.is_empty() {
                            self.f.warnings.push(format!(
                                "the old source could not be fenced ({}); if it comes back, it must not take writes: run `cms-failover restore` once it is reachable",
                                join_errors(&errors)
                            ));
                            self.f.fenced.clear();
                        }
                        State::ReadingPositions
                    }
                    Mode::Planned => {
                        if errors.is_empty() {
                            if self.cancel {
                                return State::UndoingFence {
                                    reason: Failure::Cancelled(
                                        "cancelled right after the fence".into(),
                                    ),
                                };
                            }
                            State::ReadingPositions
                        } else {
                            State::ProbingFence {
                                reason: format!(
                                    "fencing the source failed: {}",
                                    join_errors(&errors)
                                ),
                            }
                        }
                    }
                }
            }
            State::ProbingFence { reason } => {
                let mut any_fenced = false;
                let mut unknown = false;
                for r in results {
                    match r {
                        Ok(OpResult::Probe(p)) => {
                            if p.databases.iter().any(|d| d.read_only) {
                                any_fenced = true;
                            }
                        }
                        _ => unknown = true,
                    }
                }
                if any_fenced || unknown {
                    State::UndoingFence {
                        reason: Failure::Error(reason),
                    }
                } else {
                    self.f.fenced.clear();
                    self.release(Outcome::RolledBack {
                        reason: format!("{reason}; no database was left read-only"),
                    })
                }
            }
            State::ReadingPositions => {
                let dr = matches!(self.req.mode, Mode::DisasterRecovery { .. });
                let mut it = ops.iter().zip(results);
                let mut src_pos: Option<Vec<DatabasePosition>> = None;
                let mut tgt_pos: Option<Vec<DatabasePosition>> = None;
                let mut src_err = None;
                if self.f.source_serving.is_some() {
                    let (_, r) = it.next().expect("source positions");
                    match r {
                        Ok(OpResult::Positions(p)) => src_pos = Some(p),
                        Err(e) => src_err = Some(e),
                        _ => {}
                    }
                }
                if dr {
                    if let Some((_, Ok(OpResult::Positions(p)))) = it.next() {
                        tgt_pos = Some(p);
                    }
                    self.f.data_loss = Some(estimate(
                        &self.req.topology.databases,
                        src_pos.as_deref(),
                        tgt_pos.as_deref(),
                    ));
                    return match self.needs_force() {
                        Some(m) => State::ForcingMirror { mirror: m },
                        None => self.promote(),
                    };
                }
                match (src_pos, src_err) {
                    (Some(p), _) => {
                        if self.cancel {
                            return State::UndoingFence {
                                reason: Failure::Cancelled("cancelled after the fence".into()),
                            };
                        }
                        self.f.fenced_positions = p;
                        if what_if {
                            return self.promote();
                        }
                        if let Some((_, Ok(OpResult::Positions(t)))) = it.next()
                            && lags(&self.req.topology.databases, &self.f.fenced_positions, &t)
                                .iter()
                                .all(|(_, l)| *l == Some(0))
                        {
                            return self.promote();
                        }
                        State::AwaitingCatchUp {
                            deadline: now + st.catch_up_timeout,
                        }
                    }
                    (None, Some(e)) => State::UndoingFence {
                        reason: Failure::Error(format!("cannot read the fenced positions: {e}")),
                    },
                    (None, None) => State::UndoingFence {
                        reason: Failure::Error("no positions returned".into()),
                    },
                }
            }
            State::AwaitingCatchUp { deadline } => {
                let r = results.into_iter().next().expect("result");
                let tgt = match r {
                    Ok(OpResult::Positions(p)) => p,
                    Err(e) => {
                        return State::UndoingFence {
                            reason: Failure::Error(format!(
                                "cannot read the backup's positions: {e}"
                            )),
                        };
                    }
                    _ => {
                        return State::UndoingFence {
                            reason: Failure::Error("unexpected result".into()),
                        };
                    }
                };
                let lag = lags(&self.req.topology.databases, &self.f.fenced_positions, &tgt);
                if lag.iter().all(|(_, l)| *l == Some(0)) {
                    return self.promote();
                }
                if self.cancel {
                    return State::UndoingFence {
                        reason: Failure::Cancelled(
                            "cancelled while the backup was catching up".into(),
                        ),
                    };
                }
                if now >= deadline {
                    return State::UndoingFence {
                        reason: Failure::Error(format!(
                            "the backup did not reach the fenced positions within {:?} ({})",
                            st.catch_up_timeout,
                            describe_lag(&lag)
                        )),
                    };
                }
                State::CatchUpPause {
                    deadline,
                    until: (now + st.catch_up_poll_interval).min(deadline),
                    progress: Progress {
                        waiting_for: "the backup to reach the fenced positions".into(),
                        lag,
                        remaining: deadline.saturating_sub(now),
                    },
                }
            }
            State::ForcingMirror { mirror } => match results.into_iter().next().expect("result") {
                Ok(OpResult::Partner(p)) => {
                    // Servers report the partner as they name it (often NETBIOS\INST); the
                    // topology's name for the instance we forced is what clients use.
                    if p != mirror {
                        self.f.warnings.push(format!(
                            "the server reports the new principal as {p}; using the topology's name {mirror}"
                        ));
                    }
                    self.f.target_serving = Some(mirror);
                    self.promote()
                }
                Err(e) => State::UndoingFence {
                    reason: Failure::Error(format!(
                        "forcing service on the backup mirror failed: {e}"
                    )),
                },
                Ok(_) => State::UndoingFence {
                    reason: Failure::Error("unexpected result".into()),
                },
            },
            State::Recovering => {
                let errors: Vec<BackendError> =
                    results.into_iter().filter_map(Result::err).collect();
                if errors.is_empty() {
                    return State::OpeningTarget;
                }
                let reason = format!(
                    "bringing the target online failed: {}",
                    join_errors(&errors)
                );
                if matches!(self.req.mode, Mode::Restore) {
                    return self.release(Outcome::NeedsRestore {
                        reason,
                        left_read_only: self.restore_left(),
                    });
                }
                State::UndoingFence {
                    reason: Failure::Error(reason),
                }
            }
            State::OpeningTarget => {
                let errors: Vec<BackendError> =
                    results.into_iter().filter_map(Result::err).collect();
                if matches!(self.req.mode, Mode::Restore) {
                    if errors.is_empty() {
                        return State::Verifying;
                    }
                    let reason = format!(
                        "making the recorded store writable failed: {}",
                        join_errors(&errors)
                    );
                    return self.release(Outcome::NeedsRestore {
                        reason,
                        left_read_only: self.restore_left(),
                    });
                }
                if !errors.is_empty() {
                    return State::UndoingPromotion {
                        reason: Failure::Error(format!(
                            "making the target writable failed: {}",
                            join_errors(&errors)
                        )),
                    };
                }
                if self.cancel && !what_if {
                    return State::UndoingPromotion {
                        reason: Failure::Cancelled("cancelled after the target was opened".into()),
                    };
                }
                if let (Mode::Planned, Some(store)) = (&self.req.mode, self.f.target_store.clone())
                {
                    let serving = self.f.target_serving.clone().expect("target");
                    if serving != store.principal && self.session_synchronized(&serving) {
                        return State::RepointingMirror {
                            principal: store.principal,
                        };
                    }
                }
                State::RecordingLocation
            }
            State::RepointingMirror { principal } => {
                match results.into_iter().next().expect("result") {
                    Ok(OpResult::Partner(_)) => self.f.target_serving = Some(principal.clone()),
                    Ok(_) => {}
                    Err(e) => self.f.warnings.push(format!(
                        "could not give the principal role back to {principal} ({e}); the CMS is served by the mirror partner"
                    )),
                }
                State::RecordingLocation
            }
            State::RecordingLocation => match results.into_iter().next().expect("result") {
                Ok(_) => self.committed_now(now),
                Err(e) => State::ConfirmingRecord {
                    error: e.to_string(),
                },
            },
            State::ConfirmingRecord { error } => {
                match results.into_iter().next().expect("result") {
                    Ok(OpResult::Location(Some(r))) if r.run_id == self.req.run_id => {
                        self.committed_now(now)
                    }
                    Ok(_) => State::UndoingPromotion {
                        reason: Failure::Error(format!(
                            "recording the new location failed: {error}"
                        )),
                    },
                    Err(e) => State::UndoingPromotion {
                        reason: Failure::Error(format!(
                            "recording the new location failed: {error}; reading it back failed: {e}"
                        )),
                    },
                }
            }
            State::PublishingLocation => {
                for (op, r) in ops.iter().zip(results) {
                    if let Err(e) = r {
                        self.f.warnings.push(format!("the location record could not be copied to {} ({e}); the target's record (higher epoch) wins", op.instance()));
                    }
                }
                State::Verifying
            }
            State::Verifying => {
                let mut probes = BTreeMap::new();
                for (op, r) in ops.iter().zip(results) {
                    probes.insert(
                        op.instance().clone(),
                        r.map(|r| match r {
                            OpResult::Probe(p) => p,
                            _ => unreachable!("probe result"),
                        }),
                    );
                }
                let problems = if what_if {
                    Vec::new()
                } else {
                    self.verify(&probes)
                };
                for (i, p) in &probes {
                    self.f.probes.insert(i.clone(), p.clone());
                }
                let active = self.f.target_serving.clone().expect("target");
                if problems.is_empty() {
                    if what_if && !self.f.blockers.is_empty() {
                        return self.release(Outcome::Refused {
                            reason: format!(
                                "what-if: the run would be blocked: {}",
                                self.f.blockers.join("; ")
                            ),
                        });
                    }
                    self.release(Outcome::Succeeded {
                        active,
                        epoch: self.f.epoch,
                    })
                } else {
                    self.release(Outcome::NeedsRestore {
                        reason: format!("the end state is not right: {}", problems.join("; ")),
                        left_read_only: Vec::new(),
                    })
                }
            }
            State::UndoingPromotion { reason } => {
                let errors: Vec<BackendError> =
                    results.into_iter().filter_map(Result::err).collect();
                if errors.is_empty() {
                    self.f.promoted = false;
                    State::UndoingFence { reason }
                } else {
                    let fenced = self.f.fenced.clone();
                    self.release(Outcome::NeedsRestore {
                        reason: format!(
                            "{}; the target could not be fenced again ({}), so the source was left read-only to avoid two writable copies",
                            reason.text(),
                            join_errors(&errors)
                        ),
                        left_read_only: fenced,
                    })
                }
            }
            State::UndoingFence { reason } => {
                let errors: Vec<BackendError> =
                    results.into_iter().filter_map(Result::err).collect();
                if errors.is_empty() {
                    State::ConfirmingUndo { reason }
                } else {
                    let fenced = self.f.fenced.clone();
                    self.release(Outcome::NeedsRestore {
                        reason: format!(
                            "{}; undoing the fence failed: {}",
                            reason.text(),
                            join_errors(&errors)
                        ),
                        left_read_only: fenced,
                    })
                }
            }
            State::ConfirmingUndo { reason } => {
                let mut still = Vec::new();
                for (op, r) in ops.iter().zip(results) {
                    match r {
                        Ok(OpResult::Probe(p)) => {
                            let ro: Vec<DatabaseName> = p
                                .databases
                                .iter()
                                .filter(|d| d.read_only)
                                .map(|d| d.name.clone())
                                .collect();
                            if !ro.is_empty() {
                                still.push((op.instance().clone(), ro));
                            }
                        }
                        _ => still.push((op.instance().clone(), self.dbs())),
                    }
                }
                if still.is_empty() {
                    self.f.fenced.clear();
                    match reason {
                        Failure::Error(r) => self.release(Outcome::RolledBack { reason: r }),
                        Failure::Cancelled(d) => self.release(Outcome::Cancelled {
                            detail: format!("{d}; the fence was undone"),
                        }),
                    }
                } else {
                    self.release(Outcome::NeedsRestore {
                        reason: format!("{}; the undo could not be confirmed", reason.text()),
                        left_read_only: still,
                    })
                }
            }
            State::ReleasingLocks { outcome } => {
                for (op, r) in ops.iter().zip(results) {
                    if let Err(e) = r {
                        self.f.warnings.push(format!("releasing the lock on {} failed ({e}); it is released when the connection closes", op.instance()));
                    }
                }
                self.locks.clear();
                State::Done(outcome)
            }
            s @ (State::ReplicationPause { .. } | State::CatchUpPause { .. } | State::Done(_)) => s,
        }
    }

    /// The first promotion step: recovery when a copy is RESTORING, else opening.
    fn promote(&self) -> State {
        if self.to_recover.is_empty() {
            State::OpeningTarget
        } else {
            State::Recovering
        }
    }

    fn committed_now(&mut self, now: Duration) -> State {
        self.f.recorded = true;
        self.f.epoch = Some(self.max_epoch() + 1);
        if self.f.window_start.is_some() {
            self.f.window_end = Some(now);
        }
        if self.cancel {
            self.f.warnings.push("cancellation ignored: the new location was already recorded, so the failover was finished".into());
        }
        State::PublishingLocation
    }

    fn restore_left(&self) -> Vec<(InstanceAddr, Vec<DatabaseName>)> {
        let mut v = self.f.fenced.clone();
        if let Some(t) = &self.f.target_serving {
            v.push((t.clone(), self.dbs()));
        }
        v
    }

    fn session_synchronized(&self, serving: &InstanceAddr) -> bool {
        match self.f.probes.get(serving) {
            Some(Ok(p)) => p.databases.iter().all(|d| {
                d.mirroring
                    .as_ref()
                    .is_some_and(|m| m.state == MirrorState::Synchronized && m.safety_full)
            }),
            _ => false,
        }
    }

    fn needs_force(&self) -> Option<InstanceAddr> {
        let tgt = self.f.target_serving.as_ref()?;
        match self.f.probes.get(tgt) {
            Some(Ok(p)) => {
                if p.databases.iter().any(|d| {
                    d.mirroring
                        .as_ref()
                        .is_some_and(|m| m.role == MirrorRole::Mirror)
                }) {
                    Some(tgt.clone())
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn verify(
        &self,
        probes: &BTreeMap<InstanceAddr, Result<InstanceProbe, BackendError>>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let target = self.f.target_serving.as_ref().expect("target");
        for db in &self.req.topology.databases {
            let mut writable = Vec::new();
            for (i, p) in probes {
                if let Ok(p) = p
                    && p.database(db).is_some_and(|d| d.is_writable())
                {
                    writable.push(i.clone());
                }
            }
            match writable.as_slice() {
                [only] if only == target => {}
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
                // Unreachable instances cannot be verified; say so without failing the run.
                let _ = e;
                let _ = i;
            }
        }
        problems
    }

    fn after_preflight(
        &mut self,
        ops: &[Op],
        results: Results,
        locked: bool,
        now: Duration,
    ) -> State {
        let before = self.lock_instances();
        self.f.blockers.clear();
        self.f.warnings.clear();
        self.f.probes.clear();
        self.records.clear();
        let dbs = self.dbs();
        let mut unread = Vec::new();
        for (op, r) in ops.iter().zip(results) {
            match (op, r) {
                (Op::Probe { instance, .. }, r) => {
                    self.f.probes.insert(
                        instance.clone(),
                        r.map(|r| match r {
                            OpResult::Probe(p) => p,
                            _ => unreachable!("probe result"),
                        }),
                    );
                }
                (Op::ReadLocation { instance }, Ok(OpResult::Location(l))) => {
                    self.records.insert(instance.clone(), l);
                }
                (Op::ReadLocation { instance }, Err(e)) => unread.push((instance.clone(), e)),
                _ => {}
            }
        }
        // A record that could not be read on a reachable instance might be the newest one:
        // deciding without it could undo a committed failover.
        let mut unread_reachable = Vec::new();
        for (i, e) in unread {
            if matches!(self.f.probes.get(&i), Some(Ok(_))) {
                unread_reachable.push(format!("{i}: {e}"));
            } else {
                self.f.warnings.push(format!(
                    "the location record on {i} could not be read (instance unreachable)"
                ));
            }
        }
        let mode = self.req.mode.clone();
        let result = if !unread_reachable.is_empty() {
            Err(format!(
                "cannot read the active-location record ({}); without it the current CMS location is unknown. Fix access, then run again",
                unread_reachable.join("; ")
            ))
        } else {
            match &mode {
                Mode::Planned => self.preflight_planned(&dbs),
                Mode::DisasterRecovery { target } => self.preflight_dr(target, &dbs),
                Mode::Restore => self.preflight_restore(&dbs),
            }
        };
        match result {
            Ok(()) if !locked => State::AcquiringLocks,
            Ok(()) => {
                if self.lock_instances() != before {
                    return self.refuse(format!(
                        "the serving instances changed while the lock was taken (was {}, now {}); run again",
                        before.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
                        self.lock_instances().iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                    ));
                }
                if self.cancel {
                    return self.release(Outcome::Cancelled {
                        detail: "cancelled before any change".into(),
                    });
                }
                match &self.req.mode {
                    Mode::Planned => State::AwaitingReplication {
                        deadline: now + self.req.settings.replication_timeout,
                    },
                    Mode::DisasterRecovery { .. } => State::Fencing,
                    Mode::Restore if self.to_fence.is_empty() => self.promote(),
                    Mode::Restore => State::Fencing,
                }
            }
            Err(reason) => {
                if self.req.what_if {
                    self.f.blockers.push(reason.clone());
                }
                self.refuse(reason)
            }
        }
    }

    fn probe_of(&self, i: &InstanceAddr) -> Result<&InstanceProbe, String> {
        match self.f.probes.get(i) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(format!("{i} cannot be probed: {e}")),
            None => Err(format!("{i} was not probed")),
        }
    }

    /// The partner of `store` that serves the databases (every database present, none a
    /// mirror copy), preferring the principal.
    fn serving(&self, store: &Store, dbs: &[DatabaseName]) -> Result<InstanceAddr, String> {
        let mut reasons = Vec::new();
        for i in store.instances() {
            match self.probe_of(i) {
                Ok(p) => {
                    let missing: Vec<_> = dbs
                        .iter()
                        .filter(|d| p.database(d).is_none())
                        .map(|d| d.to_string())
                        .collect();
                    if !missing.is_empty() {
                        reasons.push(format!("{i} has no database {}", missing.join(", ")));
                        continue;
                    }
                    let mirrors: Vec<_> = p
                        .databases
                        .iter()
                        .filter(|d| {
                            d.mirroring
                                .as_ref()
                                .is_some_and(|m| m.role == MirrorRole::Mirror)
                        })
                        .map(|d| d.name.to_string())
                        .collect();
                    if mirrors.is_empty() {
                        return Ok(i.clone());
                    }
                    if mirrors.len() < dbs.len() {
                        reasons.push(format!("{i} is mirror for {} but principal for the others (split roles: fail the mirror sessions over to one partner first)", mirrors.join(", ")));
                    } else {
                        reasons.push(format!("{i} holds mirror copies"));
                    }
                }
                Err(e) => reasons.push(e),
            }
        }
        Err(reasons.join("; "))
    }

    fn writable_dbs(&self, i: &InstanceAddr) -> Vec<DatabaseName> {
        match self.f.probes.get(i) {
            Some(Ok(p)) => p
                .databases
                .iter()
                .filter(|d| d.is_writable())
                .map(|d| d.name.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn recorded_active(&self) -> Option<&LocationRecord> {
        self.records.values().flatten().max_by_key(|r| r.epoch)
    }

    fn plan_recovery(&mut self, tgt: &InstanceAddr, dbs: &[DatabaseName]) {
        if let Ok(p) = self.probe_of(tgt) {
            self.to_recover = dbs
                .iter()
                .filter(|d| {
                    p.database(d)
                        .is_some_and(|d| d.state == DbState::Restoring && d.mirroring.is_none())
                })
                .cloned()
                .collect();
        }
    }

    fn preflight_planned(&mut self, dbs: &[DatabaseName]) -> Result<(), String> {
        let topo = self.req.topology.clone();
        if let Some(r) = self.recorded_active() {
            if r.active.principal == topo.backup.principal {
                return Err(format!(
                    "the CMS is already recorded active on the backup store {} (epoch {}); nothing to fail over",
                    topo.backup, r.epoch
                ));
            }
            if r.active.principal != topo.active.principal {
                return Err(format!(
                    "the CMS is recorded active on {} (epoch {}), not on the topology's active store {}; update the topology file",
                    r.active, r.epoch, topo.active
                ));
            }
        }
        let src = self
            .serving(&topo.active, dbs)
            .map_err(|e| format!("the active store cannot be used: {e}"))?;
        let p = self.probe_of(&src)?.clone();
        for db in dbs {
            let d = p.database(db).expect("present");
            if d.state != DbState::Online {
                return Err(format!(
                    "{db} on the source {src} is {}, not ONLINE",
                    d.state
                ));
            }
            if d.read_only {
                return Err(format!(
                    "{db} on the source {src} is already READ_ONLY: an earlier failover may have been interrupted; run `cms-failover restore` first"
                ));
            }
        }
        let tgt = self
            .serving(&topo.backup, dbs)
            .map_err(|e| format!("the backup store cannot be used: {e}"))?;
        let writable = self.writable_dbs(&tgt);
        if !writable.is_empty() {
            return Err(format!(
                "{} already writable on the target {tgt}: the target is already active (two writable copies!); run `cms-failover status` and `cms-failover restore`",
                names(&writable)
            ));
        }
        for i in topo.backup.instances() {
            if *i != tgt
                && let Err(e) = self.probe_of(i)
            {
                self.f
                    .warnings
                    .push(format!("backup mirror partner not reachable: {e}"));
            }
        }
        for i in topo.active.instances() {
            if *i != src
                && let Err(e) = self.probe_of(i)
            {
                self.f
                    .warnings
                    .push(format!("source mirror partner not reachable: {e}"));
            }
        }
        self.plan_recovery(&tgt, dbs);
        self.to_fence = vec![(src.clone(), dbs.to_vec())];
        self.f.source_serving = Some(src);
        self.f.target_serving = Some(tgt);
        self.f.target_store = Some(topo.backup.clone());
        Ok(())
    }

    fn preflight_dr(&mut self, target: &Store, dbs: &[DatabaseName]) -> Result<(), String> {
        let topo = self.req.topology.clone();
        let source_writable = topo
            .active
            .instances()
            .any(|i| !self.writable_dbs(i).is_empty());
        if let Some(r) = self.recorded_active()
            && r.active.principal == target.principal
            && !source_writable
            && self
                .serving(target, dbs)
                .is_ok_and(|t| self.writable_dbs(&t).len() == dbs.len())
        {
            return Err(format!(
                "the CMS is already active on {target} (epoch {}); nothing to do",
                r.epoch
            ));
        }
        // The target: its serving partner, or its mirror to be forced.
        let tgt = match self.serving(target, dbs) {
            Ok(t) => t,
            Err(e) => {
                let mirror = target.mirror.as_ref().filter(|m| {
                    self.probe_of(m)
                        .is_ok_and(|p| dbs.iter().all(|d| p.database(d).is_some()))
                });
                match mirror {
                    Some(m) if self.probe_of(&target.principal).is_err() => m.clone(),
                    _ => return Err(format!("the disaster-recovery target cannot be used: {e}")),
                }
            }
        };
        // The old source: reachable or not, it is fenced if it can be.
        match self.serving(&topo.active, dbs) {
            Ok(src) => {
                let w = self.writable_dbs(&src);
                if !w.is_empty() {
                    self.to_fence = vec![(src.clone(), w)];
                }
                self.f.source_serving = Some(src);
            }
            Err(e) => {
                // Only "cannot be reached" means gone: any other error means the source is up
                // and might still take writes.
                for i in topo.active.instances() {
                    if let Some(Err(err)) = self.f.probes.get(i)
                        && !matches!(err.kind, ErrorKind::Unreachable | ErrorKind::Timeout)
                    {
                        return Err(format!(
                            "cannot tell whether the old source is down: {i} answered with an error ({err}); fix access to it, or make sure it is down, then run again"
                        ));
                    }
                }
                self.f.warnings.push(format!(
                    "the old source is not reachable (expected in disaster recovery): {e}"
                ))
            }
        }
        self.plan_recovery(&tgt, dbs);
        self.f.target_serving = Some(tgt);
        self.f.target_store = Some(target.clone());
        Ok(())
    }

    fn preflight_restore(&mut self, dbs: &[DatabaseName]) -> Result<(), String> {
        let topo = self.req.topology.clone();
        let (recorded, other) = match self.recorded_active().cloned() {
            Some(r) if r.active.principal == topo.backup.principal => {
                (topo.backup.clone(), topo.active.clone())
            }
            Some(r) if r.active.principal == topo.active.principal => {
                (topo.active.clone(), topo.backup.clone())
            }
            Some(r) => {
                return Err(format!(
                    "the CMS is recorded active on {} (epoch {}), which is not in the topology; update the topology file",
                    r.active, r.epoch
                ));
            }
            None => (topo.active.clone(), topo.backup.clone()),
        };
        let tgt = self
            .serving(&recorded, dbs)
            .map_err(|e| format!("the recorded CMS store {recorded} cannot be used: {e}"))?;
        let mut to_fence = Vec::new();
        for i in other.instances() {
            match self.probe_of(i) {
                Ok(_) => {
                    let w = self.writable_dbs(i);
                    if !w.is_empty() {
                        to_fence.push((i.clone(), w));
                    }
                }
                Err(e) => {
                    if self.writable_dbs(&tgt).len() < dbs.len() {
                        return Err(format!(
                            "cannot verify that no other copy is writable: {e}. Bring it back (or fence it by hand), then run restore again"
                        ));
                    }
                    self.f.warnings.push(format!("could not check {i}: {e}"));
                }
            }
        }
        self.plan_recovery(&tgt, dbs);
        self.to_fence = to_fence;
        self.f.source_serving = None;
        self.f.target_serving = Some(tgt);
        self.f.target_store = Some(recorded);
        Ok(())
    }
}

fn names(d: &[DatabaseName]) -> String {
    d.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
}

fn join_errors(e: &[BackendError]) -> String {
    e.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Per-database lag of `tgt` behind `src` (`None` when either side does not know).
pub fn lags(
    dbs: &[DatabaseName],
    src: &[DatabasePosition],
    tgt: &[DatabasePosition],
) -> Vec<(DatabaseName, Option<u64>)> {
    dbs.iter()
        .map(|d| {
            let s = src
                .iter()
                .find(|p| &p.database == d)
                .and_then(|p| p.position);
            let t = tgt
                .iter()
                .find(|p| &p.database == d)
                .and_then(|p| p.position);
            let lag = match (s, t) {
                (Some(s), Some(t)) => Some(s.0.saturating_sub(t.0)),
                _ => None,
            };
            (d.clone(), lag)
        })
        .collect()
}

fn describe_lag(lag: &[(DatabaseName, Option<u64>)]) -> String {
    lag.iter()
        .map(|(d, l)| match l {
            Some(l) => format!("{d} behind by {l}"),
            None => format!("{d} position unknown"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The disaster-recovery data-loss estimate: source position minus target position per
/// database, or unknown when the source position was never seen.
pub fn estimate(
    dbs: &[DatabaseName],
    src: Option<&[DatabasePosition]>,
    tgt: Option<&[DatabasePosition]>,
) -> Vec<DataLossEstimate> {
    dbs.iter()
        .map(|d| {
            let s = src
                .and_then(|s| s.iter().find(|p| &p.database == d))
                .and_then(|p| p.position);
            let t = tgt
                .and_then(|t| t.iter().find(|p| &p.database == d))
                .and_then(|p| p.position);
            DataLossEstimate {
                database: d.clone(),
                source_position: s,
                target_position: t,
                changes_at_risk: match (s, t) {
                    (Some(s), Some(t)) => Some(s.0.saturating_sub(t.0)),
                    _ => None,
                },
            }
        })
        .collect()
}

/// Whether an error means the effect of the call is unknown (so the core must re-probe).
pub fn effect_unknown(e: &BackendError) -> bool {
    matches!(
        e.kind,
        ErrorKind::Timeout | ErrorKind::Unreachable | ErrorKind::Transient
    )
}
