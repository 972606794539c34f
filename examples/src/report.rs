//! The run report: one serializable document, printed as JSON (`--json`) or rendered as a
//! self-contained HTML page (`--report`) with minijinja. Secrets are redacted from both.

use crate::status::StatusDoc;
use crate::verdict::Verdict;
use failover_core::machine::StateName;
use failover_core::{Outcome, RunReport};
use serde::Serialize;
use std::collections::BTreeMap;

const TEMPLATE: &str = include_str!("report.html.jinja");

/// Everything about one run, for people (HTML) and programs (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct ReportDoc {
    /// `cms-failover`.
    pub tool: &'static str,
    /// The tool's version.
    pub version: &'static str,
    /// `failover`, `restore` or `demo`.
    pub command: String,
    /// The command line (never holds a password: passwords come from env/file).
    pub argv: Vec<String>,
    /// Who ran it.
    pub operator: String,
    /// Where.
    pub host: String,
    /// How the command ended (a what-if: `would_succeed` / `would_be_refused`).
    pub outcome: Verdict,
    /// The process exit code.
    pub exit_code: i32,
    /// What to do next.
    pub next_step: String,
    /// How the run was confirmed and by whom (`None`: the demo, or a plan refused before
    /// anything was asked).
    pub confirmation: Option<Confirmation>,
    /// The status before the run, where it was read (demo).
    pub status_before: Option<StatusDoc>,
    /// The status after the run, where it was read (demo).
    pub status_after: Option<StatusDoc>,
    /// Disaster recovery: when the source was first seen unreachable (the outage began
    /// then, not at the fence).
    pub outage: Option<Outage>,
    /// What to do after a success (disaster recovery: keep the old principal fenced when it
    /// returns; how to fail back).
    pub after_success: Vec<String>,
    /// The run.
    pub run: RunReport,
    /// The total lag at the first and last poll of each wait, as the progress saw it (for
    /// the text summary).
    #[serde(skip)]
    pub lags: Lags,
    /// The total lag at each poll of the waits: (ms since the Unix epoch, lag).
    pub lag_curve: Vec<(u64, u64)>,
}

/// The total lag of one wait as the progress observer saw it (`None`: unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitLag {
    /// At the first reported poll.
    pub first: Option<u64>,
    /// At the last reported poll (a poll that finds the target caught up reports nothing).
    pub last: Option<u64>,
    /// The wait ended because the target caught up (the run went on to the next phase).
    pub caught_up: bool,
}

/// Per wait (`AwaitingReplication`, `AwaitingCatchUp`), its lag.
pub type Lags = BTreeMap<StateName, WaitLag>;

/// A disaster recovery's outage: the source has been unreachable since its first failed
/// call in this run (the earliest the tool knows of).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    /// The start of the step whose call first failed on the source, ms since the Unix epoch.
    pub since_unix_ms: u64,
    /// The source instances that failed.
    pub instances: Vec<String>,
    /// For people: `source unreachable since 2026-… (first failed probe)`.
    pub text: String,
}

/// How a run was confirmed, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    /// `prompt` (answered at the terminal), `--yes` (answered for a script) or
    /// `not needed` (what-if).
    pub how: String,
    /// The answer that counted (`yes`, `y`), when one was typed or given.
    pub answer: Option<String>,
    /// Who gave it (the operator's user name).
    pub by: String,
}

/// What the operator should do after `outcome`.
pub fn next_step(outcome: &Outcome, what_if: bool) -> String {
    match (outcome, what_if) {
        (Outcome::Succeeded { .. }, true) => {
            "Nothing was changed. Run the same command without --what-if to perform it.".into()
        }
        (Outcome::Refused { .. }, true) => {
            "Nothing was changed. Resolve the blockers listed, then check again with --what-if."
                .into()
        }
        (Outcome::Succeeded { .. }, false) => {
            "Check `cms-failover status` and that every CMS replica reports UpToDate.".into()
        }
        (Outcome::Refused { .. }, false) => {
            "Nothing was changed. Fix the reason given, then run the command again.".into()
        }
        (Outcome::RolledBack { .. }, false) => "The source store is in service again. Fix the cause, check with `cms-failover status`, then retry.".into(),
        (Outcome::NeedsRestore { .. }, false) => "Run `cms-failover restore` with the same topology to put the CMS back into service.".into(),
        (Outcome::Cancelled { .. }, false) => "The run was cancelled; any fence was undone. Check `cms-failover status` and run again when ready.".into(),
        (_, true) => "Nothing was changed.".into(),
    }
}

/// The user running the tool: `$USER`, then `$LOGNAME`, then the name of the process's
/// uid (`$USERNAME` on Windows); a uid with no name is shown as `uid N (no user name)`.
pub fn operator() -> String {
    operator_from(|v| std::env::var(v).ok(), uid_name)
}

