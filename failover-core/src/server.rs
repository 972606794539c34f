//! What SQL Server reports and what the core records on it: database probes, change
//! positions, lock attempts and the location record. Plain data shared by the [`Op`]s, the
//! [`Backend`] contract and the machine.
//!
//! [`Op`]: crate::op::Op
//! [`Backend`]: crate::backend::Backend

use crate::model::{DatabaseName, InstanceAddr, Store};
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
    /// `mirroring_failover_lsn` (`numeric(25,0)`), when known.
    pub failover_lsn: Option<u128>,
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
    /// `sys.databases.is_in_standby`: a log-shipping copy restored `WITH STANDBY` (ONLINE and
    /// read-only between restores); it is promoted with `RESTORE DATABASE … WITH RECOVERY`,
    /// and `SET READ_WRITE` on it fails with 5063:
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-databases-transact-sql>,
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/restore-statements-arguments-transact-sql>
    /// (`STANDBY`).
    #[serde(default)]
    pub in_standby: bool,
}

impl DatabaseProbe {
    /// Whether promoting this copy needs `RESTORE … WITH RECOVERY`: RESTORING or STANDBY,
    /// outside a mirroring session.
    pub fn needs_recovery(&self) -> bool {
        (self.state == DbState::Restoring || self.in_standby) && self.mirroring.is_none()
    }

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
    /// What the probing login may do on this instance (`None`: the backend does not tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights: Option<LoginRights>,
}

/// What the login a backend uses may do on one instance, read by the probe with
/// `SUSER_SNAME()`, `IS_SRVROLEMEMBER` and `HAS_PERMS_BY_NAME`. The core decides from it
/// which steps the login cannot run ([`LoginRights::can_alter`], [`LoginRights::can_restore`],
/// [`LoginRights::sees_mirroring`]).
///
/// - `IS_SRVROLEMEMBER` returns 1, 0, or NULL "role or login isn't valid, or you don't have
///   permission to view the role membership" (read as not a member):
///   <https://learn.microsoft.com/en-us/sql/t-sql/functions/is-srvrolemember-transact-sql>
/// - `HAS_PERMS_BY_NAME` returns 1, 0, or NULL "when the query fails" (`None` here):
///   <https://learn.microsoft.com/en-us/sql/t-sql/functions/has-perms-by-name-transact-sql>
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRights {
    /// `SUSER_SNAME()`: the login as the server names it.
    pub login: String,
    /// `IS_SRVROLEMEMBER('sysadmin') = 1`.
    pub sysadmin: bool,
    /// `IS_SRVROLEMEMBER('dbcreator') = 1`.
    pub dbcreator: bool,
    /// INSERT and UPDATE on the location table (`None`: the table does not exist yet, or the
    /// check failed).
    pub location_write: Option<bool>,
    /// One entry per requested database that exists.
    pub databases: Vec<DatabaseRights>,
}

/// What the login may do on one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseRights {
    /// The database.
    pub name: DatabaseName,
    /// `HAS_PERMS_BY_NAME(name, 'DATABASE', 'ALTER')` (`None`: NULL, e.g. a RESTORING copy
    /// that does not allow access checks).
    pub alter: Option<bool>,
    /// The login owns the database (`SUSER_SNAME(owner_sid) = SUSER_SNAME()`).
    pub owner: bool,
}

impl LoginRights {
    fn db(&self, db: &DatabaseName) -> Option<&DatabaseRights> {
        self.databases.iter().find(|d| &d.name == db)
    }

    /// Whether `ALTER DATABASE [db] …` is allowed ("Requires ALTER permission on the
    /// database": <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql>;
    /// sysadmin, the owner and dbcreator ("can create, alter, drop, and restore any database":
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/security/authentication-access/server-level-roles>)
    /// always may). `None`: cannot be told (HAS_PERMS_BY_NAME returned NULL).
    pub fn can_alter(&self, db: &DatabaseName) -> Option<bool> {
        if self.sysadmin || self.dbcreator {
            return Some(true);
        }
        match self.db(db) {
            Some(d) if d.owner => Some(true),
            Some(d) => d.alter,
            None => None,
        }
    }

    /// Whether `RESTORE DATABASE [db] …` is allowed: "RESTORE permissions default to members
    /// of the sysadmin and dbcreator fixed server roles and the owner (dbo) of the database"
    /// (not to db_owner members):
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/restore-statements-transact-sql#permissions>.
    pub fn can_restore(&self, db: &DatabaseName) -> bool {
        self.sysadmin || self.dbcreator || self.db(db).is_some_and(|d| d.owner)
    }

    /// Whether `sys.database_mirroring` shows this login the mirroring columns of a mirror
    /// copy: "To see non-NULL values on a mirror database, you must be a member of the
    /// sysadmin fixed server role":
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>.
    pub fn sees_mirroring(&self) -> bool {
        self.sysadmin
    }
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
///
/// `u128` because SQL Server LSNs are `numeric(25,0)` (up to 25 decimal digits, beyond
/// `u64`): <https://learn.microsoft.com/en-us/sql/relational-databases/system-tables/backupset-transact-sql>
/// (`first_lsn`, `last_lsn`), <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>
/// (`mirroring_failover_lsn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(pub u128);

impl Position {
    /// How far `self` is behind `ahead` (0 when it is not behind), saturated to `u64`.
    pub fn lag_behind(self, ahead: Position) -> u64 {
        u64::try_from(ahead.0.saturating_sub(self.0)).unwrap_or(u64::MAX)
    }
}

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
