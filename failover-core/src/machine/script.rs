//! Test support for the machine's unit tests: a scripted world that answers the machine's
//! calls from a few flags per instance (no backend, no runtime, no clock: time advances by
//! 10 ms per step and jumps to each sleep's end), with hooks that fail, answer or change
//! things at chosen steps. Also records every transition taken, so a test can check that
//! the unit tests take every row of `TRANSITIONS`.

use super::{Action, DirectoryInfo, Machine, StateName, TRANSITIONS};
use crate::backup_service::{BackupServiceSettings, ExportState, ModuleStatus};
use crate::directory::CmsLocation;
use crate::error::{BackendError, ErrorKind};
use crate::model::{DatabaseName, InstanceAddr, Store, Topology};
use crate::op::{Op, OpResult};
use crate::outcome::Outcome;
use crate::request::{FailoverRequest, Mode, Settings};
use crate::server::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

thread_local! {
    static TAKEN: RefCell<BTreeSet<(StateName, StateName)>> = const { RefCell::new(BTreeSet::new()) };
}

/// Records a transition (called by the machine in test builds).
pub(crate) fn taken(from: StateName, to: StateName) {
    TAKEN.with(|t| t.borrow_mut().insert((from, to)));
}

fn addr(s: &str) -> InstanceAddr {
    InstanceAddr::parse(s).unwrap()
}
/// The active store's principal.
pub(crate) fn a() -> InstanceAddr {
    addr("a.test")
}
/// The backup store's principal.
pub(crate) fn b() -> InstanceAddr {
    addr("b.test")
}
/// The active store's mirror.
pub(crate) fn am() -> InstanceAddr {
    addr("am.test")
}
/// The backup store's mirror.
pub(crate) fn bm() -> InstanceAddr {
    addr("bm.test")
}
/// A store outside the topology.
pub(crate) fn elsewhere() -> Store {
    Store::new(addr("x.test"), None).unwrap()
}

fn settings() -> Settings {
    Settings {
        step_timeout: Duration::from_secs(1),
        replication_timeout: Duration::from_secs(3),
        catch_up_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_secs(1),
        catch_up_poll_interval: Duration::from_millis(100),
        ..Settings::default()
    }
}

fn topo(active: Store, backup: Store) -> Topology {
    Topology::new(active, backup, DatabaseName::cms_defaults()).unwrap()
}

/// A and B, unmirrored.
pub(crate) fn topology() -> Topology {
    topo(
        Store::new(a(), None).unwrap(),
        Store::new(b(), None).unwrap(),
    )
}

fn req(t: Topology, mode: Mode) -> FailoverRequest {
    let mut r = FailoverRequest::new("run-1", t, mode).unwrap();
    r.settings = settings();
    r
}

/// A planned failover A → B.
pub(crate) fn planned() -> FailoverRequest {
    req(topology(), Mode::Planned)
}
/// A planned failover A → B gated on the Backup Service (1 s for `FinalState`, polled
/// every 100 ms).
pub(crate) fn planned_gated() -> FailoverRequest {
    let mut r = planned();
    r.settings.backup_service = Some(BackupServiceSettings {
        final_state_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(100),
    });
    r
}
/// A disaster recovery to B.
pub(crate) fn dr() -> FailoverRequest {
    req(
        topology(),
        Mode::DisasterRecovery {
            target: topology().backup,
        },
    )
}
/// A disaster recovery back to A, with the topology swapped (B active, A its backup).
pub(crate) fn dr_back() -> FailoverRequest {
    let t = topology();
    req(
        topo(t.backup.clone(), t.active.clone()),
        Mode::DisasterRecovery { target: t.active },
    )
}
/// A restore.
pub(crate) fn restore() -> FailoverRequest {
    req(topology(), Mode::Restore)
}
/// A planned failover A (mirror AM) → B (mirror BM), with BM serving B's databases.
pub(crate) fn planned_mirrored() -> FailoverRequest {
    req(
        topo(
            Store::new(a(), Some(am())).unwrap(),
            Store::new(b(), Some(bm())).unwrap(),
        ),
        Mode::Planned,
    )
}
/// A disaster recovery from A to B (mirror BM) with A and B down.
pub(crate) fn dr_mirrored() -> FailoverRequest {
    let backup = Store::new(b(), Some(bm())).unwrap();
    req(
        topo(Store::new(a(), None).unwrap(), backup.clone()),
        Mode::DisasterRecovery { target: backup },
    )
}
/// A location record naming `store`.
pub(crate) fn record(epoch: u64, store: &Store) -> LocationRecord {
    LocationRecord {
        epoch,
        active: store.clone(),
        run_id: format!("earlier-{epoch}"),
    }
}

