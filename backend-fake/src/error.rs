//! [`SqlError`]: an error as SQL Server reports it (number, class, state, message), and the
//! numbers the estate uses.
//!
//! | situation | number | class | kind (`failover_core::sqlerror::classify`) |
//! |---|---|---|---|
//! | connection refused (instance down) | 53 | 20 | unreachable |
//! | connection dropped / session killed | 10054 | 20 | unreachable |
//! | login failed | 18456 | 14 | permission |
//! | permission denied (fault) | 229 | 14 | permission |
//! | ALTER DATABASE could not lock (fault) | 5061 | 16 | transient |
//! | deadlock victim (fault) | 1205 | 13 | transient |
//! | database does not exist | 911 | 16 | invalid state |
//! | ALTER DATABASE on a mirror | 1468 | 16 | invalid state |
//! | ALTER DATABASE on a RESTORING/OFFLINE database | 5052 | 16 | invalid state |
//! | ALTER DATABASE … SET READ_WRITE on a STANDBY copy | 5063 | 16 | invalid state |
//! | RESTORE on a database in a mirroring session | 3104 | 16 | invalid state |
//! | RESTORE … WITH RECOVERY on an ONLINE database | 3117 | 16 | invalid state |
//! | RESTORE on a database in another state (OFFLINE…) | 3013 | 16 | invalid state |
//! | not mirrored | 1416 | 16 | invalid state |
//! | planned failover not SYNCHRONIZED / partner down | 1422 | 16 | invalid state |
//! | planned failover with safety OFF | 1477 | 16 | invalid state |
//! | planned failover issued on the mirror | 1470 | 16 | invalid state |
//! | forced service with the principal reachable, or on the principal | 1455 | 16 | invalid state |
//! | opening a mirror database (`USE`) | 954 | 14 | unreachable |
//! | opening an OFFLINE database (`USE`) | 942 | 14 | fatal |
//! | opening a RESTORING database (`USE`) | 927 | 14 | invalid state |
//! | `sp_releaseapplock` of a lock not held | 1223 | 16 | fatal (backends treat it as done) |
//! | location record compare-and-swap conflict | 50000 | 16 | see [`LOCATION_CONFLICT`] |
//! | internal error (fault) | 3624 | 20 | fatal |
//!
//! Real SQL Server reports a refused `ALTER DATABASE` as a specific error (5052 RESTORING,
//! 1468 mirror, 5011 missing…) followed by 5069 "ALTER DATABASE statement failed"; the
//! estate returns the specific error (the first one decides the classification) and the TDS
//! simulator sends 5069 after it, as SQL Server does.

use serde::{Deserialize, Serialize};

/// Error number of a location-record compare-and-swap conflict: the user-defined error a
/// `THROW 50000, N'…', 1` in the location procedure raises; `failover_core::sqlerror`
/// classifies it as invalid state. The TDS simulator (`mssql-sim`) matches on it to turn a
/// compare-and-swap conflict into "0 rows affected", as the real `UPDATE … WHERE epoch = …`
/// reports it.
pub const LOCATION_CONFLICT: i32 = 50000;

/// An error as SQL Server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("Msg {number}, Level {class}, State {state}: {message}")]
pub struct SqlError {
    /// The SQL Server error number.
    pub number: i32,
    /// Severity (class).
    pub class: u8,
    /// State.
    pub state: u8,
    /// Message text.
    pub message: String,
}

impl SqlError {
    /// Builds an error.
    pub fn new(number: i32, class: u8, state: u8, message: impl Into<String>) -> Self {
        Self {
            number,
            class,
            state,
            message: message.into(),
        }
    }

    /// Whether the error means the connection is gone (53 refused, 10054 dropped).
    pub fn is_connection_error(&self) -> bool {
        matches!(self.number, 53 | 10054)
    }

    /// 53: the instance refused the connection.
    pub fn connection_refused(addr: &impl std::fmt::Display) -> Self {
        Self::new(
            53,
            20,
            1,
            format!(
                "A network-related or instance-specific error occurred while establishing a connection to SQL Server '{addr}'. The server was not found or was not accessible."
            ),
        )
    }

    /// 10054: the connection was dropped (session killed, instance went down).
    pub fn connection_dropped() -> Self {
        Self::new(
            10054,
            20,
            0,
            "An existing connection was forcibly closed by the remote host.",
        )
    }

