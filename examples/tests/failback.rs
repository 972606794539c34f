//! The pool pair: `failover` moves the CMS to the partner of the store it is recorded on
//! now, so the same command with the same topology file fails back; `--to` asserts the
//! direction and refuses the other one.

mod common;

use backend_fake::fixtures;
use common::{Sim, Work, json, label_of};
use failover_core::InstanceAddr;

#[test]
fn failover_then_failback_with_no_file_edit() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let file_before = std::fs::read_to_string(&t).unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // A → B.
    let out = w.run(&t, &["failover", "--yes", "--to", "backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
    // Epochs take the operator's clock as a floor (Unix seconds).
    let first = sim.epoch().unwrap();
    assert!(
        first > examples::validate::epoch_clock() - 3_600,
        "epoch {first}"
    );

    // Asserting the old direction again is refused before any change, and says why.
    let mutations = sim.mutations();
    let out = w.run(
        &t,
        &["failover", "--yes", "--to", &fixtures::backup().to_string()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("the CMS is recorded on") && text(&out).contains("nothing was changed"),
        "{}",
        text(&out)
    );
    assert_eq!(
        sim.mutations(),
        mutations,
        "a refused --to changed something"
    );

    // Replication now runs from the serving store back to its partner (as the Backup
    // Service does once the pair is healthy again), so the planned failback can catch up.
    sim.estate
        .add_link(
            &fixtures::backup(),
            &fixtures::active(),
            &fixtures::databases(),
            50,
        )
        .unwrap();

    // The what-if of the same command plans the failback, B → A.
    let out = w.run(&t, &["failover", "--what-if", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out.stdout);
    assert_eq!(v["outcome"]["code"], "would_succeed");
    assert_eq!(
        v["run"]["topology"]["active"]["principal"],
        fixtures::backup().to_string()
    );
    assert_eq!(v["outcome"]["active"], fixtures::active().to_string());

    // B → A: the same command, the same file.
    let out = w.run(&t, &["failover", "--yes", "--json", "--to", "active"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out.stdout);
    assert_eq!(v["outcome"]["code"], "succeeded");
    assert_eq!(v["outcome"]["active"], fixtures::active().to_string());
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    assert_eq!(sim.writable("lis"), vec![fixtures::active()]);
    assert!(sim.epoch().unwrap() > first);
    assert_eq!(
        std::fs::read_to_string(&t).unwrap(),
        file_before,
        "the file was edited"
    );

    // Status: A active, B fenced by the failback, healthy.
    let out = w.run(&t, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = json(&out.stdout);
    let label = |i: InstanceAddr| label_of(&s, &i);
    assert_eq!(label(fixtures::active()).as_deref(), Some("active"));
    assert_eq!(label(fixtures::backup()).as_deref(), Some("fenced"));
    assert_eq!(label(fixtures::active_mirror()).as_deref(), Some("mirror"));
}

#[test]
fn to_naming_no_store_is_bad_input() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let out = w.run(&t, &["failover", "--yes", "--to", "sql-z.cms.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names neither store"));
    assert_eq!(sim.mutations(), before);
}