/// [`operator`] over a given environment and uid lookup.
pub fn operator_from(
    env: impl Fn(&str) -> Option<String>,
    uid: impl Fn() -> Result<String, String>,
) -> String {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| env(v).filter(|s| !s.trim().is_empty()))
    {
        return u;
    }
    match uid() {
        Ok(name) => name,
        Err(no_name) => env("USERNAME")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(no_name),
    }
}

#[cfg(unix)]
fn uid_name() -> Result<String, String> {
    let uid = nix::unistd::Uid::current();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => Ok(u.name),
        _ => Err(format!("uid {uid} (no user name)")),
    }
}

#[cfg(not(unix))]
fn uid_name() -> Result<String, String> {
    Err("unknown (neither USER, LOGNAME nor USERNAME is set)".into())
}

/// This machine's host name.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Replaces every occurrence of a secret, and any `PWD=…`/`Password=…` connection-string
/// value, in every string of `v` with `***`.
pub fn redact(v: &mut serde_json::Value, secrets: &[&str]) {
    match v {
        serde_json::Value::String(s) => *s = redact_str(s, secrets),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| redact(x, secrets)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| redact(x, secrets)),
        _ => {}
    }
}

/// [`redact`] for one string.
pub fn redact_str(s: &str, secrets: &[&str]) -> String {
    let mut out = s.to_string();
    for sec in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(sec, "***");
    }
    for key in ["pwd=", "password="] {
        let mut from = 0;
        loop {
            let lower = out.to_ascii_lowercase();
            let Some(pos) = lower[from..].find(key).map(|p| p + from) else {
                break;
            };
            let start = pos + key.len();
            let end = out[start..].find(';').map_or(out.len(), |e| e + start);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn format_unix_ms(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3] UTC"
    );
    t.format(&f).unwrap_or_else(|_| ms.to_string())
}

/// Formats a duration in milliseconds for people: `850 ms`, `2.35 s`, `4 min 10 s`.
pub fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Renders the self-contained HTML report (embedded CSS, no scripts, no external links)
/// from the document's JSON form ([`crate::json::run_doc`]).
pub fn render_html(doc: &ReportDoc, secrets: &[&str]) -> Result<String, minijinja::Error> {
    let ctx = crate::json::run_doc(doc, secrets);
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("ms", |v: f64| format_ms(v as u64));
    env.add_filter("ts", |v: String| v.replace('T', " ").replace('Z', " UTC"));
    env.add_template("report.html", TEMPLATE)?;
    let tmpl = env.get_template("report.html")?;
    tmpl.render(minijinja::context! {
        doc => ctx,
        title => title(doc),
        outcome_text => redact_str(&doc.outcome.text, secrets),
        witness => crate::witness::report_lines(&doc.run, doc.status_before.as_ref()),
        timeline => crate::svg::timeline(doc),
        diagram => crate::svg::state_diagram(),
    })
}

/// A one-line title: `Planned failover — succeeded`.
pub fn title(doc: &ReportDoc) -> String {
    let mode = match &doc.run.mode {
        failover_core::Mode::Planned => "Planned failover",
        failover_core::Mode::DisasterRecovery { .. } => "Disaster-recovery failover",
        failover_core::Mode::Restore => "Restore",
    };
    let wi = if doc.outcome.what_if {
        " (what-if plan)"
    } else {
        ""
    };
    format!("{mode}{wi} — {}", doc.outcome.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact_str("Driver={FreeTDS};UID=sa;PWD=abc;Server=x", &[]),
            "Driver={FreeTDS};UID=sa;PWD=***;Server=x"
        );
        assert_eq!(redact_str("password=xyz", &[]), "password=***");
        assert_eq!(
            redact_str("the hunter2 secret", &["hunter2"]),
            "the *** secret"
        );
        let mut v = serde_json::json!({"a": ["x hunter2", {"b": "hunter2"}]});
        redact(&mut v, &["hunter2"]);
        assert!(!v.to_string().contains("hunter2"));
    }

    #[test]
    fn operator_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let uid = || Ok::<_, String>("from-uid".into());
        let no_uid = || Err::<String, _>("uid 4242 (no user name)".to_string());
        assert_eq!(
            operator_from(env(&[("USER", "u"), ("LOGNAME", "l")]), uid),
            "u"
        );
        assert_eq!(
            operator_from(env(&[("USER", ""), ("LOGNAME", "l")]), uid),
            "l"
        );
        assert_eq!(operator_from(env(&[]), uid), "from-uid");
        assert_eq!(operator_from(env(&[]), no_uid), "uid 4242 (no user name)");
        assert_eq!(operator_from(env(&[("USERNAME", "w")]), no_uid), "w");
    }

    #[cfg(unix)]
    #[test]
    fn the_uid_has_a_name_here() {
        // The test machine's user exists in its password database.
        assert!(!uid_name().unwrap().is_empty());
    }

    #[test]
    fn formats() {
        assert_eq!(format_ms(850), "850 ms");
        assert_eq!(format_ms(2350), "2.35 s");
        assert_eq!(format_ms(250_000), "4 min 10 s");
        assert_eq!(format_unix_ms(0), "1970-01-01 00:00:00.000 UTC");
    }
}
