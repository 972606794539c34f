//! Classifying ODBC diagnostics into the core's [`ErrorKind`].
//!
//! ODBC reports a server error as a diagnostic record with an SQLSTATE and a native error
//! number; for SQL Server the native number is the SQL Server error number, which is
//! classified with the shared table [`failover_core::sqlerror::classify`] so a given server
//! error means the same to the core whichever backend it came through.
//!
//! Rules, in order:
//! 1. The first record (skipping `01xxx` warnings) whose native number the shared table knows
//!    (anything it does not call `Fatal`) decides the kind and becomes the error's `code`.
//!    This finds `18456` behind a generic `08001`, and `5061` before the `5069` that follows it.
//!    The generic trailers `5069` ("ALTER DATABASE statement failed") and `3013` ("RESTORE
//!    DATABASE is terminating abnormally") decide only when no other known record is there:
//!    FreeTDS may hand the records over in reverse order (`5069` before `5011`).
//! 2. Otherwise a FreeTDS client-library number decides: `20003` (read timeout) is a
//!    timeout; `20002`, `20004`, `20006`, `20009`, `20017`, `20020`, `20056` (connection
//!    failed, read/write failed, unexpected EOF, socket closed) are unreachable. FreeTDS
//!    reports some of these (e.g. 20017) under SQLSTATE `01000` only.
//! 3. Otherwise the first error record's SQLSTATE decides (all records count when a failed
//!    call left only `01xxx` records):
//!
//! | SQLSTATE | meaning | kind |
//! |---|---|---|
//! | `08xxx` | connection could not be made / link failure | unreachable |
//! | `HYT00`, `HYT01`, `HY008` | query / connection timeout, cancelled | timeout |
//! | `28xxx` | invalid authorization | permission |
//! | `40001` | serialization failure (deadlock) | transient |
//! | `42000` with a native number, `IM002`, others | syntax, no such driver/DSN, anything else | fatal |
//!
//! In case 2 a non-zero native number is still reported as `code` when the record is a server
//! error (SQLSTATE outside `08`, `HY`, `IM`), e.g. `2812` with `42000`.

use crate::driver::{DiagRecord, OdbcFailure};
use failover_core::ErrorKind;
use failover_core::sqlerror::classify as classify_native;

/// Errors SQL Server sends after the specific one of a failed statement.
const GENERIC_TRAILERS: [i32; 2] = [5069, 3013];

/// The kind and the SQL Server error number (if any) of a failed ODBC call.
pub fn classify(failure: &OdbcFailure) -> (ErrorKind, Option<i32>) {
    classify_records(&failure.records)
}

/// See the module documentation.
pub fn classify_records(records: &[DiagRecord]) -> (ErrorKind, Option<i32>) {
    let errors: Vec<&DiagRecord> = records
        .iter()
        .filter(|r| !r.sqlstate.starts_with("01"))
        .collect();
    let known = |r: &&&DiagRecord| r.native != 0 && classify_native(r.native) != ErrorKind::Fatal;
    if let Some(r) = errors
        .iter()
        .filter(known)
        .find(|r| !GENERIC_TRAILERS.contains(&r.native))
        .or_else(|| errors.iter().find(known))
    {
        return (classify_native(r.native), Some(r.native));
    }
    if let Some(kind) = records.iter().find_map(|r| freetds_client_error(r.native)) {
        return (kind, None);
    }
    let Some(first) = errors.first() else {
        return (ErrorKind::Fatal, None);
    };
    let state = first.sqlstate.as_str();
    let kind = if state.starts_with("08") {
        ErrorKind::Unreachable
    } else if matches!(state, "HYT00" | "HYT01" | "HY008") {
        ErrorKind::Timeout
    } else if state.starts_with("28") {
        ErrorKind::Permission
    } else if state == "40001" {
        ErrorKind::Transient
    } else {
        ErrorKind::Fatal
    };
    let server_error =
        !(state.starts_with("08") || state.starts_with("HY") || state.starts_with("IM"));
    let code = (first.native != 0 && server_error).then_some(first.native);
    (kind, code)
}

