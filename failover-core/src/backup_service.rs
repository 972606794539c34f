//! The Backup Service gate: a second replication source besides the SQL position query.
//!
//! A backup pool's CMS copy kept by the Skype for Business Backup Service (module
//! [`CMS_MODULE`]) shares no log with its source, so no SQL position says whether it caught
//! up; `Get-CsBackupServiceStatus` does. The machine decides from the module's
//! [`ModuleStatus`] ([`ModuleStatus::before_fence`], [`ModuleStatus::after_fence`]); the
//! driver reads it through a [`BackupServiceGate`] (the `backup-service` crate runs the
//! operator's status command). The states' meaning is Microsoft's ("What does the status
//! reported by Get-CsBackupServiceStatus mean?", TechNet blog, 2012):
//!
//! | export state | meaning | before the fence | after the fence |
//! |---|---|---|---|
//! | `FinalState` | nothing left to back up, all imported | go on | go on |
//! | `SteadyState` | everything fits in one batch | go on | wait |
//! | `NonSteadyState` | a backlog is building | wait | wait |
//! | `NotInitialized` | no export yet, or not the CMS master's pool | refuse | undo the fence |
//! | `ErrorState` | export failed, pending changes unknown | refuse | undo the fence |

use crate::error::ErrorKind;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The Backup Service module that copies the Central Management Store.
pub const CMS_MODULE: &str = "CentralMgmt.CMSMaster";

/// A module's export state (`ExportStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExportState {
    /// Nothing left to back up and everything imported by the backup pool.
    FinalState,
    /// Everything available fits in one batch (no backlog).
    SteadyState,
    /// A backlog is building up.
    NonSteadyState,
    /// Not initialised (or this pool is not the CMS master).
    NotInitialized,
    /// Backing up failed; pending changes unknown.
    ErrorState,
}

/// A module's import state (`ImportStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImportState {
    /// Importing works.
    NormalState,
    /// Importing failed.
    ErrorState,
}

impl ExportState {
    /// Parses a state name, ignoring ASCII case (`FinalState`, `steadystate`…).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "finalstate" => Self::FinalState,
            "steadystate" => Self::SteadyState,
            "nonsteadystate" => Self::NonSteadyState,
            "notinitialized" => Self::NotInitialized,
            "errorstate" => Self::ErrorState,
            _ => return None,
        })
    }
}

impl ImportState {
    /// Parses a state name, ignoring ASCII case.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "normalstate" => Self::NormalState,
            "errorstate" => Self::ErrorState,
            _ => return None,
        })
    }
}

impl fmt::Display for ExportState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for ImportState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One module's states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleStatus {
    /// `Identity`, e.g. `CentralMgmt.CMSMaster`.
    pub identity: String,
    /// `ExportStatus`.
    pub export: ExportState,
    /// `ImportStatus`.
    pub import: ImportState,
}

/// Where a failover stands with respect to the Backup Service's copy of the CMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing is left to copy: go on.
    Ready,
    /// Changes are still being copied: wait and ask again.
    Copying(ExportState),
    /// Waiting cannot help: the reason, for the operator.
    Blocked(String),
}

impl ModuleStatus {
    /// The CMS module in `state`, importing normally (tests, fakes, the demo).
    pub fn cms(export: ExportState) -> Self {
        Self {
            identity: CMS_MODULE.into(),
            export,
            import: ImportState::NormalState,
        }
    }

    /// Before the fence the source still takes changes, so `FinalState` cannot be demanded:
    /// `SteadyState` (no backlog) is enough to start; a backlog is waited out.
    pub fn before_fence(&self) -> Readiness {
        match self.export {
            ExportState::FinalState | ExportState::SteadyState => Readiness::Ready,
            ExportState::NonSteadyState => Readiness::Copying(self.export),
            _ => self.blocked(),
        }
    }

