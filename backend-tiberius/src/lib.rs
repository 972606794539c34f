//! # backend-tiberius
//!
//! [`Backend`] over SQL Server's TDS protocol with [tiberius] on tokio. All SQL text comes
//! from [`failover_tsql`]; tiberius types never appear in this crate's public API.
//!
//! ## Sessions
//! Each instance gets up to two cached sessions, both logged in to `master`:
//! - the *operations* session (probe, positions, fence, recover, mirror, location). A call
//!   whose connection breaks fails `Unreachable` (its effect is unknown, as for any
//!   retryable error) and the connection is discarded; the next call connects afresh;
//! - the *lock* session, which owns the `sp_getapplock` lock. It is never replaced silently:
//!   once it drops (or a call on it times out, which drops it), [`Backend::lock_held`]
//!   reports `false` and the caller must take the lock again.
//!
//! Every call, connecting included, is bounded by [`TiberiusConfig::call_timeout`]; on expiry
//! the call fails with [`ErrorKind::Timeout`] and its connection is discarded.
//!
//! ## Mirroring
//! The core addresses every instance explicitly: [`Backend`] calls go to exactly the
//! instance named, so a failed principal is reported as `Unreachable` (or 954/955 as
//! `Unreachable`) and the core decides to address the mirror. Two helpers follow the
//! partner for the caller:
//! - [`Backend::positions`]: when a database answers 954/955 on the instance (it is the
//!   mirror there), its position is read on the partner named in
//!   `sys.database_mirroring.mirroring_partner_instance`, since both partners share one log
//!   (turn off with [`TiberiusConfig::mirror_fallback`]);
//! - [`TiberiusBackend::locate_principal`]: which instance of a store currently serves the
//!   databases, trying the principal, then the partner it names, then the store's mirror.
//!
//! Partner names read from the server go through the same endpoint overrides as any
//! instance address.
//!
//! ## Errors
//! SQL Server errors are classified by number with [`failover_core::sqlerror::classify`]
//! (refined by [`failover_tsql::errors`]):
//!
//! | number | meaning | kind |
//! |---|---|---|
//! | 5061, 1205, 1222, 1404 | could not lock the database, deadlock, lock time-out, mirror busy | transient |
//! | 954, 955, 1418 | database is a mirror / lacks quorum / partner unreachable | unreachable |
//! | 18456, 229, 262, 916, 4060 … | login failed / permission denied | permission |
//! | 3906, 5069, 5070, 1422, 1455, 911, 3101, 1416 … | wrong database state | invalid state |
//! | 2627, 2601 (write_location only) | a concurrent first location write | invalid state |
//! | 208 (read_location only) | location table absent: no record yet (`Ok(None)`) | — |
//! | anything else (102, 208, 2812 …) | | fatal |
//!
//! Client-side failures: I/O errors, refused connections and broken streams are
//! `Unreachable`; a call exceeding its timeout is `Timeout`; TLS failures and a server
//! redirect are `Fatal`. Pre-checks refuse with `InvalidState` before sending anything (see
//! [`failover_tsql::plan`]).

#![warn(missing_docs)]

mod config;
mod conn;

pub use config::{Encryption, Secret, SecretError, TiberiusConfig, Trust};

use async_trait::async_trait;
use conn::{Failure, Pool, Role, connect, execute};
use failover_core::{
    Backend, BackendError, DatabaseName, DatabasePosition, ErrorKind, InstanceAddr, InstanceProbe,
    LocationRecord, LockAttempt, MirrorFailoverKind, MirrorRole, Operation, Store,
};
use failover_tsql::errors::{location_missing, lock_return_code, row_error};
use failover_tsql::rows::{self, ResultSet};
use failover_tsql::{build, plan};
use std::sync::Arc;

/// A [`Backend`] speaking TDS through tiberius.
pub struct TiberiusBackend {
    cfg: Arc<TiberiusConfig>,
    pool: Pool,
}

/// Result of a call on the lock session.
enum Existing {
    Ran(Vec<ResultSet>),
    /// The session that existed dropped (now or during the call): its locks are gone.
    Gone,
}

