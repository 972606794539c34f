//! Running `failover` / `restore`: build the backend, confirm (restate, then ask), run with
//! live progress and Ctrl-C handling, then report.

use crate::cli::{FailoverArgs, RestoreArgs};
use crate::emit::{Context, command_of, emit, report_doc};
use crate::failure::Failure;
use crate::logging::stderr_is_terminal;
use crate::output::{ExpectedFailures, render_plan, restatement};
use crate::progress::ProgressObserver;
use crate::prompt::{Answer, ask};
use crate::report::{Confirmation, operator};
use crate::status::{self, StatusDoc};
use crate::validate::{Confirm, Prepared, failover_mode, prepare};
use crate::{backends, pair};
use failover_core::{CancelHandle, Driver, Journal, Mode, Outcome, RunReport};
use std::sync::Arc;

/// Exit code of a run cancelled with Ctrl-C (also at the prompt).
pub const EXIT_CANCELLED: i32 = 130;

/// `failover`: validates, then runs.
pub async fn failover(a: FailoverArgs, argv: Vec<String>, quiet: bool) -> Result<i32, Failure> {
    let mode = failover_mode(&a)?;
    let p = prepare(&a.run, mode)?;
    run_oriented(p, a.to.as_deref(), argv, quiet).await
}

/// `restore`: validates, then runs.
pub async fn restore(a: RestoreArgs, argv: Vec<String>, quiet: bool) -> Result<i32, Failure> {
    run_prepared(prepare(&a.run, Mode::Restore)?, argv, quiet).await
}

/// Where confirmation ended.
enum Confirmed {
    /// Go on with the run.
    Go(Confirmation),
    /// Stop with this exit code (the plan was refused, or Ctrl-C at the prompt).
    Stop(i32),
}

/// Runs a prepared failover/restore: confirmation, the run with progress and Ctrl-C
/// handling, then the output and the report.
pub async fn run_prepared(p: Prepared, argv: Vec<String>, quiet: bool) -> Result<i32, Failure> {
    run_oriented(p, None, argv, quiet).await
}

/// [`run_prepared`] for `failover`: a planned failover first turns the pool pair towards
/// the partner of the store the CMS is recorded on now ([`pair::orient`]) and checks
/// `--to` against that direction.
pub async fn run_oriented(
    mut p: Prepared,
    to: Option<&str>,
    argv: Vec<String>,
    quiet: bool,
) -> Result<i32, Failure> {
    // [backup_service] and [directory] (crate::sections): the directory and its password
    // first, so bad input there is refused before anything is contacted.
    let directory = crate::status_directory::build(&p.config)?;
    let backend = backends::build(
        p.backend,
        &p.config,
        &p.credentials,
        p.config.settings.step_timeout,
    )?;
    if matches!(p.request.mode, Mode::Planned) {
        let file = p.config.topology.clone();
        let d = pair::orient(
            backend.as_ref(),
            directory.as_ref().map(|(d, _)| d.as_ref()),
            &file,
            p.config.settings.step_timeout,
        )
        .await;
        if let Some(to) = to {
            pair::check_to(to, &d, &file)?;
        }
        p.request.topology = d.topology;
    } else if let Some(to) = to {
        let target = match &p.request.mode {
            Mode::DisasterRecovery { target } => target.clone(),
            _ => p.request.topology.backup.clone(),
        };
        let d = pair::Direction {
            topology: failover_core::Topology {
                backup: target,
                ..p.request.topology.clone()
            },
            failback: false,
        };
        pair::check_to(to, &d, &p.config.topology)?;
    }
    let p = p;
    let dir_password = directory.as_ref().and_then(|(_, pw)| pw.clone());
    let mut secrets = p.credentials.secrets();
    secrets.extend(dir_password.as_ref().map(|pw| pw.expose()));
    let mut driver = Driver::new(backend.clone());
    if let Some(b) = &p.config.sections.backup_service {
        driver = driver.with_backup_service(crate::sections::gate(b, &secrets));
    }
    if let Some((d, _)) = &directory
        && !quiet
    {
        let timeout = p.config.settings.step_timeout;
        for line in
            crate::status_directory::preflight_lines(d.as_ref(), &p.request.topology, timeout).await
        {
            eprintln!("{line}");
        }
    }
    let mut driver = crate::status_directory::attach_directory(driver, directory.map(|(d, _)| d));
    if let Some(j) = &p.journal {
        driver = driver.with_journal(j.clone() as Arc<dyn Journal>);
    }

    let confirmation = match confirm(&p, &driver, &argv, &secrets).await? {
        Confirmed::Go(c) => c,
        Confirmed::Stop(code) => return Ok(code),
    };

    let before = status_now(&p, backend.as_ref()).await;
    let cancel = CancelHandle::new();
    let observer = Arc::new(ProgressObserver::new(
        stderr_is_terminal(),
        quiet,
        ExpectedFailures::of(&p.request.mode, &p.request.topology),
    ));
    let driver = driver
        .with_observer(observer.clone())
        .with_cancel(cancel.clone());
    let ctrl_c = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            loop {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                eprintln!("\ncancelling at the next safe point (any fence will be undone)…");
                cancel.cancel();
            }
        }
    });
    let report_run = driver.run(p.request.clone()).await;
    ctrl_c.abort();
    observer.finish();
    let after = status_now(&p, backend.as_ref()).await;
    let cx = Context {
        argv,
        confirmation: Some(confirmation),
        before: Some(before),
        after: Some(after),
        lags: observer.lags(),
        lag_curve: observer.lag_curve(),
        ..Context::default()
    };
    finish(&p, &report_run, cx, &secrets)
}

