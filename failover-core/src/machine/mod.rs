//! The sans-IO failover state machine.
//!
//! The machine never performs IO and never reads a clock: the driver passes the time in and
//! feeds it the results of the [`Op`]s it asked for. Each state is named for what it waits
//! for; every transition it may take is listed in [`TRANSITIONS`] (checked on every
//! transition, in release builds too), which is also where the diagram in the docs comes from
//! ([`mermaid`]).
//!
//! One file per phase holds the phase's operations (what a state asks for when it is
//! entered) next to its result handling (the transition), with unit tests that feed scripted
//! results and time:
//!
//! | file | states |
//! |---|---|
//! | `preflight.rs` | `Preflight` (twice: the first check takes the lock in the same step, the second runs under it) — [`plan`] is a pure function: observations in, a [`Plan`] or a [`Refusal`] out |
//! | `lock.rs` | the lock taken with the first `Preflight`, confirmed in the gate's step, `ReleasingLocks` (`AcquiringLocks` and `ConfirmingLocks` are no longer entered) |
//! | `replication.rs` | `AwaitingReplication`, `ReplicationPause` (the gate: SQL positions, or the Backup Service); `ReadingPositions`, `AwaitingCatchUp`, `CatchUpPause` (catch-up); `AwaitingBackupService`, `BackupServicePause` (the Backup Service's `FinalState` after the fence) |
//! | `fence.rs` | `Fencing`, `ProbingFence` |
//! | `promote.rs` | `ForcingMirror`, `Recovering`, `OpeningTarget`, `RepointingMirror` |
//! | `switch.rs` | `AwaitingPrincipal`, `PrincipalPause` (after `SET PARTNER FAILOVER` or `FORCE_SERVICE_ALLOW_DATA_LOSS` returns: the instance to serve reports PRINCIPAL and ONLINE) |
//! | `commit.rs` | `RecordingLocation` (the directory compare-and-swap), `ConfirmingRecord`, `PublishingLocation` (with the end state's probes) |
//! | `verify.rs` | `Verifying` (the end state; in the publish step when there is one) |
//! | `directory.rs` | `AwaitingDirectory`, `DirectoryPause` (every DC returns the new value) |
//! | `undo.rs` | `UndoingPromotion`, `UndoingFence`, `ConfirmingUndo` |
//! | `restore.rs` | the restore plan and what restore does differently in fence / promote |
//!
//! Run data lives in the states: nothing after preflight is optional. What-if runs the same
//! machine: the driver skips the changes (answering with [`Op::assumed_result`]) and the
//! machine differs in exactly five behaviours, each at a `Ctx::what_if` check (a refusal becomes a blocker,
//! the replication gate samples twice, the post-fence catch-up is not awaited, the mirroring
//! role switch is not awaited, the end state is not verified).

mod commit;
mod directory;
mod fence;
mod lock;
mod permissions;
mod preflight;
mod promote;
mod replication;
mod restore;
mod switch;
mod undo;
mod verify;

#[cfg(test)]
pub(crate) mod script;

pub use crate::state::StateName;
pub use preflight::{Observations, Plan, plan};

pub use replication::{estimate, lags};

use crate::directory::CmsLocation;
use crate::error::BackendError;
use crate::model::{DatabaseName, InstanceAddr};
use crate::op::{Op, OpResult};
use crate::outcome::{DataLossEstimate, Failure, Outcome, Refusal};
use crate::request::FailoverRequest;
use crate::server::{DatabasePosition, InstanceProbe, LocationRecord};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
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
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The state that waits for the results.
    pub state: StateName,
    /// What the step does, for people.
    pub description: Cow<'static, str>,
    /// What must hold for the step to make sense.
    pub precondition: Cow<'static, str>,
    /// What it changes ("nothing" for read-only steps).
    pub changes: Cow<'static, str>,
    /// The calls (shared with the machine, which matches the results to them).
    pub ops: Arc<[Op]>,
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

use StateName as S;

