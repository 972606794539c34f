//! The `--json` documents, shaped for programs: one schema (`docs/report.schema.json`),
//! a `schema_version`, stable `snake_case` field names, RFC 3339 UTC times, outcome codes
//! from the typed outcomes' `code()`, and no Rust-shaped enums (`{"Ok": …}`, tuples).
//!
//! Three kinds of document, told apart by `kind`: `run` (failover, restore, demo, also a
//! what-if), `status`, and `error` (a command that stopped before running, under `--json`).
//! Adding a field keeps the version; renaming or removing one, or changing a meaning,
//! bumps [`SCHEMA_VERSION`].

use crate::failure::Failure;
use crate::output::{ExpectedFailures, summary_rows, wait_of};
use crate::report::{ReportDoc, redact};
use crate::status::StatusDoc;
use failover_core::driver::{OpRecord, StepRecord};
use failover_core::machine::StateName;
use failover_core::{BackendError, DatabaseProbe, InstanceProbe, Mode, Outcome, Store};
use serde_json::{Value, json};

/// The version of the documents' shape (`schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// The JSON Schema of every document, as shipped in `docs/report.schema.json`.
pub const SCHEMA: &str = include_str!("../../docs/report.schema.json");

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2026-12-01T11:59:29.884Z`).
pub fn rfc3339(unix_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

fn store(s: &Store) -> Value {
    json!({ "principal": s.principal.to_string(), "mirror": s.mirror.as_ref().map(|m| m.to_string()) })
}

fn error(e: &BackendError) -> Value {
    json!({
        "kind": e.kind,
        "operation": e.operation,
        "instance": e.instance,
        "sql_error": e.code,
        "message": e.message,
    })
}

/// A log position (`numeric(25,0)`): a JSON number while it fits in 64 bits (as every
/// parser reads them exactly), else its decimal text.
fn position_value(p: u128) -> Value {
    u64::try_from(p).map_or_else(|_| Value::from(p.to_string()), Value::from)
}

fn database(d: &DatabaseProbe, position: Option<u128>) -> Value {
    json!({
        "name": d.name.as_str(),
        "state": d.state.as_desc(),
        "read_only": d.read_only,
        "writable": d.is_writable(),
        "mirroring": d.mirroring.as_ref().map(|m| json!({
            "role": m.role,
            "state": m.state.as_desc(),
            "partner": m.partner.as_ref().map(|p| p.to_string()),
            "witness": m.witness.as_ref().map(|w| json!({
                "name": w.name,
                "state": w.state.as_desc(),
            })),
        })),
        "position": position.map(position_value),
    })
}

fn probe(instance: &str, p: &Result<InstanceProbe, BackendError>) -> Value {
    match p {
        Ok(p) => json!({
            "instance": instance,
            "reachable": true,
            "version": p.version,
            "error": null,
            "databases": p.databases.iter().map(|d| database(d, None)).collect::<Vec<_>>(),
        }),
        Err(e) => json!({
            "instance": instance,
            "reachable": false,
            "version": null,
            "error": error(e),
            "databases": [],
        }),
    }
}

/// Why a call was not made, for people: what-if, or the step was skipped.
fn call_result(o: &OpRecord, step: &StepRecord) -> &'static str {
    if o.error.is_some() {
        "failed"
    } else if o.attempts == 0 {
        if step.executed {
            "skipped"
        } else {
            "not_executed"
        }
    } else {
        "ok"
    }
}

fn call(o: &OpRecord, step: &StepRecord) -> Value {
    let v = serde_json::to_value(&o.op).unwrap_or(Value::Null);
    json!({
        "kind": v.get("op").cloned().unwrap_or(Value::Null),
        "instance": v.get("instance").cloned().unwrap_or(Value::Null),
        "summary": o.summary,
        "mutating": o.op.is_mutating(),
        "sql": o.sql,
        "attempts": o.attempts,
        "duration_ms": o.duration_ms,
        "result": call_result(o, step),
        "error": o.error.as_ref().map(error),
        "retried_errors": o.retried_errors.iter().map(error).collect::<Vec<_>>(),
    })
}

/// Why a step made no call although it ran: in disaster recovery, a step on the
/// unreachable source.
fn skipped(s: &StepRecord, expected: &ExpectedFailures) -> Option<&'static str> {
    if expected.instances.is_empty() {
        return None;
    }
    // The fence of an unreachable source is not attempted: the step has no call.
    let fence_skipped = s.ops.is_empty() && s.state == StateName::Fencing;
    let on_dead_source = !s.ops.is_empty()
        && s.ops.iter().all(|o| {
            o.error.as_ref().is_some_and(|e| expected.covers(e)) || (o.attempts == 0 && s.executed)
        });
    (fence_skipped || on_dead_source).then_some("source unreachable")
}

fn step(s: &StepRecord, collapsed: bool, expected: &ExpectedFailures) -> Value {
    json!({
        "collapsed": collapsed,
        "skipped": skipped(s, expected),
        "state": s.state.as_str(),
        "description": s.description,
        "precondition": s.precondition,
        "changes": s.changes,
        "started_at": rfc3339(s.started_unix_ms),
        "duration_ms": s.duration_ms,
        "executed": s.executed,
        "calls": s.ops.iter().map(|o| call(o, s)).collect::<Vec<_>>(),
    })
}

fn mode(m: &Mode) -> &'static str {
    match m {
        Mode::Planned => "planned",
        Mode::DisasterRecovery { .. } => "disaster_recovery",
        Mode::Restore => "restore",
    }
}

/// The outcome: the verdict's code (`would_succeed` for a what-if), the typed reason's
/// `code()`, the text for people, and where the CMS is active after a success.
fn outcome(doc: &ReportDoc) -> Value {
    let (active, epoch) = match &doc.run.outcome {
        Outcome::Succeeded { active, epoch } => (Some(active.to_string()), *epoch),
        _ => (None, None),
    };
    json!({
        "code": doc.outcome.code,
        "reason": doc.run.outcome.code(),
        "text": doc.outcome.text,
        "what_if": doc.outcome.what_if,
        "exit_code": doc.outcome.exit_code,
        "active": active,
        "epoch": epoch,
    })
}

fn run(doc: &ReportDoc) -> Value {
    let r = &doc.run;
    let start = r.started_unix_ms;
    let lags = &doc.lags;
    let phases: Vec<Value> = summary_rows(r)
        .iter()
        .map(|p| {
            let lag = lags.get(&p.state).filter(|_| p.wait);
            json!({
                "state": p.state.as_str(),
                "label": p.label,
                "wait": p.wait,
                "polls": p.polls,
                "started_at": rfc3339(start + p.started_ms),
                "duration_ms": p.elapsed_ms,
                "lag_first": lag.and_then(|l| l.first),
                "lag_last": lag.and_then(|l| if l.caught_up { Some(0) } else { l.last }),
            })
        })
        .collect();
    let expected = ExpectedFailures::of(&r.mode, &r.topology);
    let mut prev_wait = None;
    let steps: Vec<Value> = r
        .steps
        .iter()
        .map(|s| {
            let wait = wait_of(s.state);
            let collapsed = wait.is_some() && wait == prev_wait;
            prev_wait = wait;
            step(s, collapsed, &expected)
        })
        .collect();
    let target = match &r.mode {
        Mode::DisasterRecovery { target } => store(target),
        _ => Value::Null,
    };
    json!({
        "run_id": r.run_id,
        "mode": mode(&r.mode),
        "target": target,
        "what_if": r.what_if,
        "backend": r.backend,
        "started_at": rfc3339(r.started_unix_ms),
        "finished_at": rfc3339(r.finished_unix_ms),
        "duration_ms": r.duration_us as f64 / 1000.0,
        "topology": {
            "active": store(&r.topology.active),
            "backup": store(&r.topology.backup),
            "databases": r.topology.databases.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        },
        "phases": phases,
        "steps": steps,
        "lag_samples": doc.lag_curve.iter().map(|(at, lag)| json!({"at": rfc3339(*at), "lag": lag})).collect::<Vec<_>>(),
        "states": r.states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "window": r.window.map(|w| json!({
            "fenced_at": rfc3339(start + w.start_ms),
            "committed_at": rfc3339(start + w.end_ms),
            "duration_ms": w.duration_us as f64 / 1000.0,
        })),
        "outage": doc.outage.as_ref().map(|o| json!({
            "source_unreachable_since": rfc3339(o.since_unix_ms),
            "instances": o.instances,
            "text": o.text,
        })),
        "data_loss": r.data_loss.as_ref().map(|dl| dl.iter().map(|d| json!({
            "database": d.database.as_str(),
            "source_position": d.source_position.map(|p| p.0),
            "target_position": d.target_position.map(|p| p.0),
            "changes_at_risk": d.changes_at_risk,
        })).collect::<Vec<_>>()),
        "warnings": r.warnings,
        "blockers": r.blockers,
        "final_state": r.final_state.iter().map(|(i, p)| probe(&i.to_string(), p)).collect::<Vec<_>>(),
        "directory": r.directory.as_ref().map(|d| json!({
            "name": d.name,
            "dc": d.dc,
            "after": d.after.iter().map(|v| json!({
                "dc": v.dc,
                "value": v.value.as_ref().map(|x| json!({
                    "backend": x.backend.to_string(),
                    "mirror": x.mirror.as_ref().map(|m| m.to_string()),
                })),
                "error": v.error,
                "converged": v.converged,
            })).collect::<Vec<_>>(),
        })),
    })
}

/// The body of a status document (also the `status_before` / `status_after` of a run).
fn status_body(s: &StatusDoc) -> Value {
    let instances: Vec<Value> = s
        .instances
        .iter()
        .map(|i| {
            let pos = |d: &DatabaseProbe| {
                i.positions
                    .iter()
                    .find(|p| p.database == d.name)
                    .and_then(|p| p.position.map(|p| p.0))
            };
            json!({
                "instance": i.instance.to_string(),
                "label": i.label.as_str(),
                "listed_as": i.role,
                "reachable": i.reachable,
                "error": i.error,
                "version": i.version,
                "databases": i.databases.iter().map(|d| database(d, pos(d))).collect::<Vec<_>>(),
                "location": i.location.as_ref().map(|l| json!({
                    "store": store(&l.active), "epoch": l.epoch, "run_id": l.run_id,
                })),
            })
        })
        .collect();
    json!({
        "healthy": s.healthy(),
        "exit_code": s.exit_code(),
        "problems": s.problems.iter().map(|p| json!({"code": p.code.as_str(), "text": p.text})).collect::<Vec<_>>(),
        "active": s.active.as_ref().map(|a| json!({
            "store": store(&a.record.active),
            "epoch": a.record.epoch,
            "run_id": a.record.run_id,
            "recorded_on": a.recorded_on.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        })),
        "instances": instances,
        "writable": s.writable.iter().map(|(d, w)| json!({
            "database": d.as_str(),
            "instances": w.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "replication": s.replication.iter().map(|r| json!({
            "database": r.database.as_str(),
            "source": r.source.to_string(),
            "source_position": r.source_position,
            "target": r.target.to_string(),
            "target_position": r.target_position,
            "lag": r.lag,
        })).collect::<Vec<_>>(),
        "unfinished_runs": s.unfinished_runs.iter().map(|u| json!({
            "run_id": u.run_id,
            "mode": u.mode,
            "last_state": u.last_state,
            "fenced": u.fenced,
            "recording": u.recording,
        })).collect::<Vec<_>>(),
        "warnings": s.warnings,
    })
}

fn header(kind: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("schema_version".into(), SCHEMA_VERSION.into());
    m.insert("kind".into(), kind.into());
    m.insert("tool".into(), "cms-failover".into());
    m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    m
}

fn with_body(mut head: serde_json::Map<String, Value>, body: Value) -> Value {
    if let Value::Object(b) = body {
        head.extend(b);
    }
    Value::Object(head)
}

/// The `run` document of a failover, restore or demo (secrets redacted).
pub fn run_doc(doc: &ReportDoc, secrets: &[&str]) -> Value {
    let mut v = with_body(
        header("run"),
        json!({
            "command": doc.command,
            "argv": doc.argv,
            "operator": doc.operator,
            "host": doc.host,
            "exit_code": doc.exit_code,
            "outcome": outcome(doc),
            "next_step": doc.next_step,
            "after_success": doc.after_success,
            "confirmation": doc.confirmation.as_ref().map(|c| json!({
                "how": c.how, "answer": c.answer, "by": c.by,
            })),
            "run": run(doc),
            "status_before": doc.status_before.as_ref().map(status_body),
            "status_after": doc.status_after.as_ref().map(status_body),
        }),
    );
    redact(&mut v, secrets);
    v
}

/// The `status` document (secrets redacted).
pub fn status_doc(s: &StatusDoc, secrets: &[&str]) -> Value {
    let mut v = with_body(header("status"), status_body(s));
    redact(&mut v, secrets);
    v
}

/// The `error` document of a command that stopped before running (or whose report could
/// not be written): what happened, what to do, the exit code.
pub fn error_doc(command: &str, f: &Failure) -> Value {
    with_body(
        header("error"),
        json!({
            "command": command,
            "exit_code": f.code,
            "error": { "what": f.what, "next": f.next },
        }),
    )
}

/// Prints `v` on stdout, pretty.
pub fn print(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_126_369_884), "2026-12-01T11:59:29.884Z");
    }

    #[test]
    fn the_shipped_schema_is_json_and_names_the_version() {
        let s: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
        assert_eq!(s["$defs"]["schema_version"]["const"], SCHEMA_VERSION);
    }
}
