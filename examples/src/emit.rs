//! Reporting a finished command: the report document, printed as text or JSON, and the
//! HTML report file.

use crate::failure::Failure;
use crate::output::ExpectedFailures;
use crate::output::{render_plan, render_result};
use crate::report::{self, Confirmation, Lags, Outage, ReportDoc};
use crate::status::StatusDoc;
use crate::verdict::Verdict;
use failover_core::{Mode, Outcome, RunReport};
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
    /// The total lag at each poll (ms since the Unix epoch, lag).
    pub lag_curve: Vec<(u64, u64)>,
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
        outage: outage(run),
        after_success: after_success(run, outcome.what_if),
        outcome,
        confirmation: cx.confirmation,
        status_before: cx.before,
        status_after: cx.after,
        run: run.clone(),
        lags: cx.lags,
        lag_curve: cx.lag_curve,
    }
}

/// A disaster recovery's outage: since the first call that failed on the source because
/// it was unreachable (or timed out).
pub fn outage(run: &RunReport) -> Option<Outage> {
    if !matches!(run.mode, Mode::DisasterRecovery { .. }) || run.what_if {
        return None;
    }
    let expected = ExpectedFailures::of(&run.mode, &run.topology);
    let mut since = None;
    let mut instances: Vec<String> = Vec::new();
    for s in &run.steps {
        for e in s
            .ops
            .iter()
            .flat_map(|o| o.retried_errors.iter().chain(o.error.iter()))
            .filter(|e| expected.covers(e))
        {
            since.get_or_insert(s.started_unix_ms);
            if !instances.contains(&e.instance) {
                instances.push(e.instance.clone());
            }
        }
    }
    let since = since?;
    Some(Outage {
        since_unix_ms: since,
        text: format!(
            "source unreachable since {} (first failed probe of {})",
            report::format_unix_ms(since),
            instances.join(", ")
        ),
        instances,
    })
}

/// What to do after a successful disaster recovery: keep the returning old principal
/// fenced, then fail back with the same command.
pub fn after_success(run: &RunReport, what_if: bool) -> Vec<String> {
    let (Mode::DisasterRecovery { target }, Outcome::Succeeded { .. }, false) =
        (&run.mode, &run.outcome, what_if)
    else {
        return Vec::new();
    };
    let old = &run.topology.active;
    let dbs: Vec<&str> = run.topology.databases.iter().map(|d| d.as_str()).collect();
    let old_all: Vec<String> = old.instances().map(|i| i.to_string()).collect();
    vec![
        format!(
            "Keep the old principal {} fenced when it returns: it still believes it serves the CMS. Before it rejoins the network, set its CMS databases ({}) read-only (`ALTER DATABASE … SET READ_ONLY`), or keep its SQL Server stopped; `cms-failover status` labels it `fenced` when it is read-only and exits 21 (two writable copies) if it comes back writable.",
            old_all.join(" / "),
            dbs.join(", ")
        ),
        format!(
            "To fail back once {} is repaired and its databases re-seeded from {}: run `cms-failover failover --what-if -t <topology>`, then the same without --what-if. `failover` moves the CMS to the partner of wherever it is recorded now, so no file edit is needed.",
            old.principal, target.principal
        ),
    ]
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

/// Prints the document (JSON or text) and writes the report, if asked. Under `--json` the
/// report is written first, so a failure to write it is part of the one JSON document
/// (`report_error`) and the returned failure is marked as already shown.
pub fn emit(
    doc: &ReportDoc,
    json: bool,
    report: Option<&Path>,
    secrets: &[&str],
) -> Result<(), Failure> {
    if json {
        let mut v = crate::json::run_doc(doc, secrets);
        let written = report.map(|p| write_report(p, doc, secrets));
        if let Some(Err(f)) = &written {
            v["report_error"] = serde_json::json!({ "what": f.what, "next": f.next });
        }
        crate::json::print(&v);
        return match written {
            Some(Err(f)) => Err(f.shown()),
            Some(Ok(())) => {
                if let Some(path) = report {
                    eprintln!("Report written to {}", path.display());
                }
                Ok(())
            }
            None => Ok(()),
        };
    }
    if doc.run.what_if {
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
        if let Some(o) = &doc.outage {
            println!("Outage: {}", o.text);
        }
        for line in &doc.after_success {
            println!(
                "{} {line}",
                crate::style::paint("Next:", crate::style::Tone::Warn, colour)
            );
        }
    }
    if let Some(path) = report {
        write_report(path, doc, secrets)?;
        eprintln!("Report written to {}", path.display());
    }
    Ok(())
}
