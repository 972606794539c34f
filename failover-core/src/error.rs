//! The one error type every backend returns, classified into a kind the core acts on.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What the core may do about a failed backend operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Worth retrying as is (lock contention, deadlock victim, mirror busy: 5061, 1205, 1404).
    Transient,
    /// The operation did not finish in time; its effect is unknown until re-probed.
    Timeout,
    /// The instance could not be reached or the connection dropped (also 954/955 when the
    /// database cannot be opened on this partner).
    Unreachable,
    /// Login or permission failure (18456, 229, 262…): retrying will not help.
    Permission,
    /// The server refused because of the state it is in (read-only 3906, not SYNCHRONIZED
    /// 1422, cannot be forced 1455, missing database, stale epoch…).
    InvalidState,
    /// Anything else: a bug, a protocol error, an unknown SQL Server error.
    Fatal,
}

impl ErrorKind {
    /// Whether the driver may retry an operation that failed with this kind.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::Unreachable
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Permission => "permission",
            ErrorKind::InvalidState => "invalid state",
            ErrorKind::Fatal => "fatal",
        })
    }
}

/// The backend operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// [`crate::Backend::probe`].
    Probe,
    /// [`crate::Backend::positions`].
    Positions,
    /// [`crate::Backend::set_read_only`].
    SetReadOnly,
    /// [`crate::Backend::recover`].
    Recover,
    /// [`crate::Backend::mirror_failover`].
    MirrorFailover,
    /// [`crate::Backend::acquire_lock`].
    AcquireLock,
    /// [`crate::Backend::release_lock`].
    ReleaseLock,
    /// [`crate::Backend::lock_held`].
    CheckLock,
    /// [`crate::Backend::read_location`].
    ReadLocation,
    /// [`crate::Backend::write_location`].
    WriteLocation,
    /// Establishing a connection.
    Connect,
    /// [`crate::Directory::read`].
    ReadDirectory,
    /// [`crate::Directory::compare_and_swap`].
    SwapDirectory,
    /// [`crate::BackupServiceGate::cms_status`].
    BackupServiceStatus,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        let name = s.as_ref().and_then(|v| v.as_str()).unwrap_or("operation");
        f.write_str(name)
    }
}

/// A failed backend operation: its kind, the operation, the instance and the server's message.
///
/// Driver error types (tiberius, odbc-api) never appear here: backends classify them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{operation} on {instance} failed ({kind}{}): {message}", code.map(|c| format!(", SQL Server error {c}")).unwrap_or_default())]
pub struct BackendError {
    /// How the core should treat it.
    pub kind: ErrorKind,
    /// Which operation failed.
    pub operation: Operation,
    /// The instance it was sent to.
    pub instance: String,
    /// The SQL Server error number, when the server sent one.
    pub code: Option<i32>,
    /// Human-readable detail (never contains a password).
    pub message: String,
}

impl BackendError {
    /// Builds an error without an SQL Server error number.
    pub fn new(
        kind: ErrorKind,
        operation: Operation,
        instance: impl fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation,
            instance: instance.to_string(),
            code: None,
            message: message.into(),
        }
    }

    /// Attaches the SQL Server error number.
    pub fn with_code(mut self, code: i32) -> Self {
        self.code = Some(code);
        self
    }
}
