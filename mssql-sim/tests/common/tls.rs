//! TLS helpers: a simulator serving the test PKI's certificates, tiberius over TLS, a
//! recording proxy (to prove what crossed the wire in clear), and the loud-skip rule for
//! external clients.

use super::Tib;
use backend_fake::fixtures::{self, Options};
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use test_pki::TestPki;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::compat::TokioAsyncWriteCompatExt;

pub use mssql_sim::Served;

/// Starts the fixture estate `o` with every instance serving `served`, Force Encryption
/// as given. Returns the simulator, the fixture and the PKI (keep it alive: it owns the files).
pub async fn start_tls(
    o: &Options,
    served: Served,
    force: bool,
) -> (SimHandle, fixtures::Fixture, TestPki) {
    let f = fixtures::build(o);
    let instances = f.estate.instances();
    let pki = TestPki::generate(instances.iter().map(|i| i.to_string())).unwrap();
    let options = SimOptions::default()
        .with_served_pki(&f.estate, &pki, served, force)
        .unwrap();
    let sim = Simulator::start(f.estate.clone(), options).await.unwrap();
    (sim, f, pki)
}

/// How tiberius decides whether to trust the server's certificate.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// Only this CA (PEM file).
    Ca(&'a Path),
    /// Any certificate (TrustServerCertificate).
    All,
}

/// Connects tiberius to `addr` with `level`, presenting `host` as the server name (SNI and
/// certificate name check); the TCP connection goes to `addr` whatever `host` is.
pub async fn tiberius_tls(
    addr: SocketAddr,
    host: &str,
    level: EncryptionLevel,
    trust: Trust<'_>,
) -> tiberius::Result<Tib> {
    tiberius_tls_as(
        addr,
        host,
        level,
        trust,
        fixtures::LOGIN_USER,
        fixtures::LOGIN_PASSWORD,
    )
    .await
}

/// [`tiberius_tls`] with another login.
pub async fn tiberius_tls_as(
    addr: SocketAddr,
    host: &str,
    level: EncryptionLevel,
    trust: Trust<'_>,
    user: &str,
    password: &str,
) -> tiberius::Result<Tib> {
    let mut config = Config::new();
    config.host(host);
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(level);
    match trust {
        Trust::Ca(p) => config.trust_cert_ca(p.display()),
        Trust::All => config.trust_cert(),
    }
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let connect = Client::connect(config, tcp.compat_write());
    tokio::time::timeout(std::time::Duration::from_secs(30), connect)
        .await
        .expect("tiberius neither connected nor failed within 30 s (a hang)")
}

/// A TCP proxy in front of one address that records every byte the client sent.
pub struct Recorder {
    /// Where clients connect.
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Proxies to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let rec = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = [0u8; 8192];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if sw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Self { addr, sent, task }
    }

    /// Whether the client sent `needle` in clear anywhere.
    pub fn saw(&self, needle: &[u8]) -> bool {
        let sent = self.sent.lock().unwrap();
        sent.windows(needle.len()).any(|w| w == needle)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// UTF-16LE bytes, as TDS carries text.
pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// The LOGIN7 form of a password (UTF-16LE, nibbles swapped, XOR 0xA5: MS-TDS 2.2.6.4).
pub fn obfuscated(password: &str) -> Vec<u8> {
    utf16(password)
        .into_iter()
        .map(|b| b.rotate_left(4) ^ 0xA5)
        .collect()
}

/// Whether a missing external tool may be skipped: only outside CI. Prints a loud SKIPPED.
/// Under `CI=true` a missing tool fails the test.
pub fn skip_missing(tool: &str, why: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{tool} is required under CI but is missing: {why}");
    }
    eprintln!("SKIPPED: {tool} is missing ({why}); this test did not run. Under CI=true it fails.");
    true
}

/// Sends one single-packet TDS message on any stream.
pub async fn send_msg<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, ty: u8, payload: &[u8]) {
    let mut p = vec![ty, 1];
    p.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0]);
    p.extend_from_slice(payload);
    w.write_all(&p).await.unwrap();
    w.flush().await.unwrap();
}

/// Receives one whole message `(packet type, payload)`, or `None` on EOF; fails after 10 s.
pub async fn recv_msg<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<(u8, Vec<u8>)> {
    let inner = async {
        let mut out = Vec::new();
        loop {
            let mut h = [0u8; 8];
            if r.read_exact(&mut h).await.is_err() {
                return None;
            }
            let len = u16::from_be_bytes([h[2], h[3]]) as usize;
            let mut body = vec![0u8; len - 8];
            r.read_exact(&mut body).await.ok()?;
            out.extend(body);
            if h[1] & 1 == 1 {
                return Some((h[0], out));
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), inner)
        .await
        .expect("no reply and no close from the server within 10 s (a hang)")
}

/// A PRELOGIN payload with VERSION and ENCRYPTION = `encryption`.
pub fn prelogin(encryption: u8) -> Vec<u8> {
    let mut v = vec![0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF];
    v.extend_from_slice(&[0x10, 0, 0, 0, 0, 0]);
    v.push(encryption);
    v
}

/// A minimal LOGIN7 payload (TDS 7.4) for `user` / `password`.
pub fn login7(user: &str, password: &str) -> Vec<u8> {
    let mut fixed = vec![0u8; 94];
    fixed[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
    fixed[8..12].copy_from_slice(&4096u32.to_le_bytes());
    let mut data = Vec::new();
    for (at, bytes) in [(40usize, utf16(user)), (44, obfuscated(password))] {
        let off = 94 + data.len();
        fixed[at..at + 2].copy_from_slice(&(off as u16).to_le_bytes());
        fixed[at + 2..at + 4].copy_from_slice(&((bytes.len() / 2) as u16).to_le_bytes());
        data.extend_from_slice(&bytes);
    }
    fixed.extend(data);
    let len = fixed.len() as u32;
    fixed[0..4].copy_from_slice(&len.to_le_bytes());
    fixed
}

/// The `(number, class)` of the first ERROR token (0xAA) of a reply, if it starts with one.
pub fn first_error(reply: &[u8]) -> Option<(i32, u8)> {
    (reply.first() == Some(&0xAA) && reply.len() > 9).then(|| {
        (
            i32::from_le_bytes([reply[3], reply[4], reply[5], reply[6]]),
            reply[8],
        )
    })
}
