//! The state diagram in `docs/state-machine.md` is generated from `machine::TRANSITIONS`.
//! Regenerate it with `UPDATE_DOCS=1 cargo test -p failover-core --test diagram`.

use failover_core::machine::{TRANSITIONS, mermaid};

fn document() -> String {
    let mut s = String::from(
        "# The failover state machine\n\n\
         Generated from `failover_core::machine::TRANSITIONS` by `cargo test -p failover-core --test diagram`\n\
         (set `UPDATE_DOCS=1` to rewrite it). Every state is named for what it waits for; the\n\
         machine checks on every transition, in every build, that it is in this table.\n\n```mermaid\n",
    );
    s.push_str(&mermaid());
    s.push_str("```\n\n| from | to | when |\n|---|---|---|\n");
    for (a, b, why) in TRANSITIONS {
        s.push_str(&format!("| {a} | {b} | {why} |\n"));
    }
    s
}

#[test]
fn docs_diagram_is_generated_from_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/state-machine.md");
    let want = document();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/state-machine.md is stale: run UPDATE_DOCS=1 cargo test -p failover-core --test diagram"
    );
}
