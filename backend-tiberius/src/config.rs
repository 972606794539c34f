//! Connection settings for [`TiberiusBackend`](crate::TiberiusBackend).

use failover_core::{InstanceAddr, Secret};
use failover_tsql::SqlConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use failover_tsql::tls::Trust;

/// Transport encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// Encrypt everything and fail if the server cannot (tiberius `Required`). Default.
    /// Needs the `tls` cargo feature.
    Required(Trust),
    /// No encryption at all, not even for the login (tiberius `NotSupported`). The password
    /// crosses the network in clear: only for the simulator or a trusted loopback.
    Plaintext,
}

impl Default for Encryption {
    fn default() -> Self {
        Self::Required(Trust::SystemRoots)
    }
}

/// Everything [`TiberiusBackend`](crate::TiberiusBackend) needs to reach the instances.
#[derive(Debug, Clone)]
pub struct TiberiusConfig {
    /// Overrides consulted before the port in the address, SQL Browser and DNS: the socket
    /// address serving an instance (the simulator serves `sql-a.cms.test\RTC` on
    /// `127.0.0.1:<port>`). Also used for mirroring partner names read from the server.
    pub endpoints: HashMap<InstanceAddr, SocketAddr>,
    /// SQL login (unused with [`Self::integrated`]).
    pub user: String,
    /// Its password (unused with [`Self::integrated`]).
    pub password: Secret,
    /// Log in with the process's Kerberos credentials (tiberius `AuthMethod::Integrated`:
    /// the ticket cache `KRB5CCNAME`, or a client keytab `KRB5_CLIENT_KTNAME`) for the SPN
    /// `MSSQLSvc/<instance host>:<port>` instead of the SQL login. Needs the `kerberos`
    /// cargo feature; without it every connect fails with a clear error.
    pub integrated: bool,
    /// TLS settings; TLS required by default.
    pub encryption: Encryption,
    /// Upper bound for each backend call, connecting included. On expiry the call fails with
    /// `ErrorKind::Timeout` and its connection is dropped.
    pub call_timeout: Duration,
    /// The application name sent at login (visible in `sys.dm_exec_sessions`).
    pub application_name: String,
    /// Position query, control database and mirror fallback (shared with the ODBC backend).
    pub sql: SqlConfig,
}

impl TiberiusConfig {
    /// A configuration with the defaults: TLS required against the system trust store,
    /// 30 s per call, default SQL settings, mirror fallback on, no overrides.
    pub fn new(user: impl Into<String>, password: Secret) -> Self {
        Self {
            endpoints: HashMap::new(),
            user: user.into(),
            password,
            integrated: false,
            encryption: Encryption::default(),
            call_timeout: Duration::from_secs(30),
            application_name: "cms-failover".into(),
            sql: SqlConfig::default(),
        }
    }

    /// A configuration that logs in with Kerberos ([`Self::integrated`]): no user, no
    /// password; otherwise the defaults of [`Self::new`].
    pub fn integrated() -> Self {
        Self {
            integrated: true,
            ..Self::new("", Secret::new(""))
        }
    }

    /// Adds an endpoint override.
    pub fn with_endpoint(mut self, instance: InstanceAddr, addr: SocketAddr) -> Self {
        self.endpoints.insert(instance, addr);
        self
    }

    /// Sets the encryption mode.
    pub fn with_encryption(mut self, e: Encryption) -> Self {
        self.encryption = e;
        self
    }

    /// Sets the per-call timeout.
    pub fn with_call_timeout(mut self, t: Duration) -> Self {
        self.call_timeout = t;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug() {
        let cfg = TiberiusConfig::new("sa", Secret::new("hunter2"));
        let text = format!("{cfg:?}");
        assert!(!text.contains("hunter2") && text.contains("***"), "{text}");
        assert_eq!(cfg.password.expose(), "hunter2");
    }
}
