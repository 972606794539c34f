//! The CLI with Kerberos only (`[login] method = "kerberos"`, issue 14): Samba's AD DC
//! (`scripts/samba-dc.sh`) issues real tickets; the simulator (feature `gssapi`) verifies
//! them with the service keytab the DC exported, one SPN per instance
//! (`MSSQLSvc/<instance fqdn>:<port>`); the CLI runs with a ticket cache and no password
//! anywhere: no password key in the topology, no password variable in its environment.
//!
//! Through both SQL backends (tiberius with its GSSAPI login, ODBC with FreeTDS): status, a
//! planned failover, restore; a disaster recovery (the command `status` prints, run as
//! printed) and the restore that fences the lost pool when it returns. Through both
//! backends, every Kerberos problem the fixture can provoke, each refused before any
//! change: no ticket, a principal the server does not admit (18456), an SPN the KDC does
//! not know, a wrong realm, an unreachable KDC, an expired ticket.
//!
//! One test (one Samba provision per binary: the DC's ports are fixed). Needs root, the
//! Debian packages `scripts/test-all.sh` installs and `--features odbc,kerberos`; without
//! them it prints SKIPPED (and fails under `CI`).
//!
//! Addresses and names: as in a real estate, each simulated instance listens on its own
//! address on SQL Server's standard port 1433, here loopback addresses 127.0.1.1–.4 (all of
//! 127.0.0.0/8 is loopback on Linux; this binary's block, clear of the Samba DCs on
//! 127.0.0.1 and 127.0.0.40–.44 and of `kerberos_directory.rs`'s 127.0.2.x), so the SPNs are
//! `MSSQLSvc/sql-a.cms.test:1433` and so on. The instances' names are not resolved at all:
//! the topology's `[endpoints]` maps each name to its address; tiberius is handed the TCP
//! stream to it and names the service from the instance's host name and the port, and the
//! ODBC backend gives FreeTDS the same name with `ServerSPN=`. So every instance has its
//! own service principal without /etc/hosts.

mod common;

use backend_fake::fixtures;
use common::krb::{KrbSim, ccache_copy, cli, cli_bounded, loopback_endpoints, sql_instances_spec};
use common::{FAST_TIMEOUTS, Work, json, text};
use failover_core::InstanceAddr;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use test_samba::SambaDc;

/// This binary's DC address: `scripts/samba-dc.sh`'s default (the `lo` interface).
const ADDR: &str = "127.0.0.1";
const WHAT: &str = "the Kerberos CLI test";

/// This binary's block of instance addresses: 127.0.1.1–.4 on port 1433.
const ENDPOINT_BLOCK: u8 = 1;

fn instances() -> [InstanceAddr; 4] {
    [
        fixtures::active(),
        fixtures::active_mirror(),
        fixtures::backup(),
        fixtures::backup_mirror(),
    ]
}

/// A topology for the mirrored fixture with `[login] method = "kerberos"` and no password
/// key anywhere.
fn topology(w: &Work, name: &str, endpoints: &HashMap<InstanceAddr, SocketAddr>) -> PathBuf {
    let mut t = format!(
        "databases = [\"xds\", \"lis\"]\n\n[active]\nprincipal = '{}'\nmirror = '{}'\n\n[backup]\nprincipal = '{}'\nmirror = '{}'\n\n[login]\nmethod = \"kerberos\"\n\n[connection]\ntls = \"off\"\n\n[odbc]\ndriver = \"FreeTDS\"\n\n[endpoints]\n",
        fixtures::active(),
        fixtures::active_mirror(),
        fixtures::backup(),
        fixtures::backup_mirror()
    );
    for i in instances() {
        t.push_str(&format!("'{i}' = \"{}\"\n", endpoints[&i]));
    }
    t.push_str(FAST_TIMEOUTS);
    assert!(!t.to_ascii_lowercase().contains("password"), "{t}");
    w.write(name, &t)
}

