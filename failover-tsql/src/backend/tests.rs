//! [`SqlBackend`] over a scripted transport: no network, no driver. Each test scripts the
//! replies of the next batches and checks what was sent, on which instance and session.

use super::*;
use crate::SqlConfig;
use crate::rows::SqlValue;
use crate::transport::TransportError;
use failover_core::DbState;
use std::collections::VecDeque;
use std::sync::Mutex;

type Reply = Result<Vec<ResultSet>, TransportError>;

/// Answers each batch with the next scripted reply and records what was sent.
#[derive(Default)]
struct Scripted {
    sql: SqlConfig,
    call: Option<std::time::Duration>,
    replies: Mutex<VecDeque<Reply>>,
    sent: Mutex<Vec<(InstanceAddr, Session, String)>>,
}

impl Scripted {
    fn new(replies: Vec<Reply>) -> Self {
        Self {
            replies: Mutex::new(replies.into()),
            ..Self::default()
        }
    }
}

#[async_trait]
impl Transport for Scripted {
    const NAME: &'static str = "scripted";
    async fn run(&self, b: Batch<'_>) -> Reply {
        self.sent
            .lock()
            .unwrap()
            .push((b.instance.clone(), b.session, b.sql.to_string()));
        self.replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("no reply scripted for {}", b.sql))
    }
    fn sql_config(&self) -> &SqlConfig {
        &self.sql
    }
    /// The instances the scripted servers' names (`SQL-A\RTC`, `SQL-A2\RTC`) map to.
    fn known_instances(&self) -> Vec<InstanceAddr> {
        vec![a(), a2()]
    }

    fn call_timeout(&self) -> Option<std::time::Duration> {
        self.call
    }
}

fn backend(replies: Vec<Reply>) -> SqlBackend<Scripted> {
    SqlBackend::new(Scripted::new(replies))
}

/// The batches sent, in order, with their instance and session.
fn sent(b: &SqlBackend<Scripted>) -> Vec<(InstanceAddr, Session, String)> {
    b.transport().sent.lock().unwrap().clone()
}

fn sql_sent(b: &SqlBackend<Scripted>) -> Vec<String> {
    sent(b).into_iter().map(|(_, _, s)| s).collect()
}

fn db(s: &str) -> DatabaseName {
    DatabaseName::parse(s).unwrap()
}
fn a() -> InstanceAddr {
    InstanceAddr::parse("sql-a.test\\RTC").unwrap()
}
fn a2() -> InstanceAddr {
    InstanceAddr::parse("sql-a2.test\\RTC").unwrap()
}
fn dbs() -> Vec<DatabaseName> {
    vec![db("xds"), db("lis")]
}
fn text(s: &str) -> Option<SqlValue> {
    Some(SqlValue::Text(s.into()))
}
fn int(i: i64) -> Option<SqlValue> {
    Some(SqlValue::Int(i))
}
fn one(v: Option<SqlValue>) -> Reply {
    Ok(vec![vec![vec![v]]])
}
fn gone() -> Reply {
    Err(TransportError::SessionGone("connection reset".into()))
}
fn mode(m: &str) -> Reply {
    one(text(m))
}

/// A probe reply: `(name, state, role, partner)` per database.
fn probe_reply(rows: &[(&str, &str, Option<&str>, Option<&str>)]) -> Reply {
    let version = vec![vec![text("Microsoft SQL Server 2019")]];
    let dbs = rows
        .iter()
        .map(|(name, state, role, partner)| {
            vec![
                text(name),
                text(state),
                Some(SqlValue::Bool(false)),
                role.and_then(text),
                role.and(text("SYNCHRONIZED")),
                partner.and_then(text),
                role.and(text("FULL")),
                None,
            ]
        })
        .collect();
    Ok(vec![version, dbs])
}

fn location_reply(r: &LocationRecord) -> Reply {
    Ok(vec![vec![vec![
        int(r.epoch as i64),
        text(&r.active.principal.to_string()),
        r.active.mirror.as_ref().and_then(|m| text(&m.to_string())),
        text(&r.run_id),
    ]]])
}

