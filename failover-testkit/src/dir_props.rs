//! Property tests of the directory as the commit point: planned failovers and disaster
//! recoveries over the fake estate committing to a [`FakeDirectory`] with seeded faults (a DC
//! unreachable, a time-out, an answer lost after the swap landed, a lagging DC, the value
//! changed behind our back) and crash points at every backend and directory call, before
//! and after the swap.
//!
//! Invariants, checked for every history:
//! 1. never two writable copies of a database (from the estate's history);
//! 2. after any completed run that succeeded, the directory names the single writable store;
//! 3. a run that did not succeed and needs no restore left the directory as it was and the
//!    source serving;
//! 4. after a crash or a needs-restore, the settling run (restore, or the disaster recovery
//!    again) converges: one writable store, named by the directory and by the highest SQL
//!    record, and no unfinished run in the journal.

use crate::props::{Interposer, Kind, Timing, check_single_writer, request};
use async_trait::async_trait;
use backend_fake::fixtures::{self, Options, StandbyCopy};
use backend_fake::{DirectoryFault, Estate, FakeBackend, FakeDirectory, Snapshot};
use failover_core::{
    CmsLocation, Directory, DirectoryError, Driver, InstanceAddr, MemoryJournal, Outcome, Store,
    SwapStamp, Topology,
};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Where a history crashes the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// At backend call `n` (after applying it when `true`).
    Backend(usize, bool),
    /// At directory call `n` (a swap applied first when `true`).
    Directory(usize, bool),
}

/// One generated history.
#[derive(Debug, Clone)]
pub struct DirScenario {
    /// Planned or disaster recovery.
    pub kind: Kind,
    /// Both stores mirrored.
    pub mirrored: bool,
    /// RESTORING standby copies.
    pub restoring_standby: bool,
    /// Domain controllers (1 to 3).
    pub dcs: usize,
    /// The last DC lags: it returns the old value for this many reads.
    pub lagging_reads: Option<usize>,
    /// Fault seed.
    pub seed: u64,
    /// Fault rate per directory call (unreachable, time-out, lost answer).
    pub fault_rate: f64,
    /// Someone else points the directory elsewhere at this directory call.
    pub behind_our_back_at: Option<usize>,
    /// Crash point.
    pub crash: Option<Crash>,
    /// Disaster recovery with the old source down.
    pub source_down: bool,
}

/// The generator.
pub fn dir_scenarios() -> impl Strategy<Value = DirScenario> {
    (
        prop_oneof![Just(Kind::Planned), Just(Kind::Disaster)],
        any::<bool>(),
        any::<bool>(),
        1usize..=3,
        prop::option::weighted(0.3, prop_oneof![1usize..4, Just(usize::MAX)]),
        any::<u64>(),
        prop_oneof![Just(0.0), 0.0f64..0.4],
        prop::option::weighted(0.15, 0usize..6),
        prop::option::weighted(
            0.5,
            prop_oneof![
                (0usize..40, any::<bool>()).prop_map(|(n, a)| Crash::Backend(n, a)),
                (0usize..8, any::<bool>()).prop_map(|(n, a)| Crash::Directory(n, a)),
            ],
        ),
        any::<bool>(),
    )
        .prop_map(
            |(kind, mirrored, restoring, dcs, lag, seed, rate, behind, crash, down)| {
                DirScenario {
                    kind,
                    mirrored,
                    restoring_standby: restoring,
                    dcs,
                    lagging_reads: lag.filter(|_| dcs > 1),
                    seed,
                    fault_rate: rate,
                    behind_our_back_at: behind,
                    // Someone else's change is not settled by a restore: the operator
                    // first decides which value is right, so no crash with it.
                    crash: crash.filter(|_| behind.is_none()),
                    source_down: down && kind == Kind::Disaster,
                }
            },
        )
}

/// The fake directory with the scenario's faults and crash point.
struct FaultyDirectory {
    inner: Arc<FakeDirectory>,
    calls: AtomicUsize,
    rng: AtomicU64,
    rate: Mutex<f64>,
    behind_at: Mutex<Option<usize>>,
    elsewhere: CmsLocation,
    crash: Mutex<Option<(usize, bool)>>,
    crashed: Arc<Notify>,
    lagging: Mutex<Option<(String, usize)>>,
}

impl FaultyDirectory {
    /// A deterministic draw in [0, 1).
    fn draw(&self) -> f64 {
        let mut x = self.rng.load(Ordering::SeqCst) | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::SeqCst);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Counts the call; the fault it gets (if any); whether it is the crash point.
    fn before(&self, dc: &str) -> (Option<DirectoryFault>, Option<bool>) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if *self.behind_at.lock().unwrap_or_else(|p| p.into_inner()) == Some(n) {
            let first = self.inner.domain_controllers()[0].clone();
            self.inner
                .change_behind_our_back(&first, self.elsewhere.clone());
        }
        let crash = self
            .crash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|(k, _)| *k == n)
            .map(|(_, a)| a);
        let rate = *self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let fault = (self.draw() < rate).then(|| match (self.draw() * 3.0) as u32 {
            0 => DirectoryFault::Unreachable,
            1 => DirectoryFault::Timeout,
            _ => DirectoryFault::LostAnswer,
        });
        self.inner.set_fault(dc, fault);
        (fault, crash)
    }

    async fn crash(&self) -> ! {
        self.crashed.notify_one();
        std::future::pending::<()>().await;
        unreachable!()
    }

    /// Replication between calls; the lagging DC catches up after its reads run out.
    fn replicate(&self, read_dc: &str) {
        let mut lag = self.lagging.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((dc, left)) = lag.as_mut()
            && dc.eq_ignore_ascii_case(read_dc)
        {
            if *left == 0 {
                self.inner.set_lagging(dc, false);
                *lag = None;
            } else if *left != usize::MAX {
                *left -= 1;
            }
        }
        drop(lag);
        self.inner.replicate();
    }
}

