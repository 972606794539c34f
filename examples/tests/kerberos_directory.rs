//! Kerberos everywhere, no password anywhere (issue 14): the SQL side logs in with
//! `[login] method = "kerberos"` and the directory binds with `[directory] bind =
//! "kerberos"` (SASL GSSAPI over LDAPS, the service principal `ldap/127.0.0.44` that
//! `scripts/samba-dc.sh` registers on the DC's account), both from one ticket cache of the
//! DC's `cmsuser`. The topology has no password key and the CLI's environment no
//! password-like variable.
//!
//! Through each SQL backend (ODBC with FreeTDS, and tiberius): `status`, a planned failover, `restore`, a disaster
//! recovery back to the file's `[active]` store with the current source down, and the
//! `restore` that fences the store that comes back; after each change `ldapsearch -Y GSSAPI`
//! (OpenLDAP with Cyrus SASL's GSSAPI module, an independent Kerberos LDAP client) reads the
//! service control point back. One refusal: a ticket cache with the SQL service tickets but
//! no ticket-granting ticket, so only the directory has no ticket: refused before any change
//! (exit 3), saying `kinit`.
//!
//! One test (one Samba provision per binary: the DC's ports are fixed), its DC on
//! 127.0.0.44, the simulated instances each on its own address on port 1433 (127.0.2.1
//! and .2), so their SPNs are `MSSQLSvc/sql-a.cms.test:1433` and so on. Needs root, the Debian packages `scripts/test-all.sh` installs and
//! `--features odbc,kerberos`; without them it prints SKIPPED (and fails under `CI`).

mod common;

use backend_fake::fixtures;
use common::krb::{
    KrbSim, ccache_copy, ccache_without_tgt, cli, loopback_endpoints, sql_instances_spec,
};
use common::samba::SambaDc;
use common::{FAST_TIMEOUTS, Work, json, text};
use failover_core::InstanceAddr;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// This binary's DC address (each Samba test binary has its own: the ports are fixed).
const ADDR: &str = "127.0.0.44";
const WHAT: &str = "Kerberos directory CLI test";
/// This binary's block of instance addresses: 127.0.2.1, .2 on port 1433 (`kerberos.rs`
/// has 127.0.1.x).
const ENDPOINT_BLOCK: u8 = 2;

/// Both SQL backends (tiberius through the vendored 0.13 whose completed GSSAPI login no
/// longer hangs).
const BACKENDS: &[&str] = &["odbc", "tiberius"];

/// Cyrus SASL's GSSAPI module (libsasl2-modules-gssapi-mit) for `ldapsearch -Y GSSAPI`.
fn sasl_gssapi() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/sasl2",
        "/usr/lib/aarch64-linux-gnu/sasl2",
    ]
    .iter()
    .filter_map(|d| std::fs::read_dir(d).ok())
    .flatten()
    .flatten()
    .any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("libgssapiv2.so")
    })
}

fn instances() -> [InstanceAddr; 2] {
    [fixtures::active(), fixtures::backup()]
}

/// The unmirrored fixture with Kerberos for SQL and for the directory, no password key.
fn topology(w: &Work, dc: &SambaDc, endpoints: &HashMap<InstanceAddr, SocketAddr>) -> PathBuf {
    let mut t = format!(
        "databases = [\"xds\", \"lis\"]\n\n[active]\nprincipal = '{}'\n\n[backup]\nprincipal = '{}'\n\n[login]\nmethod = \"kerberos\"\n\n[connection]\ntls = \"off\"\n\n[odbc]\ndriver = \"FreeTDS\"\n\n[endpoints]\n",
        fixtures::active(),
        fixtures::backup(),
    );
    for i in instances() {
        t.push_str(&format!("'{i}' = \"{}\"\n", endpoints[&i]));
    }
    t.push_str(FAST_TIMEOUTS);
    t.push_str(&dc.kerberos_section(""));
    assert!(!t.to_ascii_lowercase().contains("password"), "{t}");
    w.write("topology.toml", &t)
}

/// Disaster recovery to the file's `[active]` store (the CMS is on `[backup]` then).
const DR_TO_ACTIVE: &[&str] = &[
    "failover",
    "--yes",
    "--json",
    "--force",
    "--backup-sql-server-fqdn",
    "sql-a.cms.test",
    "--backup-sql-instance-name",
    "RTC",
];

#[test]
fn every_mode_with_kerberos_for_sql_and_the_directory() {
    let features = cfg!(feature = "kerberos") && cfg!(feature = "odbc");
    if !test_samba::available(
        WHAT,
        &["kvno", "odbcinst"],
        &[
            ("SASL GSSAPI module", sasl_gssapi()),
            ("features odbc+kerberos", features),
        ],
    ) {
        return;
    }
    let endpoints = loopback_endpoints(&instances(), ENDPOINT_BLOCK);
    let spec = sql_instances_spec(&endpoints);
    let Some(dc) = SambaDc::start_with(ADDR, WHAT, &[("SQL_INSTANCES", spec.as_str())]) else {
        return;
    };
    // SAFETY: set before the simulator's runtime (or any other thread of this test) starts;
    // this binary has one test. The simulator's acceptor reads the keytab name from here.
    unsafe { dc.set_acceptor_env() };
    let w = Work::new();
    // Taken before any service ticket is cached in it.
    let pristine = w.path("pristine.ccache");
    dc.ccache_copy("KRB5CCNAME_USER", &pristine);
    let user = dc.var("KRB5_USER_PRINCIPAL").to_string();
    let topo = topology(&w, &dc, &endpoints);
    let case = Case {
        w: &w,
        dc: &dc,
        topo: &topo,
        endpoints: &endpoints,
        pristine: &pristine,
        user: &user,
    };
    for backend in BACKENDS {
        no_ticket_for_the_directory_is_refused(&case, backend);
        every_mode(&case, backend);
    }
}

