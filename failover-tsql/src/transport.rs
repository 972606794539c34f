//! The small primitive each SQL Server driver implements: run one T-SQL batch on an instance,
//! in its operations session or its lock session. [`SqlBackend`](crate::SqlBackend) builds the
//! whole [`Backend`](failover_core::Backend) on top of it.
//!
//! ## The contract
//! - [`Session::Ops`] and [`Session::Read`] (probes only): positions, fence, recover, mirror,
//!   location; probes on their own connection so they never queue behind the others. With no session
//!   yet, or after the previous one broke, the transport connects. A call whose connection
//!   breaks fails ([`ErrorKind::Unreachable`] or [`ErrorKind::Timeout`]; its effect is unknown)
//!   and the connection is discarded: the next call connects afresh. No silent retry.
//! - [`Session::Lock`]: the session that owns the `sp_getapplock` lock. With no session yet
//!   the transport connects one (and reports a connect failure as a failure). Once a session
//!   exists it is never replaced silently: when it turns out dead, breaks during the call or
//!   the call times out (which discards it), the transport answers
//!   [`TransportError::SessionGone`], because whatever it held is released; the call after
//!   that connects a fresh session. [`session_lost`] is the one rule for this.
//! - Every call, connecting included, is bounded by the driver's timeout
//!   ([`TransportError::timed_out`]).
//! - Errors are classified by the driver: SQL Server errors with their number
//!   ([`TransportError::server`], kind from [`failover_core::sqlerror::classify`]), client-side
//!   failures with the kind the core acts on. Messages never contain a password.

use crate::build::SqlConfig;
use crate::rows::ResultSet;
use async_trait::async_trait;
use failover_core::ErrorKind;
use failover_core::InstanceAddr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

/// Which session of an instance a batch runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Session {
    /// Fences, restores, positions, location: reconnects transparently after a drop.
    Ops,
    /// Probes (read-only): a second connection like [`Session::Ops`], so that a probe runs
    /// concurrently with a call on the operations session of the same instance (preflight
    /// probes while it reads the location record; the end state is verified while the
    /// record is published) instead of waiting for it.
    Read,
    /// The application-lock session: never silently replaced (a new session does not hold
    /// the old one's locks).
    Lock,
}

/// Why a batch did not return its result sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The batch failed or could not be sent: SQL Server's error (with its number in
    /// `code`), or what the driver saw (connect failure, broken connection, time-out).
    #[error("{message}")]
    Failed {
        /// How the core should treat it.
        kind: ErrorKind,
        /// The SQL Server error number, when the server sent one.
        code: Option<i32>,
        /// Detail for the operator (never a password).
        message: String,
    },
    /// Only for [`Session::Lock`]: the session that existed before this call is gone
    /// (dropped, broken or timed out and discarded), and with it every lock it held.
    #[error("the lock session is gone: {0}")]
    SessionGone(String),
}

impl TransportError {
    /// SQL Server error `number` with its message, classified with the shared table.
    pub fn server(number: i32, message: impl Into<String>) -> Self {
        Self::Failed {
            kind: failover_core::sqlerror::classify(number),
            code: Some(number),
            message: message.into(),
        }
    }

    /// A client-side failure without an SQL Server number.
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Failed {
            kind,
            code: None,
            message: message.into(),
        }
    }

    /// The call got no answer within `budget`; its connection was discarded.
    pub fn timed_out(budget: Duration) -> Self {
        Self::failed(
            ErrorKind::Timeout,
            format!(
                "no answer within {:.1}s; the connection was discarded",
                budget.as_secs_f64()
            ),
        )
    }
}

/// The one rule for a connection lost during a call (it broke, or the call timed out and
/// discarded it): on the lock session, when a session existed before the call, that session
/// and its locks are gone ([`TransportError::SessionGone`]); otherwise the call simply failed
/// with `failure`.
pub fn session_lost(session: Session, existed: bool, failure: TransportError) -> TransportError {
    match (session, existed, failure) {
        (Session::Lock, true, TransportError::Failed { message, .. }) => {
            tracing::warn!(reason = %message, "the lock session was lost");
            TransportError::SessionGone(message)
        }
        (_, _, f) => f,
    }
}