impl TiberiusBackend {
    /// A backend with `cfg`. Nothing connects until the first call.
    pub fn new(cfg: TiberiusConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            pool: Pool::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TiberiusConfig {
        &self.cfg
    }

    fn timeout_error(&self, op: Operation, inst: &InstanceAddr) -> BackendError {
        BackendError::new(
            ErrorKind::Timeout,
            op,
            inst,
            format!(
                "no answer within {:?}; the connection was dropped",
                self.cfg.call_timeout
            ),
        )
    }

    /// Runs `sql` on the `role` session of `inst`, connecting if needed.
    async fn run(
        &self,
        inst: &InstanceAddr,
        op: Operation,
        role: Role,
        sql: &str,
    ) -> Result<Vec<ResultSet>, BackendError> {
        tracing::debug!(instance = %inst, operation = %op, sql, "sending batch");
        let slot = self.pool.slot(inst, role);
        let cfg = &self.cfg;
        let fut = async {
            let mut guard = slot.lock().await;
            let mut client = match guard.take() {
                Some(c) => c,
                None => connect(cfg, op, inst).await.map_err(Failure::into_error)?,
            };
            match execute(&mut client, op, inst, sql).await {
                Ok(sets) => {
                    *guard = Some(client);
                    Ok(sets)
                }
                Err(Failure::Server(e)) => {
                    *guard = Some(client);
                    Err(e)
                }
                Err(Failure::Broken(e)) => Err(e),
            }
        };
        match tokio::time::timeout(cfg.call_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error(op, inst)),
        }
    }

    /// Runs `sql` on the `role` session of `inst`. With no session yet, connects one (failing
    /// like [`Self::run`] when that is impossible); when the existing session turns out to
    /// have dropped, or the call times out (which drops it), reports [`Existing::Gone`]
    /// instead of an error: whatever it held is released.
    async fn run_existing(
        &self,
        inst: &InstanceAddr,
        op: Operation,
        role: Role,
        sql: &str,
    ) -> Result<Existing, BackendError> {
        let slot = self.pool.slot(inst, role);
        let existed = std::sync::atomic::AtomicBool::new(true);
        let fut = async {
            let mut guard = slot.lock().await;
            let mut client = match guard.take() {
                Some(c) => c,
                None => {
                    existed.store(false, std::sync::atomic::Ordering::Relaxed);
                    connect(&self.cfg, op, inst)
                        .await
                        .map_err(Failure::into_error)?
                }
            };
            match execute(&mut client, op, inst, sql).await {
                Ok(sets) => {
                    *guard = Some(client);
                    Ok(Existing::Ran(sets))
                }
                Err(Failure::Server(e)) => {
                    *guard = Some(client);
                    Err(e)
                }
                Err(Failure::Broken(e)) if existed.load(std::sync::atomic::Ordering::Relaxed) => {
                    tracing::warn!(instance = %inst, error = %e, "lock session dropped");
                    Ok(Existing::Gone)
                }
                Err(Failure::Broken(e)) => Err(e),
            }
        };
        match tokio::time::timeout(self.cfg.call_timeout, fut).await {
            Ok(r) => r,
            Err(_) if existed.load(std::sync::atomic::Ordering::Relaxed) => {
                tracing::warn!(instance = %inst, "lock session timed out and was dropped");
                Ok(Existing::Gone)
            }
            Err(_) => Err(self.timeout_error(op, inst)),
        }
    }

    async fn probe_as(
        &self,
        op: Operation,
        inst: &InstanceAddr,
        dbs: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        let sets = self.run(inst, op, Role::Ops, &build::probe(dbs)).await?;
        rows::parse_probe(inst, dbs, &sets).map_err(|e| row_error(op, inst, &e))
    }

    /// Drops every cached session (the lock sessions too, which releases their locks).
    pub async fn disconnect_all(&self) {
        for slot in self.pool.all() {
            slot.lock().await.take();
        }
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

    async fn positions_on(
        &self,
        inst: &InstanceAddr,
        dbs: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        let op = Operation::Positions;
        let sets = self
            .run(inst, op, Role::Ops, &build::positions(&self.cfg.sql, dbs))
            .await?;
        rows::parse_positions(dbs, &sets).map_err(|e| row_error(op, inst, &e))
    }
}

fn is_mirror_answer(e: &BackendError) -> bool {
    matches!(e.code, Some(954 | 955))
}

#[async_trait]
impl Backend for TiberiusBackend {
    fn name(&self) -> &str {
        "tiberius"
    }