#[derive(Debug, Clone)]
struct Inst {
    up: bool,
    active_side: bool,
    dbs: Vec<DatabaseProbe>,
    record: Option<LocationRecord>,
    rights: Option<LoginRights>,
}

type Answer = Box<dyn FnMut(&Op) -> Option<Result<OpResult, BackendError>>>;
type Change = Box<dyn FnOnce(&mut World)>;

enum Hook {
    Answer {
        state: StateName,
        f: Answer,
        left: usize,
    },
    AfterEffect {
        state: StateName,
        kind: ErrorKind,
    },
}

/// An Active Directory: the value on each DC, and how many more reads each lagging DC
/// returns its old value for.
#[derive(Debug, Clone)]
pub(crate) struct Ad {
    dcs: Vec<(String, CmsLocation)>,
    lag: BTreeMap<usize, usize>,
    down: BTreeSet<usize>,
}

/// The value for `store` (no ports in the world's addresses).
pub(crate) fn value(store: &Store) -> CmsLocation {
    CmsLocation::of_store(store)
}

/// The store a value names.
fn store_of(v: &CmsLocation) -> Store {
    Store::new(v.backend.to_addr(), v.mirror.as_ref().map(|m| m.to_addr())).unwrap()
}

/// The scripted world.
pub(crate) struct World {
    ad: Option<Ad>,
    /// What an instance without a record reads as (the topology's active store).
    unrecorded: CmsLocation,
    inst: BTreeMap<InstanceAddr, Inst>,
    hooks: Vec<Hook>,
    changes: Vec<(StateName, usize, Change)>,
    seen: BTreeMap<StateName, usize>,
    cancel_in: Option<StateName>,
    cancel_on_sleep: bool,
    cancel_on_sleep_in: Option<StateName>,
    /// Calls between a planned mirror failover returning and its roles switching (0: at
    /// once; `usize::MAX`: never).
    switch_delay: usize,
    /// A planned mirror failover accepted: (calls left, issued on, new principal).
    pending_switch: Option<(usize, InstanceAddr, InstanceAddr)>,
    /// Calls between a forced service returning and the forced mirror switching (0: at once;
    /// `usize::MAX`: never).
    force_delay: usize,
    /// A forced service accepted: (calls left, the forced mirror).
    pending_force: Option<(usize, InstanceAddr)>,
    lag: u64,
    behind: u64,
    backup_state: ExportState,
    log: Vec<Op>,
}

fn db(name: &DatabaseName, read_only: bool) -> DatabaseProbe {
    DatabaseProbe {
        in_standby: false,
        name: name.clone(),
        state: DbState::Online,
        read_only,
        mirroring: None,
    }
}

fn mirroring(role: MirrorRole, partner: InstanceAddr) -> Option<MirrorInfo> {
    Some(MirrorInfo {
        role,
        state: MirrorState::Synchronized,
        partner: Some(partner),
        partner_name: None,
        safety_full: true,
        failover_lsn: None,
        witness: None,
    })
}

impl World {
    fn with(instances: Vec<(InstanceAddr, bool, bool)>) -> Self {
        let dbs = DatabaseName::cms_defaults();
        let inst = instances
            .into_iter()
            .map(|(i, active_side, read_only)| {
                let dbs = dbs.iter().map(|d| db(d, read_only)).collect();
                (
                    i,
                    Inst {
                        up: true,
                        active_side,
                        dbs,
                        record: None,
                        rights: None,
                    },
                )
            })
            .collect();
        Self {
            ad: None,
            unrecorded: value(&topology().active),
            inst,
            hooks: Vec::new(),
            changes: Vec::new(),
            seen: BTreeMap::new(),
            cancel_in: None,
            cancel_on_sleep: false,
            cancel_on_sleep_in: None,
            switch_delay: 0,
            pending_switch: None,
            force_delay: 0,
            pending_force: None,
            lag: 0,
            behind: 0,
            backup_state: ExportState::FinalState,
            log: Vec::new(),
        }
    }

