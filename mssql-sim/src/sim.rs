//! Serving every instance of an estate, each on its own loopback port, or on its own
//! loopback address ([`SimOptions::addresses`]) as the instances of a real estate do.

use crate::integrated::{IntegratedAuth, WindowsLogin, WithIntegrated};
use crate::listener::{bind, run_listener};
use crate::sql::exec::{DatabaseBlock, InstanceService, Shared};
use crate::state::{DurableService, StateStore};
use crate::tls::{ServerTls, WithTls};
use backend_fake::Estate;
use failover_core::InstanceAddr;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the simulator listens.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The address to bind (default 127.0.0.1) for instances not in [`SimOptions::addresses`].
    pub host: IpAddr,
    /// An address of its own per instance (e.g. 127.0.1.1, 127.0.1.2: all of 127.0.0.0/8 is
    /// loopback on Linux), so that each can listen on SQL Server's standard port 1433 under
    /// its own name and service principal (`MSSQLSvc/<fqdn>:1433`), as in a real estate.
    pub addresses: HashMap<InstanceAddr, IpAddr>,
    /// Fixed ports per instance; instances not listed get an ephemeral port (port 0).
    pub ports: HashMap<InstanceAddr, u16>,
    /// Certificate and encryption policy per instance; instances not listed have no
    /// certificate and answer PRELOGIN with ENCRYPT_NOT_SUP (plaintext only).
    pub tls: HashMap<InstanceAddr, ServerTls>,
    /// Where the durable state is saved after every request (`None`: not durable).
    pub state: Option<Arc<StateStore>>,
    /// Integrated security (Kerberos) on every instance, admitting these principals, each
    /// instance under its own SPNs ([`IntegratedAuth::spns_for`]); `None`: off (logins with
    /// `fIntSecurity` get 18452). Verifying tickets needs the `gssapi` feature and the
    /// service keytab in `KRB5_KTNAME`.
    pub windows_logins: Option<Vec<WindowsLogin>>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            addresses: HashMap::new(),
            ports: HashMap::new(),
            tls: HashMap::new(),
            state: None,
            windows_logins: None,
        }
    }
}

impl SimOptions {
    /// Serves `instance` on `addr` (its own address and port; port 0: an ephemeral one).
    pub fn with_listen_addr(mut self, instance: InstanceAddr, addr: SocketAddr) -> Self {
        self.addresses.insert(instance.clone(), addr.ip());
        self.ports.insert(instance, addr.port());
        self
    }

    /// The socket address `instance` is bound to (port 0: an ephemeral one).
    pub fn listen_addr(&self, instance: &InstanceAddr) -> SocketAddr {
        SocketAddr::new(
            self.addresses.get(instance).copied().unwrap_or(self.host),
            self.ports.get(instance).copied().unwrap_or(0),
        )
    }

    /// Serves `instance` with this certificate and policy.
    pub fn with_tls(mut self, instance: InstanceAddr, tls: ServerTls) -> Self {
        self.tls.insert(instance, tls);
        self
    }

    /// Serves every instance of `estate` with its own certificate from `pki` (subject and
    /// SAN = the instance's host, plus 127.0.0.1), Force Encryption as given. For broken
    /// certificates see [`SimOptions::with_served_pki`].
    #[cfg(feature = "test-pki")]
    pub fn with_test_pki(
        self,
        estate: &Estate,
        pki: &test_pki::TestPki,
        force_encryption: bool,
    ) -> Result<Self, crate::tls::TlsConfigError> {
        self.with_served_pki(estate, pki, Served::Valid, force_encryption)
    }

    /// Serves every instance of `estate` with the certificate of `pki` that `served` names
    /// (its own, or one a client must refuse), Force Encryption as given.
    #[cfg(feature = "test-pki")]
    pub fn with_served_pki(
        mut self,
        estate: &Estate,
        pki: &test_pki::TestPki,
        served: Served,
        force_encryption: bool,
    ) -> Result<Self, crate::tls::TlsConfigError> {
        for i in estate.instances() {
            let ck = match served {
                Served::Valid => {
                    pki.server(&i.to_string())
                        .ok_or_else(|| crate::tls::TlsConfigError::File {
                            what: "certificate",
                            path: pki.dir().to_path_buf(),
                            message: format!("the test PKI has no certificate for {i}"),
                        })?
                }
                Served::WrongName => pki.wrong_name(),
                Served::Expired => pki.expired(),
                Served::SelfSigned => pki.self_signed(),
            };
            let tls = ServerTls::from_pem_files(&ck.cert, &ck.key)?
                .with_force_encryption(force_encryption);
            self.tls.insert(i, tls);
        }
        Ok(self)
    }
}

