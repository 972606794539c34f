//! Connection settings for [`TiberiusBackend`](crate::TiberiusBackend).

use failover_core::InstanceAddr;
use failover_tsql::SqlConfig;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A password. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The password could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is unset or not Unicode.
    #[error("environment variable {0} is not set (it must hold the SQL login's password)")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read the password file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Secret {
    /// Wraps a password held in memory.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// Reads the password from environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        std::env::var(var)
            .map(Self)
            .map_err(|_| SecretError::MissingEnv(var.to_string()))
    }
    /// Reads the password from a file (one trailing newline is dropped).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let s = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let s = s.strip_suffix('\n').unwrap_or(&s);
        let s = s.strip_suffix('\r').unwrap_or(s);
        Ok(Self(s.to_string()))
    }
    /// The password itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the server certificate is checked when TLS is on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trust {
    /// Against the system's trust store (default).
    #[default]
    SystemRoots,
    /// Against this CA certificate (PEM/DER) in addition to the system's trust store.
    CaFile(PathBuf),
    /// Accept any certificate (`TrustServerCertificate=true`). Encrypts but does not
    /// authenticate the server: only for test estates.
    TrustServerCertificate,
}

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
    /// SQL login.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// TLS settings; TLS required by default.
    pub encryption: Encryption,
    /// Upper bound for each backend call, connecting included. On expiry the call fails with
    /// `ErrorKind::Timeout` and its connection is dropped.
    pub call_timeout: Duration,
    /// The application name sent at login (visible in `sys.dm_exec_sessions`).
    pub application_name: String,
    /// Position query and control database (shared with the ODBC backend).
    pub sql: SqlConfig,
    /// Read positions from the mirroring partner when a database answers 954/955 here
    /// (both partners share one log). Default on.
    pub mirror_fallback: bool,
}

impl TiberiusConfig {
    /// A configuration with the defaults: TLS required against the system trust store,
    /// 30 s per call, default SQL settings, mirror fallback on, no overrides.
    pub fn new(user: impl Into<String>, password: Secret) -> Self {
        Self {
            endpoints: HashMap::new(),
            user: user.into(),
            password,
            encryption: Encryption::default(),
            call_timeout: Duration::from_secs(30),
            application_name: "cms-failover".into(),
            sql: SqlConfig::default(),
            mirror_fallback: true,
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
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        let cfg = TiberiusConfig::new("sa", s);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert_eq!(cfg.password.expose(), "hunter2");
        assert!(Secret::from_env("CMS_FAILOVER_TEST_SURELY_UNSET_VAR").is_err());
        let dir = std::env::temp_dir().join(format!("tib-secret-{}", std::process::id()));
        std::fs::write(&dir, "pw\n").unwrap();
        assert_eq!(Secret::from_file(&dir).unwrap().expose(), "pw");
        std::fs::remove_file(&dir).unwrap();
    }
}