fn record(epoch: u64, run: &str) -> LocationRecord {
    LocationRecord {
        epoch,
        active: Store::new(a(), None).unwrap(),
        run_id: run.into(),
    }
}

const RES: &str = "cms-failover";

#[tokio::test]
async fn a_gone_lock_session_means_not_held_and_the_lock_is_taken_anew() {
    // lock_held: the session is gone -> false, not an error.
    let b = backend(vec![gone()]);
    assert!(!b.lock_held(&a(), RES).await.unwrap());
    assert_eq!(sent(&b)[0].1, Session::Lock);

    // acquire_lock: gone at the check -> sp_getapplock on a fresh session.
    let b = backend(vec![gone(), one(int(0))]);
    assert_eq!(
        b.acquire_lock(&a(), RES).await.unwrap(),
        LockAttempt::Granted
    );
    assert_eq!(
        sql_sent(&b),
        vec![build::lock_mode(RES), build::acquire_lock(RES)]
    );
    assert!(sent(&b).iter().all(|(_, s, _)| *s == Session::Lock));

    // The session drops while taking the lock: retryable, never a silent success.
    let b = backend(vec![mode("NoLock"), gone()]);
    let e = b.acquire_lock(&a(), RES).await.unwrap_err();
    assert_eq!(
        (e.kind, e.operation),
        (ErrorKind::Unreachable, Operation::AcquireLock)
    );

    // release_lock: gone -> released with the session, nothing else sent.
    let b = backend(vec![gone()]);
    b.release_lock(&a(), RES).await.unwrap();
    assert_eq!(sql_sent(&b), vec![build::release_lock(RES)]);
    assert_eq!(sent(&b)[0].1, Session::Lock);
}

#[tokio::test]
async fn the_lock_is_never_stacked_and_released_once() {
    let b = backend(vec![mode("Exclusive")]);
    assert_eq!(
        b.acquire_lock(&a(), RES).await.unwrap(),
        LockAttempt::Granted
    );
    assert_eq!(
        sql_sent(&b),
        vec![build::lock_mode(RES)],
        "no second sp_getapplock"
    );

    let b = backend(vec![mode("NoLock"), one(int(-1))]);
    assert_eq!(b.acquire_lock(&a(), RES).await.unwrap(), LockAttempt::Held);
    let b = backend(vec![mode("NoLock"), one(int(-3))]);
    assert_eq!(
        b.acquire_lock(&a(), RES).await.unwrap_err().kind,
        ErrorKind::Transient
    );

    // Released in one round trip, no APPLOCK_MODE check first.
    let b = backend(vec![one(int(0))]);
    b.release_lock(&a(), RES).await.unwrap();
    assert_eq!(sql_sent(&b), vec![build::release_lock(RES)]);
    // Not held: the server's 1223 is success (nothing to release).
    let b = backend(vec![Err(TransportError::server(
        1223,
        "Cannot release the application lock (Database Principal: 'public', Resource: 'cms-failover') because it is not currently held.",
    ))]);
    b.release_lock(&a(), RES).await.unwrap();
    assert_eq!(sql_sent(&b).len(), 1);
    // Any other error is an error.
    let b = backend(vec![Err(TransportError::server(1205, "deadlock victim"))]);
    assert!(b.release_lock(&a(), RES).await.is_err());

    // A connect failure on the lock session is an error, not "not held".
    let b = backend(vec![Err(TransportError::failed(
        ErrorKind::Unreachable,
        "connection refused",
    ))]);
    let e = b.lock_held(&a(), RES).await.unwrap_err();
    assert_eq!(
        (e.kind, e.operation),
        (ErrorKind::Unreachable, Operation::CheckLock)
    );
    // A bad resource is refused before anything is sent.
    let b = backend(vec![]);
    assert_eq!(
        b.lock_held(&a(), "").await.unwrap_err().kind,
        ErrorKind::Fatal
    );
    assert!(sent(&b).is_empty());
}

