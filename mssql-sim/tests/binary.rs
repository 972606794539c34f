//! The `mssql-sim` binary: password handling, the `listening on` lines, estate files.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mssql-sim");

/// Kills the child on drop so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and reads `n` `listening on HOST:PORT NAME` lines.
fn spawn(cmd: &mut Command, n: usize) -> (Running, Vec<(String, u16)>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let running = Running(child);
    let mut lines = BufReader::new(out).lines();
    let mut got = Vec::new();
    for _ in 0..n {
        let line = lines.next().expect("a listening line").unwrap();
        let rest = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line}"));
        let (addr, name) = rest.split_once(' ').unwrap();
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        got.push((name.to_string(), port));
    }
    (running, got)
}

#[tokio::test]
async fn default_estate_with_password_from_env() {
    let (_p, lines) = spawn(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .env("MSSQL_SIM_PASSWORD", PASSWORD),
        1,
    );
    assert_eq!(lines[0].0, "localhost");
    let mut c = tiberius_connect(lines[0].1, "sa", PASSWORD, None)
        .await
        .unwrap();
    let sets = batch(&mut c, "SELECT name, is_read_only FROM sys.databases WHERE name IN (N'xds', N'lis') ORDER BY name;").await.unwrap();
    assert_eq!(
        sets[0],
        vec![
            row(&[Some("lis"), Some("0")]),
            row(&[Some("xds"), Some("0")])
        ]
    );
    assert_eq!(
        server_error(
            tiberius_connect(lines[0].1, "sa", "nope", None)
                .await
                .unwrap_err()
        )
        .0,
        18456
    );
}

#[tokio::test]
async fn estate_file_and_password_file() {
    let dir = std::env::temp_dir().join(format!("mssql-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let estate = concat!(env!("CARGO_MANIFEST_DIR"), "/estate.example.toml");
    let (_p, lines) = spawn(
        Command::new(BIN)
            .args(["--estate", estate, "--password-file"])
            .arg(&pw)
            .env_remove("MSSQL_SIM_PASSWORD")
            .env("CMS_LOGIN_PASSWORD", "login-pw"),
        3,
    );
    let a = lines
        .iter()
        .find(|(n, _)| n == "sql-a.cms.test\\RTC")
        .expect("sql-a served");
    let mut c = tiberius_connect(a.1, "sa", PASSWORD, None).await.unwrap();
    let sets = batch(&mut c, "SELECT m.mirroring_role_desc FROM sys.database_mirroring AS m WHERE m.database_id = DB_ID(N'xds');").await.unwrap();
    assert_eq!(sets[0], vec![row(&[Some("PRINCIPAL")])]);
    tiberius_connect(a.1, "cmsfailover", "login-pw", None)
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_to_start_without_a_password() {
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("MSSQL_SIM_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MSSQL_SIM_PASSWORD"));
    let out = Command::new(BIN)
        .args(["--estate", "/nonexistent.toml"])
        .env("MSSQL_SIM_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn tls_flags_and_estate_file_tls() {
    use common::tls::*;
    use tiberius::EncryptionLevel;
    let pki = test_pki::TestPki::generate(["localhost", "sql-a.cms.test"]).unwrap();
    let l = pki.server("localhost").unwrap();
    let (_p, lines) = spawn(
        Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--force-encryption",
                "--tls-cert",
            ])
            .arg(&l.cert)
            .arg("--tls-key")
            .arg(&l.key)
            .env("MSSQL_SIM_PASSWORD", PASSWORD),
        1,
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], lines[0].1).into();
    let mut c = tiberius_tls_as(
        addr,
        "localhost",
        EncryptionLevel::Required,
        Trust::Ca(pki.ca_cert()),
        "sa",
        PASSWORD,
    )
    .await
    .unwrap();
    assert_eq!(
        batch(&mut c, "SELECT 1 AS one;").await.unwrap()[0],
        vec![row(&[Some("1")])]
    );
    // --force-encryption: a plaintext LOGIN7 is refused with 17835
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    send_msg(&mut s, 0x10, &login7("sa", PASSWORD)).await;
    let (_, reply) = recv_msg(&mut s).await.unwrap();
    assert_eq!(first_error(&reply), Some((17835, 20)));

    // per instance in the estate file, paths relative to the file
    let a = pki.server("sql-a.cms.test").unwrap();
    let file = pki.dir().join("estate.toml");
    let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::write(
        &file,
        format!(
            "[[instance]]\nname = 'sql-a.cms.test\\RTC'\ntls_cert = '{}'\ntls_key = '{}'\n",
            name(&a.cert),
            name(&a.key)
        ),
    )
    .unwrap();
    let (_p, lines) = spawn(
        Command::new(BIN)
            .arg("--estate")
            .arg(&file)
            .env("MSSQL_SIM_PASSWORD", PASSWORD),
        1,
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], lines[0].1).into();
    let rec = Recorder::start(addr).await;
    let mut c = tiberius_tls_as(
        rec.addr,
        "sql-a.cms.test",
        EncryptionLevel::On,
        Trust::Ca(pki.ca_cert()),
        "sa",
        PASSWORD,
    )
    .await
    .unwrap();
    batch(&mut c, "SELECT N'estate-file-tls' AS m;")
        .await
        .unwrap();
    assert!(!rec.saw(&utf16("estate-file-tls")), "encrypted");

    // a key that is not there: exit 2 before listening, naming the file
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&l.cert)
        .args(["--tls-key", "/nonexistent/key.pem"])
        .env("MSSQL_SIM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/key.pem"));
    // --force-encryption without a certificate is a usage error
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--force-encryption"])
        .env("MSSQL_SIM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
