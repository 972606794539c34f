//! A SQL Server simulator that speaks TDS 7.4 and serves a backend-fake estate.
//!
//! The [`tds`] module is the protocol (framing, PRELOGIN, LOGIN7, requests, tokens); the
//! [`service`] module is the seam between it and the SQL side; [`listener`] serves one
//! instance on a loopback port.
#![warn(missing_docs)]

pub mod cli;
pub mod conn;
pub mod estate_file;
pub mod freetds;
#[cfg(feature = "gssapi")]
pub mod gss;
pub mod integrated;
pub mod listener;
pub mod service;
pub mod sim;
pub mod sql;
pub mod state;
pub mod tds;
pub mod tls;

pub use service::*;
#[cfg(feature = "test-pki")]
pub use sim::Served;
pub use sim::{SimHandle, SimOptions, Simulator, StartError};
pub use sql::exec::DatabaseBlock;
pub use tls::{ServerTls, TlsConfigError, WithTls};
