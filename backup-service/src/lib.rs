//! # backup-service
//!
//! The Skype for Business Backup Service keeps the backup pool's copy of the CMS: it exports
//! changes from the active pool, copies them over and imports them (module
//! [`CentralMgmt.CMSMaster`](status::CMS_MODULE)). Such a copy shares no log with its source,
//! so no SQL position can say whether it has caught up; the service's own status can. This
//! crate is that second replication source: it runs the operator's command that prints
//! `Get-CsBackupServiceStatus` as JSON ([`StatusCommand`]), parses the module's export and
//! import states ([`status::parse`]) and says whether a planned failover may go on
//! ([`status::Readiness`]: before the fence `SteadyState` suffices, after it only
//! `FinalState` means nothing is left to copy).
//!
//! It performs no waiting of its own: the caller polls, shows progress and applies its
//! deadline.

#![warn(missing_docs)]

mod command;
pub mod status;

pub use command::{EmptyCommand, GateError, StatusCommand};
pub use status::{
    CMS_MODULE, ExportState, ImportState, ModuleStatus, ParseError, Readiness, ServiceStatus,
};