#[tokio::test]
async fn positions_of_a_mirror_are_read_on_its_partner() {
    let b = backend(vec![
        Err(TransportError::server(954, "xds is the mirror here")),
        probe_reply(&[
            ("lis", "ONLINE", None, None),
            ("xds", "RESTORING", Some("MIRROR"), Some("SQL-A2\\RTC")),
        ]),
        one(int(7)),
        one(int(9)),
    ]);
    let p = b.positions(&a(), &dbs()).await.unwrap();
    let got: Vec<_> = p
        .iter()
        .map(|p| (p.database.as_str(), p.position.map(|x| x.0)))
        .collect();
    assert_eq!(got, vec![("xds", Some(7)), ("lis", Some(9))]);
    let instances: Vec<_> = sent(&b).into_iter().map(|(i, s, _)| (i, s)).collect();
    assert_eq!(
        instances,
        vec![
            (a(), Session::Ops),
            (a(), Session::Read),
            (a2(), Session::Ops),
            (a(), Session::Ops)
        ]
    );
    let cfg = SqlConfig::default();
    assert_eq!(sql_sent(&b)[1], build::probe(&dbs()));
    assert_eq!(sql_sent(&b)[2], build::positions(&cfg, &[db("xds")]));

    // Without the fallback the 954 is the answer.
    let mut t = Scripted::new(vec![Err(TransportError::server(954, "mirror"))]);
    t.sql.mirror_fallback = false;
    let b = SqlBackend::<Scripted>::new(t);
    let e = b.positions(&a(), &dbs()).await.unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Unreachable, Some(954)));
    assert_eq!(sent(&b).len(), 1);
}

#[tokio::test]
async fn the_location_compare_and_swap_detects_another_writer() {
    let mine = record(2, "run-2");
    let b = backend(vec![location_reply(&mine)]);
    b.write_location(&a(), &mine, Some(1)).await.unwrap();

    let theirs = record(2, "someone-else");
    let b = backend(vec![location_reply(&theirs)]);
    let e = b.write_location(&a(), &mine, Some(1)).await.unwrap_err();
    assert_eq!(
        (e.kind, e.operation),
        (ErrorKind::InvalidState, Operation::WriteLocation)
    );
    assert!(
        e.message.contains("expected epoch 1") && e.message.contains("someone-else"),
        "{e}"
    );
    let b = backend(vec![Ok(vec![vec![]])]);
    let e = b.write_location(&a(), &mine, None).await.unwrap_err();
    assert!(e.message.contains("no record"), "{e}");
    // A concurrent first insert (duplicate key) is the same conflict.
    let b = backend(vec![Err(TransportError::server(2627, "duplicate key"))]);
    let e = b.write_location(&a(), &mine, None).await.unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::InvalidState, Some(2627)));
    // An unstorable record is refused before anything is sent.
    let b = backend(vec![]);
    let huge = record(u64::MAX, "r");
    assert_eq!(
        b.write_location(&a(), &huge, None).await.unwrap_err().kind,
        ErrorKind::Fatal
    );
    // No location table yet: no record.
    let b = backend(vec![Err(TransportError::server(208, "invalid object"))]);
    assert_eq!(b.read_location(&a()).await.unwrap(), None);
}

#[tokio::test]
async fn recover_and_mirror_failover_send_only_what_is_needed() {
    let b = backend(vec![
        probe_reply(&[
            ("lis", "ONLINE", None, None),
            ("xds", "RESTORING", None, None),
        ]),
        Ok(vec![]),
    ]);
    b.recover(&a(), &dbs()).await.unwrap();
    assert_eq!(sql_sent(&b)[1], build::recover(&[db("xds")]));

    let b = backend(vec![probe_reply(&[
        ("lis", "ONLINE", None, None),
        ("xds", "ONLINE", None, None),
    ])]);
    b.recover(&a(), &dbs()).await.unwrap();
    assert_eq!(sql_sent(&b).len(), 1, "nothing to recover");

    // Planned on the old principal that is already the mirror: nothing sent, partner named.
    let b = backend(vec![probe_reply(&[
        ("lis", "RESTORING", Some("MIRROR"), Some("SQL-A2\\RTC")),
        ("xds", "RESTORING", Some("MIRROR"), Some("SQL-A2\\RTC")),
    ])]);
    let now = b
        .mirror_failover(&a(), &dbs(), MirrorFailoverKind::Planned)
        .await
        .unwrap();
    assert_eq!((now, sql_sent(&b).len()), (a2(), 1));
}

