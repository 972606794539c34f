//! Validated domain value types: instance addresses, database names, stores and topologies.
//!
//! Every constructor validates its input and rejects it with a [`ValidationError`] that names
//! the field and the rule that was broken, so bad input is caught before any connection.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::str::FromStr;

/// Input that broke a validation rule. Names the field, the offending value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} `{value}`: {rule}")]
pub struct ValidationError {
    /// The field (or command-line option / topology key) that was invalid.
    pub field: String,
    /// The rejected value, verbatim.
    pub value: String,
    /// The rule that was broken, phrased so the operator knows what to fix.
    pub rule: String,
}

impl ValidationError {
    /// Builds an error for `field` holding `value` that broke `rule`.
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        rule: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.into(),
            rule: rule.into(),
        }
    }

    /// Returns the same error attributed to another field name (e.g. a CLI flag).
    pub fn in_field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

/// A server host: an RFC 1123 DNS name or an IP literal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostName(String);

impl HostName {
    /// Validates `s` as a DNS name (RFC 1123: labels of 1-63 letters, digits and hyphens, not
    /// starting or ending with a hyphen, 253 characters in all) or an IPv4/IPv6 literal.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let err = |rule: &str| ValidationError::new("server FQDN", s, rule);
        if s.is_empty() {
            return Err(err("must not be empty"));
        }
        if s.parse::<IpAddr>().is_ok() {
            return Ok(Self(s.to_string()));
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.len() > 253 {
            return Err(err("a DNS name has at most 253 characters"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(err("DNS labels must not be empty (check for `..`)"));
            }
            if label.len() > 63 {
                return Err(err("each DNS label has at most 63 characters"));
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(err(
                    "a DNS name may contain only letters, digits, hyphens and dots (RFC 1123)",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("a DNS label must not start or end with a hyphen"));
            }
        }
        Ok(Self(name.to_string()))
    }

    /// The host as given (without a trailing dot).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for HostName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for HostName {}
impl Hash for HostName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_ascii_lowercase().hash(state)
    }
}
impl TryFrom<String> for HostName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<HostName> for String {
    fn from(h: HostName) -> String {
        h.0
    }
}
impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Words SQL Server does not accept as an instance name (compared case-insensitively).
const RESERVED_INSTANCE_NAMES: &[&str] = &[
    "DEFAULT",
    "MSSQLSERVER",
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BACKUP",
    "BEGIN",
    "BETWEEN",
    "BREAK",
    "BROWSE",
    "BULK",
    "BY",
    "CASCADE",
    "CASE",
    "CHECK",
    "CHECKPOINT",
    "CLOSE",
    "CLUSTERED",
    "COLUMN",
    "COMMIT",
    "COMPUTE",
    "CONSTRAINT",
    "CONTAINS",
    "CONTINUE",
    "CONVERT",
    "CREATE",
    "CROSS",
    "CURRENT",
    "CURSOR",
    "DATABASE",
    "DBCC",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DENY",
    "DESC",
    "DISK",
    "DISTINCT",
    "DISTRIBUTED",
    "DOUBLE",
    "DROP",
    "DUMP",
    "ELSE",
    "END",
    "ERRLVL",
    "ESCAPE",
    "EXCEPT",
    "EXEC",
    "EXECUTE",
    "EXISTS",
    "EXIT",
    "EXTERNAL",
    "FETCH",
    "FILE",
    "FILLFACTOR",
    "FOR",
    "FOREIGN",
    "FREETEXT",
    "FROM",
    "FULL",
    "FUNCTION",
    "GOTO",
    "GRANT",
    "GROUP",
    "HAVING",
    "HOLDLOCK",
    "IDENTITY",
    "IF",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "KILL",
    "LEFT",
    "LIKE",
    "LINENO",
    "LOAD",
    "MERGE",
    "NATIONAL",
    "NOCHECK",
    "NONCLUSTERED",
    "NOT",
    "NULL",
    "NULLIF",
    "OF",
    "OFF",
    "OFFSETS",
    "ON",
    "OPEN",
    "OPTION",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PERCENT",
    "PIVOT",
    "PLAN",
    "PRECISION",
    "PRIMARY",
    "PRINT",
    "PROC",
    "PROCEDURE",
    "PUBLIC",
    "RAISERROR",
    "READ",
    "RECONFIGURE",
    "REFERENCES",
    "REPLICATION",
    "RESTORE",
    "RESTRICT",
    "RETURN",
    "REVERT",
    "REVOKE",
    "RIGHT",
    "ROLLBACK",
    "ROWCOUNT",
    "RULE",
    "SAVE",
    "SCHEMA",
    "SELECT",
    "SET",
    "SETUSER",
    "SHUTDOWN",
    "SOME",
    "STATISTICS",
    "TABLE",
    "THEN",
    "TO",
    "TOP",
    "TRAN",
    "TRANSACTION",
    "TRIGGER",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UNPIVOT",
    "UPDATE",
    "USE",
    "USER",
    "VALUES",
    "VARYING",
    "VIEW",
    "WAITFOR",
    "WHEN",
    "WHERE",
    "WHILE",
    "WITH",
];

/// A SQL Server named-instance name (e.g. `RTC`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

impl InstanceName {
    /// Validates `s` against SQL Server's instance-name rules: 1-16 characters; first a letter,
    /// `_`, `&` or `#`; then letters, digits, `_`, `$`, `&` or `#`; no spaces; not a reserved
    /// word such as `DEFAULT` or `MSSQLSERVER`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let err = |rule: &str| ValidationError::new("SQL instance name", s, rule);
        let count = s.chars().count();
        if count == 0 {
            return Err(err("must not be empty (omit it for the default instance)"));
        }
        if count > 16 {
            return Err(err("an instance name has at most 16 characters"));
        }
        if s.chars().any(char::is_whitespace) {
            return Err(err("an instance name must not contain spaces"));
        }
        let mut chars = s.chars();
        let first = chars.next().unwrap_or_default();
        if !(first.is_alphabetic() || matches!(first, '_' | '&' | '#')) {
            return Err(err(
                "an instance name must start with a letter, `_`, `&` or `#`",
            ));
        }
        if !chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '&' | '#')) {
            return Err(err(
                "an instance name may contain only letters, digits, `_`, `$`, `&` and `#`",
            ));
        }
        if RESERVED_INSTANCE_NAMES
            .iter()
            .any(|w| w.eq_ignore_ascii_case(s))
        {
            return Err(err("this is a reserved word and cannot name an instance"));
        }
        Ok(Self(s.to_string()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for InstanceName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for InstanceName {}
impl Hash for InstanceName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_ascii_uppercase().hash(state)
    }
}
impl TryFrom<String> for InstanceName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<InstanceName> for String {
    fn from(h: InstanceName) -> String {
        h.0
    }
}
impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The address of one SQL Server instance: `fqdn[\instance][,port]`.
///
/// Equality, ordering and hashing ignore ASCII case of the host and instance, as SQL Server does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceAddr {
    host: HostName,
    instance: Option<InstanceName>,
    port: Option<u16>,
}

