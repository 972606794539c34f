//! The command implementations: validate every input before connecting, then run.

use crate::backends;
use crate::cli::{BackendKind, Cli, Command, ConnArgs, FailoverArgs, RunArgs, StatusArgs};
use crate::config::{Config, TlsMode, parse_duration};
use crate::output::{render_plan, render_result};
use crate::progress::ProgressObserver;
use crate::report::{self, ReportDoc};
use crate::secret::Password;
use crate::status;
use clap::Parser;
use failover_core::journal::JournalRecord;
use failover_core::{
    CancelHandle, Driver, FailoverRequest, FileJournal, Journal, Mode, Outcome, RunReport,
};
use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Exit code: bad input or usage, nothing changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: refused before any change.
pub const EXIT_REFUSED: i32 = 3;

/// A command that stopped before running: what happened, what to do next, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process exit code (2 or 3).
    pub code: i32,
    /// What happened.
    pub what: String,
    /// What to do next.
    pub next: String,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn usage(what: impl Into<String>, next: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            what: what.into(),
            next: next.into(),
        }
    }
    /// Refused before any change (exit 3).
    pub fn refused(what: impl Into<String>, next: impl Into<String>) -> Self {
        Self {
            code: EXIT_REFUSED,
            what: what.into(),
            next: next.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}\n  next: {}", self.what, self.next)
    }
}

/// Runs the command line `args` (including the program name) and returns the exit code.
pub fn main_with(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    init_logging(cli.verbose, cli.quiet);
    let argv: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let quiet = cli.quiet;
    let result = rt.block_on(async move {
        match cli.command {
            Command::Failover(a) => failover(a, argv, quiet).await,
            Command::Restore(a) => run_prepared(prepare(&a.run, Mode::Restore)?, argv, quiet).await,
            Command::Status(a) => status_cmd(a).await,
            Command::Demo(a) => crate::demo::run(a, argv, quiet).await,
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
            eprintln!("{f}");
            f.code
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CMS_FAILOVER_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!(
                "warn,tiberius=error,examples={level},failover_core={level},cms_failover={level}"
            ))
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Everything a run needs, validated before any connection.
pub struct Prepared {
    /// The topology file.
    pub config: Config,
    /// The request.
    pub request: FailoverRequest,
    /// The login.
    pub user: String,
    /// Its password.
    pub password: Password,
    /// The backend to build.
    pub backend: BackendKind,
    /// `--report`.
    pub report: Option<PathBuf>,
    /// The journal (`None`: what-if with no journal yet).
    pub journal: Option<Arc<FileJournal>>,
    /// `--json`.
    pub json: bool,
    /// `--confirm`.
    pub confirm: bool,
    /// `--yes`.
    pub yes: bool,
}

/// A fresh run id: `YYYYMMDDTHHMMSSZ-<pid>`.
pub fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!(
        "{}-{}",
        now.format(&f).unwrap_or_else(|_| "run".into()),
        std::process::id()
    )
}

/// The default journal directory: `$XDG_STATE_HOME/cms-failover`, else
/// `$HOME/.local/state/cms-failover`, else `./.cms-failover`.
pub fn default_journal_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("cms-failover");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/state/cms-failover");
    }
    PathBuf::from(".cms-failover")
}

/// Checks that `path` can be written as the report, without leaving anything behind.
pub fn check_report_path(path: &Path) -> Result<(), Failure> {
    let next = "give --report a writable file path (its directory must exist)";
    if path.is_dir() {
        return Err(Failure::usage(
            format!("the report path `{}` is a directory", path.display()),
            next,
        ));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Failure::usage(
            format!(
                "cannot write the report `{}`: the directory `{}` does not exist",
                path.display(),
                parent.display()
            ),
            next,
        ));
    }
    let res = if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| ())
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|_| std::fs::remove_file(path))
    };
    res.map_err(|e| {
        Failure::usage(
            format!("cannot write the report `{}`: {e}", path.display()),
            next,
        )
    })
}

fn duration_flag(v: &Option<String>, flag: &str) -> Result<Option<std::time::Duration>, Failure> {
    v.as_deref()
        .map(|s| {
            parse_duration(s).map_err(|e| {
                Failure::usage(
                    format!("{flag}: {e}"),
                    format!("pass {flag} like 30s, 5m or 500ms"),
                )
            })
        })
        .transpose()
}

