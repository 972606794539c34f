//! The ODBC [`Transport`]: one reusable connection per instance and [`Session`], blocking
//! ODBC work moved off the async runtime, a hard timeout per call, and diagnostics classified.
//!
//! A call takes its connection out of the [`SessionCache`] slot, moves it into
//! `spawn_blocking` together with the work, and puts it back only when the work finished in
//! time without breaking the link. When the timeout fires the connection stays inside the
//! blocking task and is dropped (disconnected) there whenever the driver returns: it is never
//! reused. That blocking thread may linger until the driver gives up (the ODBC query and
//! login timeouts make the driver give up by itself in most cases).

use crate::config::{ConfigError, DriverKind, Encryption, OdbcConfig, Trust};
use crate::driver::{self, OdbcConn, OdbcFailure};
use crate::{classify, connstr};
use async_trait::async_trait;
use failover_core::{ErrorKind, InstanceAddr, Secret};
use failover_tsql::rows::ResultSet;
use failover_tsql::transport::{Batch, SessionCache, session_lost};
use failover_tsql::{Session, SqlConfig, SqlValue, Transport, TransportError};
use std::time::Duration;

/// The [`Transport`] over unixODBC (see [`failover_tsql::transport`] for the contract).
pub struct OdbcTransport {
    config: OdbcConfig,
    sessions: SessionCache<OdbcConn>,
}

impl std::fmt::Debug for OdbcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdbcTransport")
            .field("driver", &self.config.driver_name)
            .field("password", &self.config.password)
            .finish_non_exhaustive()
    }
}

impl From<OdbcConfig> for OdbcTransport {
    fn from(config: OdbcConfig) -> Self {
        Self {
            config,
            sessions: SessionCache::default(),
        }
    }
}

/// What the blocking part of a call ended with.
enum Outcome {
    Ran(Vec<driver::ResultSet>),
    /// Connecting failed.
    Connect(OdbcFailure),
    /// The batch failed (the connection is kept unless the failure broke it).
    Failed(OdbcFailure),
    /// The existing lock session turned out dead before anything was sent.
    Dead,
    /// The Kerberos preflight found why a login cannot work (nothing was sent).
    Refused(TransportError),
}

impl OdbcTransport {
    /// The configuration.
    pub fn config(&self) -> &OdbcConfig {
        &self.config
    }

    /// The connection string used for `instance`, with secrets redacted (for logs and reports).
    pub fn redacted_connection_string(
        &self,
        instance: &InstanceAddr,
    ) -> Result<String, ConfigError> {
        Ok(connstr::redact(
            self.config.connection_string(instance)?.expose(),
        ))
    }

    /// Drops the work and lock connections of `instance` (the server releases the lock
    /// connection's application locks). The next call reconnects.
    pub async fn disconnect(&self, instance: &InstanceAddr) {
        let conns = self.sessions.take_all(Some(instance)).await;
        if !conns.is_empty() {
            drop(tokio::task::spawn_blocking(move || drop(conns)));
        }
    }

    /// The classified error of an ODBC failure, the password scrubbed from its text.
    fn failure(&self, f: &OdbcFailure) -> TransportError {
        let message = match &self.config.password {
            Some(p) => connstr::scrub(&f.summary(), p.expose()),
            None => f.summary(),
        };
        match classify::classify(f) {
            (_, Some(code)) => TransportError::server(code, message),
            (kind, None) => TransportError::failed(kind, message),
        }
    }

    fn connect_failure(&self, conn_str: &Secret, f: &OdbcFailure) -> TransportError {
        match self.failure(f) {
            TransportError::Failed {
                kind,
                code,
                message,
            } => TransportError::Failed {
                kind,
                code,
                message: format!(
                    "cannot connect ({}): {message}",
                    connstr::redact(conn_str.expose())
                ),
            },
            gone => gone,
        }
    }
}

impl OdbcTransport {
    /// After a failed connect with FreeTDS and a CA file: FreeTDS says only "unable to
    /// connect", so check the server certificate the same way (that CA, the host FreeTDS
    /// checks) and, when it is refused, say which problem it was and what to set.
    async fn certificate_refusal(&self, instance: &InstanceAddr) -> Option<String> {
        let Encryption::Required(Trust::CaFile(ca)) = &self.config.encryption else {
            return None;
        };
        if self.config.driver_kind != DriverKind::FreeTds {
            return None;
        }
        let (host, port) = self.config.tls_target(instance)?;
        let (ca, budget) = (ca.clone(), self.config.connect_timeout);
        let check = tokio::task::spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            let addr = (host.as_str(), port).to_socket_addrs().ok()?.next()?;
            failover_tsql::tls::diagnose(addr, &host, &ca, budget)
        });
        let text = tokio::time::timeout(budget * 2, check).await.ok()?.ok()??;
        failover_tsql::tls::CertProblem::recognise(&text)
            .map(|_| failover_tsql::tls::refusal_message(&text))
    }
}

