//! Property tests of every failover mode against a `backend-fake` estate with injected
//! faults, reusable by every backend (the estate may be served over TDS by the simulator).
//!
//! A [`Scenario`] is one generated history: a fixture, a mode, a fault seed and rates, and
//! optional crash, cancellation and concurrency points. [`check`] runs it and checks the
//! safety invariants after every mutation (from the estate's history) and at the end:
//!
//! 1. planned and restore runs never leave two writable copies of a database at any instant;
//! 2. a planned run never promotes a target behind the source's fenced position;
//! 3. a failure after the fence leaves the source writable again, or is reported as needing
//!    restore, and a restore then converges;
//! 4. what-if changes nothing;
//! 5. a crash between any two calls, then restore, ends failed over or back on the source,
//!    never stuck and never with two writable copies;
//! 6. a second concurrent run is refused and changes nothing;
//! 7. disaster recovery reports the data-loss estimate correctly;
//! 8. every run ends in exactly one outcome, and the estate agrees with it;
//! 9. a planned run gated on the Backup Service (a fake answering every state, errors,
//!    garbage and hangs, see [`crate::gate`]) promotes only after `FinalState` after the
//!    fence; a refusal by the gate changes nothing, a failure after the fence rolls back.

use crate::gate::{FakeGate, GateAnswer, gate_scripts};
use async_trait::async_trait;
use backend_fake::fixtures::{self, Options, StandbyCopy};
use backend_fake::{
    Change, Estate, EstateEvent, FaultConfig, FaultRates, Snapshot, TimeoutFault, WitnessConnection,
};
use failover_core::backup_service::ExportState;
use failover_core::driver::{Observer, RunEvent};
use failover_core::{
    Backend, BackendError, CancelHandle, DatabaseName, DatabasePosition, Driver, FailoverRequest,
    Failure, InstanceAddr, InstanceProbe, LocationRecord, LockAttempt, MemoryJournal,
    MirrorFailoverKind, Mode, Outcome, RunReport, StateName, Store, Topology,
};
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Builds backends that talk to an estate (directly, or through the TDS simulator).
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// A new client (its own sessions, like a separate process) of `estate`.
    async fn connect(&self, estate: &Estate) -> Arc<dyn Backend>;
}

/// [`BackendFactory`] for `backend_fake::FakeBackend`.
pub struct FakeFactory;

#[async_trait]
impl BackendFactory for FakeFactory {
    async fn connect(&self, estate: &Estate) -> Arc<dyn Backend> {
        Arc::new(backend_fake::FakeBackend::new(estate.clone()))
    }
}

/// The mode of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Planned failover.
    Planned,
    /// Disaster recovery to the backup store.
    Disaster,
    /// Restore, starting from an interrupted planned failover (crashed at a random call).
    Restore,
}

/// One generated history.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The mode.
    pub kind: Kind,
    /// Both stores mirrored.
    pub mirrored: bool,
    /// The backup store mirrored (with [`Scenario::mirrored`] off: the backup store only,
    /// the active store unmirrored; ONLINE read-only standby copies).
    pub backup_mirrored: bool,
    /// Standby copies RESTORING (log shipping) rather than ONLINE read-only.
    pub restoring_standby: bool,
    /// Standby copies restored `WITH STANDBY` (log shipping: ONLINE, read-only,
    /// `is_in_standby`; promoted with `RESTORE … WITH RECOVERY`, 5063 on `SET READ_WRITE`).
    /// Takes precedence over [`Scenario::restoring_standby`].
    pub log_shipping_standby: bool,
    /// Initial replication lag.
    pub lag: u64,
    /// The link starts stalled.
    pub stalled: bool,
    /// Fault seed.
    pub seed: u64,
    /// Total fault rate per call (split over the kinds).
    pub fault_rate: f64,
    /// Crash the client at this call number (counting every call), applied or not.
    pub crash_at: Option<(usize, bool)>,
    /// Cancel when this step starts (counting steps).
    pub cancel_at: Option<usize>,
    /// Plan only.
    pub what_if: bool,
    /// Disaster recovery with the old source down.
    pub source_down: bool,
    /// Disaster recovery with the backup principal down (its mirror must be forced).
    pub backup_principal_down: bool,
    /// Start a second run while the first holds the lock.
    pub concurrent: bool,
    /// Stall the replication link just before the fence (after the replication gate passed),
    /// so the backup is behind the fenced position and stays there.
    pub stall_before_fence: bool,
    /// Planned: gate on a fake Backup Service answering this script first (then honestly).
    pub gate: Option<Vec<GateAnswer>>,
    /// SQL Server refuses `SET READ_ONLY` on a mirroring principal with 1468 (issue 12 item
    /// 3; `Estate::set_read_only_refused_on_mirroring_principal`).
    pub read_only_refused_on_mirroring_principal: bool,
    /// Mirrored, ONLINE read-only standby: the backup store is served by its mirror partner,
    /// so a planned failover gives the principal role back with `SET PARTNER FAILOVER`.
    pub backup_on_mirror: bool,
    /// Estate ticks between `SET PARTNER FAILOVER` returning and the roles switching.
    pub switch_delay: u64,
    /// Mirrored: every session gets a witness connected to both partners and fails over by
    /// itself this many ticks after its principal is lost
    /// (`Estate::set_automatic_failover`).
    pub automatic_failover: Option<u64>,
    /// Mirrored: this many ticks into the run the backup store's witness connects as given
    /// (a witness dropping off the mirror, or back), a scheduled estate event.
    pub witness_flip: Option<(u64, WitnessConnection)>,
    /// Mirrored, planned: the active principal is lost this many ticks into the run (its
    /// mirror may then take over by itself).
    pub source_lost_at: Option<u64>,
    /// Estate ticks between `FORCE_SERVICE_ALLOW_DATA_LOSS` returning and the forced mirror
    /// switching (drawn for disaster recoveries whose backup principal is down).
    pub force_delay: u64,
}

impl Scenario {
    /// A scenario with nothing drawn: unmirrored ONLINE read-only copies, no lag, no faults,
    /// no crash or cancellation; a disaster recovery has its old source down. Tests set the
    /// fields they vary.
    pub fn plain(kind: Kind) -> Self {
        Self {
            kind,
            mirrored: false,
            backup_mirrored: false,
            restoring_standby: false,
            log_shipping_standby: false,
            lag: 0,
            stalled: false,
            seed: 1,
            fault_rate: 0.0,
            crash_at: None,
            cancel_at: None,
            what_if: false,
            source_down: kind == Kind::Disaster,
            backup_principal_down: false,
            concurrent: false,
            stall_before_fence: false,
            gate: None,
            read_only_refused_on_mirroring_principal: false,
            backup_on_mirror: false,
            switch_delay: 0,
            automatic_failover: None,
            witness_flip: None,
            source_lost_at: None,
            force_delay: 0,
        }
    }
}

