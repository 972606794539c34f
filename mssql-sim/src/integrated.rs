//! Integrated security (Windows authentication, Kerberos): the LOGIN7 `fIntSecurity` flag,
//! the SSPI legs, and the mapping of the authenticated principal to a login.
//!
//! The exchange follows MS-TDS 2.2.6.4 (LOGIN7 `ibSSPI`/`cbSSPI` carry the client's first
//! token), 2.2.6.8 (each further client leg is an SSPI message, packet type 0x11) and
//! 2.2.7.22 (the server answers each leg with an SSPI token, 0xED, in a token stream; the
//! last one, if any, travels with the LOGINACK). The tokens are verified by a GSSAPI acceptor
//! (MIT krb5 through the `libgssapi` crate, cargo feature `gssapi`) whose keys come from the
//! keytab named by `KRB5_KTNAME` (MIT's standard variable), e.g. the one `samba-tool domain
//! exportkeytab` writes for `MSSQLSvc/<fqdn>:<port>`.
//!
//! Refusals use SQL Server's numbers (learn.microsoft.com/sql/relational-databases/errors-events/mssqlserver-18456-database-engine-error
//! and …/mssqlserver-18452-database-engine-error): a principal no login admits gets 18456
//! "Login failed for user '…'."; a token that does not verify (wrong service, expired or
//! forged ticket) or a server without integrated security gets 18452 "Login failed. The
//! login is from an untrusted domain and cannot be used with Integrated authentication."
//! Both are class 14, state 1 (the real state is only written to the server's log), and the
//! connection closes.

use crate::service::{LoginAccepted, LoginRefused, LoginRequest, Service, SqlMessage};
use failover_core::InstanceAddr;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;

/// `[[windows_login]]` in the estate file: a Windows (Kerberos) principal allowed to log in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsLogin {
    /// The Kerberos principal, `user@REALM` (compared case-insensitively, as Windows does).
    pub principal: String,
    /// The login name sessions see (`DOMAIN\user`); absent: the principal.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the login is in the sysadmin role (recorded; the simulator has no permission
    /// model yet, so it does not restrict anyone).
    #[serde(default)]
    pub sysadmin: bool,
}

/// Integrated security for one instance: the logins it admits and the service principal
/// names clients may address it by.
#[derive(Debug, Clone, Default)]
pub struct IntegratedAuth {
    /// Principals admitted.
    pub logins: Vec<WindowsLogin>,
    /// `MSSQLSvc/<fqdn>:<port>` and, for a named instance, `MSSQLSvc/<fqdn>:<instance>`
    /// (without realm): a ticket for any other service is refused.
    pub spns: Vec<String>,
}

impl IntegratedAuth {
    /// The SPNs of `instance` listening on `port`, as SQL Server registers them
    /// (learn.microsoft.com/sql/database-engine/configure-windows/register-a-service-principal-name-for-kerberos-connections).
    pub fn spns_for(instance: &InstanceAddr, port: u16) -> Vec<String> {
        let text = instance.to_string();
        let (host, name) = match text.split_once('\\') {
            Some((h, n)) => (h.to_string(), Some(n.to_string())),
            None => (text.clone(), None),
        };
        let mut spns = vec![format!("MSSQLSvc/{host}:{port}")];
        if let Some(n) = name {
            spns.push(format!("MSSQLSvc/{host}:{n}"));
        }
        spns
    }

    /// The login admitting `principal`, if any.
    pub fn login_for(&self, principal: &str) -> Option<&WindowsLogin> {
        self.logins
            .iter()
            .find(|l| l.principal.eq_ignore_ascii_case(principal))
    }

    /// Whether `target` (`service/host:port[@REALM]`) is one of this instance's SPNs.
    pub fn serves(&self, target: &str) -> bool {
        let bare = target.split_once('@').map_or(target, |(s, _)| s);
        self.spns.iter().any(|s| s.eq_ignore_ascii_case(bare))
    }
}

