//! The `cms-failover` command-line tool, as a library so its parts are testable.
//!
//! - [`cli`]: the command line (clap).
//! - [`config`]: the topology file (TOML) with line/key error messages.
//! - [`secret`]: the SQL login's password, from an env var or a file.
//! - [`app`]: validation of every input before any connection, the run, exit codes.
//! - [`backends`]: builds backend-tiberius or backend-odbc from the topology.
//! - [`status`], [`output`], [`report`], [`progress`]: what the operator sees.
//! - [`demo`]: the zero-setup demo over the TDS simulator.
#![warn(missing_docs)]

pub mod app;
pub mod backends;
pub mod cli;
pub mod config;
pub mod demo;
pub mod output;
pub mod progress;
pub mod report;
pub mod secret;
pub mod status;
