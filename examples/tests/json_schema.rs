//! Every `--json` document validates against the shipped schema (`docs/report.schema.json`):
//! a planned failover, a disaster recovery, a restore, a what-if, a status, and errors.

mod common;

use backend_fake::fixtures;
use common::{Sim, Work, check_schema as check, json};
use serde_json::Value;

fn demo(w: &Work, args: &[&str]) -> Value {
    let out = w
        .cmd()
        .arg("demo")
        .args(args)
        .args(["--json", "--lag", "10", "--report"])
        .arg(w.path("r.html"))
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out.stdout)
}

#[test]
fn every_demo_mode_validates() {
    let w = Work::new();
    for (args, mode, code) in [
        (&["--mode", "planned"][..], "planned", "succeeded"),
        (
            &["--mode", "disaster"][..],
            "disaster_recovery",
            "succeeded",
        ),
        (&["--mode", "restore"][..], "restore", "succeeded"),
        (&["--what-if"][..], "planned", "would_succeed"),
    ] {
        let v = demo(&w, args);
        check(&format!("demo {args:?}"), &v);
        assert_eq!(v["kind"], "run");
        assert_eq!(v["run"]["mode"], mode);
        assert_eq!(v["outcome"]["code"], code);
        // No Rust-shaped enums anywhere: no `Ok`/`Err` keys, no `[addr, {...}]` pairs.
        let text = v.to_string();
        assert!(
            !text.contains("\"Ok\"") && !text.contains("\"Err\""),
            "{text}"
        );
        if mode == "disaster_recovery" {
            assert!(
                v["run"]["outage"]["source_unreachable_since"].is_string(),
                "{v:#}"
            );
            assert_eq!(v["after_success"].as_array().unwrap().len(), 2);
            let fence = v["run"]["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["state"] == "Fencing")
                .expect("a fence step");
            assert_eq!(fence["skipped"], "source unreachable");
        }
    }
}

#[test]
fn failover_status_and_errors_validate() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let run = |args: &[&str]| {
        let out = w
            .cmd()
            .args(args)
            .arg("--topology")
            .arg(&t)
            .arg("--journal-dir")
            .arg(w.journal())
            .output()
            .unwrap();
        (out.status.code(), json(&out.stdout))
    };
    let (code, v) = run(&["status", "--json"]);
    check("status before", &v);
    assert_eq!((code, v["kind"].as_str()), (Some(0), Some("status")));

    let (code, v) = run(&["failover", "--what-if", "--json"]);
    check("failover --what-if", &v);
    assert_eq!(code, Some(0));

    let (code, v) = run(&["failover", "--yes", "--json"]);
    check("failover", &v);
    assert_eq!(code, Some(0));
    assert_eq!(v["confirmation"]["how"], "--yes");
    assert!(v["status_before"].is_object() && v["status_after"].is_object());

    let (code, v) = run(&["status", "--json"]);
    check("status after", &v);
    assert_eq!(code, Some(0));

    // An error under --json is one JSON object too: a refusal before any change…
    let (code, v) = run(&[
        "failover",
        "--yes",
        "--json",
        "--replication-timeout",
        "nonsense",
    ]);
    check("bad flag value", &v);
    assert_eq!(v["kind"], "error");
    assert_eq!(code, Some(2));
    assert_eq!(v["exit_code"], 2);
    assert!(
        v["error"]["what"].as_str().unwrap().contains("nonsense"),
        "{v}"
    );

    // …and a bad topology path, and a bad command line.
    let out = w
        .cmd()
        .args(["status", "--json", "--topology"])
        .arg(w.path("missing.toml"))
        .output()
        .unwrap();
    let v = json(&out.stdout);
    check("missing topology", &v);
    assert_eq!(
        (out.status.code(), v["command"].as_str()),
        (Some(2), Some("status"))
    );
    let out = w
        .cmd()
        .args(["failover", "--json", "--no-such-flag"])
        .output()
        .unwrap();
    let v = json(&out.stdout);
    check("bad command line", &v);
    assert_eq!(v["kind"], "error");
}