    /// Adds an Active Directory of `n` DCs pointing at the topology's active store A.
    pub(crate) fn with_ad(mut self, n: usize) -> Self {
        let v = value(&topology().active);
        self.ad = Some(Ad {
            dcs: (1..=n)
                .map(|i| (format!("dc{i:02}.cms.test"), v.clone()))
                .collect(),
            lag: BTreeMap::new(),
            down: BTreeSet::new(),
        });
        self
    }
    /// DC number `i` (0-based) returns its old value for `reads` more reads after a change.
    pub(crate) fn lag_dc(&mut self, i: usize, reads: usize) {
        self.ad.as_mut().expect("an AD").lag.insert(i, reads);
    }
    /// DC number `i` is unreachable (`false`) or back.
    pub(crate) fn set_dc_up(&mut self, i: usize, up: bool) {
        let ad = self.ad.as_mut().expect("an AD");
        if up {
            ad.down.remove(&i);
        } else {
            ad.down.insert(i);
        }
    }
    /// Someone else writes `v` on every DC.
    pub(crate) fn set_directory(&mut self, v: CmsLocation) {
        for d in &mut self.ad.as_mut().expect("an AD").dcs {
            d.1 = v.clone();
        }
    }
    /// What DC number `i` holds.
    pub(crate) fn directory_on(&self, i: usize) -> CmsLocation {
        self.ad.as_ref().expect("an AD").dcs[i].1.clone()
    }
    /// A machine for `req` committing to this world's directory.
    pub(crate) fn machine(&self, req: FailoverRequest) -> Machine {
        let m = Machine::new(req);
        match &self.ad {
            Some(ad) => m.with_directory(DirectoryInfo {
                controllers: ad.dcs.iter().map(|d| d.0.clone()).collect(),
                commit_on_target: false,
            }),
            None => m,
        }
    }

    /// A writable, B a read-only standby, caught up.
    pub(crate) fn planned() -> Self {
        Self::with(vec![(a(), true, false), (b(), false, true)])
    }

    /// The same estate, for a disaster recovery.
    pub(crate) fn dr() -> Self {
        Self::planned()
    }

    /// A (principal, mirrored to AM) writable; B holds mirror copies, BM serves them as a
    /// read-only standby in a synchronized session.
    pub(crate) fn planned_mirrored() -> Self {
        let mut w = Self::with(vec![
            (a(), true, false),
            (am(), true, false),
            (b(), false, false),
            (bm(), false, true),
        ]);
        w.mirror(&a(), &am());
        w.mirror(&bm(), &b());
        w.unrecorded = value(&planned_mirrored().topology.active);
        w
    }

    /// A and B down; BM holds mirror copies of B's databases.
    pub(crate) fn dr_mirrored() -> Self {
        let mut w = Self::with(vec![
            (a(), true, false),
            (b(), false, false),
            (bm(), false, false),
        ]);
        w.mirror(&b(), &bm());
        w.set_down(&a());
        w.set_down(&b());
        w
    }

    fn mirror(&mut self, principal: &InstanceAddr, mirror: &InstanceAddr) {
        for d in &mut self.inst.get_mut(principal).unwrap().dbs {
            d.mirroring = mirroring(MirrorRole::Principal, mirror.clone());
        }
        for d in &mut self.inst.get_mut(mirror).unwrap().dbs {
            d.state = DbState::Restoring;
            d.read_only = false;
            d.mirroring = mirroring(MirrorRole::Mirror, principal.clone());
        }
    }

    fn inst(&mut self, i: &InstanceAddr) -> &mut Inst {
        self.inst.get_mut(i).expect("instance of the world")
    }

