//! The blocking ODBC layer: one environment, connections, batches and diagnostics.
//!
//! Everything here blocks the calling thread; the backend only calls it from
//! `tokio::task::spawn_blocking`. It works on odbc-api's handle layer so that every diagnostic
//! record (SQLSTATE + native error number) is kept, all result sets of a batch are drained
//! (errors of later statements surface from `SQLMoreResults`), and nothing panics on drop.

use odbc_api::handles::{self, Diagnostics, Record, SqlChar, SqlResult, SqlText, Statement};
use odbc_api::{Cursor, CursorImpl, ResultSetMetadata};
use std::sync::{Mutex, OnceLock};

/// One ODBC diagnostic record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagRecord {
    /// The five-character SQLSTATE (`08001`, `42000`, `HYT00`…).
    pub sqlstate: String,
    /// The native error number (the SQL Server error number for server errors).
    pub native: i32,
    /// The driver's message text.
    pub message: String,
}

/// A failed ODBC call with all its diagnostic records (possibly none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdbcFailure {
    /// The ODBC function that failed (`SQLDriverConnect`, `SQLExecDirect`…).
    pub function: &'static str,
    /// Its diagnostic records, in the driver's order.
    pub records: Vec<DiagRecord>,
}

impl OdbcFailure {
    fn plain(function: &'static str, sqlstate: &str, message: impl Into<String>) -> Self {
        Self {
            function,
            records: vec![DiagRecord {
                sqlstate: sqlstate.into(),
                native: 0,
                message: message.into(),
            }],
        }
    }

    /// Whether the failure means the connection can no longer be trusted (communication link
    /// failure, timeout, cancel, or a failure without any diagnostics).
    pub fn breaks_connection(&self) -> bool {
        self.records.is_empty()
            || self.records.iter().any(|r| {
                r.sqlstate.starts_with("08")
                    || matches!(r.sqlstate.as_str(), "HYT00" | "HYT01" | "HY008")
            })
    }

    /// Whether the link to the server was lost (SQLSTATE class `08`).
    pub fn link_lost(&self) -> bool {
        self.records.iter().any(|r| r.sqlstate.starts_with("08"))
    }

    /// Records that the driver now reports the connection dead (`SQL_ATTR_CONNECTION_DEAD`)
    /// as a leading `08S01`, so the failure is classified and handled as a lost link whatever
    /// SQLSTATE the driver chose (FreeTDS reports an unexpected EOF as `01000`/20017).
    pub fn mark_connection_dead(&mut self) {
        if !self.link_lost() {
            self.records.insert(
                0,
                DiagRecord {
                    sqlstate: "08S01".into(),
                    native: 0,
                    message: "communication link failure: the driver reports the connection dead"
                        .into(),
                },
            );
        }
    }

