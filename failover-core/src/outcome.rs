//! How a run ends, and what it learned on the way (warnings, data-loss estimate, window).
//!
//! Refusals and failures are typed: [`Refusal`] says why a run changed nothing, [`Failure`]
//! why a run that changed something failed. Each has a `Display` (the operator's text, what
//! to check and what to do) and a stable machine-readable [`Refusal::code`] /
//! [`Failure::code`] (`snake_case`, also the `code` field of their JSON form), so programs
//! and tests match variants, never wording.

use crate::backup_service::{CMS_MODULE, ExportState};
use crate::directory::CmsLocation;
use crate::error::BackendError;
use crate::model::{DatabaseName, InstanceAddr, Store};
use crate::server::{DbState, Position};
use crate::state::StateName;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Per-database lag in positions (`None`: unknown).
pub type Lag = Vec<(DatabaseName, Option<u64>)>;

/// The end of every run: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The CMS is active on `active` (for what-if: the plan is complete with no blockers).
    Succeeded {
        /// The instance that serves the CMS databases now.
        active: InstanceAddr,
        /// The recorded epoch, when one was written.
        epoch: Option<u64>,
    },
    /// A safety check refused the run before any change.
    Refused {
        /// Why, and what to do.
        refusal: Box<Refusal>,
    },
    /// A change was made, then the run failed and undid it: the source is back in service.
    RolledBack {
        /// Why the run failed.
        failure: Box<Failure>,
    },
    /// The run failed and could not put things back: run `restore`.
    NeedsRestore {
        /// Why the run failed.
        failure: Box<Failure>,
        /// Why undoing it did not work, when an undo was tried.
        undo: Option<UndoFailure>,
        /// The databases known or suspected to be left read-only, per instance.
        left_read_only: Vec<(InstanceAddr, Vec<DatabaseName>)>,
    },
    /// Cancelled by the operator; any fence was undone.
    Cancelled {
        /// Where it stopped.
        detail: String,
    },
}

impl Outcome {
    /// The documented process exit code: 0 succeeded, 3 refused, 4 rolled back, 5 needs
    /// restore, 130 cancelled (2 is bad input, decided before a run starts).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Succeeded { .. } => 0,
            Outcome::Refused { .. } => 3,
            Outcome::RolledBack { .. } => 4,
            Outcome::NeedsRestore { .. } => 5,
            Outcome::Cancelled { .. } => 130,
        }
    }

    /// A short label: `succeeded`, `refused`, `rolled_back`, `needs_restore`, `cancelled`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Refused { .. } => "refused",
            Outcome::RolledBack { .. } => "rolled_back",
            Outcome::NeedsRestore { .. } => "needs_restore",
            Outcome::Cancelled { .. } => "cancelled",
        }
    }

    /// The machine-readable reason: the refusal's or the failure's code (`None` for a
    /// success or a cancellation).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Outcome::Refused { refusal } => Some(refusal.code()),
            Outcome::RolledBack { failure } | Outcome::NeedsRestore { failure, .. } => {
                Some(failure.code())
            }
            Outcome::Succeeded { .. } | Outcome::Cancelled { .. } => None,
        }
    }

    /// The refusal, when the run was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Outcome::Refused { refusal } => Some(refusal),
            _ => None,
        }
    }

    /// The failure, when the run rolled back or needs restore.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::RolledBack { failure } | Outcome::NeedsRestore { failure, .. } => {
                Some(failure)
            }
            _ => None,
        }
    }
}

impl Outcome {
    /// Rolled back because of `failure`.
    pub fn rolled_back(failure: Failure) -> Self {
        Outcome::RolledBack {
            failure: Box::new(failure),
        }
    }

    /// Needs restore because of `failure` (and `undo`, when the undo did not work).
    pub fn needs_restore(
        failure: Failure,
        undo: Option<UndoFailure>,
        left_read_only: Vec<(InstanceAddr, Vec<DatabaseName>)>,
    ) -> Self {
        Outcome::NeedsRestore {
            failure: Box::new(failure),
            undo,
            left_read_only,
        }
    }
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Outcome::Refused {
            refusal: Box::new(refusal),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded { active, epoch } => {
                write!(f, "succeeded: the CMS is active on {active}")?;
                if let Some(e) = epoch {
                    write!(f, " (epoch {e})")?;
                }
                Ok(())
            }
            Outcome::Refused { refusal } => write!(f, "refused before any change: {refusal}"),
            Outcome::RolledBack { failure } => write!(
                f,
                "failed and rolled back (the source is in service again): {failure}"
            ),
            Outcome::NeedsRestore {
                failure,
                undo,
                left_read_only,
            } => {
                write!(f, "failed and needs restore: {failure}")?;
                if let Some(u) = undo {
                    write!(f, "; {u}")?;
                }
                for (i, dbs) in left_read_only {
                    write!(f, "; left read-only on {i}: {}", names(dbs))?;
                }
                write!(
                    f,
                    ". Run `cms-failover restore` to put the CMS back into service (after a disaster recovery whose old source is still down, run the disaster recovery again instead)"
                )
            }
            Outcome::Cancelled { detail } => write!(f, "cancelled: {detail}"),
        }
    }
}

/// Which store a check was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreRole {
    /// The topology's active store (the source of a planned failover).
    Active,
    /// The topology's backup store (the target of a planned failover).
    Backup,
    /// The store a disaster recovery promotes.
    DisasterRecoveryTarget,
    /// The store the location record names (restore).
    Recorded,
}