    /// Makes every database of `i` read-write (`true`) or read-only.
    pub(crate) fn set_writable(&mut self, i: &InstanceAddr, writable: bool) {
        for d in &mut self.inst(i).dbs {
            d.read_only = !writable;
        }
    }
    /// Makes every database of `i` RESTORING (outside any mirroring session).
    pub(crate) fn set_restoring(&mut self, i: &InstanceAddr) {
        for d in &mut self.inst(i).dbs {
            d.state = DbState::Restoring;
            d.read_only = false;
        }
    }
    /// Takes every database of `i` out of its mirroring session (`SET PARTNER OFF`).
    pub(crate) fn remove_mirroring(&mut self, i: &InstanceAddr) {
        for d in &mut self.inst(i).dbs {
            d.mirroring = None;
        }
    }
    /// Makes database number `n` of `i` RESTORING outside any mirroring session.
    pub(crate) fn set_restoring_unmirrored_db(&mut self, i: &InstanceAddr, n: usize) {
        let d = &mut self.inst(i).dbs[n];
        d.state = DbState::Restoring;
        d.mirroring = None;
    }
    /// `i` names its mirroring partner `name`, which the backend could not map to an
    /// address (`partner: None`, `partner_name: Some(name)`).
    pub(crate) fn unmap_partner(&mut self, i: &InstanceAddr, name: &str) {
        for m in self
            .inst(i)
            .dbs
            .iter_mut()
            .filter_map(|d| d.mirroring.as_mut())
        {
            m.partner = None;
            m.partner_name = Some(name.to_string());
        }
    }
    /// Gives every mirroring session `i` reports a witness, in `state` as `i` sees it.
    pub(crate) fn set_witness(&mut self, i: &InstanceAddr, state: WitnessState) {
        for m in self
            .inst(i)
            .dbs
            .iter_mut()
            .filter_map(|d| d.mirroring.as_mut())
        {
            m.witness = Some(WitnessInfo {
                name: "TCP://wit.test:5022".into(),
                state,
            });
        }
    }
    /// `i`'s mirror copies take the principal role by themselves (automatic failover by the
    /// witness: ONLINE, PRINCIPAL; the read-only flag as it was).
    pub(crate) fn took_over(&mut self, i: &InstanceAddr) {
        self.took_over_only(i, |_| true);
    }
    /// As [`World::took_over`], for the databases `which` picks only (a force that landed
    /// for some databases of a batch).
    pub(crate) fn took_over_only(&mut self, i: &InstanceAddr, which: impl Fn(&str) -> bool) {
        for d in &mut self.inst(i).dbs {
            if let Some(m) = &mut d.mirroring
                && m.role == MirrorRole::Mirror
                && which(d.name.as_str())
            {
                m.role = MirrorRole::Principal;
                m.state = MirrorState::Disconnected;
                d.state = DbState::Online;
            }
        }
    }
    /// Makes every database of `i` a log-shipping STANDBY copy (ONLINE, read-only,
    /// `is_in_standby`).
    pub(crate) fn set_standby(&mut self, i: &InstanceAddr) {
        for d in &mut self.inst(i).dbs {
            d.state = DbState::Online;
            d.read_only = true;
            d.in_standby = true;
        }
    }
    /// Takes `i` down: every call to it fails as unreachable.
    pub(crate) fn set_down(&mut self, i: &InstanceAddr) {
        self.inst(i).up = false;
    }
    /// The probe of `i` reports these login rights.
    pub(crate) fn set_rights(&mut self, i: &InstanceAddr, rights: LoginRights) {
        self.inst(i).rights = Some(rights);
    }
    /// The backup store lags the source by `n` before the fence (and after it).
    pub(crate) fn set_lag(&mut self, n: u64) {
        self.lag = n;
    }
    /// The backup is `n` behind the fenced positions.
    pub(crate) fn set_target_behind(&mut self, n: u64) {
        self.behind = n;
    }
    /// The Backup Service reports the CMS module in `state` (`FinalState` until set).
    pub(crate) fn set_backup_state(&mut self, state: ExportState) {
        self.backup_state = state;
    }
    /// Brings `i` back up.
    pub(crate) fn set_up(&mut self, i: &InstanceAddr) {
        self.inst(i).up = true;
    }
    /// Writes `r` on `i` only.
    pub(crate) fn set_record(&mut self, i: &InstanceAddr, r: LocationRecord) {
        self.inst(i).record = Some(r);
    }
    /// The record `i` holds.
    pub(crate) fn record_on(&self, i: &InstanceAddr) -> Option<LocationRecord> {
        self.inst[i].record.clone()
    }
    /// Writes `r` on every instance.
    pub(crate) fn record_everywhere(&mut self, r: LocationRecord) {
        for i in self.inst.values_mut() {
            i.record = Some(r.clone());
        }
    }

