//! [`SqlBackend`]: the [`Backend`] for SQL Server, written once over a [`Transport`].
//!
//! Every operation is a short sequence of batches from [`crate::build`], the replies parsed by
//! [`crate::rows`], the pre-checks of [`crate::plan`] and the errors of [`crate::errors`];
//! the transport only moves batches. [`Backend::statements`] comes from
//! [`build::statements`], whose batches are the ones these methods send (a test below runs
//! each operation over a recording transport and compares).
//!
//! ## Behaviour
//! - **probes** run on their own session ([`Session::Read`]), every other SQL call but the
//!   lock on the operations session ([`Session::Ops`]): a step that probes an instance and
//!   reads or writes its location record costs one round trip, not two.
//! - **positions**: when a database answers 954/955 on the instance asked (it is the mirror
//!   there) and [`SqlConfig::mirror_fallback`](crate::SqlConfig::mirror_fallback) is on, each database's position is read where
//!   it is served: on the partner named in `sys.database_mirroring.mirroring_partner_instance`
//!   for the mirrored ones, since both partners share one log.
//! - **set_read_only**: one round trip, no probe first (this call sits inside the
//!   write-unavailability window). `ALTER DATABASE … SET READ_ONLY|READ_WRITE` is idempotent
//!   on the server, and a mirror or non-ONLINE database fails with 1468 / 5052 (then 5069;
//!   invalid state). SQL Server answers a missing database with 5011 ("no permission, or
//!   the database does not exist"): the backend then probes, and reports a missing database
//!   as invalid state, a real refusal as permission.
//! - **recover**, **mirror_failover**: a probe, then the statement only for the databases that
//!   still need it ([`plan::recover_targets`], [`plan::mirror_failover_plan`]).
//! - **the lock** lives on the lock session ([`Session::Lock`]). `acquire_lock` first reads
//!   `APPLOCK_MODE`, so the holder never stacks a second reference; if the lock session is
//!   gone, the lock is taken anew on a fresh session. `lock_held` is `false` once the
//!   session is gone. `release_lock` sends one `sp_releaseapplock` (one is enough:
//!   references are never stacked) without checking first: error 1223 (not held) and a
//!   session that is gone (it released the lock with it) are success too.
//! - **write_location**: the compare-and-swap batch returns the stored record; the write took
//!   effect (now or before) exactly when it equals the record written.

use crate::rows::{self, ResultSet, RowError};
use crate::transport::{Batch, Session, Transport, TransportError};
use crate::{build, errors, plan};
use async_trait::async_trait;
use failover_core::{
    Backend, BackendError, DatabaseName, DatabasePosition, ErrorKind, InstanceAddr, InstanceProbe,
    LocationRecord, LockAttempt, MirrorFailoverKind, MirrorRole, Op, Operation, Store,
};

/// The [`Backend`] for SQL Server over the driver primitive `T`.
///
/// Each driver crate names its instance (`TiberiusBackend`, `OdbcBackend`); build one with
/// [`SqlBackend::new`] from the transport or anything that converts into it (its
/// configuration).
pub struct SqlBackend<T> {
    transport: T,
    /// The transport's [`SqlConfig`] with the fence lock timeout kept below its call timeout.
    cfg: crate::SqlConfig,
}

impl<T: std::fmt::Debug> std::fmt::Debug for SqlBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBackend")
            .field("transport", &self.transport)
            .finish()
    }
}

impl<T: Transport> SqlBackend<T> {
    /// A backend over `transport` (or its configuration). Nothing connects until the first
    /// call.
    pub fn new(transport: impl Into<T>) -> Self {
        let transport = transport.into();
        let mut cfg = transport.sql_config().clone();
        if let Some(call) = transport.call_timeout() {
            // Three quarters of the call timeout: the server abandons a blocked fence (1222)
            // before the client gives up on the call and drops the connection.
            let bound = u32::try_from(call.as_millis() * 3 / 4).unwrap_or(u32::MAX);
            cfg.fence_lock_timeout_ms = cfg.fence_lock_timeout_ms.min(bound.max(1));
        }
        cfg.server_names = cfg
            .server_names
            .with_instances(&transport.known_instances());
        Self { transport, cfg }
    }

    /// The SQL settings in effect (the transport's, with the fence lock timeout bounded).
    pub fn sql_config(&self) -> &crate::SqlConfig {
        &self.cfg
    }

