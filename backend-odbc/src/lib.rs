//! # backend-odbc
//!
//! [`OdbcBackend`] implements [`failover_core::Backend`] over unixODBC with
//! [odbc-api](https://docs.rs/odbc-api) and any SQL Server ODBC driver (FreeTDS `tdsodbc`, or
//! Microsoft's "ODBC Driver 18 for SQL Server").
//!
//! - All T-SQL text, row parsing and pre-checks come from `failover-tsql`, shared with
//!   `backend-tiberius`; this crate only moves batches over ODBC.
//! - odbc-api blocks: every call runs on `tokio::task::spawn_blocking` under a hard
//!   `tokio::time::timeout`, and also sets the ODBC login and query timeouts so the driver
//!   gives up by itself. A connection whose call timed out is discarded, never reused (its
//!   blocking thread may linger until the driver returns).
//! - One work connection per instance, reused and re-established after a drop; one dedicated
//!   lock connection per instance that owns the session-scoped application locks.
//! - Errors: ODBC diagnostics (SQLSTATE + native error number) are classified by
//!   [`classify`]; no odbc-api type appears in the public API. Passwords come from an env var
//!   or a file ([`secret`]) and connection strings are redacted ([`connstr::redact`]) before
//!   they reach a message.
#![warn(missing_docs)]

mod call;
pub mod classify;
pub mod config;
pub mod connstr;
pub mod driver;
pub mod secret;

pub use config::{ConfigError, ConnectionSpec, DriverKind, Encryption, OdbcConfig};
pub use failover_tsql::SqlConfig;
pub use secret::{PasswordSource, Secret};

use async_trait::async_trait;
use call::{CallError, Connect, Slot, Timeouts};
use driver::{OdbcFailure, ResultSet};
use failover_core::{
    Backend, BackendError, DatabaseName, DatabasePosition, ErrorKind, InstanceAddr, InstanceProbe,
    LocationRecord, LockAttempt, MirrorFailoverKind, MirrorRole, Op, Operation, Store,
};
use failover_tsql::{SqlValue, build, errors, plan, rows};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The ODBC backend. Cheap to clone (shared state).
#[derive(Clone)]
pub struct OdbcBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: OdbcConfig,
    sql: SqlConfig,
    password: Option<Secret>,
    work: Mutex<HashMap<InstanceAddr, Arc<Slot>>>,
    locks: Mutex<HashMap<InstanceAddr, Arc<Slot>>>,
}

impl std::fmt::Debug for OdbcBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdbcBackend")
            .field("driver", &self.inner.config.driver_name)
            .field("password", &self.inner.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Which connection of an instance a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    Work,
    Lock,
}

