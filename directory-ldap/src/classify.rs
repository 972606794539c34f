//! LDAP errors and result codes classified into the core's error kinds (RFC 4511 §4.1.9 and
//! Appendix A for the codes).

use failover_core::{CmsLocation, DirectoryError, DirectoryOperation, ErrorKind};
use ldap3::LdapError;
use ldap3::result::LdapResult;

/// A client-side failure.
pub(crate) fn error(op: DirectoryOperation, dc: &str, e: LdapError) -> DirectoryError {
    let (kind, message) = match &e {
        LdapError::Timeout { .. } => (ErrorKind::Timeout, format!("no answer in time ({e})")),
        LdapError::Io { source } => match tls_cause(source) {
            Some(tls) => (ErrorKind::Fatal, tls_message(dc, &tls)),
            None => (
                ErrorKind::Unreachable,
                format!("cannot talk to the DC: {source}"),
            ),
        },
        LdapError::Rustls { source } => (ErrorKind::Fatal, tls_message(dc, &source.to_string())),
        LdapError::LdapResult { result } => return code(op, dc, result, "request"),
        LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) | LdapError::DNSName { .. } => {
            (ErrorKind::Fatal, format!("bad domain controller URL: {e}"))
        }
        LdapError::EndOfStream | LdapError::ResultRecv { .. } | LdapError::OpSend { .. } => (
            ErrorKind::Unreachable,
            format!("the connection to the DC broke: {e}"),
        ),
        _ => (ErrorKind::Fatal, e.to_string()),
    };
    DirectoryError::new(kind, op, dc, message)
}

/// A TLS failure hidden inside an I/O error (tokio-rustls reports handshake failures so).
fn tls_cause(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?;
    if let Some(r) = inner.downcast_ref::<rustls::Error>() {
        return Some(r.to_string());
    }
    let text = inner.to_string();
    (text.contains("certificate") || text.contains("tls") || text.contains("TLS")).then_some(text)
}

fn tls_message(dc: &str, what: &str) -> String {
    let hint = if what.contains("UnknownIssuer") || what.contains("unknown issuer") {
        "the DC's certificate is not signed by a CA in `ca_file`: set ca_file to the CA that issued it"
    } else if what.contains("NotValidForName") || what.contains("not valid for name") {
        "the DC's certificate does not name the host in the URL: use the DC's name as it appears in its certificate"
    } else if what.contains("Expired") || what.contains("expired") {
        "the DC's certificate has expired: renew it on the DC"
    } else {
        "check the DC's certificate and `ca_file`"
    };
    format!("TLS with {dc} failed ({what}): {hint}")
}

/// An LDAP result: success, or its code classified.
pub(crate) fn result(
    op: DirectoryOperation,
    dc: &str,
    r: LdapResult,
    what: &str,
) -> Result<(), DirectoryError> {
    if r.rc == 0 {
        Ok(())
    } else {
        Err(code(op, dc, &r, what))
    }
}

fn code(op: DirectoryOperation, dc: &str, r: &LdapResult, what: &str) -> DirectoryError {
    let text = if r.text.is_empty() {
        String::new()
    } else {
        format!(": {}", r.text.trim())
    };
    let (kind, why) = match r.rc {
        49 if what.starts_with("Kerberos") => (
            ErrorKind::Permission,
            "invalid credentials (49): the DC refused the Kerberos ticket's principal (disabled, locked or expired account?); check `klist` and the account in Active Directory".to_string(),
        ),
        49 => (
            ErrorKind::Permission,
            "invalid credentials (49): check the bind user and the password in its environment variable or file".to_string(),
        ),
        50 => (
            ErrorKind::Permission,
            "insufficient access rights (50): the bind user may not read or change the service control point (Skype for Business needs RTCUniversalServerAdmins or a delegated right)".to_string(),
        ),
        8 | 13 => (
            ErrorKind::Fatal,
            format!("the DC demands a stronger or encrypted connection ({}): use ldaps:// or StartTLS", r.rc),
        ),
        16 => (
            ErrorKind::InvalidState,
            "no such attribute value (16): the stored value is not the expected one, someone else changed it".to_string(),
        ),
        19 | 20 => (
            ErrorKind::InvalidState,
            format!("the attribute already holds another value ({}): someone else changed it", r.rc),
        ),
        32 => (
            ErrorKind::InvalidState,
            "no such object (32): the service control point's DN does not exist on this DC".to_string(),
        ),
        51 | 52 => (ErrorKind::Transient, format!("the DC is busy or unavailable ({})", r.rc)),
        53 => (ErrorKind::InvalidState, "the DC is unwilling to perform it (53)".to_string()),
        81 => (ErrorKind::Unreachable, "the DC is down (81)".to_string()),
        n => (ErrorKind::Fatal, format!("LDAP result code {n}")),
    };
    DirectoryError::new(kind, op, dc, format!("{what} refused: {why}{text}"))
}

/// The compare-and-swap conflict, with the value found.
pub(crate) fn conflict(dc: &str, found: CmsLocation) -> DirectoryError {
    DirectoryError {
        found: Some(Box::new(found.clone())),
        ..DirectoryError::new(
            ErrorKind::InvalidState,
            DirectoryOperation::CompareAndSwap,
            dc,
            format!("the directory holds {found}, not the expected value: someone else changed it"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(rc: u32) -> LdapResult {
        LdapResult {
            rc,
            matched: String::new(),
            text: "detail".into(),
            refs: vec![],
            ctrls: vec![],
        }
    }

    #[test]
    fn result_codes_map_to_kinds() {
        let op = DirectoryOperation::CompareAndSwap;
        let k = |rc| result(op, "ldaps://dc", r(rc), "modify").unwrap_err().kind;
        assert!(result(op, "ldaps://dc", r(0), "modify").is_ok());
        assert_eq!(k(49), ErrorKind::Permission);
        assert_eq!(k(50), ErrorKind::Permission);
        assert_eq!(k(16), ErrorKind::InvalidState);
        assert_eq!(k(20), ErrorKind::InvalidState);
        assert_eq!(k(32), ErrorKind::InvalidState);
        assert_eq!(k(51), ErrorKind::Transient);
        assert_eq!(k(81), ErrorKind::Unreachable);
        assert_eq!(k(80), ErrorKind::Fatal);
        let e = result(op, "ldaps://dc", r(16), "modify").unwrap_err();
        assert!(e.is_conflict());
        assert!(e.message.contains("detail"), "{e}");
    }

    #[test]
    fn io_errors_are_unreachable_and_timeouts_timeouts() {
        let op = DirectoryOperation::Read;
        let io = LdapError::Io {
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        };
        assert_eq!(error(op, "ldaps://dc", io).kind, ErrorKind::Unreachable);
        let tls = LdapError::Io {
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
        };
        let e = error(op, "ldaps://dc", tls);
        assert_eq!(e.kind, ErrorKind::Fatal);
        assert!(e.message.contains("ca_file"), "{e}");
    }
}
