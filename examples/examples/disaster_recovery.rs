//! A forced (disaster-recovery) failover over the TDS simulator and backend-tiberius, with a
//! progress observer and the data-loss estimate.
//!
//! `cargo run -p examples --example disaster_recovery`

use backend_fake::fixtures;
use backend_tiberius::{Encryption, Secret, TiberiusBackend, TiberiusConfig};
use failover_core::{Driver, FailoverRequest, Mode, Observer, RunEvent};
use mssql_sim::{SimOptions, Simulator};
use std::sync::Arc;

struct Print;
impl Observer for Print {
    fn on_event(&self, e: &RunEvent) {
        if let RunEvent::StepStarted {
            state, description, ..
        } = e
        {
            println!("  {state}: {description}");
        }
    }
}

#[tokio::main]
async fn main() {
    let fx = fixtures::build(&fixtures::Options::default().mirrored(true));
    let sim = Simulator::start(fx.estate.clone(), SimOptions::default())
        .await
        .expect("simulator");
    // The active pool's SQL Server and its mirror are gone.
    for i in fx.topology.active.instances() {
        fx.estate.set_reachable(i, false).expect("known instance");
    }

    let mut cfg = TiberiusConfig::new(fixtures::LOGIN_USER, Secret::new(fixtures::LOGIN_PASSWORD))
        .with_encryption(Encryption::Plaintext); // the simulator speaks plaintext TDS only
    cfg.endpoints = sim.endpoint_map();
    let driver = Driver::new(Arc::new(TiberiusBackend::new(cfg))).with_observer(Arc::new(Print));

    // As the cmdlet: -Force -BackupSqlServerFqdn … -BackupSqlInstanceName … (+ the mirror).
    let mode = Mode::disaster_recovery(
        true,
        Some("sql-b.cms.test"),
        Some("RTC"),
        Some("sql-b2.cms.test"),
        Some("RTC"),
    )
    .expect("valid parameters");
    let mut req = FailoverRequest::new("dr-example", fx.topology.clone(), mode).expect("valid");
    req.settings.retry_backoff = std::time::Duration::from_millis(20);
    let report = driver.run(req).await;
    println!("{}", report.outcome);
    for d in report.data_loss.iter().flatten() {
        println!("  {d}");
    }
    sim.shutdown().await;
}
