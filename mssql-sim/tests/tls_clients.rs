//! Independent TLS clients against the simulator: FreeTDS `tsql` (GnuTLS) with
//! `encryption = require` and a CA file, and python-tds (pyOpenSSL) with `cafile=` and host
//! validation. Each test skips with a loud SKIPPED when its tool is missing, unless CI=true
//! (then a missing tool fails it). `scripts/test-all.sh` installs both.

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use common::tls::*;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Runs `cmd` with `stdin` fed, bounded by 60 s; returns (success, stdout + stderr).
async fn run(mut cmd: tokio::process::Command, stdin: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the client neither finished nor failed within 60 s (a hang)")
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn tsql_available() -> bool {
    let ok = std::process::Command::new("tsql")
        .arg("-C")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_missing("FreeTDS tsql", "apt-get install -y freetds-bin");
    }
    ok
}

/// `tsql -S sim` with a freetds.conf naming `port`, `encryption` and `ca file`.
async fn tsql_tls(dir: &Path, port: u16, encryption: &str, ca: &Path, sql: &str) -> (bool, String) {
    let conf = dir.join(format!("freetds-{port}-{encryption}.conf"));
    std::fs::write(
        &conf,
        format!(
            "[global]\n[sim]\n\thost = 127.0.0.1\n\tport = {port}\n\ttds version = 7.4\n\
             \tencryption = {encryption}\n\tca file = {}\n\tcheck certificate hostname = yes\n",
            ca.display()
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new("tsql");
    cmd.args(["-S", "sim", "-U", LOGIN_USER, "-P", "-"])
        .env("FREETDSCONF", &conf)
        .env_remove("TDSVER");
    run(cmd, &format!("{LOGIN_PASSWORD}\n{sql}\ngo\nexit\n")).await
}

/// Runs `tsql` with `encryption` against `target` through a recording proxy, selecting
/// `marker`; asserts it ran and says what crossed the wire in clear: (LOGIN7, the batch).
async fn tsql_in_clear(
    pki: &test_pki::TestPki,
    target: std::net::SocketAddr,
    encryption: &str,
    marker: &str,
) -> (bool, bool) {
    let rec = Recorder::start(target).await;
    let sql = format!("SELECT N'{marker}' AS m");
    let (ok, out) = tsql_tls(pki.dir(), rec.addr.port(), encryption, pki.ca_cert(), &sql).await;
    assert!(
        ok && out.contains(marker),
        "tsql ({encryption}) output:\n{out}"
    );
    (
        rec.saw(&obfuscated(LOGIN_PASSWORD)),
        rec.saw(&utf16(marker)),
    )
}

#[tokio::test]
async fn tsql_logs_in_over_tls_with_encryption_require_and_a_ca_file() {
    if !tsql_available() {
        return;
    }
    for force in [false, true] {
        let (sim, _f, pki) = start_tls(&Options::default(), Served::Valid, force).await;
        let target = sim.addr_of(&fixtures::active()).unwrap();
        // `require` sends ENCRYPT_ON: the whole session is encrypted.
        let got = tsql_in_clear(&pki, target, "require", "tsql-require").await;
        assert_eq!(got, (false, false), "require, force {force}");
        // `request` sends ENCRYPT_OFF: only the login, unless the server forces.
        let got = tsql_in_clear(&pki, target, "request", "tsql-request").await;
        assert_eq!(got, (false, !force), "request, force {force}");
        // `off` sends ENCRYPT_NOT_SUP: plaintext, unless the server forces (ENCRYPT_REQ),
        // when FreeTDS encrypts the whole session.
        let got = tsql_in_clear(&pki, target, "off", "tsql-off").await;
        assert_eq!(got, (!force, !force), "off, force {force}");
        // The wrong CA: tsql refuses the server and never logs in.
        let (ok, out) = tsql_tls(
            pki.dir(),
            target.port(),
            "require",
            pki.other_ca_cert(),
            "SELECT N'must-not-run' AS m",
        )
        .await;
        assert!(!out.contains("must-not-run"), "tsql output:\n{out}");
        assert!(
            !ok || out.contains("connection failed") || out.contains("problem connecting"),
            "tsql output:\n{out}"
        );
    }
}

const PYTHON_TDS: &str = r#"
import socket, sys, pytds
port, sni, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
user, login_only = sys.argv[4], sys.argv[5] == "login-only"
password = sys.stdin.readline().rstrip("\n")
sock = socket.create_connection(("127.0.0.1", port), timeout=30)
with pytds.connect(server=sni, port=port, user=user, password=password, cafile=ca,
                   validate_host=True, enc_login_only=login_only, sock=sock,
                   autocommit=True, timeout=30, login_timeout=30) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT N'python-tds-over-tls' AS m")
        print(cur.fetchone()[0])
"#;

/// The interpreter with python-tds: $CMS_FAILOVER_PYTHON_TDS (set by scripts/test-all.sh),
/// else `python3` if it can import pytds and OpenSSL.
fn python_tds() -> Option<String> {
    let py = std::env::var("CMS_FAILOVER_PYTHON_TDS").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&py)
        .args(["-c", "import pytds, OpenSSL"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        skip_missing(
            "python-tds",
            "pip install python-tds 'pyOpenSSL<24.3' (scripts/test-all.sh does), or set CMS_FAILOVER_PYTHON_TDS",
        );
        None
    }
}

async fn python_login(
    py: &str,
    dir: &Path,
    port: u16,
    sni: &str,
    ca: &Path,
    login_only: bool,
) -> (bool, String) {
    let script = dir.join("login.py");
    std::fs::write(&script, PYTHON_TDS).unwrap();
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(&script)
        .arg(port.to_string())
        .arg(sni)
        .arg(ca)
        .arg(LOGIN_USER)
        .arg(if login_only { "login-only" } else { "full" });
    run(cmd, &format!("{LOGIN_PASSWORD}\n")).await
}

#[tokio::test]
async fn python_tds_logs_in_over_tls_with_a_ca_file_and_host_validation() {
    let Some(py) = python_tds() else {
        return;
    };
    // Not forcing: the whole session (ENCRYPT_ON) or the login only (enc_login_only sends
    // ENCRYPT_OFF). Forcing: the whole session either way.
    for (force, login_only, batch_clear) in [
        (false, false, false),
        (false, true, true),
        (true, true, false),
    ] {
        let (sim, _f, pki) = start_tls(&Options::default(), Served::Valid, force).await;
        let rec = Recorder::start(sim.addr_of(&fixtures::active()).unwrap()).await;
        let host = fixtures::active().host().to_string();
        let (ok, out) = python_login(
            &py,
            pki.dir(),
            rec.addr.port(),
            &host,
            pki.ca_cert(),
            login_only,
        )
        .await;
        assert!(
            ok && out.contains("python-tds-over-tls"),
            "python-tds:\n{out}"
        );
        assert_eq!(
            rec.saw(&utf16("python-tds-over-tls")),
            batch_clear,
            "force {force}, login only {login_only}"
        );
        assert!(
            !rec.saw(&obfuscated(LOGIN_PASSWORD)),
            "LOGIN7 went in clear"
        );
    }

    // The wrong CA and the wrong name are refused by the client.
    let (sim, _f, pki) = start_tls(&Options::default(), Served::Valid, true).await;
    let port = sim.addr_of(&fixtures::active()).unwrap().port();
    let host = fixtures::active().host().to_string();
    let (ok, out) = python_login(&py, pki.dir(), port, &host, pki.other_ca_cert(), false).await;
    assert!(
        !ok && !out.contains("python-tds-over-tls"),
        "python-tds:\n{out}"
    );
    let (ok, out) =
        python_login(&py, pki.dir(), port, "sql-b.cms.test", pki.ca_cert(), false).await;
    assert!(
        !ok && out.contains("does not match host name"),
        "python-tds:\n{out}"
    );
}
