//! `cms-failover demo`: simulated SQL Server instances on loopback (the `mssql-sim` TDS
//! simulator serving a `backend_fake::fixtures` estate), a failover through a real SQL
//! backend with live progress, the status before and after, and the HTML report.

use crate::backends;
use crate::cli::{DemoArgs, DemoMode};
use crate::config::{Config, ConnectionOptions, LoginConfig, OdbcOptions, TlsMode};
use crate::emit::{Context, emit, report_doc};
use crate::failure::Failure;
use crate::output::ExpectedFailures;
use crate::progress::ProgressObserver;
use crate::secret::{Credentials, PasswordSource};
use crate::status;
use crate::validate::{check_report_path, new_run_id};
use backend_fake::fixtures;
use failover_core::Secret;
use failover_core::journal::{JournalEvent, JournalRecord};
use failover_core::machine::StateName;
use failover_core::{
    CancelHandle, Driver, FailoverRequest, FileJournal, Journal, Mode, Op, Settings,
};
use mssql_sim::sim::{SimOptions, Simulator};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Timeouts suited to the simulator: short, so the demo is quick.
pub fn demo_settings() -> Settings {
    Settings {
        step_timeout: Duration::from_secs(5),
        replication_timeout: Duration::from_secs(60),
        catch_up_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(150),
        dr_fence_timeout: Duration::from_secs(1),
        undo_timeout: Duration::from_secs(15),
        retry_backoff: Duration::from_millis(100),
        ..Settings::default()
    }
}

/// The demo's backup-store servers call themselves `SQLB01\RTC` and `SQLB02\RTC`, names no
/// DNS name of the topology gives away: the demo's topology maps them with aliases (a real
/// topology file: `[aliases] "SQLB01\\RTC" = "sql-b.cms.test\\RTC"`).
pub fn demo_server_names() -> Vec<(failover_core::InstanceAddr, String)> {
    vec![
        (fixtures::backup(), "SQLB01\\RTC".to_string()),
        (fixtures::backup_mirror(), "SQLB02\\RTC".to_string()),
    ]
}

/// `a planned failover`, `a what-if plan of a disaster recovery`, … for the demo's heading.
pub fn demo_title(mode: &Mode, what_if: bool) -> String {
    let run = match mode {
        Mode::Planned => "planned failover",
        Mode::DisasterRecovery { .. } => "disaster recovery",
        Mode::Restore => "restore",
    };
    if what_if {
        format!("a what-if plan of a {run}")
    } else {
        format!("a {run}")
    }
}

