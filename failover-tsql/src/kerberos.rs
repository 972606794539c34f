//! Kerberos (Windows integrated authentication) shared by the SQL backends: the service
//! principal name a client asks a ticket for, and a *preflight* that obtains that ticket
//! before the driver connects, so a missing ticket, a clock skew, an unregistered SPN, a
//! wrong realm, an unreachable KDC or an expired ticket is reported as exactly that, with
//! what to do, instead of the driver's generic "login failed" / "unable to connect".
//!
//! Neither driver says why GSSAPI failed: tiberius formats libgssapi's error (whose minor
//! status is rendered as a GSS code, so the Kerberos reason is lost) and FreeTDS only writes
//! it to its dump file. The preflight ([`preflight`], cargo feature `gssapi`) asks the same
//! system GSSAPI library, with the same credential cache (`KRB5CCNAME`, or a client keytab
//! in `KRB5_CLIENT_KTNAME`) and the same `MSSQLSvc/<fqdn>:<port>` name, and classifies the
//! Kerberos error code of the minor status. Every problem is [`ErrorKind::Permission`]
//! (retrying does not help) except an unreachable KDC, which is
//! [`ErrorKind::Unreachable`]; all of them happen at login, before any change.

use crate::TransportError;
use failover_core::ErrorKind;

/// The SPN SQL Server registers for a TCP endpoint: `MSSQLSvc/<fqdn>:<port>` ("Register a
/// Service Principal Name for Kerberos Connections", Microsoft Learn). tiberius builds the
/// same name from the host it is given and the port.
pub fn spn(host: &str, port: u16) -> String {
    format!("MSSQLSvc/{host}:{port}")
}

/// Why a Kerberos login cannot work, from the Kerberos error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No credential cache, or no ticket-granting ticket in it.
    NoTicket,
    /// The ticket-granting ticket (or the service ticket) has expired.
    Expired,
    /// This machine's clock and the KDC's differ by more than the allowed skew.
    ClockSkew,
    /// The KDC knows no account with this SPN.
    UnknownSpn,
    /// The realm of the name is not the realm of the ticket (no KDC, no cross-realm trust).
    WrongRealm,
    /// No KDC answered.
    KdcUnreachable,
}

// MIT krb5's com_err codes (krb5.h), as the minor status of a GSSAPI error.
const KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN: i32 = -1765328377;
const KRB5KRB_AP_ERR_TKT_EXPIRED: i32 = -1765328352;
const KRB5KRB_AP_ERR_SKEW: i32 = -1765328347;
const KRB5KDC_ERR_WRONG_REALM: i32 = -1765328316;
const KRB5_CC_NOTFOUND: i32 = -1765328243;
const KRB5_CC_END: i32 = -1765328242;
const KRB5_NO_TKT_SUPPLIED: i32 = -1765328241;
const KRB5_REALM_UNKNOWN: i32 = -1765328230;
const KRB5_KDC_UNREACH: i32 = -1765328228;
const KRB5_FCC_NOFILE: i32 = -1765328189;
const KRB5_REALM_CANT_RESOLVE: i32 = -1765328164;
const KRB5_CONFIG_NODEFREALM: i32 = -1765328160;
const KRB5_CC_NOSUPP: i32 = -1765328137;
const KRB5KDC_ERR_TGT_REVOKED: i32 = -1765328364;

