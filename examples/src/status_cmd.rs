//! `cms-failover status`: validates the flags, reads every instance (read-only) and the
//! journal, prints the status as text or JSON.

use crate::backends;
use crate::cli::StatusArgs;
use crate::failure::Failure;
use crate::report;
use crate::status;
use crate::validate::{default_journal_dir, load_config, load_login};
use failover_core::journal::JournalRecord;
use failover_core::{FileJournal, Journal};
use std::path::Path;

fn journal_records(dir: &Path) -> Result<Vec<JournalRecord>, Failure> {
    let path = dir.join("journal.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    FileJournal::open(dir)
        .and_then(|j| j.records())
        .map_err(|e| {
            Failure::usage(
                format!("cannot read the journal `{}`: {e}", path.display()),
                "check --journal-dir",
            )
        })
}

/// Runs `status`; returns the exit code.
pub async fn run(a: StatusArgs) -> Result<i32, Failure> {
    let config = load_config(&a.conn)?;
    let dir = a.journal_dir.clone().unwrap_or_else(default_journal_dir);
    let records = journal_records(&dir)?;
    let credentials = load_login(&config)?;
    // The directory on each DC (crate::status_directory), when the topology has one.
    let directory = crate::status_directory::build(&config)?;
    let backend = backends::build(
        a.conn.backend,
        &config,
        &credentials,
        config.settings.step_timeout,
    )?;
    let mut doc = status::gather(
        backend.as_ref(),
        &config.topology,
        &records,
        config.settings.step_timeout,
    )
    .await;
    let dir_status = match &directory {
        Some((d, _)) => Some(
            crate::status_directory::gather(d.as_ref(), &doc, config.settings.step_timeout).await,
        ),
        None => None,
    };
    // The directory and the records disagreeing is unhealthy (exit 23).
    if let Some(d) = &dir_status {
        for dc in d
            .domain_controllers
            .iter()
            .filter(|dc| dc.agrees_with_record == Some(false))
        {
            doc.add_problem(
                status::ProblemCode::DirectoryDisagrees,
                format!(
                    "the directory on {} does not point at the store the location record names",
                    dc.dc
                ),
            );
        }
    }
    let mut secrets = credentials.secrets();
    secrets.extend(
        directory
            .as_ref()
            .and_then(|(_, pw)| pw.as_ref().map(|pw| pw.expose())),
    );
    if a.json {
        let mut v = crate::json::status_doc(&doc, &secrets);
        if let Some(d) = &dir_status {
            v["directory"] = serde_json::to_value(d).expect("json");
            report::redact(&mut v, &secrets);
        }
        crate::json::print(&v);
    } else {
        let mut text = status::render_text(&doc);
        if let Some(d) = &dir_status {
            text.push_str(&crate::status_directory::render_text(d));
        }
        print!("{}", report::redact_str(&text, &secrets));
    }
    // Unhealthy estates exit non-zero: the most severe problem's code (README exit table).
    Ok(doc.exit_code())
}
