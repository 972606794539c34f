//! The crash campaign: the `cms-failover` CLI against two `mssql-sim` processes with durable
//! state (one per store), killed at every journal record of every mode (the `fail` crate's
//! `journal::appended` crash point: `abort()`, no unwinding) and at seeded random times
//! (SIGKILL of the CLI, of the source and of the target server), then recovered the way
//! docs/recovery.md tells an operator, then checked through an independent client (FreeTDS
//! `tsql`): each database has exactly one writable copy, the newest location record names
//! it, no application lock is left, and the journal has no unfinished run.
//!
//! The test binary is its own simulator: started with `CRASH_CAMPAIGN_SIM=1` it runs
//! `mssql-sim`'s command line (so every store is a separate process that can be SIGKILLed).
//!
//! `CMS_FAILOVER_CRASH_TRIALS` sets the number of random trials (default 40); the seed is
//! the property tests' (derived from the commit, `PROPTEST_RNG_SEED` to replay) and a
//! failure prints the command that replays it. `CMS_FAILOVER_CRASH_ONLY=planned|disaster|
//! restore|epoch|random|directory` runs one part.
//!
//! The `directory` part (when a Samba AD DC can run: root and the packages of
//! `scripts/test-all.sh`; SKIPPED otherwise, a failure under `CI`) gives the topology a
//! `[directory]` on a throw-away Samba DC, so the commit point is the service control point,
//! and kills the CLI after each journal record and after each backend call around the
//! directory swap of a planned failover and a disaster recovery
//! (`CMS_FAILOVER_CRASH_DIR_TRIALS` of them, default 24); after the recovery the SCP, read with
//! `ldapsearch`, must name the single writable store.

mod common;

use common::samba::SambaDc;
use common::{PW_VAR, topology_text};
use failover_core::InstanceAddr;
use failover_core::journal::{Journal, JournalEvent, unfinished_runs};
use failover_core::{FileJournal, StateName};
use failover_tsql::{SqlConfig, build};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const SIM_ROLE: &str = "CRASH_CAMPAIGN_SIM";
const SA_PASSWORD: &str = "Crash-campaign-sa-0!";
const LOGIN_USER: &str = backend_fake::fixtures::LOGIN_USER;
const LOGIN_PASSWORD: &str = backend_fake::fixtures::LOGIN_PASSWORD;
const CLI: &str = env!("CARGO_BIN_EXE_cms-failover");
/// A CLI run that takes longer than this is a hang (the timeouts in the topology are short).
const CLI_LIMIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    if std::env::var_os(SIM_ROLE).is_some() {
        let mut args: Vec<_> = std::env::args_os().collect();
        args[0] = "mssql-sim".into();
        return mssql_sim::cli::main_with(args);
    }
    campaign()
}

// ----- the two stores, each its own simulator process -----

fn a() -> InstanceAddr {
    backend_fake::fixtures::active()
}
fn b() -> InstanceAddr {
    backend_fake::fixtures::backup()
}

/// One store served by its own `mssql-sim` process with durable state.
#[derive(Debug)]
struct Server {
    instance: InstanceAddr,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A port that is free now, below Linux's ephemeral range (32768-60999 by default) so the
/// clients' own outgoing connections cannot take it while a server is down.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 6_000) as u16 * 2,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = if p >= 32_000 { 20_000 + p % 12_000 } else { p };
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

impl Server {
    /// Writes the store's estate file (xds and lis at position 1000; writable on the active
    /// store, read-only standby copies on the backup; the initial location record on both).
    fn new(root: &Path, instance: InstanceAddr, active: bool) -> Self {
        let dir = root.join(if active { "store-a" } else { "store-b" });
        std::fs::create_dir_all(&dir).unwrap();
        let server = Self {
            instance,
            port: free_port(),
            dir,
            child: None,
        };
        server.write_estate(active);
        server
    }

    fn write_estate(&self, active: bool) {
        let (instance, port) = (&self.instance, self.port);
        let mut estate = format!("[[instance]]\nname = '{instance}'\nport = {port}\n");
        for db in ["xds", "lis"] {
            estate.push_str(&format!(
                "  [[instance.database]]\n  name = \"{db}\"\n  read_only = {}\n  position = 1000\n",
                !active
            ));
        }
        estate.push_str(&format!(
            "[[login]]\nuser = \"{LOGIN_USER}\"\npassword_env = \"{PW_VAR}\"\n\n\
             [[location]]\ninstance = '{instance}'\nepoch = 1\nprincipal = '{}'\nrun_id = \"initial\"\n",
            a()
        ));
        std::fs::write(self.dir.join("estate.toml"), estate).unwrap();
    }