impl OdbcBackend {
    /// Builds the backend; reads the password now (from its env var or file).
    pub fn new(config: OdbcConfig, sql: SqlConfig) -> Result<Self, ConfigError> {
        let password = config.load_password()?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sql,
                password,
                work: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OdbcConfig {
        &self.inner.config
    }

    /// The connection string used for `instance`, with secrets redacted (for logs and reports).
    pub fn redacted_connection_string(
        &self,
        instance: &InstanceAddr,
    ) -> Result<String, ConfigError> {
        let s = self
            .inner
            .config
            .connection_string(instance, self.inner.password.as_ref())?;
        Ok(connstr::redact(s.expose()))
    }

    /// Drops the work and lock connections of `instance` (the lock connection's app locks are
    /// released by the server). The next call reconnects.
    pub async fn disconnect(&self, instance: &InstanceAddr) {
        for s in [Session::Work, Session::Lock] {
            self.slot(instance, s).discard().await;
        }
    }

    fn slot(&self, instance: &InstanceAddr, session: Session) -> Arc<Slot> {
        let map = match session {
            Session::Work => &self.inner.work,
            Session::Lock => &self.inner.locks,
        };
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(instance.clone()).or_default().clone()
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.inner.config.connect_timeout,
            call: self.inner.config.call_timeout,
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.inner.password {
            Some(p) => connstr::scrub(text, p.expose()),
            None => text.to_string(),
        }
    }

    /// Runs one batch and converts its result sets for `failover-tsql`'s parsers.
    async fn run(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        session: Session,
        connect: Connect,
        sql: String,
    ) -> Result<Vec<rows::ResultSet>, RunError> {
        let conn_str = self
            .inner
            .config
            .connection_string(instance, self.inner.password.as_ref())
            .map_err(|e| {
                RunError::Backend(BackendError::new(
                    ErrorKind::Fatal,
                    op,
                    instance,
                    e.to_string(),
                ))
            })?;
        tracing::debug!(%instance, %op, sql = %sql, "odbc call");
        let slot = self.slot(instance, session);
        let result = slot.run(&conn_str, connect, sql, self.timeouts()).await;
        match result {
            Ok(sets) => Ok(sets.into_iter().map(to_tsql).collect()),
            Err(CallError::Connect(f)) => {
                let mut e = self.failure(op, instance, &f);
                e.message = format!(
                    "cannot connect ({}): {}",
                    connstr::redact(conn_str.expose()),
                    e.message
                );
                Err(RunError::Backend(e))
            }
            Err(CallError::Execute(failure)) => Err(RunError::Execute(
                self.failure(op, instance, &failure),
                failure.breaks_connection(),
            )),
            Err(CallError::NotConnected) => Err(RunError::NotConnected(BackendError::new(
                ErrorKind::Unreachable,
                op,
                instance,
                "the lock session's connection is gone (its application locks were released)",
            ))),
            Err(CallError::TimedOut(d)) => Err(RunError::TimedOut(BackendError::new(
                ErrorKind::Timeout,
                op,
                instance,
                format!(
                    "no answer within {:.1}s; the connection was discarded",
                    d.as_secs_f64()
                ),
            ))),
            Err(CallError::Panicked(m)) => Err(RunError::Backend(BackendError::new(
                ErrorKind::Fatal,
                op,
                instance,
                format!("the ODBC call panicked: {m}"),
            ))),
        }
    }

    fn failure(&self, op: Operation, instance: &InstanceAddr, f: &OdbcFailure) -> BackendError {
        let (kind, code) = classify::classify(f);
        let message = self.scrub(&f.summary());
        match code {
            Some(c) => errors::server_error(op, instance, c, &message),
            None => BackendError::new(kind, op, instance, message),
        }
    }

    async fn work(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        sql: String,
    ) -> Result<Vec<rows::ResultSet>, BackendError> {
        self.run(op, instance, Session::Work, Connect::IfNeeded, sql)
            .await
            .map_err(RunError::into_backend)
    }

    async fn probe_for(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        dbs: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        let sets = self.work(op, instance, build::probe(dbs)).await?;
        rows::parse_probe(instance, dbs, &sets).map_err(|e| errors::row_error(op, instance, &e))
    }

    async fn positions_on(
        &self,
        instance: &InstanceAddr,
        dbs: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        let op = Operation::Positions;
        let sets = self
            .work(op, instance, build::positions(&self.inner.sql, dbs))
            .await?;
        rows::parse_positions(dbs, &sets).map_err(|e| errors::row_error(op, instance, &e))
    }

    /// Which instance of `store` currently serves `dbs` as principal: the store's principal
    /// if it answers as principal (or the databases are not mirrored); else the partner it
    /// names in `sys.database_mirroring`; if the principal is unreachable, the store's mirror
    /// when that answers as principal. Read-only. Same behaviour as
    /// `TiberiusBackend::locate_principal`.
    pub async fn locate_principal(
        &self,
        store: &Store,
        dbs: &[DatabaseName],
    ) -> Result<InstanceAddr, BackendError> {
        failover_core::backend::locate_principal(self, store, dbs).await
    }

    /// The current lock mode of this backend's lock session: `Ok(None)` when the session
    /// dropped or timed out. Without a session a fresh one is opened (so an unreachable
    /// instance reports its error, as in `backend-tiberius`); a fresh session holds nothing.
    async fn lock_mode(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<Option<bool>, BackendError> {
        match self
            .run(
                op,
                instance,
                Session::Lock,
                Connect::IfNeeded,
                build::lock_mode(resource),
            )
            .await
        {
            Ok(sets) => rows::parse_lock_held(&sets)
                .map(Some)
                .map_err(|e| errors::row_error(op, instance, &e)),
            // Gone, dropped, or timed out (and so discarded): the lock is lost either way.
            Err(RunError::NotConnected(_) | RunError::Execute(_, true) | RunError::TimedOut(_)) => {
                Ok(None)
            }
            Err(e) => Err(e.into_backend()),
        }
    }
}

fn is_mirror_answer(e: &BackendError) -> bool {
    matches!(e.code, Some(954 | 955))
}

/// The outcome of a failed [`OdbcBackend::run`].
enum RunError {
    /// The batch failed; `true` when the connection was lost with it.
    Execute(BackendError, bool),
    /// A `Connect::Never` call found no session.
    NotConnected(BackendError),
    /// The hard timeout fired (the connection was discarded).
    TimedOut(BackendError),
    /// Anything else (connect failure, timeout…).
    Backend(BackendError),
}

impl RunError {
    fn into_backend(self) -> BackendError {
        match self {
            RunError::Execute(e, _)
            | RunError::NotConnected(e)
            | RunError::TimedOut(e)
            | RunError::Backend(e) => e,
        }
    }
}

fn to_tsql(set: ResultSet) -> rows::ResultSet {
    set.rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.map(SqlValue::Text)).collect())
        .collect()
}