impl Problem {
    /// The problem a Kerberos error code (a GSSAPI minor status) means, if known.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            KRB5_FCC_NOFILE | KRB5_CC_NOTFOUND | KRB5_CC_END | KRB5_NO_TKT_SUPPLIED
            | KRB5_CC_NOSUPP => Self::NoTicket,
            KRB5KRB_AP_ERR_TKT_EXPIRED | KRB5KDC_ERR_TGT_REVOKED => Self::Expired,
            KRB5KRB_AP_ERR_SKEW => Self::ClockSkew,
            KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN => Self::UnknownSpn,
            KRB5KDC_ERR_WRONG_REALM | KRB5_REALM_UNKNOWN | KRB5_CONFIG_NODEFREALM => {
                Self::WrongRealm
            }
            KRB5_KDC_UNREACH | KRB5_REALM_CANT_RESOLVE => Self::KdcUnreachable,
            _ => return None,
        })
    }

    /// The error kind the core acts on.
    pub fn kind(self) -> ErrorKind {
        match self {
            Self::KdcUnreachable => ErrorKind::Unreachable,
            _ => ErrorKind::Permission,
        }
    }

    /// What is wrong and what the operator does about it, for the service `spn`.
    pub fn message(self, spn: &str) -> String {
        match self {
            Self::NoTicket => format!(
                "Kerberos: no ticket for {spn}: this process has no Kerberos credentials (no ticket cache, or no ticket in it); run `kinit <user>@<REALM>` (or point KRB5CCNAME at a ticket cache, or KRB5_CLIENT_KTNAME at a client keytab) and retry"
            ),
            Self::Expired => format!(
                "Kerberos: the ticket has expired (for {spn}); renew it with `kinit` (or `kinit -R`) and retry"
            ),
            Self::ClockSkew => format!(
                "Kerberos: clock skew too great between this machine and the KDC (for {spn}); synchronise the clock (NTP with the domain controllers) and retry"
            ),
            Self::UnknownSpn if spn.starts_with("ldap/") => {
                let host = &spn["ldap/".len()..];
                format!(
                    "Kerberos: the KDC knows no service principal {spn}: name the domain controller in the directory URL by its DNS name (Active Directory registers ldap/<dc fqdn> on the DC's computer account), or register this one on it: `setspn -S {spn} <domain>\\<DC name>$`{}",
                    if host.parse::<std::net::IpAddr>().is_ok() {
                        " (an IP address needs that SPN: Microsoft, \"Configuring Kerberos for IP Addresses\")"
                    } else {
                        ""
                    }
                )
            }
            Self::UnknownSpn => {
                let port_or_instance = spn.rsplit(':').next().unwrap_or("<port>");
                let host = spn
                    .strip_prefix("MSSQLSvc/")
                    .and_then(|s| s.rsplit_once(':'))
                    .map_or("<fqdn>", |(h, _)| h);
                format!(
                    "Kerberos: the KDC knows no service principal {spn}: register it on the account SQL Server runs as, e.g. `setspn -S MSSQLSvc/{host}:{port_or_instance} <domain>\\<sql service account>` (or connect by the name the SPN is registered under)"
                )
            }
            Self::WrongRealm => format!(
                "Kerberos: wrong realm for {spn}: the ticket's realm has no KDC or trust for this name; check default_realm and [domain_realm] in krb5.conf (KRB5_CONFIG), and `kinit` as a user of the SQL Server's domain"
            ),
            Self::KdcUnreachable => format!(
                "Kerberos: no KDC answered while getting a ticket for {spn}; check the kdc entries of the realm in krb5.conf (KRB5_CONFIG), DNS SRV records and the network path to the domain controllers (port 88)"
            ),
        }
    }

    /// A [`TransportError`] for this problem.
    pub fn error(self, spn: &str, detail: &str) -> TransportError {
        let mut m = self.message(spn);
        if !detail.is_empty() {
            m.push_str(&format!(" ({detail})"));
        }
        TransportError::failed(self.kind(), m)
    }
}

/// Classifies a driver's Kerberos error text (tiberius's `Gssapi` error, an ODBC
/// diagnostic) when no error code is available; `None` when it names no known problem.
pub fn classify_text(text: &str) -> Option<Problem> {
    let t = text.to_ascii_lowercase();
    let any = |keys: &[&str]| keys.iter().any(|k| t.contains(k));
    Some(if any(&["clock skew"]) {
        Problem::ClockSkew
    } else if any(&["server not found in kerberos database"]) {
        Problem::UnknownSpn
    } else if any(&["cannot contact any kdc", "cannot resolve servers for kdc"]) {
        Problem::KdcUnreachable
    } else if any(&[
        "ticket expired",
        "credentials have expired",
        "credentials expired",
    ]) {
        Problem::Expired
    } else if any(&[
        "no credentials cache",
        "no kerberos credentials",
        "matching credential not found",
        "no credentials were supplied",
    ]) {
        Problem::NoTicket
    } else if any(&["cannot find kdc for realm", "wrong realm"]) {
        Problem::WrongRealm
    } else {
        return None;
    })
}