/// 18452: the token did not verify or integrated security is not available.
pub fn untrusted_domain() -> SqlMessage {
    SqlMessage::new(
        18452,
        14,
        1,
        "Login failed. The login is from an untrusted domain and cannot be used with \
         Integrated authentication.",
    )
}

/// 18456 for a principal no login admits. SQL Server names a Windows user `DOMAIN\user`;
/// the simulator takes the first label of the realm as the domain's NetBIOS name (an
/// inference: that is the default `samba-tool domain provision` and Windows setup pick).
pub fn login_failed(principal: &str) -> SqlMessage {
    let shown = match principal.split_once('@') {
        Some((user, realm)) => format!("{}\\{user}", realm.split('.').next().unwrap_or(realm)),
        None => principal.to_string(),
    };
    SqlMessage::new(18456, 14, 1, format!("Login failed for user '{shown}'."))
}

/// One step of the acceptor's side of the exchange.
#[derive(Debug)]
pub enum Step {
    /// Send this token (0xED) and wait for the client's next SSPI message.
    Continue(Vec<u8>),
    /// Authenticated as `principal` for `target`; send the optional last token with the
    /// LOGINACK.
    Done {
        /// The client's principal (`user@REALM`).
        principal: String,
        /// The service principal the ticket was for.
        target: String,
        /// The last token, if the mechanism has one (Kerberos mutual authentication).
        last: Option<Vec<u8>>,
    },
}

/// A GSSAPI security context being accepted.
pub trait Acceptor: Send {
    /// Feeds the client's next token.
    fn step(&mut self, token: &[u8]) -> Result<Step, String>;
}

/// Starts accepting a context (with the feature `gssapi`; otherwise integrated security is
/// unavailable and every such login gets 18452).
pub fn new_acceptor() -> Result<Box<dyn Acceptor>, String> {
    #[cfg(feature = "gssapi")]
    {
        crate::gss::GssAcceptor::new().map(|a| Box::new(a) as Box<dyn Acceptor>)
    }
    #[cfg(not(feature = "gssapi"))]
    {
        Err("mssql-sim was built without the `gssapi` feature".into())
    }
}

/// Wraps a service with integrated security: [`Service::integrated`] returns `auth`.
#[derive(Debug)]
pub struct WithIntegrated<S> {
    inner: S,
    auth: Option<Arc<IntegratedAuth>>,
}

impl<S> WithIntegrated<S> {
    /// Wraps `inner`; `None` leaves integrated security off.
    pub fn new(inner: S, auth: Option<Arc<IntegratedAuth>>) -> Self {
        Self { inner, auth }
    }
}

impl<S: Service> Service for WithIntegrated<S> {
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

    fn tls(&self) -> Option<crate::tls::ServerTls> {
        self.inner.tls()
    }

    fn integrated(&self) -> Option<Arc<IntegratedAuth>> {
        self.auth.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spns_and_mapping() {
        let i: InstanceAddr = "sql-a.cms.test\\RTC".parse().unwrap();
        let auth = IntegratedAuth {
            logins: vec![WindowsLogin {
                principal: "cmsuser@CMS.TEST".into(),
                name: Some("CMS\\cmsuser".into()),
                sysadmin: true,
            }],
            spns: IntegratedAuth::spns_for(&i, 1433),
        };
        assert_eq!(
            auth.spns,
            [
                "MSSQLSvc/sql-a.cms.test:1433",
                "MSSQLSvc/sql-a.cms.test:RTC"
            ]
        );
        assert!(auth.serves("MSSQLSvc/sql-a.cms.test:1433@CMS.TEST"));
        assert!(auth.serves("mssqlsvc/SQL-A.cms.test:RTC"));
        assert!(!auth.serves("MSSQLSvc/sql-b.cms.test:1433@CMS.TEST"));
        assert!(auth.login_for("CMSUSER@cms.test").is_some());
        assert!(auth.login_for("intruder@CMS.TEST").is_none());
        let d: InstanceAddr = "sql-b.cms.test".parse().unwrap();
        assert_eq!(
            IntegratedAuth::spns_for(&d, 1434),
            ["MSSQLSvc/sql-b.cms.test:1434"]
        );
        assert_eq!(
            login_failed("intruder@CMS.TEST").message,
            "Login failed for user 'CMS\\intruder'."
        );
        assert_eq!(untrusted_domain().number, 18452);
    }
}

/// How long the client may take to send its next SSPI leg.
const LEG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// More legs than any Kerberos or SPNEGO exchange needs: a client still going is refused.
const MAX_LEGS: usize = 8;

/// The result of [`authenticate`].
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Authenticated: log in as `login`; send `last` (an SSPI token) with the LOGINACK.
    Accepted {
        login: String,
        last: Option<Vec<u8>>,
    },
    /// Answer with this error and close.
    Refused(SqlMessage),
    /// The client went away.
    Closed,
}

