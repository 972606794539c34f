//! backend-odbc (FreeTDS through unixODBC) over TLS against the simulator: the shared TLS
//! cases (`failover_testkit::tls`) through `SqlBackend<OdbcTransport>`, the certificate
//! settings carried by the generated freetds.conf.

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER};
use backend_odbc::{Encryption, OdbcBackend, OdbcConfig, Secret, Trust};
use failover_core::{Backend, Outcome};
use failover_testkit::tls::{ClientTls, Served, TlsEstate, planned};
use std::sync::Arc;
use std::time::Duration;

fn config(est: &TlsEstate, tls: ClientTls) -> OdbcConfig {
    common::require_freetds();
    let encryption = match tls {
        ClientTls::Strict(ca) => Encryption::Required(Trust::CaFile(ca)),
        ClientTls::TrustServerCertificate => Encryption::Required(Trust::TrustServerCertificate),
        ClientTls::Off => Encryption::Off,
    };
    OdbcConfig::freetds()
        .with_encryption(encryption)
        .with_login(LOGIN_USER, Secret::new(LOGIN_PASSWORD))
        .with_endpoints(est.sim.endpoint_map())
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(10))
}

fn client(est: &TlsEstate, tls: ClientTls) -> Arc<dyn Backend> {
    Arc::new(OdbcBackend::new(config(est, tls)))
}

failover_testkit::tls_tests!(client;
    strict_with_the_right_ca_completes,
    strict_with_the_wrong_ca_is_refused,
    strict_refuses_a_wrong_name,
    strict_refuses_an_expired_certificate,
    trust_server_certificate_completes_with_a_warning,
    off_without_forced_encryption_completes,
);

/// FreeTDS with `Encryption=off` answers a server's ENCRYPT_REQ by encrypting the whole
/// session (without checking the certificate), as `tsql` does: `off` against Force
/// Encryption completes, never hangs, and never sends the login in clear (the simulator
/// refuses a plaintext LOGIN7 with 17835).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_against_forced_encryption_is_encrypted_by_freetds() {
    let est = TlsEstate::start(Served::Valid, true).await;
    let r = planned(&est, client(&est, ClientTls::Off)).await;
    assert!(
        matches!(r.outcome, Outcome::Succeeded { .. }),
        "{}",
        r.outcome
    );
}

/// The independent certificate check behind the FreeTDS messages: accepted with the right
/// CA, and each refusal recognised as what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_each_certificate_problem() {
    use failover_tsql::tls::{CertProblem, diagnose};
    let cases = [
        (Served::Valid, false, None),
        (Served::Valid, true, Some(CertProblem::UnknownIssuer)),
        (Served::WrongName, false, Some(CertProblem::WrongName)),
        (Served::Expired, false, Some(CertProblem::Expired)),
        (Served::SelfSigned, false, Some(CertProblem::UnknownIssuer)),
    ];
    for (served, other_ca, want) in cases {
        let est = TlsEstate::start(served, false).await;
        let addr = est.sim.addr_of(&fixtures::active()).unwrap();
        let ca = if other_ca {
            est.pki.other_ca_cert().to_path_buf()
        } else {
            est.ca().to_path_buf()
        };
        let got = tokio::task::spawn_blocking(move || {
            diagnose(addr, "127.0.0.1", &ca, Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert_eq!(
            got.as_deref().and_then(CertProblem::recognise),
            want,
            "{served:?} (other CA: {other_ca}): {got:?}"
        );
    }
}
