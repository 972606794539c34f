//! A directory behind a network round trip: [`DelayedDirectory`] wraps the in-memory
//! [`FakeDirectory`] and waits one round-trip time on every call (no LDAP server runs
//! unprivileged on this machine; see `BENCHMARKS.md`).
//!
//! The wait is the whole round trip, before the call reaches the fake (so a swap lands after
//! half of it on a real DC, and here after all of it: the window measured ends at the reply
//! either way). After a swap that landed, the fake's other DCs are replicated at once, as if
//! replication had finished by the time of the next read.

use async_trait::async_trait;
use backend_fake::FakeDirectory;
use failover_core::{CmsLocation, Directory, DirectoryError, SwapStamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// [`FakeDirectory`] with one round-trip time added to every call; counts the calls.
#[derive(Debug)]
pub struct DelayedDirectory {
    inner: Arc<FakeDirectory>,
    rtt: Duration,
    calls: AtomicU64,
}

impl DelayedDirectory {
    /// `inner`, each call delayed by `rtt`.
    pub fn new(inner: Arc<FakeDirectory>, rtt: Duration) -> Self {
        Self {
            inner,
            rtt,
            calls: AtomicU64::new(0),
        }
    }

    /// Calls (reads and swaps) made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    async fn round_trip(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        crate::proxy::wait_until(tokio::time::Instant::now() + self.rtt).await;
    }
}

#[async_trait]
impl Directory for DelayedDirectory {
    fn name(&self) -> &str {
        "fake (delayed)"
    }

    fn domain_controllers(&self) -> Vec<String> {
        self.inner.domain_controllers()
    }

    fn describe_swap(&self, expected: &CmsLocation, new: &CmsLocation) -> Vec<String> {
        self.inner.describe_swap(expected, new)
    }

    async fn read(&self, dc: &str) -> Result<CmsLocation, DirectoryError> {
        self.round_trip().await;
        self.inner.read(dc).await
    }

    async fn compare_and_swap(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
    ) -> Result<(), DirectoryError> {
        self.round_trip().await;
        let r = self.inner.compare_and_swap(dc, expected, new).await;
        self.inner.replicate();
        r
    }

    async fn compare_and_swap_stamped(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
        stamp: &SwapStamp,
    ) -> Result<(), DirectoryError> {
        self.round_trip().await;
        let r = self
            .inner
            .compare_and_swap_stamped(dc, expected, new, stamp)
            .await;
        self.inner.replicate();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_core::{InstanceAddr, Store};

    fn loc(p: &str) -> CmsLocation {
        CmsLocation::of_store(&Store::new(InstanceAddr::parse(p).unwrap(), None).unwrap())
    }

    #[tokio::test]
    async fn delays_counts_and_replicates() {
        let fake = Arc::new(FakeDirectory::new(loc("a.test"), 2));
        let d = DelayedDirectory::new(fake.clone(), Duration::from_millis(5));
        let dcs = d.domain_controllers();
        let t0 = std::time::Instant::now();
        assert_eq!(d.read(&dcs[0]).await.unwrap(), loc("a.test"));
        assert!(t0.elapsed() >= Duration::from_millis(5));
        d.compare_and_swap(&dcs[0], &loc("a.test"), &loc("b.test"))
            .await
            .unwrap();
        assert_eq!(d.read(&dcs[1]).await.unwrap(), loc("b.test"));
        assert_eq!(d.calls(), 3);
    }
}
