//! The simulator serving a backend-fake estate, driven by tiberius.

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options, StandbyCopy};
use backend_fake::{Fault, FaultConfig, ScriptedFault, SqlError};
use common::*;
use failover_core::{DatabaseName, LocationRecord, MirrorFailoverKind, Operation, Store};
use failover_tsql::build;
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::time::Duration;

async fn start(o: &Options) -> (SimHandle, fixtures::Fixture) {
    let f = fixtures::build(o);
    let sim = Simulator::start(f.estate.clone(), SimOptions::default())
        .await
        .unwrap();
    (sim, f)
}

fn port(sim: &SimHandle, i: &failover_core::InstanceAddr) -> u16 {
    sim.addr_of(i).unwrap().port()
}

async fn connect(sim: &SimHandle, i: &failover_core::InstanceAddr) -> Tib {
    tiberius_connect(port(sim, i), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap()
}

fn dbs() -> Vec<DatabaseName> {
    fixtures::databases()
}

#[tokio::test]
async fn login_good_and_bad_password_and_initial_database() {
    let (sim, _f) = start(&Options::default()).await;
    let a = fixtures::active();
    let mut c = connect(&sim, &a).await;
    assert_eq!(
        batch(&mut c, "SELECT DB_NAME() AS db;").await.unwrap()[0],
        vec![row(&[Some("master")])]
    );
    let e = tiberius_connect(port(&sim, &a), LOGIN_USER, "wrong", None)
        .await
        .unwrap_err();
    assert_eq!(server_error(e), (18456, 14));
    let mut c = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, Some("xds"))
        .await
        .unwrap();
    assert_eq!(
        batch(&mut c, "SELECT DB_NAME();").await.unwrap()[0],
        vec![row(&[Some("xds")])]
    );
    // The standby copy is a mirror on a mirrored estate: opening it fails with 954 (as 4060).
    let (sim, _f) = start(&Options::default().mirrored(true)).await;
    let e = tiberius_connect(
        port(&sim, &fixtures::active_mirror()),
        LOGIN_USER,
        LOGIN_PASSWORD,
        Some("xds"),
    )
    .await
    .unwrap_err();
    assert_eq!(server_error(e).0, 4060);
}

#[tokio::test]
async fn probe_batch_returns_version_and_database_rows() {
    let (sim, _f) = start(&Options::default().mirrored(true)).await;
    let mut c = connect(&sim, &fixtures::active()).await;
    let sets = batch(&mut c, &build::probe(&dbs())).await.unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0], vec![row(&[Some(fixtures::VERSION)])]);
    // mirroring_partner_instance is the partner's server name (computer\instance), not its
    // address.
    let partner = backend_fake::default_server_name(&fixtures::active_mirror());
    assert_eq!(partner, "SQL-A2\\RTC");
    let lis = row(&[
        Some("lis"),
        Some("ONLINE"),
        Some("0"),
        Some("PRINCIPAL"),
        Some("SYNCHRONIZED"),
        Some(&partner),
        Some("FULL"),
        Some("1000"),
    ]);
    assert_eq!(sets[1][0][..7], lis[..7]);
    assert_eq!(sets[1][1][0].as_deref(), Some("xds"), "ORDER BY d.name");
    // The mirror side reports RESTORING / MIRROR.
    let mut m = connect(&sim, &fixtures::active_mirror()).await;
    let sets = batch(&mut m, &build::probe(&dbs())).await.unwrap();
    assert_eq!(sets[1][0][1].as_deref(), Some("RESTORING"));
    assert_eq!(sets[1][0][3].as_deref(), Some("MIRROR"));
    // The shape in the notes (no join) and system databases.
    let sets = batch(&mut c, "SELECT name, state_desc, is_read_only, user_access_desc FROM sys.databases WHERE name IN (N'xds', N'master');").await.unwrap();
    assert_eq!(sets[0].len(), 2);
}

