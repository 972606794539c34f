//! A planned CMS failover against the in-memory fake estate, in about 30 lines.
//!
//! `cargo run -p examples --example planned_failover`

use backend_fake::{FakeBackend, fixtures};
use failover_core::{Driver, FailoverRequest, MemoryJournal, Mode};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Active store sql-a.cms.test\RTC, backup store sql-b.cms.test\RTC, databases xds + lis,
    // a replication link A -> B that starts 20 changes behind.
    let fx = fixtures::build(&fixtures::Options::default().lag(20));
    let backend = Arc::new(FakeBackend::new(fx.estate.clone()));
    let driver = Driver::new(backend).with_journal(Arc::new(MemoryJournal::new()));

    let mut req = FailoverRequest::new("example-run", fx.topology.clone(), Mode::Planned)
        .expect("valid request");
    req.settings.poll_interval = Duration::from_millis(10);

    // First the plan (what-if changes nothing), then the real run.
    req.what_if = true;
    let plan = driver.run(req.clone()).await;
    for (n, step) in plan.plan().iter().enumerate() {
        println!("{:>2}. {} — {}", n + 1, step.state, step.description);
    }
    req.what_if = false;
    let report = driver.run(req).await;
    println!("{}", report.outcome);
    if let Some(w) = report.window {
        println!("writes were unavailable for {} µs", w.duration_us);
    }
    std::process::exit(report.outcome.exit_code());
}