#[test]
fn kerberos_only_through_both_backends() {
    let features = cfg!(feature = "kerberos") && cfg!(feature = "odbc");
    let port_free = std::net::TcpStream::connect((ADDR, 88)).is_err();
    if !test_samba::available(
        WHAT,
        &["klist", "odbcinst"],
        &[
            ("features odbc+kerberos", features),
            ("KDC port 88 free", port_free),
        ],
    ) {
        return;
    }
    let endpoints = loopback_endpoints(&instances(), ENDPOINT_BLOCK);
    let dc = SambaDc::start(ADDR, &[("SQL_INSTANCES", &sql_instances_spec(&endpoints))]);
    // SAFETY: set before the simulator's runtime (or any other thread of this test) starts;
    // this binary has one test. The acceptor reads the keytab name from the environment.
    unsafe { dc.set_acceptor_env() };
    let w = Work::new();
    // Taken before any service ticket is cached in it.
    let pristine = w.path("pristine.ccache");
    dc.ccache_copy("KRB5CCNAME_USER", &pristine);
    let topo = topology(&w, "topology.toml", &endpoints);
    let user = dc.var("KRB5_USER_PRINCIPAL").to_string();

    // The refusals through both backends: each is found before the driver's login (the
    // preflight) or is the server's 18456.
    for backend in ["odbc", "tiberius"] {
        kerberos_problems_are_refused(&w, &dc, backend, &endpoints, &pristine, &user);
    }

    // Successful logins through both backends: status, planned failover, restore, then a
    // disaster recovery and the restore after it. A child that does not exit is recorded
    // and the other backend still runs, so one hang cannot hide the other's result.
    let mut failures = Vec::new();
    for backend in ["tiberius", "odbc"] {
        let cc = ccache_copy(&w, &pristine, &format!("{backend}.ccache"));
        let env = dc.krb5_env(&cc);
        planned_and_restore(&w, backend, &topo, &env, &endpoints, &user);
        if let Err(e) = disaster_recovery(&w, backend, &topo, &env, &endpoints, &user) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Status, a planned failover and restore on one estate, Kerberos only.
fn planned_and_restore(
    w: &Work,
    backend: &str,
    topo: &Path,
    env: &[(&str, &str)],
    endpoints: &HashMap<InstanceAddr, SocketAddr>,
    user: &str,
) {
    let _ = std::fs::remove_dir_all(w.journal());
    let sim = KrbSim::start(
        &fixtures::Options::default().mirrored(true),
        endpoints,
        user,
    );
    let out = cli(w, backend, topo, &["status", "--json"], env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{backend} status: {}",
        text(&out)
    );
    let s = json(&out.stdout);
    assert_eq!(s["kind"], "status", "{s}");

    let out = cli(w, backend, topo, &["failover", "--yes", "--json"], env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{backend} failover: {}",
        text(&out)
    );
    assert_eq!(json(&out.stdout)["run"]["backend"], backend);
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()], "{backend}");

    let out = cli(w, backend, topo, &["restore", "--yes"], env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{backend} restore: {}",
        text(&out)
    );
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()], "{backend}");
    assert_eq!(sim.writable("lis"), vec![fixtures::backup()], "{backend}");
}

/// The active pool lost: `status` (Kerberos only) names the disaster-recovery command, which
/// is run verbatim; when the lost pool comes back, `restore` fences it. `Err` when a child
/// does not exit within the bound (a hang, said as such); any other difference panics.
fn disaster_recovery(
    w: &Work,
    backend: &str,
    topo: &Path,
    env: &[(&str, &str)],
    endpoints: &HashMap<InstanceAddr, SocketAddr>,
    user: &str,
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(w.journal());
    let sim = KrbSim::start(
        &fixtures::Options::default().mirrored(true),
        endpoints,
        user,
    );
    for i in [fixtures::active(), fixtures::active_mirror()] {
        sim.estate.set_reachable(&i, false).unwrap();
    }
    let out = cli(w, backend, topo, &["status"], env);
    let said = text(&out);
    let start = said
        .find("`cms-failover failover ")
        .unwrap_or_else(|| panic!("{backend} status names no disaster recovery:\n{said}"))
        + "`cms-failover ".len();
    let command = &said[start..start + said[start..].find('`').unwrap()];
    assert!(
        command.contains(&format!(
            "--force --backup-sql-server-fqdn {}",
            fixtures::backup().host()
        )),
        "{backend}: {command}"
    );
    let mut args: Vec<&str> = command.split(' ').collect();
    args.extend(["--yes", "--json"]);
    let out = cli_bounded(w, backend, topo, &args, env).map_err(|e| {
        format!(
            "{backend} disaster recovery: {e}; the estate then: xds writable on {:?}",
            sim.writable("xds")
        )
    })?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{backend} {command}: {}",
        text(&out)
    );
    let v = json(&out.stdout);
    assert_eq!(v["outcome"]["code"], "succeeded", "{backend}: {v}");
    assert_eq!(v["run"]["backend"], backend);
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()], "{backend}");
    for i in [fixtures::active(), fixtures::active_mirror()] {
        sim.estate.set_reachable(&i, true).unwrap();
    }
    // Back, the lost store still believes it serves (it was down during the run).
    assert_eq!(
        sim.writable("xds"),
        vec![fixtures::active(), fixtures::backup()],
        "{backend}"
    );
    let out = cli_bounded(w, backend, topo, &["restore", "--yes"], env)
        .map_err(|e| format!("{backend} restore after the disaster recovery: {e}"))?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{backend} restore after DR: {}",
        text(&out)
    );
    for db in ["xds", "lis"] {
        assert_eq!(sim.writable(db), vec![fixtures::backup()], "{backend} {db}");
    }
    Ok(())
}