#[tokio::test]
async fn rpc_queries_with_parameters() {
    let (sim, _f) = start(&Options::default()).await;
    let mut c = connect(&sim, &fixtures::backup()).await;
    let rows = c
        .query(
            "SELECT name, is_read_only, @P2 AS n FROM sys.databases WHERE name = @P1",
            &[&"xds", &42i32],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<&str, _>(0), Some("xds"));
    assert_eq!(
        rows[0].get::<bool, _>(1),
        Some(true),
        "the fixture's standby copy is read-only"
    );
    assert_eq!(rows[0].get::<i32, _>(2), Some(42));
    let Err(e) = c.query("SELEC * FROM nope WHERE x = @P1", &[&1i32]).await else {
        panic!("a syntax error is an error");
    };
    assert_eq!(server_error(e).0, 102);
    let e = match c
        .query("SELECT a FROM dbo.nope WHERE x = @P1", &[&1i32])
        .await
    {
        Ok(s) => s.into_results().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(server_error(e), (208, 16));
}

#[tokio::test]
async fn errors_carry_sql_server_numbers() {
    let (sim, _f) = start(&Options::default().mirrored(true)).await;
    let mut c = connect(&sim, &fixtures::active()).await;
    for (sql, number) in [
        ("SELEC 1", 102),
        ("SELECT FROM sys.databases", 156),
        ("SELECT * FROM dbo.nope", 208),
        ("SELECT *", 263),
        ("SELECT x FROM dbo.nope", 208),
        ("SELECT nope FROM sys.databases", 207),
        ("EXEC dbo.sp_nope", 2812),
        (
            "ALTER DATABASE [nope] SET READ_ONLY WITH ROLLBACK IMMEDIATE",
            5011,
        ),
        ("RESTORE DATABASE [xds] WITH RECOVERY", 3104),
        (
            "ALTER DATABASE [xds] SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS",
            1455,
        ),
        ("SET FROBNICATE ON", 195),
        ("DROP TABLE x", 156),
    ] {
        assert_eq!(batch(&mut c, sql).await.unwrap_err().0, number, "{sql}");
    }
    let mut m = connect(&sim, &fixtures::active_mirror()).await;
    assert_eq!(batch(&mut m, "USE [xds];").await.unwrap_err().0, 954);
    // Session options the drivers send are accepted.
    batch(&mut c, "SET NOCOUNT ON; SET TEXTSIZE 2147483647; SET ANSI_NULLS ON; SET TRANSACTION ISOLATION LEVEL READ COMMITTED;")
        .await
        .unwrap();
}

#[tokio::test]
async fn fence_is_visible_across_connections_and_blocks_writes() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let mut c1 = connect(&sim, &a).await;
    let mut c2 = connect(&sim, &a).await;
    batch(&mut c1, &build::set_read_only(&dbs(), true, 5000))
        .await
        .unwrap();
    let sets = batch(&mut c2, &build::probe(&dbs())).await.unwrap();
    assert!(
        sets[1].iter().all(|r| r[2].as_deref() == Some("1")),
        "{sets:?}"
    );
    assert!(f.estate.snapshot().writable_copies(&dbs()[0]).is_empty());
    // The location record kept in a read-only database cannot be written: 3906.
    let cfg = failover_tsql::SqlConfig {
        control_database: dbs()[0].clone(),
        ..Default::default()
    };
    let rec = LocationRecord {
        epoch: 2,
        active: Store::new(fixtures::backup(), None).unwrap(),
        run_id: "r".into(),
    };
    assert_eq!(
        batch(&mut c2, &build::write_location(&cfg, &rec, Some(1)))
            .await
            .unwrap_err()
            .0,
        3906
    );
    batch(&mut c2, &build::set_read_only(&dbs(), false, 5000))
        .await
        .unwrap();
    assert_eq!(f.estate.snapshot().writable_copies(&dbs()[0]), vec![a]);
}