    /// 18456: login failed.
    pub fn login_failed(user: &str) -> Self {
        Self::new(18456, 14, 1, format!("Login failed for user '{user}'."))
    }

    /// 229: permission denied.
    pub fn permission_denied(what: &str) -> Self {
        Self::new(229, 14, 5, format!("The {what} permission was denied."))
    }

    /// 5011: the login lacks ALTER on the database (SQL Server adds 5069 and does not say
    /// whether the database exists):
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-5000-to-5999>
    pub fn no_alter_permission(db: &str) -> Self {
        Self::new(
            5011,
            14,
            5,
            format!(
                "User does not have permission to alter database '{db}', the database does not exist, or the database is not in a state that allows access checks."
            ),
        )
    }

    /// 3110: the login may not RESTORE the database (not sysadmin, dbcreator or its owner;
    /// SQL Server adds 3013):
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-3000-to-3999>
    pub fn no_restore_permission(db: &str) -> Self {
        Self::new(
            3110,
            14,
            1,
            format!("User does not have permission to RESTORE database '{db}'."),
        )
    }

    /// 229: `permission` denied on a `dbo` object of `master` (the location table).
    pub fn object_permission_denied(permission: &str, object: &str) -> Self {
        Self::new(
            229,
            14,
            5,
            format!(
                "The {permission} permission was denied on the object '{object}', database 'master', schema 'dbo'."
            ),
        )
    }

    /// 5061: ALTER DATABASE could not lock the database.
    pub fn could_not_lock(db: &str) -> Self {
        Self::new(
            5061,
            16,
            1,
            format!(
                "ALTER DATABASE failed because a lock could not be placed on database '{db}'. Try again later."
            ),
        )
    }

    /// 1205: deadlock victim.
    pub fn deadlock() -> Self {
        Self::new(
            1205,
            13,
            51,
            "Transaction was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.",
        )
    }

    /// 911: database does not exist.
    pub fn no_such_database(db: &str) -> Self {
        Self::new(
            911,
            16,
            1,
            format!(
                "Database '{db}' does not exist. Make sure that the name is entered correctly."
            ),
        )
    }

    /// 5069: ALTER DATABASE failed, with the reason.
    pub fn alter_failed(reason: impl std::fmt::Display) -> Self {
        Self::new(
            5069,
            16,
            1,
            format!("ALTER DATABASE statement failed. {reason}"),
        )
    }

    /// 1468: the operation is not allowed on a database in a mirroring session or an
    /// availability group ("Database Engine events and errors (1000 to 1999)").
    pub fn in_mirroring_session(db: &str) -> Self {
        Self::new(
            1468,
            16,
            1,
            format!(
                "The operation cannot be performed on database \"{db}\" because it is involved in a database mirroring session or an availability group. Some operations are not allowed on a database that is participating in a database mirroring session or in an availability group."
            ),
        )
    }

    /// 5052: ALTER DATABASE is not permitted in the database's state.
    pub fn not_permitted_in_state(state: &impl std::fmt::Display) -> Self {
        Self::new(
            5052,
            16,
            1,
            format!("ALTER DATABASE is not permitted while a database is in the {state} state."),
        )
    }

    /// 5063: the database is in warm standby ("Database '%.*ls' is in warm standby. A
    /// warm-standby database is read-only."), "Database Engine events and errors (5000 to
    /// 5999)".
    pub fn warm_standby(db: &str) -> Self {
        Self::new(
            5063,
            16,
            1,
            format!("Database '{db}' is in warm standby. A warm-standby database is read-only."),
        )
    }

    /// 3104: RESTORE on a mirrored database.
    pub fn restore_mirrored(db: &str) -> Self {
        Self::new(
            3104,
            16,
            1,
            format!(
                "RESTORE cannot operate on database '{db}' because it is configured for database mirroring or has joined an availability group."
            ),
        )
    }

    /// 3117: nothing to roll forward (RESTORE … WITH RECOVERY on an ONLINE database).
    pub fn nothing_to_restore() -> Self {
        Self::new(
            3117,
            16,
            1,
            "The log or differential backup cannot be restored because no files are ready to rollforward.",
        )
    }

