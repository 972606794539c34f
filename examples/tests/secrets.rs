//! The SQL login's password never leaves the process: every mode (planned, disaster
//! recovery, restore, what-if, status, failures, a wrong password) runs with a known
//! password and logs at the highest verbosity, and nothing the CLI writes (stdout, stderr,
//! the HTML report, the JSON, the journal) contains it, in UTF-8 or UTF-16. While the CLI
//! waits at its confirmation prompt, its own argv and environment, and those of any child
//! process it started, are read from `/proc` and hold no password either (with the password
//! in a file, the environment has nothing to hide).
#![cfg(unix)]

mod common;

use backend_fake::{FaultConfig, fixtures};
use common::{PW_VAR, Sim, Work};
use std::path::{Path, PathBuf};

/// The password every run logs in with.
const PW: &str = fixtures::LOGIN_PASSWORD;

/// A wrong password a failing run is given (it must not leak either).
const WRONG: &str = "Wr0ng-Secret-Value!";

/// Fails if `bytes` contain any of `secrets`, in UTF-8 or UTF-16LE.
#[track_caller]
fn assert_clean(what: &str, bytes: &[u8], secrets: &[&str]) {
    for s in secrets {
        let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        for needle in [s.as_bytes(), &utf16[..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{what} contains the password:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// Every file under `dir` (the journal, reports).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs `cms-failover <args> --topology t --journal-dir … --report …` with every log on at
/// trace level and checks stdout, stderr and every file it wrote; returns the exit code.
fn run_and_scan(w: &Work, t: &Path, name: &str, args: &[&str], secrets: &[&str]) -> i32 {
    let report = w.path(&format!("reports/{name}.html"));
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    let mut cmd = w.cmd();
    cmd.env("CMS_FAILOVER_LOG", "trace")
        .arg("-vv")
        .args(args)
        .arg("--topology")
        .arg(t)
        .arg("--journal-dir")
        .arg(w.journal());
    if args[0] != "status" {
        cmd.arg("--report").arg(&report);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.stderr.len() > 200,
        "{name}: trace logging is on: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean(&format!("{name}: stdout"), &out.stdout, secrets);
    assert_clean(&format!("{name}: stderr"), &out.stderr, secrets);
    for f in files(w.dir.path()) {
        if f.extension().is_some_and(|e| e == "pw") {
            continue; // the password file itself
        }
        let bytes = std::fs::read(&f).unwrap();
        assert_clean(&format!("{name}: {}", f.display()), &bytes, secrets);
    }
    out.status.code().unwrap_or(-1)
}

fn dr() -> Vec<&'static str> {
    let mut a = vec!["failover", "--yes", "--json"];
    a.extend(common::DR_FLAGS);
    a
}

#[test]
fn the_scan_finds_the_password_in_either_encoding() {
    let utf16: Vec<u8> = PW.encode_utf16().flat_map(u16::to_le_bytes).collect();
    for bytes in [format!("x{PW}y").into_bytes(), utf16] {
        let found = std::panic::catch_unwind(|| assert_clean("sample", &bytes, &[PW]));
        assert!(found.is_err(), "the scan must find the password");
    }
    assert_clean("sample", b"Fake-Passw0rd", &[PW]);
}

#[test]
fn no_mode_writes_the_password_anywhere() {
    let secrets = [PW];
    let mirrored = || fixtures::Options::default().mirrored(true);

    // Status, what-if, planned, then status again (text and JSON).
    let sim = Sim::start(mirrored());
    let w = Work::new();
    let t = sim.topology(&w, "");
    assert_eq!(run_and_scan(&w, &t, "status", &["status"], &secrets), 0);
    let s = run_and_scan(&w, &t, "status-json", &["status", "--json"], &secrets);
    assert_eq!(s, 0);
    let wi = ["failover", "--what-if", "--json"];
    assert_eq!(run_and_scan(&w, &t, "what-if", &wi, &secrets), 0);
    let mut dr_what_if = dr();
    dr_what_if[1] = "--what-if";
    run_and_scan(&w, &t, "dr-what-if", &dr_what_if, &secrets);
    let planned = ["failover", "--yes", "--json"];
    assert_eq!(run_and_scan(&w, &t, "planned", &planned, &secrets), 0);
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
    run_and_scan(
        &w,
        &t,
        "planned-again-text",
        &["failover", "--yes"],
        &secrets,
    );

    // Disaster recovery with the active pool down.
    let sim = Sim::start(mirrored());
    let w = Work::new();
    let t = sim.topology(&w, "");
    for i in [fixtures::active(), fixtures::active_mirror()] {
        sim.estate.set_reachable(&i, false).unwrap();
    }
    assert_eq!(run_and_scan(&w, &t, "dr", &dr(), &secrets), 0);

    // Failures: rolled back (4), needs restore (5), then restore (0).
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    sim.fail_opening_the_target(7, false);
    assert_eq!(run_and_scan(&w, &t, "rolled-back", &planned, &secrets), 4);
    sim.fail_opening_the_target(8, true);
    assert_eq!(run_and_scan(&w, &t, "needs-restore", &planned, &secrets), 5);
    sim.estate.set_faults(FaultConfig::seeded(9));
    let restore = ["restore", "--yes", "--json"];
    assert_eq!(run_and_scan(&w, &t, "restore", &restore, &secrets), 0);

    // Refused by the certificate check, and by Force Encryption with --tls off.
    let wrong_ca = sim.wrong_ca_topology(&w);
    assert_eq!(
        run_and_scan(&w, &wrong_ca, "wrong-ca", &planned, &secrets),
        3
    );
    let off = ["failover", "--yes", "--tls", "off"];
    assert_eq!(run_and_scan(&w, &t, "tls-off", &off, &secrets), 3);
}

#[test]
fn a_wrong_password_is_not_written_either() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let mut cmd = w.cmd();
    cmd.env(PW_VAR, WRONG)
        .env("CMS_FAILOVER_LOG", "trace")
        .args(["failover", "--yes", "--json", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal());
    let out = cmd.output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("18456"),
        "the login failure is reported: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert_clean(what, bytes, &[WRONG, PW]);
    }
    for f in files(w.dir.path()) {
        assert_clean(
            &f.display().to_string(),
            &std::fs::read(&f).unwrap(),
            &[WRONG],
        );
    }
}

#[cfg(feature = "odbc")]
#[test]
fn the_odbc_backend_writes_no_password_either() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let planned = ["failover", "--yes", "--json", "--backend", "odbc"];
    assert_eq!(run_and_scan(&w, &t, "odbc", &planned, &[PW]), 0);
    let status = ["status", "--backend", "odbc"];
    assert_eq!(run_and_scan(&w, &t, "odbc-status", &status, &[PW]), 0);
}

/// The process tree of `pid`: itself and every descendant, from `/proc/<pid>/task/*/children`.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in rd.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    out
}

/// While the CLI waits at the prompt (connected, probed, the plan shown), neither its argv
/// and environment nor those of any process it started hold the password, which comes
/// from a file.
#[test]
fn argv_and_environment_at_the_prompt_hold_no_password() {
    let sim = Sim::standard();
    let w = Work::new();
    let pw_file = w.write("login.pw", &format!("{PW}\n"));
    let t = sim.topology(&w, "");
    let text = common::read(&t).replace(
        &format!("password_env = \"{PW_VAR}\""),
        &format!("password_file = '{}'", pw_file.display()),
    );
    assert!(text.contains("password_file"), "{text}");
    let t = w.write("topology-file.toml", &text);

    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cms-failover"));
    c.args(["-vv", "failover", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .env_remove(PW_VAR)
        .env_remove("CMS_FAILOVER_LOG")
        .env("HOME", w.dir.path())
        .env("USER", "tester")
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    let mut p = rexpect::session::spawn_command(c, Some(60_000)).expect("spawn on a pty");
    let shown = p
        .exp_string("Proceed with these changes? [y/N]")
        .expect("the prompt");
    assert_clean("the output before the prompt", shown.as_bytes(), &[PW]);
    // The CLI: the process whose argv names this test's topology file.
    let needle = t.display().to_string();
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|q| {
            let argv = std::fs::read(format!("/proc/{q}/cmdline")).unwrap_or_default();
            argv.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .expect("the CLI's process");
    let procs = tree(pid);
    for q in &procs {
        for what in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{q}/{what}")).unwrap_or_default();
            assert_clean(&format!("/proc/{q}/{what}"), &bytes, &[PW]);
        }
    }
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        argv.windows(8).any(|w| w == b"failover"),
        "read the CLI's own argv"
    );
    p.send_line("n").unwrap();
    let rest = p.exp_eof().expect("the program ends");
    assert_clean("the output after the prompt", rest.as_bytes(), &[PW]);
}

/// The Backup Service status command is a child process: it inherits the environment (for
/// its own remoting) but not the variable that carries the password, and its argv holds
/// none. The fake command dumps its argv and environment into the work directory, which the
/// scan then reads like every other file.
#[test]
fn the_backup_service_command_inherits_no_password() {
    let sim = Sim::standard();
    let w = Work::new();
    let dump = w.dir.path().join("child");
    std::fs::create_dir_all(&dump).unwrap();
    let cmd = w.dir.path().join("status.sh");
    std::fs::write(
        &cmd,
        format!(
            r#"#!/bin/sh
env > '{d}/env.txt'
printf '%s\n' "$0" "$@" > '{d}/argv.txt'
cat <<'JSON'
{{"PoolFqdn":"pool01.cms.test","BackupModules":[{{"Identity":"CentralMgmt.CMSMaster","ExportStatus":"FinalState","ImportStatus":"NormalState"}}]}}
JSON
"#,
            d = dump.display()
        ),
    )
    .unwrap();
    // Run as `/bin/sh PATH`: a file just written can fail to exec with ETXTBSY while
    // another test thread is between `fork` and `exec` holding its write descriptor.
    let section = format!(
        "\n[backup_service]\ncommand = [\"/bin/sh\", \"{}\", \"--pool\", \"pool01.cms.test\"]\ntimeout = \"5s\"\npool = \"pool01.cms.test\"\nfinal_state_timeout = \"5s\"\npoll_interval = \"100ms\"\n",
        cmd.display()
    );
    let t = sim.topology(&w, &section);
    let planned = ["failover", "--yes", "--json"];
    assert_eq!(run_and_scan(&w, &t, "gated", &planned, &[PW]), 0);
    // The command ran and its environment was dumped (then scanned, above).
    let env = std::fs::read_to_string(dump.join("env.txt")).expect("the command ran");
    assert!(env.contains("PATH="), "{env}");
    assert!(
        !env.lines().any(|l| l.starts_with(&format!("{PW_VAR}="))),
        "the password variable reached the child: {env}"
    );
}
