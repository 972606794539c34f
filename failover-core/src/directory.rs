//! The `Directory` contract: where Skype for Business servers find the CMS.
//!
//! Every Skype for Business / Lync server reads the CMS location from a service control point
//! in Active Directory (object class `msRTCSIP-GlobalTopologySetting`, attributes
//! `msRTCSIP-BackEndServer` and `msRTCSIP-MirrorBackEndServer`, values `fqdn\instance`). A
//! failover that does not change it moves nothing for the servers. A directory is read and
//! changed through this trait; implementations translate and classify, they decide nothing.
//!
//! Active Directory is multi-master: a change made on one domain controller reaches the others
//! later. Writes therefore go to one named DC (the first of [`Directory::domain_controllers`]),
//! and the caller reads the value back from each listed DC to watch replication converge.

use crate::error::ErrorKind;
use crate::model::{HostName, InstanceAddr, InstanceName, Store, ValidationError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One SQL Server as the directory names it: `fqdn` or `fqdn\instance`, no port.
///
/// Equality ignores ASCII case, as SQL Server and AD do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SqlServerName(InstanceAddr);

impl SqlServerName {
    /// Parses a directory value (`atl-sql-001.litwareinc.com\rtc`). A port is refused: the
    /// directory never carries one.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.contains(',') {
            return Err(ValidationError::new(
                "directory value",
                s,
                "the directory names a server as fqdn\\instance, without a port",
            ));
        }
        Ok(Self(InstanceAddr::parse(s)?))
    }

    /// The name of an instance address (its port dropped).
    pub fn of(addr: &InstanceAddr) -> Self {
        Self(addr.clone().with_port(None))
    }

    /// Whether `addr` is this server (port ignored).
    pub fn names(&self, addr: &InstanceAddr) -> bool {
        *self == Self::of(addr)
    }

    /// The host (the FQDN).
    pub fn host(&self) -> &HostName {
        self.0.host()
    }

    /// The named instance, `None` for the default instance.
    pub fn instance(&self) -> Option<&InstanceName> {
        self.0.instance()
    }

    /// The instance address this name denotes (no port).
    pub fn to_addr(&self) -> InstanceAddr {
        self.0.clone()
    }
}

impl fmt::Display for SqlServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for SqlServerName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SqlServerName> for String {
    fn from(n: SqlServerName) -> String {
        n.to_string()
    }
}

/// Where the directory says the CMS is: its store and, when mirrored, the store's mirror
/// (`Get-CsConfigurationStoreLocation`'s `BackEndServer` and `MirrorBackEndServer`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CmsLocation {
    /// `msRTCSIP-BackEndServer`.
    pub backend: SqlServerName,
    /// `msRTCSIP-MirrorBackEndServer`, absent when the store is not mirrored.
    pub mirror: Option<SqlServerName>,
}

impl CmsLocation {
    /// The value that points clients at `store`.
    pub fn of_store(store: &Store) -> Self {
        Self {
            backend: SqlServerName::of(&store.principal),
            mirror: store.mirror.as_ref().map(SqlServerName::of),
        }
    }

    /// Whether this value points at `store` (its principal, or its mirror when the mirror is
    /// named as the back end after a mirror failover).
    pub fn points_at(&self, store: &Store) -> bool {
        store.instances().any(|i| self.backend.names(i))
    }
}

impl fmt::Display for CmsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.backend)?;
        if let Some(m) = &self.mirror {
            write!(f, " (mirror {m})")?;
        }
        Ok(())
    }
}

/// A failed directory operation, classified like [`crate::BackendError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{operation} on domain controller {dc} failed ({kind}): {message}")]
pub struct DirectoryError {
    /// How the core should treat it: `Unreachable`/`Timeout` may be retried; a conflict is
    /// `InvalidState`; a refused bind or missing rights is `Permission`.
    pub kind: ErrorKind,
    /// What was attempted.
    pub operation: DirectoryOperation,
    /// The domain controller it was sent to.
    pub dc: String,
    /// Detail for the operator (never a password).
    pub message: String,
    /// For a compare-and-swap conflict: the value found instead of the expected one, when it
    /// could be read.
    pub found: Option<Box<CmsLocation>>,
}

impl DirectoryError {
    /// An error without a conflicting value.
    pub fn new(
        kind: ErrorKind,
        operation: DirectoryOperation,
        dc: impl fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation,
            dc: dc.to_string(),
            message: message.into(),
            found: None,
        }
    }

    /// Whether this is a compare-and-swap conflict (someone else changed the value).
    pub fn is_conflict(&self) -> bool {
        self.operation == DirectoryOperation::CompareAndSwap && self.kind == ErrorKind::InvalidState
    }
}

impl From<DirectoryError> for crate::error::BackendError {
    /// The machine sees directory failures as call failures of the same kind; a conflict's
    /// value found is in the message (the machine re-reads it anyway).
    fn from(e: DirectoryError) -> Self {
        let operation = match e.operation {
            DirectoryOperation::Read => crate::error::Operation::ReadDirectory,
            DirectoryOperation::CompareAndSwap => crate::error::Operation::SwapDirectory,
        };
        let message = match &e.found {
            Some(f) => format!("{} (found {f})", e.message),
            None => e.message.clone(),
        };
        crate::error::BackendError::new(e.kind, operation, &e.dc, message)
    }
}