impl InstanceAddr {
    /// Builds an address from its validated parts.
    pub fn new(host: HostName, instance: Option<InstanceName>, port: Option<u16>) -> Self {
        Self {
            host,
            instance,
            port,
        }
    }

    /// Parses `fqdn[\instance][,port]`, e.g. `sql01.contoso.com\RTC` or `127.0.0.1,14330`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let field = "SQL Server address";
        let (rest, port) = match s.rsplit_once(',') {
            Some((rest, p)) => {
                let port: u16 = p.trim().parse().map_err(|_| {
                    ValidationError::new(field, s, "the port after `,` must be a number 1-65535")
                })?;
                if port == 0 {
                    return Err(ValidationError::new(field, s, "port 0 is not a valid port"));
                }
                (rest, Some(port))
            }
            None => (s, None),
        };
        let (host, instance) = match rest.split_once('\\') {
            Some((h, i)) => (h, Some(InstanceName::parse(i)?)),
            None => (rest, None),
        };
        Ok(Self {
            host: HostName::parse(host)?,
            instance,
            port,
        })
    }

    /// Parses a host and an optional instance name given separately (as the cmdlet's
    /// `-BackupSqlServerFqdn` / `-BackupSqlInstanceName` are). The host may carry `,port`.
    pub fn from_parts(host: &str, instance: Option<&str>) -> Result<Self, ValidationError> {
        let mut addr = Self::parse(host)?;
        if let Some(i) = instance {
            if addr.instance.is_some() {
                return Err(ValidationError::new(
                    "SQL Server address",
                    host,
                    "give the instance either inside the FQDN or as the instance name, not both",
                ));
            }
            addr.instance = Some(InstanceName::parse(i)?);
        }
        Ok(addr)
    }

    /// The host part.
    pub fn host(&self) -> &HostName {
        &self.host
    }
    /// The named instance, `None` for the default instance.
    pub fn instance(&self) -> Option<&InstanceName> {
        self.instance.as_ref()
    }
    /// The explicit TCP port, if any (otherwise 1433 or an SQL Browser lookup).
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// Returns the address with the explicit port replaced.
    pub fn with_port(mut self, port: Option<u16>) -> Self {
        self.port = port;
        self
    }

    /// The comparison key, without allocating: the host case-insensitively (lowercase), the
    /// instance case-insensitively (uppercase, as SQL Server shows it; none = empty), the port.
    fn key(
        &self,
    ) -> (
        impl Iterator<Item = u8> + '_,
        impl Iterator<Item = u8> + '_,
        Option<u16>,
    ) {
        (
            self.host.0.bytes().map(|c| c.to_ascii_lowercase()),
            self.instance
                .as_ref()
                .map_or("", |i| i.0.as_str())
                .bytes()
                .map(|c| c.to_ascii_uppercase()),
            self.port,
        )
    }
}

