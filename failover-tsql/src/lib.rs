//! # failover-tsql
//!
//! The one place for every piece of T-SQL the SQL backends (`backend-tiberius`,
//! `backend-odbc`) send, and for turning the rows they get back into the core's types.
//!
//! - [`quote_ident`] / [`quote_nstring`]: the only way names and values enter SQL text.
//!   Identifiers are bracket-quoted with `]` doubled, strings are `N'…'` with `'` doubled.
//! - [`build`]: one function per [`Backend`](failover_core::Backend) operation producing the
//!   exact batch. The simulator (`mssql-sim`) implements exactly these statements.
//! - [`rows`]: typed parsers from a driver-neutral row representation ([`Row`]) into
//!   [`InstanceProbe`](failover_core::InstanceProbe), [`DatabasePosition`](failover_core::DatabasePosition),
//!   [`LocationRecord`](failover_core::LocationRecord)…
//! - [`plan`]: the pre-checks both backends share (which databases to touch, which errors to
//!   report before sending anything).
//! - [`errors`]: SQL Server error number -> [`BackendError`](failover_core::BackendError).
//! - [`lex`]: a small T-SQL tokenizer, used by the tests to prove the produced text has
//!   exactly the intended statements, and available to the simulator.
#![warn(missing_docs)]

pub mod build;
pub mod errors;
pub mod lex;
pub mod plan;
pub mod rows;

pub use build::{PositionQuery, SqlConfig};
pub use rows::{Row, RowError, SqlValue};

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
