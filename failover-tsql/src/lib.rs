//! # failover-tsql
//!
//! The SQL Server [`Backend`](failover_core::Backend), written once: every piece of T-SQL the
//! SQL backends (`backend-tiberius`, `backend-odbc`) send, the rows they get back turned into
//! the core's types, and the operations themselves over a small driver primitive.
//!
//! - [`SqlBackend`]: the `Backend` implementation (positions with mirror fallback, recover,
//!   mirror failover, the lock protocol, the location compare-and-swap, what-if statements),
//!   generic over a [`Transport`]: run one batch on an instance's operations or lock session
//!   and return its result sets, its SQL Server error or "session gone". Each driver crate
//!   implements only that (connecting, configuration, session caching with
//!   [`transport::SessionCache`], timeouts, error classification).
//! - [`quote_ident`] / [`quote_nstring`]: the only way names and values enter SQL text.
//!   Identifiers are bracket-quoted with `]` doubled, strings are `N'…'` with `'` doubled.
//! - [`build`]: one function per [`Backend`](failover_core::Backend) operation producing the
//!   exact batch. The simulator (`mssql-sim`) implements exactly these statements.
//! - [`rows`]: typed parsers from a driver-neutral row representation ([`Row`]) into
//!   [`InstanceProbe`](failover_core::InstanceProbe), [`DatabasePosition`](failover_core::DatabasePosition),
//!   [`LocationRecord`](failover_core::LocationRecord)…
//! - [`plan`]: the pre-checks (which databases to touch, which errors to report before
//!   sending anything).
//! - [`errors`]: SQL Server error number -> [`BackendError`](failover_core::BackendError),
//!   and the backend's own errors.
//! - [`lex`]: a small T-SQL tokenizer, used by the tests to prove the produced text has
//!   exactly the intended statements, and available to the simulator.
#![warn(missing_docs)]

pub mod backend;
pub mod build;
pub mod errors;
pub mod kerberos;
pub mod lex;
pub mod plan;
pub mod rows;
pub mod tls;
pub mod transport;

pub use backend::SqlBackend;
pub use build::{PositionQuery, SqlConfig};
pub use rows::{Row, RowError, SqlValue};
pub use transport::{Session, Transport, TransportError};

/// Bracket-quotes an identifier: `we]ird` becomes `[we]]ird]`.
///
/// Safe for any string: inside brackets only `]` is special and it is doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('[');
    for c in name.chars() {
        if c == ']' {
            out.push_str("]]");
        } else {
            out.push(c);
        }
    }
    out.push(']');
    out
}

/// Quotes a Unicode string literal: `O'Brien` becomes `N'O''Brien'`.
///
/// Safe for any string: inside `N'…'` only `'` is special and it is doubled.
pub fn quote_nstring(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("N'");
    for c in value.chars() {
        if c == '\'' {
            out.push_str("''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("xds"), "[xds]");
        assert_eq!(quote_ident("a]b"), "[a]]b]");
        assert_eq!(quote_ident("]]"), "[]]]]]");
        assert_eq!(quote_ident("[x"), "[[x]");
        assert_eq!(quote_nstring("xds"), "N'xds'");
        assert_eq!(quote_nstring("O'Brien"), "N'O''Brien'");
        assert_eq!(quote_nstring(""), "N''");
        assert_eq!(quote_nstring("日本'"), "N'日本'''");
    }
}
