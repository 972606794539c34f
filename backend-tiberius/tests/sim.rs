//! backend-tiberius against the TDS simulator: error classification number by number,
//! hostile names end to end, reconnects, timeouts, locks and mirroring.

mod common;

use backend_fake::fixtures::{self, Options, StandbyCopy};
use backend_fake::{Change, Estate, Fault, FaultConfig, ScriptedFault, SqlError};
use common::{backend, backend_with, serve};
use failover_core::sqlerror::classify;
use failover_core::{
    Backend, DatabaseName, DbState, ErrorKind, LocationRecord, LockAttempt, MirrorFailoverKind,
    MirrorRole, Operation, Store,
};
use std::time::Duration;

fn db(s: &str) -> DatabaseName {
    DatabaseName::parse(s).unwrap()
}

#[tokio::test]
async fn probe_positions_and_location_over_the_wire() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let b = backend(&sim);
    let (a, bk) = (fixtures::active(), fixtures::backup());
    let dbs = fixtures::databases();
    let p = b.probe(&a, &dbs).await.unwrap();
    assert_eq!(p.version, fixtures::VERSION);
    assert_eq!(p.databases.len(), 2);
    assert!(p.databases.iter().all(|d| d.is_writable()));
    let pb = b.probe(&bk, &dbs).await.unwrap();
    assert!(
        pb.databases
            .iter()
            .all(|d| d.read_only && d.state == DbState::Online)
    );
    // A database that does not exist is left out.
    let p = b.probe(&a, &[db("xds"), db("nope")]).await.unwrap();
    assert_eq!(p.databases.len(), 1);

    let pos = b.positions(&a, &dbs).await.unwrap();
    assert_eq!(pos.len(), 2);
    assert!(pos.iter().all(|p| {
        p.position
            .is_some_and(|x| x.0 >= u128::from(fixtures::INITIAL_POSITION))
    }));
    assert!(b.positions(&a, &[]).await.unwrap().is_empty());

    let rec = b.read_location(&a).await.unwrap().expect("fixture record");
    assert_eq!(rec.epoch, 1);
    let next = LocationRecord {
        epoch: 2,
        active: fx.topology.backup.clone(),
        run_id: "run-'; --".into(),
    };
    b.write_location(&a, &next, Some(1)).await.unwrap();
    // Idempotent: the same write again succeeds.
    b.write_location(&a, &next, Some(1)).await.unwrap();
    assert_eq!(b.read_location(&a).await.unwrap(), Some(next.clone()));
    // A stale expectation is refused.
    let stale = LocationRecord {
        epoch: 2,
        active: fx.topology.active.clone(),
        run_id: "other".into(),
    };
    let e = b.write_location(&a, &stale, Some(1)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState, "{e}");
    assert_eq!(b.read_location(&a).await.unwrap(), Some(next));
}

#[tokio::test]
async fn location_on_an_instance_without_a_record() {
    let fx = fixtures::build(&Options::default().location(false));
    let sim = serve(fx.estate.clone()).await;
    let b = backend(&sim);
    let a = fixtures::active();
    assert_eq!(b.read_location(&a).await.unwrap(), None);
    let rec = LocationRecord {
        epoch: 1,
        active: fx.topology.active.clone(),
        run_id: "r".into(),
    };
    let e = b.write_location(&a, &rec, Some(7)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);
    b.write_location(&a, &rec, None).await.unwrap();
    assert_eq!(b.read_location(&a).await.unwrap(), Some(rec));
}

/// Every number of the classification table, injected on the wire one at a time.
#[tokio::test]
async fn each_server_error_number_is_classified() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let b = backend(&sim);
    let a = fixtures::active();
    let dbs = fixtures::databases();
    let numbers = [
        1205, 1222, 5061, 1404, 954, 955, 1418, 18456, 229, 230, 262, 300, 916, 4060, 3906, 5069,
        5070, 1422, 1455, 911, 3101, 3013, 1412, 1416, 102, 156, 207, 208, 2812, 8144, 50000, 5011,
        927, 5063, 1468, 1470, 1477, 3104,
    ];
    for n in numbers {
        fx.estate
            .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
                &a,
                Operation::Probe,
                1,
                Fault::Error(SqlError::new(n, 16, 1, format!("injected {n}"))),
            )));
        let e = b.probe(&a, &dbs).await.unwrap_err();
        assert_eq!(e.code, Some(n), "{e}");
        assert_eq!(e.kind, classify(n), "error {n}: {e}");
        assert_eq!(e.operation, Operation::Probe);
        assert!(e.message.contains(&format!("injected {n}")), "{e}");
        // The session survives a server error and the next call works.
        b.probe(&a, &dbs).await.unwrap();
    }
    // Attributed to the operation that failed.
    fx.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::SetReadOnly,
            1,
            Fault::Error(SqlError::could_not_lock("xds")),
        )));
    let e = b.set_read_only(&a, &dbs, true).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code, e.operation),
        (ErrorKind::Transient, Some(5061), Operation::SetReadOnly)
    );
    assert!(
        fx.estate.snapshot().instances[&a]
            .databases
            .iter()
            .all(|d| !d.read_only)
    );
}