/// Every transition the machine can take: (from, to, why).
pub const TRANSITIONS: &[(StateName, StateName, &str)] = &[
    (
        S::Preflight,
        S::Preflight,
        "checks pass, locked in the same step: check again under the lock",
    ),
    (S::Preflight, S::Done, "refused (no lock taken)"),
    (
        S::Preflight,
        S::ReleasingLocks,
        "refused / lock held or failed / re-check under the lock failed / cancelled",
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
        S::Preflight,
        S::RepublishingRecord,
        "re-checked under the lock; some instances hold a stale record",
    ),
    (
        S::RepublishingRecord,
        S::AwaitingReplication,
        "planned: record re-published",
    ),
    (
        S::RepublishingRecord,
        S::Fencing,
        "disaster recovery / restore: record re-published",
    ),
    (
        S::RepublishingRecord,
        S::Recovering,
        "restore: record re-published, nothing to fence",
    ),
    (
        S::RepublishingRecord,
        S::OpeningTarget,
        "restore: record re-published, nothing to fence or recover",
    ),
    (S::AwaitingReplication, S::ReplicationPause, "lagging"),
    (
        S::AwaitingReplication,
        S::Fencing,
        "caught up; the lock confirmed in the same step",
    ),
    (
        S::AwaitingReplication,
        S::ReleasingLocks,
        "timeout / error / lock lost / cancelled",
    ),
    (S::ReplicationPause, S::AwaitingReplication, "poll again"),
    (S::ReplicationPause, S::ReleasingLocks, "cancelled"),
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
    (
        S::ForcingMirror,
        S::Recovering,
        "what-if: mirror assumed serving",
    ),
    (S::ForcingMirror, S::UndoingFence, "force refused"),
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
        "what-if: mirror assumed serving, nothing to recover",
    ),
    (S::Recovering, S::UndoingFence, "recovery failed"),
    (S::Recovering, S::ReleasingLocks, "restore: recovery failed"),
    (
        S::OpeningTarget,
        S::RepointingMirror,
        "planned: mirror partner serves",
    ),
    (S::OpeningTarget, S::RecordingLocation, "writable"),
    (
        S::OpeningTarget,
        S::Verifying,
        "restore: writable, the records name the directory's store",
    ),
    (
        S::OpeningTarget,
        S::PublishingLocation,
        "restore: writable, the records do not name the directory's store",
    ),
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
    (
        S::RecordingLocation,
        S::PublishingLocation,
        "the directory points at the target (committed)",
    ),
    (
        S::RecordingLocation,
        S::ConfirmingRecord,
        "swap failed / conflict / answer lost",
    ),
    (
        S::ConfirmingRecord,
        S::PublishingLocation,
        "read back: the swap did land",
    ),
    (
        S::ConfirmingRecord,
        S::UndoingPromotion,
        "read back: not the new value",
    ),
    (
        S::PublishingLocation,
        S::ReleasingLocks,
        "published; verification failed / what-if",
    ),
    (
        S::PublishingLocation,
        S::AwaitingDirectory,
        "published and verified: read the directory on every DC",
    ),
    (
        S::Verifying,
        S::ReleasingLocks,
        "verification failed / what-if",
    ),
    (
        S::Verifying,
        S::AwaitingDirectory,
        "verified: read the directory on every DC",
    ),
    (
        S::AwaitingDirectory,
        S::DirectoryPause,
        "a DC still returns another value",
    ),
    (
        S::AwaitingDirectory,
        S::Done,
        "every DC converged / timeout (reported); the lock was released with the first reads",
    ),
    (S::DirectoryPause, S::AwaitingDirectory, "poll again"),
    (
        S::DirectoryPause,
        S::Done,
        "cancelled: stop watching (reported)",
    ),
    (S::UndoingPromotion, S::UndoingFence, "target fenced again"),
    (
        S::UndoingPromotion,
        S::ReleasingLocks,
        "target could not be fenced again",
    ),
    (
        S::UndoingPromotion,
        S::RecordingLocation,
        "the opened target refuses to be fenced again (1468, a mirroring session): it is the one writable copy, so the failover is finished (once)",
    ),
    (S::UndoingFence, S::ConfirmingUndo, "source writable again"),
    (S::UndoingFence, S::ReleasingLocks, "undo failed"),
    (
        S::ConfirmingUndo,
        S::ReleasingLocks,
        "confirmed / not confirmed",
    ),
    (S::ReleasingLocks, S::Done, "released"),
    (
        S::Fencing,
        S::AwaitingBackupService,
        "planned, Backup Service gate: fenced",
    ),
    (
        S::AwaitingBackupService,
        S::BackupServicePause,
        "still copying",
    ),
    (
        S::AwaitingBackupService,
        S::Recovering,
        "FinalState: nothing left to copy",
    ),
    (
        S::AwaitingBackupService,
        S::OpeningTarget,
        "FinalState, nothing to recover",
    ),
    (
        S::AwaitingBackupService,
        S::UndoingFence,
        "timeout / blocked / unreadable / cancelled",
    ),
    (
        S::BackupServicePause,
        S::AwaitingBackupService,
        "poll again",
    ),
    (S::BackupServicePause, S::UndoingFence, "cancelled"),
    (
        S::RepointingMirror,
        S::AwaitingPrincipal,
        "SET PARTNER FAILOVER returned (or its answer was lost): wait for the roles to switch",
    ),
    (
        S::AwaitingPrincipal,
        S::PrincipalPause,
        "the designated principal is not PRINCIPAL and ONLINE yet",
    ),
    (
        S::AwaitingPrincipal,
        S::RecordingLocation,
        "the designated principal serves (or, the statement failed, the partner still does)",
    ),
    (
        S::AwaitingPrincipal,
        S::UndoingPromotion,
        "planned: timeout / cancelled, the switch did not complete; forced: cancelled once the copy serves",
    ),
    (
        S::PrincipalPause,
        S::AwaitingPrincipal,
        "poll again (forced, cancelled: look once more)",
    ),
    (S::PrincipalPause, S::UndoingPromotion, "cancelled"),
    (
        S::ForcingMirror,
        S::AwaitingPrincipal,
        "FORCE_SERVICE_ALLOW_DATA_LOSS returned (or its answer was lost): wait for the forced mirror to switch",
    ),
    (
        S::AwaitingPrincipal,
        S::Recovering,
        "the forced mirror serves",
    ),
    (
        S::AwaitingPrincipal,
        S::OpeningTarget,
        "the forced mirror serves, nothing to recover",
    ),
    (
        S::AwaitingPrincipal,
        S::UndoingFence,
        "the force was refused with 1455 and the mirror does not serve: undo the fence",
    ),
    (
        S::AwaitingPrincipal,
        S::ReleasingLocks,
        "forced, timeout / cancelled: the switch did not complete (the force cannot be undone)",
    ),
];

