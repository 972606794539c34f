//! The listener closes a downed instance's port reliably, even while clients reconnect in a
//! tight loop (each accepted connection used to restart the up/down check's sleep, so a
//! client reconnecting every few ms kept a downed instance's port open forever). And each
//! instance can listen on an address of its own (`SimOptions::with_listen_addr`).

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER};
use mssql_sim::{SimOptions, Simulator};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// Connects and disconnects every millisecond until `stop` (often enough that no 10 ms
/// passes without an accepted connection, not so often that the accept backlog fills and
/// the kernel's SYN retries pause the client); counts successes and refusals.
async fn hammer(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                ok.fetch_add(1, Ordering::Relaxed);
                drop(s);
            }
            Err(_) => {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (bounded) until `cond` holds, checking every 2 ms.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downed_instance_closes_its_port_while_clients_reconnect_in_a_tight_loop() {
    let f = fixtures::standard();
    let sim = Simulator::start(f.estate.clone(), SimOptions::default())
        .await
        .unwrap();
    let a = fixtures::active();
    let addr = sim.addr_of(&a).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hammers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(hammer(addr, stop.clone(), ok.clone(), refused.clone())))
        .collect();
    eventually("the hammering clients connect", || {
        ok.load(Ordering::Relaxed) > 100
    })
    .await;
    assert_eq!(refused.load(Ordering::Relaxed), 0, "up: nothing refused");

    for round in 0..3 {
        f.estate.set_reachable(&a, false).unwrap();
        let before = refused.load(Ordering::Relaxed);
        eventually(
            &format!("round {round}: the port closes while down"),
            || refused.load(Ordering::Relaxed) > before + 50,
        )
        .await;
        // Still closed: nothing succeeds while down (allow connects already in flight).
        let ok_down = ok.load(Ordering::Relaxed);
        let refused_down = refused.load(Ordering::Relaxed);
        eventually("more refusals while down", || {
            refused.load(Ordering::Relaxed) > refused_down + 100
        })
        .await;
        assert!(
            ok.load(Ordering::Relaxed) <= ok_down + 3,
            "round {round}: connections accepted while the instance is down"
        );

        f.estate.set_reachable(&a, true).unwrap();
        let ok_up = ok.load(Ordering::Relaxed);
        eventually(&format!("round {round}: the port reopens"), || {
            ok.load(Ordering::Relaxed) > ok_up + 50
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.await.unwrap();
    }
    sim.shutdown().await;
}

/// `SELECT @@SERVERNAME` through tiberius at `addr`.
async fn server_name_at(addr: SocketAddr) -> String {
    let mut c = common::tiberius_connect_at(addr, LOGIN_USER, LOGIN_PASSWORD, None)
        .await
        .unwrap();
    let sets = common::batch(&mut c, "SELECT @@SERVERNAME").await.unwrap();
    sets[0][0][0].clone().unwrap()
}

#[tokio::test]
async fn each_instance_listens_on_its_own_address_on_the_same_port() {
    let fx = fixtures::build(&fixtures::Options::default());
    let (a, b) = (fixtures::active(), fixtures::backup());
    let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 9, n));
    // A port free on these addresses: the first start picks it, the second reuses it.
    let probe = Simulator::start(
        fx.estate.clone(),
        SimOptions::default().with_listen_addr(a.clone(), SocketAddr::new(ip(1), 0)),
    )
    .await
    .unwrap();
    let port = probe.addr_of(&a).unwrap().port();
    probe.shutdown().await;

    let options = SimOptions::default()
        .with_listen_addr(a.clone(), SocketAddr::new(ip(1), port))
        .with_listen_addr(b.clone(), SocketAddr::new(ip(2), port));
    assert_eq!(options.listen_addr(&a), SocketAddr::new(ip(1), port));
    // Not listed: the common host, an ephemeral port.
    let other = fixtures::active_mirror();
    assert_eq!(
        options.listen_addr(&other),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
    );
    let sim = Simulator::start(fx.estate.clone(), options).await.unwrap();
    assert_eq!(sim.addr_of(&a), Some(SocketAddr::new(ip(1), port)));
    assert_eq!(sim.addr_of(&b), Some(SocketAddr::new(ip(2), port)));
    // Each address answers as its own instance.
    let name_a = server_name_at(SocketAddr::new(ip(1), port)).await;
    let name_b = server_name_at(SocketAddr::new(ip(2), port)).await;
    assert_eq!(name_a, backend_fake::default_server_name(&a));
    assert_eq!(name_b, backend_fake::default_server_name(&b));
    // The port is bound on those two addresses only, not on every loopback address.
    assert!(
        tokio::net::TcpStream::connect(SocketAddr::new(ip(3), port))
            .await
            .is_err()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_taken_address_is_reported_with_the_instance_and_address() {
    let fx = fixtures::build(&fixtures::Options::default());
    let a = fixtures::active();
    let taken = std::net::TcpListener::bind("127.0.9.4:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Simulator::start(
        fx.estate.clone(),
        SimOptions::default().with_listen_addr(a.clone(), addr),
    )
    .await
    .unwrap_err();
    assert_eq!(e.instance, a);
    assert_eq!(e.addr, addr);
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}
