//! # directory-ldap
//!
//! The CMS location as Skype for Business servers read it: the service control point in
//! Active Directory (object class `msRTCSIP-GlobalTopologySetting`, attributes
//! `msRTCSIP-BackEndServer` and `msRTCSIP-MirrorBackEndServer`), read and changed over LDAP
//! with [`ldap3`], as a [`failover_core::Directory`].
//!
//! - Transport: LDAPS (`ldaps://dc01.contoso.com`) or StartTLS (`ldap://…` with
//!   [`LdapConfig::starttls`]), the certificate validated against [`LdapConfig::ca_file`] (or
//!   the system's roots). Plain LDAP is refused: a simple bind would send the password in the
//!   clear (AD and Samba refuse it too: "Transport encryption required").
//! - Bind: simple, with a password the caller read from an environment variable or a file;
//!   or SASL GSSAPI ([`LdapBind::Kerberos`], cargo feature `kerberos`) with the process's
//!   Kerberos credentials and no password. Before each Kerberos bind a preflight asks the
//!   system GSSAPI library for the `ldap/<host>` service ticket (the SQL backends' preflight,
//!   `failover_tsql::kerberos`), so no ticket, an expired one, clock skew, an unregistered
//!   SPN, a wrong realm and an unreachable KDC are each reported as that, with what to do.
//! - The SCP: [`LdapConfig::scp_dn`], or found by `(objectClass=msRTCSIP-GlobalTopologySetting)`
//!   in subtree scope under the RootDSE's `configurationNamingContext`, then under the root
//!   domain's `CN=System` container (older forests); none or several is an error naming what
//!   was found.
//! - Compare-and-swap: one modify request that deletes the expected values and adds the new
//!   ones. A DC applies a modify atomically and refuses it with `noSuchAttribute` (16) when a
//!   value to delete is not there (RFC 4511 §4.6), so a stale swap changes nothing.
//!
//! Values are sent as attribute values inside the BER-encoded request, never spliced into a
//! DN or a filter; the one filter is a constant, and DNs come from the server or the operator's
//! configuration ([`ldap3::dn_escape`] / [`ldap3::ldap_escape`] are used wherever a value
//! would be embedded).

#![warn(missing_docs)]

mod classify;
mod config;
#[cfg(feature = "kerberos")]
mod kerberos;
mod scp;

pub use config::{ConfigError, LdapBind, LdapConfig};
pub use scp::{ATTR_BACKEND, ATTR_MIRROR, SCP_CLASS, swap_mods};

use async_trait::async_trait;
use failover_core::{CmsLocation, Directory, DirectoryError, DirectoryOperation, ErrorKind};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use std::sync::{Arc, Mutex};

