//! Every bad input of issue 5 exits 2 before any connection: each topology points every
//! instance at a trap listener and each test checks that nobody connected to it.

mod common;

use common::{PW_VAR, Trap, Work, topology_text};

struct Case {
    work: Work,
    trap: Trap,
    topology: std::path::PathBuf,
}

impl Case {
    fn new() -> Self {
        Self::with_topology(|t| t)
    }
    fn with_topology(edit: impl FnOnce(String) -> String) -> Self {
        let work = Work::new();
        let trap = Trap::new();
        let text = edit(topology_text(true, &trap.endpoints(), ""));
        let topology = work.write("topology.toml", &text);
        Self {
            work,
            trap,
            topology,
        }
    }
    /// Runs `failover --topology T <args>` and expects exit 2 with `needle` on stderr.
    fn expect_usage(&self, cmd: &str, args: &[&str], needle: &str) -> String {
        let out = self
            .work
            .cmd()
            .arg(cmd)
            .arg("--topology")
            .arg(&self.topology)
            .arg("--journal-dir")
            .arg(self.work.journal())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(2),
            "args {args:?}; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(needle),
            "args {args:?}: stderr lacks `{needle}`:\n{stderr}"
        );
        self.trap.assert_untouched();
        assert!(
            !self.work.journal().join("journal.jsonl").exists()
                || std::fs::read_to_string(self.work.journal().join("journal.jsonl"))
                    .unwrap()
                    .is_empty(),
            "nothing may be journaled"
        );
        stderr
    }
}

#[test]
fn unknown_flag() {
    Case::new().expect_usage("failover", &["--frobnicate"], "--frobnicate");
}

#[test]
fn malformed_fqdn() {
    let s = Case::new().expect_usage(
        "failover",
        &["--force", "--backup-sql-server-fqdn", "bad_host!.example"],
        "invalid --backup-sql-server-fqdn `bad_host!.example`",
    );
    assert!(s.contains("next:"), "{s}");
}

#[test]
fn malformed_instance_name() {
    let c = Case::new();
    for bad in ["DEFAULT", "has space", "ABCDEFGHIJKLMNOPQ"] {
        c.expect_usage(
            "failover",
            &[
                "--force",
                "--backup-sql-server-fqdn",
                "sql-b.cms.test",
                "--backup-sql-instance-name",
                bad,
            ],
            "invalid --backup-sql-instance-name",
        );
    }
}

#[test]
fn mirror_server_without_instance_and_reverse() {
    let c = Case::new();
    let base = [
        "--force",
        "--backup-sql-server-fqdn",
        "sql-b.cms.test",
        "--backup-sql-instance-name",
        "RTC",
    ];
    let mut a = base.to_vec();
    a.extend(["--backup-mirror-sql-server-fqdn", "sql-b2.cms.test"]);
    c.expect_usage("failover", &a, "--backup-mirror-sql-instance-name");
    let mut b = base.to_vec();
    b.extend(["--backup-mirror-sql-instance-name", "RTC"]);
    c.expect_usage("failover", &b, "--backup-mirror-sql-server-fqdn");
}

#[test]
fn force_without_fqdn_and_reverse() {
    let c = Case::new();
    c.expect_usage("failover", &["--force"], "--backup-sql-server-fqdn");
    c.expect_usage(
        "failover",
        &["--backup-sql-server-fqdn", "sql-b.cms.test"],
        "--force",
    );
}

#[test]
fn source_equals_target() {
    // A disaster-recovery target with instances in both stores of the pair. (A target that
    // is the file's [active] store alone is the way back after a failover: failback.rs.)
    Case::new().expect_usage(
        "failover",
        &[
            "--force",
            "--backup-sql-server-fqdn",
            "sql-a.cms.test",
            "--backup-sql-instance-name",
            "RTC",
            "--backup-mirror-sql-server-fqdn",
            "sql-b.cms.test",
            "--backup-mirror-sql-instance-name",
            "RTC",
        ],
        "source equals target",
    );
    Case::with_topology(|t| {
        t.replace(
            "principal = 'sql-b.cms.test\\RTC'",
            "principal = 'sql-a.cms.test\\RTC'",
        )
    })
    .expect_usage("failover", &[], "source equals target");
}

#[test]
fn unreadable_topology() {
    let c = Case::new();
    let missing = c.work.path("nope.toml");
    let out = c
        .work
        .cmd()
        .args(["failover", "--topology"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("cannot read the topology file"), "{e}");
    c.trap.assert_untouched();
}

#[test]
fn invalid_topology_names_line_and_key() {
    // A bad address on the backup principal: line 8 of the generated file.
    let c = Case::with_topology(|t| t.replace("sql-b.cms.test\\RTC'", "sql-b.cms.test\\RT C'"));
    let e = c.expect_usage("failover", &[], "key `backup.principal`");
    assert!(e.contains("topology.toml:8:"), "{e}");
    // An unknown key.
    let c = Case::with_topology(|t| t.replace("[login]\n", "[login]\npasword = \"x\"\n"));
    let e = c.expect_usage("status", &[], "key `pasword`");
    assert!(e.contains("unknown field"), "{e}");
    // A TOML syntax error.
    let c = Case::with_topology(|t| t.replace("[active]", "[active"));
    c.expect_usage("restore", &[], "topology.toml:3:");
    // A bad timeout.
    let c = Case::with_topology(|t| t.replace("step = \"3s\"", "step = \"soon\""));
    c.expect_usage("failover", &[], "key `timeouts.step`");
}

#[test]
fn missing_password_variable() {
    let c = Case::new();
    let out = c
        .work
        .cmd()
        .env_remove(PW_VAR)
        .args(["failover", "--topology"])
        .arg(&c.topology)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(PW_VAR), "{e}");
    c.trap.assert_untouched();
    // The same for status.
    let out = c
        .work
        .cmd()
        .env_remove(PW_VAR)
        .args(["status", "--topology"])
        .arg(&c.topology)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    c.trap.assert_untouched();
}

#[test]
fn missing_password_file() {
    let c = Case::with_topology(|t| {
        t.replace(
            &format!("password_env = \"{PW_VAR}\""),
            "password_file = \"no-such-password-file\"",
        )
    });
    c.expect_usage("failover", &[], "no-such-password-file");
}

#[test]
fn report_path_cannot_be_written() {
    let c = Case::new();
    let bad = c.work.path("no/such/dir/report.html");
    c.expect_usage(
        "failover",
        &["--report", bad.to_str().unwrap()],
        "does not exist",
    );
    let dir = c.work.dir.path().to_str().unwrap().to_string();
    c.expect_usage("failover", &["--report", &dir], "is a directory");
}

#[test]
fn bad_durations_and_tls() {
    let c = Case::new();
    c.expect_usage(
        "failover",
        &["--replication-timeout", "0s"],
        "--replication-timeout",
    );
    c.expect_usage("failover", &["--step-timeout", "fast"], "--step-timeout");
    c.expect_usage("failover", &["--tls", "sometimes"], "--tls");
}

#[test]
fn demo_rejects_bad_mode() {
    let w = Work::new();
    let out = w
        .cmd()
        .args(["demo", "--mode", "sideways"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
