//! The pool pair: `failover` moves the CMS to the partner of the store it is recorded on
//! now, so the same command with the same topology file fails back; `--to` asserts the
//! direction and refuses the other one.

mod common;

use backend_fake::fixtures;
use common::{Sim, Work, json, label_of};
use failover_core::InstanceAddr;

/// A run's stdout and stderr, for assertion messages.
fn text(o: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn failover_then_failback_with_no_file_edit() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let file_before = std::fs::read_to_string(&t).unwrap();

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

/// After a failover A → B, B's store is lost: `status` names the way out, a disaster
/// recovery back to A, as a command; run verbatim with the same file (A is the file's
/// `[active]` store) it succeeds and A serves again. It used to be refused as "source
/// equals target" and needed a file edit.
#[test]
fn disaster_recovery_back_to_the_file_active_store_needs_no_file_edit() {
    let sim = Sim::start(fixtures::Options::default().mirrored(true));
    let w = Work::new();
    let t = sim.topology(&w, "");
    let file_before = std::fs::read_to_string(&t).unwrap();
    let out = w.run(&t, &["failover", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);

    for i in [fixtures::backup(), fixtures::backup_mirror()] {
        sim.estate.set_reachable(&i, false).unwrap();
    }
    let out = w.run(&t, &["status"]);
    let said = text(&out);
    let start = said
        .find("`cms-failover failover ")
        .unwrap_or_else(|| panic!("status names no disaster recovery:\n{said}"))
        + "`cms-failover ".len();
    let command = &said[start..start + said[start..].find('`').unwrap()];
    assert!(
        command.contains(&format!(
            "--backup-sql-server-fqdn {}",
            fixtures::active().host()
        )),
        "{command}"
    );

    let mut args: Vec<&str> = command.split(' ').collect();
    args.extend(["--yes", "--json"]);
    let out = w.run(&t, &args);
    assert_eq!(out.status.code(), Some(0), "{command}\n{}", text(&out));
    let v = json(&out.stdout);
    assert_eq!(v["outcome"]["code"], "succeeded", "{v}");
    assert_eq!(v["outcome"]["active"], fixtures::active().to_string());
    assert_eq!(
        v["run"]["topology"]["active"]["principal"],
        fixtures::backup().to_string(),
        "the lost store is the run's source"
    );
    // B still believes it serves (it was down); when it comes back, `restore` follows the
    // records to A and fences B.
    assert_eq!(
        sim.writable("xds"),
        vec![fixtures::active(), fixtures::backup()]
    );
    for i in [fixtures::backup(), fixtures::backup_mirror()] {
        sim.estate.set_reachable(&i, true).unwrap();
    }
    let out = w.run(&t, &["restore", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
    assert_eq!(sim.writable("lis"), vec![fixtures::active()]);
    assert_eq!(std::fs::read_to_string(&t).unwrap(), file_before);
}
