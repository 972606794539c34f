//! The [`Directory`] conformance suite: every contract case of the trait's rustdoc, run
//! against the fake and against a real Active Directory (Samba) alike.
//!
//! A [`DirectoryHarness`] gives the directory under test and a side door that changes the
//! value as someone else would, and reads it independently of the directory under test.

use async_trait::async_trait;
use failover_core::{CmsLocation, Directory, ErrorKind, SqlServerName};

/// Access to the directory under test and to its DC from outside.
#[async_trait]
pub trait DirectoryHarness: Send + Sync {
    /// The directory under test (its first DC is the one changes go to).
    fn directory(&self) -> &dyn Directory;
    /// Sets the value on the first DC as another administrator would.
    async fn set_behind_our_back(&self, value: &CmsLocation);
    /// Reads the value on the first DC independently of the directory under test.
    async fn read_independently(&self) -> CmsLocation;
}

fn loc(b: &str, m: Option<&str>) -> CmsLocation {
    CmsLocation {
        backend: SqlServerName::parse(b).expect("valid"),
        mirror: m.map(|m| SqlServerName::parse(m).expect("valid")),
    }
}

/// The values the cases move between.
pub fn values() -> [CmsLocation; 3] {
    [
        loc("sql-a.cms.test\\RTC", Some("sql-a2.cms.test\\RTC")),
        loc("sql-b.cms.test\\RTC", None),
        loc("sql-c.cms.test\\RTC", Some("sql-c2.cms.test\\RTC")),
    ]
}

/// Runs every case in order; each starts by setting its own value. Panics on the first
/// failure with the case's name.
pub async fn run_all(h: &dyn DirectoryHarness) {
    let d = h.directory();
    let dc = d.domain_controllers()[0].clone();
    let [a, b, c] = values();

    // read returns what the DC holds.
    h.set_behind_our_back(&a).await;
    assert_eq!(d.read(&dc).await.expect("read"), a, "read");

    // compare_and_swap replaces the expected value, mirror removed.
    d.compare_and_swap(&dc, &a, &b).await.expect("swap a -> b");
    assert_eq!(h.read_independently().await, b, "swap a -> b landed");
    assert_eq!(d.read(&dc).await.expect("read"), b, "read after swap");

    // A retried swap whose value is already there succeeds without a change (idempotent).
    d.compare_and_swap(&dc, &a, &b).await.expect("retried swap");
    assert_eq!(h.read_independently().await, b, "retry changed nothing");

    // A stale swap is a conflict, carries what was found, and changes nothing.
    let e = d
        .compare_and_swap(&dc, &a, &c)
        .await
        .expect_err("stale swap must fail");
    assert_eq!(e.kind, ErrorKind::InvalidState, "stale swap kind: {e}");
    assert!(e.is_conflict(), "{e}");
    assert_eq!(
        e.found.as_deref(),
        Some(&b),
        "conflict reports the value found"
    );
    assert_eq!(
        h.read_independently().await,
        b,
        "stale swap changed nothing"
    );

    // A swap adding a mirror; then one changed mirror guarded too.
    d.compare_and_swap(&dc, &b, &c).await.expect("swap b -> c");
    assert_eq!(h.read_independently().await, c, "swap b -> c landed");
    let other_mirror = loc("sql-c.cms.test\\RTC", Some("sql-x.cms.test\\RTC"));
    let e = d
        .compare_and_swap(&dc, &other_mirror, &a)
        .await
        .expect_err("a swap expecting another mirror must fail");
    assert!(e.is_conflict(), "{e}");
    assert_eq!(h.read_independently().await, c, "nothing changed");

    // Someone else changes it between our read and our swap.
    let seen = d.read(&dc).await.expect("read");
    h.set_behind_our_back(&a).await;
    let e = d
        .compare_and_swap(&dc, &seen, &b)
        .await
        .expect_err("the value changed under us");
    assert_eq!(e.found.as_deref(), Some(&a), "{e}");
    assert_eq!(h.read_independently().await, a, "their value stays");

    // The what-if text names both values and changes nothing.
    let text = d.describe_swap(&a, &b).join("\n");
    assert!(
        text.contains("sql-a.cms.test\\RTC") && text.contains("sql-b.cms.test\\RTC"),
        "{text}"
    );
    assert_eq!(
        h.read_independently().await,
        a,
        "describe_swap changed nothing"
    );
}

