//! Issue 12: the simulator behaves as SQL Server's documentation says (session context,
//! login default database, `SET LOCK_TIMEOUT`, errors, standby copies, server names). Each
//! test names the behaviour; docs/sql-server-behaviour.md links the Microsoft page.

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use common::*;
use failover_core::{DatabaseName, MirrorFailoverKind, MirrorRole};
use failover_tsql::build;
use mssql_sim::{SimHandle, SimOptions, Simulator};

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

fn dbs() -> Vec<DatabaseName> {
    fixtures::databases()
}

fn xds() -> DatabaseName {
    DatabaseName::parse("xds").unwrap()
}

fn db_row(f: &fixtures::Fixture, i: &failover_core::InstanceAddr, db: &str) -> backend_fake::DbRow {
    f.estate.snapshot().instances[i]
        .databases
        .iter()
        .find(|d| d.name.as_str() == db)
        .cloned()
        .expect("database in the snapshot")
}

fn read_only(f: &fixtures::Fixture, i: &failover_core::InstanceAddr, db: &str) -> bool {
    db_row(f, i, db).read_only
}

fn role(f: &fixtures::Fixture, i: &failover_core::InstanceAddr, db: &str) -> Option<MirrorRole> {
    db_row(f, i, db).mirroring.map(|m| m.role)
}

/// A login whose default database is `xds` starts there when the client names no database;
/// SET PARTNER FAILOVER issued from that context disconnects the issuing session (clients of
/// the database are disconnected on the former principal), while the backends' batch, which
/// starts with `USE [master];`, gets its normal reply.
#[tokio::test]
async fn a_login_default_database_is_the_session_context_and_use_master_keeps_failover_clean() {
    let (sim, f) = start(&Options::default().mirrored(true)).await;
    f.estate
        .set_login_default_database(LOGIN_USER, Some(&xds()));
    let a = fixtures::active();
    let mut c = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(
        batch(&mut c, "SELECT DB_NAME() AS db;").await.unwrap()[0],
        vec![row(&[Some("xds")])]
    );
    // Without USE [master]: the switch happens, the issuing session is dropped.
    let r = c
        .simple_query("ALTER DATABASE [xds] SET PARTNER FAILOVER;")
        .await;
    let dropped = match r {
        Err(_) => true,
        Ok(s) => s.into_results().await.is_err(),
    };
    assert!(dropped, "the session in xds must lose its connection");
    assert_eq!(role(&f, &a, "xds"), Some(MirrorRole::Mirror));

    // The backends' batch (USE [master] first) from the same default database: a clean reply.
    let (sim, f) = start(&Options::default().mirrored(true)).await;
    f.estate
        .set_login_default_database(LOGIN_USER, Some(&xds()));
    let mut c = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    batch(
        &mut c,
        &build::mirror_failover(&dbs(), MirrorFailoverKind::Planned),
    )
    .await
    .unwrap();
    assert_eq!(
        batch(&mut c, "SELECT DB_NAME() AS db;").await.unwrap()[0],
        vec![row(&[Some("master")])]
    );
    assert_eq!(role(&f, &a, "xds"), Some(MirrorRole::Mirror));
    assert_eq!(
        role(&f, &fixtures::active_mirror(), "lis"),
        Some(MirrorRole::Principal)
    );

    // A default database that cannot be opened (the mirror copy) refuses the login: 4064.
    let e = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap_err();
    assert_eq!(server_error(e).0, 4064);
    // Naming master at login (as both backends do) is unaffected by the default database.
    let mut c = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, Some("master"))
        .await
        .unwrap();
    batch(&mut c, &build::probe(&dbs())).await.unwrap();
}

/// FreeTDS `tsql` names no database: it lands in the login's default database, and the
/// backends' probe batch still runs (it switches to master itself).
#[tokio::test]
async fn tsql_without_a_database_lands_in_the_default_database() {
    let (sim, f) = start(&Options::default()).await;
    f.estate
        .set_login_default_database(LOGIN_USER, Some(&xds()));
    let p = port(&sim, &fixtures::active());
    let out = tsql(
        p,
        LOGIN_USER,
        LOGIN_PASSWORD,
        "SELECT DB_NAME() AS db\ngo\n",
    )
    .await;
    let sets = tsql_sets(&out);
    assert_eq!(
        sets[0],
        vec![vec![Some("db".to_string())], vec![Some("xds".to_string())]],
        "{out}"
    );
    let out = tsql(
        p,
        LOGIN_USER,
        LOGIN_PASSWORD,
        &format!("{}\ngo\nSELECT DB_NAME() AS db\ngo\n", build::probe(&dbs())),
    )
    .await;
    let sets = tsql_sets(&out);
    assert_eq!(
        sets.last().unwrap(),
        &vec![
            vec![Some("db".to_string())],
            vec![Some("master".to_string())]
        ],
        "{out}"
    );
}