impl fmt::Display for StoreRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreRole::Active => "the active store",
            StoreRole::Backup => "the backup store",
            StoreRole::DisasterRecoveryTarget => "the disaster-recovery target",
            StoreRole::Recorded => "the recorded CMS store",
        })
    }
}

/// Why an instance of a store cannot serve the CMS databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ServingProblem {
    /// The probe failed.
    Unprobed {
        /// The instance.
        instance: InstanceAddr,
        /// The probe's error (`None`: it was not probed).
        error: Option<BackendError>,
    },
    /// Databases are missing.
    MissingDatabases {
        /// The instance.
        instance: InstanceAddr,
        /// The missing databases.
        databases: Vec<DatabaseName>,
    },
    /// The instance is mirror for some databases and principal for others.
    SplitRoles {
        /// The instance.
        instance: InstanceAddr,
        /// The databases it holds mirror copies of.
        mirror_for: Vec<DatabaseName>,
    },
    /// The instance holds mirror copies of every database.
    MirrorCopies {
        /// The instance.
        instance: InstanceAddr,
    },
}

impl fmt::Display for ServingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServingProblem::Unprobed {
                instance,
                error: Some(e),
            } => write!(f, "{instance} cannot be probed: {e}"),
            ServingProblem::Unprobed {
                instance,
                error: None,
            } => write!(f, "{instance} was not probed"),
            ServingProblem::MissingDatabases {
                instance,
                databases,
            } => write!(f, "{instance} has no database {}", names(databases)),
            ServingProblem::SplitRoles {
                instance,
                mirror_for,
            } => write!(
                f,
                "{instance} is mirror for {} but principal for the others (split roles: fail the mirror sessions over to one partner first)",
                names(mirror_for)
            ),
            ServingProblem::MirrorCopies { instance } => {
                write!(f, "{instance} holds mirror copies")
            }
        }
    }
}

/// Why a run changed nothing. `Display` is the operator's text; [`Refusal::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// The journal holds a run that did not finish.
    UnfinishedRun {
        /// Its id.
        run_id: String,
        /// Its mode (`planned`, `disaster-recovery`, `restore`).
        mode: String,
        /// The last step it started.
        last_state: Option<StateName>,
        /// The mode that settles it (`restore`, or `disaster-recovery` run again).
        settle_with: String,
    },
    /// The journal cannot be read.
    JournalUnreadable {
        /// The error.
        error: String,
    },
    /// The journal cannot be written, so no change may be made.
    JournalUnwritable {
        /// The error.
        error: String,
    },
    /// A location record could not be read on a reachable instance.
    LocationUnreadable {
        /// The read errors.
        errors: Vec<BackendError>,
    },
    /// Different stores hold location records that no rule can order.
    RecordTie {
        /// The epoch they share.
        epoch: u64,
        /// The stores they name.
        stores: Vec<Store>,
    },
    /// Planned: the CMS is already recorded active on the backup store.
    AlreadyOnBackup {
        /// The backup store.
        backup: Store,
        /// The recorded epoch.
        epoch: u64,
    },
    /// Planned: the record names another store than the topology's active store.
    RecordedElsewhere {
        /// The store the record names.
        recorded: Store,
        /// Its epoch.
        epoch: u64,
        /// The topology's active store.
        expected: Store,
    },
    /// Restore: the record names a store outside the topology.
    RecordedOutsideTopology {
        /// The store the record names.
        recorded: Store,
        /// Its epoch.
        epoch: u64,
    },
    /// No partner of a store can serve the CMS databases.
    StoreUnusable {
        /// Which store.
        role: StoreRole,
        /// The store.
        store: Store,
        /// What is wrong with each partner.
        problems: Vec<ServingProblem>,
    },
    /// Planned: a source database is not ONLINE.
    SourceNotOnline {
        /// The source instance.
        instance: InstanceAddr,
        /// The database.
        database: DatabaseName,
        /// Its state.
        state: DbState,
    },
    /// Planned: a source database is already read-only (an interrupted run?).
    SourceReadOnly {
        /// The source instance.
        instance: InstanceAddr,
        /// The database.
        database: DatabaseName,
    },
    /// A server reports a mirroring partner by a server name (computer\instance) that
    /// the backend cannot map to an instance of the topology.
    MirrorPartnerUnmapped {
        /// The instance that reported it.
        instance: InstanceAddr,
        /// The mirrored database.
        database: DatabaseName,
        /// `mirroring_partner_instance`, verbatim.
        name: String,
    },
    /// Disaster recovery: the mirror to be forced reports a witness that is not connected
    /// to it, so `FORCE_SERVICE_ALLOW_DATA_LOSS` would fail with 1455 (forcing needs
    /// "WITNESS is set to OFF or is connected to the mirror server").
    WitnessDisconnected {
        /// The mirror that would be forced.
        instance: InstanceAddr,
        /// The databases whose witness is DISCONNECTED there.
        databases: Vec<DatabaseName>,
        /// `mirroring_witness_name`, verbatim.
        witness: String,
    },
    /// Planned: the target already has writable copies.
    TargetWritable {
        /// The target instance.
        instance: InstanceAddr,
        /// The writable databases.
        databases: Vec<DatabaseName>,
    },
    /// Disaster recovery: the old source answered with an error, so it may be up.
    OldSourceAnswers {
        /// The instance.
        instance: InstanceAddr,
        /// Its error.
        error: BackendError,
    },
    /// Restore: a copy outside the recorded store cannot be checked.
    CannotCheckOtherCopy {
        /// Why it cannot be checked.
        problem: ServingProblem,
    },
    /// The serving instances changed between the first check and the check under the lock.
    ServingChanged {
        /// Before the lock.
        before: Vec<InstanceAddr>,
        /// Under the lock.
        after: Vec<InstanceAddr>,
    },
    /// Another run holds the failover lock.
    LockHeld {
        /// The lock resource.
        resource: String,
        /// Where it is held.
        holders: Vec<InstanceAddr>,
    },
    /// The lock could not be taken.
    LockFailed {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// The lock was lost before the fence.
    LockLost {
        /// Where it was lost.
        instances: Vec<InstanceAddr>,
    },
    /// Planned: replication positions could not be read.
    PositionsUnreadable {
        /// The error.
        error: BackendError,
    },
    /// Planned: replication did not catch up in time; the source was not fenced.
    ReplicationTimeout {
        /// The replication timeout.
        timeout: Duration,
        /// The lag at the deadline.
        lag: Lag,
    },
    /// A call returned a result of the wrong kind (a backend bug).
    UnexpectedResult {
        /// The step.
        state: StateName,
    },
    /// Where the directory says the CMS is could not be read on the DC changes go to.
    DirectoryUnreadable {
        /// The read's error.
        error: BackendError,
    },
    /// The directory does not point at the store this run expects (as the cmdlet's "The
    /// Central Management Store database in Active Directory doesn't match the one in the
    /// topology").
    DirectoryMismatch {
        /// What the directory holds.
        directory: CmsLocation,
        /// The stores it may point at for this run (planned: the topology's active store).
        expected: Vec<Store>,
    },
    /// What-if: the run would be blocked.
    WouldBeBlocked {
        /// What would block it.
        blockers: Vec<String>,
    },
    /// Planned, Backup Service gate: the status command failed, hung or printed garbage.
    BackupServiceUnreadable {
        /// The error; its message ends with the command's standard error.
        error: BackendError,
    },
    /// Planned, Backup Service gate: the CMS module's state means waiting cannot help.
    BackupServiceBlocked {
        /// The export state (`NotInitialized`, `ErrorState`).
        state: ExportState,
        /// What it means and what to do.
        reason: String,
    },
    /// The login may not run every step this run needs on some instance (read by the
    /// probe); nothing was changed. Each entry names the instance, the step, what is
    /// missing and the statement that grants it.
    InsufficientPermissions {
        /// What is missing, per instance and step.
        missing: Vec<MissingRight>,
    },
    /// Planned, Backup Service gate: a backlog did not clear in time; nothing was fenced.
    BackupServiceTimeout {
        /// The replication timeout.
        timeout: Duration,
        /// The last export state seen.
        state: ExportState,
    },
    /// Planned / disaster recovery: SQL Server refused the fence (`SET READ_ONLY`) with 1468
    /// because the source's databases are in a database mirroring session, and the probe
    /// that followed found nothing fenced. The fence is the run's first change, so nothing
    /// was changed.
    ///
    /// 1468 names "a database mirroring session or an availability group"; when the probe
    /// shows the databases in no mirroring session (`availability_group`), the refusal says
    /// the availability group and its way out instead.
    FenceRefusedInMirroringSession {
        /// The fence's errors (at least one is 1468).
        errors: Vec<BackendError>,
        /// The probe after the fence showed no mirroring session: an availability group.
        #[serde(default)]
        availability_group: bool,
    },
}

