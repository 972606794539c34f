//! The TLS cases every SQL backend must pass against the simulator speaking TLS (feature
//! `tls`): the default `strict` mode with the right CA completes a planned failover; a wrong
//! CA, a wrong name and an expired certificate are each refused before any change, saying
//! which of the three it was and what to set; `trust-server-certificate` completes with a
//! warning in the report; `off` against Force Encryption is a clear error, not a hang.
//!
//! A backend test file gives a [`MakeClient`] (how to build its backend for a [`ClientTls`])
//! and calls one case per test.

use backend_fake::fixtures::{self, Fixture};
use failover_core::{Backend, Driver, FailoverRequest, Mode, Outcome, RunReport};
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use test_pki::TestPki;

pub use test_pki;

pub use mssql_sim::Served;

/// How the backend under test is told to protect its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTls {
    /// TLS required, the certificate checked against this CA file (PEM).
    Strict(PathBuf),
    /// TLS required, any certificate accepted.
    TrustServerCertificate,
    /// No TLS.
    Off,
}

/// The fixture estate served over TLS, and the PKI whose files it uses (kept alive here).
pub struct TlsEstate {
    /// The simulator.
    pub sim: SimHandle,
    /// The estate and its topology.
    pub fixture: Fixture,
    /// The certificates (removed on drop).
    pub pki: TestPki,
}

impl TlsEstate {
    /// Starts the standard fixture with every instance presenting `served`, Force Encryption
    /// as given.
    pub async fn start(served: Served, force_encryption: bool) -> Self {
        let fixture = fixtures::standard();
        let instances = fixture.estate.instances();
        let pki = TestPki::generate(instances.iter().map(|i| i.to_string()))
            .expect("the test PKI is generated");
        let options = SimOptions::default()
            .with_served_pki(&fixture.estate, &pki, served, force_encryption)
            .expect("the simulator accepts the test certificates");
        let sim = Simulator::start(fixture.estate.clone(), options)
            .await
            .expect("the simulator starts");
        Self { sim, fixture, pki }
    }

    /// The CA that signed the instance certificates.
    pub fn ca(&self) -> &Path {
        self.pki.ca_cert()
    }
}

/// Builds the backend under test for the served estate, with the given TLS settings.
pub type MakeClient<'a> = &'a (dyn Fn(&TlsEstate, ClientTls) -> Arc<dyn Backend> + Sync);

/// A planned failover of the fixture through `backend`, bounded (a hang fails the test).
pub async fn planned(est: &TlsEstate, backend: Arc<dyn Backend>) -> RunReport {
    let req = FailoverRequest::new("tls-run", est.fixture.topology.clone(), Mode::Planned)
        .expect("a valid request");
    tokio::time::timeout(Duration::from_secs(120), Driver::new(backend).run(req))
        .await
        .expect("the run neither finished nor failed within 120 s (a hang)")
}

fn assert_succeeded(est: &TlsEstate, r: &RunReport) {
    match &r.outcome {
        Outcome::Succeeded { active, .. } => {
            assert!(
                est.fixture.topology.backup.contains(active),
                "active on {active}"
            );
        }
        other => panic!("expected success, got {other}; steps: {:#?}", r.steps),
    }
    let snap = est.fixture.estate.snapshot();
    let backup = &est.fixture.topology.backup.principal;
    assert!(
        snap.instances[backup]
            .databases
            .iter()
            .all(|d| !d.read_only),
        "the backup store serves the CMS read-write"
    );
}

/// A run that must be refused before any change: the estate's history is unchanged and the
/// outcome's text contains every one of `needles`.
async fn assert_refused_unchanged(est: &TlsEstate, backend: Arc<dyn Backend>, needles: &[&str]) {
    let before = est.fixture.estate.history().len();
    let r = planned(est, backend).await;
    let text = r.outcome.to_string();
    assert!(
        matches!(r.outcome, Outcome::Refused { .. }),
        "expected a refusal before any change, got: {text}"
    );
    assert_eq!(
        est.fixture.estate.history().len(),
        before,
        "nothing changed: {:#?}",
        &est.fixture.estate.history()[before..]
    );
    for n in needles {
        assert!(text.contains(n), "the message says `{n}`: {text}");
    }
}

