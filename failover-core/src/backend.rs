//! The `Backend` contract: the few operations a failover needs from SQL Server.
//!
//! Backends translate each operation into SQL (or into in-memory changes, for the fake) and
//! classify errors into an [`ErrorKind`](crate::ErrorKind). They decide nothing: ordering,
//! retries, timeouts and safety checks are the core's job.

use crate::error::BackendError;
use crate::model::{DatabaseName, InstanceAddr, Store};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `sys.databases.state_desc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DbState {
    /// Available for reads (and writes unless read-only).
    Online,
    /// Being restored or acting as a mirror; not usable until recovered.
    Restoring,
    /// Running recovery.
    Recovering,
    /// Recovery could not start.
    RecoveryPending,
    /// Damaged.
    Suspect,
    /// Emergency mode.
    Emergency,
    /// Taken offline.
    Offline,
    /// Any other `state_desc`.
    Other(String),
}

impl DbState {
    /// Maps a `state_desc` string.
    pub fn from_desc(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "ONLINE" => Self::Online,
            "RESTORING" => Self::Restoring,
            "RECOVERING" => Self::Recovering,
            "RECOVERY_PENDING" => Self::RecoveryPending,
            "SUSPECT" => Self::Suspect,
            "EMERGENCY" => Self::Emergency,
            "OFFLINE" => Self::Offline,
            other => Self::Other(other.to_string()),
        }
    }
    /// The `state_desc` string.
    pub fn as_desc(&self) -> &str {
        match self {
            Self::Online => "ONLINE",
            Self::Restoring => "RESTORING",
            Self::Recovering => "RECOVERING",
            Self::RecoveryPending => "RECOVERY_PENDING",
            Self::Suspect => "SUSPECT",
            Self::Emergency => "EMERGENCY",
            Self::Offline => "OFFLINE",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for DbState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_desc())
    }
}

/// `sys.database_mirroring.mirroring_role_desc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MirrorRole {
    /// Serves the database.
    Principal,
    /// Keeps a RESTORING copy.
    Mirror,
}

/// `sys.database_mirroring.mirroring_state_desc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MirrorState {
    /// Partners cannot talk.
    Disconnected,
    /// Mirror catching up.
    Synchronizing,
    /// Failover in progress.
    PendingFailover,
    /// Session suspended (e.g. after a forced failover).
    Suspended,
    /// Principal running exposed.
    Unsynchronized,
    /// Mirror caught up; a planned failover is possible.
    Synchronized,
}

impl MirrorState {
    /// Maps a `mirroring_state_desc` string.
    pub fn from_desc(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "DISCONNECTED" => Self::Disconnected,
            "SYNCHRONIZING" => Self::Synchronizing,
            "PENDING_FAILOVER" => Self::PendingFailover,
            "SUSPENDED" => Self::Suspended,
            "UNSYNCHRONIZED" => Self::Unsynchronized,
            "SYNCHRONIZED" => Self::Synchronized,
            _ => return None,
        })
    }
    /// The `mirroring_state_desc` string.
    pub fn as_desc(self) -> &'static str {
        match self {
            Self::Disconnected => "DISCONNECTED",
            Self::Synchronizing => "SYNCHRONIZING",
            Self::PendingFailover => "PENDING_FAILOVER",
            Self::Suspended => "SUSPENDED",
            Self::Unsynchronized => "UNSYNCHRONIZED",
            Self::Synchronized => "SYNCHRONIZED",
        }
    }
}

/// The mirroring view of one database on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorInfo {
    /// PRINCIPAL or MIRROR.
    pub role: MirrorRole,
    /// Session state.
    pub state: MirrorState,
    /// The partner instance (`mirroring_partner_instance`), when it parses as an address.
    pub partner: Option<InstanceAddr>,
    /// Whether the safety level is FULL (needed for a planned mirror failover).
    pub safety_full: bool,
    /// `mirroring_failover_lsn`, when known.
    pub failover_lsn: Option<u64>,
}

/// The state of one database on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseProbe {
    /// The database.
    pub name: DatabaseName,
    /// `state_desc`.
    pub state: DbState,
    /// `is_read_only`.
    pub read_only: bool,
    /// Mirroring, `None` when the database is not mirrored.
    pub mirroring: Option<MirrorInfo>,
}

impl DatabaseProbe {
    /// Whether clients can write to this copy: ONLINE, not read-only, and not a mirror.
    pub fn is_writable(&self) -> bool {
        self.state == DbState::Online
            && !self.read_only
            && self
                .mirroring
                .as_ref()
                .is_none_or(|m| m.role == MirrorRole::Principal)
    }
}

/// What one instance reports about itself and the requested databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceProbe {
    /// The probed instance.
    pub instance: InstanceAddr,
    /// `@@VERSION` (first line) or the product version.
    pub version: String,
    /// One entry per requested database that exists; a missing database is simply absent.
    pub databases: Vec<DatabaseProbe>,
}

impl InstanceProbe {
    /// The probe of `db`, if the database exists on this instance.
    pub fn database(&self, db: &DatabaseName) -> Option<&DatabaseProbe> {
        self.databases.iter().find(|d| &d.name == db)
    }
}

/// A change position: a monotonically increasing number per database (an LSN, a heartbeat
/// sequence or any other counter the configured position query returns). The copy on the
/// backup has caught up with the source when its position is at least the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The change position of one database on one instance (`None`: the instance cannot tell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabasePosition {
    /// The database.
    pub database: DatabaseName,
    /// Its position, if known.
    pub position: Option<Position>,
}

/// One CMS replica's replication status (`Get-CsManagementStoreReplicationStatus` rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The replica's FQDN.
    pub replica_fqdn: String,
    /// Whether it has the latest configuration.
    pub up_to_date: bool,
    /// When it last received an update, as the server reported it.
    pub last_update: Option<String>,
}

/// Which mirror failover statement to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorFailoverKind {
    /// `ALTER DATABASE … SET PARTNER FAILOVER`, issued on the current principal; needs safety
    /// FULL and SYNCHRONIZED; no data loss.
    Planned,
    /// `ALTER DATABASE … SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS`, issued on the mirror while
    /// the principal is down; unsent log is lost and the session is suspended.
    Forced,
}

/// The outcome of trying to take the failover lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockAttempt {
    /// This backend's session now holds the lock (or already held it).
    Granted,
    /// Another session holds it; nothing was changed.
    Held,
}

/// Where the CMS is active, as recorded on a store, with a fencing epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationRecord {
    /// Increases by one with every failover; the highest epoch seen on any store wins.
    pub epoch: u64,
    /// The store the CMS is active on.
    pub active: Store,
    /// The run that wrote it.
    pub run_id: String,
}

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
    fn statements(&self, _op: &crate::op::Op) -> Vec<String> {
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

    /// CMS replica status rows, where the deployment exposes them. Read-only. The default
    /// returns no rows.
    async fn replicas(&self, _instance: &InstanceAddr) -> Result<Vec<ReplicaStatus>, BackendError> {
        Ok(Vec::new())
    }

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
    /// `Forced` call, nothing changes and `instance` is returned.
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
    fn statements(&self, op: &crate::op::Op) -> Vec<String> {
        (**self).statements(op)
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
    async fn replicas(&self, i: &InstanceAddr) -> Result<Vec<ReplicaStatus>, BackendError> {
        (**self).replicas(i).await
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
