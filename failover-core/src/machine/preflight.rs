//! Preflight: probe every instance, read every location record and where the directory says
//! the CMS is, then decide the run.
//!
//! [`plan`] is a pure function from what was observed to a [`Plan`] or a typed [`Refusal`].
//! It runs twice: first with the lock taken in the same step (on every instance probed, so
//! its probes may have run before the lock was granted), then again under the lock.

use super::{Action, Ctx, Locked, Results, Run, S, State, lock, promote, release, restore};
use crate::directory::CmsLocation;
use crate::error::{BackendError, ErrorKind};
use crate::model::{DatabaseName, InstanceAddr, Store};
use crate::op::{Op, OpResult};
use crate::outcome::{Outcome, Refusal, ServingProblem, StoreRole};
use crate::request::{FailoverRequest, Mode};
use crate::server::{
    DbState, InstanceProbe, LocationRecord, MirrorRole, MirrorState, WitnessState,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// What preflight observed: each instance's probe and location record.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The probe of each instance.
    pub probes: BTreeMap<InstanceAddr, Result<InstanceProbe, BackendError>>,
    /// The location record read on each instance (`Ok(None)`: no record).
    pub records: BTreeMap<InstanceAddr, Result<Option<LocationRecord>, BackendError>>,
    /// The highest epoch known from elsewhere (the journal): a new epoch exceeds it too,
    /// even when the instance holding it is down.
    pub epoch_floor: u64,
    /// What the directory returned on the DC changes go to; `None` when the directory is the
    /// SQL location record, whose value is the winning record's store (the topology's
    /// active store when no instance holds a record).
    pub directory: Option<Result<CmsLocation, BackendError>>,
}

/// What a run will do, decided by [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The instance serving the CMS before the run (planned; disaster recovery when it is
    /// reachable; `None` for restore).
    pub source: Option<InstanceAddr>,
    /// The instance being made (or kept) active.
    pub target: InstanceAddr,
    /// The store being made active.
    pub target_store: Store,
    /// Databases to fence per instance (planned/DR: the source; restore: the other store).
    pub to_fence: Vec<(InstanceAddr, Vec<DatabaseName>)>,
    /// Databases of the target that are RESTORING and need recovery.
    pub to_recover: Vec<DatabaseName>,
    /// Disaster recovery: the target is a mirror whose service must be forced.
    pub force_mirror: Option<InstanceAddr>,
    /// Planned: the principal to give the role back to once the target serves.
    pub repoint_to: Option<InstanceAddr>,
    /// The location record read on each instance.
    pub records: BTreeMap<InstanceAddr, Option<LocationRecord>>,
    /// The winning record ([`crate::location::winning_record`]), if any.
    pub winner: Option<LocationRecord>,
    /// Reachable instances whose record is not the winner (with the epoch they hold): the
    /// winner is re-published to them under the lock.
    pub stale: Vec<(InstanceAddr, Option<u64>)>,
    /// The highest epoch known from the journal.
    pub epoch_floor: u64,
    /// The instances that answered the probe.
    pub reachable: Vec<InstanceAddr>,
    /// What the operator should know that does not stop the run.
    pub warnings: Vec<String>,
    /// Where the directory says the CMS is (the compare-and-swap's expected value).
    pub directory: CmsLocation,
}

impl Plan {
    /// The instances to lock: the target, the source and every instance to fence.
    pub fn lock_instances(&self) -> Vec<InstanceAddr> {
        let mut v: Vec<InstanceAddr> = Vec::new();
        let fence = self.to_fence.iter().map(|(i, _)| i);
        for i in std::iter::once(&self.target)
            .chain(self.source.iter())
            .chain(fence)
        {
            if !v.contains(i) {
                v.push(i.clone());
            }
        }
        v
    }

    /// The highest epoch ever seen: on any instance read, or in the journal. A commit
    /// writes one more.
    pub fn max_epoch(&self) -> u64 {
        crate::location::max_epoch(self.records.values().flatten()).max(self.epoch_floor)
    }
}