impl Default for Scenario {
    /// A planned run on the unmirrored fixture: no lag, no faults, no crash, nothing else
    /// (seed 0; the source up whatever `kind` a caller then sets).
    fn default() -> Self {
        Self {
            seed: 0,
            ..Self::plain(Kind::Planned)
        }
    }
}

/// The generator of scenarios.
pub fn scenarios() -> impl Strategy<Value = Scenario> {
    (
        (
            prop_oneof![
                Just(Kind::Planned),
                Just(Kind::Disaster),
                Just(Kind::Restore)
            ],
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0u64), 1u64..50],
            prop::bool::weighted(0.1),
            any::<u64>(),
        ),
        (
            prop_oneof![Just(0.0), 0.0f64..0.25],
            prop::option::weighted(0.3, (0usize..40, any::<bool>())),
            prop::option::weighted(0.15, 0usize..14),
            prop::bool::weighted(0.1),
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.15),
        ),
        (
            prop::option::weighted(0.25, gate_scripts()),
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.35),
            prop_oneof![Just(0u64), 1u64..60],
            prop_oneof![Just(0u64), 1u64..60],
        ),
        (
            prop::option::weighted(0.3, 0u64..20),
            prop::option::weighted(
                0.2,
                (
                    1u64..40,
                    prop_oneof![
                        Just(WitnessConnection::PrincipalOnly),
                        Just(WitnessConnection::Neither),
                        Just(WitnessConnection::Both),
                    ],
                ),
            ),
            prop::option::weighted(0.15, 1u64..40),
        ),
    )
        .prop_map(
            |(
                (kind, mirrored, restoring, lag, stalled, seed),
                (fault_rate, crash_at, cancel_at, what_if, source_down, bp_down, concurrent, stall),
                (gate, standby, ro_refused, on_mirror, switch_delay, force_delay),
                (automatic_failover, witness_flip, source_lost_at),
            )| {
                // Only the backup store mirrored (the active store unmirrored): one
                // unmirrored scenario in four, drawn from the seed's high bits (the fault
                // draws use the seed as a whole).
                let backup_mirrored = !mirrored && (seed >> 62) == 0;
                let b_mirrored = mirrored || backup_mirrored;
                let bp_down =
                    bp_down && kind == Kind::Disaster && b_mirrored && !restoring && !standby;
                Scenario {
                    kind,
                    mirrored,
                    backup_mirrored,
                    restoring_standby: restoring,
                    log_shipping_standby: standby,
                    lag,
                    stalled,
                    seed,
                    fault_rate,
                    crash_at,
                    cancel_at,
                    what_if,
                    source_down: source_down && kind == Kind::Disaster,
                    backup_principal_down: bp_down,
                    concurrent: concurrent && kind == Kind::Planned && !what_if,
                    stall_before_fence: stall && kind == Kind::Planned,
                    gate: gate.filter(|_| kind == Kind::Planned),
                    read_only_refused_on_mirroring_principal: ro_refused && b_mirrored,
                    backup_on_mirror: on_mirror && b_mirrored && !restoring && !standby && !bp_down,
                    switch_delay,
                    automatic_failover: automatic_failover.filter(|_| mirrored),
                    witness_flip: witness_flip.filter(|_| mirrored),
                    source_lost_at: source_lost_at.filter(|_| mirrored && kind == Kind::Planned),
                    force_delay: if bp_down { force_delay } else { 0 },
                }
            },
        )
}

/// Timeouts used by a check. Fake runs use paused time, so these cost nothing; runs over
/// TCP use real time and should use [`Timing::wire`].
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Per-call timeout.
    pub step: Duration,
    /// Poll interval.
    pub poll: Duration,
    /// Replication / catch-up timeouts.
    pub wait: Duration,
    /// Hang faults become delays of this length when set (over TCP a hang costs a timeout).
    pub hang_as_delay: Option<Duration>,
}

impl Timing {
    /// For the in-memory fake under paused time.
    pub fn paused() -> Self {
        Self {
            step: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            wait: Duration::from_secs(20),
            hang_as_delay: None,
        }
    }
    /// For real sockets: short timeouts.
    pub fn wire() -> Self {
        Self {
            step: Duration::from_millis(1500),
            poll: Duration::from_millis(20),
            wait: Duration::from_secs(3),
            hang_as_delay: None,
        }
    }
}

pub(crate) fn fault_config(sc: &Scenario, t: &Timing) -> FaultConfig {
    let r = sc.fault_rate;
    let rates = FaultRates::none()
        .transient(r * 0.4)
        .timeout(r * 0.15)
        .unreachable(r * 0.15)
        .permission(r * 0.05)
        .invalid_state(r * 0.05)
        .fatal(r * 0.05)
        .delay(r * 0.15);
    let mut cfg = FaultConfig::seeded(sc.seed)
        .with_default_rates(rates)
        .with_delay(t.poll);
    cfg = match t.hang_as_delay {
        Some(d) => cfg.with_timeout_as(TimeoutFault::Delay(d)),
        None => cfg.with_timeout_as(TimeoutFault::Hang),
    };
    cfg
}

pub(crate) fn request(kind: Kind, topo: &Topology, run: &str, t: &Timing) -> FailoverRequest {
    let mode = match kind {
        Kind::Planned => Mode::Planned,
        Kind::Disaster => Mode::DisasterRecovery {
            target: topo.backup.clone(),
        },
        Kind::Restore => Mode::Restore,
    };
    let mut r = FailoverRequest::new(run, topo.clone(), mode).expect("request");
    r.settings.step_timeout = t.step;
    r.settings.poll_interval = t.poll;
    r.settings.catch_up_poll_interval = t.poll;
    r.settings.replication_timeout = t.wait;
    r.settings.catch_up_timeout = t.wait;
    r.settings.undo_timeout = t.step * 4;
    r.settings.dr_fence_timeout = t.step;
    r.settings.mirror_switch_timeout = t.wait;
    r.settings.retry_backoff = t.poll / 2;
    r
}

/// Wraps a backend: crashes (the call never returns and the run is dropped) at call `n`,
/// after applying it when `applied`; or pauses the first call after the lock is held until
/// `resume` is notified (for concurrency checks).
pub(crate) struct Interposer {
    inner: Arc<dyn Backend>,
    calls: AtomicUsize,
    crash_at: Option<(usize, bool)>,
    crashed: Arc<Notify>,
    crashed_flag: AtomicBool,
    pause_after_lock: Option<(Arc<Notify>, Arc<Notify>)>,
    locked: AtomicBool,
    paused_once: AtomicBool,
    stall: Option<(Estate, backend_fake::LinkId)>,
    acquiring: AtomicUsize,
}

