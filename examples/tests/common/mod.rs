//! Test helpers: the TDS simulator in-process (its own runtime threads keep serving while
//! the test runs the binary), topology files with `[endpoints]`, and a trap listener that
//! proves no connection was attempted.
#![allow(dead_code)]

use backend_fake::{Estate, LinkId, fixtures};
use failover_core::{DatabaseName, InstanceAddr};
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

pub mod krb;
pub mod samba;

/// The environment variable the test topologies name for the password.
pub const PW_VAR: &str = "CMS_FAILOVER_TEST_PASSWORD";

/// A disaster recovery to the fixture's backup store and its mirror.
pub const DR_FLAGS: &[&str] = &[
    "--force",
    "--backup-sql-server-fqdn",
    "sql-b.cms.test",
    "--backup-sql-instance-name",
    "RTC",
    "--backup-mirror-sql-server-fqdn",
    "sql-b2.cms.test",
    "--backup-mirror-sql-instance-name",
    "RTC",
];

/// Fast timeouts for the simulator.
pub const FAST_TIMEOUTS: &str = r#"
[timeouts]
step = "3s"
replication = "10s"
catch_up = "5s"
poll_interval = "100ms"
dr_fence = "500ms"
undo = "5s"
retry_backoff = "50ms"
"#;

/// A temp dir with a journal dir and a home.
pub struct Work {
    /// The temp dir.
    pub dir: tempfile::TempDir,
}

impl Work {
    /// A fresh one.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The journal dir.
    pub fn journal(&self) -> PathBuf {
        self.path("journal")
    }
    /// Writes a file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    /// Runs `cms-failover <args> --topology T --journal-dir <journal>` to the end.
    pub fn run(&self, topology: &Path, args: &[&str]) -> std::process::Output {
        self.cmd()
            .args(args)
            .arg("--topology")
            .arg(topology)
            .arg("--journal-dir")
            .arg(self.journal())
            .output()
            .unwrap()
    }

    /// `cms-failover` with a clean environment: the password variable set, the journal and
    /// HOME inside the temp dir, no topology from the environment.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("cms-failover").unwrap();
        c.env_remove("CMS_FAILOVER_TOPOLOGY")
            .env_remove("CMS_FAILOVER_JOURNAL_DIR")
            .env_remove("CMS_FAILOVER_LOG")
            .env(PW_VAR, fixtures::LOGIN_PASSWORD)
            .env("HOME", self.dir.path())
            .env("XDG_STATE_HOME", self.path("state"))
            .env("USER", "tester")
            .timeout(std::time::Duration::from_secs(90));
        c
    }
}

/// The `[connection]` of a plaintext topology: only for the simulator on loopback.
pub const PLAINTEXT: &str = "tls = \"off\"";

/// A topology file's text for the fixture instances, with the given endpoints, in explicit
/// plaintext ([`PLAINTEXT`]; for servers that are never connected to, or simulators without
/// certificates).
pub fn topology_text(
    mirrored: bool,
    endpoints: &[(InstanceAddr, SocketAddr)],
    extra: &str,
) -> String {
    topology_text_with(mirrored, endpoints, PLAINTEXT, extra)
}

/// [`topology_text`] with `connection` as the body of the `[connection]` section.
pub fn topology_text_with(
    mirrored: bool,
    endpoints: &[(InstanceAddr, SocketAddr)],
    connection: &str,
    extra: &str,
) -> String {
    let q = |a: &InstanceAddr| format!("'{a}'");
    let mut t = String::new();
    t.push_str("databases = [\"xds\", \"lis\"]\n\n[active]\n");
    t.push_str(&format!("principal = {}\n", q(&fixtures::active())));
    if mirrored {
        t.push_str(&format!("mirror = {}\n", q(&fixtures::active_mirror())));
    }
    t.push_str("\n[backup]\n");
    t.push_str(&format!("principal = {}\n", q(&fixtures::backup())));
    if mirrored {
        t.push_str(&format!("mirror = {}\n", q(&fixtures::backup_mirror())));
    }
    t.push_str(&format!(
        "\n[login]\nuser = \"{}\"\npassword_env = \"{PW_VAR}\"\n\n[connection]\n{connection}\n\n[odbc]\ndriver = \"FreeTDS\"\n\n[endpoints]\n",
        fixtures::LOGIN_USER
    ));
    for (i, a) in endpoints {
        t.push_str(&format!("{} = \"{a}\"\n", q(i)));
    }
    t.push_str(FAST_TIMEOUTS);
    t.push_str(extra);
    t
}

