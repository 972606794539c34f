//! Read-only views of the estate: rows as the system views show them, snapshots and the
//! mutation history, with helpers for invariant checks.

use failover_core::{
    DatabaseName, DatabaseProbe, DbState, InstanceAddr, LocationRecord, MirrorInfo, MirrorRole,
    MirrorState, WitnessInfo,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// A client session (one connection) on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}", self.0)
    }
}

/// One `sys.database_mirroring` row (non-NULL part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorRow {
    /// `mirroring_role_desc`.
    pub role: MirrorRole,
    /// `mirroring_state_desc` as seen from this instance (DISCONNECTED when the partner is
    /// unreachable).
    pub state: MirrorState,
    /// The partner.
    pub partner: InstanceAddr,
    /// What the partner calls itself (its `@@SERVERNAME`).
    pub partner_name: String,
    /// `mirroring_safety_level_desc = 'FULL'`.
    pub safety_full: bool,
    /// `mirroring_failover_lsn`: the mirror copy's position.
    pub failover_lsn: u64,
    /// The witness as this instance sees it (`mirroring_witness_name`,
    /// `mirroring_witness_state_desc`); `None`: the session has no witness.
    pub witness: Option<WitnessInfo>,
}

impl MirrorRow {
    /// `mirroring_partner_instance`: the partner's server name, "the instance name and
    /// computer name" (no domain, no port):
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>.
    pub fn partner_instance(&self) -> String {
        self.partner_name.clone()
    }
}

/// One database on one instance: `sys.databases` joined to `sys.database_mirroring`, plus
/// the change position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbRow {
    /// `name`.
    pub name: DatabaseName,
    /// `state_desc`.
    pub state: DbState,
    /// `is_read_only`.
    pub read_only: bool,
    /// The change position of this copy.
    pub position: u64,
    /// Mirroring, `None` when not in a session.
    pub mirroring: Option<MirrorRow>,
    /// `is_in_standby`: a log-shipping STANDBY copy.
    pub in_standby: bool,
}

impl DbRow {
    /// ONLINE, not read-only and not a mirror.
    pub fn is_writable(&self) -> bool {
        self.state == DbState::Online
            && !self.read_only
            && self
                .mirroring
                .as_ref()
                .is_none_or(|m| m.role == MirrorRole::Principal)
    }

    /// The row as a [`DatabaseProbe`].
    pub fn to_probe(&self) -> DatabaseProbe {
        DatabaseProbe {
            name: self.name.clone(),
            state: self.state.clone(),
            read_only: self.read_only,
            in_standby: self.in_standby,
            mirroring: self.mirroring.as_ref().map(|m| MirrorInfo {
                role: m.role,
                state: m.state,
                partner: Some(m.partner.clone()),
                partner_name: Some(m.partner_name.clone()),
                safety_full: m.safety_full,
                failover_lsn: Some(m.failover_lsn.into()),
                witness: m.witness.clone(),
            }),
        }
    }
}

/// One instance in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceSnapshot {
    /// `@@VERSION`.
    pub version: String,
    /// Whether it accepts connections.
    pub reachable: bool,
    /// Every database, by name.
    pub databases: Vec<DbRow>,
    /// The active-location record kept on it.
    pub location: Option<LocationRecord>,
    /// Open sessions.
    pub sessions: usize,
}

/// An application lock held on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockSnapshot {
    /// Where.
    pub instance: InstanceAddr,
    /// The resource name.
    pub resource: String,
    /// The holding session.
    pub session: SessionId,
}

/// The whole estate at one tick. Taking it consumes no fault and does not tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The logical clock.
    pub tick: u64,
    /// Every instance.
    pub instances: BTreeMap<InstanceAddr, InstanceSnapshot>,
    /// Every application lock held.
    pub locks: Vec<LockSnapshot>,
}

