//! Confirmation before the first change, end to end against the TDS simulator: refused
//! without a terminal unless `--yes`; on a terminal (a real pseudo-terminal, driven with
//! rexpect, waiting on the program's output rather than on time) the prompt restates the
//! run, disaster recovery takes only `yes` and asks again, Ctrl-C changes nothing, and the
//! report records who answered what.
#![cfg(unix)]

mod common;

use backend_fake::fixtures;
use common::{PW_VAR, Sim, Trap, Work, json, read, topology_text};
use nix::sys::wait::WaitStatus;
use rexpect::session::PtySession;
use std::path::Path;

/// How long any expected text may take to appear (the run itself is quick).
const PTY_TIMEOUT_MS: u64 = 60_000;

fn dr_args() -> Vec<String> {
    [
        "--force",
        "--backup-sql-server-fqdn",
        "sql-b.cms.test",
        "--backup-sql-instance-name",
        "RTC",
    ]
    .map(String::from)
    .to_vec()
}

/// `cms-failover <args>` on a pseudo-terminal (stdin, stdout and stderr), with the test
/// environment of [`Work::cmd`] and `NO_COLOR`.
fn on_terminal(w: &Work, args: &[String]) -> PtySession {
    spawn_on_terminal(w, args, true)
}

/// [`on_terminal`], with `NO_COLOR` set or not.
fn spawn_on_terminal(w: &Work, args: &[String], no_color: bool) -> PtySession {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cms-failover"));
    c.args(args)
        .env_remove("CMS_FAILOVER_TOPOLOGY")
        .env_remove("CMS_FAILOVER_LOG")
        .env(PW_VAR, fixtures::LOGIN_PASSWORD)
        .env("HOME", w.dir.path())
        .env("XDG_STATE_HOME", w.path("state"))
        .env("CMS_FAILOVER_JOURNAL_DIR", w.journal())
        .env("USER", "tester")
        .env("TERM", "xterm")
        .env_remove("CLICOLOR")
        .env_remove("NO_COLOR");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    rexpect::session::spawn_command(c, Some(PTY_TIMEOUT_MS)).expect("spawn on a pty")
}

/// Waits for `needle`; returns everything printed before it.
#[track_caller]
fn expect(p: &mut PtySession, needle: &str) -> String {
    p.exp_string(needle)
        .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}"))
}

/// Reads to the end and returns the rest of the output and the exit code.
fn finish(mut p: PtySession) -> (String, i32) {
    let rest = p.exp_eof().expect("the program ends");
    match p.process().wait().expect("wait") {
        WaitStatus::Exited(_, code) => (rest, code),
        other => panic!("not a normal exit: {other:?}\n{rest}"),
    }
}

fn failover_args(t: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "failover".to_string(),
        "--topology".into(),
        t.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn without_a_terminal_a_change_needs_yes_and_nothing_is_contacted() {
    let w = Work::new();
    let trap = Trap::new();
    let t = w.write("topology.toml", &topology_text(true, &trap.endpoints(), ""));
    let dr_flags = dr_args();
    let mut dr = vec!["failover"];
    dr.extend(dr_flags.iter().map(String::as_str));
    for args in [
        vec!["failover"],
        vec!["failover", "--confirm"],
        dr,
        vec!["restore"],
    ] {
        let out = w.run(&t, &args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains("stdin is not a terminal"), "{args:?}: {e}");
        assert!(e.contains("add --yes"), "{args:?}: {e}");
        trap.assert_untouched();
        assert!(!w.journal().exists(), "{args:?}: the journal was created");
    }
}

#[test]
fn yes_answers_for_scripts_and_is_recorded() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    // --confirm --yes: the whole plan and the restatement are shown, nothing is asked.
    let mut args = vec!["failover", "--confirm", "--yes", "--json"];
    let dr_flags = dr_args();
    args.extend(dr_flags.iter().map(String::as_str));
    let out = w.run(&t, &args);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(e.contains("Plan ("), "the whole plan is shown: {e}");
    assert!(
        e.contains("About to run a disaster-recovery failover"),
        "{e}"
    );
    assert!(e.contains("Data-loss estimate"), "{e}");
    assert!(e.contains("--yes given: proceeding without asking."), "{e}");
    let v = json(&out.stdout);
    assert_eq!(v["confirmation"]["how"], "--yes", "{v}");
    assert_eq!(v["confirmation"]["by"], "tester");
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
}