#[async_trait]
impl Backend for OdbcBackend {
    fn name(&self) -> &str {
        "odbc"
    }

    fn statements(&self, op: &Op) -> Vec<String> {
        let sql = &self.inner.sql;
        let one = |s: String| if s.is_empty() { Vec::new() } else { vec![s] };
        match op {
            Op::Probe { databases, .. } => vec![build::probe(databases)],
            Op::Positions { databases, .. } => one(build::positions(sql, databases)),
            // The pre-check probe, then the change (only for databases that need it).
            Op::SetReadOnly {
                databases,
                read_only,
                ..
            } => {
                vec![
                    build::probe(databases),
                    build::set_read_only(databases, *read_only),
                ]
            }
            Op::Recover { databases, .. } => {
                vec![build::probe(databases), build::recover(databases)]
            }
            Op::MirrorFailover {
                databases, kind, ..
            } => {
                vec![
                    build::probe(databases),
                    build::mirror_failover(databases, *kind),
                ]
            }
            Op::AcquireLock { resource, .. } => {
                vec![build::lock_mode(resource), build::acquire_lock(resource)]
            }
            Op::ReleaseLock { resource, .. } => {
                vec![build::lock_mode(resource), build::release_lock(resource)]
            }
            Op::CheckLock { resource, .. } => vec![build::lock_mode(resource)],
            Op::ReadLocation { .. } => vec![build::read_location(sql)],
            Op::WriteLocation {
                record,
                expected_epoch,
                ..
            } => {
                vec![build::write_location(sql, record, *expected_epoch)]
            }
        }
    }

    async fn probe(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        self.probe_for(Operation::Probe, instance, databases).await
    }

    async fn positions(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        if databases.is_empty() {
            return Ok(Vec::new());
        }
        match self.positions_on(instance, databases).await {
            Err(e) if is_mirror_answer(&e) && self.inner.config.mirror_fallback => {
                // Some database is a mirror here: read each one where it is served.
                let probe = self
                    .probe_for(Operation::Positions, instance, databases)
                    .await?;
                let mut out = Vec::with_capacity(databases.len());
                for db in databases {
                    let partner = probe
                        .database(db)
                        .and_then(|d| d.mirroring.as_ref())
                        .filter(|m| m.role == MirrorRole::Mirror)
                        .and_then(|m| m.partner.clone());
                    let one = std::slice::from_ref(db);
                    let r = match &partner {
                        Some(p) => {
                            tracing::debug!(%instance, partner = %p, database = %db, "reading position on the mirroring partner");
                            self.positions_on(p, one).await?
                        }
                        None => self.positions_on(instance, one).await?,
                    };
                    out.extend(r);
                }
                Ok(out)
            }
            r => r,
        }
    }

    async fn set_read_only(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
        read_only: bool,
    ) -> Result<(), BackendError> {
        // One round trip, as in backend-tiberius: the server's ALTER is idempotent and its
        // errors (911 / 1468 / 5052 / 5069) say why a database cannot change mode.
        let op = Operation::SetReadOnly;
        if databases.is_empty() {
            return Ok(());
        }
        self.work(op, instance, build::set_read_only(databases, read_only))
            .await?;
        Ok(())
    }

