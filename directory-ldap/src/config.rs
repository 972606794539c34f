//! What the directory needs: where the DC is, how to trust it, how to bind, where the SCP is.

use failover_core::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// The connection to Active Directory.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// The DC that changes go to: `ldaps://dc01.contoso.com[:636]`, or `ldap://…:389` with
    /// [`LdapConfig::starttls`].
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM file with the CA certificate(s) that signed the DCs' certificates; `None`: the
    /// system's roots (an error when there are none).
    pub ca_file: Option<PathBuf>,
    /// How to bind.
    pub bind: LdapBind,
    /// The service control point's DN; `None`: searched for.
    pub scp_dn: Option<String>,
    /// More DCs (URLs) whose value is read back to watch replication converge.
    pub domain_controllers: Vec<String>,
    /// Bound on connecting and on each request.
    pub timeout: Duration,
}

/// How the directory binds.
#[derive(Debug, Clone)]
pub enum LdapBind {
    /// A simple bind with a password the caller read from an environment variable or a file.
    Simple {
        /// The bind DN or user principal name (`CN=svc-cms,CN=Users,DC=contoso,DC=com` or
        /// `svc-cms@contoso.com`).
        user: String,
        /// The bind password.
        password: Secret,
    },
    /// SASL GSSAPI (Kerberos) with the process's credentials: the ticket cache named by
    /// `KRB5CCNAME` (after `kinit`), or a client keytab in `KRB5_CLIENT_KTNAME`. No password.
    /// The service principal is `ldap/<the URL's host>`, so the URLs name each DC as its SPN
    /// does (Active Directory registers `ldap/<dc fqdn>`). Needs the cargo feature
    /// `kerberos`.
    Kerberos,
}

impl LdapConfig {
    /// A configuration for `url` with a simple bind as `bind_dn`, LDAPS expected, 10 s
    /// timeout.
    pub fn new(url: impl Into<String>, bind_dn: impl Into<String>, password: Secret) -> Self {
        Self::with_bind(
            url,
            LdapBind::Simple {
                user: bind_dn.into(),
                password,
            },
        )
    }

    /// A configuration for `url` that binds with Kerberos ([`LdapBind::Kerberos`]), LDAPS
    /// expected, 10 s timeout.
    pub fn kerberos(url: impl Into<String>) -> Self {
        Self::with_bind(url, LdapBind::Kerberos)
    }

    fn with_bind(url: impl Into<String>, bind: LdapBind) -> Self {
        Self {
            url: url.into(),
            starttls: false,
            ca_file: None,
            bind,
            scp_dn: None,
            domain_controllers: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for url in std::iter::once(&self.url).chain(&self.domain_controllers) {
            let lower = url.to_ascii_lowercase();
            if lower.starts_with("ldaps://") {
                continue;
            }
            if lower.starts_with("ldap://") {
                if self.starttls {
                    continue;
                }
                return Err(ConfigError::Plaintext(url.clone()));
            }
            return Err(ConfigError::Url(url.clone()));
        }
        match &self.bind {
            LdapBind::Simple { user, .. } if user.trim().is_empty() => {
                return Err(ConfigError::NoUser);
            }
            LdapBind::Simple { .. } => {}
            LdapBind::Kerberos if !cfg!(feature = "kerberos") => {
                return Err(ConfigError::KerberosNotBuilt);
            }
            LdapBind::Kerberos => {
                for url in std::iter::once(&self.url).chain(&self.domain_controllers) {
                    if crate::url_host(url).is_none() {
                        return Err(ConfigError::Url(url.clone()));
                    }
                }
            }
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Timeout);
        }
        Ok(())
    }

    pub(crate) fn tls_config(&self) -> Result<rustls::ClientConfig, ConfigError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Tls(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| ConfigError::CaFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if certs.is_empty() {
                    return Err(ConfigError::CaFile {
                        path: path.clone(),
                        reason: "no PEM certificate in it".into(),
                    });
                }
                for c in certs {
                    roots.add(c).map_err(|e| ConfigError::CaFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    return Err(ConfigError::NoCa);
                }
            }
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }
}

