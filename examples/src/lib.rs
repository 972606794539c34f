//! The `cms-failover` command-line tool, as a library so its parts are testable.
//!
//! Dependencies point one way: [`app`] (the entry point) uses the commands ([`run`],
//! [`status_cmd`], [`demo`]), which use the concerns below them; nothing uses [`app`].
//!
//! - [`cli`]: the command line (clap).
//! - [`config`]: the topology file (TOML) with line/key error messages; [`sections`]: its
//!   `[backup_service]` and `[directory]` sections.
//! - [`secret`]: the SQL login's password, from an env var or a file.
//! - [`failure`]: a command that stopped before running, and its exit code.
//! - [`logging`]: the runtime and the log subscriber.
//! - [`validate`]: every input checked before any connection.
//! - [`prompt`]: the confirmation prompt.
//! - [`run`]: `failover` / `restore`; [`status_cmd`]: `status`; [`demo`]: the zero-setup
//!   demo over the TDS simulator.
//! - [`pair`]: the pool pair, so `failover` also fails back.
//!   demo over the TDS simulator; [`status_directory`]: the directory in `status` (and the
//!   one switch that hands it to the driver).
//! - [`backends`]: builds backend-tiberius or backend-odbc from the topology.
//! - [`json`]: the `--json` documents (schema `docs/report.schema.json`); [`svg`]: the
//!   report's timeline and state diagram.
//! - [`emit`], [`report`], [`output`], [`status`], [`progress`], [`style`]: what the operator
//!   sees; [`verdict`]: how a command ended (a what-if says what *would* happen);
//!   [`witness`]: what the mirroring witness means for a run.
#![warn(missing_docs)]

pub mod app;
pub mod backends;
pub mod cli;
pub mod config;
pub mod demo;
pub mod emit;
pub mod failure;
pub mod json;
pub mod logging;
pub mod output;
pub mod pair;
pub mod progress;
pub mod prompt;
pub mod report;
pub mod run;
pub mod secret;
pub mod sections;
pub mod status;
pub mod status_cmd;
pub mod status_directory;
pub mod style;
pub mod svg;
pub mod validate;
pub mod verdict;
pub mod witness;
