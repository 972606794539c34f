//! Running blocking ODBC work off the async runtime, with a hard timeout per call and one
//! reusable connection per slot.
//!
//! A slot holds at most one connection behind an async mutex. A call takes the connection
//! out of the slot, moves it into `spawn_blocking` together with the work, and puts it back
//! only when the work finished in time without breaking the link. When the timeout fires the
//! connection stays inside the blocking task and is dropped (disconnected) there whenever the
//! driver returns: it is never reused. That blocking thread may linger until the driver gives
//! up (the ODBC query and login timeouts make the driver give up by itself in most cases).

use crate::driver::{OdbcConn, OdbcFailure, ResultSet};
use crate::secret::Secret;
use std::time::Duration;
use tokio::sync::Mutex;

/// One reusable connection (or none yet).
#[derive(Debug, Default)]
pub(crate) struct Slot {
    conn: Mutex<Option<OdbcConn>>,
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Connecting failed.
    Connect(OdbcFailure),
    /// The batch failed.
    Execute(OdbcFailure),
    /// No connection and the call may not open one (the lock session is gone).
    NotConnected,
    /// The hard timeout fired; the connection was discarded.
    TimedOut(Duration),
    /// The blocking task panicked.
    Panicked(String),
}

/// Whether a call may open a connection when the slot is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connect {
    /// Open one if needed (work connections, taking a lock).
    IfNeeded,
    /// Never: a new session would not own what the old one held.
    Never,
}

/// Timeouts of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub call: Duration,
}

impl Timeouts {
    fn query_secs(&self) -> usize {
        self.call.as_secs_f64().ceil().max(1.0) as usize
    }
    fn login_secs(&self) -> u32 {
        self.connect
            .as_secs_f64()
            .ceil()
            .clamp(1.0, u32::MAX as f64) as u32
    }
}

impl Slot {
    /// Drops the parked connection, if any (disconnecting on a blocking thread).
    pub(crate) async fn discard(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            drop(tokio::task::spawn_blocking(move || drop(c)));
        }
    }

    /// Runs `sql` on this slot's connection (opening it with `conn_str` if allowed).
    pub(crate) async fn run(
        &self,
        conn_str: &Secret,
        connect: Connect,
        sql: String,
        t: Timeouts,
    ) -> Result<Vec<ResultSet>, CallError> {
        let mut guard = self.conn.lock().await;
        let existing = guard.take();
        if existing.is_none() && connect == Connect::Never {
            return Err(CallError::NotConnected);
        }
        let budget = if existing.is_none() {
            t.call + t.connect
        } else {
            t.call
        };
        let conn_str = conn_str.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = match existing {
                Some(c) if !c.is_dead() => c,
                Some(_) if connect == Connect::Never => {
                    return (None, Err(CallError::NotConnected));
                }
                _ => match OdbcConn::connect(conn_str.expose(), t.login_secs()) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(CallError::Connect(e))),
                },
            };
            match conn.execute(&sql, t.query_secs()) {
                Ok(sets) => (Some(conn), Ok(sets)),
                Err(mut e) => {
                    if conn.is_dead() {
                        e.mark_connection_dead();
                    }
                    let keep = !e.breaks_connection();
                    (keep.then_some(conn), Err(CallError::Execute(e)))
                }
            }
        });
        match tokio::time::timeout(budget, task).await {
            Err(_) => Err(CallError::TimedOut(budget)),
            Ok(Err(join)) => Err(CallError::Panicked(join.to_string())),
            Ok(Ok((conn, result))) => {
                *guard = conn;
                result
            }
        }
    }
}