/// What every case runs with: the work dir, the DC, the topology, the instances' addresses, the
/// untouched ticket cache of `cmsuser` and its principal.
#[derive(Clone, Copy)]
struct Case<'a> {
    w: &'a Work,
    dc: &'a SambaDc,
    topo: &'a Path,
    endpoints: &'a HashMap<InstanceAddr, SocketAddr>,
    pristine: &'a Path,
    user: &'a str,
}

/// A cache with the SQL service tickets and no TGT: SQL logins work, the directory's
/// preflight finds no ticket for `ldap/127.0.0.44`; refused, nothing changed.
fn no_ticket_for_the_directory_is_refused(c: &Case<'_>, backend: &str) {
    let Case {
        w,
        dc,
        topo,
        endpoints,
        pristine,
        user,
    } = *c;
    let conf = dc.var("KRB5_CONFIG");
    let sql_spns: Vec<String> = dc.var("KRB5_SPNS").split(' ').map(str::to_string).collect();
    let sql_spns: Vec<&str> = sql_spns.iter().map(String::as_str).collect();
    let cc = ccache_without_tgt(
        w,
        pristine,
        &format!("{backend}-sql-only.ccache"),
        &sql_spns,
        conf,
    );
    let good = ccache_copy(w, pristine, &format!("{backend}-reader.ccache"));
    dc.set_backend(&fixtures::active().to_string());
    let _ = std::fs::remove_dir_all(w.journal());
    let sim = KrbSim::start(&fixtures::Options::default(), endpoints, user);
    let before = sim.estate.durable_changes();
    let env = [("KRB5CCNAME", cc.as_str()), ("KRB5_CONFIG", conf)];
    let out = cli(w, backend, topo, &["failover", "--yes"], &env);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{backend}: {t}");
    assert!(
        t.contains(&format!("no ticket for ldap/{ADDR}")) && t.contains("kinit"),
        "{backend}: {t}"
    );
    assert_eq!(sim.estate.durable_changes(), before, "{backend}: {t}");
    assert_eq!(sim.writable("xds"), vec![fixtures::active()], "{backend}");
    assert_eq!(dc.backend_gssapi(&good), fixtures::active().to_string());
}

/// status, planned, restore, disaster recovery back, restore: one estate, one ticket cache.
fn every_mode(c: &Case<'_>, backend: &str) {
    let Case {
        w,
        dc,
        topo,
        endpoints,
        pristine,
        user,
    } = *c;
    let conf = dc.var("KRB5_CONFIG");
    let cc = ccache_copy(w, pristine, &format!("{backend}.ccache"));
    let reader = ccache_copy(w, pristine, &format!("{backend}-ldapsearch.ccache"));
    let env = [("KRB5CCNAME", cc.as_str()), ("KRB5_CONFIG", conf)];
    dc.set_backend(&fixtures::active().to_string());
    let _ = std::fs::remove_dir_all(w.journal());
    let sim = KrbSim::start(&fixtures::Options::default(), endpoints, user);

    // Runs `args`, expects exit 0, returns the JSON; then the SCP as `ldapsearch -Y GSSAPI`
    // reads it must name `scp` and, for a change, both databases be writable there only.
    let ok = |what: &str, args: &[&str], scp: &InstanceAddr, only: bool| {
        let out = cli(w, backend, topo, args, &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{backend} {what}: {}",
            text(&out)
        );
        assert_eq!(
            dc.backend_gssapi(&reader),
            scp.to_string(),
            "{backend} {what}"
        );
        for db in ["xds", "lis"] {
            let writable = sim.writable(db);
            if only {
                assert_eq!(writable, vec![scp.clone()], "{backend} {what}: {db}");
            } else {
                assert!(writable.contains(scp), "{backend} {what}: {db}");
            }
        }
        json(&out.stdout)
    };

    // status: the SCP read with the Kerberos bind agrees with the SQL record.
    let v = ok("status", &["status", "--json"], &fixtures::active(), true);
    let dc0 = &v["directory"]["domain_controllers"][0];
    assert_eq!(dc0["dc"], dc.var("SAMBA_URL"), "{v}");
    assert_eq!(
        dc0["value"]["backend"],
        fixtures::active().to_string(),
        "{v}"
    );
    assert_eq!(dc0["agrees_with_record"], true, "{v}");

    // Planned: the SCP is the commit point, swapped with the GSSAPI-bound session.
    let planned = ["failover", "--yes", "--json"];
    let v = ok("planned", &planned, &fixtures::backup(), true);
    assert_eq!(v["run"]["backend"], *backend);
    assert_eq!(v["run"]["directory"]["dc"], dc.var("SAMBA_URL"), "{v}");

    // Restore after a successful run: keeps the store the directory names.
    let restore = ["restore", "--yes", "--json"];
    ok("restore", &restore, &fixtures::backup(), true);

    // Disaster recovery back to the file's [active] store with the current source down.
    sim.estate
        .set_reachable(&fixtures::backup(), false)
        .unwrap();
    let v = ok("DR", DR_TO_ACTIVE, &fixtures::active(), false);
    assert_eq!(v["run"]["mode"], "disaster_recovery");

    // The old source comes back still writable: restore follows the directory, fences it.
    sim.estate.set_reachable(&fixtures::backup(), true).unwrap();
    ok("restore after DR", &restore, &fixtures::active(), true);
}