/// Each provocable Kerberos problem: a planned failover exits 3 (refused) with a message
/// that says what to do, and the estate saw no change.
fn kerberos_problems_are_refused(
    w: &Work,
    dc: &SambaDc,
    backend: &str,
    endpoints: &HashMap<InstanceAddr, SocketAddr>,
    pristine: &Path,
    user: &str,
) {
    let topo = topology(w, "topology.toml", endpoints);
    let refused = |name: &str, topo: &Path, env: &[(&str, &str)], expect: &[&str]| {
        let _ = std::fs::remove_dir_all(w.journal());
        let sim = KrbSim::start(
            &fixtures::Options::default().mirrored(true),
            endpoints,
            user,
        );
        // The first preflight step takes the lock; a refusal releases it. Nothing else may
        // change.
        let before = sim.estate.durable_changes();
        let out = cli(w, backend, topo, &["failover", "--yes"], env);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(3), "{backend} {name}: {t}");
        for e in expect {
            assert!(t.contains(e), "{backend} {name}: expected `{e}` in {t}");
        }
        assert_eq!(
            sim.estate.durable_changes(),
            before,
            "{backend} {name}: changed the estate"
        );
        assert_eq!(
            sim.writable("xds"),
            vec![fixtures::active()],
            "{backend} {name}"
        );
    };
    let fresh = |n: &str| ccache_copy(w, pristine, &format!("{backend}-{n}.ccache"));

    // No ticket: an empty credential cache.
    let empty = w.path(&format!("{backend}-empty.ccache"));
    let _ = std::fs::remove_file(&empty);
    let none = format!("FILE:{}", empty.display());
    refused("no ticket", &topo, &dc.krb5_env(&none), &["kinit"]);

    // A valid principal the server does not admit: 18456, as SQL Server answers.
    let intruder = ccache_copy(
        w,
        &dc.file("KRB5CCNAME_INTRUDER"),
        &format!("{backend}-intruder.ccache"),
    );
    refused(
        "unknown principal",
        &topo,
        &dc.krb5_env(&intruder),
        &["Login failed for user 'CMS\\intruder'"],
    );

    // An SPN the KDC does not know: the topology puts the active instance at its own address
    // but on a port no SPN names (every SPN names 1433).
    let stray = TcpListener::bind(SocketAddr::new(endpoints[&fixtures::active()].ip(), 0)).unwrap();
    let stray_port = stray.local_addr().unwrap().port();
    let mut moved = endpoints.clone();
    moved.insert(fixtures::active(), stray.local_addr().unwrap());
    let moved_topo = topology(w, "topology-unknown-spn.toml", &moved);
    let cc = fresh("spn");
    refused(
        "unknown SPN",
        &moved_topo,
        &dc.krb5_env(&cc),
        &[&format!("setspn -S MSSQLSvc/sql-a.cms.test:{stray_port} ")],
    );
    drop(stray);

    // A wrong realm: krb5.conf says the servers are in another realm.
    let wrong_realm = w.write(
        &format!("{backend}-wrong-realm.conf"),
        "[libdefaults]\n    default_realm = OTHER.TEST\n    dns_lookup_kdc = false\n    dns_lookup_realm = false\n    rdns = false\n[realms]\n    CMS.TEST = {\n        kdc = 127.0.0.1\n    }\n    OTHER.TEST = {\n        kdc = 127.0.0.1\n    }\n",
    );
    let cc = fresh("realm");
    refused(
        "wrong realm",
        &topo,
        &[
            ("KRB5CCNAME", cc.as_str()),
            ("KRB5_CONFIG", wrong_realm.to_str().unwrap()),
        ],
        &["wrong realm", "krb5.conf"],
    );

    // The KDC unreachable: a krb5.conf pointing at a port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let no_kdc = w.write(
        &format!("{backend}-no-kdc.conf"),
        &format!(
            "[libdefaults]\n    default_realm = CMS.TEST\n    dns_lookup_kdc = false\n    dns_lookup_realm = false\n    rdns = false\n    kdc_timeout = 1s\n    max_retries = 1\n[realms]\n    CMS.TEST = {{\n        kdc = 127.0.0.1:{dead_port}\n    }}\n"
        ),
    );
    let cc = fresh("nokdc");
    refused(
        "KDC unreachable",
        &topo,
        &[
            ("KRB5CCNAME", cc.as_str()),
            ("KRB5_CONFIG", no_kdc.to_str().unwrap()),
        ],
        &["no KDC answered"],
    );

    // An expired ticket: a 5-second ticket, used once `klist -s` says it has expired.
    let exp = w.path(&format!("{backend}-expired.ccache"));
    let exp_name = format!("FILE:{}", exp.display());
    dc.kinit_user(&exp_name, "5s");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Command::new("klist")
        .args(["-s", "-c", &exp_name])
        .env("KRB5_CONFIG", dc.var("KRB5_CONFIG"))
        .status()
        .unwrap()
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the 5 s ticket did not expire within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    refused("expired ticket", &topo, &dc.krb5_env(&exp_name), &["kinit"]);
}
