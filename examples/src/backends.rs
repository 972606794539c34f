//! Builds the chosen [`Backend`] from the topology file. Building connects to nothing: the
//! backends connect on first use.

use crate::cli::BackendKind;
use crate::config::{Config, TlsMode};
use crate::failure::Failure;
use crate::secret::Credentials;
use failover_core::Backend;
use std::sync::Arc;
use std::time::Duration;

/// Whether this build can speak TLS to SQL Server (cargo feature `tls`).
pub const TLS_AVAILABLE: bool = cfg!(feature = "tls");

/// Whether this build's tiberius backend can log in with Kerberos (cargo feature
/// `kerberos`).
pub const KERBEROS_AVAILABLE: bool = cfg!(feature = "kerberos");

/// `[login] method = "kerberos"` needs the `kerberos` feature with tiberius; the ODBC
/// driver does Kerberos by itself (the feature adds the preflight's precise errors).
fn check_kerberos(kind: BackendKind) -> Result<(), Failure> {
    if kind == BackendKind::Tiberius && !KERBEROS_AVAILABLE {
        return Err(Failure::usage(
            "[login] method = \"kerberos\" but this build of cms-failover has no Kerberos support for --backend tiberius",
            "rebuild with `cargo build --release -p examples --features kerberos` (needs libkrb5-dev, clang and libclang-dev), or use --backend odbc (FreeTDS or Microsoft's driver log in with the ticket themselves)",
        ));
    }
    Ok(())
}

/// `[login] method = "ntlm"` works only through FreeTDS: tiberius's `winauth` NTLM is
/// Windows-only (its pure-Rust `sspi-rs` NTLM is not built here), and Microsoft's ODBC driver
/// on Linux does only Kerberos.
fn check_ntlm(kind: BackendKind, cfg: &Config) -> Result<(), Failure> {
    let freetds = cfg.odbc.flavour == crate::config::OdbcFlavour::FreeTds;
    if kind == BackendKind::Odbc && freetds {
        return Ok(());
    }
    Err(Failure::usage(
        format!(
            "{}: [login] method = \"ntlm\" works only with --backend odbc and the FreeTDS driver",
            cfg.path.display()
        ),
        "tiberius cannot do NTLM on Linux and Microsoft's ODBC driver on Linux only Kerberos: use --backend odbc with [odbc] driver = \"FreeTDS\", or method = \"kerberos\"",
    ))
}

/// Checks that the connection options can work with this build, before any connection.
pub fn check(kind: BackendKind, cfg: &Config) -> Result<(), Failure> {
    if kind == BackendKind::Tiberius && cfg.connection.tls != TlsMode::Off && !TLS_AVAILABLE {
        return Err(Failure::usage(
            format!(
                "{}: connection.tls is {:?} but this build of cms-failover has no TLS support",
                cfg.path.display(),
                cfg.connection.tls
            ),
            "rebuild with `--features tls`, use `--backend odbc`, or set connection.tls = \"off\" (simulators and trusted loopback only)",
        ));
    }
    if cfg.connection.tls == TlsMode::Off {
        check_plaintext(cfg)?;
    }
    if let Some(ca) = &cfg.connection.ca_file
        && std::fs::metadata(ca).is_err()
    {
        return Err(Failure::usage(
            format!("connection.ca_file `{}` cannot be read", ca.display()),
            "point connection.ca_file at the PEM file of the CA that signed the SQL Server certificates",
        ));
    }
    Ok(())
}

/// `tls = "off"` sends the password in clear, so it is only for the simulator on this
/// machine: every instance must have an `[endpoints]` entry on a loopback address.
fn check_plaintext(cfg: &Config) -> Result<(), Failure> {
    for i in cfg.topology.instances() {
        let why = match cfg.endpoints.get(i) {
            Some(a) if a.ip().is_loopback() => continue,
            Some(a) => format!("{i} is reached at {a}, not on loopback"),
            None => format!("{i} has no [endpoints] entry on loopback"),
        };
        return Err(Failure::usage(
            format!(
                "{}: connection.tls = \"off\" (no encryption, the password in clear) is only for the simulator on loopback, and {why}",
                cfg.path.display()
            ),
            "set tls = \"strict\" with connection.ca_file (the CA of the SQL Server certificates); \"off\" needs every instance in [endpoints] on 127.0.0.1 or ::1",
        ));
    }
    Ok(())
}

