//! Issue 12 item 2, "probe and report the witness state": `status` (text and JSON) shows
//! each partner's witness as that partner reports it, and a disaster recovery's plan and
//! report say what the mirror's witness means for `FORCE_SERVICE_ALLOW_DATA_LOSS`.

mod common;

use backend_fake::{WitnessConnection, fixtures};
use common::{Sim, Work, check_schema, json, read};
use failover_core::InstanceAddr;

/// The status text's lines of `instance`: its header, then its databases.
fn block<'a>(text: &'a str, instance: &InstanceAddr) -> Vec<&'a str> {
    let head = format!("  {instance} ");
    text.lines()
        .skip_while(|l| !l.starts_with(&head))
        .enumerate()
        .take_while(|(n, l)| *n == 0 || l.starts_with("      "))
        .map(|(_, l)| l)
        .collect()
}

/// The witness connected to the active principal only: `sql-a` reports it CONNECTED,
/// `sql-a2` DISCONNECTED, and the backup session has none.
#[test]
fn status_shows_the_witness_each_partner_reports() {
    let sim = Sim::start(
        fixtures::Options::default()
            .mirrored(true)
            .witness(Some(WitnessConnection::PrincipalOnly)),
    );
    let w = Work::new();
    let t = sim.topology(&w, "");
    let out = w.run(&t, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for (i, want) in [
        (
            fixtures::active(),
            format!("witness {} CONNECTED", fixtures::WITNESS),
        ),
        (
            fixtures::active_mirror(),
            format!("witness {} DISCONNECTED", fixtures::WITNESS),
        ),
        (fixtures::backup(), "no witness".to_string()),
        (fixtures::backup_mirror(), "no witness".to_string()),
    ] {
        let lines = block(&text, &i);
        assert_eq!(lines.len(), 3, "{i}: header and two databases\n{text}");
        for l in &lines[1..] {
            assert!(l.contains(" mirroring ") && l.contains(&want), "{i}: {l}");
        }
    }

    let out = w.run(&t, &["status", "--json"]);
    let v = json(&out.stdout);
    check_schema("status with a witness", &v);
    let witness_of = |i: &InstanceAddr| {
        let inst = v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["instance"] == i.to_string())
            .unwrap_or_else(|| panic!("{i} in {v:#}"));
        inst["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["mirroring"]["witness"].clone())
            .collect::<Vec<_>>()
    };
    for (i, state) in [
        (fixtures::active(), "CONNECTED"),
        (fixtures::active_mirror(), "DISCONNECTED"),
    ] {
        for wit in witness_of(&i) {
            assert_eq!(wit["name"], fixtures::WITNESS, "{i}");
            assert_eq!(wit["state"], state, "{i}");
        }
    }
    for wit in witness_of(&fixtures::backup()) {
        assert!(wit.is_null(), "no witness on the backup session: {wit}");
    }
}

/// A planned failover's plan names the witness once, with what each partner reports.
#[test]
fn a_planned_plan_names_the_witness_in_one_line() {
    let sim = Sim::start(
        fixtures::Options::default()
            .mirrored(true)
            .witness(Some(WitnessConnection::Both)),
    );
    let w = Work::new();
    let t = sim.topology(&w, "");
    let report = w.path("planned.html");
    let out = w.run(
        &t,
        &[
            "failover",
            "--what-if",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    let want = format!(
        "Witness: {} (CONNECTED on {}, CONNECTED on {})",
        fixtures::WITNESS,
        fixtures::active(),
        fixtures::active_mirror()
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Witness")).collect();
    assert_eq!(lines, [want.as_str()], "{text}");
    let html = read(&report);
    assert!(
        html.contains("<dd id=\"witness\">") && html.contains("CONNECTED on"),
        "the report's summary names the witness"
    );

    // The run itself: its report names the witness as the status before the run saw it.
    let report = w.path("run.html");
    let out = w.run(
        &t,
        &["failover", "--yes", "--report", report.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    let html = read(&report);
    // (minijinja escapes the `/` of `TCP://`: compare the part after the name.)
    let (_, states) = want.split_once(" (").unwrap();
    assert!(
        html.contains("<dd id=\"witness\">Witness: ") && html.contains(states),
        "the run's report names the witness as seen before the run: {states}"
    );
}

/// A disaster recovery to the backup store with its principal down forces the mirror
/// `sql-b2`; with no witness the plan says the force is allowed, and the report says it
/// too. With the witness DISCONNECTED from the mirror the plan is blocked (1455), and the
/// plan says why.
#[test]
fn a_forcing_plan_says_what_the_mirrors_witness_means() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    for i in [
        fixtures::active(),
        fixtures::active_mirror(),
        fixtures::backup(),
    ] {
        sim.estate.set_reachable(&i, false).unwrap();
    }
    let w = Work::new();
    let t = sim.topology(&w, "");
    let report = w.path("dr.html");
    let what_if = |report: &str| {
        let mut args = vec!["failover", "--what-if", "--report", report];
        args.extend(common::DR_FLAGS);
        let out = w.run(&t, &args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = what_if(report.to_str().unwrap());
    assert_eq!(code, Some(0), "{text}");
    let want = format!(
        "Witness: none on the mirror {}: FORCE_SERVICE_ALLOW_DATA_LOSS is allowed",
        fixtures::backup_mirror()
    );
    assert!(text.contains(&want), "{text}");
    assert!(read(&report).contains(&want), "the report says it too");

    // The witness set and connected to the principal only: the mirror reports it
    // DISCONNECTED, the force would get 1455, so the plan is blocked and says so.
    for db in fixtures::databases() {
        sim.estate
            .set_witness(
                &db,
                &fixtures::backup(),
                Some((fixtures::WITNESS, WitnessConnection::PrincipalOnly)),
            )
            .unwrap();
    }
    let before = sim.estate.durable_changes();
    let (code, text) = what_if(w.path("dr2.html").to_str().unwrap());
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("DISCONNECTED") && text.contains("1455") && text.contains("SET WITNESS OFF"),
        "{text}"
    );
    assert_eq!(sim.estate.durable_changes(), before);
}
