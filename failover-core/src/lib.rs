//! # failover-core
//!
//! Domain types, the typed CMS failover state machine, the [`Backend`] contract and the driver
//! that runs the machine over any backend.
#![warn(missing_docs)]

pub mod backend;
pub mod error;
pub mod model;

pub use backend::*;
pub use error::{BackendError, ErrorKind, Operation};
pub use model::*;
pub mod machine;
pub mod op;
pub mod outcome;
pub mod request;
pub mod sqlerror;

pub use machine::{Action, Batch, Machine, StateName};
pub use op::{Op, OpResult};
pub use outcome::{DataLossEstimate, Outcome};
pub use request::{FailoverRequest, Mode, Settings};
pub mod driver;
pub mod journal;

pub use driver::{CancelHandle, Driver, Observer, RunEvent, RunReport};
pub use journal::{FileJournal, Journal, MemoryJournal};

#[cfg(test)]
mod driver_tests;