/// A configuration that cannot work (nothing was contacted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not an LDAP URL.
    #[error(
        "`{0}` is not an LDAP URL: use ldaps://dc01.contoso.com (or ldap://… with starttls = true)"
    )]
    Url(String),
    /// `ldap://` without StartTLS.
    #[error(
        "`{0}` is plain LDAP: a simple bind would send the password unencrypted (and Active Directory refuses it); use ldaps:// or set starttls = true"
    )]
    Plaintext(String),
    /// No bind user.
    #[error("no bind user: set the directory's `user` (a DN or user@domain)")]
    NoUser,
    /// A Kerberos bind in a build without the `kerberos` feature.
    #[error(
        "the directory's Kerberos bind is not in this build (cargo feature `kerberos` of directory-ldap; the CLI: `cargo build -p examples --features kerberos`, which needs libkrb5-dev, clang and libclang-dev)"
    )]
    KerberosNotBuilt,
    /// A zero timeout.
    #[error("the directory timeout must be greater than zero")]
    Timeout,
    /// No CA given.
    #[error(
        "no CA file for the domain controllers' certificates: set the directory's `ca_file` to the PEM file of the CA that issued them (export it from the enterprise CA, or take DIR/private/tls/ca.pem on Samba)"
    )]
    NoCa,
    /// The CA file cannot be used.
    #[error("cannot use the CA file `{path}`: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Tls(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> LdapConfig {
        LdapConfig::new(url, "svc@cms.test", Secret::new("pw"))
    }

    #[test]
    fn plain_ldap_needs_starttls_and_other_schemes_are_refused() {
        assert!(cfg("ldaps://dc01.cms.test").validate().is_ok());
        assert_eq!(
            cfg("ldap://dc01.cms.test").validate(),
            Err(ConfigError::Plaintext("ldap://dc01.cms.test".into()))
        );
        let mut c = cfg("ldap://dc01.cms.test");
        c.starttls = true;
        assert!(c.validate().is_ok());
        assert!(matches!(
            cfg("http://dc01").validate(),
            Err(ConfigError::Url(_))
        ));
        let mut c = cfg("ldaps://dc01.cms.test");
        c.domain_controllers.push("ldap://dc02.cms.test".into());
        assert!(matches!(c.validate(), Err(ConfigError::Plaintext(u)) if u.contains("dc02")));
        let c = LdapConfig::new("ldaps://dc01.cms.test", " ", Secret::new("pw"));
        assert_eq!(c.validate(), Err(ConfigError::NoUser));
    }

    #[test]
    fn a_kerberos_bind_needs_the_feature_and_a_host_in_each_url() {
        let c = LdapConfig::kerberos("ldaps://dc01.cms.test");
        if cfg!(feature = "kerberos") {
            assert!(c.validate().is_ok());
            let mut c = LdapConfig::kerberos("ldaps://dc01.cms.test");
            c.domain_controllers.push("ldaps://:636".into());
            assert_eq!(c.validate(), Err(ConfigError::Url("ldaps://:636".into())));
        } else {
            assert_eq!(c.validate(), Err(ConfigError::KerberosNotBuilt));
        }
        // Plain LDAP stays refused: the Kerberos bind goes over TLS too.
        assert!(matches!(
            LdapConfig::kerberos("ldap://dc01.cms.test").validate(),
            Err(ConfigError::Plaintext(_))
        ));
    }

    #[test]
    fn the_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg("ldaps://dc01.cms.test");
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        c.ca_file = Some(p.clone());
        assert!(matches!(c.tls_config(), Err(ConfigError::CaFile { .. })));
        c.ca_file = Some(dir.path().join("missing.pem"));
        assert!(matches!(c.tls_config(), Err(ConfigError::CaFile { .. })));
    }

    #[test]
    fn the_password_never_prints() {
        let c = cfg("ldaps://dc01.cms.test");
        assert!(!format!("{c:?}").contains("pw\""));
        assert!(format!("{c:?}").contains("***"));
    }
}