impl Refusal {
    /// The stable machine-readable code (the `code` field of the JSON form).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnfinishedRun { .. } => "unfinished_run",
            Refusal::JournalUnreadable { .. } => "journal_unreadable",
            Refusal::JournalUnwritable { .. } => "journal_unwritable",
            Refusal::LocationUnreadable { .. } => "location_unreadable",
            Refusal::RecordTie { .. } => "record_tie",
            Refusal::AlreadyOnBackup { .. } => "already_on_backup",
            Refusal::RecordedElsewhere { .. } => "recorded_elsewhere",
            Refusal::RecordedOutsideTopology { .. } => "recorded_outside_topology",
            Refusal::StoreUnusable { .. } => "store_unusable",
            Refusal::SourceNotOnline { .. } => "source_not_online",
            Refusal::SourceReadOnly { .. } => "source_read_only",
            Refusal::TargetWritable { .. } => "target_writable",
            Refusal::MirrorPartnerUnmapped { .. } => "mirror_partner_unmapped",
            Refusal::WitnessDisconnected { .. } => "witness_disconnected",
            Refusal::OldSourceAnswers { .. } => "old_source_answers",
            Refusal::CannotCheckOtherCopy { .. } => "cannot_check_other_copy",
            Refusal::ServingChanged { .. } => "serving_changed",
            Refusal::LockHeld { .. } => "lock_held",
            Refusal::LockFailed { .. } => "lock_failed",
            Refusal::LockLost { .. } => "lock_lost",
            Refusal::PositionsUnreadable { .. } => "positions_unreadable",
            Refusal::ReplicationTimeout { .. } => "replication_timeout",
            Refusal::UnexpectedResult { .. } => "unexpected_result",
            Refusal::WouldBeBlocked { .. } => "would_be_blocked",
            Refusal::DirectoryUnreadable { .. } => "directory_unreadable",
            Refusal::DirectoryMismatch { .. } => "directory_mismatch",
            Refusal::BackupServiceUnreadable { .. } => "backup_service_unreadable",
            Refusal::BackupServiceBlocked { .. } => "backup_service_blocked",
            Refusal::BackupServiceTimeout { .. } => "backup_service_timeout",
            Refusal::InsufficientPermissions { .. } => "insufficient_permissions",
            Refusal::FenceRefusedInMirroringSession { .. } => "fence_refused_in_mirroring_session",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnfinishedRun {
                run_id,
                mode,
                last_state,
                settle_with,
            } => write!(
                f,
                "an earlier {mode} run ({run_id}) did not finish (last step {}); if it is no longer running, {}",
                last_state.map(|s| s.as_str()).unwrap_or("none"),
                if settle_with == "restore" {
                    "run `cms-failover restore` first"
                } else {
                    "run the same disaster recovery again first (or `cms-failover restore`)"
                }
            ),
            Refusal::JournalUnreadable { error } => write!(f, "cannot read the journal: {error}"),
            Refusal::JournalUnwritable { error } => {
                write!(f, "cannot write the journal: {error}")
            }
            Refusal::LocationUnreadable { errors } => write!(
                f,
                "cannot read the active-location record ({}); without it the current CMS location is unknown. Fix access, then run again",
                join(errors)
            ),
            Refusal::RecordTie { epoch, stores } => write!(
                f,
                "location records name different stores ({}) at the same epoch {epoch} and nothing recorded orders them; check which store holds the newest CMS data (`cms-failover status`), fence the other by hand, then run again",
                join(stores)
            ),
            Refusal::AlreadyOnBackup { backup, epoch } => write!(
                f,
                "the CMS is already recorded active on the backup store {backup} (epoch {epoch}); nothing to fail over"
            ),
            Refusal::RecordedElsewhere {
                recorded,
                epoch,
                expected,
            } => write!(
                f,
                "the CMS is recorded active on {recorded} (epoch {epoch}), not on the topology's active store {expected}; update the topology file"
            ),
            Refusal::RecordedOutsideTopology { recorded, epoch } => write!(
                f,
                "the CMS is recorded active on {recorded} (epoch {epoch}), which is not in the topology; update the topology file"
            ),
            Refusal::StoreUnusable {
                role,
                store,
                problems,
            } => {
                let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                match role {
                    StoreRole::Recorded => {
                        write!(f, "{role} {store} cannot be used: {}", problems.join("; "))
                    }
                    _ => write!(f, "{role} cannot be used: {}", problems.join("; ")),
                }
            }
            Refusal::SourceNotOnline {
                instance,
                database,
                state,
            } => write!(
                f,
                "{database} on the source {instance} is {state}, not ONLINE"
            ),
            Refusal::SourceReadOnly { instance, database } => write!(
                f,
                "{database} on the source {instance} is already READ_ONLY: an earlier failover may have been interrupted; run `cms-failover restore` first"
            ),
            Refusal::TargetWritable {
                instance,
                databases,
            } => write!(
                f,
                "{} already writable on the target {instance}: the target is already active (two writable copies!); run `cms-failover status` and `cms-failover restore`",
                names(databases)
            ),
            Refusal::MirrorPartnerUnmapped {
                instance,
                database,
                name,
            } => write!(
                f,
                "{instance} reports the mirroring partner of {database} as `{name}` (the server name: computer and instance, no domain, no port), which maps to no instance of the topology; add `\"{name}\" = \"<host>\\\\<instance>\"` to the topology file's [aliases] table (or fix the topology's addresses), then run again. A disaster-recovery target given on the command line is matched by the host's first DNS label and the instance name only (aliases name instances of the file): give its instances by DNS names whose first label is the computer name the server reports (SELECT @@SERVERNAME), or put that store in the topology file with an alias"
            ),
            Refusal::WitnessDisconnected {
                instance,
                databases,
                witness,
            } => write!(
                f,
                "the mirror {instance} cannot be forced to serve {}: its witness `{witness}` is DISCONNECTED from it, and SQL Server forces service only when \"WITNESS is set to OFF or is connected to the mirror server\" (error 1455). Nothing was changed. Either bring the witness back until the mirror shows it CONNECTED, or remove it with `ALTER DATABASE [<db>] SET WITNESS OFF` (Microsoft documents it may be issued on either partner: here on {instance}, since the principal is down), then run again",
                names(databases)
            ),
            Refusal::OldSourceAnswers { instance, error } => write!(
                f,
                "cannot tell whether the old source is down: {instance} answered with an error ({error}); fix access to it, or make sure it is down, then run again"
            ),
            Refusal::CannotCheckOtherCopy { problem } => write!(
                f,
                "cannot verify that no other copy is writable: {problem}. Bring it back (or fence it by hand), then run restore again"
            ),
            Refusal::ServingChanged { before, after } => write!(
                f,
                "the serving instances changed while the lock was taken (was {}, now {}); run again",
                join(before),
                join(after)
            ),
            Refusal::LockHeld { resource, holders } => write!(
                f,
                "another failover or restore holds the lock `{resource}` on {}; wait for it to finish (check `cms-failover status`)",
                join(holders)
            ),
            Refusal::LockFailed { errors } => {
                write!(f, "could not take the failover lock: {}", join(errors))
            }
            Refusal::LockLost { instances } => write!(
                f,
                "the failover lock was lost on {} (connection dropped); nothing was changed",
                join(instances)
            ),
            Refusal::PositionsUnreadable { error } => {
                write!(f, "cannot read replication positions: {error}")
            }
            Refusal::ReplicationTimeout { timeout, lag } => write!(
                f,
                "replication did not catch up within {timeout:?} ({}); the source was not fenced. Check the backup service / replication link, then try again or raise the replication timeout",
                describe_lag(lag)
            ),
            Refusal::UnexpectedResult { state } => {
                write!(f, "unexpected result in step {state} (a backend bug)")
            }
            Refusal::DirectoryUnreadable { error } => write!(
                f,
                "cannot read where the directory says the CMS is: {error}; nothing was changed"
            ),
            Refusal::DirectoryMismatch {
                directory,
                expected,
            } => write!(
                f,
                "the Central Management Store in the directory ({directory}) doesn't match the one in the topology ({}); check the topology file, or wait for directory replication, then run again",
                expected
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Refusal::WouldBeBlocked { blockers } => write!(
                f,
                "what-if: the run would be blocked: {}",
                blockers.join("; ")
            ),
            Refusal::BackupServiceUnreadable { error } => write!(
                f,
                "cannot read the Backup Service status ({}); the source was not fenced. Run the [backup_service] command by hand to see why, fix it, then run again",
                error.message
            ),
            Refusal::BackupServiceBlocked { reason, .. } => {
                write!(f, "{reason}; the source was not fenced")
            }
            Refusal::InsufficientPermissions { missing } => write!(
                f,
                "the login may not run every step of this run; nothing was changed. {}. Grant what is missing, then run again",
                missing
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Refusal::BackupServiceTimeout { timeout, state } => write!(
                f,
                "the Backup Service still reported {CMS_MODULE} ExportStatus {state} (a backlog) after {timeout:?}; the source was not fenced. Force a sync with Invoke-CsBackupServiceSync -BackupModule {CMS_MODULE}, then try again or raise the replication timeout"
            ),
            Refusal::FenceRefusedInMirroringSession {
                errors,
                availability_group: false,
            } => write!(
                f,
                "SQL Server refused to fence the source: SET READ_ONLY failed with error 1468 because its databases are in a database mirroring session ({}); nothing was changed. {}",
                join(errors),
                mirroring_fence_help("run the failover again", true)
            ),
            Refusal::FenceRefusedInMirroringSession {
                errors,
                availability_group: true,
            } => write!(
                f,
                "SQL Server refused to fence the source: SET READ_ONLY failed with error 1468 and its databases are in no database mirroring session, so they are in an availability group ({}); nothing was changed. {AG_FENCE_HELP}",
                join(errors),
            ),
        }
    }
}