impl Interposer {
    /// A backend that crashes at call `crash_at` (after applying it when `.1`), notifying
    /// `crashed`.
    pub(crate) fn crashing(
        inner: Arc<dyn Backend>,
        crash_at: Option<(usize, bool)>,
        crashed: Arc<Notify>,
    ) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            crash_at,
            crashed,
            crashed_flag: AtomicBool::new(false),
            pause_after_lock: None,
            locked: AtomicBool::new(false),
            paused_once: AtomicBool::new(false),
            stall: None,
            acquiring: AtomicUsize::new(0),
        }
    }

    async fn gate(&self, mutating_apply: bool) -> Option<bool> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some((k, applied)) = self.crash_at
            && n == k
        {
            return Some(applied && mutating_apply);
        }
        // Pause at the first call after the whole lock step (not between two lock calls of
        // one step), so the first run holds every lock it took while the second runs.
        if let Some((locked_tx, resume)) = &self.pause_after_lock
            && self.locked.load(Ordering::SeqCst)
            && self.acquiring.load(Ordering::SeqCst) == 0
            && !self.paused_once.swap(true, Ordering::SeqCst)
        {
            locked_tx.notify_one();
            resume.notified().await;
        }
        None
    }

    async fn crash(&self) -> ! {
        self.crashed_flag.store(true, Ordering::SeqCst);
        self.crashed.notify_one();
        std::future::pending::<()>().await;
        unreachable!()
    }
}

macro_rules! interpose {
    ($self:ident, $call:expr) => {{
        match $self.gate(true).await {
            Some(true) => {
                let _ = $call.await;
                $self.crash().await
            }
            Some(false) => $self.crash().await,
            None => $call.await,
        }
    }};
}