impl Snapshot {
    /// The instances where `db` is writable (ONLINE, not read-only, not a mirror), reachable
    /// or not: a down instance that comes back with a writable copy is still a second copy.
    pub fn writable_copies(&self, db: &DatabaseName) -> Vec<InstanceAddr> {
        self.instances
            .iter()
            .filter(|(_, i)| i.databases.iter().any(|d| &d.name == db && d.is_writable()))
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Like [`Self::writable_copies`], counting only reachable instances.
    pub fn writable_reachable_copies(&self, db: &DatabaseName) -> Vec<InstanceAddr> {
        self.instances
            .iter()
            .filter(|(_, i)| {
                i.reachable && i.databases.iter().any(|d| &d.name == db && d.is_writable())
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// The row of `db` on `addr`.
    pub fn database(&self, addr: &InstanceAddr, db: &DatabaseName) -> Option<&DbRow> {
        self.instances
            .get(addr)?
            .databases
            .iter()
            .find(|d| &d.name == db)
    }

    /// The position of `db` on `addr`.
    pub fn position(&self, addr: &InstanceAddr, db: &DatabaseName) -> Option<u64> {
        self.database(addr, db).map(|d| d.position)
    }

    /// The session holding `resource` on `addr`.
    pub fn lock_holder(&self, addr: &InstanceAddr, resource: &str) -> Option<SessionId> {
        self.locks
            .iter()
            .find(|l| &l.instance == addr && l.resource == resource)
            .map(|l| l.session)
    }

    /// The location record on `addr`.
    pub fn location(&self, addr: &InstanceAddr) -> Option<&LocationRecord> {
        self.instances.get(addr)?.location.as_ref()
    }

    /// The location record with the highest epoch on any instance.
    pub fn highest_location(&self) -> Option<&LocationRecord> {
        self.instances
            .values()
            .filter_map(|i| i.location.as_ref())
            .max_by_key(|l| l.epoch)
    }
}

/// What one mutation changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Change {
    /// An instance was added.
    InstanceAdded,
    /// A database was added.
    DatabaseAdded {
        /// Its state.
        state: DbState,
        /// Its read-only flag.
        read_only: bool,
        /// Its position.
        position: u64,
    },
    /// A mirroring session was set up (recorded on the principal).
    MirroringAdded {
        /// The mirror.
        mirror: InstanceAddr,
    },
    /// A mirroring session was removed (`SET PARTNER OFF`; recorded on the principal).
    MirroringRemoved {
        /// The former mirror (its copy stays RESTORING).
        mirror: InstanceAddr,
    },
    /// Reachability changed.
    Reachable(bool),
    /// A position was set directly by the test (not by a tick).
    PositionSet(u64),
    /// The read-only flag changed (by `ALTER DATABASE`).
    ReadOnly {
        /// The new flag.
        read_only: bool,
        /// The copy's position at that moment.
        position: u64,
    },
    /// `state_desc` changed (recovery, failover, setup).
    State {
        /// Before.
        from: DbState,
        /// After.
        to: DbState,
        /// The copy's position at that moment.
        position: u64,
    },
    /// The mirroring role changed.
    Role {
        /// The new role.
        role: MirrorRole,
        /// Whether by forced service.
        forced: bool,
    },
    /// The stored mirroring state changed.
    MirroringState(MirrorState),
    /// Automatic failover by the witness (recorded on the new principal, whose copy came
    /// ONLINE as PRINCIPAL; the lost former principal's copy is now MIRROR, RESTORING). Made
    /// by the estate, not by a client.
    AutomaticFailover {
        /// The principal that was lost.
        former_principal: InstanceAddr,
        /// The new principal copy's position.
        position: u64,
    },
    /// An application lock was granted to a session.
    LockAcquired {
        /// The resource.
        resource: String,
        /// The session.
        session: SessionId,
    },
    /// An application lock was released (explicitly or by the session ending).
    LockReleased {
        /// The resource.
        resource: String,
        /// The session.
        session: SessionId,
    },
    /// The location record was written.
    LocationWritten(LocationRecord),
    /// A replication link was stalled or resumed.
    LinkStalled(bool),
}

impl Change {
    /// Whether the change outlives the session that made it: everything but application
    /// locks, which SQL Server drops with their session. A run refused after taking its lock
    /// has changed nothing durable.
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            Change::LockAcquired { .. } | Change::LockReleased { .. }
        )
    }
}

/// One entry of [`crate::Estate::history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mutation {
    /// The tick at which it happened.
    pub tick: u64,
    /// The instance it happened on.
    pub instance: InstanceAddr,
    /// The database, for database-level changes.
    pub database: Option<DatabaseName>,
    /// What changed.
    pub change: Change,
    /// For database-level changes: the instances where the database is writable right after
    /// the change (for "never two writable copies" checks).
    pub writable_after: Vec<InstanceAddr>,
}