/// What the operator can do when SQL Server refuses `SET READ_ONLY` with 1468 on a database
/// in an availability group. A read-only database cannot be added to an availability group
/// (<https://learn.microsoft.com/en-us/sql/database-engine/availability-groups/windows/prereqs-restrictions-recommendations-always-on-availability>,
/// "Availability database prerequisites"); that the fence on a member database is refused
/// the same way is an inference from 1468's text ("involved in a database mirroring session
/// or an availability group"). Removing the database from the group is the operator's
/// decision (the secondary copies stop receiving log), not the tool's.
const AG_FENCE_HELP: &str = "Take the CMS databases out of the availability group first (on the primary replica, for each CMS database: `ALTER AVAILABILITY GROUP [<ag>] REMOVE DATABASE [<db>];`; the secondary copies stop receiving log; add them back afterwards), then run the failover again; or, if that store is to be given up, shut its instances down and run a disaster recovery (`--force`; changes not yet copied may be lost)";

/// What the operator can do when SQL Server refuses `SET READ_ONLY` with 1468 on a mirroring
/// principal (see `docs/recovery.md`, "The fence refused on a mirroring principal"). No
/// fence SQL Server documents works there instead: pausing the session (`SET PARTNER
/// SUSPEND`) leaves the principal available
/// (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/pausing-and-resuming-database-mirroring-sql-server>);
/// removing it (`SET PARTNER OFF`) leaves each partner its own copy, the mirror RESTORING
/// (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/removing-database-mirroring-sql-server>),
/// an operator's decision, not the tool's.
///
/// `dr_alternative`: also offer giving the store up (planned and disaster recovery; a restore
/// must fence it, not leave it).
fn mirroring_fence_help(then: &str, dr_alternative: bool) -> String {
    let base = format!(
        "Pausing mirroring (SET PARTNER SUSPEND) is no fence: the principal stays writable. Remove mirroring from that store first (on its principal, for each CMS database: `ALTER DATABASE [<db>] SET PARTNER OFF;`; its mirror copy stays RESTORING; set mirroring up again afterwards), then {then}"
    );
    if !dr_alternative {
        base
    } else {
        base + "; or, if that store is to be given up, shut its instances down and run a disaster recovery (`--force`; changes not yet copied may be lost)"
    }
}

