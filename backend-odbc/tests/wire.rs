//! The ODBC path end to end, through unixODBC + the FreeTDS ODBC driver, against a scripted
//! TDS server built on `mssql-sim`'s protocol layer. Each test scripts what the server does
//! with the next batch (answer, fail with an SQL Server error number, hang, drop the
//! connection), so error classification, timeouts, reconnects and lock loss are checked on
//! the real wire. Fails loudly (does not skip) when the FreeTDS driver is missing.
#![allow(clippy::manual_async_fn)] // the sim's traits spell out `impl Future + Send`

mod common;

use backend_odbc::{OdbcBackend, OdbcConfig, Secret};
use failover_core::{Backend, DatabaseName, ErrorKind, InstanceAddr, LockAttempt};
use mssql_sim::{
    ColType, Column, LoginAccepted, LoginRefused, LoginRequest, Output, Reply, Request, Service,
    Session, SqlMessage, Value,
};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const PASSWORD: &str = "S3cr;et}pw{=";

/// What the server does with the next batch.
#[derive(Debug, Clone)]
enum Next {
    /// Fail with this SQL Server error number.
    Error(i32),
    /// Fail one statement with these errors in order (SQL Server's specific error, then
    /// its generic trailer such as 5069).
    Errors(Vec<i32>),
    /// Run the first statement, then fail the second with this number.
    SecondFails(i32),
    /// Never answer (until the client sends an attention).
    Hang,
    /// Drop the TCP connection.
    Disconnect,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Next>>,
    lock_holder: Mutex<Option<u16>>,
    logins: AtomicUsize,
    batches: Mutex<Vec<String>>,
}

#[derive(Clone, Default)]
struct Scripted {
    state: Arc<State>,
    spids: Arc<AtomicU16>,
}

struct Conn {
    spid: u16,
    state: Arc<State>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut h = self.state.lock_holder.lock().unwrap();
        if *h == Some(self.spid) {
            *h = None;
        }
    }
}

fn rows(name: &str, ty: ColType, values: Vec<Vec<Value>>) -> Output {
    let columns = vec![Column::new(name, ty)];
    Output::Rows {
        columns,
        rows: values,
    }
}

fn done() -> Output {
    Output::Done {
        rows: None,
        error: false,
    }
}

fn error(n: i32) -> Vec<Output> {
    vec![
        Output::Message(SqlMessage::new(n, 16, 1, format!("scripted error {n}"))),
        Output::Done {
            rows: None,
            error: true,
        },
    ]
}

impl Conn {
    fn answer(&self, sql: &str) -> Vec<Output> {
        if sql.contains("@@VERSION") {
            let cols = [
                "name",
                "state_desc",
                "is_read_only",
                "mirroring_role_desc",
                "mirroring_state_desc",
                "mirroring_partner_instance",
                "mirroring_safety_level_desc",
                "mirroring_failover_lsn",
            ];
            let columns = cols
                .iter()
                .map(|c| {
                    Column::new(
                        *c,
                        if *c == "is_read_only" {
                            ColType::Bit
                        } else {
                            ColType::NVarChar(128)
                        },
                    )
                })
                .collect();
            let db = |n: &str| {
                vec![
                    Value::Str(n.into()),
                    Value::Str("ONLINE".into()),
                    Value::Bit(false),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ]
            };
            return vec![
                rows(
                    "version",
                    ColType::NVarChar(200),
                    vec![vec![Value::Str(
                        "Microsoft SQL Server 2019 (scripted)\n\tline 2".into(),
                    )]],
                ),
                done(),
                Output::Rows {
                    columns,
                    rows: vec![db("lis"), db("xds")],
                },
                done(),
            ];
        }
        if sql.contains("APPLOCK_MODE") {
            let held = *self.state.lock_holder.lock().unwrap() == Some(self.spid);
            let mode = if held { "Exclusive" } else { "NoLock" };
            return vec![
                rows(
                    "mode",
                    ColType::NVarChar(32),
                    vec![vec![Value::Str(mode.into())]],
                ),
                done(),
            ];
        }
        if sql.contains("sp_getapplock") {
            let mut h = self.state.lock_holder.lock().unwrap();
            let r = match *h {
                None => {
                    *h = Some(self.spid);
                    0
                }
                Some(s) if s == self.spid => 0,
                Some(_) => -1,
            };
            return vec![
                rows("result", ColType::Int, vec![vec![Value::Int(r)]]),
                done(),
            ];
        }
        if sql.contains("sp_releaseapplock") {
            *self.state.lock_holder.lock().unwrap() = None;
            return vec![
                rows("result", ColType::Int, vec![vec![Value::Int(0)]]),
                done(),
            ];
        }
        if sql.contains("cms_failover_position") {
            let n = sql.matches("cms_failover_position").count();
            let mut out = Vec::new();
            for i in 0..n {
                out.push(rows(
                    "position",
                    ColType::BigInt,
                    vec![vec![Value::Int(40 + i as i64)]],
                ));
                out.push(done());
            }
            return out;
        }
        if sql.contains("cms_failover_location") && !sql.contains("CREATE TABLE") {
            return error(208);
        }
        vec![done()]
    }
}

