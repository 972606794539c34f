//! Serving one instance on a TCP port, closing the port while the instance is down.

use crate::conn::serve_connection;
use crate::service::Service;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often a listener checks whether its instance went down or came back.
const UP_POLL: Duration = Duration::from_millis(10);

/// Binds `addr` with SO_REUSEADDR so a port can be re-opened after an instance comes back.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Accepts connections on `listener` for `service` until `shutdown` turns true. While the
/// service reports itself down, the port is closed (connections are refused) and every open
/// connection is dropped; when it is up again the same address is bound again.
pub async fn run_listener<S: Service>(
    service: Arc<S>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    // One interval for the whole loop: its deadline is not reset by accepted connections
    // or finished ones, so a client reconnecting every few ms cannot starve the up/down
    // check (a `sleep` re-created in each `select!` would be).
    let mut poll = tokio::time::interval(UP_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            break;
        }
        match &listener {
            Some(l) => {
                tokio::select! {
                    r = l.accept() => match r {
                        Ok((stream, _)) => {
                            if service.is_up() {
                                conns.spawn(serve_connection(stream, service.clone()));
                            }
                            // Down: this one is dropped; the next tick closes the port.
                        }
                        Err(e) => tracing::warn!(%addr, error = %e, "accept failed"),
                    },
                    _ = poll.tick() => {
                        if !service.is_up() {
                            tracing::info!(%addr, "instance down: closing its port");
                            listener = None;
                            conns.abort_all();
                        }
                    }
                    _ = shutdown.changed() => {}
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = poll.tick() => {
                        if service.is_up() {
                            match bind(addr) {
                                Ok(l) => {
                                    tracing::info!(%addr, "instance up: port open again");
                                    listener = Some(l);
                                }
                                Err(e) => tracing::warn!(%addr, error = %e, "cannot re-open port yet"),
                            }
                        }
                    }
                    _ = shutdown.changed() => {}
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}