/// Runs the SSPI exchange of an integrated-security LOGIN7 (`login7`, its payload) on this
/// connection: the first token from LOGIN7, then SSPI tokens out and SSPI messages in until
/// the context is established (MS-TDS 3.2.5.1 / 3.3.5.1, "Sent LOGIN7 Record with SSPI" and
/// the SSPI message flow). `auth` is the instance's configuration (`None`: integrated
/// security is not available, 18452).
pub(crate) async fn authenticate<W: tokio::io::AsyncWrite + Unpin>(
    login7: &[u8],
    auth: Option<&IntegratedAuth>,
    rx: &mut tokio::sync::mpsc::Receiver<crate::tds::packet::Message>,
    wr: &mut W,
) -> std::io::Result<Outcome> {
    use crate::tds::{packet, sspi};
    let Some(auth) = auth else {
        tracing::info!("integrated-security login on an instance without it: refused");
        return Ok(Outcome::Refused(untrusted_domain()));
    };
    let Some(first) = sspi::login_token(login7) else {
        tracing::info!("LOGIN7 asks for integrated security but carries no SSPI data");
        return Ok(Outcome::Refused(untrusted_domain()));
    };
    let mut acceptor = match new_acceptor() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "integrated security unavailable");
            return Ok(Outcome::Refused(untrusted_domain()));
        }
    };
    let mut token = first.to_vec();
    for _ in 0..MAX_LEGS {
        match acceptor.step(&token) {
            Err(e) => {
                tracing::info!(error = %e, "the client's SSPI token did not verify");
                return Ok(Outcome::Refused(untrusted_domain()));
            }
            Ok(Step::Done {
                principal,
                target,
                last,
            }) => {
                if !auth.serves(&target) {
                    tracing::info!(%principal, %target, spns = ?auth.spns, "ticket for another service");
                    return Ok(Outcome::Refused(untrusted_domain()));
                }
                let Some(login) = auth.login_for(&principal) else {
                    tracing::info!(%principal, "no login for this principal");
                    return Ok(Outcome::Refused(login_failed(&principal)));
                };
                let login = login.name.clone().unwrap_or(principal);
                return Ok(Outcome::Accepted { login, last });
            }
            Ok(Step::Continue(out)) => {
                let mut buf = Vec::new();
                if sspi::push_token(&mut buf, &out).is_err() {
                    return Ok(Outcome::Refused(untrusted_domain()));
                }
                packet::write_reply(wr, &buf, crate::conn::DEFAULT_PACKET_SIZE, 0).await?;
                match tokio::time::timeout(LEG_TIMEOUT, rx.recv()).await {
                    Err(_) => {
                        tracing::info!("no SSPI message within {LEG_TIMEOUT:?}: closing");
                        return Ok(Outcome::Closed);
                    }
                    Ok(None) => return Ok(Outcome::Closed),
                    Ok(Some(m)) if m.ty == sspi::SSPI_MESSAGE => token = m.data,
                    Ok(Some(m)) => {
                        return Err(std::io::Error::other(format!(
                            "expected an SSPI message, got packet type 0x{:02X}",
                            m.ty
                        )));
                    }
                }
            }
        }
    }
    tracing::info!("SSPI exchange did not finish within {MAX_LEGS} legs");
    Ok(Outcome::Refused(untrusted_domain()))
}