    /// Calls in `state` for which `pred` holds fail (fatal, no effect), `times` times.
    pub(crate) fn fail(&mut self, state: StateName, pred: fn(&Op) -> bool, times: usize) {
        self.fail_kind(state, pred, ErrorKind::Fatal, times);
    }
    /// Like [`World::fail`] with an error of `kind`.
    pub(crate) fn fail_kind(
        &mut self,
        state: StateName,
        pred: fn(&Op) -> bool,
        kind: ErrorKind,
        times: usize,
    ) {
        self.answer(
            state,
            move |op| pred(op).then(|| Err(error(kind, op))),
            times,
        );
    }
    /// The force is answered with 1455 once, as SQL Server answers it on a principal (an
    /// automatic failover landed) or with the witness off the mirror.
    pub(crate) fn refuse_force_1455(&mut self) {
        self.answer(
            StateName::ForcingMirror,
            |op| {
                Some(Err(BackendError::new(
                    ErrorKind::InvalidState,
                    op.operation(),
                    op.target(),
                    "The database mirroring service cannot be forced",
                )
                .with_code(1455)))
            },
            1,
        );
    }
    /// Calls in `state` take effect, then fail with `kind` (the answer is lost).
    pub(crate) fn fail_after_effect(&mut self, state: StateName, kind: ErrorKind) {
        self.hooks.push(Hook::AfterEffect { state, kind });
    }
    /// Calls in `state` get `f`'s answer where it gives one, `times` times.
    pub(crate) fn answer(
        &mut self,
        state: StateName,
        f: impl FnMut(&Op) -> Option<Result<OpResult, BackendError>> + 'static,
        times: usize,
    ) {
        self.hooks.push(Hook::Answer {
            state,
            f: Box::new(f),
            left: times,
        });
    }
    /// Runs `f` just before the `n`-th step of `state` (1-based) is answered.
    pub(crate) fn on_nth(
        &mut self,
        state: StateName,
        n: usize,
        f: impl FnOnce(&mut World) + 'static,
    ) {
        self.changes.push((state, n, Box::new(f)));
    }
    /// The operator cancels while the first step of `state` runs.
    pub(crate) fn cancel_in(&mut self, state: StateName) {
        self.cancel_in = Some(state);
    }
    /// The operator cancels during the first sleep.
    pub(crate) fn cancel_on_sleep(&mut self) {
        self.cancel_on_sleep = true;
    }
    /// The operator cancels during the first sleep in `state`.
    pub(crate) fn cancel_on_sleep_in(&mut self, state: StateName) {
        self.cancel_on_sleep_in = Some(state);
    }
    /// A planned mirror failover returns at once and its roles switch `calls` calls later
    /// (`usize::MAX`: never); meanwhile both partners show PENDING_FAILOVER.
    pub(crate) fn delay_switch(&mut self, calls: usize) {
        self.switch_delay = calls;
    }
    /// A forced service returns at once and the forced mirror switches `calls` calls later
    /// (`usize::MAX`: never); meanwhile it shows what it showed before.
    pub(crate) fn delay_force(&mut self, calls: usize) {
        self.force_delay = calls;
    }

    /// Every change (mutating call) actually made, in order.
    pub(crate) fn mutations(&self) -> Vec<Op> {
        self.log.clone()
    }
    /// The mutations that outlive the run's sessions: all but taking and releasing the
    /// failover lock (a run refused by its first check took the lock with it).
    pub(crate) fn durable_mutations(&self) -> Vec<Op> {
        self.log
            .iter()
            .filter(|op| !matches!(op, Op::AcquireLock { .. } | Op::ReleaseLock { .. }))
            .cloned()
            .collect()
    }
    /// Whether every database of `i` is writable.
    pub(crate) fn writable(&self, i: &InstanceAddr) -> bool {
        self.inst[i].dbs.iter().all(|d| d.is_writable())
    }
    /// Whether any database of `i` is writable.
    pub(crate) fn any_writable(&self, i: &InstanceAddr) -> bool {
        self.inst[i].dbs.iter().any(|d| d.is_writable())
    }

