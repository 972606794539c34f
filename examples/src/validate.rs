//! Validation of every input of `failover` / `restore` / `status` before any connection:
//! the topology, the flags, the login, the report path, the journal and how the run will be
//! confirmed.

use crate::backends;
use crate::cli::{BackendKind, ConnArgs, FailoverArgs, RunArgs};
use crate::config::{Config, LoginConfig, TlsMode, parse_duration};
use crate::failure::Failure;
use crate::secret::Credentials;
use failover_core::{FailoverRequest, FileJournal, Mode, Topology};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a run that changes something is confirmed before its first change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Nothing to confirm: a what-if run changes nothing.
    NotNeeded,
    /// Ask at the terminal (the default there; `--confirm` also shows the whole plan).
    Ask {
        /// `--confirm`: print the full plan (steps and SQL) before the short restatement.
        full_plan: bool,
    },
    /// `--yes`: answered for a script, without asking.
    Yes {
        /// `--confirm` too: the plan and the restatement are still printed.
        full_plan: bool,
    },
}

/// Decides how a `failover` / `restore` invocation is confirmed. Without a terminal on stdin
/// and without `--yes`, a run that changes something is refused here, before any connection.
pub fn confirm_policy(run: &RunArgs, stdin_is_terminal: bool) -> Result<Confirm, Failure> {
    if run.what_if {
        return Ok(Confirm::NotNeeded);
    }
    if run.yes {
        return Ok(Confirm::Yes {
            full_plan: run.confirm,
        });
    }
    if !stdin_is_terminal {
        return Err(Failure::usage(
            "this command changes the CMS and must be confirmed, but stdin is not a terminal to ask on; nothing was changed and nothing was contacted",
            "run it from a terminal to answer the prompt, add --yes to confirm from a script, or use --what-if to see the plan",
        ));
    }
    Ok(Confirm::Ask {
        full_plan: run.confirm,
    })
}

/// Everything a run needs, validated before any connection.
pub struct Prepared {
    /// The topology file.
    pub config: Config,
    /// The request.
    pub request: FailoverRequest,
    /// The login.
    pub credentials: Credentials,
    /// The backend to build.
    pub backend: BackendKind,
    /// `--report`.
    pub report: Option<PathBuf>,
    /// The journal (`None`: what-if with no journal yet).
    pub journal: Option<Arc<FileJournal>>,
    /// `--json`.
    pub json: bool,
    /// How the run is confirmed before its first change.
    pub confirm: Confirm,
}

/// The operator's wall clock in Unix seconds: the lower bound of a new epoch (see
/// `failover_core::Settings::epoch_clock`), so a commit made while the store holding the
/// newest record was down still orders after it.
pub fn epoch_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
            "fix the topology file: `[active]` and `[backup]` each need `principal = 'fqdn[\\instance]'`, `[login]` needs `user` and `password_env` or `password_file`; every key is described in the operating guide (docs/operating.md in the source tree)",
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
pub fn load_login(config: &Config) -> Result<Credentials, Failure> {
    let login = config.login.as_ref().ok_or_else(|| {
        Failure::usage(
            format!(
                "{}: the topology has no [login] section",
                config.path.display()
            ),
            "add [login] with user and password_env (or password_file), or method = \"kerberos\"",
        )
    })?;
    let (user, password, ntlm) = match login {
        LoginConfig::Kerberos => return Ok(Credentials::Kerberos),
        LoginConfig::Sql { user, password } => (user, password, false),
        LoginConfig::Ntlm { user, password } => (user, password, true),
    };
    let pw = password.load().map_err(|e| {
        Failure::usage(
            e.to_string(),
            format!(
                "provide the SQL login's password through the {} named in the topology's [login]",
                password.describe()
            ),
        )
    })?;
    let user = user.clone();
    Ok(if ntlm {
        Credentials::Ntlm { user, password: pw }
    } else {
        Credentials::Sql { user, password: pw }
    })
}

