//! The tiberius [`Transport`]: establishing sessions, caching one per instance and
//! [`Session`], running a batch under the call timeout and classifying what went wrong.
//! Nothing from tiberius leaves this module.

use crate::config::{Encryption, TiberiusConfig, Trust};
use async_trait::async_trait;
use failover_core::{ErrorKind, InstanceAddr};
use failover_tsql::rows::ResultSet;
use failover_tsql::transport::{Batch, SessionCache, session_lost};
use failover_tsql::{SqlConfig, SqlValue, Transport, TransportError};
use futures::TryStreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, QueryItem};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type TdsClient = Client<Compat<TcpStream>>;

/// The [`Transport`] over TDS with tiberius: up to two cached sessions per instance (see
/// [`failover_tsql::transport`] for the contract), each call bounded by
/// [`TiberiusConfig::call_timeout`].
pub struct TiberiusTransport {
    cfg: Arc<TiberiusConfig>,
    sessions: SessionCache<TdsClient>,
}

impl std::fmt::Debug for TiberiusTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiberiusTransport")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl From<TiberiusConfig> for TiberiusTransport {
    fn from(cfg: TiberiusConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            sessions: SessionCache::default(),
        }
    }
}

impl TiberiusTransport {
    /// The configuration.
    pub fn config(&self) -> &TiberiusConfig {
        &self.cfg
    }

    /// Drops every cached session (the lock sessions too, which releases their locks).
    pub async fn disconnect_all(&self) {
        drop(self.sessions.take_all(None).await);
    }
}

#[async_trait]
impl Transport for TiberiusTransport {
    const NAME: &'static str = "tiberius";

    async fn run(&self, batch: Batch<'_>) -> Result<Vec<ResultSet>, TransportError> {
        let slot = self.sessions.slot(batch.instance, batch.session);
        // Whether this call runs on a session that existed before it (set once taken).
        let existed = AtomicBool::new(false);
        let call = async {
            let mut guard = slot.lock().await;
            let mut client = match guard.take() {
                Some(c) => {
                    existed.store(true, Ordering::Relaxed);
                    c
                }
                None => connect(&self.cfg, batch.instance).await?,
            };
            match execute(&mut client, batch.sql).await {
                Ok(sets) => {
                    *guard = Some(client);
                    Ok(sets)
                }
                Err(Failure::Server(e)) => {
                    *guard = Some(client);
                    Err(e)
                }
                Err(Failure::Broken(e)) => Err(session_lost(
                    batch.session,
                    existed.load(Ordering::Relaxed),
                    e,
                )),
            }
        };
        // On expiry the call's future is dropped, and the connection it had taken with it.
        match tokio::time::timeout(self.cfg.call_timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(session_lost(
                batch.session,
                existed.load(Ordering::Relaxed),
                TransportError::timed_out(self.cfg.call_timeout),
            )),
        }
    }

    fn sql_config(&self) -> &SqlConfig {
        &self.cfg.sql
    }

    fn warnings(&self) -> Vec<String> {
        match self.cfg.encryption {
            Encryption::Required(Trust::TrustServerCertificate) => {
                vec![failover_tsql::tls::UNVERIFIED_CERTIFICATE.to_string()]
            }
            _ => Vec::new(),
        }
    }

    fn known_instances(&self) -> Vec<failover_core::InstanceAddr> {
        self.cfg.endpoints.keys().cloned().collect()
    }

    fn call_timeout(&self) -> Option<std::time::Duration> {
        Some(self.cfg.call_timeout)
    }
}

/// How a failed call left its connection.
enum Failure {
    /// The server answered with an error; the connection is still usable.
    Server(TransportError),
    /// The connection is gone or in an unknown state; it was dropped.
    Broken(TransportError),
}

fn classify_tiberius(e: tiberius::error::Error) -> Failure {
    use tiberius::error::Error as E;
    let broken = |kind, msg: String| Failure::Broken(TransportError::failed(kind, msg));
    match e {
        E::Server(t) => Failure::Server(TransportError::server(t.code() as i32, t.message())),
        E::Io { message, .. } => broken(
            ErrorKind::Unreachable,
            format!("connection lost: {message}"),
        ),
        E::Tls(m) => broken(ErrorKind::Fatal, failover_tsql::tls::refusal_message(&m)),
        E::Routing { host, port } => broken(
            ErrorKind::Fatal,
            format!("the server redirected to {host}:{port}; connect to that address instead"),
        ),
        other => broken(
            ErrorKind::Unreachable,
            format!("protocol error, connection dropped: {other}"),
        ),
    }
}