    fn statements(&self, op: &failover_core::Op) -> Vec<String> {
        build::statements(&self.cfg.sql, op)
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
            Err(e) if is_mirror_answer(&e) && self.cfg.mirror_fallback => {
                // Some database is a mirror here: read each one where it is served.
                let probe = self
                    .probe_as(Operation::Positions, instance, databases)
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
                            tracing::debug!(instance = %instance, partner = %p, database = %db, "reading position on the mirroring partner");
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
        // One round trip: `ALTER DATABASE … SET READ_ONLY|READ_WRITE` is idempotent on the
        // server, and a missing, mirror or non-ONLINE database fails with 911 / 1468 / 5052 /
        // 5069 (invalid state). No probe first: this call sits inside the write-unavailability
        // window.
        let op = Operation::SetReadOnly;
        if databases.is_empty() {
            return Ok(());
        }
        self.run(
            instance,
            op,
            Role::Ops,
            &build::set_read_only(databases, read_only),
        )
        .await?;
        Ok(())
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
            self.run(instance, op, Role::Ops, &build::recover(&todo))
                .await?;
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
            self.run(
                instance,
                op,
                Role::Ops,
                &build::mirror_failover(&p.to_run, kind),
            )
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
        plan::check_lock_resource(op, instance, resource)?;
        // Already ours? (A second sp_getapplock would stack a second reference.)
        let check = build::lock_mode(resource);
        let sets = match self.run(instance, op, Role::Lock, &check).await {
            // A lock session that dropped since the last call was discarded: any lock it
            // held is gone, and taking the lock anew on a fresh session is what was asked.
            Err(e) if e.kind == ErrorKind::Unreachable && e.code.is_none() => {
                self.run(instance, op, Role::Lock, &check).await?
            }
            r => r?,
        };
        if rows::parse_lock_held(&sets).map_err(|e| row_error(op, instance, &e))? {
            return Ok(LockAttempt::Granted);
        }
        let sets = self
            .run(instance, op, Role::Lock, &build::acquire_lock(resource))
            .await?;
        match rows::parse_return_code(&sets).map_err(|e| row_error(op, instance, &e))? {
            0 | 1 => Ok(LockAttempt::Granted),
            -1 => Ok(LockAttempt::Held),
            code => Err(lock_return_code(op, instance, code)),
        }
    }

    async fn release_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<(), BackendError> {
        let op = Operation::ReleaseLock;
        plan::check_lock_resource(op, instance, resource)?;
        let Existing::Ran(sets) = self
            .run_existing(instance, op, Role::Lock, &build::lock_mode(resource))
            .await?
        else {
            return Ok(()); // the session dropped: the server released the lock with it
        };
        if !rows::parse_lock_held(&sets).map_err(|e| row_error(op, instance, &e))? {
            return Ok(());
        }
        let Existing::Ran(sets) = self
            .run_existing(instance, op, Role::Lock, &build::release_lock(resource))
            .await?
        else {
            return Ok(());
        };
        match rows::parse_return_code(&sets).map_err(|e| row_error(op, instance, &e))? {
            0 => Ok(()),
            code => Err(lock_return_code(op, instance, code)),
        }
    }

    async fn lock_held(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<bool, BackendError> {
        let op = Operation::CheckLock;
        plan::check_lock_resource(op, instance, resource)?;
        match self
            .run_existing(instance, op, Role::Lock, &build::lock_mode(resource))
            .await?
        {
            Existing::Gone => Ok(false),
            Existing::Ran(sets) => {
                rows::parse_lock_held(&sets).map_err(|e| row_error(op, instance, &e))
            }
        }
    }

    async fn read_location(
        &self,
        instance: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        let op = Operation::ReadLocation;
        match self
            .run(
                instance,
                op,
                Role::Ops,
                &build::read_location(&self.cfg.sql),
            )
            .await
        {
            Ok(sets) => rows::parse_location(&sets).map_err(|e| row_error(op, instance, &e)),
            Err(e) if e.code.is_some_and(location_missing) => Ok(None),
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
            .run(
                instance,
                op,
                Role::Ops,
                &build::write_location(&self.cfg.sql, record, expected_epoch),
            )
            .await?;
        let stored = rows::parse_location(&sets).map_err(|e| row_error(op, instance, &e))?;
        match stored {
            Some(s) if &s == record => Ok(()),
            Some(s) => Err(BackendError::new(
                ErrorKind::InvalidState,
                op,
                instance,
                format!(
                    "location record is at epoch {} (active {}, run {}), expected epoch {}: someone else failed over",
                    s.epoch,
                    s.active,
                    s.run_id,
                    expected_epoch.map_or_else(|| "none".to_string(), |e| e.to_string())
                ),
            )),
            None => Err(BackendError::new(
                ErrorKind::InvalidState,
                op,
                instance,
                format!("no location record stored, expected epoch {expected_epoch:?}"),
            )),
        }
    }
}
