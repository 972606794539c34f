//! The write-unavailability window of a planned failover through each SQL backend (tiberius,
//! ODBC + FreeTDS) against the TDS simulator, with an injected network round-trip time.
//!
//! For every run: a fresh standard fixture (unmirrored, standby ONLINE read-only, no lag),
//! the simulator on loopback, one [`DelayProxy`] per instance (each direction delayed by
//! rtt/2) between the backend and the simulator port, and one planned failover. The window
//! is the report's `window` (fence issued -> target writable and recorded). Round trips
//! inside it are counted three ways: sequential steps that made calls, backend calls, and
//! request/response exchanges seen by the proxies between the `Fencing` step starting and the
//! step after `RecordingLocation` starting. The window ends at the directory compare-and-swap
//! (`RecordingLocation`, the commit point).
//!
//! The directory is, by default, the in-memory `FakeDirectory` behind
//! [`DelayedDirectory`] (each call waits one RTT; two DCs), or the SQL location record
//! (`BENCH_WINDOW_DIRECTORY=sql`). The whole run is measured too: its sequential round trips
//! ((whole run − whole run at RTT 0) / RTT), the steps with calls, and the exchanges at the
//! proxies plus the directory calls.
//!
//! `cargo bench -p benches --bench window` (prints a Markdown table).
//! Environment: `BENCH_WINDOW_RUNS` (runs per cell, default 7), `BENCH_WINDOW_RTTS`
//! (comma-separated milliseconds, default `0,1,5,20`), `BENCH_WINDOW_BACKENDS`
//! (default `tiberius,odbc`), `BENCH_WINDOW_JOURNALS` (default `memory,file`),
//! `BENCH_WINDOW_TLS` (default `off,strict`: plaintext, or every instance serving a
//! certificate from a test CA with Force Encryption on and the backend in `strict` mode
//! trusting that CA; connections are reused, so the handshakes happen before the window),
//! `BENCH_WINDOW_DIRECTORY` (default `fake`: the delayed in-memory directory; `sql`: the SQL
//! location record; `fake,sql` for both).

use backend_fake::FakeDirectory;
use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER};
use benches::directory::DelayedDirectory;
use benches::proxy::{DelayProxy, ProxyStats};
use benches::{median, planned, run_sequential_steps, window_calls, window_sequential_steps};
use failover_core::driver::{Observer, RunEvent};
use failover_core::{
    Backend, CmsLocation, Directory, Driver, FileJournal, Journal, MemoryJournal, Outcome,
    RunReport, StateName,
};
use mssql_sim::{SimOptions, Simulator};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Tiberius,
    Odbc,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tiberius => "tiberius",
            Kind::Odbc => "odbc (FreeTDS)",
        }
    }
}

/// Records the proxies' exchange counter and the directory's call counter when each step
/// starts.
struct Marks {
    stats: Arc<ProxyStats>,
    dir: Option<Arc<DelayedDirectory>>,
    marks: Mutex<Vec<(StateName, u64, u64)>>,
    /// Per-connection exchange counts and directory calls when each step started.
    paths: Mutex<Vec<(Vec<u64>, u64)>>,
}

impl Observer for Marks {
    fn on_event(&self, event: &RunEvent) {
        if let RunEvent::StepStarted { state, .. } = event {
            self.marks.lock().expect("marks").push((
                *state,
                self.stats.exchanges(),
                self.dir_calls(),
            ));
            self.snapshot();
        }
    }
}

impl Marks {
    fn dir_calls(&self) -> u64 {
        self.dir.as_ref().map_or(0, |d| d.calls())
    }

    fn snapshot(&self) {
        self.paths
            .lock()
            .expect("paths")
            .push((self.stats.per_connection(), self.dir_calls()));
    }

    /// The critical path of each step in round trips (call after the run ended).
    fn critical(&self) -> Vec<u64> {
        benches::critical_round_trips(&self.paths.lock().expect("paths"))
    }

    /// The critical path of the window and of the whole run, in round trips.
    fn critical_sums(&self) -> (u64, u64) {
        let per_step = self.critical();
        let m = self.marks.lock().expect("marks");
        let start = m.iter().position(|(s, _, _)| *s == StateName::Fencing);
        let end = m
            .iter()
            .rposition(|(s, _, _)| *s == StateName::RecordingLocation);
        let window = match (start, end) {
            (Some(a), Some(b)) if a <= b => per_step[a..=b].iter().sum(),
            _ => 0,
        };
        (window, per_step.iter().sum())
    }

