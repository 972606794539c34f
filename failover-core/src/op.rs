//! Commands the state machine asks the driver to run, and their results.

use crate::directory::{CmsLocation, SwapStamp};
use crate::error::Operation;
use crate::model::{DatabaseName, InstanceAddr};
use crate::server::{
    DatabasePosition, InstanceProbe, LocationRecord, LockAttempt, MirrorFailoverKind,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One backend call the machine wants made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// [`crate::Backend::probe`].
    Probe {
        /// Instance.
        instance: InstanceAddr,
        /// Databases.
        databases: Vec<DatabaseName>,
    },
    /// [`crate::Backend::positions`].
    Positions {
        /// Instance.
        instance: InstanceAddr,
        /// Databases.
        databases: Vec<DatabaseName>,
    },
    /// [`crate::Backend::set_read_only`].
    SetReadOnly {
        /// Instance.
        instance: InstanceAddr,
        /// Databases.
        databases: Vec<DatabaseName>,
        /// `true` fences, `false` opens for writes.
        read_only: bool,
    },
    /// [`crate::Backend::recover`].
    Recover {
        /// Instance.
        instance: InstanceAddr,
        /// Databases.
        databases: Vec<DatabaseName>,
    },
    /// [`crate::Backend::mirror_failover`].
    MirrorFailover {
        /// Instance the statement is issued on.
        instance: InstanceAddr,
        /// Databases.
        databases: Vec<DatabaseName>,
        /// Planned or forced.
        kind: MirrorFailoverKind,
        /// The partner expected to serve afterwards (used by what-if and checked after).
        expected_partner: InstanceAddr,
    },
    /// [`crate::Backend::acquire_lock`].
    AcquireLock {
        /// Instance.
        instance: InstanceAddr,
        /// Resource name.
        resource: String,
    },
    /// [`crate::Backend::release_lock`].
    ReleaseLock {
        /// Instance.
        instance: InstanceAddr,
        /// Resource name.
        resource: String,
    },
    /// [`crate::Backend::lock_held`].
    CheckLock {
        /// Instance.
        instance: InstanceAddr,
        /// Resource name.
        resource: String,
    },
    /// [`crate::Backend::read_location`].
    ReadLocation {
        /// Instance.
        instance: InstanceAddr,
    },
    /// [`crate::Backend::write_location`].
    WriteLocation {
        /// Instance.
        instance: InstanceAddr,
        /// The new record.
        record: LocationRecord,
        /// Compare-and-swap expectation.
        expected_epoch: Option<u64>,
    },
    /// [`crate::Directory::read`]: where the directory says the CMS is, on one DC.
    ReadDirectory {
        /// The domain controller (for the SQL record: the instance's address).
        dc: String,
    },
    /// [`crate::Directory::compare_and_swap_stamped`]: the commit point.
    SwapDirectory {
        /// The domain controller the change is sent to.
        dc: String,
        /// The value it must hold.
        expected: CmsLocation,
        /// The value it gets.
        new: CmsLocation,
        /// The commit's epoch and run id (kept beside the value where the directory can).
        stamp: SwapStamp,
    },
    /// [`crate::BackupServiceGate::cms_status`] (run by the driver's gate, not the backend).
    BackupServiceStatus {
        /// The source whose pool's Backup Service exports the CMS (for messages).
        instance: InstanceAddr,
    },
}

impl Op {
    /// The SQL Server instance the call goes to (`None` for a directory call).
    pub fn instance(&self) -> Option<&InstanceAddr> {
        Some(match self {
            Op::Probe { instance, .. }
            | Op::Positions { instance, .. }
            | Op::SetReadOnly { instance, .. }
            | Op::Recover { instance, .. }
            | Op::MirrorFailover { instance, .. }
            | Op::AcquireLock { instance, .. }
            | Op::ReleaseLock { instance, .. }
            | Op::CheckLock { instance, .. }
            | Op::ReadLocation { instance }
            | Op::WriteLocation { instance, .. }
            | Op::BackupServiceStatus { instance } => instance,
            Op::ReadDirectory { .. } | Op::SwapDirectory { .. } => return None,
        })
    }

    /// Where the call goes: the instance, or the domain controller.
    pub fn target(&self) -> String {
        match self {
            Op::ReadDirectory { dc } | Op::SwapDirectory { dc, .. } => dc.clone(),
            _ => self.instance().map(|i| i.to_string()).unwrap_or_default(),
        }
    }