/// With the `kerberos` feature and an SPN: gets the service ticket before the driver does,
/// so a Kerberos problem is reported as what it is ([`failover_tsql::kerberos`]); FreeTDS
/// itself only says "unable to connect".
fn kerberos_preflight(spn: Option<&str>) -> Result<(), TransportError> {
    match spn {
        #[cfg(feature = "kerberos")]
        Some(spn) => failover_tsql::kerberos::preflight(spn),
        _ => Ok(()),
    }
}

fn whole_secs(d: Duration) -> f64 {
    d.as_secs_f64().ceil().max(1.0)
}

fn to_tsql(set: driver::ResultSet) -> ResultSet {
    set.rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.map(SqlValue::Text)).collect())
        .collect()
}

#[async_trait]
impl Transport for OdbcTransport {
    const NAME: &'static str = "odbc";

    async fn run(&self, batch: Batch<'_>) -> Result<Vec<ResultSet>, TransportError> {
        let conn_str = self
            .config
            .connection_string(batch.instance)
            .map_err(|e| TransportError::failed(ErrorKind::Fatal, e.to_string()))?;
        let slot = self.sessions.slot(batch.instance, batch.session);
        let mut guard = slot.lock().await;
        let existing = guard.take();
        let existed = existing.is_some();
        let (connect, call) = (self.config.connect_timeout, self.config.call_timeout);
        let budget = if existed { call } else { call + connect };
        let login_secs = whole_secs(connect).min(u32::MAX as f64) as u32;
        let query_secs = whole_secs(call) as usize;
        let (session, sql, dsn) = (batch.session, batch.sql.to_string(), conn_str.clone());
        let spn = self
            .config
            .integrated
            .then(|| self.config.spn(batch.instance))
            .flatten();
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = match existing {
                Some(c) if !c.is_dead() => c,
                // A new session would not own what the old one held.
                Some(_) if session == Session::Lock => return (None, Outcome::Dead),
                _ => match kerberos_preflight(spn.as_deref()) {
                    Err(e) => return (None, Outcome::Refused(e)),
                    Ok(()) => match OdbcConn::connect(dsn.expose(), login_secs) {
                        Ok(c) => c,
                        Err(e) => return (None, Outcome::Connect(e)),
                    },
                },
            };
            match conn.execute(&sql, query_secs) {
                Ok(sets) => (Some(conn), Outcome::Ran(sets)),
                Err(mut e) => {
                    if conn.is_dead() {
                        e.mark_connection_dead();
                    }
                    let keep = !e.breaks_connection();
                    (keep.then_some(conn), Outcome::Failed(e))
                }
            }
        });
        let (conn, outcome) = match tokio::time::timeout(budget, task).await {
            Err(_) => {
                return Err(session_lost(
                    session,
                    existed,
                    TransportError::timed_out(budget),
                ));
            }
            Ok(Err(join)) => {
                let e = TransportError::failed(
                    ErrorKind::Fatal,
                    format!("the ODBC call panicked: {join}"),
                );
                return Err(session_lost(session, existed, e));
            }
            Ok(Ok(done)) => done,
        };
        *guard = conn;
        match outcome {
            Outcome::Ran(sets) => Ok(sets.into_iter().map(to_tsql).collect()),
            Outcome::Connect(f) => Err(match self.certificate_refusal(batch.instance).await {
                Some(refusal) => TransportError::failed(
                    ErrorKind::Fatal,
                    format!("{refusal} ({})", self.connect_failure(&conn_str, &f)),
                ),
                None => self.connect_failure(&conn_str, &f),
            }),
            Outcome::Failed(f) if f.breaks_connection() => {
                Err(session_lost(session, existed, self.failure(&f)))
            }
            Outcome::Failed(f) => Err(self.failure(&f)),
            Outcome::Refused(e) => Err(e),
            Outcome::Dead => Err(TransportError::SessionGone(
                "the driver reports the lock session's connection dead".into(),
            )),
        }
    }

    fn sql_config(&self) -> &SqlConfig {
        &self.config.sql
    }

    fn warnings(&self) -> Vec<String> {
        match self.config.encryption {
            Encryption::Required(Trust::TrustServerCertificate) => {
                vec![failover_tsql::tls::UNVERIFIED_CERTIFICATE.to_string()]
            }
            _ => Vec::new(),
        }
    }

    fn known_instances(&self) -> Vec<failover_core::InstanceAddr> {
        self.config.endpoints.keys().cloned().collect()
    }

    fn call_timeout(&self) -> Option<std::time::Duration> {
        Some(self.config.call_timeout)
    }
}
