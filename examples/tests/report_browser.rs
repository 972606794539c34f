//! The demo's HTML report rendered by a real browser: headless Chromium (Debian's
//! `chromium`, installed by `scripts/test-all.sh`) loads the file and dumps the DOM it
//! built; the outcome badge, the timeline and the fence-to-commit window are on the page,
//! and a screenshot is taken. `UPDATE_DOCS=1` copies the screenshot to
//! `docs/report-demo.png`.

mod common;

use common::{Work, read};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// Runs headless Chromium on `page` with `args`; returns its stdout.
fn browse(browser: &Path, w: &Work, page: &Path, args: &[&str]) -> String {
    let out = assert_cmd::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", w.path("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .timeout(Duration::from_secs(120))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_demo_report_renders_in_chromium() {
    let Some(browser) = chromium() else {
        // CI installs it (scripts/test-all.sh); a developer machine may not have it.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed: apt-get install -y chromium"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium)");
        return;
    };
    let w = Work::new();
    let report = w.path("demo.html");
    // Enough lag that the wait still polls after the status read before the run (each
    // simulated operation lets replication gain a change), so the lag curve has points.
    let out = w
        .cmd()
        .args(["demo", "--lag", "300", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = read(&report);
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "the report is not self-contained"
    );

    // The DOM as the browser built it: the badge, the timeline with its window band and
    // lag curve, the phase table first, the folded SQL and the state diagram.
    let dom = browse(&browser, &w, &report, &["--dump-dom"]);
    assert!(
        dom.contains(r#"<span class="badge succeeded" id="outcome-badge">succeeded</span>"#),
        "no outcome badge in the rendered page"
    );
    for id in [
        "timeline-svg",
        "timeline-window",
        "timeline-lag",
        "phase-table",
        "state-diagram",
    ] {
        assert!(
            dom.contains(&format!(r#"id="{id}""#)),
            "the rendered page lacks #{id}"
        );
    }
    assert!(dom.contains("write-unavailability window (fence → commit)"));
    assert!(
        dom.find(r#"id="phases""#) < dom.find(r#"id="steps""#),
        "phases come first"
    );
    assert!(dom.contains("<details><summary>"), "the SQL is not folded");

    // A screenshot of the page.
    let shot = w.path("demo.png");
    browse(
        &browser,
        &w,
        &report,
        &[
            "--window-size=1280,1600",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a PNG"
    );
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/report-demo.png");
        std::fs::write(docs, &png).unwrap();
    }
}