/// A [`Directory`] over LDAP.
pub struct LdapDirectory {
    cfg: LdapConfig,
    tls: Arc<rustls::ClientConfig>,
    /// The SCP's DN, once known (the same on every DC).
    scp: Mutex<Option<String>>,
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl LdapDirectory {
    /// A directory with `cfg`; reads the CA file now, connects on first use.
    pub fn new(cfg: LdapConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let tls = Arc::new(cfg.tls_config()?);
        Ok(Self {
            scp: Mutex::new(cfg.scp_dn.clone()),
            cfg,
            tls,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LdapConfig {
        &self.cfg
    }

    /// Connects to `dc` (one of [`Directory::domain_controllers`]) and binds.
    async fn session(&self, dc: &str, op: DirectoryOperation) -> Result<Ldap, DirectoryError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.starttls)
            .set_config(self.tls.clone());
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, dc)
            .await
            .map_err(|e| classify::error(op, dc, e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.cfg.timeout);
        match &self.cfg.bind {
            LdapBind::Simple { user, password } => {
                let bind = ldap
                    .simple_bind(user, password.expose())
                    .await
                    .map_err(|e| classify::error(op, dc, e))?;
                classify::result(op, dc, bind, "bind")?;
            }
            #[cfg(feature = "kerberos")]
            LdapBind::Kerberos => kerberos::bind(&mut ldap, dc, op).await?,
            #[cfg(not(feature = "kerberos"))]
            LdapBind::Kerberos => {
                return Err(DirectoryError::new(
                    ErrorKind::Fatal,
                    op,
                    dc,
                    ConfigError::KerberosNotBuilt.to_string(),
                ));
            }
        }
        Ok(ldap)
    }

    /// The SCP's DN: configured, cached, or found on `dc`.
    async fn scp_dn(
        &self,
        ldap: &mut Ldap,
        dc: &str,
        op: DirectoryOperation,
    ) -> Result<String, DirectoryError> {
        if let Some(dn) = self.scp.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(dn);
        }
        let dn = scp::find(ldap, dc, op).await?;
        *self.scp.lock().unwrap_or_else(|p| p.into_inner()) = Some(dn.clone());
        Ok(dn)
    }

    async fn read_on(
        &self,
        ldap: &mut Ldap,
        dc: &str,
        op: DirectoryOperation,
    ) -> Result<(String, CmsLocation), DirectoryError> {
        let dn = self.scp_dn(ldap, dc, op).await?;
        let loc = scp::read(ldap, dc, op, &dn).await?;
        Ok((dn, loc))
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    fn name(&self) -> &str {
        "ldap"
    }

    fn domain_controllers(&self) -> Vec<String> {
        std::iter::once(self.cfg.url.clone())
            .chain(self.cfg.domain_controllers.iter().cloned())
            .collect()
    }

    fn describe_swap(&self, expected: &CmsLocation, new: &CmsLocation) -> Vec<String> {
        let dn = self
            .scp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| {
                format!("(the {SCP_CLASS} object found under the configuration naming context)")
            });
        vec![scp::ldif(&dn, expected, new)]
    }

    async fn read(&self, dc: &str) -> Result<CmsLocation, DirectoryError> {
        let op = DirectoryOperation::Read;
        let mut ldap = self.session(dc, op).await?;
        let r = self.read_on(&mut ldap, dc, op).await.map(|(_, l)| l);
        let _ = ldap.unbind().await;
        r
    }

    async fn compare_and_swap(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
    ) -> Result<(), DirectoryError> {
        let op = DirectoryOperation::CompareAndSwap;
        let mut ldap = self.session(dc, op).await?;
        let r = async {
            let dn = self.scp_dn(&mut ldap, dc, op).await?;
            let mods = swap_mods(expected, new);
            if mods.is_empty() {
                // Nothing to change: succeed only if the value really is `new`.
                return settled(scp::read(&mut ldap, dc, op, &dn).await?, new, |found| {
                    classify::conflict(dc, found)
                });
            }
            tracing::debug!(%dc, %dn, %expected, %new, "directory compare-and-swap");
            let res = ldap
                .modify(&dn, mods)
                .await
                .map_err(|e| classify::error(op, dc, e))?;
            match classify::result(op, dc, res, "modify") {
                Ok(()) => Ok(()),
                Err(e) if e.kind == ErrorKind::InvalidState => {
                    // Refused because a value to delete is absent (or a single value is
                    // already set): someone else changed it — unless it already is `new`
                    // (this is a retry of a swap whose answer was lost).
                    settled(scp::read(&mut ldap, dc, op, &dn).await?, new, |found| {
                        DirectoryError {
                            found: Some(Box::new(found)),
                            ..e
                        }
                    })
                }
                Err(e) => Err(e),
            }
        }
        .await;
        let _ = ldap.unbind().await;
        r
    }
}

/// After a swap that changed nothing or was refused: success when the DC already holds
/// `new` (a retry of a swap whose answer was lost), else the conflict built from what it holds.
fn settled(
    found: CmsLocation,
    new: &CmsLocation,
    conflict: impl FnOnce(CmsLocation) -> DirectoryError,
) -> Result<(), DirectoryError> {
    if &found == new {
        Ok(())
    } else {
        Err(conflict(found))
    }
}

/// The host of an LDAP URL (`ldaps://dc01.contoso.com:636/…` → `dc01.contoso.com`; an IPv6
/// literal without its brackets), `None` when it names none.
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next().unwrap_or(""),
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn the_host_of_a_url() {
        assert_eq!(url_host("ldaps://dc01.cms.test"), Some("dc01.cms.test"));
        assert_eq!(url_host("ldap://dc01.cms.test:389/"), Some("dc01.cms.test"));
        assert_eq!(url_host("ldaps://127.0.0.44:636"), Some("127.0.0.44"));
        assert_eq!(url_host("ldaps://[::1]:636"), Some("::1"));
        assert_eq!(url_host("ldaps://:636"), None);
        assert_eq!(url_host("dc01"), None);
    }
}
