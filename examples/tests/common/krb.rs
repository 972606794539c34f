//! Kerberos-only CLI runs (issue 14): the simulator with integrated security admitting one
//! principal, the CLI run with a cleared environment (no password-like variable can reach
//! it), and ticket caches prepared from the Samba DC's (`scripts/samba-dc.sh`).
//!
//! Each simulated instance listens on its own loopback address on port 1433
//! ([`loopback_endpoints`]), so each has its own SPN `MSSQLSvc/<fqdn>:1433`.

use backend_fake::{Estate, fixtures};
use failover_core::{DatabaseName, InstanceAddr};
use mssql_sim::integrated::WindowsLogin;
use mssql_sim::sim::{SimHandle, SimOptions, Simulator};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// SQL Server's standard port, which every simulated instance listens on, each at its own
/// address (so the SPNs are `MSSQLSvc/<fqdn>:1433`, as in a real estate).
pub const SQL_PORT: u16 = 1433;

/// Each of `instances` at its own loopback address `127.0.<block>.1`, `.2`, … on
/// [`SQL_PORT`] (all of 127.0.0.0/8 is loopback on Linux). Each test binary has its own
/// `block`, clear of the Samba DCs' 127.0.0.x.
pub fn loopback_endpoints(
    instances: &[InstanceAddr],
    block: u8,
) -> HashMap<InstanceAddr, SocketAddr> {
    assert!(block != 0, "127.0.0.x holds the Samba DCs");
    instances
        .iter()
        .cloned()
        .zip(1u8..)
        .map(|(i, n)| (i, SocketAddr::from(([127, 0, block, n], SQL_PORT))))
        .collect()
}

/// The `SQL_INSTANCES` of `scripts/samba-dc.sh` for `endpoints`: `fqdn:port` each, so the
/// DC registers `MSSQLSvc/<fqdn>:<port>` for every instance.
pub fn sql_instances_spec(endpoints: &HashMap<InstanceAddr, SocketAddr>) -> String {
    let mut spec: Vec<String> = endpoints
        .iter()
        .map(|(i, a)| format!("{}:{}", i.host(), a.port()))
        .collect();
    spec.sort();
    spec.join(" ")
}

/// A fixture served with integrated security at fixed addresses, admitting only `principal`
/// (as the sysadmin `CMS\cmsuser`). The acceptor reads its keytab from `KRB5_KTNAME`.
pub struct KrbSim {
    /// The estate behind the simulator.
    pub estate: Estate,
    handle: Option<SimHandle>,
    rt: tokio::runtime::Runtime,
}

impl KrbSim {
    /// Serves `opts`'s fixture, each instance at its address in `endpoints`.
    pub fn start(
        opts: &fixtures::Options,
        endpoints: &HashMap<InstanceAddr, SocketAddr>,
        principal: &str,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fx = fixtures::build(opts);
        let mut options = SimOptions {
            windows_logins: Some(vec![WindowsLogin {
                principal: principal.into(),
                name: Some("CMS\\cmsuser".into()),
                sysadmin: true,
            }]),
            ..SimOptions::default()
        };
        for (i, a) in endpoints {
            options = options.with_listen_addr(i.clone(), *a);
        }
        let handle = rt
            .block_on(Simulator::start(fx.estate.clone(), options))
            .unwrap();
        Self {
            estate: fx.estate,
            handle: Some(handle),
            rt,
        }
    }

    /// The reachable instances where `db` is writable.
    pub fn writable(&self, db: &str) -> Vec<InstanceAddr> {
        self.estate
            .snapshot()
            .writable_reachable_copies(&DatabaseName::parse(db).unwrap())
    }
}

impl Drop for KrbSim {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

/// A run far longer than any Kerberos CLI run here (a few seconds each): a hung child, not a
/// slow one.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the CLI with only `env` (plus PATH, HOME, the journal): asserts no password-like
/// variable reaches the child; panics when it does not exit within [`CHILD_TIMEOUT`].
pub fn cli(
    work: &super::Work,
    backend: &str,
    topology: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    cli_bounded(work, backend, topology, args, env).unwrap_or_else(|e| panic!("{e}"))
}

/// [`cli`], with a child that does not exit within [`CHILD_TIMEOUT`] killed and returned as
/// `Err` (what it printed included).
pub fn cli_bounded(
    work: &super::Work,
    backend: &str,
    topology: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Output, String> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cms-failover"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work.dir.path())
        .env("XDG_STATE_HOME", work.path("state"))
        .env("USER", "tester")
        .envs(env.iter().copied())
        .args(args)
        .args(["--backend", backend, "--topology"])
        .arg(topology)
        .arg("--journal-dir")
        .arg(work.journal());
    for (k, _) in c.get_envs() {
        let k = k.to_string_lossy().to_ascii_uppercase();
        assert!(
            !(k.contains("PASSWORD") || k.contains("PWD") || k.ends_with("_PW")),
            "the child would inherit a password-like variable {k}"
        );
    }
    // Bounded (a hung login must fail the test, not the CI time limit), both pipes drained
    // while it runs (a disaster recovery's JSON is larger than a pipe buffer).
    super::try_output_within(
        &mut c,
        CHILD_TIMEOUT,
        &format!("cms-failover {args:?} --backend {backend}"),
    )
}

/// A fresh copy of the ticket cache `from` as `name` in `work`, as a `FILE:` name.
pub fn ccache_copy(work: &super::Work, from: &Path, name: &str) -> String {
    test_samba::ccache_copy(from, &work.path(name))
}

/// [`test_samba::ccache_without_tgt`] as `name` in `work`: the service tickets for `spns`
/// and no ticket-granting ticket, so any other service (the directory's `ldap/…`) finds no
/// TGT: "no ticket".
pub fn ccache_without_tgt(
    work: &super::Work,
    from: &Path,
    name: &str,
    spns: &[&str],
    krb5_config: &str,
) -> String {
    test_samba::ccache_without_tgt(from, &work.path(name), spns, krb5_config)
}
