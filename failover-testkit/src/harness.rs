//! How the suite reaches a backend: a [`Harness`] serves an estate and hands out clients.

use async_trait::async_trait;
use backend_fake::{Estate, FakeBackend};
use failover_core::Backend;

/// Connects a backend under test to an estate the suite built.
///
/// - For the fake, [`Harness::serve`] keeps the estate and each client is a new
///   [`FakeBackend`] over it.
/// - For a SQL backend, `serve` starts the simulator serving the estate (one loopback port
///   per instance) and each client is a new backend with the endpoint override map.
/// - For a real server, `serve` ignores the estate and maps
///   [`backend_fake::fixtures::active`] to the real instance; run only
///   [`crate::REAL_SERVER_SAFE`] cases.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A short name for failure messages.
    fn name(&self) -> &str;

    /// Starts serving `estate`. The returned value keeps it served until dropped.
    async fn serve(&self, estate: Estate) -> Box<dyn Served>;
}

/// An estate being served.
#[async_trait]
pub trait Served: Send + Sync {
    /// A new, independent client (its own sessions and therefore its own locks), as if from
    /// another process.
    async fn client(&self) -> Box<dyn Backend>;
}

/// The harness for [`FakeBackend`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeHarness;

struct FakeServed(Estate);

#[async_trait]
impl Harness for FakeHarness {
    fn name(&self) -> &str {
        "fake"
    }
    async fn serve(&self, estate: Estate) -> Box<dyn Served> {
        Box::new(FakeServed(estate))
    }
}

#[async_trait]
impl Served for FakeServed {
    async fn client(&self) -> Box<dyn Backend> {
        // The fixture login, as the SQL harnesses use (its grants apply to it).
        Box::new(FakeBackend::new(self.0.clone()).with_login(
            backend_fake::fixtures::LOGIN_USER,
            backend_fake::fixtures::LOGIN_PASSWORD,
        ))
    }
}