    /// The driver primitive (its configuration, its session cache).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Which instance of `store` currently serves `dbs` as principal: the store's principal
    /// if it answers as principal (or the databases are not mirrored); else the partner it
    /// names in `sys.database_mirroring`; if the principal is unreachable, the store's mirror
    /// when that answers as principal. Read-only.
    pub async fn locate_principal(
        &self,
        store: &Store,
        dbs: &[DatabaseName],
    ) -> Result<InstanceAddr, BackendError> {
        failover_core::backend::locate_principal(self, store, dbs).await
    }

    /// Sends one batch.
    async fn send(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        session: Session,
        sql: &str,
    ) -> Result<Vec<ResultSet>, TransportError> {
        tracing::debug!(
            backend = T::NAME,
            %instance,
            operation = %op,
            ?session,
            sql,
            "sending batch"
        );
        let batch = Batch {
            instance,
            session,
            sql,
        };
        self.transport.run(batch).await
    }

    /// Sends one batch on the operations session.
    async fn ops(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        sql: &str,
    ) -> Result<Vec<ResultSet>, BackendError> {
        self.on(Session::Ops, op, instance, sql).await
    }

    /// Sends one read-only batch (a probe) on the read session.
    async fn reads(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        sql: &str,
    ) -> Result<Vec<ResultSet>, BackendError> {
        self.on(Session::Read, op, instance, sql).await
    }

    /// Sends one batch on `session` (not the lock's), errors classified.
    async fn on(
        &self,
        session: Session,
        op: Operation,
        instance: &InstanceAddr,
        sql: &str,
    ) -> Result<Vec<ResultSet>, BackendError> {
        self.send(op, instance, session, sql)
            .await
            .map_err(|e| errors::transport_error(op, instance, e))
    }

    /// Sends one batch on the lock session: `Ok(None)` when that session is gone.
    async fn lock_session(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        sql: &str,
    ) -> Result<Option<Vec<ResultSet>>, BackendError> {
        match self.send(op, instance, Session::Lock, sql).await {
            Ok(sets) => Ok(Some(sets)),
            Err(TransportError::SessionGone(_)) => Ok(None),
            Err(e) => Err(errors::transport_error(op, instance, e)),
        }
    }

    /// Whether the lock session holds `resource`: `None` when the session is gone (and its
    /// locks with it).
    async fn lock_mode(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<Option<bool>, BackendError> {
        plan::check_lock_resource(op, instance, resource)?;
        self.lock_session(op, instance, &build::lock_mode(resource))
            .await?
            .map(|sets| parsed(op, instance, rows::parse_lock_held(&sets)))
            .transpose()
    }

    async fn probe_as(
        &self,
        op: Operation,
        instance: &InstanceAddr,
        dbs: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        // The preflight probe also reads the login's rights; the pre-checks need no rights.
        let sql = match op {
            Operation::Probe => build::preflight_probe(&self.cfg, dbs),
            _ => build::probe(dbs),
        };
        let sets = self.reads(op, instance, &sql).await?;
        let mut probe = parsed(op, instance, rows::parse_probe(instance, dbs, &sets))?;
        // The server reports its partner by server name (computer\instance); translate it
        // to a topology address. An unmapped name stays `None` with the name kept: the core
        // refuses the run before any change.
        for m in probe
            .databases
            .iter_mut()
            .filter_map(|d| d.mirroring.as_mut())
        {
            if let Some(name) = &m.partner_name {
                match self.cfg.server_names.resolve(name) {
                    Ok(a) => m.partner = Some(a),
                    Err(e) => {
                        tracing::warn!(%instance, error = %e, "mirroring partner name not mapped")
                    }
                }
            }
        }
        Ok(probe)
    }

    async fn positions_on(
        &self,
        instance: &InstanceAddr,
        dbs: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        let op = Operation::Positions;
        let sql = build::positions(&self.cfg, dbs);
        let sets = self.ops(op, instance, &sql).await?;
        parsed(op, instance, rows::parse_positions(dbs, &sets))
    }

    /// Reads each database's position where it is served (the mirroring partner for the
    /// databases that are the mirror on `instance`).
    async fn positions_where_served(
        &self,
        instance: &InstanceAddr,
        dbs: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        let probe = self.probe_as(Operation::Positions, instance, dbs).await?;
        let mut out = Vec::with_capacity(dbs.len());
        for db in dbs {
            let partner = probe
                .database(db)
                .and_then(|d| d.mirroring.as_ref())
                .filter(|m| m.role == MirrorRole::Mirror)
                .and_then(|m| m.partner.clone());
            let one = std::slice::from_ref(db);
            let r = match &partner {
                Some(p) => {
                    tracing::debug!(%instance, partner = %p, database = %db, "reading the position on the mirroring partner");
                    self.positions_on(p, one).await?
                }
                None => self.positions_on(instance, one).await?,
            };
            out.extend(r);
        }
        Ok(out)
    }
}

/// A parsed reply, or the fatal error for a reply of the wrong shape.
fn parsed<V>(
    op: Operation,
    instance: &InstanceAddr,
    r: Result<V, RowError>,
) -> Result<V, BackendError> {
    r.map_err(|e| errors::row_error(op, instance, &e))
}

#[async_trait]
impl<T: Transport> Backend for SqlBackend<T> {
    fn name(&self) -> &str {
        T::NAME
    }