    /// Starts the first time: another program may have taken the port since it was chosen,
    /// so a port that cannot be bound is replaced by a new one (before any topology names it).
    fn first_start(&mut self, active: bool) {
        for _ in 0..10 {
            if self.try_start().is_ok() {
                return;
            }
            self.port = free_port();
            self.write_estate(active);
        }
        panic!("{} could not start on any port", self.instance);
    }

    /// Restarts on the same port and state dir (retrying while the port is still held).
    fn start(&mut self) {
        let mut last = String::new();
        for _ in 0..50 {
            match self.try_start() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} did not restart on port {}: {last}",
            self.instance, self.port
        );
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SIM_ROLE, "1")
            .env("MSSQL_SIM_PASSWORD", SA_PASSWORD)
            .env(PW_VAR, LOGIN_PASSWORD)
            .arg("--estate")
            .arg(self.dir.join("estate.toml"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} did not start: {line:?}", self.instance));
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

// ----- the independent client -----

/// Runs `batches` through FreeTDS `tsql` as `sa`; returns the result sets.
fn tsql(port: u16, batches: &[String]) -> Vec<Vec<Vec<Option<String>>>> {
    let mut child = Command::new("tsql")
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "sa",
            "-P",
            "-",
        ])
        .env("TDSVER", "7.4")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("FreeTDS `tsql` must be installed (scripts/test-all.sh installs freetds-bin)");
    let mut script = format!("{SA_PASSWORD}\n");
    for b in batches {
        script.push_str(b);
        script.push_str("\ngo\n");
    }
    script.push_str("exit\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let sets = tsql_sets(&text);
    assert!(
        !sets.is_empty() || batches.is_empty(),
        "tsql on port {port} returned nothing: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sets
}

/// Result sets printed by `tsql`, without their header lines.
fn tsql_sets(out: &str) -> Vec<mssql_sim::freetds::TsqlSet> {
    mssql_sim::freetds::tsql_sets(out)
        .into_iter()
        .map(|set| set.into_iter().skip(1).collect())
        .collect()
}

/// What the independent client sees on one store.
#[derive(Debug)]
struct Seen {
    /// `(name, state_desc, is_read_only)`.
    databases: Vec<(String, String, bool)>,
    /// `(epoch, principal, run_id)`.
    location: Option<(u64, String, String)>,
    /// Whether a new session got the failover lock at once.
    lock_free: bool,
}

fn look(port: u16) -> Seen {
    let cfg = SqlConfig::default();
    let sets = tsql(
        port,
        &[
            "SELECT name, state_desc, is_read_only FROM sys.databases WHERE name IN (N'xds', N'lis') ORDER BY name;".into(),
            build::read_location(&cfg),
            build::acquire_lock("cms-failover"),
        ],
    );
    assert_eq!(sets.len(), 3, "three result sets from {port}: {sets:?}");
    let databases = sets[0]
        .iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[1].clone().unwrap(),
                r[2].as_deref() == Some("1"),
            )
        })
        .collect();
    let location = sets[1].first().map(|r| {
        (
            r[0].as_deref().unwrap().parse().unwrap(),
            r[1].clone().unwrap(),
            r[3].clone().unwrap_or_default(),
        )
    });
    let lock_free = sets[2][0][0].as_deref() == Some("0");
    Seen {
        databases,
        location,
        lock_free,
    }
}

// ----- one trial -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Planned,
    Disaster,
    Restore,
}

/// How a trial's run is interrupted.
#[derive(Debug, Clone)]
enum Crash {
    /// Not at all.
    None,
    /// `abort()` right after the k-th journal record (0-based) of the run.
    AfterRecord(usize),
    /// `abort()` inside a step, right after the k-th backend call (0-based) returned: its
    /// effect landed, its result is neither journaled nor acted on.
    AfterCall(usize),
    /// No crash; count the backend calls into this file (the `driver::op_done` points).
    CountCalls(PathBuf),
    /// `abort()` right after the k-th journal record, the calls before it counted into the
    /// file (how many calls come before a step).
    CountCallsUntilRecord(usize, PathBuf),
    /// SIGKILL of the CLI after this long.
    KillCli(Duration),
    /// SIGKILL of the source server after this long (restarted once the CLI is done).
    KillSource(Duration),
    /// SIGKILL of the target server after this long (restarted once the CLI is done).
    KillTarget(Duration),
}