impl Session for Conn {
    fn execute(&mut self, request: Request) -> impl Future<Output = Reply> + Send + '_ {
        async move {
            let Request::Batch(sql) = request else {
                return Reply::Tokens(error(2812));
            };
            self.state.batches.lock().unwrap().push(sql.clone());
            let next = self.state.script.lock().unwrap().pop_front();
            match next {
                None => Reply::Tokens(self.answer(&sql)),
                Some(Next::Error(n)) => Reply::Tokens(error(n)),
                Some(Next::Errors(ns)) => {
                    let mut out: Vec<Output> = ns
                        .iter()
                        .map(|&n| {
                            Output::Message(SqlMessage::new(
                                n,
                                16,
                                1,
                                format!("scripted error {n}"),
                            ))
                        })
                        .collect();
                    out.push(Output::Done {
                        rows: None,
                        error: true,
                    });
                    Reply::Tokens(out)
                }
                Some(Next::SecondFails(n)) => {
                    let mut out = vec![Output::Done {
                        rows: None,
                        error: false,
                    }];
                    out.extend(error(n));
                    Reply::Tokens(out)
                }
                Some(Next::Hang) => std::future::pending().await,
                Some(Next::Disconnect) => Reply::Disconnect,
            }
        }
    }
}

impl Service for Scripted {
    type Session = Conn;
    fn login(
        &self,
        login: LoginRequest,
    ) -> impl Future<Output = Result<(Conn, LoginAccepted), LoginRefused>> + Send + '_ {
        async move {
            if login.password != PASSWORD {
                return Err(LoginRefused::Error(SqlMessage::new(
                    18456,
                    14,
                    1,
                    format!("Login failed for user '{}'.", login.user),
                )));
            }
            self.state.logins.fetch_add(1, Ordering::SeqCst);
            let spid = 51 + self.spids.fetch_add(1, Ordering::SeqCst);
            Ok((
                Conn {
                    spid,
                    state: self.state.clone(),
                },
                LoginAccepted {
                    database: "master".into(),
                    spid,
                },
            ))
        }
    }
}

struct Server {
    state: Arc<State>,
    addr: SocketAddr,
    _shutdown: watch::Sender<bool>,
}

impl Server {
    async fn start() -> Self {
        common::require_freetds();
        let svc = Scripted::default();
        let state = svc.state.clone();
        let listener = mssql_sim::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(mssql_sim::listener::run_listener(
            Arc::new(svc),
            listener,
            rx,
        ));
        Server {
            state,
            addr,
            _shutdown: tx,
        }
    }

    fn script(&self, steps: &[Next]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(steps.iter().cloned());
    }

    fn logins(&self) -> usize {
        self.state.logins.load(Ordering::SeqCst)
    }

