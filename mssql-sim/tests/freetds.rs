//! FreeTDS `tsql` against the simulator: logs in, runs the backends' statements and gets the
//! same results and errors as tiberius. These tests fail (not skip) when `tsql` is missing.

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use common::*;
use failover_core::{DatabaseName, LocationRecord, Store};
use failover_tsql::build;
use mssql_sim::{SimHandle, SimOptions, Simulator};

async fn start(o: &Options) -> (SimHandle, fixtures::Fixture) {
    let f = fixtures::build(o);
    let sim = Simulator::start(f.estate.clone(), SimOptions::default())
        .await
        .unwrap();
    (sim, f)
}

fn dbs() -> Vec<DatabaseName> {
    fixtures::databases()
}

/// `tsql` needs each batch terminated by `go` on its own line.
fn script(batches: &[String]) -> String {
    batches.iter().map(|b| format!("{b}\ngo\n")).collect()
}

#[test]
fn tsql_is_installed() {
    let out = std::process::Command::new("tsql")
        .arg("-C")
        .output()
        .expect("FreeTDS `tsql` must be installed (freetds-bin)");
    assert!(String::from_utf8_lossy(&out.stdout).contains("freetds"));
}

#[tokio::test]
async fn tsql_probe_matches_tiberius() {
    // No workload: positions stay put between the two clients' probes.
    let (sim, _f) = start(&Options::default().mirrored(true).workload(false)).await;
    let a = fixtures::active();
    let port = sim.addr_of(&a).unwrap().port();
    let out = tsql(
        port,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &script(&[build::probe(&dbs())]),
    )
    .await;
    let sets = tsql_sets(&out);
    assert_eq!(sets.len(), 2, "{out}");
    let mut c = tiberius_connect(port, LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    let tib = batch(&mut c, &build::probe(&dbs())).await.unwrap();
    // tsql prints the header first; the rows match tiberius' values exactly.
    assert_eq!(sets[0][0], row(&[Some("version")]));
    assert_eq!(sets[0][1..], tib[0][..]);
    assert_eq!(sets[1][0][0].as_deref(), Some("name"));
    assert_eq!(sets[1][1..], tib[1][..], "{out}");
}

#[tokio::test]
async fn tsql_wrong_password_is_refused() {
    let (sim, _f) = start(&Options::default()).await;
    let port = sim.addr_of(&fixtures::active()).unwrap().port();
    let out = tsql(port, LOGIN_USER, "not-the-password", "SELECT 1\ngo\n").await;
    assert!(out.contains("Msg 18456"), "{out}");
    assert!(out.contains("Login failed for user 'cmsfailover'"), "{out}");
}

#[tokio::test]
async fn tsql_gets_the_same_errors() {
    let (sim, _f) = start(&Options::default().mirrored(true)).await;
    let port = sim.addr_of(&fixtures::active()).unwrap().port();
    let mirror_port = sim.addr_of(&fixtures::active_mirror()).unwrap().port();
    let out = tsql(
        port,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &script(&[
            "SELECT x FROM dbo.nope".into(),
            "EXEC dbo.sp_nope".into(),
            "SELEC 1".into(),
            "RESTORE DATABASE [xds] WITH RECOVERY".into(),
        ]),
    )
    .await;
    for m in [
        "Msg 208 (severity 16, state 1)",
        "Msg 2812 (severity 16, state 62)",
        "Msg 102 (severity 15, state 1)",
        "Msg 3104",
    ] {
        assert!(out.contains(m), "{m} missing in {out}");
    }
    let out = tsql(mirror_port, LOGIN_USER, LOGIN_PASSWORD, "USE [xds]\ngo\n").await;
    assert!(out.contains("Msg 954"), "{out}");
}

#[tokio::test]
async fn tsql_changes_are_visible_to_tiberius_and_back() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let port = sim.addr_of(&a).unwrap().port();
    let out = tsql(
        port,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &script(&[build::set_read_only(&dbs(), true, 5000)]),
    )
    .await;
    assert!(!out.contains("Msg "), "{out}");
    assert!(f.estate.snapshot().writable_copies(&dbs()[0]).is_empty());
    let mut c = tiberius_connect(port, LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    let tib = batch(&mut c, &build::probe(&dbs())).await.unwrap();
    assert!(tib[1].iter().all(|r| r[2].as_deref() == Some("1")));
    // A write into the fenced control database fails with 3906 for both clients.
    let cfg = failover_tsql::SqlConfig {
        control_database: dbs()[0].clone(),
        ..Default::default()
    };
    let rec = LocationRecord {
        epoch: 2,
        active: Store::new(fixtures::backup(), None).unwrap(),
        run_id: "r".into(),
    };
    let out = tsql(
        port,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &script(&[build::write_location(&cfg, &rec, Some(1))]),
    )
    .await;
    assert!(out.contains("Msg 3906"), "{out}");
    assert_eq!(
        batch(&mut c, &build::write_location(&cfg, &rec, Some(1)))
            .await
            .unwrap_err()
            .0,
        3906
    );
    // tiberius holds the lock; tsql's session is refused (-1) and can see it is not the owner.
    let got = batch(&mut c, &build::acquire_lock("cms-failover"))
        .await
        .unwrap();
    assert_eq!(got.last().unwrap()[0][0].as_deref(), Some("0"));
    let out = tsql(
        port,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &script(&[
            build::acquire_lock("cms-failover"),
            build::lock_mode("cms-failover"),
        ]),
    )
    .await;
    let sets = tsql_sets(&out);
    assert_eq!(
        sets[0],
        vec![row(&[Some("result")]), row(&[Some("-1")])],
        "{out}"
    );
    assert_eq!(
        sets[1],
        vec![row(&[Some("mode")]), row(&[Some("NoLock")])],
        "{out}"
    );
    // Once tiberius disconnects, tsql gets the lock.
    drop(c);
    let free = async {
        while f
            .estate
            .snapshot()
            .lock_holder(&a, "cms-failover")
            .is_some()
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), free)
        .await
        .unwrap();
    let out = tsql(
        port,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &script(&[build::acquire_lock("cms-failover")]),
    )
    .await;
    assert_eq!(tsql_sets(&out)[0][1], row(&[Some("0")]), "{out}");
}

#[tokio::test]
async fn tsql_sees_faults_and_a_down_instance() {
    use backend_fake::{Fault, FaultConfig, ScriptedFault, SqlError};
    use failover_core::Operation;
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let port = sim.addr_of(&a).unwrap().port();
    f.estate
        .set_faults(FaultConfig::seeded(3).script(ScriptedFault::on(
            &a,
            Operation::SetReadOnly,
            1,
            Fault::Error(SqlError::could_not_lock("xds")),
        )));
    let out = tsql(
        port,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &script(&[build::set_read_only(&dbs(), true, 5000)]),
    )
    .await;
    assert!(out.contains("Msg 5061"), "{out}");
    assert!(
        !f.estate.snapshot().writable_copies(&dbs()[0]).is_empty(),
        "the error fault changed nothing"
    );
    f.estate.set_reachable(&a, false).unwrap();
    let refused = async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .unwrap();
    let out = tsql(port, LOGIN_USER, LOGIN_PASSWORD, "SELECT 1\ngo\n").await;
    assert!(
        out.contains("problem connecting") || out.contains("refused"),
        "{out}"
    );
}
