//! Driver plumbing that needs no SQL Server: unixODBC + the FreeTDS driver against ports that
//! refuse or never answer. Fails loudly (does not skip) when the FreeTDS driver is missing.

mod common;

use backend_odbc::{OdbcBackend, OdbcConfig, Secret};
use failover_core::{Backend, DatabaseName, ErrorKind, InstanceAddr, Operation};
use std::collections::HashMap;
use std::time::Duration;

fn backend(endpoints: HashMap<InstanceAddr, std::net::SocketAddr>, call: Duration) -> OdbcBackend {
    let cfg = OdbcConfig::freetds()
        .with_encryption(backend_odbc::Encryption::Off)
        .with_login("sa", Secret::new("Pl@in;Text}Secret"))
        .with_endpoints(endpoints)
        .with_timeouts(Duration::from_secs(1), call);
    OdbcBackend::new(cfg)
}

#[tokio::test]
async fn refused_port_is_unreachable_and_password_is_not_in_the_error() {
    common::require_freetds();
    let addr = InstanceAddr::parse("sql-a.cms.test\\RTC").unwrap();
    // Bind then drop a listener: the port is (almost certainly) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let b = backend(
        HashMap::from([(addr.clone(), port)]),
        Duration::from_secs(5),
    );
    let e = b
        .probe(&addr, &[DatabaseName::parse("xds").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert_eq!(e.operation, Operation::Probe);
    let text = format!("{e} {e:?}");
    assert!(!text.contains("Pl@in"), "password leaked: {text}");
    assert!(text.contains("PWD=***"), "{text}");
    assert!(!format!("{b:?}").contains("Pl@in"));
}

#[tokio::test]
async fn silent_server_hits_the_call_timeout_not_a_hang() {
    common::require_freetds();
    let addr = InstanceAddr::parse("sql-a.cms.test\\RTC").unwrap();
    // Accepts TCP connections and never answers a byte.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
            if held.len() > 8 {
                break;
            }
        }
    });
    let b = backend(
        HashMap::from([(addr.clone(), port)]),
        Duration::from_millis(500),
    );
    // Opening the lock session hits the login timeout: an error, never a hang.
    let e = b.lock_held(&addr, "cms-failover").await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Timeout | ErrorKind::Unreachable),
        "{e}"
    );
    let e = b.read_location(&addr).await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Timeout | ErrorKind::Unreachable),
        "{e}"
    );
}