    /// The [`Operation`] kind.
    pub fn operation(&self) -> Operation {
        match self {
            Op::Probe { .. } => Operation::Probe,
            Op::Positions { .. } => Operation::Positions,
            Op::SetReadOnly { .. } => Operation::SetReadOnly,
            Op::Recover { .. } => Operation::Recover,
            Op::MirrorFailover { .. } => Operation::MirrorFailover,
            Op::AcquireLock { .. } => Operation::AcquireLock,
            Op::ReleaseLock { .. } => Operation::ReleaseLock,
            Op::CheckLock { .. } => Operation::CheckLock,
            Op::ReadLocation { .. } => Operation::ReadLocation,
            Op::WriteLocation { .. } => Operation::WriteLocation,
            Op::ReadDirectory { .. } => Operation::ReadDirectory,
            Op::SwapDirectory { .. } => Operation::SwapDirectory,
            Op::BackupServiceStatus { .. } => Operation::BackupServiceStatus,
        }
    }

    /// Whether a what-if run may make this call: only reads that need no lock held.
    pub fn is_dry_run_safe(&self) -> bool {
        matches!(
            self,
            Op::Probe { .. }
                | Op::Positions { .. }
                | Op::ReadLocation { .. }
                | Op::ReadDirectory { .. }
                | Op::BackupServiceStatus { .. }
        )
    }

    /// Whether the call changes server state (what-if never runs these). Locks count as
    /// changes.
    pub fn is_mutating(&self) -> bool {
        !matches!(
            self,
            Op::Probe { .. }
                | Op::Positions { .. }
                | Op::ReadLocation { .. }
                | Op::CheckLock { .. }
                | Op::ReadDirectory { .. }
                | Op::BackupServiceStatus { .. }
        )
    }

    /// The result a what-if run assumes for a mutating call it does not make.
    pub fn assumed_result(&self) -> OpResult {
        match self {
            Op::MirrorFailover {
                expected_partner, ..
            } => OpResult::Partner(expected_partner.clone()),
            Op::AcquireLock { .. } => OpResult::Lock(LockAttempt::Granted),
            Op::CheckLock { .. } => OpResult::LockHeld(true),
            _ => OpResult::Done,
        }
    }
}

fn dbs(d: &[DatabaseName]) -> String {
    d.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Probe {
                instance,
                databases,
            } => write!(f, "probe {instance} ({})", dbs(databases)),
            Op::Positions {
                instance,
                databases,
            } => write!(f, "read positions on {instance} ({})", dbs(databases)),
            Op::SetReadOnly {
                instance,
                databases,
                read_only: true,
            } => {
                write!(f, "set {} READ_ONLY on {instance}", dbs(databases))
            }
            Op::SetReadOnly {
                instance,
                databases,
                read_only: false,
            } => {
                write!(f, "set {} READ_WRITE on {instance}", dbs(databases))
            }
            Op::Recover {
                instance,
                databases,
            } => write!(f, "restore {} WITH RECOVERY on {instance}", dbs(databases)),
            Op::MirrorFailover {
                instance,
                databases,
                kind,
                expected_partner,
            } => write!(
                f,
                "{} mirror failover of {} on {instance} (then served by {expected_partner})",
                match kind {
                    MirrorFailoverKind::Planned => "planned",
                    MirrorFailoverKind::Forced => "forced",
                },
                dbs(databases)
            ),
            Op::AcquireLock { instance, resource } => {
                write!(f, "take lock `{resource}` on {instance}")
            }
            Op::ReleaseLock { instance, resource } => {
                write!(f, "release lock `{resource}` on {instance}")
            }
            Op::CheckLock { instance, resource } => {
                write!(f, "check lock `{resource}` on {instance}")
            }
            Op::ReadLocation { instance } => {
                write!(f, "read the active-location record on {instance}")
            }
            Op::WriteLocation {
                instance, record, ..
            } => write!(
                f,
                "record CMS active on {} (epoch {}) on {instance}",
                record.active.principal, record.epoch
            ),
            Op::ReadDirectory { dc } => {
                write!(f, "read where the directory says the CMS is on {dc}")
            }
            Op::SwapDirectory {
                dc,
                expected,
                new,
                stamp,
            } => write!(
                f,
                "point the directory at {new} instead of {expected} (epoch {}) on {dc}",
                stamp.epoch
            ),
            Op::BackupServiceStatus { instance } => write!(
                f,
                "read the Backup Service status of {} (source {instance})",
                crate::backup_service::CMS_MODULE
            ),
        }
    }
}

/// A successful call's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "value", rename_all = "snake_case")]
pub enum OpResult {
    /// A probe.
    Probe(InstanceProbe),
    /// Positions.
    Positions(Vec<DatabasePosition>),
    /// The new serving partner after a mirror failover.
    Partner(InstanceAddr),
    /// A lock attempt.
    Lock(LockAttempt),
    /// Whether the lock is still held.
    LockHeld(bool),
    /// A location record.
    Location(Option<LocationRecord>),
    /// Where the directory says the CMS is.
    Directory(CmsLocation),
    /// A change that returns nothing.
    Done,
    /// The Backup Service's status of the CMS module.
    BackupService(crate::backup_service::ModuleStatus),
}
