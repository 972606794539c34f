//! Shared test helpers.
#![allow(dead_code)]

/// Panics (never skips) when the FreeTDS ODBC driver is not registered with unixODBC.
pub fn require_freetds() {
    let drivers = backend_odbc::driver::installed_drivers().unwrap_or_else(|e| {
        panic!("unixODBC is not usable ({e:?}); install unixodbc, odbcinst and tdsodbc")
    });
    assert!(
        drivers.iter().any(|d| d.eq_ignore_ascii_case("FreeTDS")),
        "the FreeTDS ODBC driver is not registered in odbcinst.ini (found {drivers:?}); \
         install tdsodbc (apt-get install -y tdsodbc unixodbc odbcinst) and register it with \
         `odbcinst -i -d -f /usr/share/tdsodbc/odbcinst.ini`"
    );
}

/// Panics when unixODBC has no driver registered at all.
pub fn require_any_driver() {
    let drivers = backend_odbc::driver::installed_drivers().expect("unixODBC is not usable");
    assert!(
        !drivers.is_empty(),
        "no ODBC driver is registered in odbcinst.ini"
    );
}

use backend_fake::Estate;
use backend_fake::fixtures::{LOGIN_PASSWORD, LOGIN_USER};
use backend_odbc::{OdbcBackend, OdbcConfig, Secret};
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::time::Duration;

/// Starts the simulator on loopback port 0 for every instance of `estate`.
pub async fn serve(estate: Estate) -> SimHandle {
    require_freetds();
    Simulator::start(estate, SimOptions::default())
        .await
        .expect("simulator starts")
}

/// A FreeTDS plaintext backend for `sim` with the fixture login and `timeout` per call.
pub fn backend_with(sim: &SimHandle, timeout: Duration) -> OdbcBackend {
    let cfg = OdbcConfig::freetds()
        .with_encryption(backend_odbc::Encryption::Off)
        .with_login(LOGIN_USER, Secret::new(LOGIN_PASSWORD))
        .with_endpoints(sim.endpoint_map())
        .with_timeouts(Duration::from_secs(5), timeout);
    OdbcBackend::new(cfg)
}

/// The conformance harness: each estate is served by its own simulator; each client is a
/// new [`OdbcBackend`] (FreeTDS through unixODBC) with the simulator's endpoint map.
pub struct SimHarness;

struct SimServed(SimHandle);

#[async_trait::async_trait]
impl failover_testkit::Harness for SimHarness {
    fn name(&self) -> &str {
        "odbc(FreeTDS)+mssql-sim"
    }
    async fn serve(&self, estate: Estate) -> Box<dyn failover_testkit::Served> {
        Box::new(SimServed(serve(estate).await))
    }
}

#[async_trait::async_trait]
impl failover_testkit::Served for SimServed {
    async fn client(&self) -> Box<dyn failover_core::Backend> {
        Box::new(backend_with(&self.0, Duration::from_secs(5)))
    }
}
