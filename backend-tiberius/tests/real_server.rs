//! The real-server-safe conformance cases against a real SQL Server, when
//! `CMS_FAILOVER_TEST_MSSQL` holds a connection string (see the README); skipped otherwise.
//!
//! Format (ADO-style, `;`-separated `key=value`, keys case-insensitive):
//! `Server=host[\instance][,port];User Id=login;Password=…;Encrypt=true;TrustServerCertificate=false;CaFile=/path/ca.pem`.
//! The password may instead come from `CMS_FAILOVER_TEST_MSSQL_PASSWORD`. The cases read
//! `sys.databases` and take/release the application lock `cms-failover-conformance`; they
//! change no database. The suite addresses `sql-a.cms.test\RTC`; a thin wrapper maps it to
//! the real instance.

use async_trait::async_trait;
use backend_fake::Estate;
use backend_fake::fixtures;
use backend_tiberius::{Encryption, Secret, TiberiusBackend, TiberiusConfig, Trust};
use failover_core::{
    Backend, BackendError, DatabaseName, DatabasePosition, InstanceAddr, InstanceProbe,
    LocationRecord, LockAttempt, MirrorFailoverKind, Op,
};
use std::sync::Arc;
use std::time::Duration;

const VAR: &str = "CMS_FAILOVER_TEST_MSSQL";

