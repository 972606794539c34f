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

/// `sys.database_mirroring.mirroring_witness_state_desc`: "UNKNOWN", "CONNECTED" or
/// "DISCONNECTED", as seen from the instance queried; the column is NULL when no witness
/// exists:
/// <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WitnessState {
    /// The instance does not know.
    Unknown,
    /// The witness is connected to the instance queried.
    Connected,
    /// The witness is not connected to the instance queried.
    Disconnected,
}

impl WitnessState {
    /// Maps a `mirroring_witness_state_desc` string.
    pub fn from_desc(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "UNKNOWN" => Self::Unknown,
            "CONNECTED" => Self::Connected,
            "DISCONNECTED" => Self::Disconnected,
            _ => return None,
        })
    }
    /// The `mirroring_witness_state_desc` string.
    pub fn as_desc(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Connected => "CONNECTED",
            Self::Disconnected => "DISCONNECTED",
        }
    }
}

/// The witness of a mirroring session, as one partner reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessInfo {
    /// `mirroring_witness_name`: the witness's server network address.
    pub name: String,
    /// `mirroring_witness_state_desc` on the instance queried.
    pub state: WitnessState,
}

/// The mirroring view of one database on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorInfo {
    /// PRINCIPAL or MIRROR.
    pub role: MirrorRole,
    /// Session state.
    pub state: MirrorState,
    /// The partner as a topology address: the backend's translation of
    /// [`partner_name`](Self::partner_name) ([`ServerNames::resolve`]); `None` when the server
    /// showed no name or the name maps to no instance the backend knows.
    pub partner: Option<InstanceAddr>,
    /// `mirroring_partner_instance` as the server reports it: the partner's server name,
    /// "the instance name and computer name" (`SQLB01\RTC`; the computer name alone for a
    /// default instance; no domain, no port):
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>.
    /// `None` when the column is NULL (a login that is not sysadmin, on a mirror).
    #[serde(default)]
    pub partner_name: Option<String>,
    /// Whether the safety level is FULL (needed for a planned mirror failover).
    pub safety_full: bool,
    /// `mirroring_failover_lsn` (`numeric(25,0)`), when known.
    pub failover_lsn: Option<u128>,
    /// The session's witness (`mirroring_witness_name` not NULL); `None`: no witness.
    #[serde(default)]
    pub witness: Option<WitnessInfo>,
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

/// How a backend translates the server names SQL Server reports (`@@SERVERNAME`,
/// `sys.database_mirroring.mirroring_partner_instance`: computer name and instance, no
/// domain, no port) into topology addresses.
///
/// [`resolve`](Self::resolve) tries, in order: an explicit alias (the name, compared
/// case-insensitively); then every known instance whose host's first DNS label and instance
/// name equal the name's computer and instance parts (`SQLB01\RTC` matches
/// `sqlb01.contoso.com\RTC` and `sqlb01.contoso.com\RTC,1433`; `SQLB01` matches the default
/// instance `sqlb01.contoso.com`); then an instance whose address, written out, is the name.
/// Exactly one instance must match; none or several is an error naming the alias to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNames {
    /// Server name (as the server reports it) → topology address.
    pub aliases: Vec<(String, InstanceAddr)>,
    /// The instances the names may refer to (the topology's, the driver's endpoints).
    pub instances: Vec<InstanceAddr>,
}

/// A server name that [`ServerNames::resolve`] cannot map to exactly one instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; add `\"{name}\" = \"<address>\"` to the topology's [aliases] table")]
pub struct UnmappedName {
    /// The name as the server reported it.
    pub name: String,
    /// Why it does not map (no instance, or several).
    pub reason: String,
}