#[async_trait]
impl Directory for FaultyDirectory {
    fn name(&self) -> &str {
        "fake"
    }
    fn domain_controllers(&self) -> Vec<String> {
        self.inner.domain_controllers()
    }
    fn describe_swap(&self, e: &CmsLocation, n: &CmsLocation) -> Vec<String> {
        self.inner.describe_swap(e, n)
    }
    async fn read(&self, dc: &str) -> Result<CmsLocation, DirectoryError> {
        let (_, crash) = self.before(dc);
        if crash.is_some() {
            self.crash().await
        }
        self.replicate(dc);
        let r = self.inner.read(dc).await;
        self.inner.set_fault(dc, None);
        r
    }
    async fn compare_and_swap(
        &self,
        dc: &str,
        e: &CmsLocation,
        n: &CmsLocation,
    ) -> Result<(), DirectoryError> {
        let (_, crash) = self.before(dc);
        if let Some(applied) = crash {
            if applied {
                self.inner.set_fault(dc, None);
                let _ = self.inner.compare_and_swap(dc, e, n).await;
            }
            self.crash().await
        }
        let r = self.inner.compare_and_swap(dc, e, n).await;
        self.inner.set_fault(dc, None);
        r
    }
    async fn compare_and_swap_stamped(
        &self,
        dc: &str,
        e: &CmsLocation,
        n: &CmsLocation,
        _s: &SwapStamp,
    ) -> Result<(), DirectoryError> {
        self.compare_and_swap(dc, e, n).await
    }
}

/// The one store every writable copy belongs to, if there is exactly one writable copy of
/// each database and they all are in one store.
fn writable_store(snap: &Snapshot, topo: &Topology, reachable: bool) -> Result<Store, String> {
    let mut at: Option<InstanceAddr> = None;
    for db in &topo.databases {
        let w = if reachable {
            snap.writable_reachable_copies(db)
        } else {
            snap.writable_copies(db)
        };
        match w.as_slice() {
            [one] if at.as_ref().is_none_or(|a| a == one) => at = Some(one.clone()),
            other => return Err(format!("{db} writable on {other:?}")),
        }
    }
    let at = at.expect("a database");
    topo.store_of(&at)
        .cloned()
        .ok_or_else(|| format!("writable on {at}, outside the topology"))
}

/// The directory (first DC) names the single writable store, and so does the highest SQL
/// record.
fn directory_names_the_writer(
    dir: &FakeDirectory,
    snap: &Snapshot,
    topo: &Topology,
    reachable: bool,
) -> Result<(), String> {
    let store = writable_store(snap, topo, reachable)?;
    let dc = dir.domain_controllers()[0].clone();
    let v = dir.value_on(&dc).expect("dc");
    if !v.points_at(&store) {
        return Err(format!("the directory names {v} but {store} is writable"));
    }
    let rec = snap.highest_location().ok_or("no SQL record")?;
    if rec.active != store {
        return Err(format!(
            "the highest SQL record (epoch {}) names {}, {store} is writable",
            rec.epoch, rec.active
        ));
    }
    Ok(())
}

enum Ran {
    Finished(Outcome),
    Crashed,
}

async fn run(
    estate: &Estate,
    dir: Arc<FaultyDirectory>,
    journal: &MemoryJournal,
    req: failover_core::FailoverRequest,
    crash_backend: Option<(usize, bool)>,
    crashed: Arc<Notify>,
) -> Ran {
    let backend = Arc::new(Interposer::crashing(
        Arc::new(FakeBackend::new(estate.clone())),
        crash_backend,
        crashed.clone(),
    ));
    let driver = Driver::new(backend.clone())
        .with_directory(dir)
        .with_journal(Arc::new(journal.clone()));
    let r = tokio::select! {
        biased;
        _ = crashed.notified() => Ran::Crashed,
        r = driver.run(req) => Ran::Finished(r.outcome),
    };
    drop(driver);
    drop(backend);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    r
}