const N_STATES: usize = StateName::ALL.len();

/// `LEGAL[from][to]`: whether `TRANSITIONS` lists `from -> to` (built at compile time, so the
/// check on every transition costs one lookup).
const LEGAL: [[bool; N_STATES]; N_STATES] = {
    let mut m = [[false; N_STATES]; N_STATES];
    let mut i = 0;
    while i < TRANSITIONS.len() {
        m[TRANSITIONS[i].0 as usize][TRANSITIONS[i].1 as usize] = true;
        i += 1;
    }
    m
};

/// Whether `TRANSITIONS` lists `from -> to`.
pub fn is_legal(from: StateName, to: StateName) -> bool {
    LEGAL[from as usize][to as usize]
}

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

/// What the run found out, for the report: warnings, blockers, the data-loss estimate, the
/// write-unavailability window and the last probe of each instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Findings {
    /// The epoch written at the commit point.
    pub epoch: Option<u64>,
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
    /// The DC the directory swap was sent to (what-if: would be sent to).
    pub directory_dc: Option<String>,
    /// What each watched DC returned at the end of the run.
    pub directory_after: Vec<DcValue>,
}

/// What the machine knows of the directory it commits to (the driver fills it in from its
/// [`crate::Directory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryInfo {
    /// [`crate::Directory::domain_controllers`]: the one changes go to first.
    pub controllers: Vec<String>,
    /// [`crate::Directory::commit_on_target`]: the value is the SQL location record, read in
    /// preflight with the records (the winning record names the store), swapped on the
    /// target instance and watched on every reachable instance.
    pub commit_on_target: bool,
}

