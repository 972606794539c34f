//! The SASL GSSAPI bind (cargo feature `kerberos`): the process's Kerberos credentials, the
//! DC's `ldap/<host>` service principal, and every Kerberos problem classified the way the
//! SQL backends classify theirs ([`failover_tsql::kerberos`]), before the bind is sent.

use crate::classify;
use failover_core::{DirectoryError, DirectoryOperation, ErrorKind};
use failover_tsql::TransportError;
use failover_tsql::kerberos::{self as krb, Problem};
use ldap3::{Ldap, LdapError};

/// The service principal of the DC at `url`: `ldap/<host>`.
pub(crate) fn spn(url: &str) -> Option<String> {
    crate::url_host(url).map(|h| format!("ldap/{h}"))
}

/// Binds `ldap` (connected to `dc`) with SASL GSSAPI.
///
/// First the preflight: a service ticket for `ldap/<host>` from the same GSSAPI library and
/// credentials ldap3 then uses (blocking, so on the blocking pool). It turns "no ticket",
/// "clock skew", "unknown SPN", "wrong realm", "KDC unreachable" and "expired" into the
/// messages the operator can act on; ldap3 alone reports them as one formatted GSSAPI string.
pub(crate) async fn bind(
    ldap: &mut Ldap,
    dc: &str,
    op: DirectoryOperation,
) -> Result<(), DirectoryError> {
    let (Some(host), Some(spn)) = (crate::url_host(dc), spn(dc)) else {
        return Err(DirectoryError::new(
            ErrorKind::Fatal,
            op,
            dc,
            format!("`{dc}` names no host for the Kerberos service principal ldap/<host>"),
        ));
    };
    let s = spn.clone();
    tokio::task::spawn_blocking(move || krb::preflight(&s))
        .await
        .map_err(|e| {
            DirectoryError::new(ErrorKind::Fatal, op, dc, format!("Kerberos preflight: {e}"))
        })?
        .map_err(|e| transport(op, dc, e))?;
    let res = ldap
        .sasl_gssapi_bind(host)
        .await
        .map_err(|e| error(op, dc, &spn, e))?;
    classify::result(op, dc, res, "Kerberos bind")
}

/// An ldap3 error of the GSSAPI exchange, classified by its text when it names a known
/// Kerberos problem.
fn error(op: DirectoryOperation, dc: &str, spn: &str, e: LdapError) -> DirectoryError {
    match &e {
        LdapError::GssapiOperationError(text) => match krb::classify_text(text) {
            Some(p) => problem(op, dc, spn, p, text),
            None => DirectoryError::new(
                ErrorKind::Permission,
                op,
                dc,
                format!("Kerberos bind with {spn} failed: {text}; check `klist` and krb5.conf"),
            ),
        },
        LdapError::NoGssapiToken => DirectoryError::new(
            ErrorKind::Fatal,
            op,
            dc,
            format!("the DC answered the Kerberos bind for {spn} without a GSSAPI token"),
        ),
        _ => classify::error(op, dc, e),
    }
}

fn problem(
    op: DirectoryOperation,
    dc: &str,
    spn: &str,
    p: Problem,
    detail: &str,
) -> DirectoryError {
    transport(op, dc, p.error(spn, detail))
}

fn transport(op: DirectoryOperation, dc: &str, e: TransportError) -> DirectoryError {
    let kind = match &e {
        TransportError::Failed { kind, .. } => *kind,
        TransportError::SessionGone(_) => ErrorKind::Unreachable,
    };
    DirectoryError::new(kind, op, dc, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gssapi_errors_name_the_problem_and_the_spn() {
        let op = DirectoryOperation::Read;
        let dc = "ldaps://dc01.cms.test";
        let spn = spn(dc).unwrap();
        assert_eq!(spn, "ldap/dc01.cms.test");
        let e = error(
            op,
            dc,
            &spn,
            LdapError::GssapiOperationError("Server not found in Kerberos database".into()),
        );
        assert_eq!(e.kind, ErrorKind::Permission);
        assert!(e.message.contains("setspn -S ldap/dc01.cms.test "), "{e}");
        let e = error(
            op,
            dc,
            &spn,
            LdapError::GssapiOperationError("Clock skew too great".into()),
        );
        assert!(e.message.contains("clock"), "{e}");
        let e = error(
            op,
            dc,
            &spn,
            LdapError::GssapiOperationError("Cannot contact any KDC for realm".into()),
        );
        assert_eq!(e.kind, ErrorKind::Unreachable);
        let e = error(
            op,
            dc,
            &spn,
            LdapError::GssapiOperationError("No Kerberos credentials available".into()),
        );
        assert!(e.message.contains("kinit"), "{e}");
    }
}