/// Loads the topology and applies the connection flags. Connects to nothing.
pub fn load_config(conn: &ConnArgs) -> Result<Config, Failure> {
    let mut config = Config::load(&conn.topology).map_err(|e| {
        Failure::usage(
            format!("invalid topology file: {e}"),
            "fix the topology file (the format is in examples/README.md and examples/topology.example.toml)",
        )
    })?;
    if let Some(t) = &conn.tls {
        config.connection.tls = TlsMode::parse(t).ok_or_else(|| {
            Failure::usage(
                format!("--tls `{t}` is not a TLS mode"),
                "use --tls strict, --tls trust-server-certificate or --tls off",
            )
        })?;
    }
    if let Some(d) = duration_flag(&conn.step_timeout, "--step-timeout")? {
        config.settings.step_timeout = d;
    }
    backends::check(conn.backend, &config)?;
    Ok(config)
}

/// Reads the login's password. Connects to nothing.
pub fn load_login(config: &Config) -> Result<(String, Password), Failure> {
    let login = config.login.as_ref().ok_or_else(|| {
        Failure::usage(
            format!(
                "{}: the topology has no [login] section",
                config.path.display()
            ),
            "add [login] with user and password_env (or password_file)",
        )
    })?;
    let pw = login.password.load().map_err(|e| {
        Failure::usage(
            e.to_string(),
            format!(
                "provide the SQL login's password through the {} named in the topology's [login]",
                login.password.describe()
            ),
        )
    })?;
    Ok((login.user.clone(), pw))
}

fn failover_mode(a: &FailoverArgs) -> Result<Mode, Failure> {
    let dr = a.force
        || a.backup_sql_server_fqdn.is_some()
        || a.backup_sql_instance_name.is_some()
        || a.backup_mirror_sql_server_fqdn.is_some()
        || a.backup_mirror_sql_instance_name.is_some();
    if !dr {
        return Ok(Mode::Planned);
    }
    let next = "disaster recovery takes --force --backup-sql-server-fqdn FQDN [--backup-sql-instance-name NAME] [--backup-mirror-sql-server-fqdn FQDN --backup-mirror-sql-instance-name NAME]; a planned failover takes none of these";
    // Each flag on its own first, so the message names exactly the flag that is wrong.
    for (flag, v) in [
        ("--backup-sql-server-fqdn", &a.backup_sql_server_fqdn),
        (
            "--backup-mirror-sql-server-fqdn",
            &a.backup_mirror_sql_server_fqdn,
        ),
    ] {
        if let Some(v) = v {
            failover_core::InstanceAddr::parse(v)
                .map_err(|e| Failure::usage(e.in_field(flag).to_string(), next))?;
        }
    }
    for (flag, v) in [
        ("--backup-sql-instance-name", &a.backup_sql_instance_name),
        (
            "--backup-mirror-sql-instance-name",
            &a.backup_mirror_sql_instance_name,
        ),
    ] {
        if let Some(v) = v {
            failover_core::InstanceName::parse(v)
                .map_err(|e| Failure::usage(e.in_field(flag).to_string(), next))?;
        }
    }
    Mode::disaster_recovery(
        a.force,
        a.backup_sql_server_fqdn.as_deref(),
        a.backup_sql_instance_name.as_deref(),
        a.backup_mirror_sql_server_fqdn.as_deref(),
        a.backup_mirror_sql_instance_name.as_deref(),
    )
    .map_err(|e| Failure::usage(e.to_string(), next))
}

/// Validates a `failover`/`restore` invocation completely, before any connection.
pub fn prepare(run: &RunArgs, mode: Mode) -> Result<Prepared, Failure> {
    let mut config = load_config(&run.conn)?;
    if let Some(d) = duration_flag(&run.replication_timeout, "--replication-timeout")? {
        config.settings.replication_timeout = d;
    }
    if let Some(d) = duration_flag(&run.catch_up_timeout, "--catch-up-timeout")? {
        config.settings.catch_up_timeout = d;
    }
    let run_id = match &run.run_id {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            id.clone()
        }
        Some(id) => {
            return Err(Failure::usage(
                format!("--run-id `{id}` is not valid"),
                "use 1-64 letters, digits, `-`, `_` or `.`",
            ));
        }
        None => new_run_id(),
    };
    let mut request = FailoverRequest::new(run_id, config.topology.clone(), mode).map_err(|e| {
        Failure::usage(
            e.to_string(),
            "name a backup store that is not the topology's active store",
        )
    })?;
    request.what_if = run.what_if;
    request.settings = config.settings.clone();
    if let Some(r) = &run.report {
        check_report_path(r)?;
    }
    let (user, password) = load_login(&config)?;
    let dir = run.journal_dir.clone().unwrap_or_else(default_journal_dir);
    let journal = if run.what_if && !dir.join("journal.jsonl").exists() {
        None
    } else {
        Some(Arc::new(FileJournal::open(&dir).map_err(|e| {
            Failure::usage(
                format!("cannot open the journal in `{}`: {e}", dir.display()),
                "give --journal-dir a writable directory",
            )
        })?))
    };
    if run.confirm && !run.yes && !run.what_if && !std::io::stdin().is_terminal() {
        return Err(Failure::refused(
            "--confirm needs an answer but stdin is not a terminal; nothing was changed",
            "run it from a terminal to answer the prompt, or add --yes to confirm from a script",
        ));
    }
    Ok(Prepared {
        config,
        request,
        user,
        password,
        backend: run.conn.backend,
        report: run.report.clone(),
        journal,
        json: run.json,
        confirm: run.confirm,
        yes: run.yes,
    })
}