/// Obtains a service ticket for `spn` with the process's Kerberos credentials (blocking:
/// it may talk to the KDC). `Ok` when a first context token could be made, which is what
/// the driver then does itself; otherwise the classified problem.
#[cfg(feature = "gssapi")]
pub fn preflight(spn: &str) -> Result<(), TransportError> {
    use libgssapi::context::{ClientCtx, CtxFlags};
    use libgssapi::credential::{Cred, CredUsage};
    use libgssapi::name::Name;
    use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL, OidSet};
    // The minor status carries the Kerberos error code; libgssapi's Display renders it as
    // a GSS routine code (losing the reason), so only the numbers are used here.
    let fail = |e: libgssapi::error::Error| {
        let code = e.minor as i32;
        match Problem::from_code(code) {
            Some(p) => p.error(spn, &format!("krb5 error {code}")),
            None if e
                .major
                .contains(libgssapi::error::MajorFlags::GSS_S_CREDENTIALS_EXPIRED) =>
            {
                Problem::Expired.error(spn, "")
            }
            None if e
                .major
                .contains(libgssapi::error::MajorFlags::GSS_S_NO_CRED) =>
            {
                Problem::NoTicket.error(spn, "")
            }
            None => TransportError::failed(
                ErrorKind::Permission,
                format!(
                    "Kerberos: cannot get a ticket for {spn} (GSSAPI major {:#x}, krb5 error {code}); check `klist` and the realm configuration",
                    e.major.bits()
                ),
            ),
        }
    };
    let mut mechs = OidSet::new();
    mechs.add(GSS_MECH_KRB5).map_err(fail)?;
    let cred = Cred::acquire(None, None, CredUsage::Initiate, Some(&mechs)).map_err(fail)?;
    let name = Name::new(spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(fail)?;
    // The realms of the ticket and of the service, to tell a wrong realm from a missing SPN
    // (the KDC answers "unknown principal" to both).
    let realm = |n: Option<String>| n.and_then(|n| n.rsplit_once('@').map(|(_, r)| r.to_string()));
    let client_realm = realm(cred.name().ok().map(|n| n.to_string()));
    let service_realm = realm(
        name.canonicalize(Some(GSS_MECH_KRB5))
            .ok()
            .map(|n| n.to_string()),
    );
    let mut ctx = ClientCtx::new(
        Some(cred),
        name,
        CtxFlags::GSS_C_MUTUAL_FLAG,
        Some(GSS_MECH_KRB5),
    );
    match ctx.step(None, None) {
        Ok(_) => Ok(()),
        Err(e)
            if Problem::from_code(e.minor as i32) == Some(Problem::UnknownSpn)
                && client_realm.is_some()
                && client_realm != service_realm =>
        {
            Err(Problem::WrongRealm.error(
                spn,
                &format!(
                    "the ticket is for realm {}, the service is looked up in realm {}",
                    client_realm.unwrap_or_default(),
                    service_realm.unwrap_or_else(|| "?".into())
                ),
            ))
        }
        Err(e) => Err(fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_texts_name_the_problem() {
        assert_eq!(
            Problem::from_code(KRB5KRB_AP_ERR_SKEW),
            Some(Problem::ClockSkew)
        );
        assert_eq!(Problem::from_code(KRB5_FCC_NOFILE), Some(Problem::NoTicket));
        assert_eq!(
            Problem::from_code(KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN),
            Some(Problem::UnknownSpn)
        );
        assert_eq!(
            Problem::from_code(KRB5_KDC_UNREACH),
            Some(Problem::KdcUnreachable)
        );
        assert_eq!(Problem::from_code(0), None);
        assert_eq!(
            classify_text("Server not found in Kerberos database"),
            Some(Problem::UnknownSpn)
        );
        assert_eq!(
            classify_text("Cannot contact any KDC for realm 'CMS.TEST'"),
            Some(Problem::KdcUnreachable)
        );
        assert_eq!(classify_text("Login failed for user"), None);
    }

    #[test]
    fn messages_say_what_to_do() {
        let spn = spn("sql-a.cms.test", 1433);
        assert_eq!(spn, "MSSQLSvc/sql-a.cms.test:1433");
        assert!(Problem::NoTicket.message(&spn).contains("kinit"));
        let m = Problem::UnknownSpn.message(&spn);
        assert!(m.contains("setspn -S MSSQLSvc/sql-a.cms.test:1433 "), "{m}");
        let m = Problem::UnknownSpn.message("ldap/dc01.cms.test");
        assert!(m.contains("setspn -S ldap/dc01.cms.test "), "{m}");
        assert_eq!(Problem::KdcUnreachable.kind(), ErrorKind::Unreachable);
        assert_eq!(Problem::ClockSkew.kind(), ErrorKind::Permission);
    }
}