/// Parses the connection string into the real instance and a configuration.
fn parse(conn: &str) -> Result<(InstanceAddr, TiberiusConfig), String> {
    let mut server = None;
    let mut user = None;
    let mut password = None;
    let mut encrypt = true;
    let mut trust = Trust::SystemRoots;
    for part in conn.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{}`: expected key=value", k_only(part)))?;
        let v = v.trim();
        match k.trim().to_ascii_lowercase().replace(' ', "").as_str() {
            "server" | "datasource" => {
                let v = v.strip_prefix("tcp:").unwrap_or(v);
                server = Some(InstanceAddr::parse(v).map_err(|e| e.to_string())?);
            }
            "userid" | "uid" | "user" => user = Some(v.to_string()),
            "password" | "pwd" => password = Some(Secret::new(v)),
            "encrypt" => {
                encrypt = !matches!(v.to_ascii_lowercase().as_str(), "false" | "no" | "off")
            }
            "trustservercertificate" => {
                if matches!(v.to_ascii_lowercase().as_str(), "true" | "yes") {
                    trust = Trust::TrustServerCertificate;
                }
            }
            "cafile" => trust = Trust::CaFile(v.into()),
            other => return Err(format!("unknown key `{other}`")),
        }
    }
    let server = server.ok_or("Server= is required")?;
    let password = match password {
        Some(p) => p,
        None => std::env::var("CMS_FAILOVER_TEST_MSSQL_PASSWORD")
            .map(Secret::new)
            .map_err(|_| {
                "no Password= in the connection string and CMS_FAILOVER_TEST_MSSQL_PASSWORD is not set"
                    .to_string()
            })?,
    };
    let mut cfg = TiberiusConfig::new(user.ok_or("User Id= is required")?, password);
    cfg.encryption = if encrypt {
        Encryption::Required(trust)
    } else {
        Encryption::Plaintext
    };
    cfg.call_timeout = Duration::from_secs(30);
    Ok((server, cfg))
}

/// Only the key of a malformed part, so a password never reaches an error message.
fn k_only(part: &str) -> &str {
    part.split('=')
        .next()
        .unwrap_or("")
        .get(..20.min(part.len()))
        .unwrap_or("")
}

/// Forwards to the real backend, mapping the fixture's active instance to the real one.
struct Mapped {
    inner: Arc<TiberiusBackend>,
    real: InstanceAddr,
}

impl Mapped {
    fn map(&self, i: &InstanceAddr) -> InstanceAddr {
        if *i == fixtures::active() {
            self.real.clone()
        } else {
            i.clone()
        }
    }
}

#[async_trait]
impl Backend for Mapped {
    fn name(&self) -> &str {
        "tiberius (real server)"
    }
    fn statements(&self, op: &Op) -> Vec<String> {
        self.inner.statements(op)
    }
    async fn probe(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        let mut p = self.inner.probe(&self.map(i), d).await?;
        p.instance = i.clone();
        Ok(p)
    }
    async fn positions(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        self.inner.positions(&self.map(i), d).await
    }
    async fn set_read_only(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        ro: bool,
    ) -> Result<(), BackendError> {
        self.inner.set_read_only(&self.map(i), d, ro).await
    }
    async fn recover(&self, i: &InstanceAddr, d: &[DatabaseName]) -> Result<(), BackendError> {
        self.inner.recover(&self.map(i), d).await
    }
    async fn mirror_failover(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        k: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError> {
        self.inner.mirror_failover(&self.map(i), d, k).await
    }
    async fn acquire_lock(&self, i: &InstanceAddr, r: &str) -> Result<LockAttempt, BackendError> {
        self.inner.acquire_lock(&self.map(i), r).await
    }
    async fn release_lock(&self, i: &InstanceAddr, r: &str) -> Result<(), BackendError> {
        self.inner.release_lock(&self.map(i), r).await
    }
    async fn lock_held(&self, i: &InstanceAddr, r: &str) -> Result<bool, BackendError> {
        self.inner.lock_held(&self.map(i), r).await
    }
    async fn read_location(
        &self,
        i: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        self.inner.read_location(&self.map(i)).await
    }
    async fn write_location(
        &self,
        i: &InstanceAddr,
        r: &LocationRecord,
        e: Option<u64>,
    ) -> Result<(), BackendError> {
        self.inner.write_location(&self.map(i), r, e).await
    }
}

struct RealHarness {
    real: InstanceAddr,
    cfg: TiberiusConfig,
}

struct RealServed {
    real: InstanceAddr,
    cfg: TiberiusConfig,
}

#[async_trait]
impl failover_testkit::Harness for RealHarness {
    fn name(&self) -> &str {
        "tiberius (real server)"
    }
    async fn serve(&self, _estate: Estate) -> Box<dyn failover_testkit::Served> {
        Box::new(RealServed {
            real: self.real.clone(),
            cfg: self.cfg.clone(),
        })
    }
}

#[async_trait]
impl failover_testkit::Served for RealServed {
    async fn client(&self) -> Box<dyn Backend> {
        Box::new(Mapped {
            inner: Arc::new(TiberiusBackend::new(self.cfg.clone())),
            real: self.real.clone(),
        })
    }
}

#[tokio::test]
async fn conformance_against_a_real_sql_server() {
    let Ok(conn) = std::env::var(VAR) else {
        println!(
            "SKIPPED: set {VAR} to a connection string (see backend-tiberius/README.md) to run the conformance suite against a real SQL Server"
        );
        return;
    };
    let (real, cfg) = parse(&conn).unwrap_or_else(|e| panic!("{VAR}: {e}"));
    println!("running the real-server-safe conformance cases against {real}");
    failover_testkit::Suite::test_real_server_safe(&RealHarness { real, cfg }).await;
}

#[test]
fn connection_string_parsing() {
    let (a, cfg) =
        parse("Server=sql01.contoso.com\\RTC,1433; User Id=cms; Password=pw; Encrypt=true; TrustServerCertificate=true")
            .unwrap();
    assert_eq!(a.to_string(), "sql01.contoso.com\\RTC,1433");
    assert_eq!(cfg.user, "cms");
    assert_eq!(
        cfg.encryption,
        Encryption::Required(Trust::TrustServerCertificate)
    );
    let (_, cfg) = parse("Data Source=tcp:10.0.0.5,14330;UID=u;PWD=x;Encrypt=false").unwrap();
    assert_eq!(cfg.encryption, Encryption::Plaintext);
    assert_eq!(cfg.password.expose(), "x");
    let e = parse("Server=h;User Id=u;Password=secret;Bogus=1").unwrap_err();
    assert!(e.contains("bogus") && !e.contains("secret"));
    assert!(parse("User Id=u;Password=x").is_err());
}