impl DirectoryInfo {
    /// The SQL location record (the default).
    pub fn sql_record() -> Self {
        Self {
            controllers: Vec::new(),
            commit_on_target: true,
        }
    }
}

/// What one domain controller returned after the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcValue {
    /// The DC (for the SQL record: the instance).
    pub dc: String,
    /// The value it returned (`None`: it could not be read).
    pub value: Option<CmsLocation>,
    /// Why it could not be read.
    pub error: Option<String>,
    /// Whether it returned the new value.
    pub converged: bool,
}

/// The data every state after the lock carries: the plan and what the run did so far.
#[derive(Debug, Clone)]
struct Run {
    /// What preflight decided (under the lock).
    plan: Plan,
    /// Instances where this run holds (or may hold) the lock.
    locks: Vec<InstanceAddr>,
    /// Databases fenced on each instance by this run (known or suspected).
    fenced: Vec<(InstanceAddr, Vec<DatabaseName>)>,
}

/// Why an undo runs: a failure or a cancellation.
#[derive(Debug, Clone)]
enum Cause {
    Failed(Failure),
    Cancelled(String),
}

impl Cause {
    /// The failure to report when the undo itself does not work.
    fn into_failure(self) -> Failure {
        match self {
            Cause::Failed(f) => f,
            Cause::Cancelled(detail) => Failure::Cancelled { detail },
        }
    }
}

/// The lock taken, carried into the re-check under it.
#[derive(Debug, Clone)]
struct Locked {
    locks: Vec<InstanceAddr>,
    /// The instances the first check decided to lock (they must not change under the lock).
    serving: Vec<InstanceAddr>,
}

/// The states, each with exactly the data it needs.
#[derive(Debug, Clone)]
enum State {
    Preflight(Option<Locked>),
    RepublishingRecord(Box<Run>),
    AwaitingReplication {
        run: Box<Run>,
        deadline: Duration,
    },
    ReplicationPause {
        run: Box<Run>,
        deadline: Duration,
        until: Duration,
        progress: Progress,
    },
    Fencing(Box<Run>),
    ProbingFence {
        run: Box<Run>,
        failure: Failure,
    },
    ReadingPositions(Box<Run>),
    AwaitingCatchUp {
        run: Box<Run>,
        fenced: Vec<DatabasePosition>,
        deadline: Duration,
    },
    CatchUpPause {
        run: Box<Run>,
        fenced: Vec<DatabasePosition>,
        deadline: Duration,
        until: Duration,
        progress: Progress,
    },
    ForcingMirror {
        run: Box<Run>,
        mirror: InstanceAddr,
    },
    Recovering(Box<Run>),
    OpeningTarget(Box<Run>),
    RepointingMirror {
        run: Box<Run>,
        principal: InstanceAddr,
    },
    RecordingLocation(Box<Run>),
    ConfirmingRecord {
        run: Box<Run>,
        error: BackendError,
    },
    PublishingLocation {
        run: Box<Run>,
        record: LocationRecord,
    },
    Verifying(Box<Run>),
    AwaitingDirectory {
        run: Box<Run>,
        watch: directory::Watch,
    },
    DirectoryPause {
        run: Box<Run>,
        watch: directory::Watch,
        until: Duration,
        progress: Progress,
    },
    UndoingPromotion {
        run: Box<Run>,
        cause: Cause,
    },
    UndoingFence {
        run: Box<Run>,
        cause: Cause,
    },
    ConfirmingUndo {
        run: Box<Run>,
        cause: Cause,
    },
    ReleasingLocks {
        locks: Vec<InstanceAddr>,
        outcome: Outcome,
    },
    Done(Outcome),
    AwaitingBackupService {
        run: Box<Run>,
        deadline: Duration,
    },
    BackupServicePause {
        run: Box<Run>,
        deadline: Duration,
        until: Duration,
        progress: Progress,
    },
    AwaitingPrincipal {
        run: Box<Run>,
        wait: switch::Wait,
    },
    PrincipalPause {
        run: Box<Run>,
        wait: switch::Wait,
        until: Duration,
        progress: Progress,
    },
}

