//! End-to-end: the binary against the TDS simulator, every mode, both backends, what-if,
//! exit codes, the report, interruption and resume from the journal (confirmation:
//! `confirm.rs`).

mod common;

use backend_fake::{FaultConfig, fixtures};
use common::{Sim, Work, json, label_of, read};
use failover_core::InstanceAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn b() -> String {
    fixtures::backup().to_string()
}

/// The `id`s of every `<section>` and sanity checks of a self-contained, balanced page.
fn html_sections(html: &str) -> Vec<String> {
    assert!(html.trim_start().starts_with("<!DOCTYPE html>"), "doctype");
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external resources"
    );
    for tag in [
        "section", "table", "ol", "ul", "dl", "pre", "html", "body", "style",
    ] {
        let open =
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        let close = html.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "<{tag}> balanced");
    }
    html.split("<section id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

fn drdr_args() -> Vec<&'static str> {
    common::DR_FLAGS.to_vec()
}

#[test]
fn planned_failover_tiberius_with_json_and_report() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let report = w.path("report.html");
    let before = examples::validate::epoch_clock();
    let out = w
        .cmd()
        .args(["failover", "--yes", "--json", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
    assert_eq!(sim.writable("lis"), vec![fixtures::backup()]);
    // The new epoch is at least the operator's clock at the start (a hybrid logical clock).
    let epoch = sim.epoch().unwrap();
    assert!(epoch > before, "epoch {epoch} not after the clock {before}");

    // The JSON document.
    let v = json(&out.stdout);
    assert_eq!(v["tool"], "cms-failover");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["operator"], "tester");
    assert_eq!(v["run"]["backend"], "tiberius");
    assert_eq!(v["run"]["what_if"], false);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["kind"], "run");
    assert_eq!(v["outcome"]["code"], "succeeded");
    assert_eq!(v["outcome"]["active"], b());
    assert_eq!(v["outcome"]["epoch"].as_u64(), sim.epoch());
    assert_eq!(v["run"]["mode"], "planned");
    let steps = v["run"]["steps"].as_array().unwrap();
    assert!(steps.len() >= 8);
    for s in steps {
        for k in [
            "state",
            "description",
            "precondition",
            "changes",
            "started_at",
            "duration_ms",
            "executed",
            "calls",
        ] {
            assert!(!s[k].is_null(), "step lacks {k}: {s}");
        }
    }
    let fence = steps
        .iter()
        .find(|s| s["state"] == "Fencing")
        .expect("a fence step");
    let sql = fence["calls"][0]["sql"].as_array().unwrap();
    assert!(
        sql.iter().any(|q| q
            .as_str()
            .unwrap()
            .contains("ALTER DATABASE [xds] SET READ_ONLY WITH ROLLBACK IMMEDIATE")),
        "{sql:?}"
    );
    assert!(v["run"]["window"]["duration_ms"].as_f64().is_some());
    assert!(
        v["run"]["window"]["fenced_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(v["run"]["final_state"].as_array().unwrap().len(), 4);
    assert!(
        !out.stdout
            .windows(fixtures::LOGIN_PASSWORD.len())
            .any(|w| w == fixtures::LOGIN_PASSWORD.as_bytes())
    );

    // The HTML report.
    let html = read(&report);
    let sections = html_sections(&html);
    for s in ["topology", "window", "steps", "final-state"] {
        assert!(
            sections.contains(&s.to_string()),
            "report lacks section {s}: {sections:?}"
        );
    }
    assert!(html.contains("id=\"summary\""));
    for needle in [
        "tester",
        "Planned failover",
        "succeeded",
        "SET READ_ONLY WITH ROLLBACK IMMEDIATE",
        "Write-unavailability window",
        "sql-b.cms.test\\RTC",
        "Operator",
        "Host",
    ] {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    assert!(
        !html.contains(fixtures::LOGIN_PASSWORD),
        "password in the report"
    );
    assert!(stderr.contains("Report written to"), "{stderr}");

    // Status afterwards.
    let out = w
        .cmd()
        .args(["status", "--json", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "healthy after the failover");
    let s = json(&out.stdout);
    assert_eq!(s["kind"], "status");
    assert_eq!(s["healthy"], true);
    assert_eq!(s["active"]["epoch"], epoch);
    // Labelled by what each copy is now, not by the file's [active] / [backup].
    let label = |i: InstanceAddr| label_of(&s, &i);
    assert_eq!(label(fixtures::active()).as_deref(), Some("fenced"));
    assert_eq!(label(fixtures::backup()).as_deref(), Some("active"));
    assert_eq!(s["active"]["store"]["principal"], b());
    assert_eq!(s["instances"].as_array().unwrap().len(), 4);
    assert_eq!(s["unfinished_runs"].as_array().unwrap().len(), 0);
}

#[cfg(feature = "odbc")]
#[test]
fn planned_failover_odbc() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = examples::validate::epoch_clock();
    let out = w
        .cmd()
        .args([
            "failover",
            "--yes",
            "--backend",
            "odbc",
            "--json",
            "--topology",
        ])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out.stdout);
    assert_eq!(v["run"]["backend"], "odbc");
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
    assert!(sim.epoch().unwrap() > before);
}

#[test]
fn what_if_changes_nothing() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let out = w
        .cmd()
        .args(["failover", "--what-if", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Nothing was changed."), "{text}");
    assert_eq!(sim.mutations(), before, "what-if changed the estate");
    assert!(
        !w.journal().join("journal.jsonl").exists(),
        "what-if writes no journal"
    );

    // Disaster recovery: the full plan, as text and as JSON.
    let mut dr = vec!["failover", "--what-if", "--topology", t.to_str().unwrap()];
    dr.extend(drdr_args());
    let out = w.cmd().args(&dr).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 1. "), "{text}");
    assert!(text.contains("precondition:"), "{text}");
    assert!(text.contains("changes:"), "{text}");
    assert!(
        text.contains("SET READ_WRITE WITH ROLLBACK IMMEDIATE;"),
        "{text}"
    );
    assert!(
        text.contains("Nothing blocks this plan right now."),
        "{text}"
    );
    assert!(text.contains("Data-loss estimate:"), "{text}");
    dr.push("--json");
    let out = w.cmd().args(&dr).output().unwrap();
    let v = json(&out.stdout);
    assert_eq!(v["run"]["what_if"], true);
    assert!(
        v["run"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["executed"] == false)
    );
    assert_eq!(sim.mutations(), before, "what-if changed the estate");
}

#[test]
fn what_if_changes_nothing_and_prints_the_plan() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let out = w
        .cmd()
        .args(["failover", "--what-if", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim.mutations(), before, "what-if changed the estate");
    assert!(text.contains("Nothing was changed."), "{text}");
    assert!(text.contains(" 1. "), "{text}");
    assert!(text.contains("Fencing"), "{text}");
    assert!(text.contains("precondition:"), "{text}");
    assert!(
        text.contains("ALTER DATABASE [xds] SET READ_ONLY WITH ROLLBACK IMMEDIATE;"),
        "{text}"
    );
    assert!(
        text.contains("Nothing blocks this plan right now."),
        "{text}"
    );
    assert!(
        !w.journal().join("journal.jsonl").exists(),
        "what-if writes no journal"
    );

    // The same as JSON, and with a blocker (replication stalled far behind) it exits 3.
    let out = w
        .cmd()
        .args(["failover", "--what-if", "--json", "--topology"])
        .arg(&t)
        .output()
        .unwrap();
    let v = json(&out.stdout);
    assert_eq!(v["run"]["what_if"], true);
    assert!(
        v["run"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["executed"] == false)
    );
    // What-if never reports a change it did not make.
    assert_eq!(v["outcome"]["code"], "would_succeed");
    assert_eq!(v["outcome"]["reason"], serde_json::Value::Null);
    assert!(
        !v.to_string().contains("\"succeeded"),
        "a what-if claims success: {v}"
    );
    assert!(text.contains("Outcome: would succeed: "), "{text}");
    assert_eq!(sim.mutations(), before);
}

#[test]
fn what_if_reports_blockers() {
    let sim = Sim::start(fixtures::Options::default().lag(500).stalled(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let out = w
        .cmd()
        .args(["failover", "--what-if", "--topology"])
        .arg(&t)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // A plan's blocker has its own exit code (10), distinct from a refused run (3).
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(text.contains("Blocks it right now:"), "{text}");
    assert!(text.contains("Outcome: would be refused: "), "{text}");
    assert_eq!(sim.mutations(), before);

    // The same as JSON: the outcome says what would happen, nowhere "refused" as if it ran.
    let out = w
        .cmd()
        .args(["failover", "--what-if", "--json", "--topology"])
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    let v = json(&out.stdout);
    assert_eq!(v["outcome"]["code"], "would_be_refused");
    assert_eq!(v["outcome"]["what_if"], true);
    assert_eq!(v["exit_code"], 10);
    assert!(v["outcome"]["reason"].is_string(), "{v}");
    assert_eq!(sim.mutations(), before);
}

#[test]
fn disaster_recovery_with_mirror() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    for i in [fixtures::active(), fixtures::active_mirror()] {
        sim.estate.set_reachable(&i, false).unwrap();
    }
    let w = Work::new();
    let t = sim.topology(&w, "");
    let out = w
        .cmd()
        .args(["failover", "--yes", "--json", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .args(drdr_args())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out.stdout);
    assert_eq!(v["run"]["mode"], "disaster_recovery");
    assert_eq!(
        v["run"]["target"]["mirror"],
        fixtures::backup_mirror().to_string()
    );
    let dl = v["run"]["data_loss"]
        .as_array()
        .expect("a data-loss estimate");
    assert_eq!(dl.len(), 2);
    let snap = sim.estate.snapshot();
    for db in fixtures::databases() {
        assert_eq!(
            snap.writable_reachable_copies(&db),
            vec![fixtures::backup()]
        );
    }
}

/// Issue 12 item 3: where SQL Server refuses `SET READ_ONLY` on a mirroring principal
/// (1468 then 5069), a planned failover from a mirrored store is refused before any change
/// (exit 3, `fence_refused_in_mirroring_session`), the lock released, the journal settled,
/// and the text says what the operator can do; a second run says the same (nothing
/// unfinished is left behind).
#[test]
fn a_fence_refused_on_a_mirroring_principal_is_exit_3_with_what_to_do() {
    let sim = Sim::start(
        fixtures::Options::default()
            .mirrored(true)
            .read_only_refused_on_mirroring_principal(true),
    );
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.estate.durable_changes();
    let failover = |json: bool| {
        let mut c = w.cmd();
        c.args(["failover", "--yes", "--topology"])
            .arg(&t)
            .arg("--journal-dir")
            .arg(w.journal());
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    for _ in 0..2 {
        let v = json(&failover(true));
        assert_eq!(v["outcome"]["code"], "refused");
        assert_eq!(v["outcome"]["reason"], "fence_refused_in_mirroring_session");
        let text = v["outcome"]["text"].as_str().unwrap();
        for want in [
            "1468",
            "nothing was changed",
            "SET PARTNER OFF",
            "SET PARTNER SUSPEND",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }
    // The text output (without --json) carries the same advice.
    let text = String::from_utf8(failover(false)).unwrap();
    assert!(text.contains("SET PARTNER OFF"), "{text}");
    assert_eq!(sim.estate.durable_changes(), before);
    assert!(sim.estate.snapshot().locks.is_empty());
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    assert_eq!(sim.epoch(), Some(1));
}

#[test]
fn refused_when_the_lock_is_held() {
    let sim = Sim::standard();
    let s = sim.estate.open_session(&fixtures::active()).unwrap();
    assert_eq!(sim.estate.get_app_lock(s, "cms-failover").unwrap(), 0);
    let w = Work::new();
    let t = sim.topology(&w, "");
    let out = w
        .cmd()
        .args(["failover", "--yes", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    assert_eq!(sim.epoch(), Some(1));
}

#[test]
fn rolled_back_then_needs_restore_then_restore() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    // Opening the target fails: the fence is undone (exit 4).
    sim.fail_opening_the_target(7, false);
    let out = w
        .cmd()
        .args(["failover", "--yes", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);

    // Opening fails and so does undoing the fence: needs restore (exit 5).
    sim.fail_opening_the_target(8, true);
    let out = w
        .cmd()
        .args(["failover", "--yes", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("cms-failover restore"), "{text}");
    assert!(sim.writable("xds").is_empty());

    sim.estate.set_faults(FaultConfig::seeded(9));
    let out = w
        .cmd()
        .args(["restore", "--yes", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    assert_eq!(sim.writable("lis"), vec![fixtures::active()]);
}

/// Starts a planned failover that fences and then waits forever for the stalled link;
/// returns the child once the source is fenced.
fn start_stuck_failover(sim: &Sim, w: &Work) -> std::process::Child {
    let t = sim.topology(w, "\n[failover]\nmax_lag = 1000000\n");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cms-failover"))
        .args([
            "failover",
            "--yes",
            "--catch-up-timeout",
            "60s",
            "--topology",
        ])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .env(common::PW_VAR, fixtures::LOGIN_PASSWORD)
        .env("HOME", w.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.writable("xds").is_empty() {
        assert!(Instant::now() < deadline, "the source was never fenced");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the journal record the catch-up wait.
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn signal(child: &std::process::Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn ctrl_c_undoes_the_fence_and_exits_130() {
    let sim = Sim::start(fixtures::Options::default().stalled(true));
    let w = Work::new();
    let child = start_stuck_failover(&sim, &w);
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cancelled"), "{text}");
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    assert_eq!(sim.writable("lis"), vec![fixtures::active()]);
    assert_eq!(sim.epoch(), Some(1));
}

#[test]
fn crash_then_resume_from_the_journal() {
    let sim = Sim::start(fixtures::Options::default().stalled(true));
    let w = Work::new();
    let mut child = start_stuck_failover(&sim, &w);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        sim.writable("xds").is_empty(),
        "the crash left the source fenced"
    );
    let t = w.path("topology.toml");

    // Status shows the unfinished run and the fenced databases.
    let out = w
        .cmd()
        .args(["status", "--json", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    let s = json(&out.stdout);
    assert_eq!(s["unfinished_runs"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["unfinished_runs"][0]["fenced"], true);
    // Unhealthy: writable nowhere (exit 20, more severe than the unfinished run's 22); the
    // recorded store's principal is read-only, so it is labelled fenced.
    assert_eq!(out.status.code(), Some(20), "{s}");
    let codes: Vec<&str> = s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"none_writable") && codes.contains(&"unfinished_run"),
        "{codes:?}"
    );
    assert_eq!(
        s["instances"][0]["instance"],
        fixtures::active().to_string()
    );
    assert_eq!(s["instances"][0]["label"], "fenced");

    // A new failover is refused until the interrupted run is settled.
    let out = w
        .cmd()
        .args(["failover", "--yes", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Restore settles it.
    let out = w
        .cmd()
        .args(["restore", "--yes", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    let out = w
        .cmd()
        .args(["status", "--json", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(
        json(&out.stdout)["unfinished_runs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // And the failover goes through once replication flows again.
    sim.estate.set_link_stalled(sim.link, false);
    let out = w
        .cmd()
        .args(["failover", "--yes", "--topology"])
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
}

#[test]
fn summary_collapses_polls_and_shows_time() {
    // Replication gains one change per operation on the workload: the wait takes polls
    // (the status read before the run, for the report, takes some of the lag first).
    let mut opts = fixtures::Options::default().lag(100);
    opts.link_rate = 2;
    opts.workload_rate = 1;
    let sim = Sim::start(opts);
    let w = Work::new();
    let t = sim.topology(&w, "");
    let out = w.run(&t, &["failover", "--yes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{stderr}");
    let wait = text
        .lines()
        .find(|l| l.trim_start().starts_with("AwaitingReplication: "))
        .unwrap_or_else(|| panic!("no collapsed wait line:\n{text}"));
    assert!(
        wait.contains(" polls, ") && wait.contains(", lag "),
        "{wait}"
    );
    assert!(
        wait.ends_with("→ caught up"),
        "the wait ends caught up: {wait}"
    );
    assert_eq!(
        text.matches("AwaitingReplication").count(),
        1,
        "polls are one line:\n{text}"
    );
    assert!(text.contains("of it waiting for replication"), "{text}");
    assert!(text.contains("Preflight (again, under the lock)"), "{text}");
    assert!(
        stderr.contains("step Preflight (again, under the lock)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("ERROR"),
        "third-party errors the tool handles are not shown by default:\n{stderr}"
    );
}

#[test]
fn the_dead_source_in_disaster_recovery_is_reported_once_with_a_count() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let dead = [fixtures::active(), fixtures::active_mirror()];
    for i in &dead {
        sim.estate.set_reachable(i, false).unwrap();
    }
    let w = Work::new();
    let t = sim.topology(&w, "");
    let mut args = vec!["failover", "--yes"];
    args.extend(drdr_args());
    let out = w.run(&t, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{stderr}");
    for i in &dead {
        let name = i.to_string();
        let failures = stderr
            .lines()
            .filter(|l| l.contains(&name) && (l.contains("retrying") || l.contains("failed after")))
            .count();
        assert_eq!(
            failures, 1,
            "{name}: one failure line, then a count:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "{name}: unreachable, as expected in disaster recovery ("
            )),
            "{stderr}"
        );
        let summary = "Source unreachable, as expected in disaster recovery: ";
        let line = text
            .lines()
            .find(|l| l.starts_with(summary) && l.ends_with(&format!(" on {name}")))
            .unwrap_or_else(|| panic!("no count for {name}:\n{text}"));
        let n: usize = line[summary.len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(n >= 1, "{line}");
    }
    assert!(!text.contains("Retried calls"), "{text}");
}
