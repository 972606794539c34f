//! A loopback TCP proxy that delays every byte by half a round-trip time in each direction,
//! and counts request/response exchanges.
//!
//! Each accepted connection is paired with a fresh connection to the upstream (the simulator
//! port). Each direction has a reader that stamps every chunk with `received + rtt/2` and a
//! writer that forwards it at that time, so pipelined traffic is delayed, not serialized.
//! tokio's timer has millisecond granularity, so the writer sleeps to within a millisecond
//! of the deadline and then yields until it passes; the delays actually applied are recorded
//! ([`ProxyStats::mean_one_way`]).
//!
//! An *exchange* is counted when the client sends data after having received data (or for
//! the first time) on that connection: one request/response round trip of a
//! request/response protocol such as TDS, however many packets each side needs. Exchanges are
//! counted per connection too ([`ProxyStats::per_connection`]): exchanges on one connection
//! follow each other, exchanges on different connections may overlap, so the critical path of
//! a stretch of time is the largest per-connection count in it.
//!
//! The TCP handshake itself is not delayed (the proxy accepts locally): on a real network
//! each new connection costs one more round trip before its first exchange.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Counters of one or more proxies.
#[derive(Debug, Default)]
pub struct ProxyStats {
    exchanges: AtomicU64,
    connections: AtomicU64,
    delayed_chunks: AtomicU64,
    delay_ns: AtomicU64,
    per_connection: Mutex<Vec<u64>>,
}

impl ProxyStats {
    /// Request/response exchanges so far.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::SeqCst)
    }
    /// Exchanges so far on each connection, in the order the connections were accepted.
    pub fn per_connection(&self) -> Vec<u64> {
        self.per_connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn new_connection(&self) -> usize {
        let mut v = self
            .per_connection
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        v.push(0);
        v.len() - 1
    }

    fn exchange(&self, connection: usize) {
        self.exchanges.fetch_add(1, Ordering::SeqCst);
        if let Some(n) = self
            .per_connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(connection)
        {
            *n += 1;
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
    /// The mean delay actually applied to a chunk (from read to write).
    pub fn mean_one_way(&self) -> Option<Duration> {
        let n = self.delayed_chunks.load(Ordering::SeqCst);
        (n > 0).then(|| Duration::from_nanos(self.delay_ns.load(Ordering::SeqCst) / n))
    }
}

/// A running proxy; dropping it stops accepting (open connections end with their peers).
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl DelayProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`, delaying each direction by
    /// `rtt / 2`. Must be called inside a tokio runtime.
    pub async fn start(
        upstream: SocketAddr,
        rtt: Duration,
        stats: Arc<ProxyStats>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let one_way = rtt / 2;
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let stats = stats.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let id = stats.new_connection();
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let awaiting_reply = Arc::new(AtomicBool::new(false));
                    pump(
                        cr,
                        sw,
                        one_way,
                        stats.clone(),
                        Some((awaiting_reply.clone(), id)),
                        true,
                    );
                    pump(sr, cw, one_way, stats, Some((awaiting_reply, id)), false);
                });
            }
        });
        Ok(Self { addr, accept })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Forwards `from` to `to` with `delay`; `upstream` marks the client -> server direction.
fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    stats: Arc<ProxyStats>,
    awaiting_reply: Option<(Arc<AtomicBool>, usize)>,
    upstream: bool,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Instant, Vec<u8>)>();
    let reader_stats = stats.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let now = Instant::now();
                    if let Some((flag, id)) = &awaiting_reply {
                        if upstream {
                            if !flag.swap(true, Ordering::SeqCst) {
                                reader_stats.exchange(*id);
                            }
                        } else {
                            flag.store(false, Ordering::SeqCst);
                        }
                    }
                    if tx.send((now, now + delay, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some((received, due, chunk)) = rx.recv().await {
            wait_until(due).await;
            stats.delayed_chunks.fetch_add(1, Ordering::SeqCst);
            stats
                .delay_ns
                .fetch_add(received.elapsed().as_nanos() as u64, Ordering::SeqCst);
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
}

/// Sleeps until `due` with sub-millisecond precision: the timer gets within a millisecond,
/// then the task yields until the deadline passes.
pub async fn wait_until(due: Instant) {
    let margin = Duration::from_millis(1);
    let now = Instant::now();
    if due <= now {
        return;
    }
    if due - now > margin {
        tokio::time::sleep_until(due - margin).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_both_ways_and_counts_exchanges() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 16];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let stats = Arc::new(ProxyStats::default());
        let proxy = DelayProxy::start(echo_addr, Duration::from_millis(2), stats.clone())
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        for msg in [b"ping", b"pong"] {
            c.write_all(msg).await.unwrap();
            let mut got = [0u8; 4];
            c.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, msg);
        }
        assert_eq!(stats.exchanges(), 2);
        assert_eq!(stats.connections(), 1);
        assert_eq!(stats.per_connection(), vec![2]);
        assert!(stats.mean_one_way().is_some());
    }
}