/// The in-memory directory of `backend-fake`.
pub struct FakeDirectoryHarness {
    dir: backend_fake::FakeDirectory,
}

impl Default for FakeDirectoryHarness {
    fn default() -> Self {
        Self {
            dir: backend_fake::FakeDirectory::new(values()[0].clone(), 2),
        }
    }
}

#[async_trait]
impl DirectoryHarness for FakeDirectoryHarness {
    fn directory(&self) -> &dyn Directory {
        &self.dir
    }
    async fn set_behind_our_back(&self, value: &CmsLocation) {
        let dc = self.dir.domain_controllers()[0].clone();
        self.dir.change_behind_our_back(&dc, value.clone());
    }
    async fn read_independently(&self) -> CmsLocation {
        let dc = self.dir.domain_controllers()[0].clone();
        self.dir.value_on(&dc).expect("dc exists")
    }
}

/// The SQL location record ([`failover_core::SqlRecordDirectory`]) over a fake estate: the
/// first DC is `sql-a.cms.test\\RTC`; the side door writes and reads the estate's record.
pub struct SqlRecordDirectoryHarness {
    estate: backend_fake::Estate,
    dir: failover_core::SqlRecordDirectory,
}

impl SqlRecordDirectoryHarness {
    fn first(&self) -> failover_core::InstanceAddr {
        failover_core::InstanceAddr::parse(&self.dir.domain_controllers()[0]).expect("address")
    }

    /// The estate behind it (to inject faults).
    pub fn estate(&self) -> &backend_fake::Estate {
        &self.estate
    }
}

impl Default for SqlRecordDirectoryHarness {
    fn default() -> Self {
        use failover_core::{InstanceAddr, Store, Topology};
        let addr = |s: &str| InstanceAddr::parse(s).expect("address");
        let estate = backend_fake::Estate::new();
        for i in [
            "sql-a.cms.test\\RTC",
            "sql-a2.cms.test\\RTC",
            "sql-b.cms.test\\RTC",
        ] {
            estate.add_instance(&addr(i), "test").expect("instance");
        }
        let topology = Topology::new(
            Store::new(
                addr("sql-a.cms.test\\RTC"),
                Some(addr("sql-a2.cms.test\\RTC")),
            )
            .expect("store"),
            Store::new(addr("sql-b.cms.test\\RTC"), None).expect("store"),
            failover_core::DatabaseName::cms_defaults(),
        )
        .expect("topology");
        let backend = std::sync::Arc::new(backend_fake::FakeBackend::new(estate.clone()));
        Self {
            estate,
            dir: failover_core::SqlRecordDirectory::new(backend, topology),
        }
    }
}

