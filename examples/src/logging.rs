//! The process runtime and logging: the tokio runtime and the tracing subscriber on stderr.

use std::io::IsTerminal;

/// The tracing filter used unless `CMS_FAILOVER_LOG` gives one: this tool's crates at the
/// level of `-v`/`-q`, third-party crates at `warn`, and tiberius silent unless `-vv` (it
/// logs server errors at ERROR that the backend classifies and handles itself).
pub fn default_filter(verbose: u8, quiet: bool) -> String {
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let tiberius = match verbose {
        0 | 1 => "off",
        _ => "debug",
    };
    format!("warn,tiberius={tiberius},examples={level},failover_core={level},cms_failover={level}")
}

/// Installs the stderr subscriber (`CMS_FAILOVER_LOG` overrides [`default_filter`]).
pub fn init(verbose: u8, quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CMS_FAILOVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(verbose, quiet)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(crate::style::stderr_colour())
        .try_init();
}

/// The multi-threaded runtime the commands run on (two workers).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Whether stderr is a terminal (progress bar, prompts, colour).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiberius_is_silent_unless_very_verbose() {
        assert!(default_filter(0, false).contains("tiberius=off"));
        assert!(default_filter(1, false).contains("tiberius=off"));
        assert!(default_filter(2, false).contains("tiberius=debug"));
        assert!(default_filter(0, true).contains("examples=error"));
    }
}
