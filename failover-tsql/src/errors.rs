//! SQL Server error number -> [`BackendError`], and the shared backend's own errors.
//!
//! The kind comes from [`failover_core::sqlerror::classify`] (see its table), with these
//! operation-specific refinements:
//!
//! | operation | number | kind | why |
//! |---|---|---|---|
//! | write_location | 2627, 2601 | invalid state | a concurrent writer inserted the first record |
//! | read_location | 208 | (no error: `None`) | the location table was never created |
//!
//! and these additions to the server's message, saying what to do:
//!
//! | operation | number | addition |
//! |---|---|---|
//! | any | 5011 | the database is missing or the login may not alter it (ALTER permission) |
//! | positions | 208 | the position view to create, its columns, and where |

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
        } => {
            let message = match hint(op, number) {
                Some(h) => format!("{message} ({h})"),
                None => message,
            };
            BackendError::new(kind_for(op, number, kind), op, instance, message).with_code(number)
        }
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

/// What the operator can do about error `number` from `op`, when the server's text does not
/// say it. 5011 is "User does not have permission to alter database '%.*ls', the database
/// does not exist, or the database is not in a state that allows access checks." (then 5069),
/// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-5000-to-5999>;
/// ALTER DATABASE needs ALTER on the database,
/// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-set-options#permissions>.
fn hint(op: Operation, number: i32) -> Option<&'static str> {
    match (op, number) {
        (_, 5011) => Some(
            "check that the database exists on this instance and that the login has ALTER \
             permission on it (db_owner, dbcreator or sysadmin)",
        ),
        (Operation::Positions, 208) => Some(
            "the position view is missing: create the view dbo.cms_failover_position \
             (database_name sysname, position bigint or numeric(25,0)) in the control database \
             on both stores, over the mechanism that feeds the standby copy, or configure \
             another position query; see failover-tsql/README.md, \"Replication positions on a \
             real server\"",
        ),
        _ => None,
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
        let e = server(Operation::SetReadOnly, 5011);
        assert_eq!((e.kind, e.code), (ErrorKind::Permission, Some(5011)));
        assert!(e.message.contains("ALTER permission"), "{e}");
        let e = server(Operation::Positions, 208);
        assert_eq!(e.code, Some(208));
        assert!(
            e.message
                .contains("create the view dbo.cms_failover_position"),
            "{e}"
        );
        assert!(!server(Operation::Probe, 208).message.contains("view"));
        assert_eq!(server(Operation::Recover, 3101).kind, ErrorKind::Transient);
        assert_eq!(
            server(Operation::Recover, 927).kind,
            ErrorKind::InvalidState
        );
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
