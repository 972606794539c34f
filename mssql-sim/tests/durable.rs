//! `mssql-sim --state-dir`: databases, flags, positions, mirroring roles and location
//! records survive a SIGKILL and restart; sessions and application locks do not.

mod common;

use common::*;
use failover_core::{DatabaseName, LocationRecord, MirrorFailoverKind, Store};
use failover_tsql::{SqlConfig, build};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mssql-sim");
const A: &str = "sql-a.cms.test\\RTC";
const A2: &str = "sql-a2.cms.test\\RTC";
const B: &str = "sql-b.cms.test\\RTC";

/// Kills the child (SIGKILL) on drop so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the simulator on the example estate with `state_dir` (if any); returns it with
/// the port of each instance.
fn start(dir: &Path, state_dir: Option<&Path>) -> (Running, Vec<(String, u16)>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--estate")
        .arg(dir.join("estate.toml"))
        .env("MSSQL_SIM_PASSWORD", PASSWORD)
        .env("CMS_LOGIN_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(s) = state_dir {
        cmd.arg("--state-dir").arg(s);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let running = Running(child);
    let mut lines = BufReader::new(out).lines();
    let mut got = Vec::new();
    for _ in 0..3 {
        let line = lines.next().expect("a listening line").unwrap();
        let rest = line.strip_prefix("listening on ").unwrap();
        let (addr, name) = rest.split_once(' ').unwrap();
        got.push((
            name.to_string(),
            addr.rsplit_once(':').unwrap().1.parse().unwrap(),
        ));
    }
    (running, got)
}

fn port(ports: &[(String, u16)], name: &str) -> u16 {
    ports.iter().find(|(n, _)| n == name).unwrap().1
}

async fn sa(ports: &[(String, u16)], name: &str) -> Tib {
    tiberius_connect(port(ports, name), "sa", PASSWORD, None)
        .await
        .unwrap()
}

fn db(n: &str) -> DatabaseName {
    DatabaseName::parse(n).unwrap()
}

/// `(name, state_desc, is_read_only, mirroring_role_desc)` of xds and lis.
async fn rows(c: &mut Tib) -> Vec<Vec<Option<String>>> {
    let sets = batch(c, &build::probe(&[db("lis"), db("xds")]))
        .await
        .unwrap();
    sets[1].iter().map(|r| r[..4].to_vec()).collect()
}

async fn position(c: &mut Tib, d: &str) -> u64 {
    let sets = batch(c, &build::positions(&SqlConfig::default(), &[db(d)]))
        .await
        .unwrap();
    sets.last().unwrap()[0]
        .last()
        .unwrap()
        .clone()
        .unwrap()
        .parse()
        .unwrap()
}

async fn lock(c: &mut Tib) -> String {
    let sets = batch(c, &build::acquire_lock("cms-failover"))
        .await
        .unwrap();
    sets.last().unwrap()[0][0].clone().unwrap()
}

#[tokio::test]
async fn state_survives_sigkill_and_restart_but_sessions_and_locks_do_not() {
    let (dir, state) = example_estate();
    let (mut sim, ports) = start(&dir, Some(&state));

    // Change every kind of durable state through clients.
    let mut a = sa(&ports, A).await;
    batch(
        &mut a,
        &build::mirror_failover(&[db("lis")], MirrorFailoverKind::Planned),
    )
    .await
    .unwrap();
    batch(&mut a, &build::set_read_only(&[db("xds")], true, 5000))
        .await
        .unwrap();
    let record = LocationRecord {
        epoch: 2,
        active: Store::new(failover_core::InstanceAddr::parse(B).unwrap(), None).unwrap(),
        run_id: "durable-test".into(),
    };
    batch(
        &mut a,
        &build::write_location(&SqlConfig::default(), &record, Some(1)),
    )
    .await
    .unwrap();
    let mut b = sa(&ports, B).await;
    batch(&mut b, &build::set_read_only(&[db("xds")], false, 5000))
        .await
        .unwrap();
    assert_eq!(lock(&mut b).await, "0", "granted");
    let b_xds = position(&mut b, "xds").await;
    let before_a = rows(&mut a).await;
    let before_a2 = rows(&mut sa(&ports, A2).await).await;
    let before_b = rows(&mut b).await;
    assert_eq!(before_a[0][3].as_deref(), Some("MIRROR"), "lis failed over");
    assert_eq!(before_a[1][2].as_deref(), Some("1"), "xds read-only on A");
    assert_eq!(before_b[1][2].as_deref(), Some("0"), "xds writable on B");

    // SIGKILL (std's Child::kill) while sessions and the lock are open, then restart.
    sim.0.kill().unwrap();
    sim.0.wait().unwrap();
    drop(sim);
    let (_sim, ports) = start(&dir, Some(&state));
    let mut a = sa(&ports, A).await;
    let mut b = sa(&ports, B).await;
    assert_eq!(rows(&mut a).await, before_a);
    assert_eq!(rows(&mut sa(&ports, A2).await).await, before_a2);
    assert_eq!(rows(&mut b).await, before_b);
    assert!(
        position(&mut b, "xds").await >= b_xds,
        "positions are kept (not reset to the file's 990)"
    );
    let loc = batch(&mut a, &build::read_location(&SqlConfig::default()))
        .await
        .unwrap();
    let loc = &loc.last().unwrap()[0];
    assert_eq!(loc[0].as_deref(), Some("2"));
    assert_eq!(loc[1].as_deref(), Some(B));
    assert_eq!(loc[3].as_deref(), Some("durable-test"));
    // The lock died with its session: a new session gets it at once.
    assert_eq!(
        lock(&mut b).await,
        "0",
        "the lock did not survive the restart"
    );

    // Without the state dir the estate file's state comes back (the state lives in DIR).
    drop(_sim);
    let (_plain, ports) = start(&dir, None);
    assert_eq!(
        rows(&mut sa(&ports, A).await).await[1][2].as_deref(),
        Some("0")
    );
}

#[test]
fn a_damaged_state_file_is_refused_with_a_clear_error() {
    let (dir, state) = example_estate();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("state.json"), b"{\"format\": 1, \"instan").unwrap();
    let out = Command::new(BIN)
        .arg("--estate")
        .arg(dir.join("estate.toml"))
        .arg("--state-dir")
        .arg(&state)
        .env("MSSQL_SIM_PASSWORD", PASSWORD)
        .env("CMS_LOGIN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is damaged") && err.contains("move it aside"),
        "{err}"
    );
}

/// A fresh directory holding the example estate file, and the state dir to use.
fn example_estate() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile_dir();
    std::fs::write(
        dir.join("estate.toml"),
        include_str!("../estate.example.toml"),
    )
    .unwrap();
    let state = dir.join("state");
    (dir, state)
}

/// A fresh directory under the system temp dir (removed by the OS, not by the test, so a
/// failing run can be inspected).
fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "mssql-sim-durable-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
