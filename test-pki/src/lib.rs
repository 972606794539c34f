//! A throw-away PKI made at test time (with `rcgen`), written as PEM files to a temporary
//! directory that is removed when the [`TestPki`] is dropped.
//!
//! It holds:
//! - a CA ([`TestPki::ca_cert`]) and one server certificate per simulated instance
//!   ([`TestPki::server`]), signed by that CA, with the instance's host name as subject CN and
//!   DNS SAN plus the IP SAN `127.0.0.1` (the simulator listens on loopback);
//! - the broken ones a client must refuse: [`TestPki::wrong_name`] (signed by the CA, but only
//!   for [`WRONG_NAME`]), [`TestPki::expired`] (signed by the CA for every host, validity
//!   ended yesterday), [`TestPki::self_signed`] (every host, signed by nobody the client
//!   trusts), and [`TestPki::other_ca_cert`] (a second CA that signed none of the certificates,
//!   for "the client trusts the wrong CA").
//!
//! ```no_run
//! let pki = test_pki::TestPki::generate(["sql-a.cms.test\\RTC", "sql-b.cms.test"]).unwrap();
//! let a = pki.server("sql-a.cms.test\\RTC").unwrap();
//! // serve with a.cert / a.key; clients trust pki.ca_cert() and connect to "sql-a.cms.test"
//! # let _ = a;
//! ```
#![warn(missing_docs)]

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The only name in the [`TestPki::wrong_name`] certificate.
pub const WRONG_NAME: &str = "wrong-name.invalid";

/// The IP address every instance certificate also names (the simulator's loopback address).
pub const LOOPBACK: &str = "127.0.0.1";

/// The test PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A name cannot go into a certificate (not a DNS name or IP address).
    #[error("test PKI: `{name}` cannot be a certificate name: {source}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// Key or certificate generation failed.
    #[error("test PKI: cannot generate {what}: {source}")]
    Generate {
        /// Which certificate.
        what: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("test PKI: cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// The certificate (PEM, one `CERTIFICATE` block).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8 `PRIVATE KEY`, ECDSA P-256).
    pub key: PathBuf,
    /// The names the certificate carries (DNS names and IP addresses, as text).
    pub names: Vec<String>,
}

/// The host part of an instance name: `sql-a.cms.test\RTC` → `sql-a.cms.test`.
pub fn host_of(instance: &str) -> &str {
    instance.split('\\').next().unwrap_or(instance)
}

/// A CA, per-instance server certificates and the broken certificates, in a temp directory.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    servers: BTreeMap<String, CertKey>,
    wrong_name: CertKey,
    expired: CertKey,
    self_signed: CertKey,
}

impl TestPki {
    /// Makes the PKI for these instances (`fqdn[\instance]` or plain host names; several
    /// instances on one host share its certificate). Takes a few milliseconds.
    pub fn generate<I, S>(instances: I) -> Result<Self, PkiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let dir = tempfile::Builder::new()
            .prefix("test-pki-")
            .tempdir()
            .map_err(|source| PkiError::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        let hosts: Vec<String> = {
            let mut h: Vec<String> = instances
                .into_iter()
                .map(|i| host_of(i.as_ref()).to_ascii_lowercase())
                .collect();
            h.sort();
            h.dedup();
            h
        };
        let now = OffsetDateTime::now_utc();

        let (ca_params, ca_key) = new_ca("cms-failover test CA", now)?;
        let ca = write_cert(
            dir.path(),
            "ca.pem",
            &ca_params
                .self_signed(&ca_key)
                .map_err(failed("the CA"))?
                .pem(),
        )?;
        let issuer = Issuer::new(ca_params, ca_key);

        let (other_params, other_key) = new_ca("cms-failover other test CA", now)?;
        let other_ca = write_cert(
            dir.path(),
            "other-ca.pem",
            &other_params
                .self_signed(&other_key)
                .map_err(failed("the other CA"))?
                .pem(),
        )?;

        let valid = (now - Duration::days(1), now + Duration::days(365));
        let mut servers = BTreeMap::new();
        for host in &hosts {
            let names = vec![host.clone(), LOOPBACK.to_string()];
            let ck = leaf(dir.path(), host, &names, valid, Some(&issuer))?;
            servers.insert(host.clone(), ck);
        }
        let mut every: Vec<String> = hosts.clone();
        every.push(LOOPBACK.to_string());
        let wrong_name = leaf(
            dir.path(),
            "wrong-name",
            &[WRONG_NAME.to_string()],
            valid,
            Some(&issuer),
        )?;
        let expired = leaf(
            dir.path(),
            "expired",
            &every,
            (now - Duration::days(30), now - Duration::days(1)),
            Some(&issuer),
        )?;
        let self_signed = leaf(dir.path(), "self-signed", &every, valid, None)?;
        Ok(Self {
            dir,
            ca,
            other_ca,
            servers,
            wrong_name,
            expired,
            self_signed,
        })
    }

    /// The directory holding every file (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM, exactly one certificate) that signed the server certificates.
    pub fn ca_cert(&self) -> &Path {
        &self.ca
    }