#[async_trait]
impl Backend for Interposer {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn probe(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        interpose!(self, self.inner.probe(i, d))
    }
    async fn positions(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        interpose!(self, self.inner.positions(i, d))
    }
    async fn set_read_only(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        ro: bool,
    ) -> Result<(), BackendError> {
        // Right before the fence (the gate has passed): stall replication there. (The lock
        // check that used to come just before the fence now rides in the gate's own step.)
        if ro && let Some((estate, link)) = &self.stall {
            estate.set_link_stalled(*link, true);
        }
        interpose!(self, self.inner.set_read_only(i, d, ro))
    }
    async fn recover(&self, i: &InstanceAddr, d: &[DatabaseName]) -> Result<(), BackendError> {
        interpose!(self, self.inner.recover(i, d))
    }
    async fn mirror_failover(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        k: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError> {
        interpose!(self, self.inner.mirror_failover(i, d, k))
    }
    async fn acquire_lock(&self, i: &InstanceAddr, r: &str) -> Result<LockAttempt, BackendError> {
        self.acquiring.fetch_add(1, Ordering::SeqCst);
        let out = interpose!(self, self.inner.acquire_lock(i, r));
        self.acquiring.fetch_sub(1, Ordering::SeqCst);
        if matches!(out, Ok(LockAttempt::Granted)) {
            self.locked.store(true, Ordering::SeqCst);
        }
        out
    }
    async fn release_lock(&self, i: &InstanceAddr, r: &str) -> Result<(), BackendError> {
        interpose!(self, self.inner.release_lock(i, r))
    }
    async fn lock_held(&self, i: &InstanceAddr, r: &str) -> Result<bool, BackendError> {
        interpose!(self, self.inner.lock_held(i, r))
    }
    async fn read_location(
        &self,
        i: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        interpose!(self, self.inner.read_location(i))
    }
    async fn write_location(
        &self,
        i: &InstanceAddr,
        r: &LocationRecord,
        e: Option<u64>,
    ) -> Result<(), BackendError> {
        interpose!(self, self.inner.write_location(i, r, e))
    }
}

struct CancelAt {
    at: usize,
    steps: AtomicUsize,
    handle: CancelHandle,
}

impl Observer for CancelAt {
    fn on_event(&self, e: &RunEvent) {
        if let RunEvent::StepStarted { .. } = e
            && self.steps.fetch_add(1, Ordering::SeqCst) == self.at
        {
            self.handle.cancel();
        }
    }
}

/// What one run did, for the checks.
#[derive(Debug)]
pub enum RunResult {
    /// It ended with a report.
    Finished(Box<RunReport>),
    /// The client crashed mid-run.
    Crashed,
}

/// Runs a request with an optional crash point and cancellation.
#[allow(clippy::too_many_arguments)] // a test harness: each knob is one scenario field
pub(crate) async fn run_one(
    factory: &dyn BackendFactory,
    estate: &Estate,
    journal: &MemoryJournal,
    req: FailoverRequest,
    crash_at: Option<(usize, bool)>,
    cancel_at: Option<usize>,
    pause: Option<(Arc<Notify>, Arc<Notify>)>,
    stall: Option<(Estate, backend_fake::LinkId)>,
    gate: Option<Arc<FakeGate>>,
) -> RunResult {
    let inner = factory.connect(estate).await;
    let crashed = Arc::new(Notify::new());
    let backend = Arc::new(Interposer {
        inner,
        calls: AtomicUsize::new(0),
        crash_at,
        crashed: crashed.clone(),
        crashed_flag: AtomicBool::new(false),
        pause_after_lock: pause,
        locked: AtomicBool::new(false),
        paused_once: AtomicBool::new(false),
        stall,
        acquiring: AtomicUsize::new(0),
    });
    let mut driver = Driver::new(backend.clone()).with_journal(Arc::new(journal.clone()));
    if let Some(g) = gate {
        driver = driver.with_backup_service(g);
    }
    if let Some(at) = cancel_at {
        let handle = CancelHandle::new();
        driver = driver
            .with_cancel(handle.clone())
            .with_observer(Arc::new(CancelAt {
                at,
                steps: AtomicUsize::new(0),
                handle,
            }));
    }
    let result = tokio::select! {
        biased;
        _ = crashed.notified() => RunResult::Crashed,
        r = driver.run(req) => RunResult::Finished(Box::new(r)),
    };
    if std::env::var_os("CMS_FAILOVER_PROPTEST_DEBUG").is_some() {
        match &result {
            RunResult::Finished(r) => {
                eprintln!("--- run {} {}: {}", r.run_id, r.mode, r.outcome);
                for st in &r.steps {
                    for o in &st.ops {
                        eprintln!(
                            "  [{}] {} x{} {:?}",
                            st.state,
                            o.summary,
                            o.attempts,
                            o.error.as_ref().map(|e| e.to_string())
                        );
                    }
                }
                eprintln!("  warnings: {:?}", r.warnings);
            }
            RunResult::Crashed => eprintln!("--- crashed"),
        }
    }
    // The client process is gone: its connections (and session locks) close. Over TCP the
    // server notices a moment later, as a real one would.
    drop(driver);
    drop(backend);
    tokio::time::sleep(Duration::from_millis(20)).await;
    result
}

/// The changes to databases and location records between two points of the history.
pub fn db_changes_between(estate: &Estate, from: usize, to: usize) -> Vec<String> {
    estate.history()[from..to]
        .iter()
        .filter(|m| {
            matches!(
                m.change,
                Change::ReadOnly { .. }
                    | Change::State { .. }
                    | Change::Role { .. }
                    | Change::LocationWritten(_)
            )
        })
        .map(|m| format!("{} {:?} {:?}", m.instance, m.database, m.change))
        .collect()
}

/// Invariant 1 over a history slice: never two writable copies.
pub(crate) fn check_single_writer(estate: &Estate, from: usize) -> Result<(), String> {
    for m in &estate.history()[from..] {
        if m.database.is_some() && m.writable_after.len() > 1 {
            return Err(format!(
                "two writable copies of {:?} after {:?} on {} at tick {}: {:?}",
                m.database, m.change, m.instance, m.tick, m.writable_after
            ));
        }
    }
    Ok(())
}

/// Invariant 2: no promotion behind the fenced position.
fn check_no_data_loss(
    estate: &Estate,
    from: usize,
    source: &Store,
    target: &Store,
) -> Result<(), String> {
    let hist = estate.history();
    for m in &hist[from..] {
        let Some(db) = &m.database else { continue };
        let opened_at = match &m.change {
            Change::ReadOnly {
                read_only: false,
                position,
            } if target.contains(&m.instance) => Some(*position),
            _ => None,
        };
        if let Some(q) = opened_at {
            // The last fence of this database on the source before this point.
            let fenced = hist[from..]
                .iter()
                .take_while(|x| !std::ptr::eq(*x, m))
                .filter(|x| x.database.as_ref() == Some(db) && source.contains(&x.instance))
                .filter_map(|x| match x.change {
                    Change::ReadOnly {
                        read_only: true,
                        position,
                    } => Some(position),
                    _ => None,
                })
                .last();
            if let Some(p) = fenced
                && q < p
            {
                return Err(format!(
                    "{db} promoted on {} at position {q}, behind the fenced position {p}",
                    m.instance
                ));
            }
        }
    }
    Ok(())
}

/// The store of every writable (reachable) copy, if they all agree.
pub(crate) fn converged(
    snap: &Snapshot,
    topo: &Topology,
    reachable_only: bool,
) -> Result<InstanceAddr, String> {
    let mut at: Option<InstanceAddr> = None;
    for db in &topo.databases {
        let w = if reachable_only {
            snap.writable_reachable_copies(db)
        } else {
            snap.writable_copies(db)
        };
        match w.as_slice() {
            [one] => match &at {
                None => at = Some(one.clone()),
                Some(a) if a == one => {}
                Some(a) => return Err(format!("{db} writable on {one}, other databases on {a}")),
            },
            [] => return Err(format!("{db} is writable nowhere")),
            many => return Err(format!("{db} writable on {many:?}")),
        }
    }
    let at = at.expect("at least one database");
    let rec = snap.highest_location().ok_or("no location record")?;
    if !rec.active.contains(&at) {
        return Err(format!(
            "writable on {at} but the highest location record (epoch {}) says {}",
            rec.epoch, rec.active
        ));
    }
    Ok(at)
}

/// The instances a needs-restore outcome could not fence because SQL Server refuses
/// `SET READ_ONLY` there in a database mirroring session (1468), whose advice is to remove
/// mirroring there and run restore again; `None` for any other outcome.
fn refused_in_mirroring_session(outcome: &Outcome) -> Option<Vec<InstanceAddr>> {
    use failover_core::{Failure, UndoFailure};
    let errors = match outcome {
        Outcome::NeedsRestore {
            undo: Some(UndoFailure::TargetNotRefenced { errors }),
            ..
        } => errors,
        Outcome::NeedsRestore { failure, .. } => match &**failure {
            Failure::OthersNotFenced { errors } => errors,
            _ => return None,
        },
        _ => return None,
    };
    let instances: Vec<InstanceAddr> = errors
        .iter()
        .filter(|e| e.code == Some(failover_core::sqlerror::IN_MIRRORING_SESSION))
        .filter_map(|e| InstanceAddr::parse(&e.instance).ok())
        .collect();
    (!instances.is_empty()).then_some(instances)
}

/// Restores until converged: up to three attempts with faults on, then without faults for
/// as long as each attempt ends with advice the operator follows (see the loop).
#[allow(clippy::too_many_arguments)] // a test harness: each knob is one scenario field
pub(crate) async fn restore_until_converged(
    factory: &dyn BackendFactory,
    estate: &Estate,
    journal: &MemoryJournal,
    topo: &Topology,
    t: &Timing,
    reachable_only: bool,
    dr: bool,
    clock: u64,
) -> Result<(), String> {
    // Set once the operator gave the old source up after a disaster recovery was refused
    // because SQL Server refuses to fence its mirroring principal.
    let mut gave_up_source = false;
    // Attempts 3 on run without faults, and one that neither converges nor gives advice the
    // operator follows (below) fails the check at once: the later attempts run only after
    // the operator followed an outcome's advice (each of those happens at most once or
    // twice, so eight attempts are enough for all of them after the faults stop).
    for attempt in 0..8 {
        if attempt == 3 {
            estate.set_faults_enabled(false);
            if !dr {
                // A restore refuses while it cannot see every copy ("bring it back, then run
                // restore again"): the operator does so before the last attempt.
                for i in estate.instances() {
                    estate.set_reachable(&i, true).map_err(|e| e.0)?;
                }
            }
        }
        let before = estate.history().len();
        let kind = if dr { Kind::Disaster } else { Kind::Restore };
        let mut req = request(kind, topo, &format!("settle-{clock}-{attempt}"), t);
        // The operator's clock moves on (a minute per attempt) when one was given.
        if clock > 0 {
            req.settings.epoch_clock = clock + 60 * (attempt + 1);
        }
        let RunResult::Finished(report) =
            run_one(factory, estate, journal, req, None, None, None, None, None).await
        else {
            unreachable!("no crash point")
        };
        if !dr {
            check_single_writer(estate, before)?;
        }
        if matches!(report.outcome, Outcome::Succeeded { .. }) {
            converged(&estate.snapshot(), topo, reachable_only)?;
            // The interrupted run is settled: nothing unfinished is left in the journal.
            let records = failover_core::Journal::records(journal).map_err(|e| e.to_string())?;
            let left = failover_core::journal::unfinished_runs(&records);
            if !left.is_empty() {
                return Err(format!(
                    "converged but the journal still holds unfinished runs: {:?}",
                    left.iter().map(|u| &u.run_id).collect::<Vec<_>>()
                ));
            }
            return Ok(());
        }
        if let Some(instances) = refused_in_mirroring_session(&report.outcome) {
            // SQL Server refuses READ_ONLY on a mirroring principal the run had to fence
            // (1468): the operator follows the outcome's advice, removes mirroring there
            // (`SET PARTNER OFF`) and runs restore again.
            for i in instances {
                for db in &topo.databases {
                    // A database outside any session (already removed) is left as it is.
                    let _ = estate.remove_mirroring(db, &i);
                }
            }
            continue;
        }
        if dr
            && !gave_up_source
            && matches!(
                report.outcome.refusal(),
                Some(failover_core::Refusal::FenceRefusedInMirroringSession { .. })
            )
        {
            // The old source is up and SQL Server refuses READ_ONLY on its mirroring
            // principal: the operator follows the refusal's advice and gives that store up
            // (shuts it down), then runs the disaster recovery again.
            for i in topo.active.instances() {
                estate.set_reachable(i, false).map_err(|e| e.0)?;
            }
            gave_up_source = true;
            continue;
        }
        if dr
            && let Some(failover_core::Refusal::WitnessDisconnected {
                instance,
                databases,
                ..
            }) = report.outcome.refusal()
        {
            // The mirror to be forced sees its witness DISCONNECTED: the operator follows the
            // refusal's advice and removes the witness (`SET WITNESS OFF` on the mirror).
            for db in databases {
                estate.set_witness(db, instance, None).map_err(|e| e.0)?;
            }
            continue;
        }
        if dr
            && let Some(Failure::ForceFailed { error: Some(e) }) = report.outcome.failure()
            && e.code == Some(1455)
        {
            // The witness lost the mirror between preflight and the force (1455), and the
            // run rolled back saying so: the operator runs the disaster recovery again, and
            // its preflight then shows the witness state (and refuses with what to do).
            continue;
        }
        if dr && let Some(Failure::ForcePartlyRefused { mirror, .. }) = report.outcome.failure() {
            // Forced for some databases, refused (1455) for others: the operator follows the
            // outcome's advice, `SET WITNESS OFF` on the mirror, and runs it again.
            for db in &topo.databases {
                // A database outside any session (already forced and suspended) is left be.
                let _ = estate.set_witness(db, mirror, None);
            }
            continue;
        }
        if dr
            && matches!(
                report.outcome.failure(),
                Some(Failure::ForcedSwitchIncomplete { .. })
            )
        {
            // A forced switch did not land within the run's wait (a slow one, or one that
            // an earlier run's 1404 kept from being sent): the outcome says to run the
            // disaster recovery again, which waits for it or forces it again.
            continue;
        }
        if attempt >= 3 {
            return Err(format!(
                "restore without faults did not converge: {}",
                report.outcome
            ));
        }
    }
    Err("restore did not converge".into())
}

/// Automatic failover, the witness flip and the source loss of `sc` (see their fields): the
/// witnesses are set, the events scheduled from the estate's present tick.
fn witnesses_and_events(estate: &Estate, topo: &Topology, sc: &Scenario) {
    if !sc.mirrored {
        return;
    }
    let backup_mirrored = !sc.restoring_standby && !sc.log_shipping_standby;
    if sc.automatic_failover.is_some() || sc.witness_flip.is_some() {
        for db in &topo.databases {
            let mut partners = vec![&topo.active.principal];
            if backup_mirrored {
                partners.push(&topo.backup.principal);
            }
            for p in partners {
                estate
                    .set_witness(db, p, Some((fixtures::WITNESS, WitnessConnection::Both)))
                    .expect("a mirrored fixture session");
            }
        }
    }
    estate.set_automatic_failover(sc.automatic_failover);
    let now = estate.now();
    if let Some((at, c)) = sc.witness_flip
        && backup_mirrored
    {
        for db in &topo.databases {
            estate.schedule(
                now + at,
                EstateEvent::Witness {
                    database: db.clone(),
                    partner: topo.backup.principal.clone(),
                    witness: Some((fixtures::WITNESS.into(), c)),
                },
            );
        }
    }
    if let Some(at) = sc.source_lost_at {
        estate.schedule(
            now + at,
            EstateEvent::Reachable {
                instance: topo.active.principal.clone(),
                reachable: false,
            },
        );
    }
}

/// Runs one scenario and checks every invariant. `Err` describes the violation.
pub async fn check(factory: &dyn BackendFactory, sc: &Scenario, t: Timing) -> Result<(), String> {
    let fx = fixtures::build(
        &Options::default()
            .mirrored(sc.mirrored)
            .backup_mirrored(sc.backup_mirrored)
            .backup_on_mirror(sc.backup_on_mirror)
            .switch_delay(sc.switch_delay)
            .force_delay(sc.force_delay)
            .lag(sc.lag)
            .stalled(sc.stalled)
            .read_only_refused_on_mirroring_principal(sc.read_only_refused_on_mirroring_principal)
            .standby(if sc.log_shipping_standby {
                StandbyCopy::Standby
            } else if sc.restoring_standby {
                StandbyCopy::Restoring
            } else {
                StandbyCopy::OnlineReadOnly
            }),
    );
    let (estate, topo, link) = (fx.estate, fx.topology, fx.link);
    let stall = sc.stall_before_fence.then(|| (estate.clone(), link));
    let journal = MemoryJournal::new();
    estate.set_faults(fault_config(sc, &t));
    estate.set_faults_enabled(sc.fault_rate > 0.0);
    witnesses_and_events(&estate, &topo, sc);

    if sc.kind == Kind::Restore {
        // An interrupted planned failover: crash at a random call (or a planned run that
        // simply failed), then restore must converge.
        let crash = Some(
            sc.crash_at
                .unwrap_or((sc.seed as usize % 30, sc.seed.is_multiple_of(2))),
        );
        let req = request(Kind::Planned, &topo, "interrupted", &t);
        let start = estate.history().len();
        let _ = run_one(
            factory, &estate, &journal, req, crash, None, None, None, None,
        )
        .await;
        check_single_writer(&estate, start)?;
        if sc.what_if {
            // A role switch the interrupted run asked for lands by itself, a number of ticks
            // after its statement (SQL Server returns before the roles switch): let it land
            // first, so that what the what-if changed is all that is left to see.
            estate.advance(sc.switch_delay.saturating_add(1));
            let before = estate.history().len();
            let mut req = request(Kind::Restore, &topo, "restore-what-if", &t);
            req.what_if = true;
            let _ = run_one(
                factory, &estate, &journal, req, None, None, None, None, None,
            )
            .await;
            let changed = db_changes_between(&estate, before, estate.history().len());
            let locks = estate.history()[before..]
                .iter()
                .any(|m| matches!(m.change, Change::LockAcquired { .. }));
            if !changed.is_empty() || locks {
                return Err(format!("what-if restore changed things: {changed:?}"));
            }
        }
        return restore_until_converged(factory, &estate, &journal, &topo, &t, false, false, 0)
            .await;
    }

    if sc.source_down {
        for i in topo.active.instances() {
            estate.set_reachable(i, false).map_err(|e| e.0)?;
        }
    }
    if sc.backup_principal_down {
        estate
            .set_reachable(&topo.backup.principal, false)
            .map_err(|e| e.0)?;
    }
    let start = estate.history().len();
    let mut req = request(sc.kind, &topo, "run-1", &t);
    req.what_if = sc.what_if;
    let gate = sc.gate.clone().map(|script| {
        req.settings.backup_service = Some(failover_core::BackupServiceSettings {
            final_state_timeout: t.wait,
            poll_interval: t.poll,
        });
        Arc::new(FakeGate::new(
            estate.clone(),
            topo.clone(),
            script,
            t.poll * 4,
            t.hang_as_delay.is_none(),
        ))
    });

    // Set when a concurrent second run rightly went ahead (the first had lost its lock):
    // then the first run's outcome cannot be compared with the estate alone.
    let both_ran = AtomicBool::new(false);
    let result = if sc.concurrent {
        // The first run is held still (inside one of its calls) while the second runs: it
        // must not time out meanwhile, or it would run concurrently and blur what the
        // second run changed.
        req.settings.step_timeout = Duration::from_secs(86_400);
        let locked = Arc::new(Notify::new());
        let resume = Arc::new(Notify::new());
        let second: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
        let two_writers = &both_ran;
        let first = run_one(
            factory,
            &estate,
            &journal,
            req,
            sc.crash_at,
            sc.cancel_at,
            Some((locked.clone(), resume.clone())),
            stall.clone(),
            gate.clone(),
        );
        let second_started = AtomicBool::new(false);
        // Set when the first run ends (finished or crashed: its sessions and locks gone).
        let first_ended = AtomicBool::new(false);
        let other = async {
            locked.notified().await;
            second_started.store(true, Ordering::SeqCst);
            // The first run may already have lost a lock (its connection dropped): then the
            // second may rightly proceed. Only a first run holding both locks must refuse it.
            let snap = estate.snapshot();
            let strict = [&topo.active.principal, &topo.backup.principal]
                .iter()
                .all(|i| snap.lock_holder(i, "cms-failover").is_some());
            let from = estate.history().len();
            let journal2 = MemoryJournal::new();
            let req2 = request(Kind::Planned, &topo, "run-2", &t);
            let r = run_one(
                factory, &estate, &journal2, req2, None, None, None, None, None,
            )
            .await;
            let changes = db_changes_between(&estate, from, estate.history().len());
            // A first run that ended while the second ran released its locks: the second
            // may then rightly have gone ahead.
            let strict = strict && !first_ended.load(Ordering::SeqCst);
            let verdict = match r {
                RunResult::Finished(rep) => match rep.outcome {
                    Outcome::Refused { .. } if changes.is_empty() => Ok(()),
                    _ if !strict => Ok(()),
                    o => Err(format!(
                        "second concurrent run was not refused cleanly: {o}; changes {changes:?}"
                    )),
                },
                RunResult::Crashed => Err("second run crashed".into()),
            };
            *second.lock().unwrap() = Some(verdict);
            two_writers.store(!strict, Ordering::SeqCst);
            resume.notify_one();
        };
        // If the first run never takes the lock (refused, crashed, cancelled), the second never
        // starts: stop waiting for it as soon as the first is done.
        let first_done = Notify::new();
        let (r, ()) = tokio::join!(
            async {
                let r = first.await;
                first_ended.store(true, Ordering::SeqCst);
                first_done.notify_one();
                r
            },
            async {
                tokio::pin!(other);
                let finished = tokio::select! {
                    () = &mut other => true,
                    () = first_done.notified() => false,
                };
                // A second run that has started is run to its end (dropping it half-way
                // would be a crash of it, whose changes the first run's checks would see).
                if !finished && second_started.load(Ordering::SeqCst) {
                    (&mut other).await;
                }
            }
        );
        if let Some(v) = second.lock().unwrap().take() {
            v?;
        }
        r
    } else {
        run_one(
            factory,
            &estate,
            &journal,
            req,
            sc.crash_at,
            sc.cancel_at,
            None,
            stall,
            gate.clone(),
        )
        .await
    };

    let dr = sc.kind == Kind::Disaster;
    if !dr {
        check_single_writer(&estate, start)?;
    }
    if sc.kind == Kind::Planned {
        check_no_data_loss(&estate, start, &topo.active, &topo.backup)?;
    }
    let end = estate.history().len();
    if both_ran.load(Ordering::SeqCst) {
        return Ok(());
    }
    let report = match result {
        RunResult::Crashed => {
            // Invariant 5: resume by restore.
            return restore_until_converged(factory, &estate, &journal, &topo, &t, dr, dr, 0).await;
        }
        RunResult::Finished(r) => r,
    };
    if sc.what_if {
        let changed = db_changes_between(&estate, start, end);
        let locks = estate.history()[start..]
            .iter()
            .any(|m| matches!(m.change, Change::LockAcquired { .. }));
        if !changed.is_empty() || locks {
            return Err(format!("what-if changed things: {changed:?}"));
        }
        return Ok(());
    }
    if !estate.snapshot().locks.is_empty() {
        return Err(format!(
            "locks left behind after {}: {:?}",
            report.outcome,
            estate.snapshot().locks
        ));
    }
    let snap = estate.snapshot();
    if let (Some(g), Outcome::Succeeded { .. }) = (&gate, &report.outcome) {
        check_final_state_after_fence(&estate, start, &topo, g)?;
    }
    match &report.outcome {
        Outcome::Succeeded { active, .. } => {
            let at = converged(&snap, &topo, dr)?;
            let target = &topo.backup;
            if !target.contains(&at) || &at != active {
                return Err(format!(
                    "succeeded but writable on {at} (reported {active})"
                ));
            }
            if dr {
                check_loss_estimate(&estate, start, &report, &topo, sc)?;
            }
        }
        Outcome::Refused { refusal } => {
            let changed = db_changes_between(&estate, start, end);
            if !changed.is_empty() {
                return Err(format!("refused ({refusal}) but changed: {changed:?}"));
            }
        }
        Outcome::RolledBack { .. } | Outcome::Cancelled { .. } => {
            // Invariant 3: the source is back in service, alone (down or not).
            let at = converged(&snap, &topo, false)?;
            if !topo.active.contains(&at) {
                return Err(format!("{} but writable on {at}", report.outcome));
            }
        }
        Outcome::NeedsRestore { .. } => {
            // Restore needs the recorded store; while a disaster's source is down, the
            // operator re-runs the disaster recovery instead.
            let rerun = dr && sc.source_down;
            restore_until_converged(factory, &estate, &journal, &topo, &t, dr, rerun, 0).await?;
        }
    }
    if report.states.last() != Some(&StateName::Done) {
        return Err(format!("run ended in state {:?}", report.states.last()));
    }
    Ok(())
}

/// Invariant 9: a planned run gated on the Backup Service promotes only after the gate
/// answered `FinalState` after the (last) fence.
fn check_final_state_after_fence(
    estate: &Estate,
    start: usize,
    topo: &Topology,
    gate: &FakeGate,
) -> Result<(), String> {
    let hist = estate.history();
    let fence = hist[start..]
        .iter()
        .rposition(|m| {
            matches!(
                m.change,
                Change::ReadOnly {
                    read_only: true,
                    ..
                }
            ) && topo.active.contains(&m.instance)
        })
        .map(|i| start + i)
        .ok_or("a gated planned run succeeded without fencing the source")?;
    let answers = gate.answers();
    if answers
        .iter()
        .any(|(at, s)| *at > fence && *s == ExportState::FinalState)
    {
        Ok(())
    } else {
        Err(format!(
            "a gated planned run succeeded without FinalState after the fence (mutation {fence}); gate answers: {answers:?}"
        ))
    }
}

/// Invariant 7: the estimate is source-after-fence minus the target read before promotion,
/// "unknown" when the source was never seen, and an upper bound of what was lost.
fn check_loss_estimate(
    estate: &Estate,
    start: usize,
    report: &RunReport,
    topo: &Topology,
    sc: &Scenario,
) -> Result<(), String> {
    let est = report
        .data_loss
        .as_ref()
        .ok_or("disaster recovery reported no data-loss estimate")?;
    let hist = estate.history();
    for db in &topo.databases {
        let e = est
            .iter()
            .find(|e| &e.database == db)
            .ok_or(format!("no estimate for {db}"))?;
        if sc.source_down {
            if e.changes_at_risk.is_some() {
                return Err(format!(
                    "{db}: source was down but the estimate is {:?}",
                    e.changes_at_risk
                ));
            }
            continue;
        }
        let fenced = hist[start..].iter().find_map(|m| match m.change {
            Change::ReadOnly {
                read_only: true,
                position,
            } if m.database.as_ref() == Some(db) && topo.active.contains(&m.instance) => {
                Some(position)
            }
            _ => None,
        });
        if let (Some(p), Some(s)) = (fenced, e.source_position) {
            if s.0 != u128::from(p) {
                return Err(format!(
                    "{db}: estimate uses source position {} but the fence was at {p}",
                    s.0
                ));
            }
            if let (Some(t), Some(risk)) = (e.target_position, e.changes_at_risk) {
                if risk != t.lag_behind(failover_core::Position(p.into())) {
                    return Err(format!("{db}: risk {risk} != {p} - {}", t.0));
                }
                let promoted = hist[start..].iter().find_map(|m| match m.change {
                    Change::ReadOnly {
                        read_only: false,
                        position,
                    }
                    | Change::State { position, .. }
                        if m.database.as_ref() == Some(db) && topo.backup.contains(&m.instance) =>
                    {
                        Some(position)
                    }
                    _ => None,
                });
                if let Some(q) = promoted
                    && p.saturating_sub(q) > risk
                {
                    return Err(format!(
                        "{db}: lost {} changes but estimated at most {risk}",
                        p - q
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A backend that keeps something alive as long as it lives (e.g. the simulator serving it).
pub struct WithGuard {
    backend: Arc<dyn Backend>,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl WithGuard {
    /// Wraps `backend`, keeping `guard` alive with it.
    pub fn new(backend: Arc<dyn Backend>, guard: impl std::any::Any + Send + Sync) -> Self {
        Self {
            backend,
            _guard: Box::new(guard),
        }
    }
}

#[async_trait]
impl Backend for WithGuard {
    fn name(&self) -> &str {
        self.backend.name()
    }
    fn statements(&self, op: &failover_core::Op) -> Vec<String> {
        self.backend.statements(op)
    }
    async fn probe(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        self.backend.probe(i, d).await
    }
    async fn positions(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        self.backend.positions(i, d).await
    }
    async fn set_read_only(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        ro: bool,
    ) -> Result<(), BackendError> {
        self.backend.set_read_only(i, d, ro).await
    }
    async fn recover(&self, i: &InstanceAddr, d: &[DatabaseName]) -> Result<(), BackendError> {
        self.backend.recover(i, d).await
    }
    async fn mirror_failover(
        &self,
        i: &InstanceAddr,
        d: &[DatabaseName],
        k: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError> {
        self.backend.mirror_failover(i, d, k).await
    }
    async fn acquire_lock(&self, i: &InstanceAddr, r: &str) -> Result<LockAttempt, BackendError> {
        self.backend.acquire_lock(i, r).await
    }
    async fn release_lock(&self, i: &InstanceAddr, r: &str) -> Result<(), BackendError> {
        self.backend.release_lock(i, r).await
    }
    async fn lock_held(&self, i: &InstanceAddr, r: &str) -> Result<bool, BackendError> {
        self.backend.lock_held(i, r).await
    }
    async fn read_location(
        &self,
        i: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        self.backend.read_location(i).await
    }
    async fn write_location(
        &self,
        i: &InstanceAddr,
        r: &LocationRecord,
        e: Option<u64>,
    ) -> Result<(), BackendError> {
        self.backend.write_location(i, r, e).await
    }
}

/// The seed used when neither the environment nor git gives one.
pub const FALLBACK_SEED: u64 = 0x00C0_FFEE;

/// Where the seed of the generated histories came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedSource {
    /// `PROPTEST_RNG_SEED` (a replay, or set by CI).
    Env,
    /// `CMS_FAILOVER_PROPTEST_RANDOM`: a fresh random seed.
    Random,
    /// Derived from this commit (`git rev-parse HEAD`).
    Commit(String),
    /// [`FALLBACK_SEED`]: no variable and no git checkout.
    Fallback,
}

/// The seed of the generated histories, and where it came from ([`read_seed`]), chosen once
/// per process: the seed printed with the replay command is the one every run uses, a
/// random one included.
pub fn seed() -> (u64, SeedSource) {
    static SEED: std::sync::OnceLock<(u64, SeedSource)> = std::sync::OnceLock::new();
    SEED.get_or_init(read_seed).clone()
}

/// Reads the seed afresh: `PROPTEST_RNG_SEED=<u64>` if set; a fresh random one with
/// `CMS_FAILOVER_PROPTEST_RANDOM=1`; else derived from the commit being tested (the first 16
/// hex digits of `git rev-parse HEAD`), so the histories change with every commit and any
/// run can be replayed; else [`FALLBACK_SEED`].
pub fn read_seed() -> (u64, SeedSource) {
    if let Some(seed) = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return (seed, SeedSource::Env);
    }
    if std::env::var_os("CMS_FAILOVER_PROPTEST_RANDOM").is_some() {
        use std::hash::{BuildHasher, RandomState};
        return (RandomState::new().hash_one(0u8), SeedSource::Random);
    }
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string());
    match head
        .as_deref()
        .and_then(|h| u64::from_str_radix(h.get(..16)?, 16).ok())
    {
        Some(seed) => (seed, SeedSource::Commit(head.unwrap_or_default())),
        None => (FALLBACK_SEED, SeedSource::Fallback),
    }
}

/// The seed as proptest's [`RngSeed`](proptest::test_runner::RngSeed) (see [`seed`]).
pub fn rng_seed() -> proptest::test_runner::RngSeed {
    proptest::test_runner::RngSeed::Fixed(seed().0)
}

/// The command that replays a property test run with `seed` and `cases`: `test` is the
/// `cargo test` selection, e.g. `-p failover-testkit --test props_fake -- shard_0 --exact`;
/// `cases_var` the variable that sets the number of cases.
pub fn replay_command(seed: u64, cases_var: &str, cases: u32, test: &str) -> String {
    format!("PROPTEST_RNG_SEED={seed} {cases_var}={cases} cargo test {test}")
}

/// The proptest configuration of a property test run: `cases` cases from [`seed`] plus
/// `shard` (so parallel shards and backends check different histories), printed to stderr
/// with the replay command (the test harness shows it when the test fails), no failure
/// persistence.
pub fn proptest_config(
    cases: u32,
    cases_var: &str,
    test: &str,
    shard: u64,
) -> proptest::test_runner::Config {
    print_seed(cases, cases_var, test, &[shard]);
    shard_config(cases, shard)
}

/// Prints the seed, where it came from and the replay command.
fn print_seed(cases: u32, cases_var: &str, test: &str, shards: &[u64]) {
    let (base, source) = seed();
    let from = match &source {
        SeedSource::Env => "PROPTEST_RNG_SEED".to_string(),
        SeedSource::Random => "CMS_FAILOVER_PROPTEST_RANDOM".to_string(),
        SeedSource::Commit(c) => format!("commit {c}"),
        SeedSource::Fallback => "the fixed fallback (no git checkout)".to_string(),
    };
    eprintln!(
        "property tests: {cases} cases, seed {base} + shard {shards:?} (from {from}); replay \
         with:\n  {}",
        replay_command(base, cases_var, cases, test)
    );
}

fn shard_config(cases: u32, shard: u64) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed().0.wrapping_add(shard)),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// The number of cases from `var`, else `default`.
pub fn cases_from_env(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many threads share a backend's wire cases: a wire case spends nearly all its time
/// waiting on sockets and timers (measured: 40 cases, 21 s wall, 0.5 s CPU), so shards in
/// parallel threads divide the wall time without competing for the CPU.
pub const WIRE_SHARDS: u64 = 4;

/// Runs `cases` generated scenarios through `factory` over real sockets (wire timing, hangs
/// turned into late answers) in [`WIRE_SHARDS`] parallel shards, panicking with the minimal
/// failing scenario and the replay command. `test` is the `cargo test` selection printed in
/// the replay command; `backend` (0, 1, …) keeps each backend's histories apart.
pub fn run_wire_properties(factory: &dyn BackendFactory, cases: u32, test: &str, backend: u64) {
    let per_shard = cases.div_ceil(WIRE_SHARDS as u32);
    let shards: Vec<u64> = (0..WIRE_SHARDS).map(|k| backend * 1000 + k).collect();
    print_seed(cases, WIRE_CASES_VAR, test, &shards);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .map(|&shard| s.spawn(move || run_wire_shard(factory, per_shard, shard)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(r) => r.err(),
                Err(_) => Some("a shard panicked (see its output above)".to_string()),
            })
            .collect()
    });
    if !failures.is_empty() {
        panic!(
            "{}\nreplay: {}",
            failures.join("\n\n"),
            replay_command(seed().0, WIRE_CASES_VAR, cases, test)
        );
    }
}

fn run_wire_shard(factory: &dyn BackendFactory, cases: u32, shard: u64) -> Result<(), String> {
    use proptest::test_runner::{Config, TestRunner};
    let config = Config {
        max_shrink_iters: 64,
        ..shard_config(cases, shard)
    };
    let mut runner = TestRunner::new(config);
    runner
        .run(&scenarios(), |sc| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let timing = Timing {
                hang_as_delay: Some(Duration::from_millis(1600)),
                ..Timing::wire()
            };
            rt.block_on(check(factory, &sc, timing))
                .map_err(proptest::test_runner::TestCaseError::fail)
        })
        .map_err(|e| format!("shard {shard}: {e}"))
}

/// The variable that sets the number of wire property-test cases per backend.
pub const WIRE_CASES_VAR: &str = "CMS_FAILOVER_WIRE_PROPTEST_CASES";
/// The variable that sets the number of property-test cases against the fake (per shard).
pub const FAKE_CASES_VAR: &str = "CMS_FAILOVER_PROPTEST_CASES";

/// A current-thread runtime with paused time, for driving [`check`] from a plain `#[test]`.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

/// The variations [`sweep`] checks around one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    /// Crash at each of the first this many calls (every other one with its answer lost).
    pub crash_points: usize,
    /// Fault seeds `0..fault_seeds`, each at [`Sweep::fault_rate`].
    pub fault_seeds: u64,
    /// The fault rate of the seeded runs.
    pub fault_rate: f64,
    /// Every this many seeds, also cancel the run (at call `seed % 9`).
    pub cancel_every: Option<u64>,
}

/// Checks `base` against the fake under paused time, then `base` crashed at each crash
/// point, then with seeded faults (and cancellations); panics naming `tag` and the first
/// variation that breaks an invariant.
pub fn sweep(rt: &tokio::runtime::Runtime, base: &Scenario, tag: &str, s: Sweep) {
    let run = |sc: &Scenario, what: &str| assert_scenario(rt, sc, &format!("{tag}{what}"));
    run(base, "");
    for k in 0..s.crash_points {
        let sc = Scenario {
            crash_at: Some((k, k % 2 == 0)),
            ..base.clone()
        };
        run(&sc, &format!(" crash at {k}"));
    }
    for seed in 0..s.fault_seeds {
        let sc = Scenario {
            seed,
            fault_rate: s.fault_rate,
            cancel_at: s
                .cancel_every
                .and_then(|n| (seed % n == 0).then_some(seed as usize % 9)),
            ..base.clone()
        };
        run(&sc, &format!(" faults seed {seed}"));
    }
}

/// Checks `sc` against the fake under paused time ([`check`]); panics with `tag` and the
/// rule it broke.
pub fn assert_scenario(rt: &tokio::runtime::Runtime, sc: &Scenario, tag: &str) {
    if let Err(e) = rt.block_on(check(&FakeFactory, sc, Timing::paused())) {
        panic!("{tag}: {e}");
    }
}

/// A planned failover (`dr = false`) or a disaster recovery to the fixture's backup store
/// (`dr = true`), run once against the in-memory fake serving `fx`.
pub fn run_on_fake(
    rt: &tokio::runtime::Runtime,
    fx: &backend_fake::fixtures::Fixture,
    dr: bool,
    run_id: &str,
) -> failover_core::RunReport {
    let backend = std::sync::Arc::new(backend_fake::FakeBackend::new(fx.estate.clone()));
    let mode = if dr {
        failover_core::Mode::DisasterRecovery {
            target: fx.topology.backup.clone(),
        }
    } else {
        failover_core::Mode::Planned
    };
    let req = failover_core::FailoverRequest::new(run_id, fx.topology.clone(), mode)
        .expect("a valid request");
    rt.block_on(failover_core::Driver::new(backend).run(req))
}
