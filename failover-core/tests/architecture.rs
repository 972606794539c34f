//! `docs/architecture.md` keeps two generated blocks in step with the code: the crate graph
//! (from every workspace member's `[dependencies]`) and the machine's phase files (from
//! `failover-core/src/machine/`, each with the first sentence of its `//!` doc). Regenerate them
//! with `UPDATE_DOCS=1 cargo test -p failover-core --test architecture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace members and, for each, the members it depends on (normal dependencies).
fn crate_graph() -> BTreeMap<String, Vec<String>> {
    let ws: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let dirs: Vec<String> = ws["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let mut names = BTreeMap::new();
    let mut deps = BTreeMap::new();
    for d in &dirs {
        let t: toml::Table = std::fs::read_to_string(root().join(d).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let name = t["package"]["name"].as_str().unwrap().to_string();
        let list: Vec<String> = t
            .get("dependencies")
            .and_then(|v| v.as_table())
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        names.insert(name.clone(), ());
        deps.insert(name, list);
    }
    deps.into_iter()
        .map(|(k, v)| {
            let mut v: Vec<String> = v.into_iter().filter(|d| names.contains_key(d)).collect();
            v.sort();
            (k, v)
        })
        .collect()
}

fn graph_block() -> String {
    let id = |n: &str| n.replace('-', "_");
    let mut s = String::from("```mermaid\ngraph LR\n");
    for (k, v) in crate_graph() {
        s.push_str(&format!("    {}[{k}]\n", id(&k)));
        for d in v {
            s.push_str(&format!("    {} --> {}\n", id(&k), id(&d)));
        }
    }
    s.push_str("```\n");
    s
}

fn phases_block() -> String {
    let dir = root().join("failover-core/src/machine");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => vec![root().join("failover-core/src/machine.rs")],
    };
    files.sort();
    let mut s = String::from("| file | what it holds |\n|---|---|\n");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // The first sentence of the module doc (which may span lines).
        let para: Vec<&str> = text
            .lines()
            .map_while(|l| l.strip_prefix("//!"))
            .map(str::trim)
            .take_while(|l| !l.is_empty())
            .collect();
        let para = para.join(" ");
        let doc = match para.find(". ") {
            Some(i) => para[..=i].to_string(),
            None => para,
        };
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        s.push_str(&format!("| `{rel}` | {doc} |\n"));
    }
    s
}

fn replace_block(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- {name}:begin -->\n");
    let end = format!("<!-- {name}:end -->");
    let (Some(a), Some(b)) = (doc.find(&begin), doc.find(&end)) else {
        panic!("docs/architecture.md lacks the {begin:?} … {end:?} markers");
    };
    format!("{}{begin}{body}{}", &doc[..a], &doc[b..])
}

#[test]
fn architecture_doc_is_in_step_with_the_code() {
    let path = root().join("docs/architecture.md");
    let have = std::fs::read_to_string(&path).unwrap();
    let want = replace_block(&have, "crate-graph", &graph_block());
    let want = replace_block(&want, "phases", &phases_block());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap();
    assert!(
        have == want,
        "docs/architecture.md is stale: run UPDATE_DOCS=1 cargo test -p failover-core --test architecture"
    );
    // Every crate of the workspace is described in the prose too.
    for name in crate_graph().keys() {
        assert!(
            have.contains(&format!("`{name}`")),
            "docs/architecture.md does not describe `{name}`"
        );
    }
}