/// A right the login lacks on one instance for one step ([`Refusal::InsufficientPermissions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRight {
    /// Where.
    pub instance: InstanceAddr,
    /// The login as the server names it (`SUSER_SNAME()`).
    pub login: String,
    /// The step that needs it (`fence`, `recover`, `open`, `partner_failover`,
    /// `force_service`, `record_location`, `read_mirroring`).
    pub step: String,
    /// The databases concerned (empty for a server-wide right).
    pub databases: Vec<DatabaseName>,
    /// What is missing, in SQL Server's words (`ALTER on the database`, …).
    pub needs: String,
    /// The statement(s) that grant it.
    pub fix: String,
}

impl fmt::Display for MissingRight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "on {} the login {} cannot {}",
            self.instance, self.login, self.step
        )?;
        if !self.databases.is_empty() {
            write!(f, " ({})", names(&self.databases))?;
        }
        write!(f, ": it needs {} (fix: {})", self.needs, self.fix)
    }
}

/// Why a run that changed something failed (the reason of [`Outcome::RolledBack`] and
/// [`Outcome::NeedsRestore`]). `Display` is the operator's text; [`Failure::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Failure {
    /// Planned: fencing the source failed.
    FenceFailed {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// Disaster recovery: the old source is reachable and refused the fence.
    OldSourceRefusedFence {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// The source's positions after the fence could not be read.
    FencedPositionsUnreadable {
        /// The error (`None`: nothing was returned).
        error: Option<BackendError>,
    },
    /// The backup's positions could not be read while it caught up.
    BackupPositionsUnreadable {
        /// The error (`None`: a result of the wrong kind).
        error: Option<BackendError>,
    },
    /// The backup did not reach the fenced positions in time.
    CatchUpTimeout {
        /// The catch-up timeout.
        timeout: Duration,
        /// The lag at the deadline.
        lag: Lag,
    },
    /// Forcing service on the backup's mirror failed.
    ForceFailed {
        /// The error (`None`: a result of the wrong kind).
        error: Option<BackendError>,
    },
    /// `RESTORE … WITH RECOVERY` on the target failed.
    RecoveryFailed {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// Making the target read-write failed.
    OpenFailed {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// Pointing the directory at the target (the commit point) failed, and reading it back
    /// shows the new value is not there.
    RecordFailed {
        /// The swap's error (a conflict: someone else changed the directory).
        error: BackendError,
        /// The read-back's error (`None`: read back, and it is not the new value).
        read_back: Option<BackendError>,
        /// The value read back, when it could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        found: Option<Box<CmsLocation>>,
    },
    /// Restore: the copies outside the recorded store could not be fenced.
    OthersNotFenced {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// The verification of the end state found problems.
    EndStateWrong {
        /// The problems.
        problems: Vec<String>,
    },
    /// The operator cancelled; the undo that followed did not work.
    Cancelled {
        /// Where it was cancelled.
        detail: String,
    },
    /// After the fence, the Backup Service status could not be read (failed, hung, garbage).
    BackupServiceUnreadable {
        /// The error; its message ends with the command's standard error.
        error: BackendError,
    },
    /// After the fence, the CMS module reported a state waiting cannot help.
    BackupServiceBlocked {
        /// The export state (`NotInitialized`, `ErrorState`).
        state: ExportState,
        /// What it means and what to do.
        reason: String,
    },
    /// Planned: `SET PARTNER FAILOVER` (giving the principal role back to the target store's
    /// designated principal) did not end with that principal serving in time. SQL Server
    /// accepts the statement before the roles switch and may finish or fail the switch later.
    MirrorSwitchTimeout {
        /// The instance that should have become principal.
        principal: InstanceAddr,
        /// The partner the statement was issued on (it served the target store before).
        partner: InstanceAddr,
        /// The mirror switch timeout.
        timeout: Duration,
        /// What the last probes showed.
        seen: String,
    },
    /// Disaster recovery: `FORCE_SERVICE_ALLOW_DATA_LOSS` was issued on the backup's mirror
    /// (or its answer was lost), but the mirror did not report every CMS database PRINCIPAL
    /// and ONLINE in time (or the run was cancelled first). SQL Server accepts the statement
    /// before the roles switch and may finish or fail the switch later; a force cannot be
    /// undone and a copy that is not PRINCIPAL cannot be fenced, so the run stopped with the
    /// old source's fence kept (needs restore).
    ForcedSwitchIncomplete {
        /// The forced mirror.
        mirror: InstanceAddr,
        /// The mirror switch timeout.
        timeout: Duration,
        /// The statement's error, when its answer was lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<BackendError>,
        /// Cancelled by the operator before the switch landed.
        #[serde(default)]
        cancelled: bool,
        /// What the last probe showed.
        seen: String,
    },
    /// Disaster recovery: `FORCE_SERVICE_ALLOW_DATA_LOSS` was refused for some CMS
    /// databases (`error`, typically 1455: the witness lost the mirror) while others already
    /// serve as principal on the mirror (forced by the same batch, or taken over). A force
    /// cannot be undone and the databases must not stay split across stores, so the run
    /// stopped with the old source's fence kept (needs restore).
    ForcePartlyRefused {
        /// The mirror forced.
        mirror: InstanceAddr,
        /// The refusal.
        error: BackendError,
        /// What the probe after the refusal showed.
        seen: String,
    },
    /// After the fence, the Backup Service did not reach `FinalState` in time.
    BackupServiceTimeout {
        /// The final-state timeout.
        timeout: Duration,
        /// The last export state seen.
        state: ExportState,
    },
}

impl Failure {
    /// The stable machine-readable code (the `code` field of the JSON form).
    pub fn code(&self) -> &'static str {
        match self {
            Failure::FenceFailed { .. } => "fence_failed",
            Failure::OldSourceRefusedFence { .. } => "old_source_refused_fence",
            Failure::FencedPositionsUnreadable { .. } => "fenced_positions_unreadable",
            Failure::BackupPositionsUnreadable { .. } => "backup_positions_unreadable",
            Failure::CatchUpTimeout { .. } => "catch_up_timeout",
            Failure::ForceFailed { .. } => "force_failed",
            Failure::RecoveryFailed { .. } => "recovery_failed",
            Failure::OpenFailed { .. } => "open_failed",
            Failure::RecordFailed { .. } => "record_failed",
            Failure::OthersNotFenced { .. } => "others_not_fenced",
            Failure::EndStateWrong { .. } => "end_state_wrong",
            Failure::Cancelled { .. } => "cancelled",
            Failure::BackupServiceUnreadable { .. } => "backup_service_unreadable",
            Failure::BackupServiceBlocked { .. } => "backup_service_blocked",
            Failure::BackupServiceTimeout { .. } => "backup_service_timeout",
            Failure::MirrorSwitchTimeout { .. } => "mirror_switch_timeout",
            Failure::ForcedSwitchIncomplete { .. } => "forced_switch_incomplete",
            Failure::ForcePartlyRefused { .. } => "force_partly_refused",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::FenceFailed { errors } => {
                write!(f, "fencing the source failed: {}", join(errors))?;
                if crate::sqlerror::any_in_mirroring_session(errors) {
                    write!(
                        f,
                        ". {}",
                        mirroring_fence_help("run the failover again", true)
                    )?;
                }
                Ok(())
            }
            Failure::OldSourceRefusedFence { errors } => {
                write!(
                    f,
                    "the old source is reachable but could not be fenced ({}); ",
                    join(errors)
                )?;
                if crate::sqlerror::any_in_mirroring_session(errors) {
                    f.write_str(&mirroring_fence_help(
                        "run the disaster recovery again",
                        true,
                    ))
                } else {
                    f.write_str("fix that, or use a planned failover")
                }
            }
            Failure::FencedPositionsUnreadable { error: Some(e) } => {
                write!(f, "cannot read the fenced positions: {e}")
            }
            Failure::FencedPositionsUnreadable { error: None } => {
                write!(f, "no fenced positions returned")
            }
            Failure::BackupPositionsUnreadable { error: Some(e) } => {
                write!(f, "cannot read the backup's positions: {e}")
            }
            Failure::BackupPositionsUnreadable { error: None } => {
                write!(f, "cannot read the backup's positions: unexpected result")
            }
            Failure::CatchUpTimeout { timeout, lag } => write!(
                f,
                "the backup did not reach the fenced positions within {timeout:?} ({})",
                describe_lag(lag)
            ),
            Failure::ForceFailed { error: Some(e) } => {
                write!(f, "forcing service on the backup mirror failed: {e}")
            }
            Failure::ForceFailed { error: None } => write!(
                f,
                "forcing service on the backup mirror failed: unexpected result"
            ),
            Failure::RecoveryFailed { errors } => {
                write!(f, "bringing the target online failed: {}", join(errors))
            }
            Failure::OpenFailed { errors } => {
                write!(f, "making the target writable failed: {}", join(errors))
            }
            Failure::RecordFailed {
                error,
                read_back: None,
                found,
            } => {
                write!(f, "recording the new location failed: {error}")?;
                match found {
                    Some(v) => write!(f, "; the directory holds {v}"),
                    None => Ok(()),
                }
            }
            Failure::RecordFailed {
                error,
                read_back: Some(e),
                ..
            } => write!(
                f,
                "recording the new location failed: {error}; reading it back failed: {e}; the directory may hold the new value: run `cms-failover restore`, which follows the directory"
            ),
            Failure::OthersNotFenced { errors } => {
                write!(
                    f,
                    "could not fence the copies outside the recorded store ({}); the recorded store was left read-only so that two copies are never writable",
                    join(errors)
                )?;
                if crate::sqlerror::any_in_mirroring_session(errors) {
                    write!(
                        f,
                        ". SQL Server refuses READ_ONLY there (1468: a database mirroring session). {}",
                        mirroring_fence_help("run restore again", false)
                    )?;
                }
                Ok(())
            }
            Failure::EndStateWrong { problems } => {
                write!(f, "the end state is not right: {}", problems.join("; "))
            }
            Failure::Cancelled { detail } => write!(f, "{detail}"),
            Failure::BackupServiceUnreadable { error } => write!(
                f,
                "after the fence the Backup Service status could not be read ({})",
                error.message
            ),
            Failure::BackupServiceBlocked { reason, .. } => {
                write!(f, "after the fence: {reason}")
            }
            Failure::MirrorSwitchTimeout {
                principal,
                partner,
                timeout,
                seen,
            } => write!(
                f,
                "SET PARTNER FAILOVER on {partner} was accepted, but {principal} did not become the serving principal (PRINCIPAL and ONLINE) within {timeout:?} (last seen: {seen}). SQL Server accepts the statement before the roles switch and may still finish or fail the switch; the undo fences the serving partner again, so that whichever partner ends up PRINCIPAL stays read-only (the outcome says whether that worked). Check `SELECT DB_NAME(database_id), mirroring_role_desc, mirroring_state_desc FROM sys.database_mirroring` on both partners; raise the mirror switch timeout (the CLI's `[timeouts] mirror_switch`) if role switches take longer here"
            ),
            Failure::ForcePartlyRefused {
                mirror,
                error,
                seen,
            } => write!(
                f,
                "FORCE_SERVICE_ALLOW_DATA_LOSS on {mirror} was refused for some CMS databases ({error}) while others already serve as principal there ({seen}). A forced service cannot be undone and the CMS databases must not be split across stores, so the run stopped: nothing was opened and the old source's fence, if it was reachable, was kept. Check `SELECT DB_NAME(database_id), mirroring_role_desc, mirroring_witness_state_desc FROM sys.database_mirroring` on {mirror}; for each database still MIRROR, bring its witness back or run `ALTER DATABASE [<db>] SET WITNESS OFF` on {mirror}, then run the disaster recovery again: it forces the rest and promotes the store"
            ),
            Failure::ForcedSwitchIncomplete {
                mirror,
                timeout,
                error,
                cancelled,
                seen,
            } => {
                match error {
                    None => write!(f, "FORCE_SERVICE_ALLOW_DATA_LOSS on {mirror} was accepted")?,
                    Some(e) => write!(
                        f,
                        "FORCE_SERVICE_ALLOW_DATA_LOSS on {mirror} got no certain answer ({e})"
                    )?,
                }
                if *cancelled {
                    write!(
                        f,
                        ", and the run was cancelled before {mirror} reported every CMS database PRINCIPAL and ONLINE"
                    )?;
                } else {
                    write!(
                        f,
                        ", but {mirror} did not report every CMS database PRINCIPAL and ONLINE within {timeout:?}"
                    )?;
                }
                write!(
                    f,
                    " (last seen: {seen}). SQL Server accepts the statement before the roles switch and may still finish the switch (the copy then serves, without the log its old principal had not sent) or fail it. A forced service cannot be undone and a copy that is not PRINCIPAL yet cannot be fenced, so the run stopped there: the copy was not opened and the old source's fence, if it was reachable, was kept, so that two copies are never writable. Check `SELECT DB_NAME(database_id), mirroring_role_desc, mirroring_state_desc FROM sys.database_mirroring` on {mirror}: once it shows PRINCIPAL, run the disaster recovery again (it goes on from the forced copy); while it shows MIRROR with its principal down, running the disaster recovery again forces it again; raise the mirror switch timeout (the CLI's `[timeouts] mirror_switch`) if forced switches take longer here"
                )
            }
            Failure::BackupServiceTimeout { timeout, state } => write!(
                f,
                "after the fence the Backup Service did not report {CMS_MODULE} ExportStatus FinalState within {timeout:?} (last: {state}); force a sync with Invoke-CsBackupServiceSync -BackupModule {CMS_MODULE} or raise [backup_service] final_state_timeout"
            ),
        }
    }
}

/// Why undoing a failed run did not put the source back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum UndoFailure {
    /// The target could not be fenced again, so the source's fence was kept.
    TargetNotRefenced {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// The source's fence could not be undone.
    FenceNotUndone {
        /// The errors.
        errors: Vec<BackendError>,
    },
    /// The undo ran but the source could not be confirmed read-write.
    NotConfirmed,
}

impl UndoFailure {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            UndoFailure::TargetNotRefenced { .. } => "target_not_refenced",
            UndoFailure::FenceNotUndone { .. } => "fence_not_undone",
            UndoFailure::NotConfirmed => "not_confirmed",
        }
    }
}

impl fmt::Display for UndoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UndoFailure::TargetNotRefenced { errors } => {
                write!(
                    f,
                    "the target could not be fenced again ({}), so the source was left read-only to avoid two writable copies",
                    join(errors)
                )?;
                if crate::sqlerror::any_in_mirroring_session(errors) {
                    let target = errors.first().map_or("", |e| e.instance.as_str());
                    write!(
                        f,
                        ". SQL Server refuses READ_ONLY on {target} (1468: a database mirroring session), so {target} stays writable: it is the one writable copy. {}",
                        mirroring_fence_help(
                            &format!(
                                "run `cms-failover restore`, which fences {target} and puts the CMS back on the store the directory names (until then restore opens nothing)"
                            ),
                            false
                        )
                    )?;
                }
                Ok(())
            }
            UndoFailure::FenceNotUndone { errors } => {
                write!(f, "undoing the fence failed: {}", join(errors))
            }
            UndoFailure::NotConfirmed => write!(f, "the undo could not be confirmed"),
        }
    }
}