/// What-if shows exactly what is sent: every operation, run where each database needs the
/// change, sends the batches `statements()` lists, in order.
/// Issue 12 item 7: every batch runs in `master`, and the fence is bounded on the server
/// below the driver's call timeout.
#[tokio::test]
async fn every_batch_runs_in_master_and_the_fence_lock_timeout_stays_below_the_call_timeout() {
    let t = Scripted {
        call: Some(std::time::Duration::from_secs(4)),
        replies: Mutex::new(vec![Ok(vec![])].into()),
        ..Scripted::default()
    };
    let b = SqlBackend::new(t);
    assert_eq!(b.sql_config().fence_lock_timeout_ms, 3000);
    b.set_read_only(&a(), &dbs(), true).await.unwrap();
    assert_eq!(
        sql_sent(&b),
        vec![
            "USE [master];\nSET LOCK_TIMEOUT 3000;\n\
             ALTER DATABASE [xds] SET READ_ONLY WITH ROLLBACK IMMEDIATE;\n\
             ALTER DATABASE [lis] SET READ_ONLY WITH ROLLBACK IMMEDIATE;"
        ]
    );
    // A configured bound below the call timeout is kept; no call timeout keeps it too.
    let t = Scripted {
        sql: SqlConfig {
            fence_lock_timeout_ms: 500,
            ..SqlConfig::default()
        },
        call: Some(std::time::Duration::from_secs(30)),
        ..Scripted::default()
    };
    assert_eq!(
        SqlBackend::<Scripted>::new(t)
            .sql_config()
            .fence_lock_timeout_ms,
        500
    );
    assert_eq!(
        backend(vec![]).sql_config().fence_lock_timeout_ms,
        SqlConfig::default().fence_lock_timeout_ms
    );
    // Every batch of every operation starts in master.
    let cfg = SqlConfig::default();
    let r = LocationRecord {
        epoch: 2,
        active: Store::new(a(), None).unwrap(),
        run_id: "r".into(),
    };
    for op in [
        Op::Probe {
            instance: a(),
            databases: dbs(),
        },
        Op::Positions {
            instance: a(),
            databases: dbs(),
        },
        Op::SetReadOnly {
            instance: a(),
            databases: dbs(),
            read_only: false,
        },
        Op::Recover {
            instance: a(),
            databases: dbs(),
        },
        Op::MirrorFailover {
            instance: a(),
            databases: dbs(),
            kind: MirrorFailoverKind::Planned,
            expected_partner: a2(),
        },
        Op::AcquireLock {
            instance: a(),
            resource: "r".into(),
        },
        Op::ReleaseLock {
            instance: a(),
            resource: "r".into(),
        },
        Op::CheckLock {
            instance: a(),
            resource: "r".into(),
        },
        Op::ReadLocation { instance: a() },
        Op::WriteLocation {
            instance: a(),
            record: r,
            expected_epoch: Some(1),
        },
    ] {
        for sql in build::statements(&cfg, &op) {
            assert!(sql.starts_with("USE [master];\n"), "{op:?}: {sql}");
        }
    }
}