/// Opens a session on `inst`, logged in to `master`.
async fn connect(cfg: &TiberiusConfig, inst: &InstanceAddr) -> Result<TdsClient, TransportError> {
    let broken = TransportError::failed;
    let mut c = Config::new();
    c.host(inst.host().as_str());
    c.database("master");
    c.application_name(&cfg.application_name);
    // One bound, ours: `call_timeout` covers each call whole (TCP connect, handshake, batch)
    // on tokio's clock and drops the connection on expiry, classified as a timeout. tiberius
    // 0.13's own bounds (15 s handshake, 30 s per response, on a separate timer thread) would
    // only cut a longer configured call short and report it as a lost connection.
    c.handshake_timeout(None);
    c.command_timeout(None);
    if cfg.integrated {
        #[cfg(feature = "kerberos")]
        c.authentication(AuthMethod::Integrated);
        #[cfg(not(feature = "kerberos"))]
        return Err(broken(
            ErrorKind::Fatal,
            "the login method is Kerberos but this build has no Kerberos support: rebuild with \
             `--features kerberos` (needs libkrb5-dev and clang), or use a SQL login"
                .into(),
        ));
    } else {
        c.authentication(AuthMethod::sql_server(&cfg.user, cfg.password.expose()));
    }
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
    if cfg.integrated {
        // tiberius names the service `MSSQLSvc/{host}:{port}` from the configured port; after
        // a SQL Browser lookup that is the browser's, so use the port actually connected to.
        let port = tcp.peer_addr().map_or(1433, |a| a.port());
        c.port(port);
        kerberos_preflight(failover_tsql::kerberos::spn(inst.host().as_str(), port)).await?;
    }
    let plaintext = cfg.encryption == Encryption::Plaintext;
    let integrated = cfg.integrated;
    Client::connect(c, tcp.compat_write())
        .await
        .map_err(|e| login_failure(plaintext, integrated, e))
}

/// Gets the service ticket for `spn` before tiberius does, so a Kerberos problem is
/// reported as what it is (see [`failover_tsql::kerberos`]).
#[cfg(feature = "kerberos")]
async fn kerberos_preflight(spn: String) -> Result<(), TransportError> {
    tokio::task::spawn_blocking(move || failover_tsql::kerberos::preflight(&spn))
        .await
        .map_err(|e| TransportError::failed(ErrorKind::Fatal, format!("Kerberos preflight: {e}")))?
}

#[cfg(not(feature = "kerberos"))]
async fn kerberos_preflight(_spn: String) -> Result<(), TransportError> {
    Ok(())
}

/// Classifies a failed login: a refused certificate says which problem it was and what to
/// set; with `plaintext` configured, a server that forces encryption says so.
fn login_failure(plaintext: bool, integrated: bool, e: tiberius::error::Error) -> TransportError {
    use failover_tsql::{kerberos, tls};
    let text = e.to_string();
    if integrated && !matches!(e, tiberius::error::Error::Server(_)) {
        if let Some(p) = kerberos::classify_text(&text) {
            return p.error("the server", &text);
        }
        if text.to_ascii_lowercase().contains("gssapi") {
            return TransportError::failed(
                ErrorKind::Permission,
                format!("Kerberos login failed: {text}; check `klist` and the server's SPN"),
            );
        }
    }
    let tls_failed = matches!(e, tiberius::error::Error::Tls(_));
    let forced = matches!(&e, tiberius::error::Error::Server(t) if t.code() == 17835);
    if plaintext && (tls_failed || forced || tls::CertProblem::recognise(&text).is_some()) {
        // Configured NotSupported, tiberius built with TLS reads the server's ENCRYPT_REQ and
        // starts TLS anyway; built without, it sends a plaintext LOGIN7 and gets 17835.
        return TransportError::failed(
            ErrorKind::Fatal,
            format!("{} ({text})", tls::FORCED_ENCRYPTION),
        );
    }
    if tls::CertProblem::recognise(&text).is_some() {
        return TransportError::failed(ErrorKind::Fatal, tls::refusal_message(&text));
    }
    match classify_tiberius(e) {
        // A server error at login (18456) ends the connection too.
        Failure::Server(e) | Failure::Broken(e) => e,
    }
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
async fn execute(client: &mut TdsClient, sql: &str) -> Result<Vec<ResultSet>, Failure> {
    let mut stream = client.simple_query(sql).await.map_err(classify_tiberius)?;
    let mut sets: Vec<ResultSet> = Vec::new();
    while let Some(item) = stream.try_next().await.map_err(classify_tiberius)? {
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