/// One T-SQL batch to run: its text, the instance and the session it runs on.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The instance.
    pub instance: &'a InstanceAddr,
    /// Its operations or lock session.
    pub session: Session,
    /// The batch text (from [`crate::build`]).
    pub sql: &'a str,
}

/// The SQL Server primitive a driver implements; see the [module documentation](self).
#[async_trait]
pub trait Transport: Send + Sync {
    /// A short name for logs and reports (`tiberius`, `odbc`).
    const NAME: &'static str;

    /// Runs `batch` and returns every result set, in order (empty ones included).
    async fn run(&self, batch: Batch<'_>) -> Result<Vec<ResultSet>, TransportError>;

    /// The settings that change which SQL is sent (position query, control database,
    /// mirror fallback).
    fn sql_config(&self) -> &SqlConfig;

    /// Warnings about the driver's configuration for every run's report and log (TLS that
    /// does not authenticate the server, for instance). None by default.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The instances the driver has endpoints for: the SQL backend maps the server names
    /// SQL Server reports to these too ([`failover_core::ServerNames`]). None by default.
    fn known_instances(&self) -> Vec<InstanceAddr> {
        Vec::new()
    }

    /// The driver's bound for one call, when it has one: the SQL backend keeps the fence's
    /// server-side `SET LOCK_TIMEOUT` below it.
    fn call_timeout(&self) -> Option<Duration> {
        None
    }
}

/// One cached driver session (`None`: not connected, never or since it was discarded).
pub type Slot<C> = Arc<tokio::sync::Mutex<Option<C>>>;

/// The session cache both drivers use: at most one connection per instance and [`Session`]
/// (three per instance),
/// each behind an async mutex so one call at a time uses it.
pub struct SessionCache<C> {
    slots: StdMutex<HashMap<(InstanceAddr, Session), Slot<C>>>,
}

impl<C> Default for SessionCache<C> {
    fn default() -> Self {
        Self {
            slots: StdMutex::new(HashMap::new()),
        }
    }
}

impl<C> SessionCache<C> {
    /// The slot of `instance`'s `session` (created empty on first use).
    pub fn slot(&self, instance: &InstanceAddr, session: Session) -> Slot<C> {
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((instance.clone(), session))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone()
    }

    /// Takes every cached connection out (of `instance` only, or of all instances), for the
    /// driver to close. Lock sessions are included: the server releases their locks.
    pub async fn take_all(&self, instance: Option<&InstanceAddr>) -> Vec<C> {
        let slots: Vec<Slot<C>> = {
            let m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            m.iter()
                .filter(|((i, _), _)| instance.is_none_or(|want| want == i))
                .map(|(_, s)| s.clone())
                .collect()
        };
        let mut out = Vec::new();
        for s in slots {
            if let Some(c) = s.lock().await.take() {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lock_session_is_gone_only_if_it_existed() {
        let f = || TransportError::failed(ErrorKind::Unreachable, "reset by peer");
        assert_eq!(
            session_lost(Session::Lock, true, f()),
            TransportError::SessionGone("reset by peer".into())
        );
        assert_eq!(session_lost(Session::Lock, false, f()), f());
        assert_eq!(session_lost(Session::Ops, true, f()), f());
        let t = TransportError::timed_out(Duration::from_millis(1500));
        assert_eq!(
            t.to_string(),
            "no answer within 1.5s; the connection was discarded"
        );
        assert!(matches!(
            TransportError::server(5061, "x"),
            TransportError::Failed {
                kind: ErrorKind::Transient,
                code: Some(5061),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn cache_keeps_one_slot_per_instance_and_session() {
        let cache = SessionCache::<u32>::default();
        let a = InstanceAddr::parse("a.test").unwrap();
        let b = InstanceAddr::parse("b.test").unwrap();
        *cache.slot(&a, Session::Ops).lock().await = Some(1);
        *cache.slot(&a, Session::Lock).lock().await = Some(2);
        *cache.slot(&b, Session::Ops).lock().await = Some(3);
        assert_eq!(*cache.slot(&a, Session::Ops).lock().await, Some(1));
        let mut taken = cache.take_all(Some(&a)).await;
        taken.sort();
        assert_eq!(taken, vec![1, 2]);
        assert_eq!(*cache.slot(&a, Session::Lock).lock().await, None);
        assert_eq!(cache.take_all(None).await, vec![3]);
    }
}