    /// What preflight would observe now.
    pub(crate) fn observe(&self, req: &FailoverRequest) -> super::Observations {
        let mut obs = super::Observations::default();
        let mut w = Self {
            inst: self.inst.clone(),
            ..Self::with(Vec::new())
        };
        for i in req.topology.instances() {
            let p = match w.effect(&Op::Probe {
                instance: i.clone(),
                databases: req.topology.databases.clone(),
            }) {
                Ok(OpResult::Probe(p)) => Ok(p),
                Err(e) => Err(e),
                _ => unreachable!(),
            };
            obs.probes.insert(i.clone(), p);
            let r = match w.effect(&Op::ReadLocation {
                instance: i.clone(),
            }) {
                Ok(OpResult::Location(l)) => Ok(l),
                Err(e) => Err(e),
                _ => unreachable!(),
            };
            obs.records.insert(i.clone(), r);
        }
        obs
    }

    /// Runs `req` to its end: the outcome and the states entered.
    pub(crate) fn run(&mut self, req: FailoverRequest) -> (Outcome, Vec<StateName>) {
        let mut m = self.machine(req);
        let o = self.drive(&mut m);
        (o, m.history().to_vec())
    }

    /// Drives `m` to its end the way the driver does (what-if skips the changes).
    pub(crate) fn drive(&mut self, m: &mut Machine) -> Outcome {
        let what_if = m.request().what_if;
        let mut now = Duration::ZERO;
        let mut action = m.start(now);
        for _ in 0..1000 {
            match action {
                Action::Finished(o) => {
                    assert_eq!(m.state(), StateName::Done);
                    return o;
                }
                Action::Sleep { until, .. } => {
                    assert!(until >= now, "sleeps go forward");
                    now = until;
                    if std::mem::take(&mut self.cancel_on_sleep) {
                        m.request_cancel();
                    }
                    if self.cancel_on_sleep_in == Some(m.state()) {
                        self.cancel_on_sleep_in = None;
                        m.request_cancel();
                    }
                    action = m.on_timer(now);
                }
                Action::Execute(batch) => {
                    let n = self.seen.entry(batch.state).or_default();
                    *n += 1;
                    let n = *n;
                    let mut i = 0;
                    while i < self.changes.len() {
                        if self.changes[i].0 == batch.state && self.changes[i].1 == n {
                            let (_, _, f) = self.changes.remove(i);
                            f(self);
                        } else {
                            i += 1;
                        }
                    }
                    let results = batch
                        .ops
                        .iter()
                        .map(|op| {
                            if what_if && !op.is_dry_run_safe() {
                                Ok(op.assumed_result())
                            } else {
                                self.call(batch.state, op)
                            }
                        })
                        .collect::<Vec<_>>();
                    if self.cancel_in == Some(batch.state) {
                        self.cancel_in = None;
                        m.request_cancel();
                    }
                    now += Duration::from_millis(10);
                    action = m.on_results(results, now);
                }
            }
        }
        panic!("the run did not end in 1000 steps: {:?}", m.history());
    }

    fn call(&mut self, state: StateName, op: &Op) -> Result<OpResult, BackendError> {
        for h in &mut self.hooks {
            match h {
                Hook::Answer { state: s, f, left } if *s == state && *left > 0 => {
                    if let Some(r) = f(op) {
                        *left -= 1;
                        return r;
                    }
                }
                Hook::AfterEffect { state: s, kind } if *s == state => {
                    let kind = *kind;
                    let _ = self.effect(op);
                    self.log_op(op);
                    return Err(error(kind, op));
                }
                _ => {}
            }
        }
        let r = self.effect(op);
        if r.is_ok() {
            self.log_op(op);
        }
        r
    }

    fn log_op(&mut self, op: &Op) {
        if op.is_mutating() {
            self.log.push(op.clone());
        }
    }