#[test]
fn planned_prompt_restates_the_run_then_asks() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();

    // Declined: nothing changes.
    let mut p = on_terminal(&w, &failover_args(&t, &[]));
    let shown = expect(&mut p, "Proceed with these changes? [y/N]");
    for needle in [
        "About to run a planned failover:",
        &format!("from:      {}", fixtures::active()),
        &format!("to:        {}", fixtures::backup()),
        "databases: xds, lis",
        "changes:   ",
    ] {
        assert!(
            shown.contains(needle),
            "the prompt lacks {needle:?}:\n{shown}"
        );
    }
    assert!(
        !shown.contains("ALTER DATABASE"),
        "the prompt shows SQL without --confirm:\n{shown}"
    );
    p.send_line("maybe").unwrap();
    expect(&mut p, "Please answer `y` or `n` (you typed `maybe`)");
    expect(&mut p, "Proceed with these changes? [y/N]");
    p.send_line("n").unwrap();
    let (rest, code) = finish(p);
    assert_eq!(code, 3, "{rest}");
    assert!(
        rest.contains("not confirmed at the prompt; nothing was changed"),
        "{rest}"
    );
    assert_eq!(sim.mutations(), before, "a declined run changed the estate");

    // --confirm shows the whole plan first; `y` runs it and the report says who answered.
    let report = w.path("r.html");
    let mut p = on_terminal(
        &w,
        &failover_args(&t, &["--confirm", "--report", report.to_str().unwrap()]),
    );
    let shown = expect(&mut p, "Proceed with these changes? [y/N]");
    assert!(
        shown.contains("ALTER DATABASE [xds] SET READ_ONLY"),
        "{shown}"
    );
    p.send_line("y").unwrap();
    let (rest, code) = finish(p);
    assert_eq!(code, 0, "{rest}");
    assert!(rest.contains("Result: succeeded"), "{rest}");
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
    let html = read(&report);
    assert!(
        html.contains("answered `y` at the prompt by tester"),
        "the report does not record the answer"
    );
}

#[test]
fn restore_prompt_names_the_recorded_store() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let args = ["restore", "--topology", t.to_str().unwrap()].map(String::from);
    let mut p = on_terminal(&w, &args);
    let shown = expect(&mut p, "Proceed with these changes? [y/N]");
    assert!(shown.contains("About to run a restore:"), "{shown}");
    assert!(
        shown.contains(&format!(
            "store:     {} (the recorded CMS store)",
            fixtures::active()
        )),
        "{shown}"
    );
    p.send_line("").unwrap();
    let (rest, code) = finish(p);
    assert_eq!(code, 3, "an empty answer declines: {rest}");
    assert_eq!(sim.mutations(), before);
}

#[test]
fn disaster_prompt_needs_yes_and_asks_again_with_the_reason() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let mut args = failover_args(&t, &[]);
    args.extend(dr_args());

    let mut p = on_terminal(&w, &args);
    let shown = expect(&mut p, "Type `yes` to proceed");
    assert!(
        shown.contains("About to run a disaster-recovery failover"),
        "{shown}"
    );
    assert!(shown.contains("Data-loss estimate"), "{shown}");
    p.send_line("y").unwrap();
    expect(
        &mut p,
        "Only the word `yes` confirms a forced failover (you typed `y`)",
    );
    expect(&mut p, "Type `yes` to proceed");
    p.send_line("no").unwrap();
    let (rest, code) = finish(p);
    assert_eq!(code, 3, "{rest}");
    assert!(rest.contains("nothing was changed"), "{rest}");
    assert_eq!(sim.mutations(), before);

    let mut p = on_terminal(&w, &args);
    expect(&mut p, "Type `yes` to proceed");
    p.send_line("yes").unwrap();
    let (rest, code) = finish(p);
    assert_eq!(code, 0, "{rest}");
    assert_eq!(sim.writable("xds"), vec![fixtures::backup()]);
}

#[test]
fn ctrl_c_at_the_prompt_changes_nothing() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let before = sim.mutations();
    let mut p = on_terminal(&w, &failover_args(&t, &[]));
    expect(&mut p, "Proceed with these changes? [y/N]");
    p.send_control('c').unwrap();
    let (rest, code) = finish(p);
    assert_eq!(code, 130, "{rest}");
    assert!(
        rest.contains("Cancelled at the prompt: nothing was changed."),
        "{rest}"
    );
    assert_eq!(sim.mutations(), before);
    assert_eq!(sim.writable("xds"), vec![fixtures::active()]);
}

#[test]
fn result_is_coloured_on_a_terminal_unless_no_color() {
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, "");
    let p = spawn_on_terminal(&w, &failover_args(&t, &["--yes"]), false);
    let (out, code) = finish(p);
    assert_eq!(code, 0, "{out}");
    let result_line = |out: &str| {
        out.lines()
            .find(|l| l.contains("Result: "))
            .unwrap_or_else(|| panic!("no result line:\n{out}"))
            .to_string()
    };
    let green = "\u{1b}[32m";
    let line = result_line(&out);
    assert!(line.contains(green), "no colour on a terminal: {line:?}");

    // With NO_COLOR (set by on_terminal) the same kind of line is plain.
    let p = on_terminal(
        &w,
        &["restore", "--yes", "--topology", t.to_str().unwrap()].map(String::from),
    );
    let (out, code) = finish(p);
    assert_eq!(code, 0, "{out}");
    let line = result_line(&out);
    assert!(
        !line.contains("\u{1b}[3"),
        "colour despite NO_COLOR: {line:?}"
    );
}