    /// A one-line summary: `SQLSTATE [native]: message | …`.
    pub fn summary(&self) -> String {
        if self.records.is_empty() {
            return format!("{} failed without diagnostics", self.function);
        }
        self.records
            .iter()
            .map(|r| format!("{} [{}]: {}", r.sqlstate, r.native, r.message.trim()))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

fn text_of(chars: &[SqlChar]) -> String {
    String::from_utf16_lossy(chars)
}

fn records(handle: &(impl Diagnostics + ?Sized)) -> Vec<DiagRecord> {
    let mut out = Vec::new();
    let mut rec = Record::with_capacity(512);
    let mut n = 1;
    while n <= 32 && rec.fill_from(handle, n) {
        out.push(DiagRecord {
            sqlstate: rec.state.as_str().to_string(),
            native: rec.native_error,
            message: text_of(&rec.message),
        });
        n += 1;
    }
    out
}

fn check<T>(r: SqlResult<T>, handle: &(impl Diagnostics + ?Sized)) -> Result<T, OdbcFailure> {
    match r {
        SqlResult::Success(v) | SqlResult::SuccessWithInfo(v) => Ok(v),
        SqlResult::Error { function } => Err(OdbcFailure {
            function,
            records: records(handle),
        }),
        SqlResult::NoData => Err(OdbcFailure::plain(
            "ODBC",
            "HY000",
            "unexpected SQL_NO_DATA",
        )),
        SqlResult::NeedData => Err(OdbcFailure::plain(
            "ODBC",
            "HY000",
            "unexpected SQL_NEED_DATA",
        )),
        SqlResult::StillExecuting => Err(OdbcFailure::plain(
            "ODBC",
            "HY000",
            "unexpected SQL_STILL_EXECUTING",
        )),
    }
}

/// `check` where `SQL_NO_DATA` is a success (`false`).
fn check_bool(r: SqlResult<()>, handle: &(impl Diagnostics + ?Sized)) -> Result<bool, OdbcFailure> {
    match r {
        SqlResult::NoData => Ok(false),
        other => check(other, handle).map(|()| true),
    }
}

fn from_api_error(function: &'static str, e: odbc_api::Error) -> OdbcFailure {
    match e {
        odbc_api::Error::Diagnostics { record, function } => OdbcFailure {
            function,
            records: vec![DiagRecord {
                sqlstate: record.state.as_str().to_string(),
                native: record.native_error,
                message: text_of(&record.message),
            }],
        },
        other => OdbcFailure::plain(function, "HY000", other.to_string()),
    }
}

struct SharedEnv(handles::Environment);
// SAFETY: ODBC environment handles may be used from any thread (the driver manager locks);
// allocation is additionally serialised by `ALLOC` so diagnostics stay consistent.
unsafe impl Sync for SharedEnv {}

static ALLOC: Mutex<()> = Mutex::new(());

fn env() -> Result<&'static handles::Environment, OdbcFailure> {
    static ENV: OnceLock<Result<SharedEnv, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let env = match handles::Environment::new() {
            SqlResult::Success(e) | SqlResult::SuccessWithInfo(e) => e,
            _ => {
                return Err(
                    "cannot allocate an ODBC environment (is unixODBC installed?)".to_string(),
                );
            }
        };
        match env.declare_version(odbc_api::sys::AttrOdbcVersion::Odbc3_80) {
            SqlResult::Success(()) | SqlResult::SuccessWithInfo(()) => Ok(SharedEnv(env)),
            _ => Err("the ODBC driver manager does not support ODBC 3.80".to_string()),
        }
    });
    match env {
        Ok(e) => Ok(&e.0),
        Err(msg) => Err(OdbcFailure::plain("SQLAllocHandle", "HY000", msg.clone())),
    }
}

/// Names of the drivers registered with the driver manager (`odbcinst.ini`).
pub fn installed_drivers() -> Result<Vec<String>, OdbcFailure> {
    let _ = env()?;
    let env = odbc_api::environment().map_err(|e| from_api_error("SQLDrivers", e))?;
    Ok(env
        .drivers()
        .map_err(|e| from_api_error("SQLDrivers", e))?
        .into_iter()
        .map(|d| d.description)
        .collect())
}

/// An open ODBC connection. Dropping it disconnects; a handle that cannot be disconnected is
/// leaked rather than panicking.
pub struct OdbcConn {
    handle: Option<handles::Connection<'static>>,
}

impl std::fmt::Debug for OdbcConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OdbcConn")
    }
}

/// One result set: column names and rows of text values (`None` for NULL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    /// Column names (aliases).
    pub columns: Vec<String>,
    /// Rows, each value as text (`BIT` as `0`/`1`, numbers in decimal).
    pub rows: Vec<Vec<Option<String>>>,
}

impl OdbcConn {
    /// Connects with a full connection string. `login_timeout_secs` bounds the whole
    /// connect: it sets `SQL_ATTR_LOGIN_TIMEOUT` (the login; FreeTDS then fails with
    /// `HYT00`) and `SQL_ATTR_CONNECTION_TIMEOUT`, which FreeTDS takes as its TCP connect
    /// timeout (`odbc_connect`: `login->connect_timeout = dbc->attr.connection_timeout`), so
    /// neither a host that never answers the SYN nor a server that accepts and never
    /// answers the pre-login keeps the calling thread past it. Drivers that support neither
    /// ignore them; the caller's hard timeout still applies.
    pub fn connect(conn_str: &str, login_timeout_secs: u32) -> Result<Self, OdbcFailure> {
        let env = env()?;
        let mut conn = {
            let _g = ALLOC.lock().unwrap_or_else(|p| p.into_inner());
            check(env.allocate_connection(), env)?
        };
        let secs = login_timeout_secs.max(1);
        // Not every driver supports them; a failure here is not fatal.
        let _ = conn.set_login_timeout_sec(secs);
        // SAFETY: a live connection handle; the attribute takes an SQLUINTEGER by value.
        let _ = unsafe {
            odbc_api::sys::SQLSetConnectAttrW(
                conn.as_sys(),
                odbc_api::sys::ConnectionAttribute::ConnectionTimeout,
                secs as usize as odbc_api::sys::Pointer,
                0,
            )
        };
        let text = SqlText::new(conn_str);
        check(conn.connect_with_connection_string(&text), &conn)?;
        Ok(Self { handle: Some(conn) })
    }

