//! # failover-core
//!
//! Domain types, the typed CMS failover state machine, the [`Backend`] contract and the driver
//! that runs the machine over any backend.
//!
//! - [`model`]: validated values ([`InstanceAddr`], [`DatabaseName`], [`Store`], [`Topology`]);
//!   bad input is a [`ValidationError`] naming the field and the rule.
//! - [`request`]: [`Mode`] (planned, disaster recovery, restore), [`Settings`] (every wait has
//!   a timeout) and [`FailoverRequest`] (`what_if` plans without changing anything).
//! - [`backend`]: the [`Backend`] trait, one method per SQL Server operation, each with its
//!   contract; [`error`] and [`sqlerror`]: the one error type and its [`ErrorKind`].
//! - [`machine`]: the sans-IO state machine. It asks for [`Op`]s in batches, is fed their
//!   results and the time, and never does IO itself; [`machine::TRANSITIONS`] lists every
//!   transition (docs/state-machine.md is generated from it).
//! - [`driver`]: runs a machine over a backend with per-call timeouts, bounded retries,
//!   concurrent batches, the [`journal`] and cancellation, and returns a [`RunReport`] that
//!   ends in exactly one [`Outcome`].
#![warn(missing_docs)]

pub mod backend;
pub mod backup_service;
pub mod error;
pub mod model;
pub mod secret;
pub mod server;

pub use backend::*;
pub use error::{BackendError, ErrorKind, Operation};
pub use model::*;
pub use secret::Secret;
pub mod machine;
pub mod op;
pub mod outcome;
pub mod request;
pub mod sqlerror;
pub mod state;

pub use machine::{Action, Batch, Machine, StateName};
pub use op::{Op, OpResult};
pub use outcome::{DataLossEstimate, Failure, MissingRight, Outcome, Refusal, UndoFailure};
pub use request::{FailoverRequest, Mode, Settings};
pub mod directory;
pub mod driver;
pub mod journal;
pub mod location;
pub mod sql_record;

pub use backup_service::{BackupServiceError, BackupServiceGate, BackupServiceSettings};
pub use directory::{
    CmsLocation, Directory, DirectoryError, DirectoryOperation, SqlServerName, SwapStamp,
};
pub use driver::{CancelHandle, DirectoryReport, Driver, Observer, RunEvent, RunReport};
pub use journal::{FileJournal, Journal, MemoryJournal};
pub use machine::{DcValue, DirectoryInfo};
pub use sql_record::SqlRecordDirectory;

#[cfg(test)]
mod driver_tests;