impl PartialEq for InstanceAddr {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InstanceAddr {}
impl Hash for InstanceAddr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (host, instance, port) = self.key();
        for c in host {
            state.write_u8(c);
        }
        state.write_u8(0xff);
        for c in instance {
            state.write_u8(c);
        }
        state.write_u8(0xff);
        port.hash(state);
    }
}
impl PartialOrd for InstanceAddr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InstanceAddr {
    fn cmp(&self, other: &Self) -> Ordering {
        let (h1, i1, p1) = self.key();
        let (h2, i2, p2) = other.key();
        h1.cmp(h2).then_with(|| i1.cmp(i2)).then(p1.cmp(&p2))
    }
}
impl FromStr for InstanceAddr {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
impl TryFrom<String> for InstanceAddr {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<InstanceAddr> for String {
    fn from(a: InstanceAddr) -> String {
        a.to_string()
    }
}
impl fmt::Display for InstanceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.host)?;
        if let Some(i) = &self.instance {
            write!(f, "\\{i}")?;
        }
        if let Some(p) = self.port {
            write!(f, ",{p}")?;
        }
        Ok(())
    }
}

/// A database name that satisfies SQL Server's `sysname` rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseName(String);

impl DatabaseName {
    /// Validates `s` as a `sysname`: 1-128 UTF-16 code units, no control characters, no
    /// leading or trailing whitespace. Quotes, brackets and other punctuation are allowed:
    /// backends always bracket-quote names.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let err = |rule: &str| ValidationError::new("database name", s, rule);
        if s.is_empty() {
            return Err(err("must not be empty"));
        }
        if s.encode_utf16().count() > 128 {
            return Err(err("a database name (sysname) has at most 128 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(err("a database name must not contain control characters"));
        }
        if s.trim() != s {
            return Err(err("a database name must not start or end with whitespace"));
        }
        Ok(Self(s.to_string()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The CMS default databases, `xds` and `lis`.
    pub fn cms_defaults() -> Vec<DatabaseName> {
        vec![Self("xds".into()), Self("lis".into())]
    }
}

impl PartialEq for DatabaseName {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_lowercase() == other.0.to_lowercase()
    }
}
impl Eq for DatabaseName {}
impl Hash for DatabaseName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_lowercase().hash(state)
    }
}
impl PartialOrd for DatabaseName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DatabaseName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.to_lowercase().cmp(&other.0.to_lowercase())
    }
}
impl FromStr for DatabaseName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
impl TryFrom<String> for DatabaseName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<DatabaseName> for String {
    fn from(d: DatabaseName) -> String {
        d.0
    }
}
impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SQL store: the principal instance and, when database-mirrored, its mirror partner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Store {
    /// The instance that normally serves the databases.
    pub principal: InstanceAddr,
    /// The mirroring partner, if the store is mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<InstanceAddr>,
}