/// Runs one history and checks the invariants.
pub async fn check_directory(sc: &DirScenario) -> Result<(), String> {
    let t = Timing::paused();
    let fx = fixtures::build(&Options::default().mirrored(sc.mirrored).standby(
        if sc.restoring_standby {
            StandbyCopy::Restoring
        } else {
            StandbyCopy::OnlineReadOnly
        },
    ));
    let (estate, topo) = (fx.estate, fx.topology);
    if sc.source_down {
        for i in topo.active.instances() {
            estate.set_reachable(i, false).map_err(|e| e.0)?;
        }
    }
    let initial = CmsLocation::of_store(&topo.active);
    let fake = Arc::new(FakeDirectory::new(initial.clone(), sc.dcs));
    let dcs = fake.domain_controllers();
    let lagging = sc.lagging_reads.map(|n| {
        let dc = dcs[dcs.len() - 1].clone();
        fake.set_lagging(&dc, true);
        (dc, n)
    });
    let elsewhere = CmsLocation {
        backend: failover_core::SqlServerName::parse("sql-x.cms.test\\RTC").expect("name"),
        mirror: None,
    };
    let crashed = Arc::new(Notify::new());
    let dir = Arc::new(FaultyDirectory {
        inner: fake.clone(),
        calls: AtomicUsize::new(0),
        rng: AtomicU64::new(sc.seed),
        rate: Mutex::new(sc.fault_rate),
        behind_at: Mutex::new(sc.behind_our_back_at),
        elsewhere: elsewhere.clone(),
        crash: Mutex::new(match sc.crash {
            Some(Crash::Directory(n, a)) => Some((n, a)),
            _ => None,
        }),
        crashed: crashed.clone(),
        lagging: Mutex::new(lagging),
    });
    let journal = MemoryJournal::new();
    let crash_backend = match sc.crash {
        Some(Crash::Backend(n, a)) => Some((n, a)),
        _ => None,
    };
    let mut req = request(sc.kind, &topo, "run", &t);
    req.settings.directory_timeout = t.wait;
    let r = run(&estate, dir.clone(), &journal, req, crash_backend, crashed).await;
    // A disaster recovery may leave an unreachable old source writable: it is fenced when
    // it can be, and reported otherwise.
    let single_writer = sc.kind == Kind::Planned;
    if single_writer {
        check_single_writer(&estate, 0)?;
    }
    let behind = dir.calls.load(Ordering::SeqCst) > sc.behind_our_back_at.unwrap_or(usize::MAX);
    // The crash point and someone else's change belong to the first run only.
    *dir.crash.lock().unwrap_or_else(|p| p.into_inner()) = None;
    *dir.behind_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let settle = match &r {
        Ran::Finished(o @ Outcome::Succeeded { .. }) => {
            let named =
                directory_names_the_writer(&fake, &estate.snapshot(), &topo, sc.source_down);
            // Someone else's value may only stand if it came after our swap landed.
            let theirs_after_ours = behind && !fake.swaps().is_empty();
            if let Err(e) = named
                && !theirs_after_ours
            {
                return Err(format!("after {o}: {e}"));
            }
            false
        }
        Ran::Finished(Outcome::NeedsRestore { .. }) | Ran::Crashed => true,
        Ran::Finished(o) => {
            let v = fake.value_on(&dcs[0]).expect("dc");
            let expect = if behind { &elsewhere } else { &initial };
            if v != *expect {
                return Err(format!("{o} but the directory now holds {v}"));
            }
            if !sc.source_down {
                let store = writable_store(&estate.snapshot(), &topo, sc.source_down)?;
                if store != topo.active {
                    return Err(format!("{o} but {store} is writable"));
                }
            }
            false
        }
    };
    if !settle {
        return Ok(());
    }
    // Settle: the operator runs what docs/recovery.md says (faults gone on the last try).
    // A directory that someone pointed at a store outside the topology is refused by every
    // run ("doesn't match the one in the topology"): the operator first points it back at
    // the topology's active store, then restore follows it.
    if behind && fake.value_on(&dcs[0]).as_ref() == Some(&elsewhere) {
        for dc in &dcs {
            fake.change_behind_our_back(dc, initial.clone());
        }
    }
    for attempt in 0..3 {
        if attempt == 2 {
            *dir.rate.lock().unwrap_or_else(|p| p.into_inner()) = 0.0;
        }
        let kind = if sc.kind == Kind::Disaster {
            Kind::Disaster
        } else {
            Kind::Restore
        };
        let before = estate.history().len();
        let mut req = request(kind, &topo, &format!("settle-{attempt}"), &t);
        req.settings.directory_timeout = t.wait;
        let Ran::Finished(o) = run(&estate, dir.clone(), &journal, req, None, Arc::default()).await
        else {
            unreachable!("no crash point")
        };
        if single_writer {
            check_single_writer(&estate, before)?;
        }
        if matches!(o, Outcome::Succeeded { .. }) {
            directory_names_the_writer(&fake, &estate.snapshot(), &topo, sc.source_down)
                .map_err(|e| format!("settled ({o}): {e}"))?;
            let records = failover_core::Journal::records(&journal).map_err(|e| e.to_string())?;
            let left = failover_core::journal::unfinished_runs(&records);
            if !left.is_empty() {
                return Err(format!("settled but {} unfinished run(s) left", left.len()));
            }
            return Ok(());
        }
        if attempt == 2 {
            return Err(format!("settling without faults did not converge: {o}"));
        }
    }
    unreachable!()
}