    /// After the fence nothing new is written, so the copy is complete only in `FinalState`.
    pub fn after_fence(&self) -> Readiness {
        match self.export {
            ExportState::FinalState => Readiness::Ready,
            ExportState::SteadyState | ExportState::NonSteadyState => {
                Readiness::Copying(self.export)
            }
            _ => self.blocked(),
        }
    }

    fn blocked(&self) -> Readiness {
        Readiness::Blocked(match self.export {
            ExportState::NotInitialized => format!(
                "{CMS_MODULE} reports ExportStatus NotInitialized: this pool is not exporting the CMS (a pool that is not the CMS master shows this, so check that the status command queries the source pool, e.g. Get-CsBackupServiceStatus -PoolFqdn <source pool>), or the Backup Service has not made its first export yet"
            ),
            _ => format!(
                "{CMS_MODULE} reports ExportStatus ErrorState: the Backup Service failed to back up changes, so whether the standby copy is complete is unknown; check the Backup Service's event log on the source pool, force a sync with Invoke-CsBackupServiceSync -BackupModule {CMS_MODULE}, or use disaster recovery (--force) if the source is gone"
            ),
        })
    }
}

/// Why the status could not be read: a kind the core acts on (a time-out may be retried) and
/// the operator's text, which carries the command's standard error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackupServiceError {
    /// `Timeout` may be retried; anything else (`Fatal`) will fail again.
    pub kind: ErrorKind,
    /// What happened, with the end of the command's standard error.
    pub message: String,
}

/// Reads the Backup Service's status of the CMS module, for the planned failover's gate.
///
/// Implementations run something (the `backup-service` crate: the operator's command) and
/// translate; they decide nothing and wait for nothing: the machine polls.
#[async_trait]
pub trait BackupServiceGate: Send + Sync {
    /// What is run, for reports and what-if plans (an argv; never a secret).
    fn describe(&self) -> Vec<String>;

    /// The longest one read may take; the driver waits at least this long for an answer.
    fn timeout(&self) -> Duration;

    /// Reads the [`CMS_MODULE`]'s states once. Read-only.
    /// Errors: `Timeout` (the command hung and was killed); `Fatal` (it failed, printed
    /// something unusable, or reported no CMS module) — the message carries its stderr.
    async fn cms_status(&self) -> Result<ModuleStatus, BackupServiceError>;
}

/// How the planned failover's gate uses the Backup Service (`Settings::backup_service`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupServiceSettings {
    /// After the fence: how long to wait for `FinalState` before undoing the fence.
    #[serde(with = "crate::request::duration_ms")]
    pub final_state_timeout: Duration,
    /// Interval between status reads (each one runs the operator's command).
    #[serde(with = "crate::request::duration_ms")]
    pub poll_interval: Duration,
}

impl Default for BackupServiceSettings {
    /// Ten minutes for `FinalState` (the service's default sync interval is two minutes;
    /// `Invoke-CsBackupServiceSync` shortens the wait), a read every 15 seconds.
    fn default() -> Self {
        Self {
            final_state_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_before_and_after_the_fence() {
        use ExportState::*;
        let m = ModuleStatus::cms;
        assert_eq!(m(FinalState).before_fence(), Readiness::Ready);
        assert_eq!(m(SteadyState).before_fence(), Readiness::Ready);
        assert_eq!(
            m(NonSteadyState).before_fence(),
            Readiness::Copying(NonSteadyState)
        );
        assert_eq!(m(FinalState).after_fence(), Readiness::Ready);
        assert_eq!(
            m(SteadyState).after_fence(),
            Readiness::Copying(SteadyState)
        );
        for s in [NotInitialized, ErrorState] {
            for r in [m(s).before_fence(), m(s).after_fence()] {
                assert!(
                    matches!(r, Readiness::Blocked(ref why) if why.contains(&s.to_string())),
                    "{r:?}"
                );
            }
        }
        assert_eq!(ExportState::from_name("finalSTATE"), Some(FinalState));
        assert_eq!(ExportState::from_name("Busy"), None);
        assert_eq!(
            ImportState::from_name("errorstate"),
            Some(ImportState::ErrorState)
        );
    }
}
