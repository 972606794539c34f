//! Why a TLS handshake with SQL Server failed, recognised from a driver's error text, and
//! what to set instead. Shared by the tiberius (rustls) and ODBC (FreeTDS with GnuTLS or
//! OpenSSL, Microsoft ODBC Driver) backends so both say the same thing.

/// A certificate the client refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertProblem {
    /// Signed by a CA the client does not trust (or self-signed).
    UnknownIssuer,
    /// Valid, but not for the name the client connected to.
    WrongName,
    /// Outside its validity period.
    Expired,
}

impl CertProblem {
    /// Recognises the refusal in a driver's TLS error text (rustls, OpenSSL, GnuTLS, SChannel
    /// wording), or `None` when the text names none of the three.
    pub fn recognise(text: &str) -> Option<Self> {
        let t = text.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
        if any(&[
            "notvalidforname",
            "hostname mismatch",
            "does not match",
            "name mismatch",
            "not valid for name",
        ]) {
            Some(Self::WrongName)
        } else if any(&["expired", "notvalidyet", "not yet valid"]) {
            Some(Self::Expired)
        } else if any(&[
            "unknownissuer",
            "unknown issuer",
            "unknown ca",
            "self signed",
            "self-signed",
            "unable to get local issuer",
            "signer not found",
            "not trusted",
            "untrusted",
        ]) {
            Some(Self::UnknownIssuer)
        } else {
            None
        }
    }

    /// One sentence: what was wrong and what to set.
    pub fn hint(self) -> &'static str {
        match self {
            Self::UnknownIssuer => {
                "the server certificate is signed by a CA this client does not trust: set \
                 connection.ca_file to the PEM file of the CA that signed the SQL Server \
                 certificates (or, for a lab server only, tls = \"trust-server-certificate\")"
            }
            Self::WrongName => {
                "the server certificate is not valid for the name connected to: connect by the \
                 name in the certificate (the instance FQDN), or reissue the certificate with \
                 that name in its subject alternative names"
            }
            Self::Expired => {
                "the server certificate has expired (or is not yet valid): renew the SQL Server \
                 certificate, and check this machine's clock"
            }
        }
    }
}

/// The message for a refused TLS handshake: the driver's own text, then which of the three
/// problems it was and what to set, when recognised.
pub fn refusal_message(driver_text: &str) -> String {
    match CertProblem::recognise(driver_text) {
        Some(p) => format!("TLS handshake refused: {}; {driver_text}", p.hint()),
        None => format!("TLS handshake failed: {driver_text}"),
    }
}

/// The message when the client would not encrypt and the server forces encryption.
pub const FORCED_ENCRYPTION: &str = "the server forces encryption (Force Encryption is on) and \
    connection.tls is \"off\": set tls = \"strict\" with connection.ca_file, the CA of the server \
    certificates";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_rustls_openssl_and_gnutls_wording() {
        let cases = [
            (
                "invalid peer certificate: UnknownIssuer",
                Some(CertProblem::UnknownIssuer),
            ),
            (
                "invalid peer certificate: NotValidForName",
                Some(CertProblem::WrongName),
            ),
            (
                "invalid peer certificate: Expired",
                Some(CertProblem::Expired),
            ),
            (
                "certificate verify failed: self signed certificate",
                Some(CertProblem::UnknownIssuer),
            ),
            (
                "The certificate is NOT trusted. The certificate issuer is unknown.",
                Some(CertProblem::UnknownIssuer),
            ),
            ("The certificate has expired", Some(CertProblem::Expired)),
            ("connection reset by peer", None),
        ];
        for (text, want) in cases {
            assert_eq!(CertProblem::recognise(text), want, "{text}");
        }
        let m = refusal_message("invalid peer certificate: Expired");
        assert!(m.contains("expired") && m.contains("renew"), "{m}");
        assert!(refusal_message("eof").starts_with("TLS handshake failed"));
    }
}
