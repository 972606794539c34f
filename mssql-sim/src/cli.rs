//! The `mssql-sim` command line: serve a simulated SQL Server estate over TDS on loopback
//! ports (the binary calls [`main_with`]).

use crate::estate_file::EstateFile;
use crate::state::{self, StateStore};
use crate::{ServerTls, SimOptions, Simulator};
use clap::Parser;
use failover_core::InstanceAddr;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A SQL Server simulator speaking TDS 7.4 (TLS when given a certificate) over a backend-fake
/// estate.
///
/// The `sa` password comes from the environment variable MSSQL_SIM_PASSWORD or from
/// --password-file, never from the command line.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Estate description (TOML; see the README). Without it: one instance with read-write
    /// ONLINE databases `xds` and `lis`.
    #[arg(long, value_name = "FILE")]
    estate: Option<PathBuf>,
    /// Listen address of the single instance served without --estate.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:1433",
        conflicts_with = "estate"
    )]
    listen: SocketAddr,
    /// Name of the single instance served without --estate (`fqdn[\instance]`).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "localhost",
        conflicts_with = "estate"
    )]
    instance: InstanceAddr,
    /// File holding the `sa` password (first line); else MSSQL_SIM_PASSWORD is used.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Keep each instance's databases, flags, positions, mirroring roles and location
    /// records in DIR across a crash and restart (written atomically after every change);
    /// sessions and application locks do not survive, as on a real server. Overrides the
    /// estate file's `state_dir`.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Advance the estate's logical clock every this many milliseconds (0: only statements
    /// advance it), so replication links and workloads progress with time.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    tick_ms: u64,
    /// TLS certificate chain (PEM) for every instance the estate file gives none. Without a
    /// certificate an instance answers PRELOGIN with ENCRYPT_NOT_SUP (plaintext only).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Force Encryption for the instances served with --tls-cert: clients that will not
    /// encrypt are refused (error 17835), as SQL Server does.
    #[arg(long, requires = "tls_cert")]
    force_encryption: bool,
}

fn password(args: &Args) -> Result<String, String> {
    if let Some(p) = &args.password_file {
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read --password-file {}: {e}", p.display()))?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(format!("--password-file {} is empty", p.display()));
        }
        return Ok(line);
    }
    match std::env::var("MSSQL_SIM_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err("set the sa password in MSSQL_SIM_PASSWORD or pass --password-file FILE".into()),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let sa_password = password(&args)?;
    let (file, host, file_state_dir, mut tls) = match &args.estate {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let file = EstateFile::parse(&text).map_err(|e| e.to_string())?;
            let base = path.parent().unwrap_or(Path::new("."));
            let dir = file.state_dir.as_ref().map(|d| base.join(d));
            let tls = file.tls(base).map_err(|e| e.to_string())?;
            (file, SimOptions::default().host, dir, tls)
        }
        None => (
            EstateFile::single(args.instance.clone(), args.listen.port()),
            args.listen.ip(),
            None,
            Default::default(),
        ),
    };
    let env = |v: &str| std::env::var(v).ok();
    let state_dir = args.state_dir.clone().or(file_state_dir);
    let saved = match &state_dir {
        Some(dir) => state::load(dir).map_err(|e| e.to_string())?,
        None => None,
    };
    let (estate, ports) = match (&saved, &state_dir) {
        (Some(saved), Some(dir)) => saved
            .build(&file, env, &dir.join(state::STATE_FILE))
            .map_err(|e| e.to_string())?,
        _ => file.build(env).map_err(|e| e.to_string())?,
    };
    let store = match &state_dir {
        Some(dir) => Some(Arc::new(
            StateStore::open(dir, estate.clone()).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let t = ServerTls::from_pem_files(cert, key)
            .map_err(|e| e.to_string())?
            .with_force_encryption(args.force_encryption);
        for i in estate.instances() {
            tls.entry(i).or_insert_with(|| t.clone());
        }
    }
    let options = SimOptions {
        host,
        addresses: file.addresses(),
        ports,
        tls,
        state: store.clone(),
        windows_logins: (!file.windows_logins.is_empty()).then(|| file.windows_logins.clone()),
    };
    estate.add_login("sa", &sa_password);
    let sim = Simulator::start(estate.clone(), options)
        .await
        .map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        for (instance, addr) in sim.endpoints() {
            writeln!(out, "listening on {addr} {instance}").map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
    }
    let ticker = (args.tick_ms > 0).then(|| {
        let estate = estate.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(args.tick_ms));
            loop {
                every.tick().await;
                estate.advance(1);
                if let Some(store) = &store {
                    store.save_or_log();
                }
            }
        })
    });
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    if let Some(t) = ticker {
        t.abort();
    }
    sim.shutdown().await;
    Ok(())
}

/// Runs the command line `args` (the program name first) until Ctrl-C; exit code 2 with
/// the reason on stderr when it cannot start.
pub fn main_with(args: Vec<std::ffi::OsString>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mssql-sim: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mssql-sim: {e}");
            ExitCode::from(2)
        }
    }
}