async fn failover(a: FailoverArgs, argv: Vec<String>, quiet: bool) -> Result<i32, Failure> {
    let mode = failover_mode(&a)?;
    let p = prepare(&a.run, mode)?;
    run_prepared(p, argv, quiet).await
}

/// Asks the operator. `disaster` requires the word `yes`; otherwise `y` or `yes`.
pub fn ask(input: &mut dyn BufRead, out: &mut dyn Write, disaster: bool) -> std::io::Result<bool> {
    if disaster {
        write!(
            out,
            "This forced failover may lose the changes listed above. Type `yes` to proceed: "
        )?;
    } else {
        write!(out, "Proceed with these changes? [y/N] ")?;
    }
    out.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let a = line.trim();
    Ok(if disaster {
        a == "yes"
    } else {
        a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes")
    })
}

/// Runs a prepared failover/restore: optional confirmation, the run with progress and
/// Ctrl-C handling, then the output and the report.
pub async fn run_prepared(p: Prepared, argv: Vec<String>, quiet: bool) -> Result<i32, Failure> {
    let backend = backends::build(
        p.backend,
        &p.config,
        &p.user,
        &p.password,
        p.config.settings.step_timeout,
    )?;
    let secrets = [p.password.expose()];
    let terminal = std::io::stderr().is_terminal();
    let mut driver = Driver::new(backend.clone());
    if let Some(j) = &p.journal {
        driver = driver.with_journal(j.clone() as Arc<dyn Journal>);
    }
    let disaster = matches!(p.request.mode, Mode::DisasterRecovery { .. });

    if p.confirm && !p.request.what_if {
        let mut plan_req = p.request.clone();
        plan_req.what_if = true;
        let plan = driver.run(plan_req).await;
        eprint!("{}", render_plan(&plan));
        if !matches!(plan.outcome, Outcome::Succeeded { .. }) {
            let code = plan.outcome.exit_code();
            finish(&p, &plan, argv, &secrets, None, None)?;
            return Ok(code);
        }
        if disaster && plan.data_loss.is_none() {
            eprintln!("Data-loss estimate: unknown (the source could not be read)");
        }
        if p.yes {
            eprintln!("--yes given: proceeding without asking.");
        } else {
            let ok = tokio::task::spawn_blocking(move || {
                let stdin = std::io::stdin();
                let mut lock = stdin.lock();
                ask(&mut lock, &mut std::io::stderr(), disaster)
            })
            .await
            .map_err(|e| Failure::refused(format!("the prompt failed: {e}"), "run again"))?
            .map_err(|e| {
                Failure::refused(
                    format!("cannot read the answer: {e}"),
                    "run again, or use --yes",
                )
            })?;
            if !ok {
                return Err(Failure::refused(
                    "not confirmed at the prompt; nothing was changed",
                    "run again and answer the prompt when ready",
                ));
            }
        }
    }

    let cancel = CancelHandle::new();
    let observer = Arc::new(ProgressObserver::new(terminal, quiet));
    let driver = driver
        .with_observer(observer.clone())
        .with_cancel(cancel.clone());
    let ctrl_c = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            loop {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                eprintln!("\ncancelling at the next safe point (any fence will be undone)…");
                cancel.cancel();
            }
        }
    });
    let report_run = driver.run(p.request.clone()).await;
    ctrl_c.abort();
    observer.finish();
    let code = report_run.outcome.exit_code();
    finish(&p, &report_run, argv, &secrets, None, None)?;
    Ok(code)
}