/// The estate's status now (read-only), for the report's before and after.
async fn status_now(p: &Prepared, backend: &dyn failover_core::Backend) -> StatusDoc {
    let records = p
        .journal
        .as_ref()
        .and_then(|j| j.records().ok())
        .unwrap_or_default();
    status::gather(
        backend,
        &p.request.topology,
        &records,
        p.config.settings.step_timeout,
    )
    .await
}

/// Prints and writes the report of `run`; returns the exit code.
fn finish(p: &Prepared, run: &RunReport, cx: Context, secrets: &[&str]) -> Result<i32, Failure> {
    let doc = report_doc(command_of(run), run, cx);
    emit(&doc, p.json, p.report.as_deref(), secrets)?;
    Ok(doc.exit_code)
}

/// Confirms the run as [`Prepared::confirm`] says: `--yes` alone goes on at once; a prompt
/// (and `--confirm`) first reads the plan (read-only), restates it and, for a prompt, asks.
async fn confirm(
    p: &Prepared,
    driver: &Driver,
    argv: &[String],
    secrets: &[&str],
) -> Result<Confirmed, Failure> {
    let by = operator();
    let (ask_now, full_plan) = match p.confirm {
        Confirm::NotNeeded => {
            return Ok(Confirmed::Go(Confirmation {
                how: "not needed".into(),
                answer: None,
                by,
            }));
        }
        Confirm::Yes { full_plan: false } => return Ok(Confirmed::Go(given_yes(by))),
        Confirm::Yes { full_plan: true } => (false, true),
        Confirm::Ask { full_plan } => (true, full_plan),
    };
    let mut plan_req = p.request.clone();
    plan_req.what_if = true;
    let plan = driver.run(plan_req).await;
    if full_plan {
        eprint!("{}", render_plan(&plan));
        eprintln!();
    }
    if !matches!(plan.outcome, Outcome::Succeeded { .. }) {
        let cx = Context {
            argv: argv.to_vec(),
            plan_for_confirmation: true,
            ..Context::default()
        };
        return Ok(Confirmed::Stop(finish(p, &plan, cx, secrets)?));
    }
    eprint!("{}", restatement(&plan));
    if !ask_now {
        eprintln!("--yes given: proceeding without asking.");
        return Ok(Confirmed::Go(given_yes(by)));
    }
    let disaster = matches!(p.request.mode, Mode::DisasterRecovery { .. });
    // Listen for Ctrl-C before the prompt appears, so no interrupt can fall between.
    let interrupted = interrupt_listener()?;
    let answer = tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        ask(&mut lock, &mut std::io::stderr(), disaster)
    });
    let answered = tokio::select! {
        a = answer => a,
        _ = interrupted => {
            eprintln!("\nCancelled at the prompt: nothing was changed.");
            return Ok(Confirmed::Stop(EXIT_CANCELLED));
        }
    };
    let (answer, text) = answered
        .map_err(|e| Failure::refused(format!("the prompt failed: {e}"), "run again"))?
        .map_err(|e| {
            Failure::refused(
                format!("cannot read the answer: {e}"),
                "run again, or use --yes",
            )
        })?;
    match answer {
        Answer::Proceed => Ok(Confirmed::Go(Confirmation {
            how: "prompt".into(),
            answer: text,
            by,
        })),
        Answer::Decline => Err(Failure::refused(
            "not confirmed at the prompt; nothing was changed",
            "run again and answer the prompt when ready",
        )),
    }
}

/// A future that completes on the next Ctrl-C; the listener is registered when this
/// returns, not when the future is first polled.
fn interrupt_listener() -> Result<impl std::future::Future<Output = ()>, Failure> {
    let cannot = |e: std::io::Error| {
        Failure::refused(
            format!("cannot listen for Ctrl-C: {e}; nothing was changed"),
            "run again, or use --yes",
        )
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut s = signal(SignalKind::interrupt()).map_err(cannot)?;
        Ok(async move {
            s.recv().await;
        })
    }
    #[cfg(not(unix))]
    {
        let _ = cannot;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn given_yes(by: String) -> Confirmation {
    Confirmation {
        how: "--yes".into(),
        answer: Some("yes".into()),
        by,
    }
}
