//! Many independent stores failed over concurrently from one process.
//!
//! Each store is its own standard fixture (its own estate) with its own backend and driver;
//! the failovers run as one stream with `buffer_unordered(concurrency)` on a 2-worker tokio
//! runtime. Against the fake: 10, 100 and 1,000 stores; through tiberius against the
//! simulator (one simulator, two loopback ports, per store): 10 and 100 stores.
//!
//! Memory is measured per configuration in a fresh child process (this binary re-runs itself
//! with `BENCH_SCALE_CHILD=backend:stores:concurrency`): `VmRSS` before building anything,
//! and `VmHWM` (peak resident set) at the end, from `/proc/self/status`.
//!
//! `cargo bench -p benches --bench scale` (prints a Markdown table).
//! `BENCH_SCALE_CONFIGS` overrides the list, e.g. `fake:1000:0,tiberius:100:16`
//! (concurrency 0 = unbounded).

use backend_fake::FakeBackend;
use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER};
use benches::{planned, proc_status_kib};
use failover_core::{Backend, Driver, Outcome};
use futures::StreamExt;
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(10);

async fn child(backend: &str, stores: usize, conc: usize) -> String {
    let base = proc_status_kib("VmRSS").unwrap_or(0);
    let t_setup = Instant::now();
    let fxs: Vec<_> = (0..stores).map(|_| fixtures::standard()).collect();
    let mut sims: Vec<SimHandle> = Vec::new();
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    for fx in &fxs {
        match backend {
            "fake" => backends.push(Arc::new(FakeBackend::new(fx.estate.clone()))),
            "tiberius" => {
                let sim = Simulator::start(fx.estate.clone(), SimOptions::default())
                    .await
                    .expect("simulator");
                let mut cfg = backend_tiberius::TiberiusConfig::new(
                    LOGIN_USER,
                    backend_tiberius::Secret::new(LOGIN_PASSWORD),
                )
                .with_encryption(backend_tiberius::Encryption::Plaintext)
                .with_call_timeout(Duration::from_secs(60));
                cfg.endpoints = sim.endpoint_map();
                backends.push(Arc::new(backend_tiberius::TiberiusBackend::new(cfg)));
                sims.push(sim);
            }
            other => panic!("unknown backend {other}"),
        }
    }
    let setup_ms = t_setup.elapsed().as_secs_f64() * 1000.0;
    let after_setup = proc_status_kib("VmRSS").unwrap_or(0);
    let limit = if conc == 0 { stores } else { conc };
    let t_run = Instant::now();
    let results: Vec<(bool, u64)> = futures::stream::iter(fxs.iter().zip(backends).enumerate())
        .map(|(i, (fx, b))| async move {
            let req = planned(&fx.topology, &format!("scale-{i}"), POLL);
            let r = Driver::new(b).run(req).await;
            (
                matches!(r.outcome, Outcome::Succeeded { .. }),
                r.window.map_or(0, |w| w.duration_us),
            )
        })
        .buffer_unordered(limit)
        .collect()
        .await;
    let run_ms = t_run.elapsed().as_secs_f64() * 1000.0;
    let ok = results.iter().filter(|(s, _)| *s).count();
    let mut windows: Vec<f64> = results.iter().map(|(_, w)| *w as f64 / 1000.0).collect();
    let p50 = benches::median(&mut windows).unwrap_or(0.0);
    let max_w = windows.iter().cloned().fold(0.0, f64::max);
    let hwm = proc_status_kib("VmHWM").unwrap_or(0);
    for s in sims {
        s.shutdown().await;
    }
    format!(
        "RESULT {backend} {stores} {limit} {ok} {setup_ms:.1} {run_ms:.1} {base} {after_setup} {hwm} {p50:.2} {max_w:.2}"
    )
}

fn main() {
    if let Ok(spec) = std::env::var("BENCH_SCALE_CHILD") {
        let parts: Vec<&str> = spec.split(':').collect();
        let (backend, stores, conc) = (
            parts[0].to_string(),
            parts[1].parse().expect("stores"),
            parts[2].parse().expect("concurrency"),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        println!("{}", rt.block_on(child(&backend, stores, conc)));
        return;
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let default = if quick {
        "fake:10:0"
    } else {
        "fake:10:0,fake:100:0,fake:1000:0,fake:1000:16,tiberius:10:0,tiberius:100:0,tiberius:100:16"
    };
    let configs = std::env::var("BENCH_SCALE_CONFIGS").unwrap_or_else(|_| default.into());
    let exe = std::env::current_exe().expect("current exe");
    println!(
        "| backend | stores | concurrency | succeeded | setup (ms) | all failovers (ms) | per store (ms) | window p50 / max (ms) | RSS before (MiB) | RSS after setup (MiB) | peak RSS (MiB) | peak growth per store (KiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for spec in configs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let out = std::process::Command::new(&exe)
            .env("BENCH_SCALE_CHILD", spec)
            .output()
            .expect("run child");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find(|l| l.starts_with("RESULT ")) else {
            println!(
                "| {spec} | failed: {} |",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            continue;
        };
        let f: Vec<&str> = line.split_whitespace().skip(1).collect();
        let num = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
        let stores = num(1);
        let mib = |k: f64| k / 1024.0;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.3} | {} / {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            f[0],
            f[1],
            if f[2] == f[1] {
                "unbounded".to_string()
            } else {
                f[2].to_string()
            },
            f[3],
            num(4),
            num(5),
            num(5) / stores,
            f[9],
            f[10],
            mib(num(6)),
            mib(num(7)),
            mib(num(8)),
            (num(8) - num(6)) / stores,
        );
    }
}
