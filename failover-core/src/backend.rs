//! The `Backend` contract: the few operations a failover needs from SQL Server.
//!
//! Backends translate each operation into SQL (or into in-memory changes, for the fake) and
//! classify errors into an [`ErrorKind`](crate::ErrorKind). They decide nothing: ordering,
//! retries, timeouts and safety checks are the core's job.

use crate::error::BackendError;
use crate::model::{DatabaseName, InstanceAddr, Store};
use crate::op::{Op, OpResult};
use async_trait::async_trait;

pub use crate::server::*;

/// The operations a CMS failover needs from SQL Server.
///
/// Object-safe so a program can choose a backend at run time (`Box<dyn Backend>`).
/// Every method is safe to call again after a timeout: the core re-probes when the effect of
/// a failed call is unknown. Errors carry an [`ErrorKind`](crate::ErrorKind):
/// `Transient`/`Timeout`/`Unreachable` may be retried, the others may not.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Backend: Send + Sync {
    /// A short name for logs and reports (`fake`, `tiberius`, `odbc`).
    fn name(&self) -> &str;

    /// The SQL text this backend sends for `op`, for what-if plans and reports (never
    /// contains a secret). Backends that speak no SQL return nothing (the default).
    fn statements(&self, _op: &Op) -> Vec<String> {
        Vec::new()
    }

    /// Warnings about how this backend is configured that belong in every run's report and
    /// log (e.g. TLS without certificate validation). Never contains a secret. None by
    /// default.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Reads the instance's version and the state, read-only flag and mirroring of each
    /// requested database (`sys.databases` joined to `sys.database_mirroring`).
    /// Read-only; never changes anything. Databases that do not exist are left out.
    /// Errors: `Unreachable` when the instance cannot be reached, `Permission` on login failure.
    async fn probe(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError>;

    /// Reads each database's change position on `instance` (the source's current position or
    /// the copy's applied position). Read-only. A database whose position the instance
    /// cannot tell has `position: None`.
    async fn positions(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError>;

    /// Sets every database in `databases` read-only (`true`, the fence) or read-write
    /// (`false`) with `ROLLBACK IMMEDIATE`, as one round trip where the backend can.
    /// Idempotent: a database already in the requested mode is left as is.
    /// On error the mode of each database is unknown: re-probe.
    /// Errors: `Transient` (5061 could not lock), `InvalidState` (database not ONLINE, a
    /// mirror, or missing), `Unreachable`.
    async fn set_read_only(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
        read_only: bool,
    ) -> Result<(), BackendError>;

    /// Brings each database that is RESTORING (and not a mirror in a session) online with
    /// `RESTORE DATABASE … WITH RECOVERY`. Idempotent: an ONLINE database is left as is.
    /// Errors: `InvalidState` when a database is a mirror or missing.
    async fn recover(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<(), BackendError>;

    /// Makes the right mirroring partner principal for each database and returns the
    /// instance clients must now use. `Planned` is issued on the current principal
    /// (`instance`) and needs SYNCHRONIZED; `Forced` is issued on the mirror (`instance`)
    /// while the principal is down. Idempotent: when `instance` already is principal for a
    /// `Forced` call, nothing changes and `instance` is returned. SQL Server may return
    /// before the roles switch (both kinds): the core waits for the new principal to report
    /// PRINCIPAL and ONLINE; backends do not wait.
    /// Errors: `InvalidState` (1422 not synchronized, 1455 cannot force, not mirrored),
    /// `Transient` (1404 busy), `Unreachable` (1418).
    async fn mirror_failover(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
        kind: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError>;

    /// Takes the exclusive cross-process failover lock `resource` on `instance`, owned by this
    /// backend's session (`sp_getapplock` in `master`, `@LockTimeout = 0`). Never waits.
    /// Idempotent for the holder. The lock is lost if the session's connection drops.
    async fn acquire_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<LockAttempt, BackendError>;

    /// Releases the lock if this session holds it. Idempotent: releasing a lock not held
    /// succeeds.
    async fn release_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<(), BackendError>;

    /// Whether this session still holds the lock (false after its connection dropped).
    async fn lock_held(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<bool, BackendError>;

    /// Reads the active-location record kept on `instance`, `None` if never written.
    async fn read_location(
        &self,
        instance: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError>;

    /// Writes the active-location record on `instance` if the stored epoch equals
    /// `expected_epoch` (`None`: no record yet), atomically (compare-and-swap).
    /// Idempotent: writing the same record again succeeds.
    /// Errors: `InvalidState` when the stored epoch differs (someone else failed over).
    async fn write_location(
        &self,
        instance: &InstanceAddr,
        record: &LocationRecord,
        expected_epoch: Option<u64>,
    ) -> Result<(), BackendError>;
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn statements(&self, op: &Op) -> Vec<String> {
        (**self).statements(op)
    }
    fn warnings(&self) -> Vec<String> {
        (**self).warnings()
    }
    async fn probe(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        (**self).probe(i, d).await
    }
    async fn positions(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        (**self).positions(i, d).await
    }
    async fn set_read_only(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        ro: bool,
    ) -> Result<(), BackendError> {
        (**self).set_read_only(i, d, ro).await
    }
    async fn recover(&self, i: &InstanceAddr, d: &[DatabaseName]) -> Result<(), BackendError> {
        (**self).recover(i, d).await
    }
    async fn mirror_failover(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        k: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError> {
        (**self).mirror_failover(i, d, k).await
    }
    async fn acquire_lock(&self, i: &InstanceAddr, r: &str) -> Result<LockAttempt, BackendError> {
        (**self).acquire_lock(i, r).await
    }
    async fn release_lock(&self, i: &InstanceAddr, r: &str) -> Result<(), BackendError> {
        (**self).release_lock(i, r).await
    }
    async fn lock_held(&self, i: &InstanceAddr, r: &str) -> Result<bool, BackendError> {
        (**self).lock_held(i, r).await
    }
    async fn read_location(
        &self,
        i: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        (**self).read_location(i).await
    }
    async fn write_location(
        &self,
        i: &InstanceAddr,
        r: &LocationRecord,
        e: Option<u64>,
    ) -> Result<(), BackendError> {
        (**self).write_location(i, r, e).await
    }
}

/// The partner of `store` that serves every database in `dbs` as principal (or unmirrored),
/// found by probing through `backend`: the principal, then the mirroring partner the
/// principal names, then (when the principal is unreachable) the store's mirror. Read-only.
/// Shared by the SQL backends' `locate_principal`.
pub async fn locate_principal(
    backend: &(impl Backend + ?Sized),
    store: &Store,
    dbs: &[DatabaseName],
) -> Result<InstanceAddr, BackendError> {
    use crate::error::{ErrorKind, Operation};
    let serves = |p: &InstanceProbe| {
        dbs.iter().all(|d| {
            p.database(d).is_some_and(|d| {
                d.mirroring
                    .as_ref()
                    .is_none_or(|m| m.role == MirrorRole::Principal)
            })
        })
    };
    let first_err = match backend.probe(&store.principal, dbs).await {
        Ok(p) if serves(&p) => return Ok(store.principal.clone()),
        Ok(p) => {
            let partner = p
                .databases
                .iter()
                .find_map(|d| d.mirroring.as_ref().and_then(|m| m.partner.clone()));
            if let Some(partner) = partner
                && let Ok(pp) = backend.probe(&partner, dbs).await
                && serves(&pp)
            {
                return Ok(partner);
            }
            BackendError::new(
                ErrorKind::InvalidState,
                Operation::Probe,
                &store.principal,
                "no partner serves every database as principal",
            )
        }
        Err(e) => e,
    };
    if first_err.kind == ErrorKind::Unreachable
        && let Some(m) = &store.mirror
        && let Ok(p) = backend.probe(m, dbs).await
        && serves(&p)
    {
        return Ok(m.clone());
    }
    Err(first_err)
}

impl Op {
    /// Runs the call on `backend`, or on `directory` for a directory call.
    pub async fn run_on(
        &self,
        backend: &dyn Backend,
        directory: &dyn crate::Directory,
    ) -> Result<OpResult, BackendError> {
        match self {
            Op::ReadDirectory { dc } => Ok(OpResult::Directory(directory.read(dc).await?)),
            Op::SwapDirectory {
                dc,
                expected,
                new,
                stamp,
            } => {
                directory
                    .compare_and_swap_stamped(dc, expected, new, stamp)
                    .await?;
                Ok(OpResult::Done)
            }
            _ => self.run(backend).await,
        }
    }

    /// Runs the call on `backend` (a directory call fails: use [`Op::run_on`]).
    pub async fn run(&self, backend: &dyn Backend) -> Result<OpResult, BackendError> {
        Ok(match self {
            Op::ReadDirectory { .. } | Op::SwapDirectory { .. } => {
                return Err(BackendError::new(
                    crate::ErrorKind::Fatal,
                    self.operation(),
                    self.target(),
                    "a directory call needs a directory (Op::run_on)",
                ));
            }
            Op::Probe {
                instance,
                databases,
            } => OpResult::Probe(backend.probe(instance, databases).await?),
            Op::Positions {
                instance,
                databases,
            } => OpResult::Positions(backend.positions(instance, databases).await?),
            Op::SetReadOnly {
                instance,
                databases,
                read_only,
            } => {
                backend
                    .set_read_only(instance, databases, *read_only)
                    .await?;
                OpResult::Done
            }
            Op::Recover {
                instance,
                databases,
            } => {
                backend.recover(instance, databases).await?;
                OpResult::Done
            }
            Op::MirrorFailover {
                instance,
                databases,
                kind,
                ..
            } => OpResult::Partner(backend.mirror_failover(instance, databases, *kind).await?),
            Op::AcquireLock { instance, resource } => {
                OpResult::Lock(backend.acquire_lock(instance, resource).await?)
            }
            Op::ReleaseLock { instance, resource } => {
                backend.release_lock(instance, resource).await?;
                OpResult::Done
            }
            Op::CheckLock { instance, resource } => {
                OpResult::LockHeld(backend.lock_held(instance, resource).await?)
            }
            Op::ReadLocation { instance } => {
                OpResult::Location(backend.read_location(instance).await?)
            }
            Op::WriteLocation {
                instance,
                record,
                expected_epoch,
            } => {
                backend
                    .write_location(instance, record, *expected_epoch)
                    .await?;
                OpResult::Done
            }
            // The driver runs it against its Backup Service gate; a backend has none.
            Op::BackupServiceStatus { instance } => {
                return Err(BackendError::new(
                    crate::error::ErrorKind::Fatal,
                    crate::error::Operation::BackupServiceStatus,
                    instance,
                    "the Backup Service status is read through the driver's gate (Driver::with_backup_service), not a SQL backend",
                ));
            }
        })
    }
}