impl Store {
    /// Builds a store, rejecting a mirror equal to the principal.
    pub fn new(
        principal: InstanceAddr,
        mirror: Option<InstanceAddr>,
    ) -> Result<Self, ValidationError> {
        if mirror.as_ref() == Some(&principal) {
            return Err(ValidationError::new(
                "mirror",
                principal.to_string(),
                "the mirror must be a different instance from the principal",
            ));
        }
        Ok(Self { principal, mirror })
    }

    /// The principal followed by the mirror, if any.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceAddr> {
        std::iter::once(&self.principal).chain(self.mirror.iter())
    }

    /// Whether `addr` is one of this store's instances.
    pub fn contains(&self, addr: &InstanceAddr) -> bool {
        self.instances().any(|i| i == addr)
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mirror {
            Some(m) => write!(f, "{} (mirror {})", self.principal, m),
            None => write!(f, "{}", self.principal),
        }
    }
}

/// Where the CMS lives: the active store, the preassigned backup store and the databases that
/// move together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The store that is active (writable) before the failover.
    pub active: Store,
    /// The paired backup pool's store, the planned failover's target.
    pub backup: Store,
    /// The CMS databases (default `xds` and `lis`); all are moved together.
    pub databases: Vec<DatabaseName>,
}

impl Topology {
    /// Builds a topology, checking that the stores share no instance and that the database
    /// list is non-empty and free of duplicates.
    pub fn new(
        active: Store,
        backup: Store,
        databases: Vec<DatabaseName>,
    ) -> Result<Self, ValidationError> {
        for a in active.instances() {
            if backup.contains(a) {
                return Err(ValidationError::new(
                    "backup store",
                    a.to_string(),
                    "the backup store must not share an instance with the active store (source equals target)",
                ));
            }
        }
        if databases.is_empty() {
            return Err(ValidationError::new(
                "databases",
                "",
                "at least one database is required",
            ));
        }
        for (i, d) in databases.iter().enumerate() {
            if databases[..i].contains(d) {
                return Err(ValidationError::new(
                    "databases",
                    d.as_str(),
                    "each database may be listed once",
                ));
            }
        }
        Ok(Self {
            active,
            backup,
            databases,
        })
    }

