//! The topology's `[backup_service]` gate through the CLI, with fake status commands (one
//! shell script per behaviour, in a temp dir) against the TDS simulator: every export state,
//! a state that changes after the fence, a hang, garbage and a non-zero exit; and the
//! `[directory]` / `[backup_service]` sections' bad input (exit 2, nothing contacted, the
//! password nowhere in the output).

mod common;

use backend_fake::fixtures;
use common::{PW_VAR, Sim, Trap, Work, json, topology_text};
use std::path::{Path, PathBuf};

/// Writes a shell script into `dir`. The topology runs it as `["/bin/sh", PATH, …]`, not
/// as an executable: a file just written can fail to exec with ETXTBSY while another test
/// thread is between `fork` and `exec` holding its write descriptor.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    p
}

/// A script printing `Get-CsBackupServiceStatus | ConvertTo-Json` with this CMS export state.
fn printing(export: &str) -> String {
    format!(
        r#"cat <<'JSON'
{{"PoolFqdn":"pool01.cms.test","BackupModules":[{{"Identity":"UserServices.PresenceFocus","ExportStatus":"FinalState","ImportStatus":"NormalState"}},{{"Identity":"CentralMgmt.CMSMaster","ExportStatus":"{export}","ImportStatus":"NormalState"}}]}}
JSON"#
    )
}

fn section(cmd: &Path, timeout: &str) -> String {
    format!(
        "\n[backup_service]\ncommand = [\"/bin/sh\", \"{}\", \"--pool\", \"pool01.cms.test\"]\ntimeout = \"{timeout}\"\npool = \"pool01.cms.test\"\nfinal_state_timeout = \"1s\"\npoll_interval = \"100ms\"\n",
        cmd.display()
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    json: serde_json::Value,
}

/// A planned failover (`--yes --json`) gated on `body`.
fn failover(sim: &Sim, body: &str, timeout: &str) -> (Run, Work) {
    let w = Work::new();
    let cmd = script(w.dir.path(), "status.sh", body);
    let t = sim.topology(&w, &section(&cmd, timeout));
    let out = w
        .cmd()
        .args([
            "failover",
            "--yes",
            "--json",
            "--replication-timeout",
            "1s",
            "--topology",
        ])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json: json(&out.stdout),
    };
    (run, w)
}

