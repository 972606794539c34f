//! Connections: establishing them, caching one per instance and role, running a batch and
//! classifying what went wrong. Nothing from tiberius leaves this module.

use crate::config::{Encryption, TiberiusConfig, Trust};
use failover_core::{BackendError, ErrorKind, InstanceAddr, Operation};
use failover_tsql::SqlValue;
use failover_tsql::errors::server_error;
use failover_tsql::rows::ResultSet;
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, QueryItem};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub(crate) type TdsClient = Client<Compat<TcpStream>>;

/// One cached session. `None` when not connected (never, or dropped after a failure).
pub(crate) type Slot = Arc<Mutex<Option<TdsClient>>>;

/// Which session of an instance a batch runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// Probes, fences, restores, location: reconnects transparently after a drop.
    Ops,
    /// The application-lock session: never silently replaced (a new session does not hold
    /// the old one's locks).
    Lock,
}

/// How a failed call left its connection.
pub(crate) enum Failure {
    /// The server answered with an error; the connection is still usable.
    Server(BackendError),
    /// The connection is gone or in an unknown state; it was dropped.
    Broken(BackendError),
}

impl Failure {
    pub(crate) fn into_error(self) -> BackendError {
        match self {
            Failure::Server(e) | Failure::Broken(e) => e,
        }
    }
}

/// The per-instance session cache.
#[derive(Default)]
pub(crate) struct Pool {
    slots: StdMutex<HashMap<(InstanceAddr, Role), Slot>>,
}

impl Pool {
    pub(crate) fn slot(&self, inst: &InstanceAddr, role: Role) -> Slot {
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((inst.clone(), role)).or_default().clone()
    }
}

fn classify_tiberius(op: Operation, inst: &InstanceAddr, e: tiberius::error::Error) -> Failure {
    use tiberius::error::Error as E;
    match e {
        E::Server(t) => Failure::Server(server_error(op, inst, t.code() as i32, t.message())),
        E::Io { message, .. } => Failure::Broken(BackendError::new(
            ErrorKind::Unreachable,
            op,
            inst,
            format!("connection lost: {message}"),
        )),
        E::Tls(m) => Failure::Broken(BackendError::new(
            ErrorKind::Fatal,
            op,
            inst,
            format!("TLS failed: {m}"),
        )),
        E::Routing { host, port } => Failure::Broken(BackendError::new(
            ErrorKind::Fatal,
            op,
            inst,
            format!("the server redirected to {host}:{port}; connect to that address instead"),
        )),
        other => Failure::Broken(BackendError::new(
            ErrorKind::Unreachable,
            op,
            inst,
            format!("protocol error, connection dropped: {other}"),
        )),
    }
}