    /// A second CA that signed none of the certificates ("the wrong CA").
    pub fn other_ca_cert(&self) -> &Path {
        &self.other_ca
    }

    /// The valid server certificate for an instance (`fqdn[\instance]` or host name).
    pub fn server(&self, instance: &str) -> Option<&CertKey> {
        self.servers.get(&host_of(instance).to_ascii_lowercase())
    }

    /// Every host with a server certificate.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    /// Signed by the CA, valid, but only for [`WRONG_NAME`].
    pub fn wrong_name(&self) -> &CertKey {
        &self.wrong_name
    }

    /// Signed by the CA for every host and `127.0.0.1`, but its validity ended yesterday.
    pub fn expired(&self) -> &CertKey {
        &self.expired
    }

    /// Valid for every host and `127.0.0.1`, but self-signed.
    pub fn self_signed(&self) -> &CertKey {
        &self.self_signed
    }
}

fn failed(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

fn new_ca(cn: &str, now: OffsetDateTime) -> Result<(CertificateParams, KeyPair), PkiError> {
    let key = KeyPair::generate().map_err(failed(cn))?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(failed(cn))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(3650);
    Ok((p, key))
}

fn leaf(
    dir: &Path,
    stem: &str,
    names: &[String],
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    issuer: Option<&Issuer<'_, KeyPair>>,
) -> Result<CertKey, PkiError> {
    let key = KeyPair::generate().map_err(failed(stem))?;
    let mut p = CertificateParams::new(names.to_vec()).map_err(|source| PkiError::BadName {
        name: names.join(", "),
        source,
    })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = not_before;
    p.not_after = not_after;
    let cert = match issuer {
        Some(i) => p.signed_by(&key, i),
        None => p.self_signed(&key),
    }
    .map_err(failed(stem))?;
    let cert = write_cert(dir, &format!("{stem}.pem"), &cert.pem())?;
    let key_path = dir.join(format!("{stem}.key"));
    write(&key_path, &key.serialize_pem())?;
    Ok(CertKey {
        cert,
        key: key_path,
        names: names.to_vec(),
    })
}

fn write_cert(dir: &Path, name: &str, pem: &str) -> Result<PathBuf, PkiError> {
    let path = dir.join(name);
    write(&path, pem)?;
    Ok(path)
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    std::fs::write(path, text).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    fn verifier(ca: &Path) -> Arc<dyn rustls::client::danger::ServerCertVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(ca).unwrap())
            .unwrap();
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap()
    }

    fn verify(ca: &Path, cert: &Path, name: &str) -> Result<(), rustls::Error> {
        let cert = CertificateDer::from_pem_file(cert).unwrap();
        verifier(ca)
            .verify_server_cert(
                &cert,
                &[],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn each_certificate_verifies_or_fails_for_its_reason() {
        let pki =
            TestPki::generate(["sql-a.cms.test\\RTC", "SQL-B.cms.test", "sql-a.cms.test"]).unwrap();
        assert_eq!(
            pki.hosts().collect::<Vec<_>>(),
            ["sql-a.cms.test", "sql-b.cms.test"]
        );
        let a = pki.server("sql-a.cms.test\\RTC").unwrap();
        assert_eq!(a.names, ["sql-a.cms.test", "127.0.0.1"]);
        assert!(a.key.exists());
        verify(pki.ca_cert(), &a.cert, "sql-a.cms.test").unwrap();
        verify(pki.ca_cert(), &a.cert, "127.0.0.1").unwrap();

        use rustls::{CertificateError as C, Error as E};
        let err = |r: Result<(), E>| match r {
            Err(E::InvalidCertificate(c)) => c,
            other => panic!("expected a certificate error, got {other:?}"),
        };
        assert!(matches!(
            err(verify(pki.ca_cert(), &a.cert, "sql-b.cms.test")),
            C::NotValidForName | C::NotValidForNameContext { .. }
        ));
        assert!(matches!(
            err(verify(pki.other_ca_cert(), &a.cert, "sql-a.cms.test")),
            C::UnknownIssuer
        ));
        assert!(matches!(
            err(verify(
                pki.ca_cert(),
                &pki.wrong_name().cert,
                "sql-a.cms.test"
            )),
            C::NotValidForName | C::NotValidForNameContext { .. }
        ));
        verify(pki.ca_cert(), &pki.wrong_name().cert, WRONG_NAME).unwrap();
        assert!(matches!(
            err(verify(pki.ca_cert(), &pki.expired().cert, "sql-b.cms.test")),
            C::Expired | C::ExpiredContext { .. }
        ));
        assert!(matches!(
            err(verify(
                pki.ca_cert(),
                &pki.self_signed().cert,
                "sql-b.cms.test"
            )),
            C::UnknownIssuer
        ));
        let dir = pki.dir().to_path_buf();
        drop(pki);
        assert!(!dir.exists(), "the directory is removed on drop");
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(
            TestPki::generate(["bäd.cms.test"]),
            Err(PkiError::BadName { .. })
        ));
    }
}
