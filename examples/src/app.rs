//! The entry point: parse the command line, start logging and the runtime, dispatch to the
//! command. Every other module is independent of this one.

use crate::cli::{Cli, Command};
use crate::{demo, logging, run, status_cmd};
use clap::Parser;
use std::ffi::OsString;

/// Runs the command line `args` (including the program name) and returns the exit code.
pub fn main_with(args: Vec<OsString>) -> i32 {
    // Under `--json`, every failure is one JSON object on stdout too (kind `error`).
    let json = args.iter().skip(1).any(|a| a == "--json");
    let command = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .find(|a| !a.starts_with('-'))
        .map_or_else(|| "cms-failover".to_string(), |a| a.into_owned());
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            let code = e.exit_code();
            if json && code != 0 {
                let what = e.kind().to_string();
                let f = crate::failure::Failure {
                    code,
                    what: format!("bad command line: {what}"),
                    next: "see `cms-failover --help`".into(),
                    shown: false,
                };
                crate::json::print(&crate::json::error_doc(&command, &f));
            }
            return code;
        }
    };
    logging::init(cli.verbose, cli.quiet);
    let argv: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let rt = match logging::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let quiet = cli.quiet;
    let result = rt.block_on(async move {
        match cli.command {
            Command::Failover(a) => run::failover(a, argv, quiet).await,
            Command::Restore(a) => run::restore(a, argv, quiet).await,
            Command::Status(a) => status_cmd::run(a).await,
            Command::Demo(a) => demo::run(a, argv, quiet).await,
            Command::Diagram => {
                print!("{}", failover_core::machine::mermaid());
                Ok(0)
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(f) => {
            if !f.shown {
                eprintln!("{f}");
                if json {
                    crate::json::print(&crate::json::error_doc(&command, &f));
                }
            }
            f.code
        }
    }
}
