//! Total failover time under replication lag, against the in-memory fake.
//!
//! The fake's clock only ticks when an operation runs, so on its own a lagging backup would
//! catch up in proportion to how often the failover polls, not to time. To model a
//! replication link that copies at a steady rate, this bench runs a *ticker* thread that
//! advances the estate clock in wall time: one tick per millisecond. Per tick the link copies
//! up to `link_rate` positions (default fixture: 5) and the workload writes 1 on the writable
//! source, so the backup closes a lag of N positions in about N / (5 − 1) ms. The failover's
//! own calls tick the clock too (a few ticks per poll, negligible next to 1,000 per second).
//!
//! Per run the ticker records when the backup first equals the source on every database
//! (`caught up`), and the report gives when the failover's replication poll saw it (end of
//! the last `AwaitingReplication` step) and the total run time. Reported: the notice delay
//! (seen − caught up; between 0 and one poll interval plus a call), and the overhead of the
//! whole failover over the catch-up itself (total − caught up).
//!
//! `cargo bench -p benches --bench lag` (prints a Markdown table). Environment:
//! `BENCH_LAG_RUNS` (default 3), `BENCH_LAG_LAGS` (default `0,1000,4000,10000`), `BENCH_LAG_POLLS`
//! (milliseconds, default `10,100,500,2000`).

use backend_fake::FakeBackend;
use backend_fake::fixtures::{self, Options};
use benches::{median, planned};
use failover_core::{Driver, Outcome, StateName};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(1);

struct Run {
    caught_up_ms: f64,
    noticed_ms: f64,
    total_ms: f64,
    window_ms: f64,
    polls: usize,
}

fn one(rt: &tokio::runtime::Runtime, lag: u64, poll: Duration) -> Run {
    // The fixture's `lag` option is capped by its initial position (1,000): put the source
    // ahead instead.
    let fx = fixtures::build(&Options::default());
    let estate = fx.estate.clone();
    let dbs = fx.topology.databases.clone();
    let (a, b) = (
        fx.topology.active.principal.clone(),
        fx.topology.backup.principal.clone(),
    );
    for d in &dbs {
        estate
            .set_position(&a, d, fixtures::INITIAL_POSITION + lag)
            .expect("position");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let ticker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut done = 0u64;
            let mut caught: Option<Duration> = None;
            while !stop.load(Ordering::SeqCst) {
                let due = (t0.elapsed().as_nanos() / TICK.as_nanos()) as u64;
                if due > done {
                    estate.advance(due - done);
                    done = due;
                }
                if caught.is_none() {
                    let s = estate.snapshot();
                    if dbs.iter().all(|d| s.position(&b, d) >= s.position(&a, d)) {
                        caught = Some(t0.elapsed());
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            caught
        })
    };
    let driver = Driver::new(Arc::new(FakeBackend::new(fx.estate.clone())));
    let report = rt.block_on(driver.run(planned(&fx.topology, "lag", poll)));
    let offset = t0.elapsed().as_secs_f64() * 1000.0 - report.duration_us as f64 / 1000.0;
    stop.store(true, Ordering::SeqCst);
    let caught = ticker.join().expect("ticker");
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "lag {lag}, poll {poll:?}: {}",
        report.outcome
    );
    let seen = report
        .steps
        .iter()
        .rfind(|s| s.state == StateName::AwaitingReplication)
        .map(|s| (s.started_ms + s.duration_ms) as f64)
        .unwrap_or(0.0);
    Run {
        // On the run's clock (which started `offset` ms after t0).
        caught_up_ms: caught.map_or(0.0, |c| (c.as_secs_f64() * 1000.0 - offset).max(0.0)),
        noticed_ms: seen,
        total_ms: report.duration_us as f64 / 1000.0,
        window_ms: report.window.map_or(0.0, |w| w.duration_us as f64 / 1000.0),
        polls: report
            .states
            .iter()
            .filter(|s| **s == StateName::AwaitingReplication)
            .count(),
    }
}

fn env_u64s(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = std::env::var("BENCH_LAG_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let lags = env_u64s(
        "BENCH_LAG_LAGS",
        if quick { "100" } else { "0,1000,4000,10000" },
    );
    let polls = env_u64s(
        "BENCH_LAG_POLLS",
        if quick { "10" } else { "10,100,500,2000" },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| lag (positions) | poll interval (ms) | ideal catch-up (ms) | caught up at (ms) | noticed at (ms) | notice delay (ms) | replication polls | total failover (ms) | overhead over catch-up (ms) | window (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &lag in &lags {
        for &poll in &polls {
            let rs: Vec<Run> = (0..runs)
                .map(|_| one(&rt, lag, Duration::from_millis(poll)))
                .collect();
            let m = |f: &dyn Fn(&Run) -> f64| median(&mut rs.iter().map(f).collect::<Vec<_>>());
            let caught = m(&|r| r.caught_up_ms).unwrap_or(0.0);
            let seen = m(&|r| r.noticed_ms).unwrap_or(0.0);
            let total = m(&|r| r.total_ms).unwrap_or(0.0);
            println!(
                "| {lag} | {poll} | {:.0} | {caught:.1} | {seen:.1} | {:.1} | {} | {total:.1} | {:.1} | {:.2} |",
                lag as f64 / 4.0,
                m(&|r| r.noticed_ms - r.caught_up_ms).unwrap_or(0.0),
                rs.iter().map(|r| r.polls).max().unwrap_or(0),
                m(&|r| r.total_ms - r.caught_up_ms).unwrap_or(0.0),
                m(&|r| r.window_ms).unwrap_or(0.0),
            );
        }
    }
}
