//! The demo runs with no setup and writes its report.

mod common;

use common::{Work, json, read};

#[test]
fn demo_planned_writes_the_report() {
    let w = Work::new();
    let report = w.path("demo.html");
    let out = w
        .cmd()
        .args(["demo", "--lag", "20", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "Simulated SQL Server instances",
        "== Status before ==",
        "== Status after ==",
        "Result: succeeded",
        "== Running a planned failover through the tiberius backend ==",
    ] {
        assert!(text.contains(needle), "demo output lacks {needle}:\n{text}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains(&report.display().to_string()));
    let html = read(&report);
    for id in [
        "summary",
        "topology",
        "status-before",
        "window",
        "steps",
        "final-state",
        "status-after",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "report lacks {id}");
    }
}

#[test]
fn demo_other_modes() {
    let w = Work::new();
    for (mode, expect_mode) in [("disaster", "disaster_recovery"), ("restore", "restore")] {
        let report = w.path(&format!("{mode}.html"));
        let out = w
            .cmd()
            .args(["demo", "--json", "--mode", mode, "--report"])
            .arg(&report)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(&out.stdout);
        assert_eq!(v["run"]["mode"], expect_mode);
        assert_eq!(v["outcome"]["code"], "succeeded");
        assert!(report.exists());
        if mode == "disaster" {
            assert!(v["run"]["data_loss"].is_array());
        }
        if mode == "restore" {
            assert_eq!(
                v["status_before"]["unfinished_runs"]
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
            assert_eq!(
                v["status_after"]["unfinished_runs"]
                    .as_array()
                    .unwrap()
                    .len(),
                0
            );
        }
    }
    let out = w
        .cmd()
        .args(["demo", "--mode", "disaster", "--what-if", "--json"])
        .output()
        .unwrap();
    let v = json(&out.stdout);
    assert_eq!(v["run"]["what_if"], true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing changed: the CMS is still recorded on the active store.
    assert_eq!(v["status_after"]["active"]["epoch"], 1);
}

#[test]
fn demo_planned_what_if() {
    let w = Work::new();
    let report = w.path("what-if.html");
    let out = w
        .cmd()
        .args(["demo", "--what-if", "--json", "--lag", "0", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let v = json(&out.stdout);
    assert_eq!(v["run"]["what_if"], true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["outcome"]["code"], "would_succeed");
    // The HTML report has the what-if's own badge and never claims success.
    let html = read(&report);
    assert!(
        html.contains(
            r#"<span class="badge would_succeed" id="outcome-badge">would succeed</span>"#
        ),
        "{html}"
    );
    assert!(html.contains("(what-if plan) — would succeed"), "{html}");
    assert!(
        !html.contains("badge succeeded") && !html.contains("<p>succeeded"),
        "a what-if report claims success"
    );
}

#[cfg(feature = "odbc")]
#[test]
fn demo_through_odbc() {
    let w = Work::new();
    let out = w
        .cmd()
        .args([
            "demo",
            "--json",
            "--backend",
            "odbc",
            "--lag",
            "5",
            "--report",
        ])
        .arg(w.path("o.html"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out.stdout)["run"]["backend"], "odbc");
}