/// `SET LOCK_TIMEOUT` bounds the fence on the server: while another session holds a lock
/// on the database the ALTER waits at most the timeout, then fails with 1222 (then 5069) and
/// changes nothing; once the lock is gone the same batch fences.
#[tokio::test]
async fn a_blocked_fence_fails_with_1222_after_the_lock_timeout() {
    let (sim, f) = start(&Options::default()).await;
    let a = fixtures::active();
    let mut c = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    let block = sim.block_database(&a, "XDS");
    let xds_only = [xds()];
    let e = batch(&mut c, &build::set_read_only(&xds_only, true, 50))
        .await
        .unwrap_err();
    assert_eq!(e.0, 1222);
    assert!(
        !read_only(&f, &a, "xds"),
        "a timed-out fence changes nothing"
    );
    // The timeout is the session's: SET LOCK_TIMEOUT 0 fails at once, on another database
    // nothing waits.
    let e = batch(
        &mut c,
        "SET LOCK_TIMEOUT 0; ALTER DATABASE [xds] SET READ_ONLY WITH ROLLBACK IMMEDIATE;",
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, 1222);
    batch(
        &mut c,
        "ALTER DATABASE [lis] SET READ_ONLY WITH ROLLBACK IMMEDIATE;",
    )
    .await
    .unwrap();
    assert!(read_only(&f, &a, "lis"));
    // FreeTDS sees the same error number.
    let out = tsql(
        port(&sim, &a),
        LOGIN_USER,
        LOGIN_PASSWORD,
        &format!("{}\ngo\n", build::set_read_only(&xds_only, true, 50)),
    )
    .await;
    assert!(out.contains("Msg 1222"), "{out}");
    assert!(out.contains("Msg 5069"), "{out}");
    drop(block);
    batch(&mut c, &build::set_read_only(&xds_only, true, 50))
        .await
        .unwrap();
    assert!(read_only(&f, &a, "xds"));
}

/// Item 5: the specific error, then the generic trailer, as SQL Server sends them: 5011 +
/// 5069 for ALTER DATABASE on a missing database, 1468 + 5069 on a mirror, 5052 + 5069 on a
/// RESTORING copy, 3117 + 3013 for RESTORE … WITH RECOVERY on an ONLINE one, 927 opening a
/// RESTORING database. tiberius reports the first; FreeTDS prints both.
#[tokio::test]
async fn errors_come_in_the_pairs_sql_server_sends() {
    let (sim, _f) = start(
        &Options::default()
            .mirrored(true)
            .standby(fixtures::StandbyCopy::Restoring),
    )
    .await;
    let (a, a2, b) = (
        fixtures::active(),
        fixtures::active_mirror(),
        fixtures::backup(),
    );
    let nope = [DatabaseName::parse("nope").unwrap()];
    let cases: Vec<(&failover_core::InstanceAddr, String, Vec<u32>)> = vec![
        (&a, build::set_read_only(&nope, true, 50), vec![5011, 5069]),
        (
            &a2,
            build::set_read_only(&[xds()], true, 50),
            vec![1468, 5069],
        ),
        (
            &b,
            build::set_read_only(&[xds()], false, 50),
            vec![5052, 5069],
        ),
        (&a, build::recover(&[xds()]), vec![3104, 3013]),
        (&b, "USE [xds];".to_string(), vec![927]),
    ];
    for (i, sql, want) in cases {
        let mut c = tiberius_connect(port(&sim, i), LOGIN_USER, LOGIN_PASSWORD, None)
            .await
            .unwrap();
        assert_eq!(batch(&mut c, &sql).await.unwrap_err().0, want[0], "{sql}");
        assert_eq!(error_numbers(port(&sim, i), &sql).await, want, "{sql}");
    }
    // An ONLINE, unmirrored copy: nothing to roll forward (3117), then 3013.
    let (sim, _f) = start(&Options::default()).await;
    assert_eq!(
        error_numbers(port(&sim, &fixtures::active()), &build::recover(&[xds()])).await,
        vec![3117, 3013]
    );
}

