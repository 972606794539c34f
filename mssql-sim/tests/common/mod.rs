//! Shared helpers: a tiberius client, FreeTDS `tsql` runner and a raw TDS client.
#![allow(dead_code)]

pub mod tls;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// The password tests log in with.
pub const PASSWORD: &str = "Test-only-pa55word!";

/// A tiberius connection over plaintext.
pub type Tib = Client<Compat<TcpStream>>;

/// Connects tiberius to the simulator on `port` of 127.0.0.1.
pub async fn tiberius_connect(
    port: u16,
    user: &str,
    password: &str,
    database: Option<&str>,
) -> tiberius::Result<Tib> {
    tiberius_connect_at(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        user,
        password,
        database,
    )
    .await
}

/// Connects tiberius to the simulator at `addr`.
pub async fn tiberius_connect_at(
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
    database: Option<&str>,
) -> tiberius::Result<Tib> {
    let mut config = Config::new();
    config.host(addr.ip().to_string());
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(EncryptionLevel::NotSupported);
    if let Some(db) = database {
        config.database(db);
    }
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

/// The server error number of a tiberius error (panics on other errors).
pub fn server_error(e: tiberius::error::Error) -> (u32, u8) {
    match e {
        tiberius::error::Error::Server(t) => (t.code(), t.class()),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Runs FreeTDS `tsql` against `port`, the password on stdin (`-P -`), `script` after it.
/// Fails loudly when `tsql` is missing.
pub async fn tsql(port: u16, user: &str, password: &str, script: &str) -> String {
    let mut child = tokio::process::Command::new("tsql")
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-P",
            "-",
        ])
        .env("TDSVER", "7.4")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("FreeTDS `tsql` must be installed (apt-get install -y freetds-bin)");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{password}\n{script}exit\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("tsql did not finish")
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn w(s: &str) -> Vec<u8> {
    tls::utf16(s)
}

/// An SQL batch payload with ALL_HEADERS.
pub fn batch_payload(sql: &str) -> Vec<u8> {
    let mut v = 22u32.to_le_bytes().to_vec();
    v.extend_from_slice(&18u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend(w(sql));
    v
}

/// A hand-rolled TDS client for what tiberius cannot do (attention).
pub struct RawClient {
    s: TcpStream,
}

impl RawClient {
    /// Connects and logs in (LOGIN7 without PRELOGIN), asserting LOGINACK.
    pub async fn login(port: u16, user: &str, password: &str) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = Self { s };
        c.send(0x10, &tls::login7(user, password)).await;
        let reply = c.recv().await;
        assert!(reply.contains(&0xAD), "LOGINACK expected");
        c
    }

    /// Sends one single-packet message.
    pub async fn send(&mut self, ty: u8, payload: &[u8]) {
        tls::send_msg(&mut self.s, ty, payload).await;
    }

    /// Receives one whole reply message's payload (fails after 10 s without one).
    pub async fn recv(&mut self) -> Vec<u8> {
        tls::recv_msg(&mut self.s)
            .await
            .expect("the server closed the connection")
            .1
    }

    /// Whether the server closed the connection (EOF on read).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b).await, Ok(0) | Err(_))
    }
}

/// Runs a batch and returns every result set as rows of optional strings (a simple,
/// driver-neutral view to compare tiberius and tsql results), or the server error.
pub async fn batch(c: &mut Tib, sql: &str) -> Result<Vec<Vec<Vec<Option<String>>>>, (u32, u8)> {
    let stream = c.simple_query(sql).await.map_err(server_error)?;
    let sets = stream.into_results().await.map_err(server_error)?;
    Ok(sets
        .into_iter()
        .map(|rows| rows.into_iter().map(row_strings).collect())
        .collect())
}

/// A row's values as strings (`None` for NULL).
pub fn row_strings(r: tiberius::Row) -> Vec<Option<String>> {
    use tiberius::ColumnData as C;
    r.into_iter()
        .map(|v| match v {
            C::I32(x) => x.map(|x| x.to_string()),
            C::I64(x) => x.map(|x| x.to_string()),
            C::I16(x) => x.map(|x| x.to_string()),
            C::U8(x) => x.map(|x| x.to_string()),
            C::Bit(x) => x.map(|x| if x { "1".into() } else { "0".into() }),
            C::String(x) => x.map(|x| x.into_owned()),
            other => Some(format!("{other:?}")),
        })
        .collect()
}

/// Shorthand for an expected row.
pub fn row(v: &[Option<&str>]) -> Vec<Option<String>> {
    v.iter().map(|x| x.map(str::to_string)).collect()
}

/// Result sets printed by `tsql` (shared with the crash campaign).
#[allow(unused_imports)]
pub use mssql_sim::freetds::tsql_sets;

/// An RPC payload calling `proc_name` by name with named parameters (NVARCHAR or INTN).
pub fn rpc_payload(proc_name: &str, params: &[(&str, Result<&str, i32>)]) -> Vec<u8> {
    let mut v = batch_payload("");
    let name = w(proc_name);
    v.extend_from_slice(&((name.len() / 2) as u16).to_le_bytes());
    v.extend(name);
    v.extend_from_slice(&0u16.to_le_bytes());
    for (n, val) in params {
        let n = w(n);
        v.push((n.len() / 2) as u8);
        v.extend(n);
        v.push(0);
        match val {
            Ok(s) => {
                let s = w(s);
                v.push(0xE7);
                v.extend_from_slice(&8000u16.to_le_bytes());
                v.extend_from_slice(&[0x09, 0x04, 0xD0, 0x00, 0x34]);
                v.extend_from_slice(&(s.len() as u16).to_le_bytes());
                v.extend(s);
            }
            Err(i) => {
                v.extend_from_slice(&[0x26, 4, 4]);
                v.extend_from_slice(&i.to_le_bytes());
            }
        }
    }
    v
}

/// Every error number FreeTDS `tsql` prints for `sql` run as the fixture login, in order
/// (informational messages such as 3014 included).
pub async fn error_numbers(port: u16, sql: &str) -> Vec<u32> {
    use backend_fake::fixtures::{LOGIN_PASSWORD, LOGIN_USER};
    let out = tsql(port, LOGIN_USER, LOGIN_PASSWORD, &format!("{sql}\ngo\n")).await;
    out.lines()
        .filter_map(|l| l.split("Msg ").nth(1))
        .filter_map(|r| {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}