/// Opens a session on `inst`, logged in to `master`.
pub(crate) async fn connect(
    cfg: &TiberiusConfig,
    op: Operation,
    inst: &InstanceAddr,
) -> Result<TdsClient, Failure> {
    let broken = |kind, msg: String| Failure::Broken(BackendError::new(kind, op, inst, msg));
    let mut c = Config::new();
    c.host(inst.host().as_str());
    c.database("master");
    c.application_name(&cfg.application_name);
    c.authentication(AuthMethod::sql_server(&cfg.user, cfg.password.expose()));
    match &cfg.encryption {
        Encryption::Plaintext => c.encryption(EncryptionLevel::NotSupported),
        Encryption::Required(trust) => {
            if !cfg!(feature = "tls") {
                return Err(broken(
                    ErrorKind::Fatal,
                    "TLS is required but this build has no TLS support: rebuild backend-tiberius with \
                     `--features tls`, or choose plaintext (only for the simulator or a trusted loopback)"
                        .into(),
                ));
            }
            c.encryption(EncryptionLevel::Required);
            match trust {
                Trust::SystemRoots => {}
                Trust::CaFile(p) => c.trust_cert_ca(p.display()),
                Trust::TrustServerCertificate => c.trust_cert(),
            }
        }
    }
    let tcp = if let Some(sa) = cfg.endpoints.get(inst) {
        c.port(sa.port());
        TcpStream::connect(sa).await.map_err(|e| {
            broken(
                ErrorKind::Unreachable,
                format!("cannot connect to {sa}: {e}"),
            )
        })?
    } else if let Some(port) = inst.port() {
        c.port(port);
        TcpStream::connect((inst.host().as_str(), port))
            .await
            .map_err(|e| {
                broken(
                    ErrorKind::Unreachable,
                    format!("cannot connect to port {port}: {e}"),
                )
            })?
    } else if let Some(name) = inst.instance() {
        use tiberius::SqlBrowser;
        c.instance_name(name.as_str());
        TcpStream::connect_named(&c).await.map_err(|e| {
            broken(
                ErrorKind::Unreachable,
                format!("SQL Browser lookup of instance {name} failed: {e}"),
            )
        })?
    } else {
        c.port(1433);
        TcpStream::connect((inst.host().as_str(), 1433))
            .await
            .map_err(|e| {
                broken(
                    ErrorKind::Unreachable,
                    format!("cannot connect to port 1433: {e}"),
                )
            })?
    };
    let _ = tcp.set_nodelay(true);
    Client::connect(c, tcp.compat_write())
        .await
        .map_err(|e| match classify_tiberius(op, inst, e) {
            // A server error at login ends the connection too.
            Failure::Server(e) | Failure::Broken(e) => Failure::Broken(e),
        })
}

fn value(d: ColumnData<'static>) -> Option<SqlValue> {
    use ColumnData as C;
    match d {
        C::U8(v) => v.map(|x| SqlValue::Int(x.into())),
        C::I16(v) => v.map(|x| SqlValue::Int(x.into())),
        C::I32(v) => v.map(|x| SqlValue::Int(x.into())),
        C::I64(v) => v.map(SqlValue::Int),
        C::F32(v) => v.map(|x| SqlValue::Text(x.to_string())),
        C::F64(v) => v.map(|x| SqlValue::Text(x.to_string())),
        C::Bit(v) => v.map(SqlValue::Bool),
        C::String(v) => v.map(|s| SqlValue::Text(s.into_owned())),
        C::Guid(v) => v.map(|g| SqlValue::Text(g.to_string())),
        C::Binary(v) => v.map(|b| SqlValue::Bytes(b.into_owned())),
        C::Numeric(v) => v.map(|n| {
            if n.scale() == 0 {
                i64::try_from(n.value())
                    .map_or_else(|_| SqlValue::Text(n.value().to_string()), SqlValue::Int)
            } else {
                SqlValue::Text(n.to_string())
            }
        }),
        C::Xml(v) => v.map(|x| SqlValue::Text(x.to_string())),
        other => Some(SqlValue::Text(format!("{other:?}"))),
    }
}

/// Runs `sql` as one batch and collects every result set (empty ones included, in order).
pub(crate) async fn execute(
    client: &mut TdsClient,
    op: Operation,
    inst: &InstanceAddr,
    sql: &str,
) -> Result<Vec<ResultSet>, Failure> {
    let mut stream = client
        .simple_query(sql)
        .await
        .map_err(|e| classify_tiberius(op, inst, e))?;
    let mut sets: Vec<ResultSet> = Vec::new();
    while let Some(item) = stream
        .try_next()
        .await
        .map_err(|e| classify_tiberius(op, inst, e))?
    {
        match item {
            QueryItem::Metadata(_) => sets.push(Vec::new()),
            QueryItem::Row(row) => {
                let values = row.into_iter().map(value).collect();
                match sets.last_mut() {
                    Some(s) => s.push(values),
                    None => sets.push(vec![values]),
                }
            }
        }
    }
    Ok(sets)
}

impl Pool {
    /// Every slot created so far.
    pub(crate) fn all(&self) -> Vec<Slot> {
        let m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        m.values().cloned().collect()
    }
}