    /// 3013: RESTORE terminated abnormally.
    pub fn restore_failed(reason: impl std::fmt::Display) -> Self {
        Self::new(
            3013,
            16,
            1,
            format!("RESTORE DATABASE is terminating abnormally. {reason}"),
        )
    }

    /// 1416: not mirrored.
    pub fn not_mirrored(db: &str) -> Self {
        Self::new(
            1416,
            16,
            31,
            format!("Database \"{db}\" is not configured for database mirroring."),
        )
    }

    /// 1422, as "Database Engine events and errors (1000 to 1999)" words it:
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-1000-to-1999>.
    /// The estate raises it for a planned failover while the session is not SYNCHRONIZED or
    /// the mirror is unreachable.
    pub fn mirror_not_caught_up(db: &str) -> Self {
        Self::new(
            1422,
            16,
            2,
            format!(
                "The mirror server instance is not caught up to the recent changes to database \"{db}\". Unable to fail over."
            ),
        )
    }

    /// 1404 (same page): "The command failed because the database mirror is busy. Reissue
    /// the command later." The estate raises it for `SET PARTNER FAILOVER` issued again while
    /// an earlier one has not switched the roles yet (that this is when SQL Server sends it
    /// is an inference: the page gives no condition). Retryable.
    pub fn mirror_busy() -> Self {
        Self::new(
            1404,
            16,
            1,
            "The command failed because the database mirror is busy. Reissue the command later.",
        )
    }

    /// 1470: SET PARTNER FAILOVER issued on the mirror ("The alter database for this
    /// partner config values may only be initiated on the current principal server"),
    /// "Database Engine events and errors (1000 to 1999)":
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-1000-to-1999>.
    pub fn failover_on_mirror(db: &str) -> Self {
        Self::new(
            1470,
            16,
            1,
            format!(
                "The alter database for this partner config values may only be initiated on the current principal server for database \"{db}\"."
            ),
        )
    }

    /// 1477: manual failover with safety OFF (same page as 1470); planned failover needs
    /// SAFETY FULL:
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>.
    pub fn safety_off(db: &str) -> Self {
        Self::new(
            1477,
            16,
            1,
            format!(
                "The database mirroring safety level must be FULL to manually failover database \"{db}\". Set safety level to FULL and retry."
            ),
        )
    }

    /// 1455: service cannot be forced.
    pub fn cannot_force(db: &str) -> Self {
        Self::new(
            1455,
            16,
            1,
            format!(
                "The database mirroring service cannot be forced for database \"{db}\" because the database is not in the correct state to become the principal database."
            ),
        )
    }

    /// 954: the database is a mirror and cannot be opened.
    pub fn is_mirror(db: &str) -> Self {
        Self::new(
            954,
            14,
            1,
            format!("The database \"{db}\" cannot be opened. It is acting as a mirror database."),
        )
    }

    /// 942: the database is offline.
    pub fn offline(db: &str) -> Self {
        Self::new(
            942,
            14,
            4,
            format!("Database '{db}' cannot be opened because it is offline."),
        )
    }

    /// 927: the database is being restored.
    pub fn in_restore(db: &str) -> Self {
        Self::new(
            927,
            14,
            2,
            format!("Database '{db}' cannot be opened. It is in the middle of a restore."),
        )
    }

    /// 1223: releasing an application lock that is not held.
    pub fn applock_not_held(resource: &str) -> Self {
        Self::new(
            1223,
            16,
            1,
            format!(
                "Cannot release the application lock (Database Principal: 'public', Resource: '{resource}') because it is not currently held."
            ),
        )
    }

    /// [`LOCATION_CONFLICT`]: the stored epoch is not the expected one.
    pub fn location_conflict(expected: Option<u64>, stored: Option<u64>) -> Self {
        let show = |e: Option<u64>| e.map_or("none".to_string(), |e| e.to_string());
        Self::new(
            LOCATION_CONFLICT,
            16,
            1,
            format!(
                "Active-location record conflict: expected epoch {}, stored epoch {}.",
                show(expected),
                show(stored)
            ),
        )
    }

    /// 3624: an internal error (used for injected fatal faults).
    pub fn internal() -> Self {
        Self::new(3624, 20, 1, "A system assertion check has failed.")
    }
}