/// `strict` with the CA that signed the certificates completes a planned failover, over
/// TLS (Force Encryption on, so a plaintext client could not have done it), with no TLS
/// warning.
pub async fn strict_with_the_right_ca_completes(make: MakeClient<'_>) {
    let est = TlsEstate::start(Served::Valid, true).await;
    let b = make(&est, ClientTls::Strict(est.ca().to_path_buf()));
    assert!(b.warnings().is_empty(), "{:?}", b.warnings());
    let r = planned(&est, b).await;
    assert_succeeded(&est, &r);
    assert!(
        !r.warnings
            .iter()
            .any(|w| w.contains("trust-server-certificate")),
        "{:?}",
        r.warnings
    );
}

/// `strict` trusting another CA is refused before any change; the message says the CA is
/// not trusted and to set `connection.ca_file`.
pub async fn strict_with_the_wrong_ca_is_refused(make: MakeClient<'_>) {
    let est = TlsEstate::start(Served::Valid, false).await;
    let other = est.pki.other_ca_cert().to_path_buf();
    let b = make(&est, ClientTls::Strict(other));
    assert_refused_unchanged(
        &est,
        b,
        &["CA this client does not trust", "connection.ca_file"],
    )
    .await;
}

/// A certificate for another name is refused before any change; the message says so and
/// what to connect by.
pub async fn strict_refuses_a_wrong_name(make: MakeClient<'_>) {
    let est = TlsEstate::start(Served::WrongName, false).await;
    let b = make(&est, ClientTls::Strict(est.ca().to_path_buf()));
    assert_refused_unchanged(
        &est,
        b,
        &[
            "not valid for the name connected to",
            "subject alternative names",
        ],
    )
    .await;
}

/// An expired certificate is refused before any change; the message says to renew it.
pub async fn strict_refuses_an_expired_certificate(make: MakeClient<'_>) {
    let est = TlsEstate::start(Served::Expired, false).await;
    let b = make(&est, ClientTls::Strict(est.ca().to_path_buf()));
    assert_refused_unchanged(
        &est,
        b,
        &["has expired", "renew the SQL Server certificate"],
    )
    .await;
}

/// `trust-server-certificate` completes against a self-signed certificate, and the run's
/// report carries the warning that the server was not authenticated.
pub async fn trust_server_certificate_completes_with_a_warning(make: MakeClient<'_>) {
    let est = TlsEstate::start(Served::SelfSigned, true).await;
    let b = make(&est, ClientTls::TrustServerCertificate);
    let r = planned(&est, b).await;
    assert_succeeded(&est, &r);
    assert!(
        r.warnings
            .iter()
            .any(|w| w == failover_tsql::tls::UNVERIFIED_CERTIFICATE),
        "the report warns: {:?}",
        r.warnings
    );
}

/// `off` against a server that forces encryption is refused before any change with a clear
/// message (the server requires encryption; what to set), within the run's bound.
pub async fn off_against_forced_encryption_is_a_clear_error(make: MakeClient<'_>) {
    let est = TlsEstate::start(Served::Valid, true).await;
    let b = make(&est, ClientTls::Off);
    assert_refused_unchanged(&est, b, &["requires encryption", "tls = \"strict\""]).await;
}

/// `off` against a server with a certificate that does not force encryption still works
/// (the login packet alone is encrypted, as SQL Server does): the explicit plaintext mode
/// the simulator tests use.
pub async fn off_without_forced_encryption_completes(make: MakeClient<'_>) {
    let est = TlsEstate::start(Served::Valid, false).await;
    let b = make(&est, ClientTls::Off);
    let r = planned(&est, b).await;
    assert_succeeded(&est, &r);
}

/// One `#[tokio::test]` per TLS case for the backend built by `$make`
/// (`fn(&TlsEstate, ClientTls) -> Arc<dyn Backend>`): every case, or the ones listed after
/// a `;`.
#[macro_export]
macro_rules! tls_tests {
    ($make:expr; $($case:ident),+ $(,)?) => {
        $crate::tls_tests!(@each $make; $($case,)+);
    };
    ($make:expr) => {
        $crate::tls_tests!(@each $make;
            strict_with_the_right_ca_completes,
            strict_with_the_wrong_ca_is_refused,
            strict_refuses_a_wrong_name,
            strict_refuses_an_expired_certificate,
            trust_server_certificate_completes_with_a_warning,
            off_against_forced_encryption_is_a_clear_error,
            off_without_forced_encryption_completes,
        );
    };
    (@each $make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::tls::$case(&$make).await;
            }
        )*
    };
}
