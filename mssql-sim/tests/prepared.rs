//! What standard clients send: prepared statements over RPC (`sp_prepare`, `sp_execute`,
//! `sp_prepexec`, `sp_unprepare`) and unixODBC's `isql` through the FreeTDS driver, which
//! prepares and executes its statement with NTEXT parameters. These tests fail (not skip)
//! when `isql` or the FreeTDS ODBC driver is missing.

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use common::*;
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::io::Write;

async fn start() -> SimHandle {
    let f = fixtures::build(&Options::default());
    Simulator::start(f.estate.clone(), SimOptions::default())
        .await
        .unwrap()
}

fn w(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

const COLL: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// An RPC by well-known id; each parameter is (status, TYPE_INFO + value), unnamed.
fn rpc(id: u16, params: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut v = batch_payload("");
    v.extend_from_slice(&[0xFF, 0xFF]);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&[0, 0]);
    for (status, body) in params {
        v.push(0);
        v.push(*status);
        v.extend_from_slice(body);
    }
    v
}

fn ntext(s: Option<&str>) -> Vec<u8> {
    let mut v = vec![0x63, 0, 0, 0, 0];
    v.extend_from_slice(&COLL);
    match s {
        Some(s) => {
            let b = w(s);
            v.extend_from_slice(&(b.len() as u32).to_le_bytes());
            v.extend(b);
        }
        None => v.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    v
}

fn nvarchar_max(s: &str) -> Vec<u8> {
    let b = w(s);
    let mut v = vec![0xE7, 0xFF, 0xFF];
    v.extend_from_slice(&COLL);
    v.extend_from_slice(&(b.len() as u64).to_le_bytes());
    v.extend_from_slice(&(b.len() as u32).to_le_bytes());
    v.extend(b);
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

fn int(v: Option<i32>) -> Vec<u8> {
    match v {
        Some(i) => {
            let mut b = vec![0x26, 4, 4];
            b.extend_from_slice(&i.to_le_bytes());
            b
        }
        None => vec![0x26, 4, 0],
    }
}

/// The handle in an unnamed `int` RETURNVALUE token.
fn returned_handle(reply: &[u8]) -> Option<i32> {
    let pat = [0xAC, 0, 0, 0, 0x01, 0, 0, 0, 0, 0x01, 0, 0x26, 4, 4];
    reply
        .windows(pat.len() + 4)
        .find(|win| win[..pat.len()] == pat)
        .map(|win| i32::from_le_bytes(win[pat.len()..].try_into().unwrap()))
}

/// Whether the reply carries an ERROR token with `number`.
fn has_error(reply: &[u8], number: i32) -> bool {
    reply
        .windows(7)
        .any(|win| win[0] == 0xAA && win[3..7] == number.to_le_bytes())
}

fn contains(reply: &[u8], s: &str) -> bool {
    let n = w(s);
    reply.windows(n.len()).any(|win| win == n)
}

#[tokio::test]
async fn prepare_execute_unprepare_lifecycle() {
    let sim = start().await;
    let port = sim.addr_of(&fixtures::active()).unwrap().port();
    let mut c = RawClient::login(port, LOGIN_USER, LOGIN_PASSWORD).await;
    let sql = "SELECT name, state_desc FROM sys.databases WHERE name = @P1";
    // sp_prepare (id 11): @handle OUTPUT, @params, @stmt (NTEXT as FreeTDS sends them).
    c.send(
        3,
        &rpc(
            11,
            &[
                (1, int(None)),
                (0, ntext(Some("@P1 nvarchar(128)"))),
                (0, ntext(Some(sql))),
            ],
        ),
    )
    .await;
    let reply = c.recv().await;
    let handle = returned_handle(&reply).expect("sp_prepare returns the handle");
    // sp_execute (id 12) with a positional NVARCHAR(MAX) (PLP) value.
    c.send(
        3,
        &rpc(12, &[(0, int(Some(handle))), (0, nvarchar_max("xds"))]),
    )
    .await;
    let reply = c.recv().await;
    assert!(contains(&reply, "xds") && contains(&reply, "ONLINE"));
    assert!(!contains(&reply, "lis"), "the parameter filtered the rows");
    // sp_unprepare (id 15), then the handle is gone: 8179 as on SQL Server.
    c.send(3, &rpc(15, &[(0, int(Some(handle)))])).await;
    let reply = c.recv().await;
    assert!(!reply.contains(&0xAA), "sp_unprepare succeeds");
    c.send(3, &rpc(12, &[(0, int(Some(handle)))])).await;
    assert!(has_error(&c.recv().await, 8179));
}

#[tokio::test]
async fn prepexec_returns_rows_and_a_handle_and_bad_calls_get_real_errors() {
    let sim = start().await;
    let port = sim.addr_of(&fixtures::active()).unwrap().port();
    let mut c = RawClient::login(port, LOGIN_USER, LOGIN_PASSWORD).await;
    // sp_prepexec (id 13) exactly as FreeTDS' ODBC driver sends it for isql.
    c.send(
        3,
        &rpc(
            13,
            &[
                (1, int(None)),
                (0, ntext(None)),
                (0, ntext(Some("SELECT name, state_desc FROM sys.databases"))),
            ],
        ),
    )
    .await;
    let reply = c.recv().await;
    assert!(returned_handle(&reply).is_some());
    assert!(contains(&reply, "xds") && contains(&reply, "lis"));
    // @stmt missing: 201; of the wrong type: 214; an unknown type: 8009.
    c.send(3, &rpc(13, &[(1, int(None)), (0, ntext(None))]))
        .await;
    assert!(has_error(&c.recv().await, 201));
    c.send(
        3,
        &rpc(13, &[(1, int(None)), (0, ntext(None)), (0, int(Some(1)))]),
    )
    .await;
    assert!(has_error(&c.recv().await, 214));
    c.send(3, &rpc(10, &[(0, vec![0x62, 0, 0, 0, 0])])).await;
    let reply = c.recv().await;
    assert!(has_error(&reply, 8009));
    assert!(!contains(&reply, "simulator"));
}

/// unixODBC's `isql` through FreeTDS (SQLPrepare + SQLExecute, i.e. `sp_prepexec` with
/// NTEXT parameters). The password goes in a file DSN, never in argv.
#[tokio::test]
async fn isql_through_freetds_reads_sys_databases() {
    let sim = start().await;
    let port = sim.addr_of(&fixtures::active()).unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let dsn = dir.path().join("sim.dsn");
    let mut f = std::fs::File::create(&dsn).unwrap();
    writeln!(
        f,
        "[ODBC]\nDRIVER=FreeTDS\nSERVER=127.0.0.1\nPORT={port}\nTDS_Version=7.4\nUID={LOGIN_USER}\nPWD={LOGIN_PASSWORD}"
    )
    .unwrap();
    drop(f);
    let run = |sql: &'static str| {
        let dsn = dsn.clone();
        async move {
            let mut child = tokio::process::Command::new("isql")
                .args(["-v", "-b", "-k", &format!("FILEDSN={}", dsn.display())])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("unixODBC `isql` must be installed (apt-get install -y unixodbc)");
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{sql}\n").as_bytes())
                .await
                .unwrap();
            drop(stdin);
            let out =
                tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                    .await
                    .expect("isql did not finish")
                    .unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }
    };
    let out = run("SELECT name, state_desc FROM sys.databases").await;
    assert!(!out.contains("ERROR"), "{out}");
    for line in ["| xds ", "| lis ", "| master "] {
        assert!(out.contains(line), "{line} missing in {out}");
    }
    assert!(out.contains("| ONLINE"), "{out}");
    let out = run("SELECT name FROM sys.no_such_view").await;
    assert!(out.contains("Invalid object name"), "{out}");
}
