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
pub mod sqlerror;