    fn statements(&self, op: &Op) -> Vec<String> {
        build::statements(&self.cfg, op)
    }

    fn warnings(&self) -> Vec<String> {
        self.transport.warnings()
    }

    async fn probe(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        self.probe_as(Operation::Probe, instance, databases).await
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
            Err(e) if errors::is_mirror_answer(&e) && self.cfg.mirror_fallback => {
                self.positions_where_served(instance, databases).await
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
        if databases.is_empty() {
            return Ok(());
        }
        let op = Operation::SetReadOnly;
        let sql = build::set_read_only(databases, read_only, self.cfg.fence_lock_timeout_ms);
        match self.ops(op, instance, &sql).await {
            Ok(_) => Ok(()),
            // 5011 means "no permission, or the database does not exist" (see
            // errors::hint): a probe tells which, so a missing database is invalid state on
            // every backend (the fake reports 911) and only a real refusal is permission.
            Err(e) if e.code == Some(5011) => {
                let probe = self.probe_as(op, instance, databases).await?;
                match databases.iter().find(|d| probe.database(d).is_none()) {
                    Some(missing) => Err(BackendError::new(
                        ErrorKind::InvalidState,
                        op,
                        instance,
                        format!(
                            "database {missing} does not exist on {instance}: {}",
                            e.message
                        ),
                    )
                    .with_code(5011)),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn recover(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<(), BackendError> {
        let op = Operation::Recover;
        let probe = self.probe_as(op, instance, databases).await?;
        let todo = plan::recover_targets(&probe, databases)?;
        if !todo.is_empty() {
            self.ops(op, instance, &build::recover(&todo)).await?;
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
        let probe = self.probe_as(op, instance, databases).await?;
        let p = plan::mirror_failover_plan(&probe, databases, kind)?;
        if !p.to_run.is_empty() {
            self.ops(op, instance, &build::mirror_failover(&p.to_run, kind))
                .await?;
        }
        Ok(p.new_principal)
    }

    async fn acquire_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<LockAttempt, BackendError> {
        let op = Operation::AcquireLock;
        // Already ours? A second sp_getapplock would stack a second reference. A session
        // that is gone held nothing any more: take the lock anew on a fresh one.
        if self.lock_mode(op, instance, resource).await? == Some(true) {
            return Ok(LockAttempt::Granted);
        }
        let Some(sets) = self
            .lock_session(op, instance, &build::acquire_lock(resource))
            .await?
        else {
            return Err(BackendError::new(
                ErrorKind::Unreachable,
                op,
                instance,
                "the lock session dropped while taking the lock; the lock is not held",
            ));
        };
        match parsed(op, instance, rows::parse_return_code(&sets))? {
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
        let sets = match self
            .lock_session(op, instance, &build::release_lock(resource))
            .await
        {
            Ok(Some(sets)) => sets,
            // The session dropped: the server released the lock with it.
            Ok(None) => return Ok(()),
            // 1223: this session does not hold it (never taken, or released already).
            Err(e) if e.code == Some(1223) => return Ok(()),
            Err(e) => return Err(e),
        };
        match parsed(op, instance, rows::parse_return_code(&sets))? {
            0 => Ok(()),
            code => Err(errors::lock_return_code(op, instance, code)),
        }
    }

    async fn lock_held(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<bool, BackendError> {
        Ok(self
            .lock_mode(Operation::CheckLock, instance, resource)
            .await?
            == Some(true))
    }

    async fn read_location(
        &self,
        instance: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        let op = Operation::ReadLocation;
        let sql = build::read_location(&self.cfg);
        match self.ops(op, instance, &sql).await {
            Ok(sets) => parsed(op, instance, rows::parse_location(&sets)),
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
        let sql = build::write_location(&self.cfg, record, expected_epoch);
        let sets = self.ops(op, instance, &sql).await?;
        let stored = parsed(op, instance, rows::parse_location(&sets))?;
        if stored.as_ref() == Some(record) {
            return Ok(());
        }
        Err(errors::location_conflict(
            instance,
            expected_epoch,
            stored.as_ref(),
        ))
    }
}

#[cfg(test)]
mod tests;
