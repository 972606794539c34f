//! Backend over unixODBC via odbc-api
#![warn(missing_docs)]

pub mod classify;
pub mod connstr;
pub mod driver;
pub mod secret;
