//! SQL Server error numbers and the [`ErrorKind`] each is classified as.
//!
//! One table for every backend (fake, tiberius, ODBC), so a given server error means the same
//! thing to the core whichever way it arrived.
//!
//! | number | meaning | kind |
//! |---|---|---|
//! | 1205 | deadlock victim | transient |
//! | 1222 | lock request time-out | transient |
//! | 5061 | ALTER DATABASE could not lock the database | transient |
//! | 1404 | mirror busy, reissue later | transient |
//! | 3101 | exclusive access could not be obtained, the database is in use (RESTORE) | transient |
//! | 40613, 40501, 49918-49920 | service busy (Azure-style) | transient |
//! | -2 | client-side time-out | timeout |
//! | 954 | database is acting as a mirror, cannot be opened | unreachable (try the partner) |
//! | 955 | database lacks quorum | unreachable |
//! | 1418 | mirror network address unreachable | unreachable |
//! | 10053, 10054, 10060, 233, 2, 53 | connection broken / not found | unreachable |
//! | 18456 | login failed | permission |
//! | 229, 230, 262, 300, 15247, 916, 4060 | permission denied / cannot open database | permission |
//! | 5011 | no permission to alter the database, or it does not exist (5069 follows) | permission |
//! | 3110 | no permission to RESTORE the database (3013 follows) | permission |
//! | 3906 | database is read-only | invalid state |
//! | 5052, 1468 | ALTER DATABASE not allowed in this state / in a mirroring session | invalid state |
//! | 50000 | the location record's compare-and-swap found another epoch (our RAISERROR) | invalid state |
//! | 5069, 5070 | ALTER DATABASE failed / database in use | invalid state |
//! | 1422 | mirror not caught up | invalid state |
//! | 1455 | service cannot be forced | invalid state |
//! | 1470, 1477 | FAILOVER issued on the mirror / safety is OFF | invalid state |
//! | 927 | the database is in the middle of a restore | invalid state |
//! | 5063 | the database is in warm standby (read-only) | invalid state |
//! | 911, 3013, 3104, 3108, 3117, 1412, 1416, 1443, 1447 | wrong database state for the statement | invalid state |
//! | 102, 156, 207, 208, 2812, 8144, other | syntax / unknown object / anything else | fatal |
//!
//! When one statement raises several errors, the first decides: SQL Server sends the specific
//! error before the generic trailer (5011 or 5052 before 5069 "ALTER DATABASE statement
//! failed", 3101 or 3104 before 3013 "RESTORE DATABASE is terminating abnormally"). Sources,
//! "Database Engine events and errors":
//! <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors>
//! (0-999 for 927, 1000-1999 for 1404-1477, 3000-3999 for 3013/3101/3104, 5000-5999 for
//! 5011/5052/5063/5069).

use crate::error::{BackendError, ErrorKind};

/// 1468: "The operation cannot be performed on database … because it is involved in a
/// database mirroring session or an availability group" (then 5069), what SQL Server answers
/// an option that needs exclusive access on such a database
/// (<https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-1000-to-1999>).
/// `SET READ_ONLY` needs exclusive access
/// (<https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-set-options>);
/// whether a mirroring principal refuses it is not documented, so the fence handles both
/// (`docs/sql-server-behaviour.md`). Classified as invalid state; the fence tells it apart
/// by this number to say what the operator can do.
pub const IN_MIRRORING_SESSION: i32 = 1468;

/// Whether any of `errors` is [`IN_MIRRORING_SESSION`].
pub fn any_in_mirroring_session(errors: &[BackendError]) -> bool {
    errors.iter().any(|e| e.code == Some(IN_MIRRORING_SESSION))
}

/// Classifies an SQL Server error number (see the module table).
pub fn classify(number: i32) -> ErrorKind {
    match number {
        1205 | 1222 | 5061 | 1404 | 3101 | 40613 | 40501 | 49918..=49920 => ErrorKind::Transient,
        -2 => ErrorKind::Timeout,
        954 | 955 | 1418 | 10053 | 10054 | 10060 | 233 | 2 | 53 => ErrorKind::Unreachable,
        18456 | 229 | 230 | 262 | 300 | 15247 | 916 | 4060 | 5011 | 3110 => ErrorKind::Permission,
        3906 | 5052 | 1468 | 50000 | 5069 | 5070 | 1422 | 1455 | 1470 | 1477 | 927 | 5063 | 911
        | 3013 | 3104 | 3108 | 3117 | 1412 | 1416 | 1443 | 1447 => ErrorKind::InvalidState,
        _ => ErrorKind::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows() {
        assert_eq!(classify(5061), ErrorKind::Transient);
        assert_eq!(classify(1404), ErrorKind::Transient);
        assert_eq!(classify(954), ErrorKind::Unreachable);
        assert_eq!(classify(1418), ErrorKind::Unreachable);
        assert_eq!(classify(18456), ErrorKind::Permission);
        assert_eq!(classify(3906), ErrorKind::InvalidState);
        assert_eq!(classify(1422), ErrorKind::InvalidState);
        assert_eq!(classify(1455), ErrorKind::InvalidState);
        assert_eq!(classify(102), ErrorKind::Fatal);
        assert_eq!(classify(2812), ErrorKind::Fatal);
        assert_eq!(classify(3101), ErrorKind::Transient);
        assert_eq!(classify(5011), ErrorKind::Permission);
        for n in [927, 5063, 1468, 1470, 1477, 1455, 1422, 3104, 3013] {
            assert_eq!(classify(n), ErrorKind::InvalidState, "{n}");
        }
        assert!(classify(3101).is_retryable());
        assert!(classify(5061).is_retryable());
        assert!(!classify(3906).is_retryable());
    }
}