    async fn recover(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<(), BackendError> {
        let op = Operation::Recover;
        let probe = self.probe_for(op, instance, databases).await?;
        let targets = plan::recover_targets(&probe, databases)?;
        if !targets.is_empty() {
            self.work(op, instance, build::recover(&targets)).await?;
        }
        Ok(())
    }

    async fn mirror_failover(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
        kind: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError> {
        let op = Operation::MirrorFailover;
        let probe = self.probe_for(op, instance, databases).await?;
        let plan = plan::mirror_failover_plan(&probe, databases, kind)?;
        if !plan.to_run.is_empty() {
            self.work(op, instance, build::mirror_failover(&plan.to_run, kind))
                .await?;
        }
        Ok(plan.new_principal)
    }

    async fn acquire_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<LockAttempt, BackendError> {
        let op = Operation::AcquireLock;
        plan::check_lock_resource(op, instance, resource)?;
        // Idempotent for the holder: never stack a second lock count on the session.
        if self.lock_mode(op, instance, resource).await? == Some(true) {
            return Ok(LockAttempt::Granted);
        }
        let sets = self
            .run(
                op,
                instance,
                Session::Lock,
                Connect::IfNeeded,
                build::acquire_lock(resource),
            )
            .await
            .map_err(RunError::into_backend)?;
        match rows::parse_return_code(&sets).map_err(|e| errors::row_error(op, instance, &e))? {
            0 | 1 => Ok(LockAttempt::Granted),
            -1 => Ok(LockAttempt::Held),
            code => Err(errors::lock_return_code(op, instance, code)),
        }
    }

    async fn release_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<(), BackendError> {
        let op = Operation::ReleaseLock;
        plan::check_lock_resource(op, instance, resource)?;
        // Release every count this session holds (sp_getapplock counts re-acquisitions).
        for _ in 0..16 {
            if self.lock_mode(op, instance, resource).await? != Some(true) {
                return Ok(());
            }
            let sets = self
                .run(
                    op,
                    instance,
                    Session::Lock,
                    Connect::Never,
                    build::release_lock(resource),
                )
                .await;
            match sets {
                Ok(sets) => {
                    let code = rows::parse_return_code(&sets)
                        .map_err(|e| errors::row_error(op, instance, &e))?;
                    if code < 0 {
                        return Err(errors::lock_return_code(op, instance, code));
                    }
                }
                // The session is gone: so is its lock.
                Err(
                    RunError::NotConnected(_) | RunError::Execute(_, true) | RunError::TimedOut(_),
                ) => return Ok(()),
                Err(e) => return Err(e.into_backend()),
            }
        }
        Err(BackendError::new(
            ErrorKind::Fatal,
            op,
            instance,
            "the lock is still held after 16 releases",
        ))
    }

    async fn lock_held(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<bool, BackendError> {
        let op = Operation::CheckLock;
        plan::check_lock_resource(op, instance, resource)?;
        Ok(self.lock_mode(op, instance, resource).await? == Some(true))
    }

    async fn read_location(
        &self,
        instance: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        let op = Operation::ReadLocation;
        match self
            .work(op, instance, build::read_location(&self.inner.sql))
            .await
        {
            Ok(sets) => {
                rows::parse_location(&sets).map_err(|e| errors::row_error(op, instance, &e))
            }
            Err(e) if e.code.is_some_and(errors::location_missing) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_location(
        &self,
        instance: &InstanceAddr,
        record: &LocationRecord,
        expected_epoch: Option<u64>,
    ) -> Result<(), BackendError> {
        let op = Operation::WriteLocation;
        plan::check_location_record(instance, record, expected_epoch)?;
        let sets = self
            .work(
                op,
                instance,
                build::write_location(&self.inner.sql, record, expected_epoch),
            )
            .await?;
        let stored =
            rows::parse_location(&sets).map_err(|e| errors::row_error(op, instance, &e))?;
        if stored.as_ref() == Some(record) {
            return Ok(());
        }
        let found = stored.map_or_else(
            || "no record".to_string(),
            |r| format!("epoch {} (run {})", r.epoch, r.run_id),
        );
        Err(BackendError::new(
            ErrorKind::InvalidState,
            op,
            instance,
            format!(
                "compare-and-swap refused: expected epoch {}, the store has {found}",
                expected_epoch.map_or_else(|| "none".to_string(), |e| e.to_string())
            ),
        ))
    }
}