/// A topology file's text for the mirrored fixture with `[login] method = "kerberos"` (no
/// password key anywhere), plaintext, every instance at its `endpoints` entry.
pub fn kerberos_topology_text(endpoints: &[(InstanceAddr, SocketAddr)]) -> String {
    let mut t = format!(
        "databases = [\"xds\", \"lis\"]\n\n[active]\nprincipal = '{}'\nmirror = '{}'\n\n[backup]\nprincipal = '{}'\nmirror = '{}'\n\n[login]\nmethod = \"kerberos\"\n\n[connection]\ntls = \"off\"\n\n[odbc]\ndriver = \"FreeTDS\"\n\n[endpoints]\n",
        fixtures::active(),
        fixtures::active_mirror(),
        fixtures::backup(),
        fixtures::backup_mirror()
    );
    for (i, a) in endpoints {
        t.push_str(&format!("'{i}' = \"{a}\"\n"));
    }
    t.push_str(FAST_TIMEOUTS);
    assert!(!t.to_ascii_lowercase().contains("password"), "{t}");
    t
}

/// A listener nobody should connect to: every fixture instance points at it.
pub struct Trap {
    listener: TcpListener,
}

impl Trap {
    /// Binds 127.0.0.1:0.
    pub fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self { listener }
    }
    /// Every fixture instance mapped to the trap.
    pub fn endpoints(&self) -> Vec<(InstanceAddr, SocketAddr)> {
        let a = self.listener.local_addr().unwrap();
        [
            fixtures::active(),
            fixtures::active_mirror(),
            fixtures::backup(),
            fixtures::backup_mirror(),
        ]
        .into_iter()
        .map(|i| (i, a))
        .collect()
    }
    /// Whether anyone connected since the last check (takes one pending connection).
    pub fn touched(&self) -> bool {
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Ok(_) => true,
            Err(e) => panic!("accept failed: {e}"),
        }
    }

    /// Panics if anyone connected.
    pub fn assert_untouched(&self) {
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("a connection was attempted (from {peer})"),
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

/// The simulator serving a fixture estate, on its own runtime.
pub struct Sim {
    /// The estate.
    pub estate: Estate,
    /// The A -> B replication link.
    pub link: LinkId,
    handle: Option<SimHandle>,
    rt: tokio::runtime::Runtime,
    /// Whether the fixture is mirrored.
    pub mirrored: bool,
    /// The certificates every instance serves (`None`: plaintext only).
    pub pki: Option<test_pki::TestPki>,
}

impl Sim {
    /// Starts the fixture built from `opts` over TLS, as a real estate: a certificate per
    /// instance from a test CA and Force Encryption on. Its [`Sim::topology`] says
    /// `tls = "strict"` with that CA as `ca_file`.
    pub fn start(opts: fixtures::Options) -> Self {
        Self::start_with(opts, true)
    }

    /// Starts the fixture without certificates: its [`Sim::topology`] says `tls = "off"`.
    pub fn start_plaintext(opts: fixtures::Options) -> Self {
        Self::start_with(opts, false)
    }

    fn start_with(opts: fixtures::Options, tls: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fx = fixtures::build(&opts);
        let pki = tls.then(|| {
            test_pki::TestPki::generate(fx.estate.instances().iter().map(|i| i.to_string()))
                .unwrap()
        });
        let options = match &pki {
            Some(p) => SimOptions::default()
                .with_test_pki(&fx.estate, p, true)
                .unwrap(),
            None => SimOptions::default(),
        };
        let handle = rt
            .block_on(Simulator::start(fx.estate.clone(), options))
            .unwrap();
        Self {
            estate: fx.estate,
            link: fx.link,
            handle: Some(handle),
            rt,
            mirrored: opts.mirrored,
            pki,
        }
    }

    /// The body of this simulator's `[connection]` section: `strict` with the test CA, or
    /// explicit plaintext.
    pub fn connection(&self) -> String {
        match &self.pki {
            Some(p) => format!("tls = \"strict\"\nca_file = '{}'", p.ca_cert().display()),
            None => PLAINTEXT.into(),
        }
    }

    /// The standard fixture (unmirrored, no lag).
    pub fn standard() -> Self {
        Self::start(fixtures::Options::default())
    }

    /// Endpoints of every instance.
    pub fn endpoints(&self) -> Vec<(InstanceAddr, SocketAddr)> {
        self.handle.as_ref().unwrap().endpoints()
    }

    /// Writes a topology for this simulator into `work` and returns its path.
    pub fn topology(&self, work: &Work, extra: &str) -> PathBuf {
        work.write(
            "topology.toml",
            &topology_text_with(self.mirrored, &self.endpoints(), &self.connection(), extra),
        )
    }

    /// A topology like [`Sim::topology`] whose `ca_file` is a CA that signed none of the
    /// certificates ("the wrong CA").
    pub fn wrong_ca_topology(&self, work: &Work) -> PathBuf {
        let pki = self.pki.as_ref().expect("a TLS simulator");
        let connection = format!(
            "tls = \"strict\"\nca_file = '{}'",
            pki.other_ca_cert().display()
        );
        work.write(
            "topology-wrong-ca.toml",
            &topology_text_with(self.mirrored, &self.endpoints(), &connection, ""),
        )
    }

    /// Opening the target fails once (error 5069): a planned run rolls back. With
    /// `and_undo`, undoing the fence fails too: it needs restore.
    pub fn fail_opening_the_target(&self, seed: u64, and_undo: bool) {
        let fail = || {
            backend_fake::Fault::Error(backend_fake::SqlError::new(
                5069,
                16,
                1,
                "ALTER DATABASE statement failed.",
            ))
        };
        let on = |i: InstanceAddr, nth| {
            backend_fake::ScriptedFault::on(&i, failover_core::Operation::SetReadOnly, nth, fail())
        };
        let mut f = backend_fake::FaultConfig::seeded(seed).script(on(fixtures::backup(), 1));
        if and_undo {
            f = f.script(on(fixtures::active(), 2));
        }
        self.estate.set_faults(f);
    }

    /// How many mutations the estate has seen.
    pub fn mutations(&self) -> usize {
        self.estate.history().len()
    }

    /// The instances where `db` is writable.
    pub fn writable(&self, db: &str) -> Vec<InstanceAddr> {
        self.estate
            .snapshot()
            .writable_copies(&DatabaseName::parse(db).unwrap())
    }

    /// The highest location epoch.
    pub fn epoch(&self) -> Option<u64> {
        self.estate.snapshot().highest_location().map(|l| l.epoch)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

/// Runs `cmd` (stdout and stderr piped, stdin closed) to the end and returns its output;
/// panics with a clear message and what it printed so far when it has not exited within
/// `bound` (the child is killed). See [`try_output_within`].
pub fn output_within(
    cmd: &mut std::process::Command,
    bound: std::time::Duration,
    what: &str,
) -> std::process::Output {
    try_output_within(cmd, bound, what).unwrap_or_else(|e| panic!("{e}"))
}

/// [`output_within`], with a child that did not exit within `bound` returned as `Err` (the
/// message says so and holds what it printed): [`test_samba::output_within`] with stdin
/// closed. Both pipes are drained while waiting: a child
/// that writes more than a pipe buffer (64 KiB, e.g. a disaster recovery's `--json`
/// document) would otherwise block in `write` forever, and look hung, while the parent waits
/// for its exit.
pub fn try_output_within(
    cmd: &mut std::process::Command,
    bound: std::time::Duration,
    what: &str,
) -> Result<std::process::Output, String> {
    test_samba::output_within(cmd, None, bound, what)
}

/// A finished command's exit code, stdout and stderr, for assertion messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Reads a file to a string.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Parses stdout as JSON.
pub fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

/// The `label` (`active`, `fenced`, …) a `status --json` document gives `instance`.
pub fn label_of(status: &serde_json::Value, instance: &InstanceAddr) -> Option<String> {
    status["instances"]
        .as_array()?
        .iter()
        .find(|x| x["instance"] == instance.to_string())
        .and_then(|x| x["label"].as_str().map(str::to_string))
}

/// Validates a `--json` document against the shipped schema (`docs/report.schema.json`),
/// failing with every error found.
pub fn check_schema(what: &str, v: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(examples::json::SCHEMA).expect("the schema is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{v:#}");
    assert_eq!(v["schema_version"], 1, "{what}");
}
