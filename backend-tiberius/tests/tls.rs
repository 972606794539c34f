//! backend-tiberius over TLS against the simulator: the shared TLS cases
//! (`failover_testkit::tls`) through `SqlBackend<TiberiusTransport>`.

use backend_fake::fixtures::{LOGIN_PASSWORD, LOGIN_USER};
use backend_tiberius::{Encryption, Secret, TiberiusBackend, TiberiusConfig, Trust};
use failover_core::Backend;
use failover_testkit::tls::{ClientTls, TlsEstate};
use std::sync::Arc;
use std::time::Duration;

fn client(est: &TlsEstate, tls: ClientTls) -> Arc<dyn Backend> {
    let encryption = match tls {
        ClientTls::Strict(ca) => Encryption::Required(Trust::CaFile(ca)),
        ClientTls::TrustServerCertificate => Encryption::Required(Trust::TrustServerCertificate),
        ClientTls::Off => Encryption::Plaintext,
    };
    let mut cfg = TiberiusConfig::new(LOGIN_USER, Secret::new(LOGIN_PASSWORD))
        .with_encryption(encryption)
        .with_call_timeout(Duration::from_secs(10));
    cfg.endpoints = est.sim.endpoint_map();
    Arc::new(TiberiusBackend::new(cfg))
}

failover_testkit::tls_tests!(client);