    /// Every instance of both stores.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceAddr> {
        self.active.instances().chain(self.backup.instances())
    }

    /// The store that contains `addr`, if any.
    pub fn store_of(&self, addr: &InstanceAddr) -> Option<&Store> {
        [&self.active, &self.backup]
            .into_iter()
            .find(|s| s.contains(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_instance_addresses() {
        let a = InstanceAddr::parse("sql01.contoso.com\\RTC,1433").unwrap();
        assert_eq!(a.host().as_str(), "sql01.contoso.com");
        assert_eq!(a.instance().unwrap().as_str(), "RTC");
        assert_eq!(a.port(), Some(1433));
        assert_eq!(a.to_string(), "sql01.contoso.com\\RTC,1433");
        assert_eq!(
            a,
            InstanceAddr::parse("SQL01.Contoso.com\\rtc,1433").unwrap()
        );
        let ip = InstanceAddr::parse("127.0.0.1,14330").unwrap();
        assert_eq!(ip.port(), Some(14330));
        assert!(InstanceAddr::parse("::1").is_ok());
        assert!(InstanceAddr::parse("sql01").unwrap().instance().is_none());
    }

    #[test]
    fn rejects_bad_hosts_with_the_rule() {
        for bad in [
            "",
            "-bad.com",
            "bad-.com",
            "a..b",
            "sp ace.com",
            "under_score.com",
            "x;drop",
        ] {
            let e = InstanceAddr::parse(bad).unwrap_err();
            assert_eq!(e.field, "server FQDN", "{bad}");
            assert!(!e.rule.is_empty());
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(
            HostName::parse(&long_label)
                .unwrap_err()
                .rule
                .contains("63")
        );
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert!(
            HostName::parse(&long_name)
                .unwrap_err()
                .rule
                .contains("253")
        );
        assert!(
            InstanceAddr::parse("host,0")
                .unwrap_err()
                .rule
                .contains("port")
        );
        assert!(
            InstanceAddr::parse("host,70000")
                .unwrap_err()
                .rule
                .contains("port")
        );
    }

    #[test]
    fn instance_name_rules() {
        assert!(InstanceName::parse("RTC").is_ok());
        assert!(InstanceName::parse("_a$b#c&").is_ok());
        assert!(
            InstanceName::parse("ABCDEFGHIJKLMNOPQ")
                .unwrap_err()
                .rule
                .contains("16")
        );
        assert!(
            InstanceName::parse("has space")
                .unwrap_err()
                .rule
                .contains("spaces")
        );
        assert!(
            InstanceName::parse("default")
                .unwrap_err()
                .rule
                .contains("reserved")
        );
        assert!(
            InstanceName::parse("MSSQLServer")
                .unwrap_err()
                .rule
                .contains("reserved")
        );
        assert!(
            InstanceName::parse("select")
                .unwrap_err()
                .rule
                .contains("reserved")
        );
        assert!(
            InstanceName::parse("1abc")
                .unwrap_err()
                .rule
                .contains("start")
        );
        assert!(InstanceName::parse("a;b").is_err());
        assert!(InstanceName::parse("").is_err());
    }

    #[test]
    fn from_parts_rejects_double_instance() {
        assert!(InstanceAddr::from_parts("h\\A", Some("B")).is_err());
        let a = InstanceAddr::from_parts("h.example", Some("RTC")).unwrap();
        assert_eq!(a.to_string(), "h.example\\RTC");
    }

    #[test]
    fn database_names() {
        assert!(DatabaseName::parse("xds").is_ok());
        assert!(DatabaseName::parse("we]ird'; DROP --").is_ok());
        assert!(DatabaseName::parse("").is_err());
        assert!(
            DatabaseName::parse(&"x".repeat(129))
                .unwrap_err()
                .rule
                .contains("128")
        );
        assert!(DatabaseName::parse("a\u{0}b").is_err());
        assert!(DatabaseName::parse(" xds").is_err());
        assert_eq!(
            DatabaseName::parse("XDS").unwrap(),
            DatabaseName::parse("xds").unwrap()
        );
    }

    #[test]
    fn topology_rules() {
        let s = |p: &str| Store::new(InstanceAddr::parse(p).unwrap(), None).unwrap();
        assert!(Topology::new(s("a"), s("a"), DatabaseName::cms_defaults()).is_err());
        assert!(Topology::new(s("a"), s("b"), vec![]).is_err());
        let dup = vec![
            DatabaseName::parse("xds").unwrap(),
            DatabaseName::parse("XDS").unwrap(),
        ];
        assert!(Topology::new(s("a"), s("b"), dup).is_err());
        let t = Topology::new(s("a"), s("b"), DatabaseName::cms_defaults()).unwrap();
        assert_eq!(t.instances().count(), 2);
        let m = InstanceAddr::parse("a").unwrap();
        assert!(Store::new(m.clone(), Some(m)).is_err());
    }

    #[test]
    fn serde_round_trip_validates() {
        let a: InstanceAddr = serde_json::from_str("\"h.example\\\\RTC,1\"").unwrap();
        assert_eq!(a.to_string(), "h.example\\RTC,1");
        assert!(serde_json::from_str::<InstanceAddr>("\"bad host\"").is_err());
    }
}
