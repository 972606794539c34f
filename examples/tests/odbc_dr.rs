//! A disaster recovery through the ODBC backend (`--backend odbc`, FreeTDS) with the source
//! store dead, as operators run it (docs/operating.md §12): the run must finish, report, and
//! the process exit, within a bound. Two ways a source is dead: its port closed (the
//! simulator closes an unreachable instance's port: connection refused) and a host that
//! accepts TCP and never answers (a hung server or a half-open path: only a login timeout
//! ends that wait).
//!
//! Each run is bounded ([`run_bounded`]): a hang fails the test with what the process
//! printed, it does not hang the suite. The bound drains the child's pipes while it waits
//! ([`common::output_within`]): a DR's `--json` document is larger than a pipe buffer
//! (about 70 KiB with 24 failed calls to the dead source), and a harness that reads the
//! pipes only after the exit leaves the CLI blocked in `write(1, …)` after it has reported
//! success. That, not the ODBC backend, was the "DR does not exit" of issue 14 (a gdb
//! backtrace of the hung CLI: the main thread in `examples::json::print`, every tokio
//! worker idle, no ODBC call running).
#![cfg(feature = "odbc")]

mod common;

use backend_fake::fixtures;
use common::{DR_FLAGS, Sim, Work, json, text, topology_text_with};
use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::time::{Duration, Instant};

/// How long one CLI run may take. A DR with fast timeouts finishes in a few seconds; the
/// login timeout of the dead source is bounded by the step timeout (3 s here).
const BOUND: Duration = Duration::from_secs(60);

/// Runs `cms-failover <args> --backend odbc` and returns its output; fails the test with a
/// clear message (and what it printed) when it has not exited within [`BOUND`].
fn run_bounded(w: &Work, topology: &std::path::Path, args: &[&str]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cms-failover"));
    c.env_remove("CMS_FAILOVER_TOPOLOGY")
        .env_remove("CMS_FAILOVER_JOURNAL_DIR")
        .env(common::PW_VAR, fixtures::LOGIN_PASSWORD)
        .env("HOME", w.dir.path())
        .env("XDG_STATE_HOME", w.path("state"))
        .env("USER", "tester")
        .args(args)
        .args(["--backend", "odbc", "--topology"])
        .arg(topology)
        .arg("--journal-dir")
        .arg(w.journal());
    common::output_within(
        &mut c,
        BOUND,
        &format!("cms-failover {args:?} --backend odbc"),
    )
}

/// The DR of the mirrored fixture to B with `endpoints` in the topology, the source store
/// (A and its mirror) down in the estate; asserts success, the report and B serving.
fn disaster_recovery(sim: &Sim, endpoints: &[(failover_core::InstanceAddr, SocketAddr)]) {
    for i in [fixtures::active(), fixtures::active_mirror()] {
        sim.estate.set_reachable(&i, false).unwrap();
    }
    let w = Work::new();
    let t = w.write(
        "topology.toml",
        &topology_text_with(true, endpoints, &sim.connection(), ""),
    );
    let mut args = vec!["failover", "--yes", "--json"];
    args.extend(DR_FLAGS);
    let started = Instant::now();
    let out = run_bounded(&w, &t, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out.stdout);
    assert_eq!(v["run"]["backend"], "odbc", "{v}");
    assert_eq!(v["run"]["mode"], "disaster_recovery", "{v}");
    assert_eq!(v["outcome"]["code"], "succeeded", "{v}");
    assert_eq!(v["outcome"]["active"], fixtures::backup().to_string());
    let snap = sim.estate.snapshot();
    for db in fixtures::databases() {
        assert_eq!(
            snap.writable_reachable_copies(&db),
            vec![fixtures::backup()]
        );
    }
    eprintln!("the DR took {:?}", started.elapsed());
}

#[test]
fn disaster_recovery_through_odbc_with_the_source_port_closed() {
    let sim = Sim::start_plaintext(fixtures::Options::default().mirrored(true));
    disaster_recovery(&sim, &sim.endpoints());
}

#[test]
fn disaster_recovery_through_odbc_with_a_source_that_accepts_and_never_answers() {
    let sim = Sim::start_plaintext(fixtures::Options::default().mirrored(true));
    // A listener that never accepts: the kernel completes the handshake (backlog), the
    // client's pre-login is never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = silent.local_addr().unwrap();
    let dead = [fixtures::active(), fixtures::active_mirror()];
    let endpoints: Vec<_> = sim
        .endpoints()
        .into_iter()
        .map(|(i, a)| if dead.contains(&i) { (i, at) } else { (i, a) })
        .collect();
    disaster_recovery(&sim, &endpoints);
    drop(silent);
}