/// Builds the report document of `run`.
pub fn report_doc(
    command: &str,
    run: &RunReport,
    argv: Vec<String>,
    before: Option<status::StatusDoc>,
    after: Option<status::StatusDoc>,
) -> ReportDoc {
    ReportDoc {
        tool: "cms-failover",
        version: env!("CARGO_PKG_VERSION"),
        command: command.to_string(),
        argv,
        operator: report::operator(),
        host: report::host(),
        exit_code: run.outcome.exit_code(),
        next_step: report::next_step(&run.outcome, run.what_if),
        status_before: before,
        status_after: after,
        run: run.clone(),
    }
}

/// Writes the HTML report to `path`.
pub fn write_report(path: &Path, doc: &ReportDoc, secrets: &[&str]) -> Result<(), Failure> {
    let html = report::render_html(doc, secrets).map_err(|e| {
        Failure::usage(
            format!("cannot render the report: {e:#}"),
            "report this as a bug",
        )
    })?;
    std::fs::write(path, html).map_err(|e| {
        Failure::usage(
            format!("cannot write the report `{}`: {e}", path.display()),
            "the run itself is over: see its result above; use a writable --report path next time",
        )
    })
}

fn finish(
    p: &Prepared,
    run: &RunReport,
    argv: Vec<String>,
    secrets: &[&str],
    before: Option<status::StatusDoc>,
    after: Option<status::StatusDoc>,
) -> Result<(), Failure> {
    let command = if matches!(run.mode, Mode::Restore) {
        "restore"
    } else {
        "failover"
    };
    let doc = report_doc(command, run, argv, before, after);
    emit(&doc, p.json, p.report.as_deref(), secrets)
}

/// Prints the document (JSON or text) and writes the report, if asked.
pub fn emit(
    doc: &ReportDoc,
    json: bool,
    report: Option<&Path>,
    secrets: &[&str],
) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::to_json(doc, secrets)).expect("json")
        );
    } else if doc.run.what_if {
        print!("{}", report::redact_str(&render_plan(&doc.run), secrets));
    } else {
        print!("{}", report::redact_str(&render_result(&doc.run), secrets));
    }
    if let Some(path) = report {
        write_report(path, doc, secrets)?;
        eprintln!("Report written to {}", path.display());
    }
    Ok(())
}

fn journal_records(dir: &Path) -> Result<Vec<JournalRecord>, Failure> {
    let path = dir.join("journal.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    FileJournal::open(dir)
        .and_then(|j| j.records())
        .map_err(|e| {
            Failure::usage(
                format!("cannot read the journal `{}`: {e}", path.display()),
                "check --journal-dir",
            )
        })
}

async fn status_cmd(a: StatusArgs) -> Result<i32, Failure> {
    let config = load_config(&a.conn)?;
    let dir = a.journal_dir.clone().unwrap_or_else(default_journal_dir);
    let records = journal_records(&dir)?;
    let (user, password) = load_login(&config)?;
    let backend = backends::build(
        a.conn.backend,
        &config,
        &user,
        &password,
        config.settings.step_timeout,
    )?;
    let doc = status::gather(
        backend.as_ref(),
        &config.topology,
        &records,
        config.settings.step_timeout,
    )
    .await;
    if a.json {
        let mut v = serde_json::to_value(&doc).expect("json");
        report::redact(&mut v, &[password.expose()]);
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!(
            "{}",
            report::redact_str(&status::render_text(&doc), &[password.expose()])
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_rules() {
        let mut out = Vec::new();
        assert!(ask(&mut "yes\n".as_bytes(), &mut out, true).unwrap());
        assert!(!ask(&mut "y\n".as_bytes(), &mut out, true).unwrap());
        assert!(!ask(&mut "YES!\n".as_bytes(), &mut out, true).unwrap());
        assert!(ask(&mut "y\n".as_bytes(), &mut out, false).unwrap());
        assert!(!ask(&mut "\n".as_bytes(), &mut out, false).unwrap());
        assert!(!ask(&mut "".as_bytes(), &mut out, false).unwrap());
        assert!(String::from_utf8(out).unwrap().contains("Type `yes`"));
    }

    #[test]
    fn report_path_checks_leave_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("r.html");
        check_report_path(&ok).unwrap();
        assert!(!ok.exists());
        assert_eq!(check_report_path(d.path()).unwrap_err().code, 2);
        assert_eq!(
            check_report_path(&d.path().join("missing/r.html"))
                .unwrap_err()
                .code,
            2
        );
    }
}
