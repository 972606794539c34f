//! SQL Server error number -> [`BackendError`], shared by both SQL backends.
//!
//! The kind comes from [`failover_core::sqlerror::classify`] (see its table), with these
//! operation-specific refinements:
//!
//! | operation | number | kind | why |
//! |---|---|---|---|
//! | write_location | 2627, 2601 | invalid state | a concurrent writer inserted the first record |
//! | read_location | 208 | (no error: `None`) | the location table was never created |

use crate::rows::RowError;
use failover_core::sqlerror::classify;
use failover_core::{BackendError, ErrorKind, Operation};
use std::fmt::Display;

/// Builds the error for SQL Server error `number` with its `message`.
pub fn server_error(
    op: Operation,
    instance: impl Display,
    number: i32,
    message: &str,
) -> BackendError {
    let kind = match (op, number) {
        (Operation::WriteLocation, 2627 | 2601) => ErrorKind::InvalidState,
        _ => classify(number),
    };
    BackendError::new(kind, op, instance, message.to_string()).with_code(number)
}

/// Whether error `number` from [`crate::build::read_location`] means "no record yet".
pub fn location_missing(number: i32) -> bool {
    number == 208
}

/// A reply of the wrong shape: a bug or an incompatible server (fatal).
pub fn row_error(op: Operation, instance: impl Display, e: &RowError) -> BackendError {
    BackendError::new(ErrorKind::Fatal, op, instance, e.to_string())
}

/// The error for an `sp_getapplock` / `sp_releaseapplock` return code that is neither
/// success nor "held elsewhere": -2 cancelled and -3 deadlock victim are transient, -999
/// (bad parameter or other error) is fatal.
pub fn lock_return_code(op: Operation, instance: impl Display, code: i32) -> BackendError {
    let (kind, what) = match code {
        -2 => (ErrorKind::Transient, "the lock request was cancelled"),
        -3 => (
            ErrorKind::Transient,
            "the lock request was chosen as a deadlock victim",
        ),
        _ => (
            ErrorKind::Fatal,
            "parameter validation or another call error",
        ),
    };
    BackendError::new(
        kind,
        op,
        instance,
        format!("application lock call returned {code}: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let e = server_error(Operation::SetReadOnly, "a", 5061, "could not lock");
        assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(5061)));
        assert_eq!(
            server_error(Operation::Probe, "a", 954, "").kind,
            ErrorKind::Unreachable
        );
        assert_eq!(
            server_error(Operation::WriteLocation, "a", 2627, "").kind,
            ErrorKind::InvalidState
        );
        assert_eq!(
            server_error(Operation::Probe, "a", 2627, "").kind,
            ErrorKind::Fatal
        );
        assert_eq!(
            lock_return_code(Operation::AcquireLock, "a", -3).kind,
            ErrorKind::Transient
        );
        assert_eq!(
            lock_return_code(Operation::AcquireLock, "a", -999).kind,
            ErrorKind::Fatal
        );
        assert!(location_missing(208) && !location_missing(911));
    }
}