/// `a, b, c` for database names.
pub(crate) fn names(d: &[DatabaseName]) -> String {
    d.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `xds behind by 3, lis position unknown`.
pub fn describe_lag(lag: &[(DatabaseName, Option<u64>)]) -> String {
    lag.iter()
        .map(|(d, l)| match l {
            Some(l) => format!("{d} behind by {l}"),
            None => format!("{d} position unknown"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per-database data-loss estimate of a disaster recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLossEstimate {
    /// The database.
    pub database: DatabaseName,
    /// The last position seen on the source (`None`: never seen, source unreachable).
    pub source_position: Option<Position>,
    /// The target's position when it was read before promotion.
    pub target_position: Option<Position>,
    /// `source - target` changes that may be lost (an upper bound), or `None` for unknown.
    pub changes_at_risk: Option<u64>,
}

impl fmt::Display for DataLossEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.changes_at_risk {
            Some(n) => write!(f, "{}: up to {n} change(s) may be lost", self.database),
            None => write!(
                f,
                "{}: unknown (the source's last position was never seen)",
                self.database
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Operation};

    fn err() -> BackendError {
        BackendError::new(ErrorKind::Unreachable, Operation::Probe, "a.test", "down")
    }

    /// `code()` is the serde tag, so the JSON form and the method never disagree.
    #[test]
    fn codes_are_the_json_tags() {
        let refusals = [
            Refusal::LockHeld {
                resource: "r".into(),
                holders: vec![],
            },
            Refusal::LockFailed {
                errors: vec![err()],
            },
            Refusal::WouldBeBlocked { blockers: vec![] },
            Refusal::UnexpectedResult {
                state: StateName::Fencing,
            },
        ];
        for r in refusals {
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["code"], r.code());
            let back: Refusal = serde_json::from_value(v).unwrap();
            assert_eq!(back, r);
        }
        let failures = [
            Failure::FenceFailed {
                errors: vec![err()],
            },
            Failure::EndStateWrong { problems: vec![] },
        ];
        for fl in failures {
            let v = serde_json::to_value(&fl).unwrap();
            assert_eq!(v["code"], fl.code());
        }
        let o = Outcome::NeedsRestore {
            failure: Box::new(Failure::OpenFailed {
                errors: vec![err()],
            }),
            undo: Some(UndoFailure::NotConfirmed),
            left_read_only: vec![],
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["outcome"], "needs_restore");
        assert_eq!(v["failure"]["code"], "open_failed");
        assert_eq!(v["undo"]["code"], "not_confirmed");
        assert_eq!(o.code(), Some("open_failed"));
        let back: Outcome = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
    }
}