#[tokio::test]
async fn recover_positions_and_mirror_failover() {
    let (sim, f) = start(
        &Options::default()
            .standby(StandbyCopy::Restoring)
            .lag(5)
            .workload(false),
    )
    .await;
    let b = fixtures::backup();
    let mut c = connect(&sim, &b).await;
    let cfg = failover_tsql::SqlConfig::default();
    let sets = batch(&mut c, &build::positions(&cfg, &dbs()))
        .await
        .unwrap();
    assert_eq!(sets.len(), 2);
    let pos: u64 = sets[0][0][0].as_deref().unwrap().parse().unwrap();
    assert!(pos >= 995, "{pos}");
    batch(&mut c, &build::recover(&dbs())).await.unwrap();
    assert_eq!(
        f.estate.snapshot().database(&b, &dbs()[0]).unwrap().state,
        failover_core::DbState::Online
    );
    assert_eq!(
        batch(&mut c, &build::recover(&dbs())).await.unwrap_err().0,
        3117
    );

    let (sim, f) = start(&Options::default().mirrored(true)).await;
    let mut c = connect(&sim, &fixtures::active()).await;
    batch(
        &mut c,
        &build::mirror_failover(&dbs(), MirrorFailoverKind::Planned),
    )
    .await
    .unwrap();
    let snap = f.estate.snapshot();
    assert_eq!(
        snap.writable_copies(&dbs()[0]),
        vec![fixtures::active_mirror()]
    );
    let mut m = connect(&sim, &fixtures::active_mirror()).await;
    let sets = batch(&mut m, &build::probe(&dbs())).await.unwrap();
    assert_eq!(sets[1][0][3].as_deref(), Some("PRINCIPAL"));
    let sets = batch(
        &mut m,
        "SELECT CAST(m.mirroring_failover_lsn AS nvarchar(40)) AS position \
         FROM sys.database_mirroring AS m WHERE m.database_id = DB_ID(N'xds');",
    )
    .await
    .unwrap();
    assert!(sets[0][0][0].is_some());
}

#[tokio::test]
async fn app_lock_is_session_owned_and_released_on_disconnect() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let mut c1 = connect(&sim, &a).await;
    let mut c2 = connect(&sim, &a).await;
    let code = |s: Vec<Vec<Vec<Option<String>>>>| s.last().unwrap()[0][0].clone().unwrap();
    assert_eq!(
        code(
            batch(&mut c1, &build::acquire_lock("cms-failover"))
                .await
                .unwrap()
        ),
        "0"
    );
    assert_eq!(
        code(
            batch(&mut c2, &build::acquire_lock("cms-failover"))
                .await
                .unwrap()
        ),
        "-1"
    );
    assert_eq!(
        code(
            batch(&mut c1, &build::lock_mode("cms-failover"))
                .await
                .unwrap()
        ),
        "Exclusive"
    );
    assert_eq!(
        code(
            batch(&mut c2, &build::lock_mode("cms-failover"))
                .await
                .unwrap()
        ),
        "NoLock"
    );
    assert_eq!(
        batch(&mut c2, &build::release_lock("cms-failover"))
            .await
            .unwrap_err()
            .0,
        1223
    );
    drop(c1);
    // The server notices the closed connection asynchronously; wait for the release.
    let released = async {
        while f
            .estate
            .snapshot()
            .lock_holder(&a, "cms-failover")
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), released)
        .await
        .expect("lock released on disconnect");
    assert_eq!(
        code(
            batch(&mut c2, &build::acquire_lock("cms-failover"))
                .await
                .unwrap()
        ),
        "0"
    );
    assert_eq!(
        code(
            batch(&mut c2, &build::release_lock("cms-failover"))
                .await
                .unwrap()
        ),
        "0"
    );
}

#[tokio::test]
async fn location_compare_and_swap() {
    let (sim, _f) = start(&Options::default().location(false)).await;
    let a = fixtures::active();
    let mut c = connect(&sim, &a).await;
    let cfg = failover_tsql::SqlConfig::default();
    assert_eq!(
        batch(&mut c, &build::read_location(&cfg))
            .await
            .unwrap_err(),
        (208, 16)
    );
    let rec = |e: u64, run: &str| LocationRecord {
        epoch: e,
        active: Store::new(fixtures::backup(), Some(fixtures::backup_mirror())).unwrap(),
        run_id: run.into(),
    };
    let sets = batch(&mut c, &build::write_location(&cfg, &rec(1, "it's"), None))
        .await
        .unwrap();
    let stored = row(&[
        Some("1"),
        Some(&fixtures::backup().to_string()),
        Some(&fixtures::backup_mirror().to_string()),
        Some("it's"),
    ]);
    assert_eq!(sets.last().unwrap()[0], stored);
    // A stale expected epoch changes nothing; the stored record comes back.
    let sets = batch(
        &mut c,
        &build::write_location(&cfg, &rec(5, "other"), Some(3)),
    )
    .await
    .unwrap();
    assert_eq!(sets.last().unwrap()[0], stored);
    let sets = batch(
        &mut c,
        &build::write_location(&cfg, &rec(2, "next"), Some(1)),
    )
    .await
    .unwrap();
    assert_eq!(sets.last().unwrap()[0][0].as_deref(), Some("2"));
    let mut c2 = connect(&sim, &a).await;
    assert_eq!(
        batch(&mut c2, &build::read_location(&cfg)).await.unwrap()[0][0][3].as_deref(),
        Some("next")
    );
}