/// Which certificate of a test PKI every instance presents ([`SimOptions::with_served_pki`]).
#[cfg(feature = "test-pki")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Its own, signed by the test CA, for its host name and 127.0.0.1.
    Valid,
    /// Signed by the test CA, but only for `test_pki::WRONG_NAME`.
    WrongName,
    /// Signed by the test CA, expired.
    Expired,
    /// Self-signed (signed by nobody the client trusts).
    SelfSigned,
}

/// Could not start the simulator.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {instance} on {addr}: {source}")]
pub struct StartError {
    /// The instance.
    pub instance: InstanceAddr,
    /// The address it tried.
    pub addr: SocketAddr,
    /// The bind error.
    #[source]
    pub source: std::io::Error,
}

/// The TDS simulator.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Serves every instance of `estate` (each on its own address and port) until the handle is shut
    /// down or dropped. Must be called inside a tokio runtime.
    pub async fn start(estate: Estate, options: SimOptions) -> Result<SimHandle, StartError> {
        let shared = Arc::new(Shared::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut endpoints = Vec::new();
        let mut tasks = Vec::new();
        for instance in estate.instances() {
            let addr = options.listen_addr(&instance);
            let listener = bind(addr).map_err(|source| StartError {
                instance: instance.clone(),
                addr,
                source,
            })?;
            let local = listener.local_addr().map_err(|source| StartError {
                instance: instance.clone(),
                addr,
                source,
            })?;
            let integrated = options.windows_logins.as_ref().map(|logins| {
                Arc::new(IntegratedAuth {
                    logins: logins.clone(),
                    spns: IntegratedAuth::spns_for(&instance, local.port()),
                })
            });
            let service = Arc::new(WithIntegrated::new(
                WithTls::new(
                    DurableService::new(
                        InstanceService::new(estate.clone(), instance.clone(), shared.clone()),
                        options.state.clone(),
                    ),
                    options.tls.get(&instance).cloned(),
                ),
                integrated,
            ));
            tasks.push(tokio::spawn(run_listener(
                service,
                listener,
                stop_rx.clone(),
            )));
            endpoints.push((instance, local));
        }
        Ok(SimHandle {
            estate,
            shared,
            endpoints,
            stop,
            tasks,
        })
    }
}

/// A running simulator. Dropping it stops every listener and connection.
#[derive(Debug)]
pub struct SimHandle {
    estate: Estate,
    shared: Arc<Shared>,
    endpoints: Vec<(InstanceAddr, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// Each served instance and the socket address it listens on.
    pub fn endpoints(&self) -> Vec<(InstanceAddr, SocketAddr)> {
        self.endpoints.clone()
    }

    /// The endpoints as the address map the SQL backends take.
    pub fn endpoint_map(&self) -> HashMap<InstanceAddr, SocketAddr> {
        self.endpoints.iter().cloned().collect()
    }

    /// The socket address of `instance`.
    pub fn addr_of(&self, instance: &InstanceAddr) -> Option<SocketAddr> {
        self.endpoints
            .iter()
            .find(|(i, _)| i == instance)
            .map(|(_, a)| *a)
    }

    /// The estate being served.
    pub fn estate(&self) -> &Estate {
        &self.estate
    }

    /// Another session takes a lock on database `db` of `instance` until the guard is
    /// dropped: `ALTER DATABASE … SET READ_ONLY|READ_WRITE` there waits for it, up to the
    /// session's `SET LOCK_TIMEOUT`, then fails with 1222 + 5069 (see [`DatabaseBlock`]).
    pub fn block_database(&self, instance: &InstanceAddr, db: &str) -> DatabaseBlock {
        self.shared.block(instance, db)
    }

    /// Stops listening, closes every connection and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