/// Item 3: with `read_only_refused_on_mirroring_principal`, the fence on a mirroring
/// principal is refused as SQL Server refuses options that need exclusive access there:
/// 1468 then 5069 (tiberius reports the first, FreeTDS prints both), nothing changed, the
/// rest of the batch still runs; off (the default), the same batch fences.
#[tokio::test]
async fn a_fence_on_a_mirroring_principal_can_be_refused_with_1468_then_5069() {
    let a = fixtures::active();
    let fence = build::set_read_only(&dbs(), true, 50);
    let (sim, f) = start(
        &Options::default()
            .mirrored(true)
            .read_only_refused_on_mirroring_principal(true),
    )
    .await;
    let mut c = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(batch(&mut c, &fence).await.unwrap_err().0, 1468);
    assert_eq!(
        error_numbers(port(&sim, &a), &fence).await,
        vec![1468, 5069, 1468, 5069],
        "each ALTER of the batch is refused"
    );
    assert!(!read_only(&f, &a, "xds") && !read_only(&f, &a, "lis"));
    let (sim, f) = start(&Options::default().mirrored(true)).await;
    let mut c = tiberius_connect(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    batch(&mut c, &fence).await.unwrap();
    assert!(read_only(&f, &a, "xds") && read_only(&f, &a, "lis"));
}

/// Item 4: a log-shipping STANDBY copy is ONLINE, read-only and `is_in_standby = 1`; `SET
/// READ_WRITE` fails with 5063 (then 5069); `RESTORE DATABASE … WITH RECOVERY` opens it
/// read-write.
#[tokio::test]
async fn a_standby_copy_is_shown_refuses_read_write_and_is_recovered() {
    let (sim, f) = start(&Options::default()).await;
    let b = fixtures::backup();
    f.estate.set_standby(&b, &xds()).unwrap();
    let mut c = tiberius_connect(port(&sim, &b), LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    let sets = batch(&mut c, &build::probe(&[xds()])).await.unwrap();
    assert_eq!(
        sets[1][0],
        row(&[
            Some("xds"),
            Some("ONLINE"),
            Some("1"),
            None,
            None,
            None,
            None,
            None,
            Some("1"),
            None,
            None
        ])
    );
    let fence_undo = build::set_read_only(&[xds()], false, 50);
    assert_eq!(batch(&mut c, &fence_undo).await.unwrap_err().0, 5063);
    assert_eq!(
        error_numbers(port(&sim, &b), &fence_undo).await,
        vec![5063, 5069]
    );
    batch(&mut c, &build::recover(&[xds()])).await.unwrap();
    let row = db_row(&f, &b, "xds");
    assert!(
        !row.read_only && !row.in_standby && row.is_writable(),
        "{row:?}"
    );
}

/// Item 2 (error numbers): SET PARTNER FAILOVER on the mirror is 1470, with safety OFF 1477.
#[tokio::test]
async fn partner_failover_errors_are_1470_on_the_mirror_and_1477_with_safety_off() {
    let (sim, _f) = start(&Options::default().mirrored(true)).await;
    let planned = build::mirror_failover(&[xds()], MirrorFailoverKind::Planned);
    let p = port(&sim, &fixtures::active_mirror());
    assert_eq!(error_numbers(p, &planned).await, vec![1470]);
    let e = backend_fake::Estate::new();
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    for i in [&a, &a2] {
        e.add_instance(i, fixtures::VERSION).unwrap();
    }
    e.add_database(&a, &xds(), failover_core::DbState::Online, false, 1)
        .unwrap();
    e.add_mirroring(
        &xds(),
        &a,
        &a2,
        failover_core::MirrorState::Synchronized,
        false,
    )
    .unwrap();
    e.add_login(LOGIN_USER, LOGIN_PASSWORD);
    let sim = Simulator::start(e, SimOptions::default()).await.unwrap();
    assert_eq!(error_numbers(port(&sim, &a), &planned).await, vec![1477]);
}

/// Item 2: `SET PARTNER FAILOVER` "can complete successfully when entered, but fail later"
/// (ALTER DATABASE database mirroring): with a switch delay the statement returns, both
/// partners show PENDING_FAILOVER with their old roles (FreeTDS `tsql` reads
/// sys.database_mirroring), the same statement again is 1404 (mirror busy), and the roles
/// switch later. 1422 keeps its documented text.
#[tokio::test]
async fn a_planned_failover_returns_before_the_roles_switch_and_a_second_one_is_1404() {
    let (sim, f) = start(&Options::default().mirrored(true).switch_delay(1_000)).await;
    let planned = build::mirror_failover(&[xds()], MirrorFailoverKind::Planned);
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    assert_eq!(
        error_numbers(port(&sim, &a), &planned).await,
        Vec::<u32>::new()
    );
    let view = "SELECT DB_NAME(database_id), mirroring_role_desc, mirroring_state_desc FROM sys.database_mirroring WHERE database_id = DB_ID(N'xds')\ngo\n";
    let out = tsql(port(&sim, &a2), LOGIN_USER, LOGIN_PASSWORD, view).await;
    assert!(
        out.contains("MIRROR") && out.contains("PENDING_FAILOVER"),
        "{out}"
    );
    assert_eq!(error_numbers(port(&sim, &a), &planned).await, vec![1404]);
    f.estate.advance(1_000);
    let out = tsql(port(&sim, &a2), LOGIN_USER, LOGIN_PASSWORD, view).await;
    assert!(
        out.contains("PRINCIPAL") && out.contains("SYNCHRONIZED") && !out.contains("PENDING"),
        "{out}"
    );
    let e = backend_fake::SqlError::mirror_not_caught_up("xds");
    assert_eq!(
        e.message,
        "The mirror server instance is not caught up to the recent changes to database \"xds\". Unable to fail over."
    );
}

/// Item 2: `FORCE_SERVICE_ALLOW_DATA_LOSS` falls under the same "can complete successfully
/// when entered, but fail later" (ALTER DATABASE database mirroring): with a force delay the
/// statement returns, the mirror still shows MIRROR (FreeTDS `tsql` reads
/// sys.database_mirroring; what it shows meanwhile is an inference), the force again is
/// 1404, and the mirror becomes PRINCIPAL later.
#[tokio::test]
async fn a_forced_service_returns_before_the_mirror_switches_and_a_second_one_is_1404() {
    let (sim, f) = start(&Options::default().mirrored(true).force_delay(1_000)).await;
    let forced = build::mirror_failover(&[xds()], MirrorFailoverKind::Forced);
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    f.estate.set_reachable(&a, false).unwrap();
    assert_eq!(
        error_numbers(port(&sim, &a2), &forced).await,
        Vec::<u32>::new()
    );
    let view = "SELECT DB_NAME(database_id), mirroring_role_desc, mirroring_state_desc FROM sys.database_mirroring WHERE database_id = DB_ID(N'xds')\ngo\n";
    let out = tsql(port(&sim, &a2), LOGIN_USER, LOGIN_PASSWORD, view).await;
    assert!(
        out.contains("MIRROR") && !out.contains("PRINCIPAL"),
        "{out}"
    );
    assert_eq!(error_numbers(port(&sim, &a2), &forced).await, vec![1404]);
    f.estate.advance(1_000);
    let out = tsql(port(&sim, &a2), LOGIN_USER, LOGIN_PASSWORD, view).await;
    assert!(out.contains("PRINCIPAL"), "{out}");
}

/// Item 2: the witness as sys.database_mirroring reports it on the instance queried
/// (`mirroring_witness_name`, `mirroring_witness_state_desc`, FreeTDS `tsql`), and
/// `FORCE_SERVICE_ALLOW_DATA_LOSS` refused with 1455 while the witness is set and not
/// connected to the mirror ("WITNESS is set to OFF or is connected to the mirror server").
#[tokio::test]
async fn forcing_service_with_a_witness_not_connected_to_the_mirror_is_1455() {
    let (sim, f) = start(&Options::default().mirrored(true)).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let forced = build::mirror_failover(&[xds()], MirrorFailoverKind::Forced);
    let view = "SELECT mirroring_witness_name, mirroring_witness_state_desc FROM sys.database_mirroring WHERE database_id = DB_ID(N'xds')\ngo\n";
    f.estate
        .set_witness(
            &xds(),
            &a,
            Some((
                "TCP://wit.cms.test:5022",
                backend_fake::WitnessConnection::PrincipalOnly,
            )),
        )
        .unwrap();
    let out = tsql(port(&sim, &a), LOGIN_USER, LOGIN_PASSWORD, view).await;
    assert!(
        out.contains("TCP://wit.cms.test:5022")
            && out.contains("CONNECTED")
            && !out.contains("DISCONNECTED"),
        "{out}"
    );
    f.estate.set_reachable(&a, false).unwrap();
    let out = tsql(port(&sim, &a2), LOGIN_USER, LOGIN_PASSWORD, view).await;
    assert!(
        out.contains("TCP://wit.cms.test:5022") && out.contains("DISCONNECTED"),
        "{out}"
    );
    assert_eq!(error_numbers(port(&sim, &a2), &forced).await, vec![1455]);
    assert_eq!(role(&f, &a2, "xds"), Some(MirrorRole::Mirror));
    f.estate
        .set_witness(
            &xds(),
            &a2,
            Some((
                "TCP://wit.cms.test:5022",
                backend_fake::WitnessConnection::MirrorOnly,
            )),
        )
        .unwrap();
    assert_eq!(
        error_numbers(port(&sim, &a2), &forced).await,
        Vec::<u32>::new()
    );
    assert_eq!(role(&f, &a2, "xds"), Some(MirrorRole::Principal));
    // The documented text (errors 1000-1999).
    let e = backend_fake::SqlError::cannot_force("xds");
    assert_eq!(
        e.message,
        "The database mirroring service cannot be forced for database \"xds\" because the database is not in the correct state to become the principal database."
    );
}
