//! In-memory SQL Server estate with deterministic fault injection, and a
//! [`Backend`](failover_core::Backend) over it.
//!
//! - [`Estate`]: instances, databases with change positions, mirroring sessions, replication
//!   links, workloads, application locks, location records, sessions and a logical clock.
//!   Shared by [`FakeBackend`], the TDS simulator and the tests.
//! - [`fault`]: deterministic faults from a seed ([`FaultConfig`], [`Fault`]).
//! - [`FakeBackend`]: one client process talking to the estate.
//! - [`Snapshot`] / [`Mutation`]: state and history for invariant checks.
//! - [`fixtures`]: the standard estate and its topology.
#![warn(missing_docs)]

mod backend;
pub mod directory;
pub mod error;
pub mod estate;
pub mod fault;
pub mod fixtures;
pub mod grants;
pub mod snapshot;

pub use backend::FakeBackend;
pub use directory::{DirectoryFault, FakeDirectory};
pub use error::{LOCATION_CONFLICT, SqlError};
pub use estate::{
    Estate, EstateEvent, LinkId, SessionId, SetupError, WitnessConnection, default_server_name,
};
pub use fault::{Fault, FaultConfig, FaultRates, ScriptedFault, TimeoutFault};
pub use grants::LoginGrants;
pub use snapshot::{Change, DbRow, InstanceSnapshot, LockSnapshot, MirrorRow, Mutation, Snapshot};