#[tokio::test]
async fn login_failure_is_permission() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let mut cfg = backend(&sim).transport().config().clone();
    cfg.password = backend_tiberius::Secret::new("wrong");
    let b = backend_tiberius::TiberiusBackend::new(cfg);
    let e = b
        .probe(&fixtures::active(), &fixtures::databases())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (ErrorKind::Permission, Some(18456)),
        "{e}"
    );
    assert!(!e.to_string().contains("wrong"));
}

const HOSTILE: &[&str] = &[
    "x]; ALTER DATABASE [victim] SET READ_ONLY; --",
    "'; DROP DATABASE victim; --",
    "a]]b",
    "[br]ack]ets]",
    "semi;colon",
    "/* comment */ x",
    "-- dash",
    "N'x'",
    "日本語 🦀",
];

/// Hostile names are fenced, unfenced, recovered and probed; nothing but the intended
/// statements ran: the estate's history lists exactly the expected changes.
#[tokio::test]
async fn hostile_names_end_to_end() {
    let estate = Estate::new();
    let a = fixtures::active();
    estate.add_instance(&a, fixtures::VERSION).unwrap();
    estate.add_login(fixtures::LOGIN_USER, fixtures::LOGIN_PASSWORD);
    estate
        .add_database(&a, &db("victim"), DbState::Online, false, 5)
        .unwrap();
    let names: Vec<DatabaseName> = HOSTILE.iter().map(|s| db(s)).collect();
    for n in &names {
        estate
            .add_database(&a, n, DbState::Online, false, 10)
            .unwrap();
    }
    let restoring = db("r'; RESTORE DATABASE [victim] WITH RECOVERY; --");
    estate
        .add_database(&a, &restoring, DbState::Restoring, false, 3)
        .unwrap();
    let sim = serve(estate.clone()).await;
    let b = backend(&sim);
    let before = estate.history().len();

    let p = b.probe(&a, &names).await.unwrap();
    let mut got: Vec<&str> = p.databases.iter().map(|d| d.name.as_str()).collect();
    let mut want: Vec<&str> = HOSTILE.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let pos = b.positions(&a, &names).await.unwrap();
    assert!(pos.iter().all(|p| p.position.is_some()), "{pos:?}");

    b.set_read_only(&a, &names, true).await.unwrap();
    b.set_read_only(&a, &names, false).await.unwrap();
    b.recover(&a, std::slice::from_ref(&restoring))
        .await
        .unwrap();

    let changes: Vec<_> = estate.history()[before..]
        .iter()
        .filter(|m| !matches!(m.change, Change::PositionSet(_)))
        .map(|m| (m.database.clone(), m.change.clone()))
        .collect();
    let mut expected = Vec::new();
    for n in &names {
        expected.push(Some(n.clone()));
    }
    for n in &names {
        expected.push(Some(n.clone()));
    }
    expected.push(Some(restoring.clone()));
    let dbs_changed: Vec<_> = changes.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(dbs_changed, expected, "{changes:#?}");
    for (i, (_, c)) in changes.iter().enumerate() {
        match c {
            Change::ReadOnly { read_only, .. } => assert_eq!(*read_only, i < names.len(), "{c:?}"),
            Change::State { .. } => assert_eq!(i, 2 * names.len()),
            other => panic!("unexpected change {other:?}"),
        }
    }
    let snap = estate.snapshot();
    let victim = snap.database(&a, &db("victim")).unwrap().clone();
    assert!(!victim.read_only && victim.state == DbState::Online);
}

#[tokio::test]
async fn reconnects_after_a_dropped_connection() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let b = backend(&sim);
    let a = fixtures::active();
    let dbs = fixtures::databases();
    b.probe(&a, &dbs).await.unwrap();
    fx.estate.kill_sessions(&a);
    // The cached session is gone: this call fails retryably or succeeds, the next succeeds.
    if let Err(e) = b.probe(&a, &dbs).await {
        assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    }
    b.probe(&a, &dbs).await.unwrap();

    // A disconnect fault during the fence: unreachable, nothing changed, then it works.
    fx.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::SetReadOnly,
            1,
            Fault::Disconnect,
        )));
    let e = b.set_read_only(&a, &dbs, true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(
        fx.estate.snapshot().instances[&a]
            .databases
            .iter()
            .all(|d| !d.read_only)
    );
    b.set_read_only(&a, &dbs, true).await.unwrap();
    assert!(
        fx.estate.snapshot().instances[&a]
            .databases
            .iter()
            .all(|d| d.read_only)
    );
}

#[tokio::test]
async fn unreachable_instance() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let b = backend_with(&sim, Duration::from_secs(5));
    let a = fixtures::active();
    fx.estate.set_reachable(&a, false).unwrap();
    let e = b.probe(&a, &fixtures::databases()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    fx.estate.set_reachable(&a, true).unwrap();
    b.probe(&a, &fixtures::databases()).await.unwrap();
}