#[tokio::test]
async fn multi_packet_requests_and_replies() {
    let (sim, _f) = start(&Options::default()).await;
    let mut c = connect(&sim, &fixtures::active()).await;
    let long = format!(
        "/* {} */ SELECT N'{}' AS s;",
        "pad ".repeat(30_000),
        "é".repeat(3000)
    );
    let sets = batch(&mut c, &long).await.unwrap();
    assert_eq!(
        sets[0][0][0].as_deref().map(|s| s.chars().count()),
        Some(3000)
    );
    let many = (0..300)
        .map(|_| "SELECT name FROM sys.databases;")
        .collect::<String>();
    let sets = batch(&mut c, &many).await.unwrap();
    assert_eq!(sets.len(), 300);
}

#[tokio::test]
async fn faults_manifest_on_the_wire() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let cfg = FaultConfig::seeded(1)
        .script(ScriptedFault::on(
            &a,
            Operation::SetReadOnly,
            1,
            Fault::Error(SqlError::could_not_lock("xds")),
        ))
        .script(ScriptedFault::on(
            &a,
            Operation::Probe,
            1,
            Fault::Disconnect,
        ))
        .script(ScriptedFault::on(
            &a,
            Operation::Probe,
            2,
            Fault::Delay(Duration::from_millis(20)),
        ));
    f.estate.set_faults(cfg);
    let mut c = connect(&sim, &a).await;
    assert_eq!(
        batch(&mut c, &build::set_read_only(&dbs(), true, 5000))
            .await
            .unwrap_err()
            .0,
        5061
    );
    assert!(
        f.estate.snapshot().writable_copies(&dbs()[0]).contains(&a),
        "an error fault changes nothing"
    );
    let r = match c.simple_query(build::probe(&dbs())).await {
        Ok(s) => s.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(r.is_err(), "the disconnect fault drops the connection");
    let mut c = connect(&sim, &a).await;
    assert_eq!(
        batch(&mut c, &build::probe(&dbs())).await.unwrap().len(),
        2,
        "delayed probe still answers"
    );
}

#[tokio::test]
async fn dropped_connection_and_instance_down_and_back() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    f.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::Probe,
            1,
            Fault::Disconnect,
        )));
    let mut c = connect(&sim, &a).await;
    let r = match c.simple_query(build::probe(&dbs())).await {
        Ok(s) => s.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(matches!(r, Err(tiberius::error::Error::Io { .. })), "{r:?}");

    f.estate.set_reachable(&a, false).unwrap();
    let refused = async {
        while tokio::net::TcpStream::connect(sim.addr_of(&a).unwrap())
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("port closes while down");
    f.estate.set_reachable(&a, true).unwrap();
    let back = async {
        loop {
            if let Ok(c) = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None).await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let mut c = tokio::time::timeout(Duration::from_secs(10), back)
        .await
        .expect("port reopens");
    assert_eq!(batch(&mut c, &build::probe(&dbs())).await.unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn hang_fault_still_honours_attention() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    f.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::Probe,
            1,
            Fault::Hang,
        )));
    let mut raw = RawClient::login(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD).await;
    raw.send(0x01, &batch_payload("SELECT @@VERSION;")).await;
    raw.send(0x06, &[]).await;
    let reply = raw.recv().await;
    assert_eq!(&reply[..3], &[0xFD, 0x20, 0x00], "{reply:02X?}");
    raw.send(0x01, &batch_payload("SELECT @@VERSION;")).await;
    assert_eq!(raw.recv().await[0], 0x81);
}