impl State {
    fn name(&self) -> StateName {
        match self {
            State::Preflight(_) => S::Preflight,
            State::RepublishingRecord(_) => S::RepublishingRecord,
            State::AwaitingReplication { .. } => S::AwaitingReplication,
            State::ReplicationPause { .. } => S::ReplicationPause,
            State::Fencing(_) => S::Fencing,
            State::ProbingFence { .. } => S::ProbingFence,
            State::ReadingPositions(_) => S::ReadingPositions,
            State::AwaitingCatchUp { .. } => S::AwaitingCatchUp,
            State::CatchUpPause { .. } => S::CatchUpPause,
            State::ForcingMirror { .. } => S::ForcingMirror,
            State::Recovering(_) => S::Recovering,
            State::OpeningTarget(_) => S::OpeningTarget,
            State::RepointingMirror { .. } => S::RepointingMirror,
            State::RecordingLocation(_) => S::RecordingLocation,
            State::ConfirmingRecord { .. } => S::ConfirmingRecord,
            State::PublishingLocation { .. } => S::PublishingLocation,
            State::Verifying(_) => S::Verifying,
            State::AwaitingDirectory { .. } => S::AwaitingDirectory,
            State::DirectoryPause { .. } => S::DirectoryPause,
            State::UndoingPromotion { .. } => S::UndoingPromotion,
            State::UndoingFence { .. } => S::UndoingFence,
            State::ConfirmingUndo { .. } => S::ConfirmingUndo,
            State::ReleasingLocks { .. } => S::ReleasingLocks,
            State::Done(_) => S::Done,
            State::AwaitingBackupService { .. } => S::AwaitingBackupService,
            State::BackupServicePause { .. } => S::BackupServicePause,
            State::AwaitingPrincipal { .. } => S::AwaitingPrincipal,
            State::PrincipalPause { .. } => S::PrincipalPause,
        }
    }
}

type Results = Vec<Result<OpResult, BackendError>>;

/// What every phase shares: the request, the findings, the cancellation flag.
#[derive(Debug)]
struct Ctx {
    req: FailoverRequest,
    f: Findings,
    cancel: bool,
    /// The highest epoch the journal saw (a new epoch exceeds it).
    epoch_floor: u64,
    /// What-if: the first replication sample, taken one poll before the second.
    what_if_sample: Option<Vec<DatabasePosition>>,
    last_ops: Arc<[Op]>,
    history: Vec<StateName>,
    /// The directory the run commits to.
    dir: DirectoryInfo,
}

impl Ctx {
    fn dbs(&self) -> &[DatabaseName] {
        &self.req.topology.databases
    }

