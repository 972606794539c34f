//! TLS settings of a served instance: its certificate and key (PEM files) and the
//! "force encryption" switch, as SQL Server Configuration Manager has them
//! (learn.microsoft.com/sql/database-engine/configure-windows/configure-sql-server-encryption:
//! a certificate per instance; "Force Encryption = Yes" makes the server refuse clients that
//! will not encrypt).
//!
//! Without a [`ServerTls`] an instance answers every PRELOGIN with ENCRYPT_NOT_SUP, as before.
//! The negotiation itself is in [`crate::tds::tls`].

use crate::service::{LoginAccepted, LoginRefused, LoginRequest, Service};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The ALPN protocol id of TDS 8.0 ("strict" encryption: TLS before any TDS message), as
/// registered with IANA and sent by `Encrypt=strict` drivers.
pub const ALPN_TDS_8: &[u8] = b"tds/8.0";

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The file could not be read or holds no usable PEM block of the expected kind.
    #[error("TLS {what} file {}: {message}", path.display())]
    File {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the pair (for example the key does not belong to the certificate).
    #[error("TLS certificate {} with key {}: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// The TLS identity and policy of one instance. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    tds7: Arc<ServerConfig>,
    strict: Arc<ServerConfig>,
    force_encryption: bool,
    cert: PathBuf,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("force_encryption", &self.force_encryption)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads a certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1
    /// or SEC1). Encryption is offered, not forced; see [`ServerTls::with_force_encryption`].
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let file_err = |what, path: &Path, message: String| TlsConfigError::File {
            what,
            path: path.to_path_buf(),
            message,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect())
            .map_err(|e| file_err("certificate", cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_err(
                "certificate",
                cert,
                "no CERTIFICATE block found (expected PEM)".into(),
            ));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            let message = match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "no PRIVATE KEY block found (expected PEM: PKCS#8, PKCS#1 or SEC1)".into()
                }
                other => other.to_string(),
            };
            file_err("private key", key, message)
        })?;
        let pair_err = |source| TlsConfigError::Pair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // TDS 7.x: TLS 1.2 only. "SQL Server 2019 and earlier versions don't support TLS 1.3"
        // and SQL Server 2022 "supports TLS 1.3 when TDS 8.0 is used"
        // (learn.microsoft.com/sql/relational-databases/security/networking/tls-1-3).
        let tds7 = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(pair_err)?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), private.clone_key())
            .map_err(pair_err)?;
        // TDS 8.0: TLS 1.2 or 1.3, ALPN "tds/8.0"
        // (learn.microsoft.com/sql/relational-databases/security/networking/tds-8).
        let mut strict = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(pair_err)?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(pair_err)?;
        strict.alpn_protocols = vec![ALPN_TDS_8.to_vec()];
        Ok(Self {
            tds7: Arc::new(tds7),
            strict: Arc::new(strict),
            force_encryption: false,
            cert: cert.to_path_buf(),
        })
    }

    /// Sets "Force Encryption": clients that will not encrypt are refused.
    pub fn with_force_encryption(mut self, force: bool) -> Self {
        self.force_encryption = force;
        self
    }

    /// Whether encryption is forced.
    pub fn force_encryption(&self) -> bool {
        self.force_encryption
    }

    /// The certificate file it was loaded from.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The rustls configuration for TLS inside TDS 7.x PRELOGIN packets.
    pub(crate) fn tds7_config(&self) -> Arc<ServerConfig> {
        self.tds7.clone()
    }

    /// The rustls configuration for TDS 8.0 (TLS first).
    pub(crate) fn strict_config(&self) -> Arc<ServerConfig> {
        self.strict.clone()
    }
}

/// A [`Service`] with TLS settings: delegates logins to `inner` and tells the protocol layer
/// which certificate to present (see [`Service::tls`]).
#[derive(Debug)]
pub struct WithTls<S> {
    inner: S,
    tls: Option<ServerTls>,
}

impl<S> WithTls<S> {
    /// Serves `inner` with `tls` (`None`: plaintext only, ENCRYPT_NOT_SUP).
    pub fn new(inner: S, tls: Option<ServerTls>) -> Self {
        Self { inner, tls }
    }
}

impl<S: Service> Service for WithTls<S> {
    type Session = S::Session;

    fn login(
        &self,
        login: LoginRequest,
    ) -> impl Future<Output = Result<(Self::Session, LoginAccepted), LoginRefused>> + Send + '_
    {
        self.inner.login(login)
    }

    fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    fn tls(&self) -> Option<ServerTls> {
        self.tls.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_test_pki_and_reports_bad_files_clearly() {
        let pki = test_pki::TestPki::generate(["sql-a.cms.test"]).unwrap();
        let a = pki.server("sql-a.cms.test").unwrap();
        let tls = ServerTls::from_pem_files(&a.cert, &a.key).unwrap();
        assert!(!tls.force_encryption());
        assert!(tls.clone().with_force_encryption(true).force_encryption());

        let missing = pki.dir().join("missing.pem");
        let e = ServerTls::from_pem_files(&missing, &a.key).unwrap_err();
        assert!(
            matches!(
                e,
                TlsConfigError::File {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        // a key file given as the certificate: no CERTIFICATE block
        let e = ServerTls::from_pem_files(&a.key, &a.key).unwrap_err();
        assert!(
            matches!(
                e,
                TlsConfigError::File {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        let e = ServerTls::from_pem_files(&a.cert, &a.cert).unwrap_err();
        assert!(
            matches!(
                e,
                TlsConfigError::File {
                    what: "private key",
                    ..
                }
            ),
            "{e}"
        );
        // a key that belongs to another certificate
        let e = ServerTls::from_pem_files(&a.cert, &pki.expired().key).unwrap_err();
        assert!(matches!(e, TlsConfigError::Pair { .. }), "{e}");
        assert!(!format!("{tls:?}").contains("PRIVATE"));
    }
}
