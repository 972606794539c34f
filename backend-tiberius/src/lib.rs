//! # backend-tiberius
//!
//! The SQL Server [`Backend`](failover_core::Backend) over TDS with [tiberius] on tokio:
//! [`TiberiusBackend`] is [`failover_tsql::SqlBackend`] (every operation, the SQL text, the
//! lock protocol, the location compare-and-swap, what-if statements) over
//! [`TiberiusTransport`], which only connects, caches sessions, bounds each call and
//! classifies errors. Tiberius types never appear in this crate's public API.
//!
//! ## Sessions
//! Each instance gets up to two cached sessions, both logged in to `master`:
//! - the *operations* session (probe, positions, fence, recover, mirror, location). A call
//!   whose connection breaks fails `Unreachable` (its effect is unknown, as for any
//!   retryable error) and the connection is discarded; the next call connects afresh;
//! - the *lock* session, which owns the `sp_getapplock` lock. It is never replaced silently:
//!   once it drops (or a call on it times out, which drops it), `lock_held` reports `false`
//!   and the caller must take the lock again.
//!
//! Every call, connecting included, is bounded by [`TiberiusConfig::call_timeout`]; on expiry
//! the call fails with [`ErrorKind::Timeout`](failover_core::ErrorKind::Timeout) and its connection is discarded.
//!
//! ## Mirroring
//! Calls go to exactly the instance named; the shared backend follows the mirroring partner
//! for `positions` (turn off with [`SqlConfig::mirror_fallback`](failover_tsql::SqlConfig::mirror_fallback)) and
//! `locate_principal` (see [`failover_tsql::backend`]). Partner names read from the server
//! go through the same endpoint overrides as any instance address.
//!
//! ## Errors
//! SQL Server errors (`tiberius::error::Error::Server`) are classified by number with
//! [`failover_core::sqlerror::classify`] (refined by [`failover_tsql::errors`]):
//!
//! | number | meaning | kind |
//! |---|---|---|
//! | 5061, 1205, 1222, 1404 | could not lock the database, deadlock, lock time-out, mirror busy | transient |
//! | 954, 955, 1418 | database is a mirror / lacks quorum / partner unreachable | unreachable |
//! | 18456, 229, 262, 916, 4060 … | login failed / permission denied | permission |
//! | 3906, 5069, 5070, 1422, 1455, 911, 3101, 1416 … | wrong database state | invalid state |
//! | 2627, 2601 (write_location only) | a concurrent first location write | invalid state |
//! | 208 (read_location only) | location table absent: no record yet (`Ok(None)`) | — |
//! | anything else (102, 208, 2812 …) | | fatal |
//!
//! Client-side failures: I/O errors, refused connections and broken streams are
//! `Unreachable`; a call exceeding its timeout is `Timeout`; TLS failures and a server
//! redirect are `Fatal`.

#![warn(missing_docs)]

mod config;
mod conn;

pub use config::{Encryption, TiberiusConfig, Trust};
pub use conn::TiberiusTransport;
pub use failover_core::Secret;

/// The SQL Server backend over tiberius: `TiberiusBackend::new(config)`. Nothing connects
/// until the first call; [`TiberiusTransport::config`] and
/// [`TiberiusTransport::disconnect_all`] are reached through `transport()`.
pub type TiberiusBackend = failover_tsql::SqlBackend<TiberiusTransport>;