    fn conn(&self) -> &handles::Connection<'static> {
        self.handle
            .as_ref()
            .expect("connection handle present until drop")
    }

    /// `SQL_ATTR_CONNECTION_DEAD`: whether the driver already knows the link is gone.
    pub fn is_dead(&self) -> bool {
        match self.conn().is_dead() {
            SqlResult::Success(d) | SqlResult::SuccessWithInfo(d) => d,
            _ => false,
        }
    }

    /// Runs `sql` as one batch with `SQL_ATTR_QUERY_TIMEOUT = query_timeout_secs` and returns
    /// every result set. An error in any statement of the batch is returned.
    pub fn execute(
        &mut self,
        sql: &str,
        query_timeout_secs: usize,
    ) -> Result<Vec<ResultSet>, OdbcFailure> {
        let conn = self.conn();
        let mut stmt = check(conn.allocate_statement(), conn)?;
        // Drivers without query timeouts reject the attribute; the call timeout still applies.
        let _ = stmt.set_query_timeout_sec(query_timeout_secs);
        let text = SqlText::new(sql);
        // SAFETY: no parameters or columns are bound.
        check_bool(unsafe { stmt.exec_direct(&text) }, &stmt)?;
        let mut sets = Vec::new();
        loop {
            let ncols = check(stmt.num_result_cols(), &stmt)?;
            if ncols > 0 {
                sets.push(read_result_set(&mut stmt, ncols as u16)?);
            }
            // SAFETY: no buffers are bound to the statement.
            if !check_bool(unsafe { stmt.more_results() }, &stmt)? {
                break;
            }
        }
        Ok(sets)
    }
}

fn read_result_set(
    stmt: &mut handles::StatementImpl<'_>,
    ncols: u16,
) -> Result<ResultSet, OdbcFailure> {
    let mut columns = Vec::with_capacity(ncols as usize);
    let mut buf: Vec<SqlChar> = Vec::new();
    for c in 1..=ncols {
        check(stmt.col_name(c, &mut buf), &*stmt)?;
        columns.push(text_of(&buf));
    }
    // SAFETY: the statement is in cursor state (it has result columns) and nothing is bound.
    let mut cursor = unsafe { CursorImpl::new(stmt.as_stmt_ref()) };
    let mut rows = Vec::new();
    let mut wide: Vec<u16> = Vec::new();
    let result = (|| -> Result<(), odbc_api::Error> {
        debug_assert_eq!(cursor.num_result_cols()?, ncols as i16);
        while let Some(mut row) = cursor.next_row()? {
            let mut values = Vec::with_capacity(ncols as usize);
            for c in 1..=ncols {
                values.push(
                    row.get_wide_text(c, &mut wide)?
                        .then(|| String::from_utf16_lossy(&wide)),
                );
            }
            rows.push(values);
        }
        Ok(())
    })();
    // Do not close the cursor: that would discard the batch's remaining results.
    let _ = cursor.into_stmt();
    result.map_err(|e| from_api_error("SQLFetch", e))?;
    Ok(ResultSet { columns, rows })
}

impl Drop for OdbcConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.handle.take() else {
            return;
        };
        let ok =
            |r: SqlResult<()>| matches!(r, SqlResult::Success(()) | SqlResult::SuccessWithInfo(()));
        if ok(conn.disconnect()) {
            return;
        }
        let _ = conn.rollback();
        if !ok(conn.disconnect()) {
            // Freeing a still-connected handle would make odbc-api panic; leak it instead.
            std::mem::forget(conn);
        }
    }
}
