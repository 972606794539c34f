//! End-to-end TLS: the binary against the simulator serving certificates from a test CA
//! with Force Encryption on (what `Sim::start` does for every end-to-end test), and the
//! explicit plaintext mode that exists only for the simulator on loopback.

mod common;

use backend_fake::fixtures;
use common::{Sim, Trap, Work, json, read, topology_text, topology_text_with};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `--tls trust-server-certificate` completes, and its warning reaches the text output,
/// the JSON, the HTML report and the log.
#[test]
fn trust_server_certificate_warns_in_the_output_the_json_the_report_and_the_log() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let report = w.path("report.html");
    let warning = failover_tsql::tls::UNVERIFIED_CERTIFICATE;
    let out = w
        .cmd()
        .args([
            "failover",
            "--yes",
            "--json",
            "--tls",
            "trust-server-certificate",
        ])
        .arg("--topology")
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
    let v = json(&out.stdout);
    let warnings: Vec<&str> = v["run"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert!(warnings.contains(&warning), "{warnings:?}");
    assert!(stderr.contains(warning), "the log: {stderr}");
    let html = read(&report);
    assert!(
        html.contains("the server certificate is not checked"),
        "the report carries the warning"
    );

    // The text output too.
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let out = w
        .cmd()
        .args(["failover", "--yes", "--tls", "trust-server-certificate"])
        .arg("--topology")
        .arg(&t)
        .arg("--journal-dir")
        .arg(w.journal())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("the server certificate is not checked"),
        "{}",
        text(&out.stdout)
    );
}

/// `strict` trusting another CA is refused before any change (exit 3), saying which
/// problem it was and what to set; nothing in the estate changed.
#[test]
fn strict_with_the_wrong_ca_file_is_refused_before_any_change() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.wrong_ca_topology(&w);
    let before = sim.mutations();
    let out = w.run(&t, &["failover", "--yes"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(sim.mutations(), before, "nothing changed");
    assert!(
        all.contains("CA this client does not trust") && all.contains("connection.ca_file"),
        "{all}"
    );
}

/// `--tls off` against a server that forces encryption is a clear refusal (exit 3, the
/// server requires encryption, what to set), not a hang; nothing changed.
#[test]
fn off_against_forced_encryption_is_a_clear_refusal() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let out = w.run(&t, &["failover", "--yes", "--tls", "off"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(sim.mutations(), before);
    assert!(
        all.contains("requires encryption") && all.contains("tls = \"strict\""),
        "{all}"
    );
}

/// Plaintext stays available for the simulator, explicitly: `tls = "off"` against a
/// simulator without certificates completes.
#[test]
fn explicit_plaintext_works_against_the_plaintext_simulator() {
    let sim = Sim::start_plaintext(fixtures::Options::default());
    let w = Work::new();
    let t = sim.topology(&w, "");
    assert!(read(&t).contains("tls = \"off\""));
    let out = w.run(&t, &["failover", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
}

/// `tls = "off"` is refused (exit 2, nothing contacted) unless every instance has a
/// loopback `[endpoints]` entry; `--tls off` is held to the same rule.
#[test]
fn plaintext_is_refused_for_servers_off_loopback() {
    let trap = Trap::new();
    let w = Work::new();
    let mut endpoints = trap.endpoints();
    endpoints[1].1 = "10.20.30.40:1433".parse().unwrap();
    let t = w.write("off.toml", &topology_text(true, &endpoints, ""));
    let out = w.run(&t, &["failover", "--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("only for the simulator on loopback")
            && stderr.contains("10.20.30.40:1433")
            && stderr.contains("tls = \"strict\""),
        "{stderr}"
    );
    // No endpoint at all for an instance: refused too.
    let t = w.write(
        "partial.toml",
        &topology_text(true, &trap.endpoints()[..3], ""),
    );
    let out = w.run(&t, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no [endpoints] entry on loopback"));
    // A strict topology with `--tls off` on the command line: the same rule.
    let strict = topology_text_with(true, &endpoints, "tls = \"strict\"", "");
    let t = w.write("strict.toml", &strict);
    let out = w.run(&t, &["failover", "--yes", "--tls", "off"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    trap.assert_untouched();
}

/// The demo runs TLS: strict against its own CA, Force Encryption on.
#[test]
fn the_demo_runs_strict_tls_with_its_own_ca() {
    let w = Work::new();
    let out = w
        .cmd()
        .args(["demo", "--what-if", "--report"])
        .arg(w.path("demo.html"))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("TLS: strict, certificates from the demo's own CA")
            && stdout.contains("(Force Encryption on)"),
        "{stdout}"
    );
}