/// Runs the demo; returns the run's exit code.
pub async fn run(a: DemoArgs, argv: Vec<String>, quiet: bool) -> Result<i32, Failure> {
    let mode_name = match a.mode {
        DemoMode::Planned => "planned",
        DemoMode::Disaster => "disaster",
        DemoMode::Restore => "restore",
    };
    let report_path = a.report.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "cms-failover-demo-{mode_name}{}-{}.html",
            if a.what_if { "-what-if" } else { "" },
            std::process::id()
        ))
    });
    check_report_path(&report_path)?;
    let say = |s: &str| {
        if !a.json {
            println!("{s}");
        }
    };

    // The estate: active store A (+ mirror A2), backup store B (+ mirror B2), xds and lis,
    // a replication link A -> B that starts behind, and a workload writing on A.
    let mut opts = fixtures::Options::default().mirrored(true).lag(a.lag);
    // Replication gains one change per operation on the workload: the catch-up is visible.
    opts.link_rate = 2;
    opts.workload_rate = 1;
    let fx = fixtures::build(&opts);
    let estate = fx.estate.clone();
    // What each server calls itself (@@SERVERNAME, and mirroring_partner_instance on its
    // partner): the active store's computers are named like their DNS names (matched by the
    // host's first label), the backup store's are not (matched by the [aliases] below).
    for (addr, name) in demo_server_names() {
        estate.set_server_name(&addr, &name).map_err(|e| {
            Failure::usage(
                format!("cannot name the demo's servers: {e}"),
                "report this as a bug",
            )
        })?;
    }
    // TLS as a real estate has it: the demo's own CA, a certificate per instance, Force
    // Encryption on, and the client in `strict` mode trusting that CA.
    let pki = test_pki::TestPki::generate(estate.instances().iter().map(|i| i.to_string()))
        .map_err(|e| {
            Failure::usage(
                format!("cannot make the demo's certificates: {e}"),
                "check TMPDIR",
            )
        })?;
    let sim_options = SimOptions::default()
        .with_test_pki(&estate, &pki, true)
        .map_err(|e| {
            Failure::usage(
                format!("cannot load the demo's certificates: {e}"),
                "report this as a bug",
            )
        })?;
    let sim = Simulator::start(estate.clone(), sim_options)
        .await
        .map_err(|e| {
            Failure::usage(
                format!("cannot start the simulator: {e}"),
                "check that binding loopback ports is allowed",
            )
        })?;
    say("Simulated SQL Server instances (TDS on loopback):");
    for (i, addr) in sim.endpoints() {
        say(&format!("  {i:<24} {addr}"));
    }
    say(&format!(
        "TLS: strict, certificates from the demo's own CA {} (Force Encryption on)",
        pki.ca_cert().display()
    ));

    let journal_dir = tempfile::Builder::new()
        .prefix("cms-failover-demo-journal")
        .tempdir()
        .map_err(|e| Failure::usage(format!("cannot create a temp dir: {e}"), "check TMPDIR"))?;
    let config = Config {
        path: PathBuf::from("<demo>"),
        topology: fx.topology.clone(),
        login: Some(LoginConfig::Sql {
            user: fixtures::LOGIN_USER.into(),
            password: PasswordSource::Env("<demo>".into()),
        }),
        endpoints: sim.endpoints().into_iter().collect(),
        settings: demo_settings(),
        connection: ConnectionOptions {
            tls: TlsMode::Strict,
            ca_file: Some(pki.ca_cert().to_path_buf()),
        },
        odbc: OdbcOptions {
            driver: "FreeTDS".into(),
            flavour: crate::config::OdbcFlavour::FreeTds,
            dsn: None,
            connection_string: None,
        },
        sql: failover_tsql::SqlConfig {
            server_names: demo_server_names().into_iter().fold(
                failover_core::ServerNames::default().with_instances(
                    fx.topology
                        .active
                        .instances()
                        .chain(fx.topology.backup.instances()),
                ),
                |n, (addr, name)| n.with_alias(name, addr),
            ),
            ..failover_tsql::SqlConfig::default()
        },
        sections: Default::default(),
    };
    let credentials = Credentials::Sql {
        user: fixtures::LOGIN_USER.into(),
        password: Secret::new(fixtures::LOGIN_PASSWORD),
    };
    let secrets = credentials.secrets();
    let backend = backends::build(
        a.backend,
        &config,
        &credentials,
        config.settings.step_timeout,
    )?;
    let journal = Arc::new(FileJournal::open(journal_dir.path()).map_err(|e| {
        Failure::usage(format!("cannot open the demo journal: {e}"), "check TMPDIR")
    })?);

    let topo = fx.topology.clone();
    let dbs = topo.databases.clone();
    let mode = match a.mode {
        DemoMode::Planned => Mode::Planned,
        DemoMode::Disaster => {
            say("\nScenario: the active pool's SQL Server and its mirror go down.");
            for i in topo.active.instances() {
                let _ = estate.set_reachable(i, false);
            }
            Mode::disaster_recovery(
                true,
                Some("sql-b.cms.test"),
                Some("RTC"),
                Some("sql-b2.cms.test"),
                Some("RTC"),
            )
            .expect("valid demo target")
        }
        DemoMode::Restore => {
            say(
                "\nScenario: an earlier planned failover fenced the active store, then its process died.",
            );
            let interrupted =
                FailoverRequest::new("interrupted-demo-run", topo.clone(), Mode::Planned)
                    .expect("valid request");
            let fence = Op::SetReadOnly {
                instance: topo.active.principal.clone(),
                databases: dbs.clone(),
                read_only: true,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            for (seq, event) in [
                JournalEvent::Started {
                    request: Box::new(interrupted),
                },
                JournalEvent::Step {
                    state: StateName::Fencing,
                    ops: vec![fence],
                },
            ]
            .into_iter()
            .enumerate()
            {
                journal
                    .append(&JournalRecord {
                        run_id: "interrupted-demo-run".into(),
                        seq: seq as u64 + 1,
                        at_unix_ms: now,
                        event,
                    })
                    .map_err(|e| {
                        Failure::usage(
                            format!("cannot write the demo journal: {e}"),
                            "check TMPDIR",
                        )
                    })?;
            }
            backend
                .set_read_only(&topo.active.principal, &dbs, true)
                .await
                .map_err(|e| {
                    Failure::usage(
                        format!("cannot set up the demo: {e}"),
                        "report this as a bug",
                    )
                })?;
            Mode::Restore
        }
    };

    let timeout = config.settings.step_timeout;
    let records = journal.records().unwrap_or_default();
    let mut before = status::gather(backend.as_ref(), &topo, &records, timeout).await;
    say("\n== Status before ==");
    say(status::render_text(&before).trim_end());
    // The directory (in-process, two DCs) where Skype for Business servers find the CMS.
    let fake_directory = Arc::new(backend_fake::FakeDirectory::new(
        failover_core::CmsLocation::of_store(&topo.active),
        2,
    ));
    // Active Directory replication, simulated: dc02 receives dc01's changes a moment later
    // (the run waits for it, with progress, after its commit).
    let replication = {
        let d = fake_directory.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                d.replicate();
            }
        })
    };
    let directory: Arc<dyn failover_core::Directory> = fake_directory;
    let dir_before = crate::status_directory::gather(directory.as_ref(), &before, timeout).await;
    say(crate::status_directory::render_text(&dir_before).trim_end());
    before.warnings.extend(dir_before.warnings);

    let mut req =
        FailoverRequest::new(new_run_id(), topo.clone(), mode).expect("valid demo request");
    req.what_if = a.what_if;
    req.settings = config.settings.clone();
    req.settings.epoch_clock = crate::validate::epoch_clock();
    say(&format!(
        "\n== Running {} through the {} backend ==",
        demo_title(&req.mode, a.what_if),
        backend.name()
    ));
    let cancel = CancelHandle::new();
    let observer = Arc::new(ProgressObserver::new(
        std::io::stderr().is_terminal(),
        quiet,
        ExpectedFailures::of(&req.mode, &req.topology),
    ));
    let driver = Driver::new(backend.clone())
        .with_journal(journal.clone() as Arc<dyn Journal>)
        .with_observer(observer.clone())
        .with_cancel(cancel.clone());
    let driver = crate::status_directory::attach_directory(driver, Some(directory.clone()));
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncancelling at the next safe point…");
            cancel.cancel();
        }
    });
    let run = driver.run(req).await;
    ctrl_c.abort();
    replication.abort();
    observer.finish();

    let records = journal.records().unwrap_or_default();
    let mut after = status::gather(backend.as_ref(), &topo, &records, timeout).await;
    let dir_after = crate::status_directory::gather(directory.as_ref(), &after, timeout).await;
    if !a.json {
        println!("\n== Status after ==");
        println!("{}", status::render_text(&after).trim_end());
        println!(
            "{}",
            crate::status_directory::render_text(&dir_after).trim_end()
        );
        println!();
    }
    after.warnings.extend(dir_after.warnings);
    let cx = Context {
        argv,
        confirmation: None,
        before: Some(before),
        after: Some(after),
        lags: observer.lags(),
        lag_curve: observer.lag_curve(),
        plan_for_confirmation: false,
    };
    let doc = report_doc("demo", &run, cx);
    emit(&doc, a.json, Some(&report_path), &secrets)?;
    let code = doc.exit_code;
    drop(backend);
    sim.shutdown().await;
    drop(pki);
    Ok(code)
}
