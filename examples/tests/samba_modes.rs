//! Every mode end to end through the CLI with a real Active Directory as the commit point:
//! Samba's AD DC on loopback (`scripts/samba-dc.sh`, provisioned once for this binary: it
//! takes about 25 s), the topology's `[directory]` over LDAPS, the TDS simulator for the SQL
//! side. One test runs the cases in sequence, the SCP pointed back at the active store before
//! each: planned, disaster recovery, restore after a failed run, what-if, a compare-and-swap
//! conflict, the DC unreachable before the commit, a second DC unreachable after it, a wrong
//! bind password. The SCP is read back with `ldapsearch` (an independent LDAP client) and the
//! SQL state through the simulator. Needs root and the packages `scripts/test-all.sh`
//! installs; without them it prints SKIPPED (fails under CI).

mod common;

use backend_fake::{Change, fixtures};
use common::samba::SambaDc;
use common::{Sim, Work, json};
use std::path::{Path, PathBuf};

/// This binary's DC address (each Samba test binary has its own: the ports are fixed).
const ADDR: &str = "127.0.0.41";

/// A CLI run's result.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        json(self.stdout.as_bytes())
    }
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    fn reason(&self) -> String {
        self.json()["outcome"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn run(w: &Work, t: &Path, args: &[&str]) -> Run {
    let out = w.run(t, args);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The disaster-recovery flags for the unmirrored fixture.
const DR: &[&str] = &[
    "failover",
    "--yes",
    "--json",
    "--force",
    "--backup-sql-server-fqdn",
    "sql-b.cms.test",
    "--backup-sql-instance-name",
    "RTC",
];

/// Whether any database's read-only flag or state changed since mutation `before`.
fn changed_since(sim: &Sim, before: usize) -> bool {
    sim.estate.history()[before..]
        .iter()
        .any(|m| matches!(m.change, Change::ReadOnly { .. } | Change::State { .. }))
}

fn both_writable_on(sim: &Sim, i: &failover_core::InstanceAddr) {
    for db in ["xds", "lis"] {
        assert_eq!(sim.writable(db), vec![i.clone()], "{db}");
    }
}

/// Neither password (the DC's, or a wrong one tried) in a run's output or journal.
fn no_secret(dc: &SambaDc, w: &Work, r: &Run, also: &[&str]) {
    let pw = dc.password();
    let mut secrets = vec![pw.as_str()];
    secrets.extend(also);
    let mut texts = vec![r.all()];
    if let Ok(entries) = std::fs::read_dir(w.journal()) {
        for e in entries.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for s in secrets {
        for t in &texts {
            assert!(!t.contains(s), "a password leaked:\n{t}");
        }
    }
}

/// The run's directory compare-and-swap call (JSON).
fn swap_call(r: &Run) -> serde_json::Value {
    r.json()["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["calls"].as_array().cloned().unwrap_or_default())
        .find(|c| c["kind"] == "swap_directory")
        .unwrap_or_else(|| panic!("no directory swap: {}", r.stdout))
}

/// A fresh simulator and work dir whose topology has `[directory]` = `section`; the SCP
/// pointed back at the active store.
fn setup(dc: &SambaDc, section: &str) -> (Sim, Work, PathBuf) {
    dc.set_backend(&fixtures::active().to_string());
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, section);
    (sim, w, t)
}

fn planned(dc: &SambaDc) {
    let (sim, w, t) = setup(dc, &dc.section(""));
    let report = w.path("report.html");
    let report_arg = report.display().to_string();
    let r = run(
        &w,
        &t,
        &["failover", "--yes", "--json", "--report", &report_arg],
    );
    assert_eq!(r.code, Some(0), "{}", r.all());
    both_writable_on(&sim, &fixtures::backup());
    // The report's table of each DC's value after the run.
    let html = common::read(&report);
    let section = &html[html
        .find("<section id=\"directory\">")
        .expect("a directory section")..];
    assert!(
        section.contains(ADDR) && section.contains("sql-b.cms.test"),
        "{}",
        &section[..section.len().min(2000)]
    );
    // An independent client reads the commit: the SCP names the new store.
    assert_eq!(dc.backend(), fixtures::backup().to_string());
    let swap = swap_call(&r);
    assert_eq!(swap["result"], "ok", "{swap}");
    // The run reports the DC it changed and what it returned afterwards.
    let v = r.json();
    common::check_schema("planned with the directory", &v);
    let d = &v["run"]["directory"];
    assert_eq!(d["name"], "ldap", "{d}");
    assert_eq!(d["dc"], dc.var("SAMBA_URL"), "{d}");
    assert_eq!(d["after"][0]["converged"], true, "{d}");
    assert_eq!(
        d["after"][0]["value"]["backend"],
        fixtures::backup().to_string()
    );
    no_secret(dc, &w, &r, &[]);
    // status agrees: the directory and the SQL record name the backup store.
    let s = run(&w, &t, &["status", "--json"]);
    assert_eq!(s.code, Some(0), "{}", s.all());
    let dc0 = &s.json()["directory"]["domain_controllers"][0];
    assert_eq!(dc0["value"]["backend"], fixtures::backup().to_string());
    assert_eq!(dc0["agrees_with_record"], true);
}

fn disaster_recovery(dc: &SambaDc) {
    let (sim, w, t) = setup(dc, &dc.section(""));
    sim.estate
        .set_reachable(&fixtures::active(), false)
        .unwrap();
    let r = run(&w, &t, DR);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert_eq!(r.json()["run"]["mode"], "disaster_recovery");
    assert_eq!(dc.backend(), fixtures::backup().to_string());
    for db in ["xds", "lis"] {
        assert!(sim.writable(db).contains(&fixtures::backup()), "{db}");
    }
    // The old source returns still writable: restore follows the directory and fences it.
    sim.estate.set_reachable(&fixtures::active(), true).unwrap();
    let r = run(&w, &t, &["restore", "--yes", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    both_writable_on(&sim, &fixtures::backup());
    assert_eq!(dc.backend(), fixtures::backup().to_string());
}

fn restore_after_a_failed_run(dc: &SambaDc) {
    let (sim, w, t) = setup(dc, &dc.section(""));
    // Opening the target fails, then undoing the fence fails: needs restore.
    sim.fail_opening_the_target(7, true);
    let r = run(&w, &t, &["failover", "--yes", "--json"]);
    assert_eq!(r.code, Some(5), "{}", r.all());
    // The run never reached its commit point: the directory still names the source.
    assert_eq!(dc.backend(), fixtures::active().to_string());
    let r = run(&w, &t, &["restore", "--yes", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    both_writable_on(&sim, &fixtures::active());
    assert_eq!(dc.backend(), fixtures::active().to_string());
    let s = run(&w, &t, &["status", "--json"]);
    assert_eq!(s.code, Some(0), "{}", s.all());
}

fn what_if(dc: &SambaDc) {
    let (sim, w, t) = setup(dc, &dc.section(""));
    let before = sim.mutations();
    let epoch = sim.epoch();
    let r = run(&w, &t, &["failover", "--what-if", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    // The plan shows the LDAP modify it would send: delete the old value, add the new.
    let swap = swap_call(&r);
    let text = swap.to_string();
    assert!(
        text.contains("msRTCSIP-BackEndServer") && text.contains("sql-b.cms.test"),
        "{text}"
    );
    assert_eq!(sim.mutations(), before, "a what-if changed the estate");
    assert_eq!(sim.epoch(), epoch);
    both_writable_on(&sim, &fixtures::active());
    assert_eq!(dc.backend(), fixtures::active().to_string());
}

/// The Backup Service status command of `gate_directory.rs`: `FinalState`, and on its second
/// run (the planned run's first call after the fence) it first points the SCP elsewhere.
fn conflicting_status_command(dc: &SambaDc, w: &Work, foreign: &str) -> String {
    let body = format!(
        "n=$(cat \"$0.count\" 2>/dev/null || echo 0); echo $((n+1)) > \"$0.count\"\nif [ \"$n\" -eq 1 ]; then\n{}\nfi\ncat <<'JSON'\n{{\"PoolFqdn\":\"pool01.cms.test\",\"BackupModules\":[{{\"Identity\":\"CentralMgmt.CMSMaster\",\"ExportStatus\":\"FinalState\",\"ImportStatus\":\"NormalState\"}}]}}\nJSON",
        dc.set_backend_sh(foreign)
    );
    // Run as ["/bin/sh", PATH]: exec of a just-written file can fail with ETXTBSY.
    let p = w.write("status.sh", &format!("#!/bin/sh\n{body}\n"));
    format!(
        "\n[backup_service]\ncommand = [\"/bin/sh\", \"{}\"]\ntimeout = \"20s\"\npool = \"pool01.cms.test\"\nfinal_state_timeout = \"5s\"\npoll_interval = \"100ms\"\n",
        p.display()
    )
}

fn cas_conflict(dc: &SambaDc) {
    let foreign = "sql-c.cms.test\\RTC";
    dc.set_backend(&fixtures::active().to_string());
    let sim = Sim::standard();
    let w = Work::new();
    let gate = conflicting_status_command(dc, &w, foreign);
    let t = sim.topology(&w, &format!("{}{gate}", dc.section("")));
    let r = run(&w, &t, &["failover", "--yes", "--json"]);
    assert_eq!(r.code, Some(4), "{}", r.all());
    assert!(
        r.stdout.contains("sql-c.cms.test"),
        "the value found is shown: {}",
        r.stdout
    );
    // Rolled back: the source serves again, nothing is left fenced, the target is closed.
    both_writable_on(&sim, &fixtures::active());
    let s = run(&w, &t, &["status", "--json"]);
    let v = s.json();
    assert_eq!(
        common::label_of(&v, &fixtures::active()).as_deref(),
        Some("active"),
        "{}",
        s.stdout
    );
    // The other writer's value stays: the run does not overwrite what it did not expect.
    assert_eq!(dc.backend(), foreign);
}

fn dc_unreachable_before_the_commit(dc: &SambaDc) {
    let closed = closed_port();
    let pw = dc.var("SAMBA_PASSWORD_FILE").to_string();
    let (sim, w, t) = setup(
        dc,
        &dc.section_with(&format!("ldaps://127.0.0.1:{closed}"), &pw, ""),
    );
    let before = sim.mutations();
    let r = run(&w, &t, &["failover", "--yes", "--json"]);
    assert_eq!(r.code, Some(3), "{}", r.all());
    assert_eq!(r.reason(), "directory_unreadable", "{}", r.stdout);
    assert!(!changed_since(&sim, before), "{}", r.stdout);
    both_writable_on(&sim, &fixtures::active());
    assert_eq!(dc.backend(), fixtures::active().to_string());
}

fn second_dc_unreachable_after_the_commit(dc: &SambaDc) {
    let closed = closed_port();
    let dead = format!("ldaps://127.0.0.1:{closed}");
    let (sim, w, t) = setup(
        dc,
        &dc.section(&format!("domain_controllers = [\"{dead}\"]\n")),
    );
    let r = run(&w, &t, &["failover", "--yes", "--json"]);
    // Committed and verified: a DC that cannot be read afterwards is a warning (exit 0).
    assert_eq!(r.code, Some(0), "{}", r.all());
    both_writable_on(&sim, &fixtures::backup());
    assert_eq!(dc.backend(), fixtures::backup().to_string());
    let v = r.json();
    let warnings = v["run"]["warnings"].to_string();
    assert!(
        warnings.contains(&format!("domain controller {dead} could not be read")),
        "{}",
        r.stdout
    );
    common::check_schema("a DC unread after the commit", &v);
    // Each DC's state after the run: the first converged, the dead one unread.
    let after = v["run"]["directory"]["after"].as_array().unwrap().clone();
    let of = |url: &str| {
        after
            .iter()
            .find(|a| a["dc"] == url)
            .unwrap_or_else(|| panic!("{url} missing: {after:?}"))
            .clone()
    };
    assert_eq!(of(dc.var("SAMBA_URL"))["converged"], true);
    let d = of(&dead);
    assert_eq!(d["converged"], false, "{d}");
    assert!(d["value"].is_null() && d["error"].is_string(), "{d}");
    // It comes back (the same DC under another URL here): a restore converges, no warning.
    let t2 = sim.topology(
        &w,
        &dc.section(&format!(
            "domain_controllers = [\"{}:636\"]\n",
            dc.var("SAMBA_URL")
        )),
    );
    let r = run(&w, &t2, &["restore", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(!r.all().contains("could not be read"), "{}", r.all());
    // The text summary lists both DCs, converged.
    let second = format!("{}:636", dc.var("SAMBA_URL"));
    assert!(
        r.stdout.contains("after the run:")
            && r.stdout
                .contains(&format!("  {second}: {} (converged)", fixtures::backup())),
        "{}",
        r.stdout
    );
    both_writable_on(&sim, &fixtures::backup());
    let s = run(&w, &t2, &["status", "--json"]);
    assert_eq!(s.code, Some(0), "{}", s.all());
}

fn wrong_bind_password(dc: &SambaDc) {
    let wrong = "Wr0ng-Passw0rd-4-test";
    let w0 = Work::new();
    let pw = w0.write("wrong.pw", wrong);
    let (sim, w, t) = setup(
        dc,
        &dc.section_with(dc.var("SAMBA_URL"), &pw.display().to_string(), ""),
    );
    let before = sim.mutations();
    for args in [
        &["failover", "--yes", "--json"][..],
        &["failover", "--yes"][..],
        DR,
    ] {
        let r = run(&w, &t, args);
        assert_eq!(r.code, Some(3), "{args:?}: {}", r.all());
        if args.contains(&"--json") {
            assert_eq!(r.reason(), "directory_unreadable", "{}", r.stdout);
        }
        assert!(
            r.all().to_lowercase().contains("credentials")
                || r.all().to_lowercase().contains("bind"),
            "{}",
            r.all()
        );
        no_secret(dc, &w, &r, &[wrong]);
    }
    assert!(!changed_since(&sim, before));
    both_writable_on(&sim, &fixtures::active());
    assert_eq!(dc.backend(), fixtures::active().to_string());
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One case, run against the shared DC.
type Case = fn(&SambaDc);

#[test]
fn every_mode_against_samba() {
    let Some(dc) = SambaDc::start(ADDR, "samba modes test") else {
        return;
    };
    let cases: &[(&str, Case)] = &[
        ("planned", planned),
        ("disaster recovery", disaster_recovery),
        ("restore after a failed run", restore_after_a_failed_run),
        ("what-if", what_if),
        ("compare-and-swap conflict", cas_conflict),
        (
            "DC unreachable before the commit",
            dc_unreachable_before_the_commit,
        ),
        (
            "second DC unreachable after the commit",
            second_dc_unreachable_after_the_commit,
        ),
        ("wrong bind password", wrong_bind_password),
    ];
    for (name, case) in cases {
        let start = std::time::Instant::now();
        case(&dc);
        eprintln!("case {name}: ok in {:?}", start.elapsed());
    }
}