fn refusal_code(r: &Run) -> String {
    r.json["outcome"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn states(r: &Run) -> Vec<String> {
    r.json["run"]["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn final_state_fails_over_and_the_report_shows_the_command() {
    let sim = Sim::standard();
    let (r, _w) = failover(&sim, &printing("FinalState"), "20s");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stderr, r.stdout);
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
    assert!(states(&r).contains(&"AwaitingBackupService".to_string()));
    // The gate replaces the SQL positions: none were read, and the step shows the argv.
    assert!(!r.stdout.contains("\"op\": \"positions\""), "{}", r.stdout);
    assert!(r.stdout.contains("--pool"), "{}", r.stdout);
}

#[test]
fn steady_state_is_enough_to_fence_then_final_state_is_awaited() {
    let sim = Sim::standard();
    // SteadyState for the first two reads (before the fence, then once after it), then
    // FinalState.
    let body = format!(
        "n=$(cat \"$0.count\" 2>/dev/null || echo 0); echo $((n+1)) > \"$0.count\"\nif [ \"$n\" -lt 2 ]; then\n{}\nelse\n{}\nfi",
        printing("SteadyState"),
        printing("FinalState")
    );
    let (r, _w) = failover(&sim, &body, "20s");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stderr, r.stdout);
    assert!(states(&r).contains(&"BackupServicePause".to_string()));
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
}

#[test]
fn steady_state_forever_rolls_the_fence_back() {
    let sim = Sim::standard();
    let (r, _w) = failover(&sim, &printing("SteadyState"), "20s");
    assert_eq!(r.code, Some(4), "{}\n{}", r.stderr, r.stdout);
    assert_eq!(
        r.json["outcome"]["reason"], "backup_service_timeout",
        "{}",
        r.stdout
    );
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
}

#[test]
fn a_backlog_or_a_blocked_module_is_refused_unfenced() {
    for (state, code) in [
        ("NonSteadyState", "backup_service_timeout"),
        ("NotInitialized", "backup_service_blocked"),
        ("ErrorState", "backup_service_blocked"),
    ] {
        let sim = Sim::standard();
        let before = sim.mutations();
        let (r, _w) = failover(&sim, &printing(state), "20s");
        assert_eq!(r.code, Some(3), "{state}: {}\n{}", r.stderr, r.stdout);
        assert_eq!(refusal_code(&r), code, "{state}: {}", r.stdout);
        assert!(!states(&r).contains(&"Fencing".to_string()), "{state}");
        assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
        // Only the lock was taken and released: no database changed.
        let changed = sim.estate.history()[before..].iter().any(|m| {
            matches!(
                m.change,
                backend_fake::Change::ReadOnly { .. } | backend_fake::Change::State { .. }
            )
        });
        assert!(!changed, "{state}");
    }
}

#[test]
fn a_failing_hanging_or_garbage_command_is_refused_showing_why() {
    let sim = Sim::standard();
    let cases = [
        (
            "echo 'ssh: connect to host fe01 port 22: Connection refused' >&2\nexit 255",
            "1s",
            "Connection refused",
        ),
        (
            "echo 'Get-CsBackupServiceStatus: not JSON at all'",
            "1s",
            "not JSON",
        ),
        ("exec sleep 1000", "300ms", "did not finish"),
    ];
    for (body, timeout, needle) in cases {
        let (r, _w) = failover(&sim, body, timeout);
        assert_eq!(r.code, Some(3), "{body}: {}\n{}", r.stderr, r.stdout);
        assert_eq!(
            refusal_code(&r),
            "backup_service_unreadable",
            "{}",
            r.stdout
        );
        let text = r.json["outcome"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            r.stdout.contains(needle),
            "{body}: `{needle}` missing: {text}\n{}",
            r.stdout
        );
        assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    }
}

/// A topology for the trap (nothing may connect) with `extra` sections.
fn bad(extra: &str) -> (Work, Trap, PathBuf) {
    let w = Work::new();
    let trap = Trap::new();
    let t = w.write(
        "topology.toml",
        &topology_text(false, &trap.endpoints(), extra),
    );
    (w, trap, t)
}

fn expect_usage(extra: &str, cmd: &str, needle: &str) {
    let (w, trap, t) = bad(extra);
    let out = w
        .cmd()
        .env("CMS_AD_PW", "s3cret-AD-password")
        .args(
            [cmd, "--yes"]
                .iter()
                .filter(|a| cmd != "status" || **a != "--yes"),
        )
        .arg("--topology")
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{extra}\n{stderr}");
    assert!(stderr.contains(needle), "`{needle}` missing:\n{stderr}");
    assert!(!stderr.contains("s3cret-AD-password"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret-AD-password"));
    trap.assert_untouched();
}

const DIR_OK: &str = "\n[directory]\nurl = \"ldaps://dc01.cms.test\"\nuser = \"svc@cms.test\"\npassword_env = \"CMS_AD_PW\"\n";

#[test]
fn directory_and_backup_service_bad_input_exits_2_contacting_nothing() {
    let mut cases: Vec<(String, &str)> = vec![
        // The Kerberos bind takes no user and no password.
        (
            DIR_OK.replace("password_env", "bind = \"kerberos\"\npassword_env"),
            "remove this key",
        ),
        (
            DIR_OK.replace("password_env", "bind = \"ntlm\"\npassword_env"),
            "not a bind method",
        ),
        (
            DIR_OK.replace("bind", "x").replace("ldaps://", "ldap://"),
            "plain LDAP",
        ),
        (DIR_OK.replace("ldaps://", "https://"), "not an LDAP URL"),
        (
            DIR_OK
                .replace("bind", "x")
                .replace("password_env = \"CMS_AD_PW\"\n", ""),
            "password_env",
        ),
        (
            DIR_OK.replace("CMS_AD_PW", "CMS_AD_PW_SURELY_UNSET"),
            "CMS_AD_PW_SURELY_UNSET",
        ),
        (
            format!("{DIR_OK}ca_file = \"/nonexistent/ca.pem\"\n"),
            "/nonexistent/ca.pem",
        ),
        (
            format!("{DIR_OK}domain_controllers = [\"ldap://dc02.cms.test\"]\n"),
            "domain_controllers",
        ),
        (DIR_OK.replace("user = \"svc@cms.test\"\n", ""), "user"),
        (
            "\n[backup_service]\ncommand = \"ssh fe01 pwsh -Command Get-CsBackupServiceStatus\"\n"
                .into(),
            "array of arguments",
        ),
        ("\n[backup_service]\ncommand = []\n".into(), "empty"),
        (
            "\n[backup_service]\ncommand = [\"ssh\", \"fe01\", \"-Password\", \"x\"]\n".into(),
            "password",
        ),
        (
            "\n[backup_service]\ncommand = [\"/bin/true\"]\ntimeout = \"0s\"\n".into(),
            "backup_service.timeout",
        ),
        (
            "\n[backup_service]\ncommand = [\"/bin/true\"]\nshell = true\n".into(),
            "shell",
        ),
    ];
    // A build without the `kerberos` feature refuses the Kerberos bind before contacting
    // anything (with the feature it is valid: kerberos_directory.rs runs it).
    if !cfg!(feature = "kerberos") {
        cases.push((
            "\n[directory]\nurl = \"ldaps://dc01.cms.test\"\nbind = \"kerberos\"\n".into(),
            "no Kerberos support for the directory",
        ));
    }
    for (extra, needle) in &cases {
        expect_usage(extra, "failover", needle);
    }
    expect_usage(
        &DIR_OK.replace("CMS_AD_PW", "CMS_AD_PW_SURELY_UNSET"),
        "status",
        "CMS_AD_PW_SURELY_UNSET",
    );
}

#[test]
fn the_example_topology_documents_both_sections() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/topology.example.toml"
    ))
    .unwrap();
    assert!(text.contains("[backup_service]") && text.contains("[directory]"));
    let _ = PW_VAR;
}

#[test]
fn the_demo_shows_the_in_process_directory_before_and_after() {
    let w = Work::new();
    let report = w.path("demo.html");
    let out = w
        .cmd()
        .args(["demo", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.matches("Directory (fake)").count(), 2, "{stdout}");
    assert!(stdout.contains("dc01.cms.test: BackEndServer"), "{stdout}");
    // Until the directory is the commit point, the report flags that it still names the old
    // store after the failover.
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("dc01.cms.test"),
        "the report shows the directory"
    );
}