    /// What a directory call does to the directory (AD, or the SQL records), and its answer.
    fn directory_effect(&mut self, op: &Op) -> Result<OpResult, BackendError> {
        if let Some(ad) = &mut self.ad {
            let idx = ad
                .dcs
                .iter()
                .position(|d| d.0 == op.target())
                .expect("a DC of the world");
            if ad.down.contains(&idx) {
                return Err(error(ErrorKind::Unreachable, op));
            }
            return match op {
                Op::ReadDirectory { .. } => {
                    let primary = ad.dcs[0].1.clone();
                    match ad.lag.get_mut(&idx) {
                        // usize::MAX: never converges.
                        Some(n) if *n > 0 && ad.dcs[idx].1 != primary => {
                            if *n != usize::MAX {
                                *n -= 1;
                            }
                        }
                        _ => ad.dcs[idx].1 = primary,
                    }
                    Ok(OpResult::Directory(ad.dcs[idx].1.clone()))
                }
                Op::SwapDirectory { expected, new, .. } => {
                    let cur = ad.dcs[idx].1.clone();
                    if cur != *new {
                        if cur != *expected {
                            return Err(error(ErrorKind::InvalidState, op));
                        }
                        ad.dcs[idx].1 = new.clone();
                    }
                    Ok(OpResult::Done)
                }
                _ => unreachable!("a directory call"),
            };
        }
        // The SQL record: the DC is an instance.
        let unrecorded = self.unrecorded.clone();
        let i = self.inst(&InstanceAddr::parse(&op.target()).expect("an instance"));
        if !i.up {
            return Err(error(ErrorKind::Unreachable, op));
        }
        let cur = i.record.as_ref().map_or(unrecorded, |r| value(&r.active));
        match op {
            Op::ReadDirectory { .. } => Ok(OpResult::Directory(cur)),
            Op::SwapDirectory {
                expected,
                new,
                stamp,
                ..
            } => {
                let epoch = i.record.as_ref().map(|r| r.epoch);
                if cur == *new && epoch.is_some_and(|e| e >= stamp.epoch) {
                    return Ok(OpResult::Done);
                }
                if cur != *expected && cur != *new {
                    return Err(error(ErrorKind::InvalidState, op));
                }
                i.record = Some(LocationRecord {
                    epoch: stamp.epoch,
                    active: store_of(new),
                    run_id: stamp.run_id.clone(),
                });
                Ok(OpResult::Done)
            }
            _ => unreachable!("a directory call"),
        }
    }

    /// A planned mirror failover's roles switch: `instance`'s copies go to `partner`.
    fn swap_roles(&mut self, instance: &InstanceAddr, partner: &InstanceAddr) {
        let served = self.inst(instance).dbs.clone();
        let p = self.inst(partner);
        let mirror_copies = p.dbs.clone();
        p.dbs = served;
        for d in &mut p.dbs {
            d.mirroring = mirroring(MirrorRole::Principal, instance.clone());
        }
        self.inst(instance).dbs = mirror_copies;
        for d in &mut self.inst(instance).dbs {
            d.mirroring = mirroring(MirrorRole::Mirror, partner.clone());
        }
    }

    /// Forced service: `instance`'s mirror copies become PRINCIPAL and ONLINE.
    fn force(&mut self, instance: &InstanceAddr) {
        for d in self.inst(instance).dbs.iter_mut() {
            if let Some(m) = &mut d.mirroring
                && m.role == MirrorRole::Mirror
            {
                m.role = MirrorRole::Principal;
                m.state = MirrorState::Suspended;
                d.state = DbState::Online;
            }
        }
    }

    /// Counts a call towards a pending role switch, and switches when it is due.
    fn count_pending_switch(&mut self) {
        match self.pending_switch.take() {
            Some((n, i, p)) if n <= 1 => self.swap_roles(&i, &p),
            Some((n, i, p)) => self.pending_switch = Some((n - 1, i, p)),
            None => {}
        }
        match self.pending_force.take() {
            Some((n, i)) if n <= 1 => self.force(&i),
            Some((n, i)) => self.pending_force = Some((n - 1, i)),
            None => {}
        }
    }