impl ServerNames {
    /// Adds instances the names may refer to (duplicates are ignored).
    pub fn with_instances<'a>(
        mut self,
        instances: impl IntoIterator<Item = &'a InstanceAddr>,
    ) -> Self {
        for i in instances {
            if !self.instances.contains(i) {
                self.instances.push(i.clone());
            }
        }
        self
    }

    /// Adds an alias: the server called `name` is `addr`.
    pub fn with_alias(mut self, name: impl Into<String>, addr: InstanceAddr) -> Self {
        self.aliases.push((name.into(), addr));
        self
    }

    /// Whether `name` (`COMPUTER[\INSTANCE]`) is the server name of `addr` by the naming
    /// rule: the host's first DNS label is the computer name (case-insensitive; an IP host
    /// never matches) and the instance names are equal (both absent for a default instance).
    pub fn names(addr: &InstanceAddr, name: &str) -> bool {
        let (computer, instance) = match name.split_once('\\') {
            Some((c, i)) => (c, Some(i)),
            None => (name, None),
        };
        let host = addr.host().as_str();
        if host.parse::<std::net::IpAddr>().is_ok() {
            return false;
        }
        let label = host.split('.').next().unwrap_or_default();
        label.eq_ignore_ascii_case(computer)
            && match (addr.instance(), instance) {
                (None, None) => true,
                (Some(a), Some(b)) => a.as_str().eq_ignore_ascii_case(b),
                _ => false,
            }
    }

    /// The topology address of the server that calls itself `name`.
    pub fn resolve(&self, name: &str) -> Result<InstanceAddr, UnmappedName> {
        let name = name.trim();
        if let Some((_, a)) = self
            .aliases
            .iter()
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        {
            return Ok(a.clone());
        }
        let by_rule: Vec<&InstanceAddr> = self
            .instances
            .iter()
            .filter(|a| Self::names(a, name))
            .collect();
        match by_rule.as_slice() {
            [one] => return Ok((*one).clone()),
            [] => {}
            many => {
                let list: Vec<String> = many.iter().map(|a| a.to_string()).collect();
                return Err(UnmappedName {
                    name: name.to_string(),
                    reason: format!(
                        "the server name `{name}` matches several instances ({})",
                        list.join(", ")
                    ),
                });
            }
        }
        if let Ok(addr) = InstanceAddr::parse(name)
            && let Some(a) = self.instances.iter().find(|a| **a == addr)
        {
            return Ok(a.clone());
        }
        Err(UnmappedName {
            name: name.to_string(),
            reason: format!(
                "the server name `{name}` names no instance of the topology (a server reports its computer name and instance, without domain or port)"
            ),
        })
    }
}

#[cfg(test)]
mod server_names_tests {
    use super::*;

    fn a(s: &str) -> InstanceAddr {
        InstanceAddr::parse(s).unwrap()
    }

    #[test]
    fn server_names_map_by_alias_then_by_computer_and_instance() {
        let n = ServerNames::default()
            .with_instances(&[
                a("sql-a.cms.test\\RTC"),
                a("sql-b.cms.test\\RTC,1433"),
                a("sqlc.cms.test"),
            ])
            .with_alias("SQLB01\\RTC", a("sql-b.cms.test\\RTC,1433"));
        assert_eq!(n.resolve("SQL-A\\RTC").unwrap(), a("sql-a.cms.test\\RTC"));
        assert_eq!(n.resolve("sql-a\\rtc").unwrap(), a("sql-a.cms.test\\RTC"));
        assert_eq!(
            n.resolve("sqlb01\\RTC").unwrap(),
            a("sql-b.cms.test\\RTC,1433")
        );
        assert_eq!(n.resolve("SQLC").unwrap(), a("sqlc.cms.test"));
        // The default instance is not a named one, and the reverse.
        assert!(n.resolve("SQLC\\RTC").is_err());
        assert!(n.resolve("SQL-A").is_err());
        let e = n.resolve("SQLX09\\RTC").unwrap_err();
        assert_eq!(e.name, "SQLX09\\RTC");
        assert!(e.to_string().contains("[aliases]"), "{e}");
        assert!(e.to_string().contains("\"SQLX09\\RTC\" = "), "{e}");
    }

    #[test]
    fn a_server_name_matching_two_instances_is_ambiguous() {
        let n = ServerNames::default()
            .with_instances(&[a("sql-a.one.test\\RTC"), a("sql-a.two.test\\RTC")]);
        let e = n.resolve("SQL-A\\RTC").unwrap_err();
        assert!(e.reason.contains("several"), "{e}");
        let n = n.with_alias("SQL-A\\RTC", a("sql-a.two.test\\RTC"));
        assert_eq!(n.resolve("SQL-A\\RTC").unwrap(), a("sql-a.two.test\\RTC"));
    }

    #[test]
    fn an_ip_host_matches_only_its_written_address() {
        let n = ServerNames::default().with_instances(&[a("127.0.0.1,14330")]);
        assert!(n.resolve("127").is_err());
        assert_eq!(n.resolve("127.0.0.1,14330").unwrap(), a("127.0.0.1,14330"));
    }
}