/// FreeTDS client-library error numbers (db-lib style, `TDSE*`).
fn freetds_client_error(native: i32) -> Option<ErrorKind> {
    match native {
        20003 => Some(ErrorKind::Timeout),
        20002 | 20004 | 20006 | 20009 | 20017 | 20020 | 20056 => Some(ErrorKind::Unreachable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: &str, native: i32) -> DiagRecord {
        DiagRecord {
            sqlstate: state.into(),
            native,
            message: String::new(),
        }
    }

    #[test]
    fn the_specific_error_before_the_generic_trailer_decides() {
        // SQL Server sends 5011 then 5069, and 3101 then 3013; tiberius sees the first error.
        assert_eq!(
            classify_records(&[rec("42000", 5011), rec("42000", 5069)]),
            (ErrorKind::Permission, Some(5011))
        );
        // FreeTDS may report the trailer first.
        assert_eq!(
            classify_records(&[rec("42000", 5069), rec("42000", 5011)]),
            (ErrorKind::Permission, Some(5011))
        );
        assert_eq!(
            classify_records(&[rec("42000", 3013), rec("42000", 3101)]),
            (ErrorKind::Transient, Some(3101))
        );
        assert_eq!(
            classify_records(&[rec("42000", 5069)]),
            (ErrorKind::InvalidState, Some(5069))
        );
        assert_eq!(
            classify_records(&[rec("42000", 5011), rec("42000", 5069)]),
            (ErrorKind::Permission, Some(5011))
        );
        assert_eq!(
            classify_records(&[rec("42000", 3101), rec("42000", 3013)]),
            (ErrorKind::Transient, Some(3101))
        );
        assert_eq!(
            classify_records(&[rec("42000", 927)]),
            (ErrorKind::InvalidState, Some(927))
        );
    }

    #[test]
    fn native_numbers_use_the_shared_table() {
        assert_eq!(
            classify_records(&[rec("42000", 5061), rec("42000", 5069)]),
            (ErrorKind::Transient, Some(5061))
        );
        assert_eq!(
            classify_records(&[rec("42000", 3906)]),
            (ErrorKind::InvalidState, Some(3906))
        );
        assert_eq!(
            classify_records(&[rec("08004", 954)]),
            (ErrorKind::Unreachable, Some(954))
        );
        assert_eq!(
            classify_records(&[rec("42000", 1422)]),
            (ErrorKind::InvalidState, Some(1422))
        );
        assert_eq!(
            classify_records(&[rec("HY000", 1404)]),
            (ErrorKind::Transient, Some(1404))
        );
    }

    #[test]
    fn login_failure_found_behind_generic_connect_error() {
        assert_eq!(
            classify_records(&[rec("08001", 0), rec("28000", 18456)]),
            (ErrorKind::Permission, Some(18456))
        );
    }

    #[test]
    fn sqlstate_classes_without_native_number() {
        assert_eq!(
            classify_records(&[rec("08001", 0), rec("08S01", 20009)]),
            (ErrorKind::Unreachable, None)
        );
        assert_eq!(
            classify_records(&[rec("08S01", 0)]),
            (ErrorKind::Unreachable, None)
        );
        assert_eq!(
            classify_records(&[rec("HYT00", 0)]),
            (ErrorKind::Timeout, None)
        );
        assert_eq!(
            classify_records(&[rec("HYT01", 20003)]),
            (ErrorKind::Timeout, None)
        );
        assert_eq!(
            classify_records(&[rec("28000", 0)]),
            (ErrorKind::Permission, None)
        );
        assert_eq!(
            classify_records(&[rec("40001", 0)]),
            (ErrorKind::Transient, None)
        );
        assert_eq!(
            classify_records(&[rec("IM002", 0)]),
            (ErrorKind::Fatal, None)
        );
        assert_eq!(classify_records(&[]), (ErrorKind::Fatal, None));
    }

    #[test]
    fn freetds_client_errors_even_under_a_warning_sqlstate() {
        assert_eq!(
            classify_records(&[rec("01000", 20017)]),
            (ErrorKind::Unreachable, None)
        );
        assert_eq!(
            classify_records(&[rec("01000", 20003)]),
            (ErrorKind::Timeout, None)
        );
        assert_eq!(
            classify_records(&[rec("01000", 0)]),
            (ErrorKind::Fatal, None)
        );
    }

    #[test]
    fn unknown_server_errors_are_fatal_with_code() {
        assert_eq!(
            classify_records(&[rec("42000", 2812)]),
            (ErrorKind::Fatal, Some(2812))
        );
        assert_eq!(
            classify_records(&[rec("01000", 5701), rec("42S02", 208)]),
            (ErrorKind::Fatal, Some(208))
        );
    }
}
