//! The SQL location record (`master.dbo.cms_failover_location`) behind the [`Directory`]
//! contract, so that a run without Active Directory commits the same way as one with it.
//!
//! # How the record maps to the directory's value
//! - Each instance of the topology is one "domain controller", named by its address
//!   (`sql-a.cms.test\RTC,1433`): the record is kept on every instance, and copying it to
//!   the others (the machine's publish step) is this directory's replication.
//! - The **value** is the record's active store as the directory names it
//!   ([`CmsLocation::of_store`]: principal and mirror, ports dropped). An instance that
//!   holds no record reads as the topology's active store: the store the CMS was installed
//!   on, before any failover (how runs behaved before records existed).
//! - The record's **epoch and run id** are fencing metadata beside the value, not part of
//!   it: the compare of a compare-and-swap looks at the value only, the write is guarded by
//!   the epoch read just before (the record's own compare-and-swap, so a writer that got in
//!   between is a conflict too), and the record written takes the [`SwapStamp`]'s epoch and
//!   run id (the failover's: above every epoch seen and journaled). A plain
//!   [`Directory::compare_and_swap`] (no stamp) writes the stored epoch + 1, run id
//!   `directory`. A stamped swap whose value is already there under a lower epoch refreshes
//!   the stamp (value unchanged), so an epoch is never reused.
//! - A new value that names a store of the topology is stored as that store (with its
//!   ports); any other value is stored as its names.

use crate::backend::Backend;
use crate::directory::{
    CmsLocation, Directory, DirectoryError, DirectoryOperation, SqlServerName, SwapStamp,
};
use crate::error::{BackendError, ErrorKind};
use crate::model::{InstanceAddr, Store, Topology};
use crate::server::LocationRecord;
use async_trait::async_trait;
use std::sync::Arc;

/// The SQL location record of every instance of a topology, read and swapped through a
/// [`Backend`]. [`Directory::commit_on_target`] is `true`: a failover swaps it on its target.
pub struct SqlRecordDirectory {
    backend: Arc<dyn Backend>,
    topology: Topology,
}

impl SqlRecordDirectory {
    /// The records of `topology`'s instances, through `backend`.
    pub fn new(backend: Arc<dyn Backend>, topology: Topology) -> Self {
        Self { backend, topology }
    }

    fn instance(&self, dc: &str, op: DirectoryOperation) -> Result<InstanceAddr, DirectoryError> {
        self.topology
            .instances()
            .find(|i| i.to_string().eq_ignore_ascii_case(dc))
            .cloned()
            .ok_or_else(|| {
                DirectoryError::new(
                    ErrorKind::InvalidState,
                    op,
                    dc,
                    "not an instance of the topology (the SQL record's domain controllers are its instances)",
                )
            })
    }

    /// The value a record (or its absence) stands for.
    fn value_of(&self, r: Option<&LocationRecord>) -> CmsLocation {
        CmsLocation::of_store(r.map_or(&self.topology.active, |r| &r.active))
    }

    /// The store to record for `value`: the topology's store it names, else its names.
    fn store_for(&self, value: &CmsLocation) -> Result<Store, String> {
        if let Some(s) = [&self.topology.active, &self.topology.backup]
            .into_iter()
            .find(|s| CmsLocation::of_store(s) == *value)
        {
            return Ok(s.clone());
        }
        Store::new(
            value.backend.to_addr(),
            value.mirror.as_ref().map(SqlServerName::to_addr),
        )
        .map_err(|e| e.to_string())
    }

    async fn read_record(
        &self,
        i: &InstanceAddr,
        op: DirectoryOperation,
    ) -> Result<Option<LocationRecord>, DirectoryError> {
        self.backend
            .read_location(i)
            .await
            .map_err(|e| from_backend(e, op))
    }

    async fn swap(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
        stamp: Option<&SwapStamp>,
    ) -> Result<(), DirectoryError> {
        let op = DirectoryOperation::CompareAndSwap;
        let i = self.instance(dc, op)?;
        let stored = self.read_record(&i, op).await?;
        let current = self.value_of(stored.as_ref());
        let stored_epoch = stored.as_ref().map(|r| r.epoch);
        if current == *new && stamp.is_none_or(|s| stored_epoch.is_some_and(|e| e >= s.epoch)) {
            return Ok(());
        }
        if current != *expected && current != *new {
            return Err(conflict(dc, expected, current));
        }
        let active = self
            .store_for(new)
            .map_err(|m| DirectoryError::new(ErrorKind::InvalidState, op, dc, m))?;
        let record = LocationRecord {
            epoch: stamp.map_or(stored_epoch.unwrap_or(0) + 1, |s| s.epoch),
            active,
            run_id: stamp.map_or_else(|| "directory".to_string(), |s| s.run_id.clone()),
        };
        match self.backend.write_location(&i, &record, stored_epoch).await {
            Ok(()) => Ok(()),
            // The epoch moved between the read and the write: someone else wrote a record.
            // It counts as this swap only with this swap's value at this swap's epoch or
            // later: the value alone may be the stale record the swap was to replace.
            Err(e) if e.kind == ErrorKind::InvalidState => match self.read_record(&i, op).await {
                Ok(r) => {
                    let f = self.value_of(r.as_ref());
                    let epoch_reached = r.as_ref().is_some_and(|r| r.epoch >= record.epoch);
                    if f == *new && epoch_reached {
                        Ok(())
                    } else if f == *new {
                        Err(from_backend(e, op))
                    } else {
                        Err(conflict(dc, expected, f))
                    }
                }
                Err(_) => Err(from_backend(e, op)),
            },
            Err(e) => Err(from_backend(e, op)),
        }
    }
}

fn conflict(dc: &str, expected: &CmsLocation, found: CmsLocation) -> DirectoryError {
    DirectoryError {
        found: Some(Box::new(found.clone())),
        ..DirectoryError::new(
            ErrorKind::InvalidState,
            DirectoryOperation::CompareAndSwap,
            dc,
            format!("the location record names {found}, not {expected}"),
        )
    }
}

fn from_backend(e: BackendError, op: DirectoryOperation) -> DirectoryError {
    DirectoryError::new(e.kind, op, &e.instance, e.to_string())
}

#[async_trait]
impl Directory for SqlRecordDirectory {
    fn name(&self) -> &str {
        "sql-record"
    }

    fn domain_controllers(&self) -> Vec<String> {
        self.topology.instances().map(|i| i.to_string()).collect()
    }

    fn describe_swap(&self, expected: &CmsLocation, new: &CmsLocation) -> Vec<String> {
        vec![format!(
            "compare-and-swap of master.dbo.cms_failover_location on the target: {expected} -> {new} (guarded by the stored epoch)"
        )]
    }

    fn commit_on_target(&self) -> bool {
        true
    }

    async fn read(&self, dc: &str) -> Result<CmsLocation, DirectoryError> {
        let op = DirectoryOperation::Read;
        let i = self.instance(dc, op)?;
        let r = self.read_record(&i, op).await?;
        Ok(self.value_of(r.as_ref()))
    }

    async fn compare_and_swap(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
    ) -> Result<(), DirectoryError> {
        self.swap(dc, expected, new, None).await
    }

    async fn compare_and_swap_stamped(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
        stamp: &SwapStamp,
    ) -> Result<(), DirectoryError> {
        self.swap(dc, expected, new, Some(stamp)).await
    }
}