    /// A probe of the CMS databases on each of `instances`.
    fn probes<'a>(&self, instances: impl IntoIterator<Item = &'a InstanceAddr>) -> Vec<Op> {
        instances
            .into_iter()
            .map(|i| Op::Probe {
                instance: i.clone(),
                databases: self.dbs().to_vec(),
            })
            .collect()
    }

    /// Whether this is a what-if run (see the module docs for the four places it matters).
    fn what_if(&self) -> bool {
        self.req.what_if
    }

    #[allow(clippy::too_many_arguments)]
    fn batch(
        &mut self,
        state: StateName,
        description: impl Into<Cow<'static, str>>,
        precondition: impl Into<Cow<'static, str>>,
        changes: impl Into<Cow<'static, str>>,
        ops: Vec<Op>,
        timeout: Duration,
        retry: bool,
    ) -> Action {
        let ops: Arc<[Op]> = ops.into();
        self.last_ops = ops.clone();
        Action::Execute(Batch {
            state,
            description: description.into(),
            precondition: precondition.into(),
            changes: changes.into(),
            ops,
            timeout,
            retry,
        })
    }

    /// Ends the run with `refusal`, releasing `locks` first when any are held. What-if: the
    /// refusal is also listed as a blocker.
    fn refuse(&mut self, locks: Vec<InstanceAddr>, refusal: Refusal) -> State {
        if self.what_if() && !matches!(refusal, Refusal::WouldBeBlocked { .. }) {
            self.f.blockers.push(refusal.to_string());
        }
        release(locks, refusal.into())
    }
}

/// Releases `locks` (when any are held), then ends with `outcome`.
fn release(locks: Vec<InstanceAddr>, outcome: Outcome) -> State {
    if locks.is_empty() {
        State::Done(outcome)
    } else {
        State::ReleasingLocks { locks, outcome }
    }
}

/// The first promotion step: recovery when a copy is RESTORING, else opening.
fn promote(run: Box<Run>) -> State {
    if run.plan.to_recover.is_empty() {
        State::OpeningTarget(run)
    } else {
        State::Recovering(run)
    }
}

fn errors_of(results: Results) -> Vec<BackendError> {
    results.into_iter().filter_map(Result::err).collect()
}

/// The failover state machine for one run.
#[derive(Debug)]
pub struct Machine {
    ctx: Ctx,
    state: State,
}

impl Machine {
    /// A machine for `req`, in its first state.
    pub fn new(req: FailoverRequest) -> Self {
        Self {
            ctx: Ctx {
                req,
                f: Findings::default(),
                cancel: false,
                epoch_floor: 0,
                what_if_sample: None,
                last_ops: Arc::new([]),
                history: vec![S::Preflight],
                dir: DirectoryInfo::sql_record(),
            },
            state: State::Preflight(None),
        }
    }

    /// A new epoch will exceed `epoch`, the highest one found elsewhere (the journal), even
    /// when no reachable instance holds it.
    pub fn with_epoch_floor(mut self, epoch: u64) -> Self {
        self.ctx.epoch_floor = epoch;
        self
    }

    /// Commits to the directory `info` describes (default: [`DirectoryInfo::sql_record`]).
    pub fn with_directory(mut self, info: DirectoryInfo) -> Self {
        self.ctx.dir = info;
        self
    }

    /// The request being run.
    pub fn request(&self) -> &FailoverRequest {
        &self.ctx.req
    }

    /// The current state's name.
    pub fn state(&self) -> StateName {
        self.state.name()
    }

    /// Every state entered so far, in order.
    pub fn history(&self) -> &[StateName] {
        &self.ctx.history
    }

    /// What the run found out so far.
    pub fn findings(&self) -> &Findings {
        &self.ctx.f
    }

