//! `mssql-sim`: serve a simulated SQL Server estate over TDS on loopback ports.

use backend_fake::Estate;
use clap::Parser;
use failover_core::{DatabaseName, DbState, InstanceAddr};
use mssql_sim::estate_file::{DEFAULT_VERSION, EstateFile};
use mssql_sim::{ServerTls, SimOptions, Simulator};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
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
    let (estate, options) = match &args.estate {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let file = EstateFile::parse(&text).map_err(|e| e.to_string())?;
            let (estate, ports) = file
                .build(|v| std::env::var(v).ok())
                .map_err(|e| e.to_string())?;
            let base = path.parent().unwrap_or(std::path::Path::new("."));
            let tls = file.tls(base).map_err(|e| e.to_string())?;
            (
                estate,
                SimOptions {
                    ports,
                    tls,
                    ..SimOptions::default()
                },
            )
        }
        None => {
            let estate = Estate::new();
            estate
                .add_instance(&args.instance, DEFAULT_VERSION)
                .map_err(|e| e.to_string())?;
            for db in DatabaseName::cms_defaults() {
                estate
                    .add_database(&args.instance, &db, DbState::Online, false, 0)
                    .map_err(|e| e.to_string())?;
            }
            let ports = [(args.instance.clone(), args.listen.port())]
                .into_iter()
                .collect();
            (
                estate,
                SimOptions {
                    host: args.listen.ip(),
                    ports,
                    ..SimOptions::default()
                },
            )
        }
    };
    let mut options = options;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = ServerTls::from_pem_files(cert, key)
            .map_err(|e| e.to_string())?
            .with_force_encryption(args.force_encryption);
        for i in estate.instances() {
            options.tls.entry(i).or_insert_with(|| tls.clone());
        }
    }
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

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mssql-sim: {e}");
            ExitCode::from(2)
        }
    }
}
