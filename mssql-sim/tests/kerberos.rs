//! Integrated security (Kerberos) end to end: Samba's AD DC (`scripts/samba-dc.sh`) issues
//! real tickets, the `mssql-sim` binary (feature `gssapi`) verifies them with the service
//! keytab the fixture exported, and FreeTDS `tsql` logs in with nothing but a ticket cache
//! (no user name, no password) as the independent client.
//!
//! One test, because the DC's ports are fixed. Needs root, the feature `gssapi` and the
//! Debian packages the README's test command installs; without them it prints SKIPPED (and
//! fails under `CI`).

use mssql_sim::freetds::tsql_sets;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;
use test_samba::{Running, SambaDc, available, output_within};

const BIN: &str = env!("CARGO_BIN_EXE_mssql-sim");

/// A loopback port nothing listens on right now (the simulator binds it next; the SPN must
/// name it before the DC is provisioned).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `cmd` with `stdin`, bounded by `limit`; stdout and stderr together.
fn run_bounded(cmd: &mut Command, stdin: &str, limit: Duration) -> String {
    let what = format!("{cmd:?}");
    let out = output_within(cmd, Some(stdin), limit, &what).unwrap_or_else(|e| panic!("{e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn kerberos_logins_with_tsql() {
    let gssapi = cfg!(feature = "gssapi");
    if !available(
        "the Kerberos test",
        &["tsql"],
        &[("feature gssapi", gssapi)],
    ) {
        return;
    }
    let (pa, pb) = (free_port(), free_port());
    // sql-a is served; sql-b only has its SPN in the keytab (a ticket for the wrong service).
    let instances = format!("sql-a.cms.test:{pa}:RTC sql-b.cms.test:{pb}");
    // The default address of `scripts/samba-dc.sh`; this crate's only DC.
    let dc = SambaDc::start("127.0.0.1", &[("SQL_INSTANCES", &instances)]);
    assert_eq!(
        dc.var("KRB5_SPNS"),
        format!(
            "MSSQLSvc/sql-a.cms.test:{pa} MSSQLSvc/sql-a.cms.test:RTC MSSQLSvc/sql-b.cms.test:{pb}"
        )
    );

    let work = tempfile::tempdir().unwrap();
    let estate = work.path().join("estate.toml");
    std::fs::write(
        &estate,
        format!(
            r#"
[[instance]]
name = 'sql-a.cms.test\RTC'
port = {pa}
[[instance.database]]
name = "xds"

[[windows_login]]
principal = "{user}"
name = 'CMS\cmsuser'
sysadmin = true
"#,
            user = dc.var("KRB5_USER_PRINCIPAL")
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--estate")
        .arg(&estate)
        .env("MSSQL_SIM_PASSWORD", "Test-only-pa55word!")
        .env("KRB5_CONFIG", dc.var("KRB5_CONFIG"))
        .env("KRB5_KTNAME", dc.var("KRB5_KTNAME_SERVICE"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _sim = Running(child);
    // Ends at EOF if the binary exits instead.
    let line = BufReader::new(out)
        .lines()
        .next()
        .expect("a listening line")
        .unwrap();
    assert_eq!(
        line,
        format!("listening on 127.0.0.1:{pa} sql-a.cms.test\\RTC")
    );

    // FreeTDS: no user name and no password, so it uses GSSAPI with the ticket cache
    // (freetds.org userguide "Domain logins"); `spn` names the service principal, since the
    // host is an address.
    let conf = work.path().join("freetds.conf");
    let section = |name: &str, spn: &str| {
        format!(
            "[{name}]\n    host = 127.0.0.1\n    port = {pa}\n    tds version = 7.4\n    spn = {spn}\n"
        )
    };
    std::fs::write(
        &conf,
        [
            section("by_port", &format!("MSSQLSvc/sql-a.cms.test:{pa}")),
            section("by_instance", "MSSQLSvc/sql-a.cms.test:RTC"),
            section("wrong_service", &format!("MSSQLSvc/sql-b.cms.test:{pb}")),
        ]
        .concat(),
    )
    .unwrap();
    let tsql = |server: &str, ccache: &str, script: &str| {
        run_bounded(
            Command::new("tsql")
                .args(["-S", server])
                .env("FREETDSCONF", &conf)
                .envs(dc.krb5_env(ccache)),
            &format!("{script}\ngo\nexit\n"),
            Duration::from_secs(60),
        )
    };
    let user = dc.var("KRB5CCNAME_USER");
    let sql = "SELECT name FROM sys.databases WHERE name = N'xds'";
    for server in ["by_port", "by_instance"] {
        let out = tsql(server, user, sql);
        assert_eq!(
            tsql_sets(&out),
            vec![vec![
                vec![Some("name".to_string())],
                vec![Some("xds".to_string())]
            ]],
            "{server}: {out}"
        );
    }

    // A valid principal the estate does not admit: 18456, as SQL Server answers.
    let out = tsql("by_port", dc.var("KRB5CCNAME_INTRUDER"), sql);
    assert!(out.contains("Msg 18456"), "{out}");
    assert!(
        out.contains("Login failed for user 'CMS\\intruder'."),
        "{out}"
    );
    assert!(tsql_sets(&out).is_empty(), "{out}");

    // A ticket for another instance's SPN (its key is in the keytab, so it decrypts): 18452.
    let out = tsql("wrong_service", user, sql);
    assert!(out.contains("Msg 18452"), "{out}");
    assert!(tsql_sets(&out).is_empty(), "{out}");
}
