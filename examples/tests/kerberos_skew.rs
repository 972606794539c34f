//! Clock skew provoked end to end (issue 14, "errors an operator can act on"): the CLI runs
//! under libfaketime (`faketime -f +1h`, Debian package `faketime`) with its clock an hour
//! ahead of the Samba AD DC's KDC, with a real ticket-granting ticket obtained at the right
//! time. libfaketime is an `LD_PRELOAD` library that replaces libc's `time`,
//! `gettimeofday` and `clock_gettime`; MIT krb5 (which FreeTDS and our preflight use) takes
//! the time through those libc calls, so the authenticator of its TGS request is an hour
//! off and the KDC answers `KRB_AP_ERR_SKEW` (checked by hand first:
//! `faketime -f +1h kvno MSSQLSvc/…` says "Clock skew too great while getting credentials").
//! Nothing here fakes the classification: the KDC's real error goes through the Kerberos
//! preflight of the ODBC backend.
//!
//! Asserted: a planned failover through `--backend odbc` is refused with the exit code the
//! README documents for refusals (3), the message names the clock skew and what to do
//! (synchronise the clock), and nothing was even contacted: every instance points at a
//! trap listener that no connection reaches. Then the same run with the real clock gets
//! past Kerberos and does reach the trap (so the refusal was the clock's).
//!
//! Needs root, the Samba/Kerberos packages and `faketime` (`scripts/test-all.sh` installs
//! them) and `--features odbc,kerberos`; otherwise SKIPPED, and a failure under `CI`. Its DC
//! runs on its own loopback address, 127.0.0.43 (status .40, modes .41, crash .42).

mod common;

use common::samba::SambaDc;
use common::{Trap, Work, kerberos_topology_text, output_within, text};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const ADDR: &str = "127.0.0.43";
const WHAT: &str = "Kerberos clock-skew test";

/// Whether the test can run here beyond Samba itself (checked again by
/// [`SambaDc::start_with`]).
fn prerequisites() -> bool {
    let features = cfg!(feature = "kerberos") && cfg!(feature = "odbc");
    test_samba::available(
        WHAT,
        &["faketime", "odbcinst"],
        &[("features odbc+kerberos", features)],
    )
}

/// `cms-failover <args> --backend odbc` with only the Kerberos environment, under
/// `faketime -f <offset>` when one is given.
fn cli(w: &Work, dc: &SambaDc, topology: &Path, args: &[&str], offset: Option<&str>) -> Output {
    let bin = env!("CARGO_BIN_EXE_cms-failover");
    let mut c = match offset {
        Some(o) => {
            let mut c = Command::new("faketime");
            c.args(["-f", o, bin]);
            c
        }
        None => Command::new(bin),
    };
    let cc = dc.ccache_copy("KRB5CCNAME_USER", &w.path("user.ccache"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", w.dir.path())
        .env("XDG_STATE_HOME", w.path("state"))
        .env("USER", "tester")
        .envs(dc.krb5_env(&cc))
        .args(args)
        .args(["--backend", "odbc", "--topology"])
        .arg(topology)
        .arg("--journal-dir")
        .arg(w.journal());
    output_within(
        &mut c,
        Duration::from_secs(120),
        &format!("cms-failover {args:?} (clock {offset:?})"),
    )
}

#[test]
fn a_clock_an_hour_off_is_refused_as_clock_skew_before_anything_is_contacted() {
    if !prerequisites() {
        return;
    }
    let trap = Trap::new();
    let endpoints = trap.endpoints();
    // Every instance's SPN is registered, so only the clock can be wrong.
    let spns: Vec<String> = endpoints
        .iter()
        .map(|(i, a)| format!("{}:{}", i.host(), a.port()))
        .collect();
    let Some(dc) = SambaDc::start_with(ADDR, WHAT, &[("SQL_INSTANCES", &spns.join(" "))]) else {
        return;
    };
    let w = Work::new();
    let t = w.write("topology.toml", &kerberos_topology_text(&endpoints));

    let out = cli(&w, &dc, &t, &["failover", "--yes"], Some("+1h"));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "a refusal: {said}");
    for e in [
        "clock skew too great",
        "synchronise the clock (NTP with the domain controllers)",
    ] {
        assert!(said.contains(e), "expected `{e}` in {said}");
    }
    trap.assert_untouched();

    // The same run with the real clock gets its service ticket and goes on to log in: it
    // reaches the trap (which never answers, so that run fails otherwise).
    let out = cli(&w, &dc, &t, &["status"], None);
    let said = text(&out);
    assert!(!said.contains("clock skew"), "{said}");
    assert!(
        trap.touched(),
        "with the right clock the login should have gone ahead: {said}"
    );
}