/// Builds the backend.
pub fn build(
    kind: BackendKind,
    cfg: &Config,
    credentials: &Credentials,
    call_timeout: Duration,
) -> Result<Arc<dyn Backend>, Failure> {
    check(kind, cfg)?;
    match credentials {
        Credentials::Kerberos => check_kerberos(kind)?,
        Credentials::Ntlm { .. } => check_ntlm(kind, cfg)?,
        Credentials::Sql { .. } => {}
    }
    match kind {
        BackendKind::Tiberius => {
            use backend_tiberius::{Encryption, TiberiusBackend, TiberiusConfig, Trust};
            let enc = match cfg.connection.tls {
                TlsMode::Off => Encryption::Plaintext,
                TlsMode::TrustServerCertificate => {
                    Encryption::Required(Trust::TrustServerCertificate)
                }
                TlsMode::Strict => Encryption::Required(
                    cfg.connection
                        .ca_file
                        .clone()
                        .map_or(Trust::SystemRoots, Trust::CaFile),
                ),
            };
            let tc = match credentials {
                Credentials::Sql { user, password } | Credentials::Ntlm { user, password } => {
                    TiberiusConfig::new(user, password.clone())
                }
                Credentials::Kerberos => TiberiusConfig::integrated(),
            };
            let mut tc = tc.with_encryption(enc).with_call_timeout(call_timeout);
            tc.endpoints = cfg.endpoints.iter().map(|(k, v)| (k.clone(), *v)).collect();
            tc.sql = cfg.sql.clone();
            Ok(Arc::new(TiberiusBackend::new(tc)))
        }
        #[cfg(feature = "odbc")]
        BackendKind::Odbc => {
            use crate::config::OdbcFlavour;
            use backend_odbc::{ConnectionSpec, Encryption, OdbcBackend, OdbcConfig, Trust};
            let mut oc = match cfg.odbc.flavour {
                OdbcFlavour::FreeTds => OdbcConfig::freetds(),
                OdbcFlavour::Microsoft => OdbcConfig::microsoft(),
            };
            let default_ms = crate::config::OdbcOptions::default().driver;
            if !(cfg.odbc.flavour == OdbcFlavour::FreeTds && cfg.odbc.driver == default_ms) {
                oc.driver_name = cfg.odbc.driver.clone();
            }
            oc.default_connection = match (&cfg.odbc.dsn, &cfg.odbc.connection_string) {
                (Some(d), _) => ConnectionSpec::Dsn(d.clone()),
                (None, Some(t)) => ConnectionSpec::Template(t.clone()),
                (None, None) => ConnectionSpec::Generated,
            };
            oc.endpoints = cfg.endpoints.iter().map(|(k, v)| (k.clone(), *v)).collect();
            oc.encryption = match cfg.connection.tls {
                TlsMode::Off => Encryption::Off,
                TlsMode::Strict => Encryption::Required(
                    cfg.connection
                        .ca_file
                        .clone()
                        .map_or(Trust::SystemRoots, Trust::CaFile),
                ),
                TlsMode::TrustServerCertificate => {
                    Encryption::Required(Trust::TrustServerCertificate)
                }
            };
            oc.sql = cfg.sql.clone();
            let oc = match credentials {
                // FreeTDS logs in with NTLM when the user name is DOMAIN\user.
                Credentials::Sql { user, password } | Credentials::Ntlm { user, password } => {
                    oc.with_login(user, password.clone())
                }
                Credentials::Kerberos => oc.with_kerberos(),
            };
            let oc = oc.with_timeouts(call_timeout.min(Duration::from_secs(15)), call_timeout);
            Ok(Arc::new(OdbcBackend::new(oc)))
        }
        #[cfg(not(feature = "odbc"))]
        BackendKind::Odbc => Err(Failure::usage(
            "this cms-failover was built without the ODBC backend",
            "install unixODBC (apt-get install unixodbc unixodbc-dev tdsodbc) and rebuild with `cargo build --release -p examples --features odbc`, or use --backend tiberius",
        )),
    }
}