#[async_trait]
impl DirectoryHarness for SqlRecordDirectoryHarness {
    fn directory(&self) -> &dyn Directory {
        &self.dir
    }
    async fn set_behind_our_back(&self, value: &CmsLocation) {
        let i = self.first();
        let epoch = self.estate.snapshot().instances[&i]
            .location
            .as_ref()
            .map_or(0, |r| r.epoch);
        let active = failover_core::Store::new(
            value.backend.to_addr(),
            value.mirror.as_ref().map(SqlServerName::to_addr),
        )
        .expect("store");
        let record = failover_core::LocationRecord {
            epoch: epoch + 10,
            active,
            run_id: "someone-else".into(),
        };
        self.estate.set_location(&i, Some(record)).expect("set");
    }
    async fn read_independently(&self) -> CmsLocation {
        let i = self.first();
        let r = self.estate.snapshot().instances[&i].location.clone();
        CmsLocation::of_store(&r.expect("a record").active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_fake::DirectoryFault;

    #[tokio::test]
    async fn the_fake_directory_passes_the_suite() {
        run_all(&FakeDirectoryHarness::default()).await;
    }

    #[tokio::test]
    async fn the_sql_record_directory_passes_the_suite() {
        run_all(&SqlRecordDirectoryHarness::default()).await;
    }

    /// The record's epoch and run id live beside the value: a stamped swap writes the
    /// stamp, a plain one the stored epoch + 1; a missing record reads as the active store;
    /// a stamped swap onto the value already there under a lower epoch refreshes the stamp.
    #[tokio::test]
    async fn the_sql_record_keeps_epoch_and_run_id_beside_the_value() {
        use failover_core::SwapStamp;
        let h = SqlRecordDirectoryHarness::default();
        let d = h.directory();
        let dc = d.domain_controllers()[0].clone();
        let [a, b, _] = values();
        assert!(d.commit_on_target());
        assert_eq!(d.read(&dc).await.unwrap(), a, "no record: the active store");
        let stamp = SwapStamp {
            epoch: 7,
            run_id: "run-7".into(),
        };
        d.compare_and_swap_stamped(&dc, &a, &b, &stamp)
            .await
            .unwrap();
        let rec = |h: &SqlRecordDirectoryHarness| {
            h.estate().snapshot().instances[&h.first()]
                .location
                .clone()
                .unwrap()
        };
        assert_eq!((rec(&h).epoch, rec(&h).run_id.as_str()), (7, "run-7"));
        d.compare_and_swap(&dc, &b, &a).await.unwrap();
        assert_eq!((rec(&h).epoch, rec(&h).run_id.as_str()), (8, "directory"));
        // The value is already `a` at epoch 8: a stamp at 9 refreshes it, one at 8 does not.
        let s9 = SwapStamp {
            epoch: 9,
            run_id: "run-9".into(),
        };
        d.compare_and_swap_stamped(&dc, &b, &a, &s9).await.unwrap();
        assert_eq!(rec(&h).epoch, 9);
        d.compare_and_swap_stamped(&dc, &b, &a, &stamp)
            .await
            .unwrap();
        assert_eq!(rec(&h).epoch, 9, "never back to a lower epoch");
        let e = d.read("sql-x.cms.test").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidState);
        h.estate().set_reachable(&h.first(), false).unwrap();
        assert_eq!(d.read(&dc).await.unwrap_err().kind, ErrorKind::Unreachable);
    }

    #[tokio::test]
    async fn fake_faults_lagging_dcs_and_lost_answers() {
        let [a, b, _] = values();
        let d = backend_fake::FakeDirectory::new(a.clone(), 3);
        let dcs = d.domain_controllers();
        d.set_lagging(&dcs[2], true);
        d.set_fault(&dcs[0], Some(DirectoryFault::Unreachable));
        assert_eq!(
            d.read(&dcs[0]).await.unwrap_err().kind,
            ErrorKind::Unreachable
        );
        assert_eq!(
            d.compare_and_swap(&dcs[0], &a, &b).await.unwrap_err().kind,
            ErrorKind::Unreachable
        );
        d.set_fault(&dcs[0], Some(DirectoryFault::Timeout));
        assert_eq!(
            d.compare_and_swap(&dcs[0], &a, &b).await.unwrap_err().kind,
            ErrorKind::Timeout
        );
        assert_eq!(
            d.value_on(&dcs[0]),
            Some(a.clone()),
            "a time-out applied nothing"
        );
        d.set_fault(&dcs[0], Some(DirectoryFault::LostAnswer));
        assert_eq!(
            d.compare_and_swap(&dcs[0], &a, &b).await.unwrap_err().kind,
            ErrorKind::Timeout
        );
        assert_eq!(
            d.value_on(&dcs[0]),
            Some(b.clone()),
            "the lost answer's swap landed"
        );
        d.set_fault(&dcs[0], None);
        // The retry is idempotent.
        d.compare_and_swap(&dcs[0], &a, &b).await.unwrap();
        assert_eq!(d.swaps().len(), 1);
        // Replication reaches dc02 but not the lagging dc03.
        assert_eq!(d.read(&dcs[1]).await.unwrap(), a);
        d.replicate();
        assert_eq!(d.read(&dcs[1]).await.unwrap(), b);
        assert_eq!(d.read(&dcs[2]).await.unwrap(), a);
        d.set_lagging(&dcs[2], false);
        d.replicate();
        assert_eq!(d.read(&dcs[2]).await.unwrap(), b);
    }
}