    /// What `op` does to the world, and its answer.
    fn effect(&mut self, op: &Op) -> Result<OpResult, BackendError> {
        self.count_pending_switch();
        let (lag, behind, backup_state) = (self.lag, self.behind, self.backup_state);
        let Some(addr) = op.instance().cloned() else {
            return self.directory_effect(op);
        };
        let i = self.inst(&addr);
        if !i.up {
            return Err(error(ErrorKind::Unreachable, op));
        }
        Ok(match op {
            Op::Probe { instance, .. } => OpResult::Probe(InstanceProbe {
                instance: instance.clone(),
                version: "Microsoft SQL Server 2019".into(),
                databases: i.dbs.clone(),
                rights: i.rights.clone(),
            }),
            Op::Positions { databases, .. } => {
                let p = if i.active_side {
                    100
                } else {
                    100 - lag - behind
                };
                OpResult::Positions(
                    databases
                        .iter()
                        .map(|d| DatabasePosition {
                            database: d.clone(),
                            position: Some(Position(p.into())),
                        })
                        .collect(),
                )
            }
            Op::SetReadOnly {
                databases,
                read_only,
                ..
            } => {
                for d in i.dbs.iter_mut().filter(|d| databases.contains(&d.name)) {
                    d.read_only = *read_only;
                }
                OpResult::Done
            }
            Op::Recover { databases, .. } => {
                for d in i.dbs.iter_mut().filter(|d| databases.contains(&d.name)) {
                    if d.state == DbState::Restoring && d.mirroring.is_none() {
                        d.state = DbState::Online;
                    }
                }
                OpResult::Done
            }
            Op::MirrorFailover {
                instance,
                kind: MirrorFailoverKind::Forced,
                ..
            } => {
                if self.force_delay == 0 {
                    self.force(instance);
                } else if self.pending_force.is_none() {
                    self.pending_force = Some((self.force_delay, instance.clone()));
                }
                OpResult::Partner(instance.clone())
            }
            Op::MirrorFailover {
                instance,
                expected_partner,
                kind: MirrorFailoverKind::Planned,
                ..
            } => {
                if self.switch_delay == 0 {
                    self.swap_roles(instance, expected_partner);
                } else if self.pending_switch.is_none() {
                    for i in [instance, expected_partner] {
                        for d in &mut self.inst(i).dbs {
                            if let Some(m) = &mut d.mirroring {
                                m.state = MirrorState::PendingFailover;
                            }
                        }
                    }
                    self.pending_switch = Some((
                        self.switch_delay,
                        instance.clone(),
                        expected_partner.clone(),
                    ));
                }
                OpResult::Partner(expected_partner.clone())
            }
            Op::AcquireLock { .. } => OpResult::Lock(LockAttempt::Granted),
            Op::ReleaseLock { .. } => OpResult::Done,
            Op::CheckLock { .. } => OpResult::LockHeld(true),
            Op::ReadLocation { .. } => OpResult::Location(i.record.clone()),
            Op::WriteLocation { record, .. } => {
                i.record = Some(record.clone());
                OpResult::Done
            }
            Op::ReadDirectory { .. } | Op::SwapDirectory { .. } => unreachable!("no instance"),
            Op::BackupServiceStatus { .. } => {
                OpResult::BackupService(ModuleStatus::cms(backup_state))
            }
        })
    }
}

fn error(kind: ErrorKind, op: &Op) -> BackendError {
    BackendError::new(kind, op.operation(), op.target(), "scripted failure")
}

/// Every transition row is taken by at least one unit test of the phase files.
#[test]
fn the_unit_tests_take_every_transition() {
    let lists: &[&[fn()]] = &[
        super::preflight::tests::SCENARIOS,
        super::lock::tests::SCENARIOS,
        super::replication::tests::SCENARIOS,
        super::fence::tests::SCENARIOS,
        super::promote::tests::SCENARIOS,
        super::commit::tests::SCENARIOS,
        super::verify::tests::SCENARIOS,
        super::undo::tests::SCENARIOS,
        super::restore::tests::SCENARIOS,
        super::directory::tests::SCENARIOS,
        super::switch::tests::SCENARIOS,
    ];
    TAKEN.with(|t| t.borrow_mut().clear());
    for scenario in lists.iter().flat_map(|l| l.iter()) {
        scenario();
    }
    let taken = TAKEN.with(|t| t.borrow().clone());
    let missing: Vec<String> = TRANSITIONS
        .iter()
        .filter(|(a, b, _)| !taken.contains(&(*a, *b)))
        .map(|(a, b, why)| format!("{a} -> {b} ({why})"))
        .collect();
    assert!(missing.is_empty(), "no unit test takes: {missing:#?}");
}

/// An illegal transition panics in every build.
#[test]
#[should_panic(expected = "is not in TRANSITIONS")]
fn an_illegal_transition_is_caught() {
    let mut m = Machine::new(planned());
    let _ = m.start(Duration::ZERO);
    m.go(super::State::Verifying(Box::new(super::Run {
        plan: World::planned().observe(&planned()).plan_for(
            b(),
            topology().backup,
            &DatabaseName::cms_defaults(),
            vec![],
        ),
        locks: vec![],
        fenced: vec![],
    })));
}