/// What the failover that swaps the value knows about the commit and a directory may keep
/// beside the value: the fencing epoch and the run id of the location record it writes.
///
/// Active Directory has nowhere to keep them (the service control point holds the value
/// only) and ignores the stamp; the SQL location record
/// ([`crate::sql_record::SqlRecordDirectory`]) stores them in the record it writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwapStamp {
    /// The epoch of the commit (above every epoch seen on any instance and in the journal).
    pub epoch: u64,
    /// The run that commits.
    pub run_id: String,
}

/// The directory operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryOperation {
    /// [`Directory::read`].
    Read,
    /// [`Directory::compare_and_swap`].
    CompareAndSwap,
}

impl fmt::Display for DirectoryOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirectoryOperation::Read => "read of the CMS location",
            DirectoryOperation::CompareAndSwap => "compare-and-swap of the CMS location",
        })
    }
}

/// Where clients find the CMS, read and changed on named domain controllers.
///
/// Every method may be called again after a failure: a compare-and-swap whose answer was lost
/// is re-tried with the same values and fails as a conflict only if the stored value is
/// neither the expected nor the new one (the caller re-reads to tell).
#[async_trait]
pub trait Directory: Send + Sync {
    /// A short name for logs and reports (`ldap`, `sql-record`, `fake`).
    fn name(&self) -> &str;

    /// The domain controllers, the one writes go to first; the others are only read, to
    /// watch replication.
    fn domain_controllers(&self) -> Vec<String>;

    /// The requests a compare-and-swap from `expected` to `new` sends, for what-if plans and
    /// reports (never a secret).
    fn describe_swap(&self, expected: &CmsLocation, new: &CmsLocation) -> Vec<String>;

    /// Whether the value lives on the SQL instances themselves (the SQL location record): a
    /// failover then swaps it on its target instance (named by its address, as in
    /// [`Directory::domain_controllers`]) instead of on the first DC. `false` by default.
    fn commit_on_target(&self) -> bool {
        false
    }

    /// Reads the value on `dc`. Read-only.
    /// Errors: `Unreachable`/`Timeout`; `Permission` (bind refused, no read access);
    /// `InvalidState` when the directory holds no usable value (no service control point,
    /// several, or a value that does not parse) — the message says which.
    async fn read(&self, dc: &str) -> Result<CmsLocation, DirectoryError>;

    /// Replaces `expected` by `new` on `dc` atomically: applied only when the stored value is
    /// `expected` (for LDAP, one modify that deletes the old values and adds the new ones).
    /// Idempotent: when the stored value already is `new`, succeeds without a change.
    /// Errors: `InvalidState` with [`DirectoryError::found`] when the stored value is another
    /// (someone else changed it); `Permission`; `Unreachable`/`Timeout` (effect unknown:
    /// re-read).
    async fn compare_and_swap(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
    ) -> Result<(), DirectoryError>;

    /// [`Directory::compare_and_swap`] by a failover that carries `stamp`; a directory that
    /// can keep the stamp beside the value stores it (and, when the value already is `new`
    /// under an older stamp, refreshes the stamp). The default ignores it.
    async fn compare_and_swap_stamped(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
        stamp: &SwapStamp,
    ) -> Result<(), DirectoryError> {
        let _ = stamp;
        self.compare_and_swap(dc, expected, new).await
    }
}

#[async_trait]
impl<D: Directory + ?Sized> Directory for std::sync::Arc<D> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn domain_controllers(&self) -> Vec<String> {
        (**self).domain_controllers()
    }
    fn describe_swap(&self, e: &CmsLocation, n: &CmsLocation) -> Vec<String> {
        (**self).describe_swap(e, n)
    }
    fn commit_on_target(&self) -> bool {
        (**self).commit_on_target()
    }
    async fn read(&self, dc: &str) -> Result<CmsLocation, DirectoryError> {
        (**self).read(dc).await
    }
    async fn compare_and_swap(
        &self,
        dc: &str,
        e: &CmsLocation,
        n: &CmsLocation,
    ) -> Result<(), DirectoryError> {
        (**self).compare_and_swap(dc, e, n).await
    }
    async fn compare_and_swap_stamped(
        &self,
        dc: &str,
        e: &CmsLocation,
        n: &CmsLocation,
        s: &SwapStamp,
    ) -> Result<(), DirectoryError> {
        (**self).compare_and_swap_stamped(dc, e, n, s).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(p: &str, m: Option<&str>) -> Store {
        Store::new(
            InstanceAddr::parse(p).unwrap(),
            m.map(|m| InstanceAddr::parse(m).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn names_drop_the_port_and_ignore_case() {
        let n = SqlServerName::parse("atl-sql-001.litwareinc.com\\rtc").unwrap();
        assert!(n.names(&InstanceAddr::parse("ATL-SQL-001.litwareinc.com\\RTC,14330").unwrap()));
        assert!(!n.names(&InstanceAddr::parse("atl-sql-001.litwareinc.com").unwrap()));
        assert_eq!(n.to_string(), "atl-sql-001.litwareinc.com\\rtc");
        assert!(SqlServerName::parse("sql.contoso.com\\RTC,1433").is_err());
        assert!(SqlServerName::parse("bad host\\RTC").is_err());
    }

    #[test]
    fn a_location_points_at_its_store() {
        let a = store("sql-a.cms.test\\RTC,1", Some("sql-a2.cms.test\\RTC,2"));
        let b = store("sql-b.cms.test\\RTC,3", None);
        let l = CmsLocation::of_store(&a);
        assert_eq!(
            l.to_string(),
            "sql-a.cms.test\\RTC (mirror sql-a2.cms.test\\RTC)"
        );
        assert!(l.points_at(&a));
        assert!(!l.points_at(&b));
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<CmsLocation>(&json).unwrap(), l);
    }
}