    fn backend(&self, password: &str, call: Duration) -> OdbcBackend {
        let mut cfg = OdbcConfig::freetds()
            .with_encryption(backend_odbc::Encryption::Off)
            .with_login("sa", Secret::new(password))
            .with_endpoints(HashMap::from([(inst(), self.addr)]))
            .with_timeouts(Duration::from_secs(5), call);
        cfg.sql.mirror_fallback = false;
        OdbcBackend::new(cfg)
    }
}

fn inst() -> InstanceAddr {
    InstanceAddr::parse("sql-a.cms.test\\RTC").unwrap()
}

fn dbs() -> Vec<DatabaseName> {
    vec![
        DatabaseName::parse("xds").unwrap(),
        DatabaseName::parse("lis").unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_positions_parse_through_freetds() {
    let s = Server::start().await;
    let b = s.backend(PASSWORD, Duration::from_secs(10));
    let p = b.probe(&inst(), &dbs()).await.unwrap();
    assert_eq!(p.version, "Microsoft SQL Server 2019 (scripted)");
    assert_eq!(p.databases.len(), 2);
    assert!(p.databases.iter().all(|d| d.is_writable()));
    let pos = b.positions(&inst(), &dbs()).await.unwrap();
    assert_eq!(
        pos.iter()
            .map(|p| p.position.unwrap().0)
            .collect::<Vec<_>>(),
        vec![40, 41]
    );
    // Probes have their own session (`Session::Read`), positions the operations session.
    assert_eq!(s.logins(), 2);
    assert_eq!(
        b.read_location(&inst()).await.unwrap(),
        None,
        "208 means no record yet"
    );
    b.probe(&inst(), &dbs()).await.unwrap();
    // Both sessions are reused.
    assert_eq!(s.logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_numbers_are_classified_through_sqlstate_and_native_number() {
    let s = Server::start().await;
    let b = s.backend(PASSWORD, Duration::from_secs(10));
    let cases = [
        (5061, ErrorKind::Transient),
        (1205, ErrorKind::Transient),
        (1404, ErrorKind::Transient),
        (3906, ErrorKind::InvalidState),
        (1422, ErrorKind::InvalidState),
        (1455, ErrorKind::InvalidState),
        (954, ErrorKind::Unreachable),
        (1418, ErrorKind::Unreachable),
        (229, ErrorKind::Permission),
        (5011, ErrorKind::Permission),
        (3101, ErrorKind::Transient),
        (927, ErrorKind::InvalidState),
        (5063, ErrorKind::InvalidState),
        (1468, ErrorKind::InvalidState),
        (1470, ErrorKind::InvalidState),
        (1477, ErrorKind::InvalidState),
        (3104, ErrorKind::InvalidState),
        (2812, ErrorKind::Fatal),
        (102, ErrorKind::Fatal),
    ];
    for (n, kind) in cases {
        s.script(&[Next::Error(n)]);
        let e = b.positions(&inst(), &dbs()).await.unwrap_err();
        assert_eq!((e.kind, e.code), (kind, Some(n)), "error {n}: {e}");
    }
    // Server errors leave the session usable: still one login.
    assert_eq!(s.logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specific_error_decides_not_the_generic_trailer() {
    let s = Server::start().await;
    let b = s.backend(PASSWORD, Duration::from_secs(10));
    s.script(&[Next::Errors(vec![5011, 5069])]);
    let e = b.positions(&inst(), &dbs()).await.unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Permission, Some(5011)), "{e}");
    assert!(e.message.contains("ALTER permission"), "{e}");
    s.script(&[Next::Errors(vec![3101, 3013])]);
    let e = b.positions(&inst(), &dbs()).await.unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(3101)), "{e}");
    s.script(&[Next::Error(208)]);
    let e = b.positions(&inst(), &dbs()).await.unwrap_err();
    assert!(
        e.message
            .contains("create the view dbo.cms_failover_position"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_the_second_statement_of_a_batch_is_not_lost() {
    let s = Server::start().await;
    let b = s.backend(PASSWORD, Duration::from_secs(10));
    // The pre-check probe answers normally, then the two-statement ALTER batch fails in its
    // second statement.
    b.probe(&inst(), &dbs()).await.unwrap();
    s.script(&[Next::SecondFails(5061)]);
    let e = b.positions(&inst(), &dbs()).await.unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(5061)), "{e}");
    s.script(&[Next::SecondFails(3906)]);
    let e = b.positions(&inst(), &dbs()).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (ErrorKind::InvalidState, Some(3906)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_permission_and_never_echoed() {
    let s = Server::start().await;
    let b = s.backend("wrong;pass{word", Duration::from_secs(10));
    let e = b.probe(&inst(), &dbs()).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (ErrorKind::Permission, Some(18456)),
        "{e}"
    );
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("wrong;pass") && !text.contains(PASSWORD),
        "{text}"
    );
    assert!(text.contains("PWD=***"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_statement_times_out_and_its_connection_is_discarded() {
    let s = Server::start().await;
    let b = s.backend(PASSWORD, Duration::from_secs(2));
    b.probe(&inst(), &dbs()).await.unwrap();
    assert_eq!(s.logins(), 1);
    s.script(&[Next::Hang]);
    let e = b.positions(&inst(), &dbs()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    // The next call works on a new connection: the timed-out one was not reused.
    b.probe(&inst(), &dbs()).await.unwrap();
    assert_eq!(s.logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_unreachable_then_re_established() {
    let s = Server::start().await;
    let b = s.backend(PASSWORD, Duration::from_secs(10));
    b.probe(&inst(), &dbs()).await.unwrap();
    s.script(&[Next::Disconnect]);
    // No silent retry (as backend-tiberius): the effect of a broken call is unknown, the
    // core decides; the broken connection is discarded.
    let e = b.probe(&inst(), &dbs()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert_eq!(s.logins(), 1);
    let p = b.probe(&inst(), &dbs()).await.unwrap();
    assert_eq!(p.databases.len(), 2);
    assert_eq!(s.logins(), 2, "the next call connected afresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_belongs_to_a_dedicated_session_and_is_lost_with_it() {
    let s = Server::start().await;
    let a = s.backend(PASSWORD, Duration::from_secs(2));
    let other = s.backend(PASSWORD, Duration::from_secs(2));
    let r = "cms-failover";
    assert!(!a.lock_held(&inst(), r).await.unwrap(), "no session yet");
    assert_eq!(
        a.acquire_lock(&inst(), r).await.unwrap(),
        LockAttempt::Granted
    );
    assert_eq!(
        a.acquire_lock(&inst(), r).await.unwrap(),
        LockAttempt::Granted,
        "idempotent for the holder"
    );
    assert!(a.lock_held(&inst(), r).await.unwrap());
    assert_eq!(
        other.acquire_lock(&inst(), r).await.unwrap(),
        LockAttempt::Held
    );
    // Work on the same instance uses another connection and does not disturb the lock.
    a.probe(&inst(), &dbs()).await.unwrap();
    assert!(a.lock_held(&inst(), r).await.unwrap());

    // The lock session drops: the lock is gone and is not silently re-taken.
    s.script(&[Next::Disconnect]);
    assert!(!a.lock_held(&inst(), r).await.unwrap());
    assert!(!a.lock_held(&inst(), r).await.unwrap());
    assert_eq!(
        other.acquire_lock(&inst(), r).await.unwrap(),
        LockAttempt::Granted
    );
    assert_eq!(a.acquire_lock(&inst(), r).await.unwrap(), LockAttempt::Held);
    other.release_lock(&inst(), r).await.unwrap();
    other.release_lock(&inst(), r).await.unwrap();
    assert!(!other.lock_held(&inst(), r).await.unwrap());

    // A lock check that hangs counts as a lost lock (its connection is discarded).
    assert_eq!(
        a.acquire_lock(&inst(), r).await.unwrap(),
        LockAttempt::Granted
    );
    s.script(&[Next::Hang]);
    assert!(!a.lock_held(&inst(), r).await.unwrap());
}
