//! TLS in the simulator (MS-TDS 2.2.6.5): tiberius with the test PKI's CA, the refusals a
//! client must make (wrong CA, wrong name, expired, self-signed), TrustServerCertificate,
//! login-only encryption, Force Encryption against plaintext clients, and TDS 8.0 strict.
//! A recording proxy shows what actually crossed the wire in clear.

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use common::tls::*;
use common::*;
use mssql_sim::tds::login::{
    ENCRYPT_NOT_SUP, ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_REQ, client_encryption,
};
use mssql_sim::{SimOptions, Simulator};
use std::sync::Arc;
use tiberius::EncryptionLevel;
use tokio::net::TcpStream;

fn host() -> String {
    fixtures::active().host().to_string()
}

async fn select_marker(c: &mut Tib, marker: &str) {
    let sets = batch(c, &format!("SELECT N'{marker}' AS m;"))
        .await
        .unwrap();
    assert_eq!(sets[0], vec![row(&[Some(marker)])]);
}

/// Logs in to `target` through a recording proxy with `level`, presenting `name`, runs a
/// batch selecting `marker`, and says what crossed the wire in clear: (the LOGIN7
/// credentials, the batch).
async fn in_clear(
    target: std::net::SocketAddr,
    name: &str,
    level: EncryptionLevel,
    ca: &std::path::Path,
    marker: &str,
) -> (bool, bool) {
    let rec = Recorder::start(target).await;
    let mut c = tiberius_tls(rec.addr, name, level, Trust::Ca(ca))
        .await
        .unwrap_or_else(|e| panic!("{level:?} as {name}: {e}"));
    select_marker(&mut c, marker).await;
    let login = rec.saw(&obfuscated(LOGIN_PASSWORD));
    assert_eq!(login, rec.saw(&utf16(LOGIN_USER)), "LOGIN7 is one record");
    (login, rec.saw(&utf16(marker)))
}

#[tokio::test]
async fn tiberius_encryption_levels_against_a_server_with_a_certificate() {
    let (sim, _f, pki) = start_tls(&Options::default(), Served::Valid, false).await;
    let target = sim.addr_of(&fixtures::active()).unwrap();
    let cases = [
        // client ENCRYPT_ON / ENCRYPT_REQ: "Encrypt entire connection"
        (EncryptionLevel::On, host(), (false, false)),
        (EncryptionLevel::Required, host(), (false, false)),
        // by address: the certificate also names 127.0.0.1
        (
            EncryptionLevel::Required,
            "127.0.0.1".to_string(),
            (false, false),
        ),
        // ENCRYPT_OFF on both sides: "Encrypt login packet only", plaintext after LOGIN7
        (EncryptionLevel::Off, host(), (false, true)),
        // client ENCRYPT_NOT_SUP, server not forcing: no encryption at all
        (EncryptionLevel::NotSupported, host(), (true, true)),
    ];
    for (level, name, expected) in cases {
        let got = in_clear(target, &name, level, pki.ca_cert(), "marker-level").await;
        assert_eq!(
            got, expected,
            "{level:?} as {name}: (login, batch) in clear"
        );
    }
}

#[tokio::test]
async fn tiberius_refuses_wrong_ca_wrong_name_expired_and_self_signed() {
    let ca_case = |served, wrong_ca: bool, name: &'static str, expected: &'static str| {
        (served, wrong_ca, name, expected)
    };
    let cases = [
        // rustls 0.23's wording (lower-cased): the variant name, or for a name mismatch and an
        // expired certificate a sentence with the names and dates.
        ca_case(Served::Valid, true, "sql-a.cms.test", "unknownissuer"),
        ca_case(Served::Valid, false, "sql-b.cms.test", "not valid for name"),
        ca_case(
            Served::WrongName,
            false,
            "sql-a.cms.test",
            "not valid for name",
        ),
        ca_case(
            Served::Expired,
            false,
            "sql-a.cms.test",
            "certificate expired",
        ),
        ca_case(Served::SelfSigned, false, "sql-a.cms.test", "unknownissuer"),
    ];
    for (served, wrong_ca, name, expected) in cases {
        let (sim, _f, pki) = start_tls(&Options::default(), served, false).await;
        let addr = sim.addr_of(&fixtures::active()).unwrap();
        let ca = if wrong_ca {
            pki.other_ca_cert()
        } else {
            pki.ca_cert()
        };
        let e = tiberius_tls(addr, name, EncryptionLevel::Required, Trust::Ca(ca))
            .await
            .expect_err("the client must refuse this certificate");
        assert!(
            e.to_string().to_lowercase().contains(expected),
            "{served:?} as {name} (wrong CA: {wrong_ca}): expected {expected}, got {e}"
        );
        // TrustServerCertificate accepts the same certificate.
        let mut c = tiberius_tls(addr, name, EncryptionLevel::Required, Trust::All)
            .await
            .unwrap_or_else(|e| panic!("{served:?} with TrustServerCertificate: {e}"));
        select_marker(&mut c, "trusted-anyway").await;
    }
}

