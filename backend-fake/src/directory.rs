//! An in-memory Active Directory holding the CMS service control point on several domain
//! controllers, with seeded-in faults for the property tests: an unreachable DC, a time-out,
//! a lagging DC that still returns the old value, a change made by someone else, and
//! "applied but the answer was lost".
//!
//! Replication is explicit: a swap lands on the DC it was sent to; [`FakeDirectory::replicate`]
//! copies the newest value to every DC that is not lagging (as AD's multi-master replication
//! eventually does).

use async_trait::async_trait;
use failover_core::{CmsLocation, Directory, DirectoryError, DirectoryOperation, ErrorKind};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A fault for the next calls to one DC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryFault {
    /// Refuses connections.
    Unreachable,
    /// Does not answer in time (the swap is *not* applied).
    Timeout,
    /// Applies the swap, then the answer is lost (the caller sees a time-out).
    LostAnswer,
}

#[derive(Debug, Clone)]
struct Dc {
    value: CmsLocation,
    /// Version of `value` (bumps with every change), to replicate the newest.
    version: u64,
    lagging: bool,
    fault: Option<DirectoryFault>,
}

/// The in-memory directory. The first DC is the one changes are sent to.
#[derive(Debug)]
pub struct FakeDirectory {
    dcs: Mutex<BTreeMap<usize, (String, Dc)>>,
    swaps: Mutex<Vec<(String, CmsLocation, CmsLocation)>>,
}

impl FakeDirectory {
    /// A directory whose DCs (`dc01.cms.test`, …, `dcN`) all hold `value`.
    pub fn new(value: CmsLocation, dcs: usize) -> Self {
        let map = (0..dcs.max(1))
            .map(|i| {
                (
                    i,
                    (
                        format!("dc{:02}.cms.test", i + 1),
                        Dc {
                            value: value.clone(),
                            version: 0,
                            lagging: false,
                            fault: None,
                        },
                    ),
                )
            })
            .collect();
        Self {
            dcs: Mutex::new(map),
            swaps: Mutex::new(Vec::new()),
        }
    }

    fn with<R>(&self, dc: &str, f: impl FnOnce(&mut Dc) -> R) -> Option<R> {
        let mut dcs = self.dcs.lock().unwrap_or_else(|p| p.into_inner());
        dcs.values_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(dc))
            .map(|(_, d)| f(d))
    }

    /// Sets a fault on `dc` (until cleared with `None`).
    pub fn set_fault(&self, dc: &str, fault: Option<DirectoryFault>) {
        self.with(dc, |d| d.fault = fault);
    }

    /// Makes `dc` miss replication (it keeps returning what it has).
    pub fn set_lagging(&self, dc: &str, lagging: bool) {
        self.with(dc, |d| d.lagging = lagging);
    }

    /// Someone else (another administrator, a `Set-CsConfigurationStoreLocation`) writes
    /// `value` on `dc`.
    pub fn change_behind_our_back(&self, dc: &str, value: CmsLocation) {
        self.with(dc, |d| {
            d.value = value;
            d.version += 1;
        });
    }

    /// Copies the newest value to every DC that is not lagging.
    pub fn replicate(&self) {
        let mut dcs = self.dcs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(newest) = dcs
            .values()
            .max_by_key(|(_, d)| d.version)
            .map(|(_, d)| (d.value.clone(), d.version))
        else {
            return;
        };
        for (_, d) in dcs.values_mut() {
            if !d.lagging && d.version < newest.1 {
                d.value = newest.0.clone();
                d.version = newest.1;
            }
        }
    }

    /// What `dc` holds now, read past any fault (for checks).
    pub fn value_on(&self, dc: &str) -> Option<CmsLocation> {
        self.with(dc, |d| d.value.clone())
    }

    /// Every swap applied, in order: (DC, from, to).
    pub fn swaps(&self) -> Vec<(String, CmsLocation, CmsLocation)> {
        self.swaps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn missing(dc: &str, op: DirectoryOperation) -> DirectoryError {
        DirectoryError::new(ErrorKind::Unreachable, op, dc, "no such domain controller")
    }
}

fn fault_error(dc: &str, op: DirectoryOperation, f: DirectoryFault) -> DirectoryError {
    match f {
        DirectoryFault::Unreachable => DirectoryError::new(
            ErrorKind::Unreachable,
            op,
            dc,
            "connection refused (injected)",
        ),
        DirectoryFault::Timeout | DirectoryFault::LostAnswer => {
            DirectoryError::new(ErrorKind::Timeout, op, dc, "no answer in time (injected)")
        }
    }
}

#[async_trait]
impl Directory for FakeDirectory {
    fn name(&self) -> &str {
        "fake"
    }

    fn domain_controllers(&self) -> Vec<String> {
        let dcs = self.dcs.lock().unwrap_or_else(|p| p.into_inner());
        dcs.values().map(|(n, _)| n.clone()).collect()
    }

    fn describe_swap(&self, expected: &CmsLocation, new: &CmsLocation) -> Vec<String> {
        vec![format!("replace {expected} by {new} (in-memory directory)")]
    }

    async fn read(&self, dc: &str) -> Result<CmsLocation, DirectoryError> {
        let op = DirectoryOperation::Read;
        self.with(dc, |d| match d.fault {
            Some(f) => Err(fault_error(dc, op, f)),
            None => Ok(d.value.clone()),
        })
        .unwrap_or_else(|| Err(Self::missing(dc, op)))
    }

    async fn compare_and_swap(
        &self,
        dc: &str,
        expected: &CmsLocation,
        new: &CmsLocation,
    ) -> Result<(), DirectoryError> {
        let op = DirectoryOperation::CompareAndSwap;
        // (the answer, whether the swap was applied)
        let (answer, applied) = self
            .with(dc, |d| {
                if let Some(f @ (DirectoryFault::Unreachable | DirectoryFault::Timeout)) = d.fault {
                    return (Err(fault_error(dc, op, f)), false);
                }
                if &d.value == new {
                    return (Ok(()), false);
                }
                if &d.value != expected {
                    let e = DirectoryError {
                        found: Some(Box::new(d.value.clone())),
                        ..DirectoryError::new(
                            ErrorKind::InvalidState,
                            op,
                            dc,
                            format!("the directory holds {}, not {expected}", d.value),
                        )
                    };
                    return (Err(e), false);
                }
                d.value = new.clone();
                d.version += 1;
                match d.fault {
                    Some(f @ DirectoryFault::LostAnswer) => (Err(fault_error(dc, op, f)), true),
                    _ => (Ok(()), true),
                }
            })
            .unwrap_or_else(|| (Err(Self::missing(dc, op)), false));
        if applied {
            self.swaps.lock().unwrap_or_else(|p| p.into_inner()).push((
                dc.to_string(),
                expected.clone(),
                new.clone(),
            ));
        }
        answer
    }
}
