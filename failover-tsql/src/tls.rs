//! Why a TLS handshake with SQL Server failed, recognised from a driver's error text, and
//! what to set instead. Shared by the tiberius (rustls) and ODBC (FreeTDS with GnuTLS or
//! OpenSSL, Microsoft ODBC Driver) backends so both say the same thing.

use std::path::PathBuf;

/// How the server certificate is checked when TLS is on (both SQL backends).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trust {
    /// Against the system's trust store (default).
    #[default]
    SystemRoots,
    /// Against this CA certificate (PEM; tiberius also takes DER) in addition to the system's
    /// trust store (tiberius) or instead of it (FreeTDS).
    CaFile(PathBuf),
    /// Accept any certificate (`TrustServerCertificate=true`). Encrypts but does not
    /// authenticate the server: only for test estates. Runs carry [`UNVERIFIED_CERTIFICATE`].
    TrustServerCertificate,
}

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
pub const FORCED_ENCRYPTION: &str = "the server requires encryption (Force Encryption is on) and \
    connection.tls is \"off\": set tls = \"strict\" with connection.ca_file, the CA of the server \
    certificates";

/// The warning every run with `tls = "trust-server-certificate"` carries in its log and report.
pub const UNVERIFIED_CERTIFICATE: &str = "tls = \"trust-server-certificate\": the connection is \
    encrypted but the server certificate is not checked, so the server is not authenticated (a \
    machine on the path can impersonate it and read the password); for production set tls = \
    \"strict\" with connection.ca_file, the CA of the SQL Server certificates";

/// Checks the certificate of the SQL Server at `addr` the way a strict client would, for a
/// driver that does not say why its handshake failed (FreeTDS reports only "unable to
/// connect"): sends PRELOGIN asking for encryption, runs the TLS handshake inside PRELOGIN
/// packets (MS-TDS 2.2.6.5, 3.2.5.2) with rustls, trusting only `ca_file` and checking
/// `server_name`, and stops once the certificate was judged. Blocking; every read and write
/// is bounded by `timeout`.
///
/// Returns the verifier's refusal text (for [`refusal_message`]), or `None` when the
/// certificate is accepted or the check could not be made (nothing listening, no TLS).
pub fn diagnose(
    addr: std::net::SocketAddr,
    server_name: &str,
    ca_file: &std::path::Path,
    timeout: std::time::Duration,
) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file).ok()? {
        roots.add(c.ok()?).ok()?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).ok()?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    tcp.set_read_timeout(Some(timeout)).ok()?;
    tcp.set_write_timeout(Some(timeout)).ok()?;
    // PRELOGIN: VERSION (offset 11, 6 bytes), ENCRYPTION (offset 17, 1 byte) = ENCRYPT_ON.
    let prelogin = [
        0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF, 0x10, 0, 0, 0, 0, 0, 0x01,
    ];
    tds_send(&mut tcp, &prelogin)?;
    let reply = tds_recv(&mut tcp)?;
    // ENCRYPT_NOT_SUP (2): the server has no certificate, nothing to check.
    if prelogin_encryption(&reply)? == 2 {
        return None;
    }
    for _ in 0..8 {
        while tls.wants_write() {
            let mut out = Vec::new();
            tls.write_tls(&mut out).ok()?;
            tds_send(&mut tcp, &out)?;
        }
        if !tls.is_handshaking() {
            return None;
        }
        let body = tds_recv(&mut tcp)?;
        let mut rest = &body[..];
        while !rest.is_empty() {
            if tls.read_tls(&mut rest).ok()? == 0 {
                break;
            }
            if let Err(e) = tls.process_new_packets() {
                return Some(e.to_string());
            }
        }
    }
    None
}

/// Sends `payload` as a PRELOGIN (0x12) message in packets of at most 4096 bytes.
fn tds_send(w: &mut impl std::io::Write, payload: &[u8]) -> Option<()> {
    let chunks: Vec<&[u8]> = payload.chunks(4096 - 8).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let len = (c.len() + 8) as u16;
        let mut p = vec![0x12, u8::from(last)];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[0, 0, (i as u8).wrapping_add(1), 0]);
        p.extend_from_slice(c);
        w.write_all(&p).ok()?;
    }
    w.flush().ok()
}

/// Reads one whole TDS message (packets up to the end-of-message status bit).
fn tds_recv(r: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 8];
        r.read_exact(&mut h).ok()?;
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let mut body = vec![0u8; len.checked_sub(8)?];
        r.read_exact(&mut body).ok()?;
        out.extend(body);
        if h[1] & 1 == 1 {
            return Some(out);
        }
    }
}

/// The ENCRYPTION option (token 0x01) of a PRELOGIN reply.
fn prelogin_encryption(reply: &[u8]) -> Option<u8> {
    let mut i = 0;
    while *reply.get(i)? != 0xFF {
        let token = reply[i];
        let off = usize::from(u16::from_be_bytes([*reply.get(i + 1)?, *reply.get(i + 2)?]));
        if token == 0x01 {
            return reply.get(off).copied();
        }
        i += 5;
    }
    None
}

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