#[tokio::test]
async fn force_encryption_refuses_plaintext_clients_with_17835_not_a_hang() {
    let (sim, _f, pki) = start_tls(&Options::default(), Served::Valid, true).await;
    let addr = sim.addr_of(&fixtures::active()).unwrap();

    // PRELOGIN ENCRYPT_NOT_SUP -> ENCRYPT_REQ; a plaintext LOGIN7 then -> 17835 and close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    send_msg(&mut s, 0x12, &prelogin(ENCRYPT_NOT_SUP)).await;
    let (ty, reply) = recv_msg(&mut s).await.unwrap();
    assert_eq!((ty, client_encryption(&reply)), (0x04, Some(ENCRYPT_REQ)));
    send_msg(&mut s, 0x10, &login7(LOGIN_USER, LOGIN_PASSWORD)).await;
    let (_, reply) = recv_msg(&mut s).await.unwrap();
    assert_eq!(first_error(&reply), Some((17835, 20)));
    assert!(recv_msg(&mut s).await.is_none(), "the connection is closed");

    // LOGIN7 without any PRELOGIN: the same refusal.
    let mut s = TcpStream::connect(addr).await.unwrap();
    send_msg(&mut s, 0x10, &login7(LOGIN_USER, LOGIN_PASSWORD)).await;
    let (_, reply) = recv_msg(&mut s).await.unwrap();
    assert_eq!(first_error(&reply), Some((17835, 20)));
    assert!(recv_msg(&mut s).await.is_none());

    // ENCRYPT_OFF (login-only) is upgraded: the reply is ENCRYPT_REQ, the whole session TLS.
    let mut s = TcpStream::connect(addr).await.unwrap();
    send_msg(&mut s, 0x12, &prelogin(ENCRYPT_OFF)).await;
    let (_, reply) = recv_msg(&mut s).await.unwrap();
    assert_eq!(client_encryption(&reply), Some(ENCRYPT_REQ));
    let ca = pki.ca_cert();
    let got = in_clear(addr, &host(), EncryptionLevel::Off, ca, "forced-full").await;
    assert_eq!(got, (false, false));
    // tiberius configured NotSupported (but built with TLS) reads ENCRYPT_REQ and encrypts
    // anyway: against a forcing server "off" in tiberius is not plaintext.
    let got = in_clear(addr, &host(), EncryptionLevel::NotSupported, ca, "upgraded").await;
    assert_eq!(got, (false, false));

    // Without Force Encryption the same plaintext LOGIN7 is served.
    let (sim, _f, _pki) = start_tls(&Options::default(), Served::Valid, false).await;
    let mut s = TcpStream::connect(sim.addr_of(&fixtures::active()).unwrap())
        .await
        .unwrap();
    send_msg(&mut s, 0x10, &login7(LOGIN_USER, LOGIN_PASSWORD)).await;
    let (_, reply) = recv_msg(&mut s).await.unwrap();
    assert!(reply.contains(&0xAD), "LOGINACK");
}