#[tokio::test]
async fn a_hung_statement_times_out_and_the_next_call_works() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let b = backend_with(&sim, Duration::from_millis(500));
    let a = fixtures::active();
    let dbs = fixtures::databases();
    fx.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::Probe,
            1,
            Fault::Hang,
        )));
    let e = b.probe(&a, &dbs).await.unwrap_err();
    assert_eq!(
        (e.kind, e.operation),
        (ErrorKind::Timeout, Operation::Probe),
        "{e}"
    );
    b.probe(&a, &dbs).await.unwrap();
}

#[tokio::test]
async fn lock_is_owned_by_its_session() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let (b1, b2) = (backend(&sim), backend(&sim));
    let a = fixtures::active();
    let res = "cms-failover ']; --";
    assert!(!b1.lock_held(&a, res).await.unwrap());
    assert_eq!(
        b1.acquire_lock(&a, res).await.unwrap(),
        LockAttempt::Granted
    );
    assert_eq!(
        b1.acquire_lock(&a, res).await.unwrap(),
        LockAttempt::Granted
    );
    assert_eq!(b2.acquire_lock(&a, res).await.unwrap(), LockAttempt::Held);
    assert!(b1.lock_held(&a, res).await.unwrap());
    assert!(!b2.lock_held(&a, res).await.unwrap());
    // Acquired twice by the holder, released once: free (no stacked reference).
    b1.release_lock(&a, res).await.unwrap();
    assert!(!b1.lock_held(&a, res).await.unwrap());
    b2.release_lock(&a, res).await.unwrap();
    assert_eq!(
        b2.acquire_lock(&a, res).await.unwrap(),
        LockAttempt::Granted
    );

    // The holder's connection drops: it no longer holds the lock and another can take it.
    fx.estate.kill_sessions(&a);
    assert!(!b2.lock_held(&a, res).await.unwrap());
    b2.release_lock(&a, res).await.unwrap();
    assert_eq!(
        b1.acquire_lock(&a, res).await.unwrap(),
        LockAttempt::Granted
    );
    // The operations session is separate: fencing does not touch the lock.
    b1.set_read_only(&a, &fixtures::databases(), true)
        .await
        .unwrap();
    assert!(b1.lock_held(&a, res).await.unwrap());
}

#[tokio::test]
async fn mirror_failover_and_locate_principal() {
    let fx = fixtures::build(&Options::default().mirrored(true));
    let sim = serve(fx.estate.clone()).await;
    let b = backend(&sim);
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let dbs = fixtures::databases();
    let store = fx.topology.active.clone();
    assert_eq!(b.locate_principal(&store, &dbs).await.unwrap(), a);
    let p2 = b.probe(&a2, &dbs).await.unwrap();
    assert!(
        p2.databases
            .iter()
            .all(|d| d.mirroring.as_ref().unwrap().role == MirrorRole::Mirror)
    );

    let now = b
        .mirror_failover(&a, &dbs, MirrorFailoverKind::Planned)
        .await
        .unwrap();
    assert_eq!(now, a2);
    // Idempotent on the old principal (now the mirror).
    assert_eq!(
        b.mirror_failover(&a, &dbs, MirrorFailoverKind::Planned)
            .await
            .unwrap(),
        a2
    );
    assert_eq!(b.locate_principal(&store, &dbs).await.unwrap(), a2);

    // Forced, issued on the mirror (a) while the principal (a2) is down.
    fx.estate.set_reachable(&a2, false).unwrap();
    let swapped = Store::new(a2.clone(), Some(a.clone())).unwrap();
    assert_eq!(
        b.locate_principal(&swapped, &dbs).await.unwrap_err().kind,
        ErrorKind::Unreachable
    );
    assert_eq!(
        b.mirror_failover(&a, &dbs, MirrorFailoverKind::Forced)
            .await
            .unwrap(),
        a
    );
    assert_eq!(
        b.mirror_failover(&a, &dbs, MirrorFailoverKind::Forced)
            .await
            .unwrap(),
        a
    );
    assert_eq!(b.locate_principal(&swapped, &dbs).await.unwrap(), a);
}

#[tokio::test]
async fn restoring_copy_is_recovered() {
    let fx = fixtures::build(&Options::default().standby(StandbyCopy::Restoring));
    let sim = serve(fx.estate.clone()).await;
    let b = backend(&sim);
    let bk = fixtures::backup();
    let dbs = fixtures::databases();
    // Fencing a RESTORING copy is refused before anything is sent.
    assert_eq!(
        b.set_read_only(&bk, &dbs, false).await.unwrap_err().kind,
        ErrorKind::InvalidState
    );
    b.recover(&bk, &dbs).await.unwrap();
    b.recover(&bk, &dbs).await.unwrap();
    let p = b.probe(&bk, &dbs).await.unwrap();
    assert!(p.databases.iter().all(|d| d.state == DbState::Online));
}
