//! Shared helpers: serve an estate with the in-process simulator and build backends for it.
#![allow(dead_code)]

use backend_fake::Estate;
use backend_fake::fixtures::{LOGIN_PASSWORD, LOGIN_USER};
use backend_tiberius::{Encryption, Secret, TiberiusBackend, TiberiusConfig};
use mssql_sim::{SimHandle, SimOptions, Simulator};
use std::time::Duration;

/// Starts the simulator on loopback port 0 for every instance of `estate`.
pub async fn serve(estate: Estate) -> SimHandle {
    Simulator::start(estate, SimOptions::default())
        .await
        .expect("simulator starts")
}

/// A plaintext backend for `sim` with the fixture login and `timeout` per call.
pub fn backend_with(sim: &SimHandle, timeout: Duration) -> TiberiusBackend {
    let mut cfg = TiberiusConfig::new(LOGIN_USER, Secret::new(LOGIN_PASSWORD))
        .with_encryption(Encryption::Plaintext)
        .with_call_timeout(timeout);
    cfg.endpoints = sim.endpoint_map();
    TiberiusBackend::new(cfg)
}

/// [`backend_with`] a 10 s timeout.
pub fn backend(sim: &SimHandle) -> TiberiusBackend {
    backend_with(sim, Duration::from_secs(10))
}

/// The conformance harness: each estate is served by its own simulator; each client is a
/// new plaintext [`TiberiusBackend`] with the simulator's endpoint map.
pub struct SimHarness;

struct SimServed(SimHandle);

#[async_trait::async_trait]
impl failover_testkit::Harness for SimHarness {
    fn name(&self) -> &str {
        "tiberius+mssql-sim"
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
