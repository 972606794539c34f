//! Criterion benchmarks of the failover machinery against the in-memory fake (zero latency):
//!
//! - `plan/what_if`: a what-if planned failover (read-only probes, the plan as data);
//! - `run/planned`: a planned failover to completion, no journal; throughput is reported in
//!   state transitions (`elements`), so criterion prints the time per transition too;
//! - `run_journal/*`: the same run with a `MemoryJournal`, a `FileJournal` without fsync and
//!   one with fsync (the default);
//! - `journal_append/*`: one journal record appended (the cost per journaled transition);
//! - `props/check`: property-test histories per second (`failover_testkit::props::check`
//!   over generated scenarios, paused time as in the test suite).
//!
//! `cargo bench -p benches --bench failover`

use backend_fake::FakeBackend;
use backend_fake::fixtures;
use benches::{planned, transitions};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use failover_core::journal::{JournalEvent, JournalRecord};
use failover_core::{
    Driver, FileJournal, Journal, MemoryJournal, Op, Outcome, RunReport, StateName,
};
use failover_testkit::props::{FakeFactory, Scenario, Timing, check, scenarios};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const POLL: Duration = Duration::from_millis(1);

/// One planned failover on a fresh standard fixture.
async fn run_once(journal: Option<Arc<dyn Journal>>, what_if: bool) -> RunReport {
    let fx = fixtures::standard();
    let mut req = planned(&fx.topology, "bench", POLL);
    req.what_if = what_if;
    let mut driver = Driver::new(Arc::new(FakeBackend::new(fx.estate)));
    if let Some(j) = journal {
        driver = driver.with_journal(j);
    }
    driver.run(req).await
}

fn assert_succeeded(r: &RunReport) {
    assert!(
        matches!(r.outcome, Outcome::Succeeded { .. }),
        "bench run did not succeed: {}",
        r.outcome
    );
}

fn bench_plan_and_run(c: &mut Criterion) {
    let rt = runtime();
    let probe = rt.block_on(run_once(None, false));
    assert_succeeded(&probe);
    let n = transitions(&probe) as u64;
    let plan = rt.block_on(run_once(None, true));
    eprintln!(
        "planned run: {} states, {} transitions, {} steps, {} calls; what-if: {} transitions, {} steps",
        probe.states.len(),
        n,
        probe.steps.len(),
        probe.steps.iter().map(|s| s.ops.len()).sum::<usize>(),
        transitions(&plan),
        plan.steps.len()
    );

    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(transitions(&plan) as u64));
    g.bench_function("what_if", |b| {
        b.iter_batched(
            fixtures::standard,
            |fx| {
                let mut req = planned(&fx.topology, "bench", POLL);
                req.what_if = true;
                let d = Driver::new(Arc::new(FakeBackend::new(fx.estate)));
                black_box(rt.block_on(d.run(req)))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("run");
    g.throughput(Throughput::Elements(n));
    g.bench_function("planned", |b| {
        b.iter_batched(
            fixtures::standard,
            |fx| {
                let req = planned(&fx.topology, "bench", POLL);
                let d = Driver::new(Arc::new(FakeBackend::new(fx.estate)));
                black_box(rt.block_on(d.run(req)))
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("fixture_only", |b| {
        b.iter(|| black_box(fixtures::standard()))
    });
    g.finish();

    let mut g = c.benchmark_group("run_journal");
    g.throughput(Throughput::Elements(n));
    g.bench_function("memory", |b| {
        b.iter_batched(
            fixtures::standard,
            |fx| {
                let req = planned(&fx.topology, "bench", POLL);
                let d = Driver::new(Arc::new(FakeBackend::new(fx.estate)))
                    .with_journal(Arc::new(MemoryJournal::new()));
                black_box(rt.block_on(d.run(req)))
            },
            BatchSize::SmallInput,
        )
    });
    for fsync in [false, true] {
        let name = if fsync { "file_fsync" } else { "file_no_fsync" };
        if fsync {
            g.sample_size(10).measurement_time(Duration::from_secs(5));
        }
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let j = FileJournal::open(dir.path()).expect("journal");
                    let j = if fsync { j } else { j.without_fsync() };
                    (fixtures::standard(), dir, j)
                },
                |(fx, dir, j)| {
                    let req = planned(&fx.topology, "bench", POLL);
                    let d = Driver::new(Arc::new(FakeBackend::new(fx.estate)))
                        .with_journal(Arc::new(j));
                    let r = rt.block_on(d.run(req));
                    (r, dir)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn step_record(seq: u64) -> JournalRecord {
    let fx = fixtures::standard();
    JournalRecord {
        run_id: "bench-run".into(),
        seq,
        at_unix_ms: 1_700_000_000_000,
        event: JournalEvent::Step {
            state: StateName::Fencing,
            ops: vec![Op::SetReadOnly {
                instance: fx.topology.active.principal.clone(),
                databases: fx.topology.databases.clone(),
                read_only: true,
            }],
        },
    }
}

fn bench_journal(c: &mut Criterion) {
    let rec = step_record(7);
    eprintln!(
        "journal record: {} bytes of JSON",
        serde_json_len(&rec).unwrap_or(0)
    );
    let mut g = c.benchmark_group("journal_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("memory", |b| {
        b.iter_batched(
            MemoryJournal::new,
            |j| {
                j.append(black_box(&rec)).expect("append");
                j
            },
            BatchSize::SmallInput,
        )
    });
    for fsync in [false, true] {
        let name = if fsync { "file_fsync" } else { "file_no_fsync" };
        if fsync {
            g.sample_size(10).measurement_time(Duration::from_secs(5));
        }
        g.bench_function(name, |b| {
            // Timed appends, with the file truncated (untimed) every 10,000 records.
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(10_000);
                    let _ = std::fs::remove_file(dir.path().join("journal.jsonl"));
                    let j = FileJournal::open(dir.path()).expect("journal");
                    let j = if fsync { j } else { j.without_fsync() };
                    let t0 = Instant::now();
                    for _ in 0..chunk {
                        j.append(black_box(&rec)).expect("append");
                    }
                    total += t0.elapsed();
                    left -= chunk;
                }
                total
            })
        });
    }
    g.finish();
}

fn serde_json_len(rec: &JournalRecord) -> Option<usize> {
    let dir = tempfile::tempdir().ok()?;
    let j = FileJournal::open(dir.path()).ok()?.without_fsync();
    j.append(rec).ok()?;
    Some(std::fs::metadata(j.path()).ok()?.len() as usize - 1)
}

/// `n` scenarios from the property tests' generator, deterministic.
fn generated(n: usize) -> Vec<Scenario> {
    let mut runner = TestRunner::deterministic();
    let strategy = scenarios();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("scenario").current())
        .collect()
}

fn bench_props(c: &mut Criterion) {
    const N: usize = 200;
    let scs = generated(N);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("props");
    g.throughput(Throughput::Elements(N as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    g.bench_function("check_200_histories", |b| {
        b.iter(|| {
            for sc in &scs {
                if let Err(e) = rt.block_on(check(&FakeFactory, sc, Timing::paused())) {
                    panic!("invariant violated in {sc:?}: {e}");
                }
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_plan_and_run, bench_journal, bench_props
}
criterion_main!(benches);