impl Observations {
    pub(super) fn probe_of(&self, i: &InstanceAddr) -> Result<&InstanceProbe, ServingProblem> {
        match self.probes.get(i) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(ServingProblem::Unprobed {
                instance: i.clone(),
                error: Some(e.clone()),
            }),
            None => Err(ServingProblem::Unprobed {
                instance: i.clone(),
                error: None,
            }),
        }
    }

    /// The partner of `store` that serves the databases (every database present, none a
    /// mirror copy), preferring one whose databases are all ONLINE, then the principal.
    /// Both partners qualify after mirroring was removed (`SET PARTNER OFF`: the old mirror
    /// copy stays RESTORING outside any session); the ONLINE one is the store's copy, and
    /// recovering the other would make a second live copy with an older history.
    pub(super) fn serving(
        &self,
        store: &Store,
        dbs: &[DatabaseName],
    ) -> Result<InstanceAddr, Vec<ServingProblem>> {
        let mut problems = Vec::new();
        let mut candidates = Vec::new();
        for i in store.instances() {
            let p = match self.probe_of(i) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let missing: Vec<DatabaseName> = dbs
                .iter()
                .filter(|d| p.database(d).is_none())
                .cloned()
                .collect();
            if !missing.is_empty() {
                problems.push(ServingProblem::MissingDatabases {
                    instance: i.clone(),
                    databases: missing,
                });
                continue;
            }
            let mirrors: Vec<DatabaseName> = p
                .databases
                .iter()
                .filter(|d| {
                    d.mirroring
                        .as_ref()
                        .is_some_and(|m| m.role == MirrorRole::Mirror)
                })
                .map(|d| d.name.clone())
                .collect();
            if mirrors.is_empty() {
                let online = dbs
                    .iter()
                    .all(|d| p.database(d).is_some_and(|d| d.state == DbState::Online));
                candidates.push((i.clone(), online));
                continue;
            }
            if mirrors.len() < dbs.len() {
                problems.push(ServingProblem::SplitRoles {
                    instance: i.clone(),
                    mirror_for: mirrors,
                });
            } else {
                problems.push(ServingProblem::MirrorCopies {
                    instance: i.clone(),
                });
            }
        }
        let online = candidates.iter().find(|(_, online)| *online);
        match online.or(candidates.first()) {
            Some((i, _)) => Ok(i.clone()),
            None => Err(problems),
        }
    }

    /// The first requested database whose mirroring partner the server names (its
    /// `mirroring_partner_instance`) but the backend could not map to an address.
    fn unmapped_partner(
        &self,
        dbs: &[DatabaseName],
    ) -> Option<(InstanceAddr, DatabaseName, String)> {
        self.probes.iter().find_map(|(i, p)| {
            let p = p.as_ref().ok()?;
            p.databases
                .iter()
                .filter(|d| dbs.contains(&d.name))
                .find_map(|d| {
                    let m = d.mirroring.as_ref()?;
                    match (&m.partner, &m.partner_name) {
                        (None, Some(n)) => Some((i.clone(), d.name.clone(), n.clone())),
                        _ => None,
                    }
                })
        })
    }

    pub(super) fn writable_dbs(&self, i: &InstanceAddr) -> Vec<DatabaseName> {
        match self.probes.get(i) {
            Some(Ok(p)) => p
                .databases
                .iter()
                .filter(|d| d.is_writable())
                .map(|d| d.name.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The records that were read.
    fn read_records(&self) -> BTreeMap<InstanceAddr, Option<LocationRecord>> {
        self.records
            .iter()
            .filter_map(|(i, r)| r.as_ref().ok().map(|r| (i.clone(), r.clone())))
            .collect()
    }

    fn read(&self) -> impl Iterator<Item = &LocationRecord> {
        self.records
            .values()
            .filter_map(|r| r.as_ref().ok())
            .flatten()
    }

    /// The winning record ([`crate::location::winning_record`]).
    pub(super) fn winner(&self) -> Result<Option<&LocationRecord>, Box<Refusal>> {
        crate::location::winning_record(self.read())
    }

    /// Where the directory says the CMS is: the value read from the directory, or (the SQL
    /// record) the winning record's store, the topology's active store when there is none.
    pub(super) fn directory_value(
        &self,
        req: &FailoverRequest,
    ) -> Result<CmsLocation, Box<Refusal>> {
        match &self.directory {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(error)) => Err(Box::new(Refusal::DirectoryUnreadable {
                error: error.clone(),
            })),
            None => Ok(CmsLocation::of_store(
                self.recorded_active()
                    .map_or(&req.topology.active, |r| &r.active),
            )),
        }
    }

    /// The winning record; [`plan`] refuses a tie before any mode looks at it.
    pub(super) fn recorded_active(&self) -> Option<&LocationRecord> {
        self.winner().ok().flatten()
    }

    /// The databases of `tgt` that are RESTORING or STANDBY outside a mirroring session.
    fn to_recover(&self, tgt: &InstanceAddr, dbs: &[DatabaseName]) -> Vec<DatabaseName> {
        match self.probe_of(tgt) {
            Ok(p) => dbs
                .iter()
                .filter(|d| p.database(d).is_some_and(|d| d.needs_recovery()))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn reachable(&self) -> Vec<InstanceAddr> {
        self.probes
            .iter()
            .filter(|(_, p)| p.is_ok())
            .map(|(i, _)| i.clone())
            .collect()
    }

    fn session_synchronized(&self, serving: &InstanceAddr) -> bool {
        match self.probes.get(serving) {
            Some(Ok(p)) => p.databases.iter().all(|d| {
                d.mirroring
                    .as_ref()
                    .is_some_and(|m| m.state == MirrorState::Synchronized && m.safety_full)
            }),
            _ => false,
        }
    }

    fn is_mirror(&self, i: &InstanceAddr) -> bool {
        self.probe_of(i).is_ok_and(|p| {
            p.databases.iter().any(|d| {
                d.mirroring
                    .as_ref()
                    .is_some_and(|m| m.role == MirrorRole::Mirror)
            })
        })
    }

    /// A plan with the fields every mode fills the same way.
    pub(super) fn plan_for(
        &self,
        target: InstanceAddr,
        target_store: Store,
        dbs: &[DatabaseName],
        warnings: Vec<String>,
    ) -> Plan {
        let winner = self.recorded_active().cloned();
        let stale = match &winner {
            Some(w) => self
                .records
                .iter()
                .filter(|(i, _)| matches!(self.probes.get(*i), Some(Ok(_))))
                .filter_map(|(i, r)| match r {
                    Ok(r) if r.as_ref() != Some(w) => {
                        Some((i.clone(), r.as_ref().map(|r| r.epoch)))
                    }
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        // Set by `plan` from what the directory returned.
        let directory = CmsLocation::of_store(&target_store);
        Plan {
            winner,
            stale,
            epoch_floor: self.epoch_floor,
            source: None,
            to_recover: self.to_recover(&target, dbs),
            target,
            target_store,
            to_fence: Vec::new(),
            force_mirror: None,
            repoint_to: None,
            records: self.read_records(),
            reachable: self.reachable(),
            warnings,
            directory,
        }
    }
}

/// Decides the run from what preflight observed: the plan, or why the run must not start.
/// Pure: no IO, no clock.
pub fn plan(req: &FailoverRequest, obs: &Observations) -> Result<Plan, Box<Refusal>> {
    let dbs = &req.topology.databases;
    // A record that could not be read on a reachable instance might be the newest one:
    // deciding without it could undo a committed failover.
    let mut warnings = Vec::new();
    let mut unread_reachable = Vec::new();
    for (i, r) in &obs.records {
        if let Err(e) = r {
            if matches!(obs.probes.get(i), Some(Ok(_))) {
                unread_reachable.push(e.clone());
            } else {
                warnings.push(format!(
                    "the location record on {i} could not be read (instance unreachable)"
                ));
            }
        }
    }
    if !unread_reachable.is_empty() {
        return Err(Refusal::LocationUnreadable {
            errors: unread_reachable,
        }
        .into());
    }
    obs.winner()?;
    super::permissions::check_visibility(obs)?;
    let directory = obs.directory_value(req)?;
    // The directory must point where this run starts from (as the cmdlet checks the
    // directory against the topology). For the SQL record the record checks of each mode
    // say it first, with the epoch.
    if obs.directory.is_some() {
        let topo = &req.topology;
        let expected: Vec<Store> = match &req.mode {
            Mode::Planned => vec![topo.active.clone()],
            Mode::DisasterRecovery { target } => vec![topo.active.clone(), target.clone()],
            Mode::Restore => vec![topo.active.clone(), topo.backup.clone()],
        };
        if !expected.iter().any(|s| directory.points_at(s)) {
            return Err(Refusal::DirectoryMismatch {
                directory,
                expected,
            }
            .into());
        }
    }
    // A mirroring partner the backend could not map to a topology address: the run could
    // not follow the principal role (a mirror failover, a position read on the partner),
    // so it must not start.
    if let Some((instance, database, name)) = obs.unmapped_partner(dbs) {
        return Err(Refusal::MirrorPartnerUnmapped {
            instance,
            database,
            name,
        }
        .into());
    }
    let mut plan = match &req.mode {
        Mode::Planned => plan_planned(req, obs, dbs, warnings),
        Mode::DisasterRecovery { target } => plan_dr(req, obs, target, dbs, warnings),
        Mode::Restore => restore::plan_restore(req, obs, &directory, dbs, warnings),
    }?;
    super::permissions::check(obs, &plan, dbs)?;
    plan.directory = directory;
    Ok(plan)
}

fn plan_planned(
    req: &FailoverRequest,
    obs: &Observations,
    dbs: &[DatabaseName],
    mut warnings: Vec<String>,
) -> Result<Plan, Box<Refusal>> {
    let topo = &req.topology;
    if let Some(r) = obs.recorded_active() {
        if r.active.principal == topo.backup.principal {
            return Err(Refusal::AlreadyOnBackup {
                backup: topo.backup.clone(),
                epoch: r.epoch,
            }
            .into());
        }
        if r.active.principal != topo.active.principal {
            return Err(Refusal::RecordedElsewhere {
                recorded: r.active.clone(),
                epoch: r.epoch,
                expected: topo.active.clone(),
            }
            .into());
        }
    }
    let src = obs
        .serving(&topo.active, dbs)
        .map_err(|p| unusable(StoreRole::Active, &topo.active, p))?;
    let p = obs
        .probe_of(&src)
        .map_err(|e| unusable(StoreRole::Active, &topo.active, vec![e]))?;
    for d in p.databases.iter().filter(|d| dbs.contains(&d.name)) {
        if d.state != DbState::Online {
            return Err(Refusal::SourceNotOnline {
                instance: src,
                database: d.name.clone(),
                state: d.state.clone(),
            }
            .into());
        }
        if d.read_only {
            return Err(Refusal::SourceReadOnly {
                instance: src,
                database: d.name.clone(),
            }
            .into());
        }
    }
    let tgt = obs
        .serving(&topo.backup, dbs)
        .map_err(|p| unusable(StoreRole::Backup, &topo.backup, p))?;
    let writable = obs.writable_dbs(&tgt);
    if !writable.is_empty() {
        return Err(Refusal::TargetWritable {
            instance: tgt,
            databases: writable,
        }
        .into());
    }
    for (store, which) in [(&topo.backup, "backup"), (&topo.active, "source")] {
        for i in store.instances() {
            if *i != tgt
                && *i != src
                && let Err(e) = obs.probe_of(i)
            {
                warnings.push(format!("{which} mirror partner not reachable: {e}"));
            }
        }
    }
    let repoint_to = (tgt != topo.backup.principal && obs.session_synchronized(&tgt))
        .then(|| topo.backup.principal.clone());
    let mut plan = obs.plan_for(tgt, topo.backup.clone(), dbs, warnings);
    plan.to_fence = vec![(src.clone(), dbs.to_vec())];
    plan.source = Some(src);
    plan.repoint_to = repoint_to;
    Ok(plan)
}

pub(super) fn unusable(role: StoreRole, store: &Store, problems: Vec<ServingProblem>) -> Refusal {
    Refusal::StoreUnusable {
        role,
        store: store.clone(),
        problems,
    }
}

fn plan_dr(
    req: &FailoverRequest,
    obs: &Observations,
    target: &Store,
    dbs: &[DatabaseName],
    mut warnings: Vec<String>,
) -> Result<Plan, Box<Refusal>> {
    let topo = &req.topology;
    // A disaster recovery already recorded and serving on the target (re-run after a
    // crash past its commit point) goes through again: every step is idempotent, and the
    // run settles the interrupted one.
    // The target: its serving partner, or its mirror to be forced.
    let tgt = match obs.serving(target, dbs) {
        Ok(t) => t,
        Err(problems) => {
            let mirror = target.mirror.as_ref().filter(|m| {
                obs.probe_of(m)
                    .is_ok_and(|p| dbs.iter().all(|d| p.database(d).is_some()))
            });
            match mirror {
                Some(m) if obs.probe_of(&target.principal).is_err() => m.clone(),
                _ => {
                    return Err(
                        unusable(StoreRole::DisasterRecoveryTarget, target, problems).into(),
                    );
                }
            }
        }
    };
    // The old source: reachable or not, it is fenced if it can be.
    let mut source = None;
    let mut to_fence = Vec::new();
    match obs.serving(&topo.active, dbs) {
        Ok(src) => {
            let w = obs.writable_dbs(&src);
            if !w.is_empty() {
                to_fence = vec![(src.clone(), w)];
            }
            source = Some(src);
        }
        Err(problems) => {
            // Only "cannot be reached" means gone: any other error means the source is up
            // and might still take writes.
            for i in topo.active.instances() {
                if let Some(Err(err)) = obs.probes.get(i)
                    && !matches!(err.kind, ErrorKind::Unreachable | ErrorKind::Timeout)
                {
                    return Err(Refusal::OldSourceAnswers {
                        instance: i.clone(),
                        error: err.clone(),
                    }
                    .into());
                }
            }
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            warnings.push(format!(
                "the old source is not reachable (expected in disaster recovery): {}",
                text.join("; ")
            ));
        }
    }
    let force_mirror = obs.is_mirror(&tgt).then(|| tgt.clone());
    if let Some(m) = &force_mirror {
        witness_allows_force(obs, m, dbs)?;
        warnings.extend(witness_unknown(obs, m, dbs));
    } else if tgt != target.principal && obs.probe_of(&target.principal).is_err() {
        // The designated principal is lost and its partner already serves as principal: in
        // high-safety mode with a witness the mirror takes over by itself (automatic
        // failover,
        // https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/role-switching-during-a-database-mirroring-session-sql-server),
        // so nothing is forced; the report says who serves.
        warnings.push(format!(
            "the target store's principal {} is not reachable and its mirroring partner {tgt} already serves as principal (an automatic failover by the witness, or an earlier failover): {tgt} is promoted without forcing service",
            target.principal
        ));
    }
    let mut plan = obs.plan_for(tgt, target.clone(), dbs, warnings);
    plan.source = source;
    plan.to_fence = to_fence;
    plan.force_mirror = force_mirror;
    Ok(plan)
}

/// Forcing service needs "WITNESS is set to OFF or is connected to the mirror server",
/// otherwise 1455
/// (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/force-service-in-a-database-mirroring-session-transact-sql>):
/// a witness the mirror reports DISCONNECTED makes the force fail for certain, so the run is
/// refused before any change. CONNECTED, UNKNOWN (the server does not know) or no witness
/// go on; a 1455 at the force itself is still handled there.
fn witness_allows_force(
    obs: &Observations,
    mirror: &InstanceAddr,
    dbs: &[DatabaseName],
) -> Result<(), Box<Refusal>> {
    let Ok(p) = obs.probe_of(mirror) else {
        return Ok(());
    };
    let mut blocked = Vec::new();
    let mut witness = String::new();
    for d in dbs {
        if let Some(w) = p
            .database(d)
            .and_then(|d| d.mirroring.as_ref())
            .filter(|m| m.role == MirrorRole::Mirror)
            .and_then(|m| m.witness.as_ref())
            .filter(|w| w.state == WitnessState::Disconnected)
        {
            blocked.push(d.clone());
            witness = w.name.clone();
        }
    }
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Box::new(Refusal::WitnessDisconnected {
        instance: mirror.clone(),
        databases: blocked,
        witness,
    }))
}

/// The mirror to be forced does not know its witness's state (UNKNOWN) for some
/// databases: the force goes on, but SQL Server may refuse it with 1455; the warning says
/// what to run then (`SET WITNESS OFF`, which "can be issued on either partner"
/// (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/remove-the-witness-from-a-database-mirroring-session-sql-server>):
/// on the mirror, since the principal is down).
fn witness_unknown(
    obs: &Observations,
    mirror: &InstanceAddr,
    dbs: &[DatabaseName],
) -> Option<String> {
    let p = obs.probe_of(mirror).ok()?;
    let mut witness = None;
    let mut unknown = Vec::new();
    for d in dbs {
        if let Some(w) = p
            .database(d)
            .and_then(|d| d.mirroring.as_ref())
            .and_then(|m| m.witness.as_ref())
            .filter(|w| w.state == WitnessState::Unknown)
        {
            unknown.push(format!(
                "ALTER DATABASE {} SET WITNESS OFF;",
                super::permissions::bracket(d.as_str())
            ));
            witness.get_or_insert_with(|| w.name.clone());
        }
    }
    let witness = witness?;
    Some(format!(
        "the mirror {mirror} reports its witness `{witness}` UNKNOWN: SQL Server forces service only when the witness is off or connected to the mirror, so FORCE_SERVICE_ALLOW_DATA_LOSS may be refused with 1455 (the fence is then undone). If it is, run `{}` on {mirror} (the principal is down) and run again",
        unknown.join(" ")
    ))
}

/// Probe every instance and read its location record; the first time (`first`), take the
/// lock on each of them in the same step.
pub(super) fn enter(ctx: &mut Ctx, first: bool) -> Action {
    let req = &ctx.req;
    let mut instances: Vec<&InstanceAddr> = Vec::new();
    let stores: [&Store; 2] = match &req.mode {
        Mode::Planned | Mode::Restore => [&req.topology.active, &req.topology.backup],
        Mode::DisasterRecovery { target } => [&req.topology.active, target],
    };
    for i in stores.iter().flat_map(|s| s.instances()) {
        if !instances.contains(&i) {
            instances.push(i);
        }
    }
    let mut ops = Vec::with_capacity(instances.len() * 3);
    for &i in &instances {
        ops.push(Op::Probe {
            instance: i.clone(),
            databases: req.topology.databases.clone(),
        });
        ops.push(Op::ReadLocation {
            instance: i.clone(),
        });
    }
    let locks = if first {
        lock::acquire_ops(ctx, instances.iter().copied())
    } else {
        Vec::new()
    };
    let (description, precondition, changes) = if locks.is_empty() {
        (
            "probe every instance, read the recorded CMS location and the directory",
            "none",
            "nothing",
        )
    } else {
        (
            "take the failover lock; probe every instance, read the recorded CMS location and the directory",
            "no other failover or restore is running",
            "an application lock in master (released at the end)",
        )
    };
    ops.extend(locks);
    if !ctx.dir.commit_on_target
        && let Some(dc) = ctx.dir.controllers.first()
    {
        ops.push(Op::ReadDirectory { dc: dc.clone() });
    }
    let st = &req.settings;
    let timeout = if matches!(req.mode, Mode::DisasterRecovery { .. }) {
        st.dr_fence_timeout
            .max(st.step_timeout.min(Duration::from_secs(10)))
    } else {
        st.step_timeout
    };
    ctx.batch(
        S::Preflight,
        description,
        precondition,
        changes,
        ops,
        timeout,
        true,
    )
}

/// Plans from the results; before the lock, goes to take it; under the lock, starts the run.
pub(super) fn on_results(
    ctx: &mut Ctx,
    locked: Option<Locked>,
    ops: &[Op],
    results: Results,
    now: Duration,
) -> State {
    let mut obs = Observations {
        epoch_floor: ctx.epoch_floor,
        ..Observations::default()
    };
    let mut attempts = lock::Attempts::default();
    for (op, r) in ops.iter().zip(results) {
        match (op, r) {
            (Op::AcquireLock { instance, .. }, r) => attempts.note(instance, r),
            (Op::Probe { instance, .. }, Ok(OpResult::Probe(p))) => {
                obs.probes.insert(instance.clone(), Ok(p));
            }
            (Op::Probe { instance, .. }, Err(e)) => {
                obs.probes.insert(instance.clone(), Err(e));
            }
            (Op::ReadLocation { instance }, Ok(OpResult::Location(l))) => {
                obs.records.insert(instance.clone(), Ok(l));
            }
            (Op::ReadLocation { instance }, Err(e)) => {
                obs.records.insert(instance.clone(), Err(e));
            }
            (Op::ReadDirectory { .. }, Ok(OpResult::Directory(v))) => {
                obs.directory = Some(Ok(v));
            }
            (Op::ReadDirectory { .. }, Err(e)) => obs.directory = Some(Err(e)),
            _ => {
                let unexpected = Refusal::UnexpectedResult {
                    state: S::Preflight,
                };
                let mut locks = locks_of(locked);
                locks.extend(attempts.taken());
                return ctx.refuse(locks, unexpected);
            }
        }
    }
    ctx.f.blockers.clear();
    let plan = plan(&ctx.req, &obs);
    ctx.f.probes = obs.probes;
    let plan = match plan {
        Ok(p) => p,
        Err(refusal) => {
            let mut locks = locks_of(locked);
            locks.extend(attempts.taken());
            return ctx.refuse(locks, *refusal);
        }
    };
    ctx.f.warnings.clone_from(&plan.warnings);
    let Some(Locked { locks, serving }) = locked else {
        return lock::on_first_check(ctx, &plan, attempts);
    };
    let now_serving = plan.lock_instances();
    if now_serving != serving {
        return ctx.refuse(
            locks,
            Refusal::ServingChanged {
                before: serving,
                after: now_serving,
            },
        );
    }
    if ctx.cancel {
        return release(
            locks,
            Outcome::Cancelled {
                detail: "cancelled before any change".into(),
            },
        );
    }
    let run = Box::new(Run {
        plan,
        locks,
        fenced: Vec::new(),
    });
    if run.plan.stale.is_empty() {
        begin(ctx, run, now)
    } else {
        State::RepublishingRecord(run)
    }
}

/// The mode's first step after the checks under the lock.
pub(super) fn begin(ctx: &Ctx, run: Box<Run>, now: Duration) -> State {
    if ctx.cancel {
        return release(
            run.locks,
            Outcome::Cancelled {
                detail: "cancelled before any change".into(),
            },
        );
    }
    match &ctx.req.mode {
        Mode::Planned => State::AwaitingReplication {
            run,
            deadline: now + ctx.req.settings.replication_timeout,
        },
        Mode::DisasterRecovery { .. } => State::Fencing(run),
        Mode::Restore if run.plan.to_fence.is_empty() => promote(run),
        Mode::Restore => State::Fencing(run),
    }
}

fn locks_of(locked: Option<Locked>) -> Vec<InstanceAddr> {
    locked.map(|l| l.locks).unwrap_or_default()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::machine::script::*;

    #[test]
    fn refused_by_the_first_check_releases_the_lock_and_changes_nothing_else() {
        let mut w = World::planned();
        w.set_writable(&b(), true);
        let (o, h) = w.run(planned());
        assert!(
            matches!(o.refusal(), Some(Refusal::TargetWritable { instance, .. }) if *instance == b()),
            "{o}"
        );
        assert_eq!(h, [S::Preflight, S::ReleasingLocks, S::Done]);
        assert!(w.durable_mutations().is_empty(), "{:?}", w.mutations());
    }

    /// What-if assumes the lock (and its release) and takes nothing.
    #[test]
    fn what_if_refused_by_the_first_check_takes_nothing() {
        let mut w = World::planned();
        w.set_writable(&b(), true);
        let mut req = planned();
        req.what_if = true;
        let (o, h) = w.run(req);
        assert!(o.refusal().is_some(), "{o}");
        assert_eq!(h, [S::Preflight, S::ReleasingLocks, S::Done]);
        assert!(w.mutations().is_empty());
    }

    /// The lock is taken in the first check's step, on every instance it probes, and the
    /// check runs again under it.
    #[test]
    fn the_lock_is_taken_with_the_first_check() {
        let mut w = World::planned();
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert_eq!(
            &h[..3],
            &[S::Preflight, S::Preflight, S::AwaitingReplication]
        );
        let first: Vec<_> = w
            .mutations()
            .into_iter()
            .take_while(|op| matches!(op, Op::AcquireLock { .. }))
            .collect();
        assert_eq!(first.len(), 2, "{:?}", w.mutations());
    }

    #[test]
    fn unreadable_record_on_a_reachable_instance_refuses() {
        let mut w = World::planned();
        w.fail(S::Preflight, |op| matches!(op, Op::ReadLocation { .. }), 1);
        let (o, _) = w.run(planned());
        assert!(
            matches!(o.refusal(), Some(Refusal::LocationUnreadable { .. })),
            "{o}"
        );
    }

    #[test]
    fn planned_refuses_a_source_that_is_read_only_already() {
        let mut w = World::planned();
        w.set_writable(&a(), false);
        let (o, _) = w.run(planned());
        assert!(
            matches!(o.refusal(), Some(Refusal::SourceReadOnly { .. })),
            "{o}"
        );
    }

    #[test]
    fn planned_refuses_when_already_recorded_on_the_backup() {
        let mut w = World::planned();
        w.record_everywhere(record(3, &topology().backup));
        let (o, _) = w.run(planned());
        assert!(
            matches!(o.refusal(), Some(Refusal::AlreadyOnBackup { epoch: 3, .. })),
            "{o}"
        );
    }

    #[test]
    fn unreachable_source_makes_the_active_store_unusable() {
        let mut w = World::planned();
        w.set_down(&a());
        let (o, _) = w.run(planned());
        match o.refusal() {
            Some(Refusal::StoreUnusable {
                role: StoreRole::Active,
                problems,
                ..
            }) => assert!(matches!(
                problems.as_slice(),
                [ServingProblem::Unprobed { error: Some(_), .. }]
            )),
            _ => panic!("{o}"),
        }
    }

    /// The serving instance changed between the check and the check under the lock.
    #[test]
    fn serving_change_under_the_lock_refuses_and_releases() {
        let mut w = World::dr();
        // First preflight: the source answers; under the lock it is down.
        w.on_nth(S::Preflight, 2, |w| w.set_down(&a()));
        let (o, h) = w.run(dr());
        assert!(
            matches!(o.refusal(), Some(Refusal::ServingChanged { .. })),
            "{o}"
        );
        assert_eq!(h, [S::Preflight, S::Preflight, S::ReleasingLocks, S::Done]);
    }

    #[test]
    fn cancelled_under_the_lock_changes_nothing() {
        let mut w = World::planned();
        w.cancel_in(S::Preflight);
        let (o, h) = w.run(planned());
        assert!(matches!(o, Outcome::Cancelled { .. }), "{o}");
        assert!(h.contains(&S::ReleasingLocks));
        assert!(
            w.mutations()
                .iter()
                .all(|op| !matches!(op, Op::SetReadOnly { .. }))
        );
    }

    #[test]
    fn plan_is_pure_and_names_the_lock_instances() {
        let w = World::planned();
        let obs = w.observe(&planned());
        let p = plan(&planned(), &obs).unwrap();
        assert_eq!(p.source, Some(a()));
        assert_eq!(p.target, b());
        assert_eq!(p.lock_instances(), vec![b(), a()]);
        assert_eq!(plan(&planned(), &obs).unwrap(), p);
    }

    #[test]
    fn records_of_different_stores_at_one_epoch_are_refused_in_every_mode() {
        for req in [planned(), dr(), restore()] {
            let mut w = World::planned();
            w.set_record(&a(), record(3, &topology().active));
            w.set_record(&b(), record(3, &topology().backup));
            let (o, h) = w.run(req);
            match o.refusal() {
                Some(Refusal::RecordTie { epoch: 3, stores }) => assert_eq!(stores.len(), 2),
                _ => panic!("{o}"),
            }
            assert_eq!(h, [S::Preflight, S::ReleasingLocks, S::Done]);
            assert!(
                w.mutations()
                    .iter()
                    .all(|op| matches!(op, Op::AcquireLock { .. } | Op::ReleaseLock { .. }))
            );
        }
    }

    /// A new epoch exceeds the journal's highest even when no reachable instance holds it.
    #[test]
    fn a_new_epoch_exceeds_the_journal_floor() {
        let mut w = World::planned();
        w.record_everywhere(record(2, &topology().active));
        let mut m = crate::machine::Machine::new(planned()).with_epoch_floor(7);
        let o = w.drive(&mut m);
        assert!(
            matches!(o, Outcome::Succeeded { epoch: Some(8), .. }),
            "{o}"
        );
    }

    /// The directory does not point at the topology's active store: refused with both
    /// values, before any change (the cmdlet's "doesn't match the one in the topology").
    #[test]
    fn a_directory_elsewhere_is_refused_with_both_values() {
        let mut w = World::planned().with_ad(2);
        w.set_directory(value(&topology().backup));
        let (o, h) = w.run(planned());
        match o.refusal() {
            Some(
                r @ Refusal::DirectoryMismatch {
                    directory,
                    expected,
                },
            ) => {
                assert_eq!(*directory, value(&topology().backup));
                assert_eq!(*expected, vec![topology().active]);
                let text = r.to_string();
                assert!(text.contains("b.test") && text.contains("a.test"), "{text}");
                assert!(text.contains("doesn't match the one in the topology"));
            }
            _ => panic!("{o}"),
        }
        assert_eq!(o.exit_code(), 3);
        assert_eq!(h, [S::Preflight, S::ReleasingLocks, S::Done]);
        assert!(
            w.mutations()
                .iter()
                .all(|op| matches!(op, Op::AcquireLock { .. } | Op::ReleaseLock { .. }))
        );
    }

    /// The DC changes go to cannot be read: refused, nothing changed.
    #[test]
    fn an_unreadable_directory_is_refused() {
        let mut w = World::planned().with_ad(2);
        w.set_dc_up(0, false);
        let (o, _) = w.run(planned());
        assert!(
            matches!(o.refusal(), Some(Refusal::DirectoryUnreadable { .. })),
            "{o}"
        );
        assert!(
            w.mutations()
                .iter()
                .all(|op| matches!(op, Op::AcquireLock { .. } | Op::ReleaseLock { .. }))
        );
    }

    /// A mirroring partner named by a server name the backend cannot map: refused before
    /// the lock, nothing changed, and the text names the name and the alias to add.
    #[test]
    fn an_unmapped_mirroring_partner_name_is_refused_before_any_change() {
        let mut w = World::planned_mirrored();
        w.unmap_partner(&bm(), "SQLB01\\RTC");
        let (o, h) = w.run(planned_mirrored());
        let Some(r @ Refusal::MirrorPartnerUnmapped { name, instance, .. }) = o.refusal() else {
            panic!("{o}");
        };
        assert_eq!((name.as_str(), instance), ("SQLB01\\RTC", &bm()));
        let text = r.to_string();
        assert!(
            text.contains("[aliases]") && text.contains("\"SQLB01\\RTC\""),
            "{text}"
        );
        assert_eq!(h, [S::Preflight, S::ReleasingLocks, S::Done]);
        assert!(w.durable_mutations().is_empty());
    }

    /// A mirror to be forced that reports its witness UNKNOWN: the run goes on, and the
    /// warning names 1455 and the `SET WITNESS OFF` to run on the mirror if it comes; a
    /// witness CONNECTED to the mirror (or none) warns of nothing.
    #[test]
    fn dr_warns_of_1455_when_the_mirror_reports_its_witness_unknown() {
        let witness_warnings = |w: &World| -> Vec<String> {
            let p = plan(&dr_mirrored(), &w.observe(&dr_mirrored())).unwrap();
            assert_eq!(p.force_mirror, Some(bm()));
            p.warnings
                .into_iter()
                .filter(|w| w.contains("witness"))
                .collect()
        };
        let mut w = World::dr_mirrored();
        assert!(witness_warnings(&w).is_empty());
        w.set_witness(&bm(), WitnessState::Connected);
        assert!(witness_warnings(&w).is_empty());
        w.set_witness(&bm(), WitnessState::Unknown);
        let warned = witness_warnings(&w);
        let [text] = warned.as_slice() else {
            panic!("{warned:?}")
        };
        for want in [
            "TCP://wit.test:5022",
            "UNKNOWN",
            "FORCE_SERVICE_ALLOW_DATA_LOSS",
            "1455",
            "ALTER DATABASE [xds] SET WITNESS OFF;",
            "ALTER DATABASE [lis] SET WITNESS OFF;",
            &format!("on {}", bm()),
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        // The whole run: the warning reaches the findings, and the force goes on.
        let mut m = crate::machine::Machine::new(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
        assert!(m.findings().warnings.contains(text), "{:?}", m.findings());
    }

    /// The backup principal is down and its mirror took over by itself (automatic failover
    /// by the witness): the disaster recovery forces nothing, promotes the partner that
    /// serves and says so.
    #[test]
    fn dr_whose_backup_mirror_already_took_over_promotes_it_without_forcing() {
        let mut w = World::dr_mirrored();
        w.took_over(&bm());
        let mut m = w.machine(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == bm()),
            "{o}"
        );
        assert!(
            !m.history().contains(&S::ForcingMirror),
            "{:?}",
            m.history()
        );
        assert!(
            !w.mutations().iter().any(|op| matches!(
                op,
                Op::MirrorFailover {
                    kind: crate::server::MirrorFailoverKind::Forced,
                    ..
                }
            )),
            "{:?}",
            w.mutations()
        );
        assert!(w.writable(&bm()));
        let warnings = m.findings().warnings.join("\n");
        assert!(
            warnings.contains("already serves as principal")
                && warnings.contains(&b().to_string())
                && warnings.contains("without forcing"),
            "{warnings}"
        );
    }

    /// Mirroring was removed from the target store (`SET PARTNER OFF` on the partner that
    /// served, BM): B's old mirror copies stay RESTORING outside any session. The disaster
    /// recovery promotes BM, the store's ONLINE copy, and never recovers B's (a second live
    /// copy with an older history).
    #[test]
    fn dr_after_set_partner_off_promotes_the_online_partner_not_the_restoring_one() {
        let mut w = World::dr_mirrored();
        w.took_over(&bm());
        w.remove_mirroring(&bm());
        w.set_up(&b());
        w.set_restoring(&b());
        w.remove_mirroring(&b());
        let mut m = w.machine(dr_mirrored());
        let o = w.drive(&mut m);
        assert!(
            matches!(&o, Outcome::Succeeded { active, .. } if *active == bm()),
            "{o}"
        );
        assert!(!m.history().contains(&S::Recovering), "{:?}", m.history());
        assert!(
            !w.mutations().iter().any(|op| op.instance() == Some(&b())
                && matches!(
                    op,
                    Op::Recover { .. } | Op::SetReadOnly { .. } | Op::MirrorFailover { .. }
                )),
            "B's databases untouched: {:?}",
            w.mutations()
        );
        assert!(w.writable(&bm()) && !w.any_writable(&b()));
    }

    pub(crate) const SCENARIOS: &[fn()] = &[
        dr_warns_of_1455_when_the_mirror_reports_its_witness_unknown,
        dr_whose_backup_mirror_already_took_over_promotes_it_without_forcing,
        dr_after_set_partner_off_promotes_the_online_partner_not_the_restoring_one,
        an_unmapped_mirroring_partner_name_is_refused_before_any_change,
        a_directory_elsewhere_is_refused_with_both_values,
        an_unreadable_directory_is_refused,
        refused_by_the_first_check_releases_the_lock_and_changes_nothing_else,
        what_if_refused_by_the_first_check_takes_nothing,
        the_lock_is_taken_with_the_first_check,
        unreadable_record_on_a_reachable_instance_refuses,
        planned_refuses_a_source_that_is_read_only_already,
        planned_refuses_when_already_recorded_on_the_backup,
        unreachable_source_makes_the_active_store_unusable,
        serving_change_under_the_lock_refuses_and_releases,
        cancelled_under_the_lock_changes_nothing,
    ];
}
