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
//! | 40613, 40501, 49918-49920 | service busy (Azure-style) | transient |
//! | -2 | client-side time-out | timeout |
//! | 954 | database is acting as a mirror, cannot be opened | unreachable (try the partner) |
//! | 955 | database lacks quorum | unreachable |
//! | 1418 | mirror network address unreachable | unreachable |
//! | 10053, 10054, 10060, 233, 2, 53 | connection broken / not found | unreachable |
//! | 18456 | login failed | permission |
//! | 229, 230, 262, 300, 15247, 916, 4060 | permission denied / cannot open database | permission |
//! | 3906 | database is read-only | invalid state |
//! | 5052, 1468 | ALTER DATABASE not allowed in this state / in a mirroring session | invalid state |
//! | 50000 | the location record's compare-and-swap found another epoch (our RAISERROR) | invalid state |
//! | 5069, 5070 | ALTER DATABASE failed / database in use | invalid state |
//! | 1422 | mirror not caught up | invalid state |
//! | 1455 | service cannot be forced | invalid state |
//! | 911, 3101, 3013, 3104, 3108, 3117, 1412, 1416, 1443, 1447 | wrong database state for the statement | invalid state |
//! | 102, 156, 207, 208, 2812, 8144, other | syntax / unknown object / anything else | fatal |

use crate::error::ErrorKind;

/// Classifies an SQL Server error number (see the module table).
pub fn classify(number: i32) -> ErrorKind {
    match number {
        1205 | 1222 | 5061 | 1404 | 40613 | 40501 | 49918..=49920 => ErrorKind::Transient,
        -2 => ErrorKind::Timeout,
        954 | 955 | 1418 | 10053 | 10054 | 10060 | 233 | 2 | 53 => ErrorKind::Unreachable,
        18456 | 229 | 230 | 262 | 300 | 15247 | 916 | 4060 => ErrorKind::Permission,
        3906 | 5052 | 1468 | 50000 | 5069 | 5070 | 1422 | 1455 | 911 | 3101 | 3013 | 3104
        | 3108 | 3117 | 1412 | 1416 | 1443 | 1447 => ErrorKind::InvalidState,
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
        assert!(classify(5061).is_retryable());
        assert!(!classify(3906).is_retryable());
    }
}
