//! SQL Server error number -> [`BackendError`], and the shared backend's own errors.
//!
//! The kind comes from [`failover_core::sqlerror::classify`] (see its table), with these
//! operation-specific refinements:
//!
//! | operation | number | kind | why |
//! |---|---|---|---|
//! | write_location | 2627, 2601 | invalid state | a concurrent writer inserted the first record |
//! | read_location | 208 | (no error: `None`) | the location table was never created |

use crate::rows::RowError;
use crate::transport::TransportError;
use failover_core::{BackendError, ErrorKind, InstanceAddr, LocationRecord, Operation};
use std::fmt::Display;

/// The kind of SQL Server error `number` for `op`: the shared table, refined per operation.
fn kind_for(op: Operation, number: i32, table: ErrorKind) -> ErrorKind {
    match (op, number) {
        (Operation::WriteLocation, 2627 | 2601) => ErrorKind::InvalidState,
        _ => table,
    }
}

/// The error `op` reports for a failed batch. A [`TransportError::SessionGone`] that reaches
/// here (the operation cannot go on without its session) is `Unreachable`.
pub fn transport_error(op: Operation, instance: impl Display, e: TransportError) -> BackendError {
    match e {
        TransportError::Failed {
            kind,
            code: Some(number),
            message,
        } => BackendError::new(kind_for(op, number, kind), op, instance, message).with_code(number),
        TransportError::Failed {
            kind,
            code: None,
            message,
        } => BackendError::new(kind, op, instance, message),
        TransportError::SessionGone(message) => BackendError::new(
            ErrorKind::Unreachable,
            op,
            instance,
            format!("the lock session is gone (its locks were released): {message}"),
        ),
    }
}

/// Whether the server answered that the database is the mirror on this partner (954) or
/// lacks quorum (955): its position is read on the partner instead.
pub fn is_mirror_answer(e: &BackendError) -> bool {
    matches!(e.code, Some(954 | 955))
}

/// Whether error `number` from [`crate::build::read_location`] means "no record yet".
pub fn location_missing(number: i32) -> bool {
    number == 208
}

/// A reply of the wrong shape: a bug or an incompatible server (fatal).
pub fn row_error(op: Operation, instance: impl Display, e: &RowError) -> BackendError {
    BackendError::new(ErrorKind::Fatal, op, instance, e.to_string())
}

/// The location compare-and-swap found `stored` instead of the record written.
pub fn location_conflict(
    instance: &InstanceAddr,
    expected_epoch: Option<u64>,
    stored: Option<&LocationRecord>,
) -> BackendError {
    let expected = expected_epoch.map_or_else(|| "none".to_string(), |e| e.to_string());
    let found = stored.map_or_else(
        || "no record".to_string(),
        |s| format!("epoch {} (active {}, run {})", s.epoch, s.active, s.run_id),
    );
    BackendError::new(
        ErrorKind::InvalidState,
        Operation::WriteLocation,
        instance,
        format!(
            "compare-and-swap refused: expected epoch {expected}, the store has {found}: someone else failed over"
        ),
    )
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
        let server = |op, n| transport_error(op, "a", TransportError::server(n, "msg"));
        let e = server(Operation::SetReadOnly, 5061);
        assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(5061)));
        assert_eq!(server(Operation::Probe, 954).kind, ErrorKind::Unreachable);
        assert_eq!(
            server(Operation::WriteLocation, 2627).kind,
            ErrorKind::InvalidState
        );
        assert_eq!(server(Operation::Probe, 2627).kind, ErrorKind::Fatal);
        assert_eq!(
            lock_return_code(Operation::AcquireLock, "a", -3).kind,
            ErrorKind::Transient
        );
        assert_eq!(
            lock_return_code(Operation::AcquireLock, "a", -999).kind,
            ErrorKind::Fatal
        );
        assert!(location_missing(208) && !location_missing(911));
        let e = transport_error(
            Operation::WriteLocation,
            "a",
            TransportError::server(2627, "dup"),
        );
        assert_eq!((e.kind, e.code), (ErrorKind::InvalidState, Some(2627)));
        let e = transport_error(
            Operation::CheckLock,
            "a",
            TransportError::SessionGone("eof".into()),
        );
        assert_eq!((e.kind, e.code), (ErrorKind::Unreachable, None));
    }
}