struct Trial<'d> {
    _root: tempfile::TempDir,
    work: common::Work,
    topology: PathBuf,
    a: Server,
    b: Server,
    log: Vec<String>,
    /// The directory the topology's `[directory]` names (the commit point), if any.
    dc: Option<&'d SambaDc>,
}

/// How a CLI run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exit(i32),
    /// Killed by a signal (abort at a crash point, or SIGKILL).
    Killed,
}

fn dr_args(target_fqdn: &str) -> Vec<String> {
    [
        "--force",
        "--backup-sql-server-fqdn",
        target_fqdn,
        "--backup-sql-instance-name",
        "RTC",
    ]
    .map(String::from)
    .to_vec()
}

impl<'d> Trial<'d> {
    /// The topology with the stores the other way round (active B, backup A).
    fn topology_text_swapped(&self) -> String {
        let text = std::fs::read_to_string(&self.topology).unwrap();
        let (a, b) = (
            format!("principal = '{}'", a()),
            format!("principal = '{}'", b()),
        );
        text.replace(&a, "@A@").replace(&b, &a).replace("@A@", &b)
    }

    fn new() -> Self {
        Self::with_directory(None)
    }

    /// A trial whose topology has `dc` as its `[directory]`, the SCP pointed at store A.
    fn with_directory(dc: Option<&'d SambaDc>) -> Self {
        if let Some(dc) = dc {
            dc.set_backend(&a().to_string());
        }
        let extra = dc.map(|d| d.section("")).unwrap_or_default();
        let root = tempfile::tempdir().unwrap();
        let mut a = Server::new(root.path(), a(), true);
        let mut b = Server::new(root.path(), b(), false);
        a.first_start(true);
        b.first_start(false);
        let work = common::Work::new();
        let topology = work.write(
            "topology.toml",
            &topology_text(
                false,
                &[
                    (a.instance.clone(), a.addr()),
                    (b.instance.clone(), b.addr()),
                ],
                &extra,
            ),
        );
        Self {
            _root: root,
            work,
            topology,
            a,
            b,
            log: Vec::new(),
            dc,
        }
    }

    fn args(&self, mode: Mode) -> Vec<String> {
        self.args_with(mode, &self.topology, "sql-b.cms.test")
    }

    /// The arguments of a run of `mode` with `topology`; a disaster recovery targets `dr`.
    fn args_with(&self, mode: Mode, topology: &Path, dr: &str) -> Vec<String> {
        let mut v = vec![
            match mode {
                Mode::Restore => "restore".to_string(),
                _ => "failover".to_string(),
            },
            "--yes".into(),
            "--topology".into(),
            topology.display().to_string(),
            "--journal-dir".into(),
            self.work.journal().display().to_string(),
        ];
        if mode == Mode::Disaster {
            v.extend(dr_args(dr));
        }
        v
    }

    /// Runs the CLI in `mode`, interrupted as `crash` says; restarts a killed server after.
    fn run(&mut self, mode: Mode, crash: Crash) -> Ended {
        let args = self.args(mode);
        self.run_args(mode, crash, args)
    }