#[tokio::test]
async fn without_a_certificate_every_prelogin_gets_not_sup() {
    let f = fixtures::build(&Options::default());
    let sim = Simulator::start(f.estate.clone(), SimOptions::default())
        .await
        .unwrap();
    let addr = sim.addr_of(&fixtures::active()).unwrap();
    for asked in [ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_NOT_SUP, ENCRYPT_REQ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        send_msg(&mut s, 0x12, &prelogin(asked)).await;
        let (ty, reply) = recv_msg(&mut s).await.unwrap();
        assert_eq!(
            (ty, client_encryption(&reply)),
            (0x04, Some(ENCRYPT_NOT_SUP))
        );
    }
    // and a client that insists on encryption fails cleanly instead of hanging (tiberius
    // with `Required` starts TLS anyway; the server, expecting LOGIN7, closes)
    let pki = test_pki::TestPki::generate([host()]).unwrap();
    let r = tiberius_tls(
        addr,
        &host(),
        EncryptionLevel::Required,
        Trust::Ca(pki.ca_cert()),
    )
    .await;
    assert!(r.is_err(), "no TLS without a certificate");
}

fn strict_client(pki: &test_pki::TestPki, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.ca_cert()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tds8_strict_tls_first_with_alpn_tds_8_0() {
    let (sim, _f, pki) = start_tls(&Options::default(), Served::Valid, true).await;
    let addr = sim.addr_of(&fixtures::active()).unwrap();
    let name = rustls::pki_types::ServerName::try_from(host()).unwrap();

    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = strict_client(&pki, b"tds/8.0")
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    {
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"tds/8.0"[..]));
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
    }
    // PRELOGIN, LOGIN7 and a batch, all inside TLS
    send_msg(&mut tls, 0x12, &prelogin(ENCRYPT_ON)).await;
    let (ty, _) = recv_msg(&mut tls).await.unwrap();
    assert_eq!(ty, 0x04);
    send_msg(&mut tls, 0x10, &login7(LOGIN_USER, LOGIN_PASSWORD)).await;
    let (_, reply) = recv_msg(&mut tls).await.unwrap();
    assert!(reply.contains(&0xAD), "LOGINACK");
    send_msg(&mut tls, 0x01, &batch_payload("SELECT N'strict-ok' AS m;")).await;
    let (_, reply) = recv_msg(&mut tls).await.unwrap();
    assert!(
        reply
            .windows(18)
            .any(|w| w == utf16("strict-ok").as_slice()),
        "the batch ran"
    );

    // A TLS client that offers another application protocol is refused in the handshake.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let e = strict_client(&pki, b"h2")
        .connect(name, tcp)
        .await
        .expect_err("no ALPN overlap");
    assert!(e.to_string().to_lowercase().contains("protocol"), "{e}");
}

#[tokio::test]
async fn tds7_tls_is_tls_1_2_inside_prelogin_packets() {
    // A rustls client offering TLS 1.3 and 1.2, framed in PRELOGIN packets like a TDS 7.x
    // driver: the server picks TLS 1.2 (TLS 1.3 only with TDS 8.0).
    let (sim, _f, pki) = start_tls(&Options::default(), Served::Valid, false).await;
    let mut tcp = TcpStream::connect(sim.addr_of(&fixtures::active()).unwrap())
        .await
        .unwrap();
    send_msg(&mut tcp, 0x12, &prelogin(ENCRYPT_ON)).await;
    let (_, reply) = recv_msg(&mut tcp).await.unwrap();
    assert_eq!(client_encryption(&reply), Some(ENCRYPT_ON));
    let name = rustls::pki_types::ServerName::try_from(host()).unwrap();
    let framed = mssql_sim::tds::tls::PreloginFramed::new(tcp);
    let mut tls = strict_client(&pki, b"unused")
        .connect(name, framed)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(tls.get_ref().1.alpn_protocol(), None, "no ALPN in TDS 7.x");
    tls.get_mut().0.handshake_complete();
    send_msg(&mut tls, 0x10, &login7(LOGIN_USER, LOGIN_PASSWORD)).await;
    let (_, reply) = recv_msg(&mut tls).await.unwrap();
    assert!(reply.contains(&0xAD), "LOGINACK over TLS");
}