    /// Asks the run to stop at the next safe point. Before the fence the run stops with no
    /// change; after the fence and before the commit point the fence is undone (unless the
    /// opened target refuses to be fenced again, 1468: then the failover is finished, see
    /// `undo.rs`; or while a forced mirror has not switched yet: a force cannot be undone,
    /// so the run stops needing a restore with the fence kept); after the commit point the
    /// run finishes (cancelling would leave a half-done failover).
    pub fn request_cancel(&mut self) {
        self.ctx.cancel = true;
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
    ///
    /// # Panics
    /// When `results` does not hold one result per call of the batch (a driver bug).
    pub fn on_results(&mut self, results: Results, now: Duration) -> Action {
        assert_eq!(results.len(), self.ctx.last_ops.len(), "one result per op");
        let ops = std::mem::replace(&mut self.ctx.last_ops, Arc::new([]));
        let state = std::mem::replace(&mut self.state, State::Preflight(None));
        let first_check = matches!(state, State::Preflight(None));
        let next = self.transition(state, &ops, results, now);
        // The check under the lock is a second `Preflight`: a transition of its own.
        let again = first_check && matches!(next, State::Preflight(Some(_)));
        self.go_again(next, again);
        self.enter(now)
    }

    /// Wakes the machine after an [`Action::Sleep`] (or early, after a cancellation).
    pub fn on_timer(&mut self, now: Duration) -> Action {
        let state = std::mem::replace(&mut self.state, State::Preflight(None));
        let next = match state {
            State::ReplicationPause {
                run,
                deadline,
                until,
                progress,
            } => replication::on_replication_timer(
                &mut self.ctx,
                run,
                deadline,
                until,
                progress,
                now,
            ),
            State::CatchUpPause {
                run,
                fenced,
                deadline,
                until,
                progress,
            } => replication::on_catch_up_timer(
                &self.ctx, run, fenced, deadline, until, progress, now,
            ),
            State::DirectoryPause {
                run,
                watch,
                until,
                progress,
            } => directory::on_timer(&mut self.ctx, run, watch, until, progress, now),
            State::BackupServicePause {
                run,
                deadline,
                until,
                progress,
            } => {
                replication::on_backup_service_timer(&self.ctx, run, deadline, until, progress, now)
            }
            State::PrincipalPause {
                run,
                wait,
                until,
                progress,
            } => switch::on_timer(&self.ctx, run, wait, until, progress, now),
            other => other,
        };
        self.go(next);
        self.enter(now)
    }

    /// Moves to `next`.
    ///
    /// # Panics
    /// When `TRANSITIONS` does not list the transition: a bug in the machine, caught in
    /// every build (the unit tests take every listed transition).
    fn go(&mut self, next: State) {
        self.go_again(next, false);
    }

    /// [`Machine::go`]; `again`: `next` has the current state's name but is a new entry of it
    /// (the check under the lock), recorded as a transition.
    fn go_again(&mut self, next: State, again: bool) {
        let from = *self.ctx.history.last().unwrap_or(&S::Preflight);
        let to = next.name();
        if from != to || again {
            assert!(
                is_legal(from, to),
                "transition {from} -> {to} is not in TRANSITIONS"
            );
            #[cfg(test)]
            script::taken(from, to);
            self.ctx.history.push(to);
        }
        self.state = next;
    }

    /// Produces the action for the current state (its "entry").
    fn enter(&mut self, now: Duration) -> Action {
        let ctx = &mut self.ctx;
        match &mut self.state {
            State::Preflight(locked) => preflight::enter(ctx, locked.is_none()),
            State::RepublishingRecord(run) => commit::enter_republishing(ctx, run),
            State::AwaitingReplication { run, .. } => replication::enter_awaiting(ctx, run),
            State::ReplicationPause {
                until, progress, ..
            }
            | State::CatchUpPause {
                until, progress, ..
            }
            | State::DirectoryPause {
                until, progress, ..
            }
            | State::BackupServicePause {
                until, progress, ..
            }
            | State::PrincipalPause {
                until, progress, ..
            } => Action::Sleep {
                until: *until,
                progress: progress.clone(),
            },
            State::Fencing(run) => fence::enter_fencing(ctx, run, now),
            State::ProbingFence { run, .. } => fence::enter_probing(ctx, run),
            State::ReadingPositions(run) => replication::enter_reading(ctx, run),
            State::AwaitingCatchUp { run, .. } => replication::enter_catch_up(ctx, run),
            State::ForcingMirror { mirror, .. } => promote::enter_forcing(ctx, mirror),
            State::Recovering(run) => promote::enter_recovering(ctx, run),
            State::OpeningTarget(run) => promote::enter_opening(ctx, run),
            State::RepointingMirror { run, principal } => {
                promote::enter_repointing(ctx, run, principal)
            }
            State::RecordingLocation(run) => commit::enter_recording(ctx, run),
            State::ConfirmingRecord { run, .. } => commit::enter_confirming(ctx, run),
            State::PublishingLocation { run, record } => commit::enter_publishing(ctx, run, record),
            State::Verifying(run) => verify::enter(ctx, run),
            State::AwaitingDirectory { watch, .. } => directory::enter(ctx, watch),
            State::UndoingPromotion { run, .. } => undo::enter_undoing_promotion(ctx, run),
            State::UndoingFence { run, .. } => undo::enter_undoing_fence(ctx, run),
            State::ConfirmingUndo { run, .. } => undo::enter_confirming(ctx, run),
            State::ReleasingLocks { locks, .. } => lock::enter_releasing(ctx, locks),
            State::Done(outcome) => Action::Finished(outcome.clone()),
            State::AwaitingBackupService { run, .. } => replication::enter_backup_service(ctx, run),
            State::AwaitingPrincipal { wait, .. } => switch::enter(ctx, wait),
        }
    }

    fn transition(&mut self, state: State, ops: &[Op], results: Results, now: Duration) -> State {
        let ctx = &mut self.ctx;
        match state {
            State::Preflight(locked) => preflight::on_results(ctx, locked, ops, results, now),
            State::RepublishingRecord(run) => {
                let run = commit::on_republished(ctx, run, ops, results);
                preflight::begin(ctx, run, now)
            }
            State::AwaitingReplication { run, deadline } => {
                replication::on_awaiting(ctx, run, deadline, results, now)
            }
            State::Fencing(run) => fence::on_fenced(ctx, run, results, now),
            State::ProbingFence { run, failure } => fence::on_probed(run, failure, results),
            State::ReadingPositions(run) => replication::on_reading(ctx, run, results, now),
            State::AwaitingCatchUp {
                run,
                fenced,
                deadline,
            } => replication::on_catch_up(ctx, run, fenced, deadline, results, now),
            State::ForcingMirror { run, mirror } => {
                promote::on_forced(ctx, run, mirror, results, now)
            }
            State::Recovering(run) => promote::on_recovered(ctx, run, results),
            State::OpeningTarget(run) => promote::on_opened(ctx, run, results),
            State::RepointingMirror { run, principal } => {
                promote::on_repointed(ctx, run, principal, results, now)
            }
            State::RecordingLocation(run) => commit::on_recorded(ctx, run, results, now),
            State::ConfirmingRecord { run, error } => {
                commit::on_confirmed(ctx, run, error, results, now)
            }
            State::PublishingLocation { run, .. } => {
                commit::on_published(ctx, run, ops, results, now)
            }
            State::Verifying(run) => verify::on_results(ctx, run, ops, results, now),
            State::AwaitingDirectory { run, watch } => {
                directory::on_results(ctx, run, watch, ops, results, now)
            }
            State::UndoingPromotion { run, cause } => {
                undo::on_undone_promotion(ctx, run, cause, results)
            }
            State::UndoingFence { run, cause } => undo::on_undone_fence(run, cause, results),
            State::ConfirmingUndo { run, cause } => {
                undo::on_confirmed(ctx, run, cause, ops, results)
            }
            State::ReleasingLocks { outcome, .. } => lock::on_released(ctx, outcome, ops, results),
            State::AwaitingBackupService { run, deadline } => {
                replication::on_backup_service(ctx, run, deadline, results, now)
            }
            State::AwaitingPrincipal { run, wait } => {
                switch::on_results(ctx, run, wait, ops, results, now)
            }
            s @ (State::ReplicationPause { .. }
            | State::CatchUpPause { .. }
            | State::DirectoryPause { .. }
            | State::BackupServicePause { .. }
            | State::PrincipalPause { .. }
            | State::Done(_)) => s,
        }
    }
}