#[tokio::test]
async fn crash_connect_errors_and_killed_sessions() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let cfg = FaultConfig::seeded(7)
        .script(ScriptedFault::on(
            &a,
            Operation::Connect,
            1,
            Fault::Error(SqlError::login_failed(LOGIN_USER)),
        ))
        .script(ScriptedFault::on(
            &a,
            Operation::SetReadOnly,
            1,
            Fault::Crash { applied: true },
        ));
    f.estate.set_faults(cfg);
    let e = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap_err();
    assert_eq!(
        server_error(e).0,
        18456,
        "an injected connect error arrives as the login error"
    );
    let mut c = connect(&sim, &a).await;
    let r = match c
        .simple_query(build::set_read_only(&dbs(), true, 5000))
        .await
    {
        Ok(s) => s.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(r.is_err(), "the crash drops the connection");
    assert!(
        f.estate.snapshot().writable_copies(&dbs()[0]).is_empty(),
        "but the fence was applied"
    );
    // A session the estate kills (network blip) is dropped at its next request, lock released.
    let mut c = connect(&sim, &a).await;
    batch(&mut c, &build::acquire_lock("l")).await.unwrap();
    f.estate.kill_sessions(&a);
    assert!(f.estate.snapshot().lock_holder(&a, "l").is_none());
    let r = match c.simple_query("SELECT @@SPID;").await {
        Ok(s) => s.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(matches!(r, Err(tiberius::error::Error::Io { .. })), "{r:?}");
}

#[tokio::test]
async fn a_failing_statement_does_not_stop_the_batch() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let mut c = connect(&sim, &a).await;
    // The first ALTER fails (5011, then 5069); the second still runs, as on SQL Server.
    let e = batch(&mut c, "ALTER DATABASE [nope] SET READ_ONLY WITH ROLLBACK IMMEDIATE; ALTER DATABASE [xds] SET READ_ONLY WITH ROLLBACK IMMEDIATE;").await.unwrap_err();
    assert_eq!(e.0, 5011);
    assert!(
        f.estate
            .snapshot()
            .database(&a, &dbs()[0])
            .unwrap()
            .read_only
    );
    // A syntax error anywhere means nothing runs.
    let e = batch(
        &mut c,
        "ALTER DATABASE [xds] SET READ_WRITE WITH ROLLBACK IMMEDIATE; SELEC 1;",
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, 102);
    assert!(
        f.estate
            .snapshot()
            .database(&a, &dbs()[0])
            .unwrap()
            .read_only
    );
    // @@SPID and SERVERPROPERTY.
    let sets = batch(&mut c, "SELECT @@SPID AS spid, SERVERPROPERTY('ServerName') AS s, SERVERPROPERTY(N'ProductVersion') AS v;").await.unwrap();
    assert!(sets[0][0][0].as_deref().unwrap().parse::<u16>().unwrap() >= 51);
    // @@SERVERNAME is computer name and instance: no domain.
    assert_eq!(sets[0][0][1].as_deref(), Some("SQL-A\\RTC"));
    assert_eq!(sets[0][0][2].as_deref(), Some("15.0.4322.2"));
}

#[tokio::test]
async fn applock_by_direct_rpc_returns_its_status() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let mut raw = RawClient::login(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD).await;
    let call = |p: &str| {
        rpc_payload(
            p,
            &[
                ("@Resource", Ok("direct")),
                ("@LockMode", Ok("Exclusive")),
                ("@LockOwner", Ok("Session")),
                ("@LockTimeout", Err(0)),
            ],
        )
    };
    raw.send(0x03, &call("sp_getapplock")).await;
    let reply = raw.recv().await;
    let at = reply.iter().position(|b| *b == 0x79).expect("RETURNSTATUS");
    assert_eq!(&reply[at + 1..at + 5], &0i32.to_le_bytes());
    assert!(f.estate.snapshot().lock_holder(&a, "direct").is_some());
    raw.send(0x03, &rpc_payload("dbo.sp_nope", &[])).await;
    let reply = raw.recv().await;
    assert_eq!(reply[0], 0xAA, "ERROR token");
    assert_eq!(&reply[3..7], &2812i32.to_le_bytes());
}

#[tokio::test]
async fn a_hanging_login_ends_when_the_client_leaves() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    f.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::Connect,
            1,
            Fault::Hang,
        )));
    let attempt = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), attempt)
            .await
            .is_err(),
        "the login hangs"
    );
    // The next login (no fault) works, and no session was left open by the hung one.
    let mut c = connect(&sim, &a).await;
    assert_eq!(batch(&mut c, "SELECT @@SPID;").await.unwrap().len(), 1);
    let gone = async {
        while f.estate.snapshot().instances[&a].sessions != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("only the live session remains");
}
