//! Criterion benchmark of the sans-IO state machine alone: no backend, no runtime, no
//! journal. Each mode's results are recorded once (outside the measurement) from a run over
//! the in-memory fake, then replayed into a fresh [`Machine`]; the measured time covers
//! building the machine and every transition of the run. Throughput is in transitions, so
//! criterion reports the time per transition. The `machine` group measures wall time; the
//! `machine_cpu` group the same cases in the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! which other processes on a loaded machine do not inflate.
//!
//! - `machine/planned`: a planned failover;
//! - `machine/disaster_recovery`: a disaster recovery with the old source down;
//! - `machine/restore`: a restore of a store left fenced by an interrupted run;
//! - `machine/what_if`: a what-if planned failover (the plan, changes skipped).
//!
//! `cargo bench -p benches --bench machine`

use backend_fake::{FakeBackend, fixtures};
use benches::planned;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use failover_core::{
    Action, Backend, BackendError, FailoverRequest, Machine, Mode, OpResult, Outcome,
};
use std::hint::black_box;
use std::time::Duration;

/// One input to the machine, as the driver gave it.
#[derive(Clone)]
enum Input {
    Results(Vec<Result<OpResult, BackendError>>, Duration),
    Timer(Duration),
}

/// Runs `req` over `backend` the way the driver does (what-if skips the changes) and
/// records every input the machine was fed. The clock advances 1 ms per step and jumps to
/// the end of each sleep.
fn record(backend: &dyn Backend, req: &FailoverRequest) -> (Vec<Input>, Outcome) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut m = Machine::new(req.clone());
    let mut now = Duration::ZERO;
    let mut action = m.start(now);
    let mut inputs = Vec::new();
    loop {
        match action {
            Action::Finished(o) => return (inputs, o),
            Action::Sleep { until, .. } => {
                now = until.max(now);
                inputs.push(Input::Timer(now));
                action = m.on_timer(now);
            }
            Action::Execute(batch) => {
                let results: Vec<_> = batch
                    .ops
                    .iter()
                    .map(|op| {
                        if req.what_if && !op.is_dry_run_safe() {
                            Ok(op.assumed_result())
                        } else {
                            rt.block_on(op.run(backend))
                        }
                    })
                    .collect();
                now += Duration::from_millis(1);
                inputs.push(Input::Results(results.clone(), now));
                action = m.on_results(results, now);
            }
        }
    }
}

/// Replays `inputs` into a fresh machine for `req`; returns the number of transitions.
fn replay(req: &FailoverRequest, inputs: Vec<Input>) -> usize {
    let mut m = Machine::new(req.clone());
    let mut action = m.start(Duration::ZERO);
    for input in inputs {
        action = match input {
            Input::Results(r, now) => m.on_results(r, now),
            Input::Timer(now) => m.on_timer(now),
        };
    }
    assert!(matches!(action, Action::Finished(_)), "the replay ends");
    black_box(action);
    m.history().len() - 1
}

struct Case {
    name: &'static str,
    req: FailoverRequest,
    inputs: Vec<Input>,
}

fn cases() -> Vec<Case> {
    let poll = Duration::from_millis(1);
    let mut out = Vec::new();
    let mut add = |name, req: FailoverRequest, backend: FakeBackend| {
        let (inputs, outcome) = record(&backend, &req);
        assert!(
            matches!(outcome, Outcome::Succeeded { .. }),
            "{name}: {outcome}"
        );
        out.push(Case { name, req, inputs });
    };

    let fx = fixtures::standard();
    add(
        "planned",
        planned(&fx.topology, "bench", poll),
        FakeBackend::new(fx.estate),
    );

    let fx = fixtures::standard();
    let mut req = planned(&fx.topology, "bench", poll);
    req.what_if = true;
    add("what_if", req, FakeBackend::new(fx.estate));

    let fx = fixtures::standard();
    fx.estate
        .set_reachable(&fixtures::active(), false)
        .expect("instance");
    let mut req = planned(&fx.topology, "bench", poll);
    req.mode = Mode::DisasterRecovery {
        target: fx.topology.backup.clone(),
    };
    add("disaster_recovery", req, FakeBackend::new(fx.estate));

    let fx = fixtures::standard();
    let backend = FakeBackend::new(fx.estate);
    // An interrupted run fenced the source and stopped: restore reopens it.
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(backend.set_read_only(&fixtures::active(), &fx.topology.databases, true))
        .expect("fence");
    let mut req = planned(&fx.topology, "bench", poll);
    req.mode = Mode::Restore;
    add("restore", req, backend);
    out
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion measurement: CPU time of the benchmarking thread.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns cpu")
        } else if ns < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *t {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
        } as f64;
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "elem/s cpu"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench_cases<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    for case in cases() {
        let n = replay(&case.req, case.inputs.clone());
        eprintln!(
            "{}: {n} transitions, {} inputs",
            case.name,
            case.inputs.len()
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(case.name, |b| {
            b.iter_batched(
                || case.inputs.clone(),
                |inputs| replay(&case.req, inputs),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_machine(c: &mut Criterion) {
    bench_cases(c, "machine");
}

fn bench_machine_cpu(c: &mut Criterion<ThreadCpu>) {
    bench_cases(c, "machine_cpu");
}

criterion_group!(benches, bench_machine);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench_machine_cpu
}
criterion_main!(benches, cpu);
