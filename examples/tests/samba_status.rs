//! `status` and a failover's pre-run line against a real Active Directory: Samba's AD DC on
//! loopback (`scripts/samba-dc.sh`, the SCP pointing at the simulator's active store), the
//! topology's `[directory]` with LDAPS, the CA file and a password file. Needs root and the
//! packages `scripts/test-all.sh` installs; without them it prints SKIPPED (fails under CI).

mod common;

use backend_fake::fixtures;
use common::samba::SambaDc;
use common::{Sim, Work, json};

/// This binary's DC address (each Samba test binary has its own: the ports are fixed).
const ADDR: &str = "127.0.0.40";

#[test]
fn status_reads_the_scp_on_samba_and_agrees_with_the_record() {
    let Some(dc) = SambaDc::start(ADDR, "samba status test") else {
        return;
    };
    let sim = Sim::standard();
    let w = Work::new();
    let t = sim.topology(&w, &dc.section(""));
    let password = dc.password();
    let password = password.trim();

    let out = w.run(&t, &["status", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out.stdout);
    let dc0 = &v["directory"]["domain_controllers"][0];
    assert_eq!(
        dc0["value"]["backend"],
        fixtures::active().to_string(),
        "{stdout}"
    );
    assert_eq!(dc0["agrees_with_record"], true, "{stdout}");
    assert!(!stdout.contains(password));

    let out = w.run(&t, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Directory (ldap)") && text.contains("matches the SQL record"),
        "{text}"
    );

    // A what-if prints the directory's value before the plan, and changes nothing.
    let out = w.run(&t, &["failover", "--what-if"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the topology's active store"), "{stderr}");
    assert!(!stderr.contains(password) && !String::from_utf8_lossy(&out.stdout).contains(password));
}
