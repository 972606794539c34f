//! Runs against a real SQL Server when `CMS_FAILOVER_TEST_MSSQL_ODBC` holds an ODBC
//! connection string (credentials may be inside; they are split out and kept secret), e.g.
//!
//! ```text
//! CMS_FAILOVER_TEST_MSSQL_ODBC='Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql01.contoso.com,1433;Encrypt=yes;TrustServerCertificate=no;UID=cmsops;PWD=…'
//! ```
//!
//! It only reads state and takes/releases an application lock in `master` (read-only
//! towards the CMS databases). Optional `CMS_FAILOVER_TEST_MSSQL_DATABASES` (comma-separated,
//! default `master`) names databases that must exist and be ONLINE. Skips, saying so,
//! when the variable is unset.

mod common;

use backend_odbc::{ConnectionSpec, OdbcBackend, OdbcConfig, connstr};
use failover_core::{Backend, DatabaseName, DbState, InstanceAddr, LockAttempt};
use std::time::Duration;

const VAR: &str = "CMS_FAILOVER_TEST_MSSQL_ODBC";

#[tokio::test]
async fn real_server_probe_lock_and_location() {
    let Ok(conn) = std::env::var(VAR) else {
        eprintln!(
            "SKIPPED real_server_probe_lock_and_location: set {VAR} to an ODBC connection string to run it"
        );
        return;
    };
    common::require_any_driver();
    let split = connstr::split_credentials(&conn);
    let mut cfg =
        OdbcConfig::freetds().with_timeouts(Duration::from_secs(15), Duration::from_secs(30));
    cfg.default_connection = ConnectionSpec::Template(split.rest.clone());
    cfg.user = split.user.clone();
    cfg.password = split.password.clone();
    let backend = OdbcBackend::new(cfg);
    let instance = InstanceAddr::parse("real-server.test").unwrap();
    eprintln!(
        "connecting with {}",
        backend
            .transport()
            .redacted_connection_string(&instance)
            .unwrap()
    );

    let dbs: Vec<DatabaseName> = std::env::var("CMS_FAILOVER_TEST_MSSQL_DATABASES")
        .unwrap_or_else(|_| "master".into())
        .split(',')
        .map(|d| DatabaseName::parse(d.trim()).unwrap())
        .collect();
    let probe = backend.probe(&instance, &dbs).await.unwrap();
    assert!(!probe.version.is_empty());
    for d in &dbs {
        let p = probe
            .database(d)
            .unwrap_or_else(|| panic!("database {d} missing"));
        assert_eq!(p.state, DbState::Online, "{d}");
    }

    let resource = format!("cms-failover-odbc-test-{}", std::process::id());
    assert_eq!(
        backend.acquire_lock(&instance, &resource).await.unwrap(),
        LockAttempt::Granted
    );
    assert!(backend.lock_held(&instance, &resource).await.unwrap());
    // A second backend (another session) is refused.
    let other = backend_with_same_settings(&split);
    assert_eq!(
        other.acquire_lock(&instance, &resource).await.unwrap(),
        LockAttempt::Held
    );
    backend.release_lock(&instance, &resource).await.unwrap();
    assert!(!backend.lock_held(&instance, &resource).await.unwrap());

    // Reading the location works whether or not a record exists.
    let _ = backend.read_location(&instance).await.unwrap();
}

fn backend_with_same_settings(split: &connstr::SplitConnectionString) -> OdbcBackend {
    let mut cfg = OdbcConfig::freetds();
    cfg.default_connection = ConnectionSpec::Template(split.rest.clone());
    cfg.user = split.user.clone();
    cfg.password = split.password.clone();
    OdbcBackend::new(cfg)
}