#[tokio::test]
async fn statements_are_exactly_the_batches_sent() {
    let i = a();
    let partner = || Some("SQL-A2\\RTC");
    let rec = record(3, "run-3");
    // Every database needs the mirror statement: all PRINCIPAL (planned) or MIRROR (forced).
    let mirror = |kind, state, role, expected_partner| {
        let rows = [
            ("xds", state, Some(role), partner()),
            ("lis", state, Some(role), partner()),
        ];
        let op = Op::MirrorFailover {
            instance: i.clone(),
            databases: dbs(),
            kind,
            expected_partner,
        };
        (op, vec![probe_reply(&rows), Ok(vec![])])
    };
    let cases: Vec<(Op, Vec<Reply>)> = vec![
        (
            Op::Probe {
                instance: i.clone(),
                databases: dbs(),
            },
            vec![probe_reply(&[])],
        ),
        (
            Op::Positions {
                instance: i.clone(),
                databases: dbs(),
            },
            vec![Ok(vec![vec![vec![int(1)]], vec![vec![int(2)]]])],
        ),
        (
            Op::SetReadOnly {
                instance: i.clone(),
                databases: dbs(),
                read_only: true,
            },
            vec![Ok(vec![])],
        ),
        (
            Op::SetReadOnly {
                instance: i.clone(),
                databases: dbs(),
                read_only: false,
            },
            vec![Ok(vec![])],
        ),
        (
            Op::Recover {
                instance: i.clone(),
                databases: dbs(),
            },
            vec![
                probe_reply(&[
                    ("xds", "RESTORING", None, None),
                    ("lis", "RESTORING", None, None),
                ]),
                Ok(vec![]),
            ],
        ),
        mirror(MirrorFailoverKind::Planned, "ONLINE", "PRINCIPAL", a2()),
        mirror(MirrorFailoverKind::Forced, "RESTORING", "MIRROR", i.clone()),
        (
            Op::AcquireLock {
                instance: i.clone(),
                resource: RES.into(),
            },
            vec![mode("NoLock"), one(int(0))],
        ),
        (
            Op::ReleaseLock {
                instance: i.clone(),
                resource: RES.into(),
            },
            vec![one(int(0))],
        ),
        (
            Op::CheckLock {
                instance: i.clone(),
                resource: RES.into(),
            },
            vec![mode("Exclusive")],
        ),
        (
            Op::ReadLocation {
                instance: i.clone(),
            },
            vec![location_reply(&rec)],
        ),
        (
            Op::WriteLocation {
                instance: i.clone(),
                record: rec.clone(),
                expected_epoch: Some(2),
            },
            vec![location_reply(&rec)],
        ),
    ];
    for (op, replies) in cases {
        let b = backend(replies);
        let listed = b.statements(&op);
        run(&b, &op).await;
        assert_eq!(sql_sent(&b), listed, "{op:?}");
        assert!(b.transport().replies.lock().unwrap().is_empty(), "{op:?}");
    }
}

/// Calls the backend method `op` stands for; every call must succeed.
async fn run(b: &SqlBackend<Scripted>, op: &Op) {
    let r = match op {
        Op::Probe {
            instance,
            databases,
        } => b.probe(instance, databases).await.map(drop),
        Op::Positions {
            instance,
            databases,
        } => b.positions(instance, databases).await.map(drop),
        Op::SetReadOnly {
            instance,
            databases,
            read_only,
        } => b.set_read_only(instance, databases, *read_only).await,
        Op::Recover {
            instance,
            databases,
        } => b.recover(instance, databases).await,
        Op::MirrorFailover {
            instance,
            databases,
            kind,
            ..
        } => b
            .mirror_failover(instance, databases, *kind)
            .await
            .map(drop),
        Op::AcquireLock { instance, resource } => {
            b.acquire_lock(instance, resource).await.map(drop)
        }
        Op::ReleaseLock { instance, resource } => b.release_lock(instance, resource).await,
        Op::CheckLock { instance, resource } => b.lock_held(instance, resource).await.map(drop),
        Op::ReadLocation { instance } => b.read_location(instance).await.map(drop),
        Op::WriteLocation {
            instance,
            record,
            expected_epoch,
        } => b.write_location(instance, record, *expected_epoch).await,
        Op::ReadDirectory { .. } | Op::SwapDirectory { .. } => unreachable!("not a SQL call"),
        Op::BackupServiceStatus { .. } => unreachable!("not a SQL call"),
    };
    r.unwrap_or_else(|e| panic!("{op:?}: {e}"));
}

#[test]
fn probe_rows_parse_states() {
    // The scripted probe reply itself is well-formed (guards the helpers above).
    let Ok(sets) = probe_reply(&[("xds", "RESTORING", None, None)]) else {
        unreachable!()
    };
    let p = rows::parse_probe(&a(), &[db("xds")], &sets).unwrap();
    assert_eq!(p.databases[0].state, DbState::Restoring);
}