    fn run_args(&mut self, mode: Mode, crash: Crash, args: Vec<String>) -> Ended {
        let mut cmd = Command::new(CLI);
        cmd.args(args)
            .env_remove("CMS_FAILOVER_TOPOLOGY")
            .env_remove("CMS_FAILOVER_JOURNAL_DIR")
            .env(PW_VAR, LOGIN_PASSWORD)
            .env("HOME", self.work.dir.path())
            .env("USER", "crash-campaign")
            .env("CMS_FAILOVER_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let abort_after = |k: usize| {
            if k == 0 {
                "return(abort)".to_string()
            } else {
                format!("{k}*off->return(abort)")
            }
        };
        match &crash {
            Crash::AfterRecord(k) => {
                cmd.env(
                    "FAILPOINTS",
                    format!("journal::appended={}", abort_after(*k)),
                );
            }
            Crash::AfterCall(k) => {
                cmd.env("FAILPOINTS", format!("driver::op_done={}", abort_after(*k)));
            }
            Crash::CountCalls(path) => {
                cmd.env(
                    "FAILPOINTS",
                    format!("driver::op_done=return(count:{})", path.display()),
                );
            }
            Crash::CountCallsUntilRecord(k, path) => {
                cmd.env(
                    "FAILPOINTS",
                    format!(
                        "journal::appended={};driver::op_done=return(count:{})",
                        abort_after(*k),
                        path.display()
                    ),
                );
            }
            _ => {}
        }
        let mut child = cmd.spawn().unwrap();
        let started = Instant::now();
        let (kill_at, whom) = match &crash {
            Crash::KillCli(d) => (Some(*d), "cli"),
            Crash::KillSource(d) => (Some(*d), "source"),
            Crash::KillTarget(d) => (Some(*d), "target"),
            _ => (None, ""),
        };
        let mut killed_server = None;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if let Some(d) = kill_at
                && killed_server.is_none()
                && started.elapsed() >= d
            {
                match whom {
                    "cli" => {
                        let _ = child.kill();
                    }
                    "source" | "target" => {
                        let server = if whom == "source" {
                            &mut self.a
                        } else {
                            &mut self.b
                        };
                        if server.running() {
                            server.kill();
                        }
                        killed_server = Some(whom);
                    }
                    _ => {}
                }
                if whom == "cli" {
                    killed_server = Some("cli");
                }
            }
            assert!(
                started.elapsed() < CLI_LIMIT,
                "the CLI hung ({mode:?}, {crash:?})"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        let out = child.wait_with_output().unwrap();
        let ended = match status.code() {
            Some(c) => Ended::Exit(c),
            None => Ended::Killed,
        };
        self.log.push(format!(
            "{mode:?} {crash:?} -> {ended:?}\n    stdout: {}\n    stderr: {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        // A killed server comes back (the operator restarts it) before the recovery; the
        // source of a disaster recovery stays down until the recovery says so.
        match killed_server {
            Some("source") => self.a.start(),
            Some("target") => self.b.start(),
            _ => {}
        }
        ended
    }

    fn records(&self) -> Vec<failover_core::journal::JournalRecord> {
        FileJournal::open(&self.work.journal())
            .and_then(|j| j.records())
            .unwrap_or_default()
    }

    /// Recovers as docs/recovery.md says, and returns the exit code of the last command.
    fn recover(&mut self, mode: Mode, ended: Ended) -> Result<(), String> {
        match mode {
            Mode::Disaster => {
                // A disaster recovery that did not succeed is run again (the source still
                // down); then, when the old source is back, `restore` fences its stale copy.
                if ended != Ended::Exit(0) {
                    let again = self.run(Mode::Disaster, Crash::None);
                    if again != Ended::Exit(0) {
                        return Err(format!("re-running the disaster recovery: {again:?}"));
                    }
                }
                if !self.a.running() {
                    self.a.start();
                }
                let r = self.run(Mode::Restore, Crash::None);
                if r != Ended::Exit(0) {
                    return Err(format!("restore after the source came back: {r:?}"));
                }
            }
            Mode::Planned | Mode::Restore => {
                // Killed, or failed needing restore: `restore` settles it. Refused (3) and
                // rolled back (4) changed nothing lasting.
                if !matches!(ended, Ended::Exit(0 | 3 | 4))
                    || mode == Mode::Restore && ended != Ended::Exit(0)
                {
                    let r = self.run(Mode::Restore, Crash::None);
                    if r != Ended::Exit(0) {
                        return Err(format!("restore: {r:?}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The campaign's invariants, through `tsql`.
    fn check(&self, expect_on: Option<&InstanceAddr>) -> Result<(), String> {
        let seen = [(&self.a, look(self.a.port)), (&self.b, look(self.b.port))];
        let mut writable_on = Vec::new();
        for db in ["lis", "xds"] {
            let w: Vec<String> = seen
                .iter()
                .filter(|(_, s)| {
                    s.databases
                        .iter()
                        .any(|(n, st, ro)| n == db && st == "ONLINE" && !ro)
                })
                .map(|(srv, _)| srv.instance.to_string())
                .collect();
            if w.len() != 1 {
                return Err(format!("{db}: {} writable copies {w:?}: {seen:?}", w.len()));
            }
            writable_on.push(w[0].clone());
        }
        if writable_on[0] != writable_on[1] {
            return Err(format!(
                "xds and lis are active on different stores: {seen:?}"
            ));
        }
        let mut records: Vec<_> = seen
            .iter()
            .filter_map(|(_, s)| s.location.clone())
            .collect();
        records.sort();
        let newest = records.last().ok_or("no location record")?;
        if records.iter().any(|r| r.0 == newest.0 && r.1 != newest.1) {
            return Err(format!(
                "two stores hold records with the same epoch: {records:?}"
            ));
        }
        if newest.1 != writable_on[0] {
            return Err(format!(
                "the newest location record names {} but the writable copy is on {}: {seen:?}",
                newest.1, writable_on[0]
            ));
        }
        if let Some(want) = expect_on
            && writable_on[0] != want.to_string()
        {
            return Err(format!(
                "expected the CMS on {want}, found it on {}",
                writable_on[0]
            ));
        }
        if let Some((srv, _)) = seen.iter().find(|(_, s)| !s.lock_free) {
            return Err(format!(
                "the failover lock is still held on {}",
                srv.instance
            ));
        }
        let unfinished = unfinished_runs(&self.records());
        if !unfinished.is_empty() {
            return Err(format!("the journal has unfinished runs: {unfinished:?}"));
        }
        // The directory (what Skype for Business servers read) names the writable store.
        if let Some(dc) = self.dc {
            let scp = dc.backend();
            if !scp.eq_ignore_ascii_case(&writable_on[0]) {
                return Err(format!(
                    "the directory names {scp} but the writable copy is on {}: {seen:?}",
                    writable_on[0]
                ));
            }
        }
        Ok(())
    }
}

/// Runs one trial end to end; `Err` holds everything needed to understand a failure.
fn trial(mode: Mode, crash: Crash) -> Result<(), String> {
    trial_with(None, mode, crash)
}

/// [`trial`] with `dc` as the topology's directory.
fn trial_with(dc: Option<&SambaDc>, mode: Mode, crash: Crash) -> Result<(), String> {
    let mut t = Trial::with_directory(dc);
    if mode == Mode::Restore {
        // The thing to restore: a planned failover killed right after the record that
        // follows its fence (the source fenced, nothing promoted).
        let e = t.run(
            Mode::Planned,
            Crash::AfterRecord(planned_records().fence_record + 1),
        );
        if e != Ended::Killed {
            return Err(format!("setup: the planned run was not killed: {e:?}"));
        }
    }
    if mode == Mode::Disaster {
        t.a.kill(); // the source is down: the reason for a disaster recovery
    }
    let ended = t.run(mode, crash.clone());
    if matches!(crash, Crash::AfterRecord(_) | Crash::AfterCall(_)) && ended != Ended::Killed {
        return Err(format!(
            "the crash point was not reached (is the `failpoints` feature on?): {}",
            t.log.join("\n  ")
        ));
    }
    if std::env::var_os("CMS_FAILOVER_CRASH_VERBOSE").is_some() {
        println!("  {}", t.log.join("\n  "));
    }
    let r = t.recover(mode, ended).and_then(|()| {
        t.check(match mode {
            Mode::Disaster => Some(&t.b.instance),
            _ => None,
        })
    });
    if std::env::var_os("CMS_FAILOVER_CRASH_VERBOSE").is_some() {
        println!("  after recovery: {}", t.log.join("\n  "));
    }
    r.map_err(|e| format!("{e}\n  runs:\n  {}", t.log.join("\n  ")))
}

/// How many journal records and backend calls an uninterrupted run of `mode` makes (the
/// crash points), and how long it took (the range of the timed kills).
fn records_of(mode: Mode) -> (usize, usize, Duration) {
    let mut t = Trial::new();
    if mode == Mode::Restore {
        let e = t.run(
            Mode::Planned,
            Crash::AfterRecord(planned_records().fence_record + 1),
        );
        assert_eq!(e, Ended::Killed);
    }
    if mode == Mode::Disaster {
        t.a.kill();
    }
    let before = t.records().len();
    let counted = t.work.dir.path().join("calls");
    let started = Instant::now();
    let e = t.run(mode, Crash::CountCalls(counted.clone()));
    let took = started.elapsed();
    let calls = std::fs::read_to_string(&counted)
        .map(|c| c.lines().count())
        .unwrap_or(0);
    assert_eq!(
        e,
        Ended::Exit(0),
        "{mode:?} without a crash: {}",
        t.log.join("\n")
    );
    (t.records().len() - before, calls, took)
}

struct PlannedProbe {
    fence_record: usize,
}

/// Where the fence is in a planned run's journal.
fn planned_records() -> PlannedProbe {
    static P: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let fence_record = *P.get_or_init(|| {
        let mut t = Trial::new();
        assert_eq!(t.run(Mode::Planned, Crash::None), Ended::Exit(0));
        t.records()
            .iter()
            .position(|r| {
                matches!(
                    &r.event,
                    JournalEvent::Step {
                        state: StateName::Fencing,
                        ..
                    }
                )
            })
            .expect("a planned run journals its fence")
    });
    PlannedProbe { fence_record }
}

/// Issue 10, bug 2, without any crash: DR to B while A is down, A returns, restore; DR back
/// to A while B is down (with the topology the other way round), B returns, restore. The
/// CMS must end on A, where the last disaster recovery put it.
fn epoch_reuse_trial() -> Result<(), String> {
    let mut t = Trial::new();
    let swapped = t
        .work
        .write("topology-swapped.toml", &t.topology_text_swapped());
    let step = |t: &mut Trial, what: &str, mode: Mode, topology: &Path, dr: &str| {
        let args = t.args_with(mode, topology, dr);
        match t.run_args(mode, Crash::None, args) {
            Ended::Exit(0) => Ok(()),
            e => Err(format!("{what}: {e:?}")),
        }
    };
    let t1 = t.topology.clone();
    let r = (|| {
        t.a.kill();
        step(&mut t, "DR to B", Mode::Disaster, &t1, "sql-b.cms.test")?;
        t.a.start();
        step(&mut t, "restore", Mode::Restore, &t1, "")?;
        t.b.kill();
        step(
            &mut t,
            "DR back to A",
            Mode::Disaster,
            &swapped,
            "sql-a.cms.test",
        )?;
        t.b.start();
        step(&mut t, "restore", Mode::Restore, &swapped, "")?;
        let a = t.a.instance.clone();
        t.check(Some(&a))
    })();
    r.map_err(|e| format!("{e}\n  runs:\n  {}", t.log.join("\n  ")))
}

// ----- the directory as the commit point (Samba AD DC) -----

/// This binary's DC address (each Samba test binary has its own: the ports are fixed).
const DC_ADDR: &str = "127.0.0.42";

/// Where the directory swap is in an uncrashed run of `mode` with `dc` as the directory:
/// (journal records of the run, the swap step's record, backend calls before the swap).
fn directory_points(dc: &SambaDc, mode: Mode) -> (usize, usize, usize) {
    let fresh = || {
        let mut t = Trial::with_directory(Some(dc));
        if mode == Mode::Disaster {
            t.a.kill();
        }
        t
    };
    let mut t = fresh();
    let e = t.run(mode, Crash::None);
    assert_eq!(
        e,
        Ended::Exit(0),
        "{mode:?} uncrashed: {}",
        t.log.join("\n")
    );
    let records = t.records();
    let swap = records
        .iter()
        .position(|r| {
            matches!(&r.event, JournalEvent::Step { ops, .. }
                if ops.iter().any(|o| matches!(o, failover_core::Op::SwapDirectory { .. })))
        })
        .unwrap_or_else(|| panic!("{mode:?} journals no directory swap: {records:?}"));
    let mut t = fresh();
    let counted = t.work.dir.path().join("calls");
    let e = t.run(mode, Crash::CountCallsUntilRecord(swap, counted.clone()));
    assert_eq!(e, Ended::Killed, "{}", t.log.join("\n"));
    let calls = std::fs::read_to_string(&counted)
        .map(|c| c.lines().count())
        .unwrap_or(0);
    (records.len(), swap, calls)
}

/// The directory part's crash points, the ones around the swap first: after the records just
/// before and after the swap's, after the last call before it, the swap itself (its effect on
/// the DC landed, its answer not journaled) and the calls after it (the read-back, the
/// publish, the verify, the convergence watch); then every other record.
fn directory_crashes(dc: &SambaDc, limit: usize) -> Vec<(Mode, Crash)> {
    let mut near = Vec::new();
    let mut rest = Vec::new();
    for mode in [Mode::Planned, Mode::Disaster] {
        let (n, swap, calls) = directory_points(dc, mode);
        println!(
            "directory, {mode:?}: {n} journal records, the swap is record {swap}, after {calls} backend calls"
        );
        let records = swap.saturating_sub(1)..(swap + 3).min(n);
        for k in records.clone() {
            near.push((mode, Crash::AfterRecord(k)));
        }
        for k in calls.saturating_sub(1)..calls + 4 {
            near.push((mode, Crash::AfterCall(k)));
        }
        rest.extend(
            (0..n)
                .filter(|k| !records.contains(k))
                .map(|k| (mode, Crash::AfterRecord(k))),
        );
    }
    near.extend(rest);
    near.truncate(limit);
    near
}

fn campaign() -> ExitCode {
    let only = std::env::var("CMS_FAILOVER_CRASH_ONLY").ok();
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let (seed, _) = failover_testkit::props::seed();
    let trials: usize = std::env::var("CMS_FAILOVER_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let replay = |part: &str| {
        format!(
            "PROPTEST_RNG_SEED={seed} CMS_FAILOVER_CRASH_ONLY={part} cargo test -p examples --test crash_campaign"
        )
    };
    println!(
        "crash campaign: seed {seed}, {trials} random trials; replay: {}",
        replay("…")
    );
    let started = Instant::now();
    let (mut passed, mut failed) = (0usize, Vec::new());
    let mut record = |name: String, r: Result<(), String>, part: &str| match r {
        Ok(()) => {
            passed += 1;
            println!("ok    {name}");
        }
        Err(e) => {
            println!("FAIL  {name}: {e}\n  replay: {}", replay(part));
            failed.push(name);
        }
    };
    let mut took = Vec::new();
    for (part, mode) in [
        ("planned", Mode::Planned),
        ("disaster", Mode::Disaster),
        ("restore", Mode::Restore),
    ] {
        let (n, calls, d) = records_of(mode);
        took.push(d);
        if !want(part) {
            continue;
        }
        println!(
            "{part}: {n} journal records and {calls} backend calls, a crash after each ({d:.0?} uncrashed)"
        );
        assert!(
            calls > 0,
            "no backend call was counted: is the `failpoints` feature on?"
        );
        for k in 0..n {
            record(
                format!("{part} crash after record {k}"),
                trial(mode, Crash::AfterRecord(k)),
                part,
            );
        }
        for k in 0..calls {
            record(
                format!("{part} crash inside a step, after call {k}"),
                trial(mode, Crash::AfterCall(k)),
                part,
            );
        }
    }
    if want("epoch") {
        let name = "epoch reuse: DR to B, restore, DR back to A, restore".to_string();
        record(name, epoch_reuse_trial(), "epoch");
    }
    if want("random") {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for i in 0..trials {
            let m = rng.random_range(0..3);
            let mode = [Mode::Planned, Mode::Disaster, Mode::Restore][m];
            // Somewhere inside the run (it starts faster than it ran uncrashed, rarely slower).
            let d = took[m].mul_f64(rng.random_range(0.0..1.2));
            let crash = match rng.random_range(0..3) {
                0 => Crash::KillCli(d),
                1 if mode != Mode::Disaster => Crash::KillSource(d),
                _ => Crash::KillTarget(d),
            };
            record(
                format!("random trial {i}: {mode:?} {crash:?}"),
                trial(mode, crash),
                "random",
            );
        }
    }
    if want("directory") {
        let limit: usize = std::env::var("CMS_FAILOVER_CRASH_DIR_TRIALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(24);
        let t0 = Instant::now();
        match SambaDc::start(DC_ADDR, "the crash campaign's directory trials") {
            None => println!("SKIPPED directory: no Samba AD DC here (root and packages)"),
            Some(dc) => {
                let crashes = directory_crashes(&dc, limit);
                for (mode, crash) in crashes {
                    record(
                        format!("directory {mode:?} {crash:?}"),
                        trial_with(Some(&dc), mode, crash),
                        "directory",
                    );
                }
                println!(
                    "directory part: {:.0?} (the DC's provisioning included)",
                    t0.elapsed()
                );
            }
        }
    }
    println!(
        "crash campaign finished in {:.0?}: {passed} passed, {} failed",
        started.elapsed(),
        failed.len()
    );
    println!("{passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
