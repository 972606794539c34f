//! Command-line definitions (clap). Parsing only; nothing here connects anywhere.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Fail the Skype for Business Central Management Store over between SQL Server stores,
/// safely: a typed, resumable state machine with a journal, a lock and a fencing epoch.
///
/// Every command that changes something asks first on a terminal (`--yes` answers for
/// scripts; without a terminal it is required).
///
/// Exit codes: 0 succeeded; 2 bad input or usage (nothing changed, nothing contacted; also a
/// change with no terminal to confirm on and no --yes); 3 refused before any change (a safety
/// check, a declined confirmation); 4 failed and rolled back; 5 failed and needs
/// `cms-failover restore`; 130 cancelled (Ctrl-C, also at the prompt).
#[derive(Debug, Parser)]
#[command(name = "cms-failover", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fail the CMS over: planned to the partner of the store it is recorded on now (so the
    /// same command fails back), or disaster recovery to a named store with --force
    /// --backup-sql-server-fqdn.
    Failover(FailoverArgs),
    /// Put the recorded CMS store back into service after an interrupted or failed run
    /// (clear a fence left behind, verify, release the lock; settles unfinished journal runs).
    Restore(RestoreArgs),
    /// Show where the CMS is active, each store's databases, replication lag and any
    /// unfinished journal run.
    Status(StatusArgs),
    /// Run a failover against simulated SQL Server instances on loopback (no setup needed).
    Demo(DemoArgs),
    /// Print the failover state machine as a Mermaid diagram.
    Diagram,
}

/// Which backend talks to SQL Server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// TDS via tiberius (pure Rust).
    Tiberius,
    /// unixODBC with FreeTDS or Microsoft's ODBC driver.
    Odbc,
}

/// Options shared by every command that talks to SQL Server.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// The topology file (TOML): stores, databases, login, endpoints, timeouts.
    #[arg(short, long, value_name = "FILE", env = "CMS_FAILOVER_TOPOLOGY")]
    pub topology: PathBuf,
    /// The SQL backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Tiberius)]
    pub backend: BackendKind,
    /// Transport security, overriding the topology's `connection.tls`:
    /// strict | trust-server-certificate | off.
    #[arg(long, value_name = "MODE")]
    pub tls: Option<String>,
    /// Timeout of each backend call (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub step_timeout: Option<String>,
}

/// Options shared by `failover` and `restore`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Show the plan (each step, its precondition, what it changes, its SQL and what would
    /// block it now) and change nothing.
    #[arg(long)]
    pub what_if: bool,
    /// Show the whole plan (every step and its SQL) before the confirmation prompt. Without
    /// it the prompt restates from → to, the databases and (disaster recovery) the data-loss
    /// estimate; either way it asks before the first change (disaster recovery: type `yes`).
    #[arg(long)]
    pub confirm: bool,
    /// Confirm without asking (for scripts; required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Write an HTML report of the run to this file.
    #[arg(long, value_name = "PATH.html")]
    pub report: Option<PathBuf>,
    /// Print the result (or the plan) as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Directory of the durable journal.
    #[arg(long, value_name = "DIR", env = "CMS_FAILOVER_JOURNAL_DIR")]
    pub journal_dir: Option<PathBuf>,
    /// How long to wait for replication to catch up before fencing (e.g. 5m).
    #[arg(long, value_name = "DURATION")]
    pub replication_timeout: Option<String>,
    /// How long to wait, after the fence, for the backup to reach the fenced positions.
    #[arg(long, value_name = "DURATION")]
    pub catch_up_timeout: Option<String>,
    /// A run id (default: generated).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

/// `failover`.
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// Common options.
    #[command(flatten)]
    pub run: RunArgs,
    /// Assert the direction: the store the CMS must move to (a server of it,
    /// `fqdn[\instance]`, or the file section `active` / `backup`). Without it, `failover`
    /// moves the CMS to the partner of wherever it is recorded now (failback is the same
    /// command); with it, a run that would go the other way is refused.
    #[arg(long, value_name = "POOL|SERVER")]
    pub to: Option<String>,
    /// Disaster recovery: do not wait for replication (data may be lost). Needs
    /// --backup-sql-server-fqdn. Still asks for `yes` unless --yes is given.
    #[arg(long)]
    pub force: bool,
    /// Disaster recovery: the backup store's SQL Server (`fqdn[,port]`).
    #[arg(long, value_name = "FQDN")]
    pub backup_sql_server_fqdn: Option<String>,
    /// Disaster recovery: the backup store's instance name (default instance if omitted).
    #[arg(long, value_name = "NAME")]
    pub backup_sql_instance_name: Option<String>,
    /// Disaster recovery: the backup store's mirror server (with its instance name).
    #[arg(long, value_name = "FQDN")]
    pub backup_mirror_sql_server_fqdn: Option<String>,
    /// Disaster recovery: the backup store's mirror instance name (with its server).
    #[arg(long, value_name = "NAME")]
    pub backup_mirror_sql_instance_name: Option<String>,
}

/// `restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Common options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Directory of the durable journal (for unfinished runs).
    #[arg(long, value_name = "DIR", env = "CMS_FAILOVER_JOURNAL_DIR")]
    pub journal_dir: Option<PathBuf>,
}

/// The failover the demo shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMode {
    /// Planned failover to the backup pool's store.
    Planned,
    /// The active store goes down; forced failover to the backup store and its mirror.
    Disaster,
    /// A failover is interrupted after fencing; restore puts the CMS back into service.
    Restore,
}

/// `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Which path to show.
    #[arg(long, value_enum, default_value_t = DemoMode::Planned)]
    pub mode: DemoMode,
    /// Show the plan only.
    #[arg(long)]
    pub what_if: bool,
    /// The SQL backend the demo uses.
    #[arg(long, value_enum, default_value_t = BackendKind::Tiberius)]
    pub backend: BackendKind,
    /// Where to write the HTML report (default: a file in the system temp directory).
    #[arg(long, value_name = "PATH.html")]
    pub report: Option<PathBuf>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Replication lag (in changes) the backup starts with, to show the catch-up wait.
    #[arg(long, default_value_t = 300)]
    pub lag: u64,
}
