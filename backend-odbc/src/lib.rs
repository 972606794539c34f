//! # backend-odbc
//!
//! The SQL Server [`Backend`](failover_core::Backend) over unixODBC with
//! [odbc-api](https://docs.rs/odbc-api) and any SQL Server ODBC driver (FreeTDS `tdsodbc`, or
//! Microsoft's "ODBC Driver 18 for SQL Server"): [`OdbcBackend`] is
//! [`failover_tsql::SqlBackend`] (every operation, the SQL text, the lock protocol, the
//! location compare-and-swap, what-if statements, shared with `backend-tiberius`) over
//! [`OdbcTransport`], which only moves batches over ODBC.
//!
//! - odbc-api blocks: every call runs on `tokio::task::spawn_blocking` under a hard
//!   `tokio::time::timeout`, and also sets the ODBC login and query timeouts so the driver
//!   gives up by itself. A connection whose call timed out is discarded, never reused (its
//!   blocking thread may linger until the driver returns).
//! - One work connection per instance, reused and re-established after a drop; one dedicated
//!   lock connection per instance that owns the session-scoped application locks and is
//!   never replaced silently.
//! - Errors: ODBC diagnostics (SQLSTATE + native error number) are classified by
//!   [`classify`]; no odbc-api type appears in the public API. The password is a
//!   [`Secret`] and connection strings are redacted
//!   ([`connstr::redact`]) before they reach a message.
#![warn(missing_docs)]

pub mod classify;
pub mod config;
pub mod connstr;
pub mod driver;
pub mod freetds_conf;
mod transport;

pub use config::{ConfigError, ConnectionSpec, DriverKind, Encryption, OdbcConfig, Trust};
pub use failover_core::Secret;
pub use failover_tsql::SqlConfig;
pub use transport::OdbcTransport;

/// The SQL Server backend over ODBC: `OdbcBackend::new(config)`. Nothing connects until the
/// first call; [`OdbcTransport::config`], [`OdbcTransport::redacted_connection_string`] and
/// [`OdbcTransport::disconnect`] are reached through `transport()`.
pub type OdbcBackend = failover_tsql::SqlBackend<OdbcTransport>;