/// The run mode of a `failover` invocation: planned, or disaster recovery when any of
/// `--force` / `--backup-*` is given (each flag validated on its own).
pub fn failover_mode(a: &FailoverArgs) -> Result<Mode, Failure> {
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
    let addr = |v: &str| failover_core::InstanceAddr::parse(v).map(drop);
    let name = |v: &str| failover_core::InstanceName::parse(v).map(drop);
    type Check<'a> = &'a dyn Fn(&str) -> Result<(), failover_core::ValidationError>;
    let flags: [(&str, &Option<String>, Check); 4] = [
        ("--backup-sql-server-fqdn", &a.backup_sql_server_fqdn, &addr),
        (
            "--backup-sql-instance-name",
            &a.backup_sql_instance_name,
            &name,
        ),
        (
            "--backup-mirror-sql-server-fqdn",
            &a.backup_mirror_sql_server_fqdn,
            &addr,
        ),
        (
            "--backup-mirror-sql-instance-name",
            &a.backup_mirror_sql_instance_name,
            &name,
        ),
    ];
    for (flag, v, check) in flags {
        if let Some(v) = v {
            check(v).map_err(|e| Failure::usage(e.in_field(flag).to_string(), next))?;
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

/// The topology a disaster recovery runs with. The pool pair is symmetric: a disaster
/// recovery to the file's `[active]` store (the store a planned failover left, whose partner
/// has now died) runs with the file's `[backup]` as its source, so moving back after a
/// failover needs no file edit, like a planned failback ([`crate::pair`]). The run's own
/// preflight then decides from the location records whether there is anything to do. A
/// target that shares an instance with both stores is still refused (source equals target).
pub fn disaster_recovery_source(file: &Topology, mode: &Mode) -> Topology {
    match mode {
        Mode::DisasterRecovery { target }
            if target.instances().any(|i| file.active.contains(i))
                && !target.instances().any(|i| file.backup.contains(i)) =>
        {
            crate::pair::swapped(file)
        }
        _ => file.clone(),
    }
}

/// Lets the server names SQL Server reports (`mirroring_partner_instance`) map to the
/// instances of a disaster-recovery target given on the command line, by the same rule as
/// the topology file's instances (the host's first DNS label and the instance name,
/// [`failover_core::ServerNames`]), not only when they are `[endpoints]` keys. Such a target
/// cannot have `[aliases]` (they name instances of the file), so a name the rule does not
/// map refuses the run before any change (`mirror_partner_unmapped`), saying what to do.
pub fn map_target_names(config: &mut crate::config::Config, mode: &Mode) {
    if let Mode::DisasterRecovery { target } = mode {
        config.sql.server_names =
            std::mem::take(&mut config.sql.server_names).with_instances(target.instances());
    }
}

/// Validates a `failover`/`restore` invocation completely, before any connection.
pub fn prepare(run: &RunArgs, mode: Mode) -> Result<Prepared, Failure> {
    let mut config = load_config(&run.conn)?;
    map_target_names(&mut config, &mode);
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
    let topology = disaster_recovery_source(&config.topology, &mode);
    let mut request = FailoverRequest::new(run_id, topology, mode).map_err(|e| {
        Failure::usage(
            e.to_string(),
            "name the other store of the pair (its principal, or its mirror with its principal)",
        )
    })?;
    request.what_if = run.what_if;
    request.settings = config.settings.clone();
    request.settings.epoch_clock = epoch_clock();
    if let Some(r) = &run.report {
        check_report_path(r)?;
    }
    let credentials = load_login(&config)?;
    let confirm = confirm_policy(run, std::io::stdin().is_terminal())?;
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
    Ok(Prepared {
        config,
        request,
        credentials,
        backend: run.conn.backend,
        report: run.report.clone(),
        journal,
        json: run.json,
        confirm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disaster_recovery_to_the_file_active_store_runs_from_its_partner() {
        let file = failover_core::Topology::new(
            failover_core::Store::new("a.example\\RTC".parse().unwrap(), None).unwrap(),
            failover_core::Store::new("b.example\\RTC".parse().unwrap(), None).unwrap(),
            vec!["xds".parse().unwrap()],
        )
        .unwrap();
        let dr = |t: &failover_core::Store| Mode::DisasterRecovery { target: t.clone() };
        // To the backup: the file as it is.
        assert_eq!(disaster_recovery_source(&file, &dr(&file.backup)), file);
        // Back to the file's active store: its partner is the source.
        let back = disaster_recovery_source(&file, &dr(&file.active));
        assert_eq!(back.active, file.backup);
        assert_eq!(back.backup, file.active);
        // Planned and restore never turn the file here (planned is oriented by records).
        assert_eq!(disaster_recovery_source(&file, &Mode::Planned), file);
        assert_eq!(disaster_recovery_source(&file, &Mode::Restore), file);
    }
    use crate::cli::Cli;
    use clap::Parser;

    /// A disaster-recovery target given on the command line, outside the topology file and
    /// its `[endpoints]`: the names its servers report map to it by the host-label rule, as
    /// for the file's instances; a name that rule does not map stays an error saying why.
    #[test]
    fn a_command_line_disaster_recovery_target_is_mapped_by_the_host_label_rule() {
        let file = "databases = [\"xds\"]\n[active]\nprincipal = 'sql-a.contoso.com\\RTC'\n[backup]\nprincipal = 'sql-b.contoso.com\\RTC'\n[login]\nuser = \"u\"\npassword_env = \"CMS_PW\"\n[connection]\ntls = \"off\"\n";
        let mut config =
            crate::config::Config::parse(std::path::Path::new("t.toml"), file).unwrap();
        let mode = Mode::disaster_recovery(
            true,
            Some("sql-c.contoso.com"),
            Some("RTC"),
            Some("sql-c2.contoso.com"),
            Some("RTC"),
        )
        .unwrap();
        let names = &config.sql.server_names;
        assert!(names.resolve("SQL-C2\\RTC").is_err(), "not mapped before");
        map_target_names(&mut config, &mode);
        let names = &config.sql.server_names;
        assert_eq!(
            names.resolve("SQL-C2\\RTC").unwrap().to_string(),
            "sql-c2.contoso.com\\RTC"
        );
        assert_eq!(
            names.resolve("sql-c\\rtc").unwrap().to_string(),
            "sql-c.contoso.com\\RTC"
        );
        // The file's own instances still map.
        assert_eq!(
            names.resolve("SQL-A\\RTC").unwrap().to_string(),
            "sql-a.contoso.com\\RTC"
        );
        let e = names.resolve("SQLC99\\RTC").unwrap_err();
        assert!(e.to_string().contains("names no instance"), "{e}");
        // Planned and restore add nothing.
        let before = config.sql.server_names.clone();
        map_target_names(&mut config, &Mode::Planned);
        assert_eq!(config.sql.server_names, before);
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["cms-failover", "failover", "-t", "t.toml"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Failover(a) => a.run,
            _ => unreachable!(),
        }
    }

    #[test]
    fn confirmation_policy() {
        let ask = |e: &[&str], tty| confirm_policy(&run_args(e), tty);
        assert_eq!(ask(&[], true), Ok(Confirm::Ask { full_plan: false }));
        assert_eq!(
            ask(&["--confirm"], true),
            Ok(Confirm::Ask { full_plan: true })
        );
        assert_eq!(
            ask(&["--yes"], false),
            Ok(Confirm::Yes { full_plan: false })
        );
        assert_eq!(
            ask(&["--confirm", "--yes"], false),
            Ok(Confirm::Yes { full_plan: true })
        );
        assert_eq!(ask(&["--what-if"], false), Ok(Confirm::NotNeeded));
        for e in [&[][..], &["--confirm"][..]] {
            let f = ask(e, false).unwrap_err();
            assert_eq!(f.code, 2);
            assert!(
                f.next.contains("--yes") && f.what.contains("not a terminal"),
                "{f}"
            );
        }
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
