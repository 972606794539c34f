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
    // Opening the lock session hits the login timeout: an error, never a hang; a timeout,
    // as backend-tiberius reports a server that never answers.
    let bounded = Duration::from_secs(30);
    let e = tokio::time::timeout(bounded, b.lock_held(&addr, "cms-failover"))
        .await
        .expect("the call returns on its own")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    let e = tokio::time::timeout(bounded, b.read_location(&addr))
        .await
        .expect("the call returns on its own")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
}

/// The blocking connect itself gives up at its login timeout, so the blocking thread the
/// backend leaves behind when its hard timeout fires ends too (nothing lingers until exit):
/// against a listener that accepts and never answers it fails with a timeout; against a
/// closed port at once, as unreachable. Run on a plain thread, bounded by a channel.
#[test]
fn the_driver_connect_ends_by_itself_at_the_login_timeout() {
    use backend_odbc::{classify, driver::OdbcConn};
    use std::sync::mpsc;
    common::require_freetds();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let connect = |port: u16| {
        let (tx, rx) = mpsc::channel();
        let conn_str = format!(
            "Driver={{FreeTDS}};Server=127.0.0.1;Port={port};TDS_Version=7.4;Encryption=off;UID=sa;PWD=x;"
        );
        std::thread::spawn(move || {
            let _ = tx.send(OdbcConn::connect(&conn_str, 1).map(drop));
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the driver's connect did not return within 30 s despite a 1 s login timeout")
            .expect_err("nothing answers")
    };
    let f = connect(silent.local_addr().unwrap().port());
    assert_eq!(classify::classify(&f).0, ErrorKind::Timeout, "{f:?}");
    let f = connect(closed.port());
    assert_eq!(classify::classify(&f).0, ErrorKind::Unreachable, "{f:?}");
}
