//! Reporting a finished command: the report document, printed as text or JSON, and the
//! HTML report file.

use crate::failure::Failure;
use crate::output::{render_plan, render_result};
use crate::report::{self, Confirmation, Lags, ReportDoc};
use crate::status::StatusDoc;
use crate::verdict::Verdict;
use failover_core::{Mode, RunReport};
use std::path::Path;

/// What a report needs besides the run: the command line, how it was confirmed, and the
/// status before and after where it was read.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The command line.
    pub argv: Vec<String>,
    /// How the run was confirmed.
    pub confirmation: Option<Confirmation>,
    /// The status before the run.
    pub before: Option<StatusDoc>,
    /// The status after the run.
    pub after: Option<StatusDoc>,
    /// The lags the progress saw during each wait.
    pub lags: Lags,
    /// The run is the read-only plan of a real command, read to confirm it (not a what-if
    /// the operator asked for): its refusal is the command's.
    pub plan_for_confirmation: bool,
}

/// Builds the report document of `run`.
pub fn report_doc(command: &str, run: &RunReport, cx: Context) -> ReportDoc {
    let outcome = Verdict::of(run, run.what_if && !cx.plan_for_confirmation);
    ReportDoc {
        tool: "cms-failover",
        version: env!("CARGO_PKG_VERSION"),
        command: command.to_string(),
        argv: cx.argv,
        operator: report::operator(),
        host: report::host(),
        exit_code: outcome.exit_code,
        next_step: report::next_step(&run.outcome, outcome.what_if),
        outcome,
        confirmation: cx.confirmation,
        status_before: cx.before,
        status_after: cx.after,
        run: run.clone(),
        lags: cx.lags,
    }
}

/// The command name of a `failover` / `restore` run.
pub fn command_of(run: &RunReport) -> &'static str {
    if matches!(run.mode, Mode::Restore) {
        "restore"
    } else {
        "failover"
    }
}

/// Writes the HTML report to `path`.
pub fn write_report(path: &Path, doc: &ReportDoc, secrets: &[&str]) -> Result<(), Failure> {
    let html = report::render_html(doc, secrets).map_err(|e| {
        Failure::usage(
            format!("cannot render the report: {e:#}"),
            "report this as a bug",
        )
    })?;
    std::fs::write(path, html).map_err(|e| {
        Failure::usage(
            format!("cannot write the report `{}`: {e}", path.display()),
            "the run itself is over: see its result above; use a writable --report path next time",
        )
    })
}

/// Prints the document (JSON or text) and writes the report, if asked.
pub fn emit(
    doc: &ReportDoc,
    json: bool,
    report: Option<&Path>,
    secrets: &[&str],
) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::to_json(doc, secrets)).expect("json")
        );
    } else if doc.run.what_if {
        print!("{}", report::redact_str(&render_plan(&doc.run), secrets));
        println!(
            "Outcome: {}",
            report::redact_str(&doc.outcome.text, secrets)
        );
    } else {
        let colour = crate::style::stdout_colour();
        print!(
            "{}",
            report::redact_str(&render_result(&doc.run, colour, &doc.lags), secrets)
        );
    }
    if let Some(path) = report {
        write_report(path, doc, secrets)?;
        eprintln!("Report written to {}", path.display());
    }
    Ok(())
}