    /// Exchanges at the proxies and directory calls from the start of `Fencing` to the start
    /// of the step after `RecordingLocation`.
    fn window_exchanges(&self) -> Option<(u64, u64)> {
        let m = self.marks.lock().expect("marks");
        let start = m.iter().position(|(s, _, _)| *s == StateName::Fencing)?;
        let rec = m
            .iter()
            .rposition(|(s, _, _)| *s == StateName::RecordingLocation)?;
        let (_, end, end_dir) = m.get(rec + 1)?;
        Some((end - m[start].1, end_dir - m[start].2))
    }
}

struct Sample {
    window_ms: f64,
    total_ms: f64,
    steps: usize,
    calls: usize,
    exchanges: u64,
    dir_calls: u64,
    run_exchanges: u64,
    run_dir_calls: u64,
    run_steps: usize,
    /// Critical path in round trips: (window, whole run), and per step.
    critical: (u64, u64),
    critical_steps: Vec<u64>,
    catch_up_polls: usize,
    mean_one_way_ms: f64,
    report: RunReport,
}

async fn one(kind: Kind, rtt: Duration, file_journal: bool, tls: bool, fake_dir: bool) -> Sample {
    let fx = fixtures::standard();
    let pki = tls.then(|| {
        test_pki::TestPki::generate(fx.estate.instances().iter().map(|i| i.to_string()))
            .expect("test PKI")
    });
    let options = match &pki {
        Some(p) => SimOptions::default()
            .with_test_pki(&fx.estate, p, true)
            .expect("certificates"),
        None => SimOptions::default(),
    };
    let sim = Simulator::start(fx.estate.clone(), options)
        .await
        .expect("simulator");
    let ca = pki.as_ref().map(|p| p.ca_cert().to_path_buf());
    let stats = Arc::new(ProxyStats::default());
    let mut proxies = Vec::new();
    let mut endpoints = HashMap::new();
    for (inst, addr) in sim.endpoints() {
        let p = DelayProxy::start(addr, rtt, stats.clone())
            .await
            .expect("proxy");
        endpoints.insert(inst, p.addr());
        proxies.push(p);
    }
    let backend: Arc<dyn Backend> = match kind {
        Kind::Tiberius => {
            let mut cfg = backend_tiberius::TiberiusConfig::new(
                LOGIN_USER,
                backend_tiberius::Secret::new(LOGIN_PASSWORD),
            )
            .with_encryption(match &ca {
                Some(ca) => backend_tiberius::Encryption::Required(
                    backend_tiberius::Trust::CaFile(ca.clone()),
                ),
                None => backend_tiberius::Encryption::Plaintext,
            })
            .with_call_timeout(Duration::from_secs(30));
            cfg.endpoints = endpoints;
            Arc::new(backend_tiberius::TiberiusBackend::new(cfg))
        }
        Kind::Odbc => {
            let cfg = backend_odbc::OdbcConfig::freetds()
                .with_encryption(match &ca {
                    Some(ca) => {
                        backend_odbc::Encryption::Required(backend_odbc::Trust::CaFile(ca.clone()))
                    }
                    None => backend_odbc::Encryption::Off,
                })
                .with_login(LOGIN_USER, failover_core::Secret::new(LOGIN_PASSWORD))
                .with_endpoints(endpoints)
                .with_timeouts(Duration::from_secs(10), Duration::from_secs(30));
            Arc::new(backend_odbc::OdbcBackend::new(cfg))
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let journal: Arc<dyn Journal> = if file_journal {
        Arc::new(FileJournal::open(dir.path()).expect("journal"))
    } else {
        Arc::new(MemoryJournal::new())
    };
    let dir = fake_dir.then(|| {
        let fake = FakeDirectory::new(CmsLocation::of_store(&fx.topology.active), 2);
        Arc::new(DelayedDirectory::new(Arc::new(fake), rtt))
    });
    let marks = Arc::new(Marks {
        stats: stats.clone(),
        dir: dir.clone(),
        marks: Mutex::new(Vec::new()),
        paths: Mutex::new(Vec::new()),
    });
    let mut driver = Driver::new(backend)
        .with_journal(journal)
        .with_observer(marks.clone());
    if let Some(d) = &dir {
        driver = driver.with_directory(d.clone() as Arc<dyn Directory>);
    }
    let report = driver
        .run(planned(&fx.topology, "window", Duration::from_millis(1)))
        .await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{} run at {rtt:?} did not succeed: {}",
        kind.name(),
        report.outcome
    );
    let w = report.window.expect("a planned success has a window");
    marks.snapshot();
    let (exchanges, dir_calls) = marks.window_exchanges().unwrap_or((0, 0));
    drop(driver);
    drop(proxies);
    sim.shutdown().await;
    drop(pki);
    Sample {
        window_ms: w.duration_us as f64 / 1000.0,
        total_ms: report.duration_us as f64 / 1000.0,
        steps: window_sequential_steps(&report),
        calls: window_calls(&report),
        exchanges,
        dir_calls,
        run_exchanges: stats.exchanges(),
        run_dir_calls: marks.dir_calls(),
        run_steps: run_sequential_steps(&report),
        critical: marks.critical_sums(),
        critical_steps: marks.critical(),
        catch_up_polls: report
            .states
            .iter()
            .filter(|s| **s == StateName::AwaitingCatchUp)
            .count(),
        mean_one_way_ms: stats
            .mean_one_way()
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        report,
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: run a
    // single quick cell then, so the harness-less binary stays cheap under test.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs: usize = std::env::var("BENCH_WINDOW_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 7 });
    let rtts: Vec<u64> = env_list("BENCH_WINDOW_RTTS", if quick { "0" } else { "0,1,5,20" })
        .iter()
        .map(|s| s.parse().expect("BENCH_WINDOW_RTTS: milliseconds"))
        .collect();
    let kinds: Vec<Kind> = env_list(
        "BENCH_WINDOW_BACKENDS",
        if quick { "tiberius" } else { "tiberius,odbc" },
    )
    .iter()
    .map(|s| match s.as_str() {
        "tiberius" => Kind::Tiberius,
        "odbc" => Kind::Odbc,
        other => panic!("unknown backend {other}"),
    })
    .collect();
    let journals: Vec<bool> = env_list(
        "BENCH_WINDOW_JOURNALS",
        if quick { "memory" } else { "memory,file" },
    )
    .iter()
    .map(|s| s == "file")
    .collect();
    let dir_modes: Vec<bool> = env_list("BENCH_WINDOW_DIRECTORY", "fake")
        .iter()
        .map(|s| match s.as_str() {
            "fake" => true,
            "sql" => false,
            other => panic!("BENCH_WINDOW_DIRECTORY: unknown directory {other}"),
        })
        .collect();
    let tls_modes: Vec<bool> =
        env_list("BENCH_WINDOW_TLS", if quick { "off" } else { "off,strict" })
            .iter()
            .map(|s| match s.as_str() {
                "off" => false,
                "strict" => true,
                other => panic!("BENCH_WINDOW_TLS: unknown mode {other}"),
            })
            .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    println!(
        "| backend | TLS | directory | journal | RTT (ms) | applied RTT (ms) | window median (ms) | min–max (ms) | window / RTT | sequential round trips ((w − w₀)/RTT) | steps with calls | calls | exchanges at the proxy | directory calls | catch-up polls | whole run (ms) | whole run: sequential round trips ((t − t₀)/RTT) | whole run: steps with calls | whole run: exchanges at the proxy + directory calls | critical path in round trips (window / whole run) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &kind in &kinds {
        for &tls in &tls_modes {
            for &fake_dir in &dir_modes {
                for &file in &journals {
                    let mut base: Option<f64> = None;
                    let mut run_base: Option<f64> = None;
                    for &rtt_ms in &rtts {
                        let rtt = Duration::from_millis(rtt_ms);
                        // One warm-up run (ODBC driver loading, first connections), not counted.
                        let _ = rt.block_on(one(kind, rtt, file, tls, fake_dir));
                        let samples: Vec<Sample> = (0..runs)
                            .map(|_| rt.block_on(one(kind, rtt, file, tls, fake_dir)))
                            .collect();
                        let mut w: Vec<f64> = samples.iter().map(|s| s.window_ms).collect();
                        let mut t: Vec<f64> = samples.iter().map(|s| s.total_ms).collect();
                        let mut applied: Vec<f64> =
                            samples.iter().map(|s| 2.0 * s.mean_one_way_ms).collect();
                        let (lo, hi) = (
                            w.iter().cloned().fold(f64::INFINITY, f64::min),
                            w.iter().cloned().fold(0.0, f64::max),
                        );
                        let wm = median(&mut w).unwrap_or(0.0);
                        let tm = median(&mut t).unwrap_or(0.0);
                        if rtt_ms == 0 {
                            base = Some(wm);
                            run_base = Some(tm);
                        }
                        let applied = median(&mut applied).unwrap_or(0.0);
                        let s0 = &samples[0];
                        let per_rtt = if rtt_ms > 0 {
                            format!("{:.1}×", wm / rtt_ms as f64)
                        } else {
                            "–".into()
                        };
                        let seq = match (base, rtt_ms) {
                            (Some(b), r) if r > 0 => {
                                format!("{:.1}", (wm - b) / applied.max(0.001))
                            }
                            _ => "–".into(),
                        };
                        let run_seq = match (run_base, rtt_ms) {
                            (Some(b), r) if r > 0 => {
                                format!("{:.1}", (tm - b) / applied.max(0.001))
                            }
                            _ => "–".into(),
                        };
                        let joined = |f: &dyn Fn(&Sample) -> String| {
                            let mut v: Vec<String> = samples.iter().map(f).collect();
                            v.dedup();
                            v.join("/")
                        };
                        println!(
                            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2}–{:.2} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
                            kind.name(),
                            if tls { "strict" } else { "off" },
                            if fake_dir {
                                "fake, delayed"
                            } else {
                                "SQL record"
                            },
                            if file { "file (fsync)" } else { "memory" },
                            rtt_ms,
                            applied,
                            wm,
                            lo,
                            hi,
                            per_rtt,
                            seq,
                            s0.steps,
                            s0.calls,
                            joined(&|s| s.exchanges.to_string()),
                            joined(&|s| s.dir_calls.to_string()),
                            samples.iter().map(|s| s.catch_up_polls).max().unwrap_or(0),
                            tm,
                            run_seq,
                            s0.run_steps,
                            joined(&|s| format!("{} + {}", s.run_exchanges, s.run_dir_calls)),
                            joined(&|s| format!("{} / {}", s.critical.0, s.critical.1)),
                        );
                        if rtt_ms == 5 && !file && !tls && fake_dir {
                            breakdown(kind, &s0.report);
                        }
                        if Some(&rtt_ms) == rtts.iter().max() && rtt_ms > 0 && !file && !tls {
                            run_breakdown(kind, fake_dir, rtt_ms, s0);
                        }
                    }
                }
            }
        }
    }
    if !BREAKDOWNS.lock().expect("b").is_empty() {
        println!();
        for b in BREAKDOWNS.lock().expect("b").iter() {
            println!("{b}");
        }
    }
}

static BREAKDOWNS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A step's calls, for a table cell.
fn calls_text(st: &failover_core::driver::StepRecord) -> String {
    let calls: Vec<String> = st.ops.iter().map(|o| o.summary.clone()).collect();
    if calls.is_empty() {
        "(none)".to_string()
    } else {
        calls.join("; ")
    }
}

/// Every step of one whole run, with its duration in round trips.
fn run_breakdown(kind: Kind, fake_dir: bool, rtt_ms: u64, sample: &Sample) {
    let r = &sample.report;
    let mut s = format!(
        "Steps of the whole run, {} with the {}, RTT {rtt_ms} ms (one run; critical path = most exchanges on one connection, at least 1 with a directory call):\n\n| step | calls | duration (ms) | duration / RTT | critical path (round trips) |\n|---|---|---|---|---|\n",
        kind.name(),
        if fake_dir {
            "delayed fake directory"
        } else {
            "SQL record"
        },
    );
    for (st, rt) in r.steps.iter().zip(&sample.critical_steps) {
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {rt} |\n",
            st.state,
            calls_text(st),
            st.duration_ms,
            st.duration_ms as f64 / rtt_ms as f64
        ));
    }
    s.push_str(&format!(
        "| **total** | | {} | | **{}** |\n",
        r.duration_us / 1000,
        sample.critical_steps.iter().sum::<u64>()
    ));
    BREAKDOWNS.lock().expect("b").push(s);
}

/// The steps inside the window of one run, for the per-step table.
fn breakdown(kind: Kind, r: &RunReport) {
    let mut s = format!(
        "Steps inside the window, {} at RTT 5 ms (one run):\n\n| step | calls | duration (ms) |\n|---|---|---|\n",
        kind.name()
    );
    for st in benches::window_steps(r) {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            st.state,
            calls_text(st),
            st.duration_ms
        ));
    }
    BREAKDOWNS.lock().expect("b").push(s);
}
