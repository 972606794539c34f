//! The T-SQL side: parsing the backends' statements and running them against the estate.

pub mod exec;
pub mod parse;
