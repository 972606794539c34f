//! The in-memory estate of SQL Server instances.
//!
//! # Semantics
//! - **Clock**: logical ticks. Every session-scoped operation advances one tick before it
//!   runs; [`Estate::advance`] ticks explicitly. A tick runs, in order: workloads (each
//!   writable, reachable copy of the workload's database grows by `rate`), replication links
//!   (the target copy moves toward the source copy by at most `rate`, if both instances are
//!   reachable, the link is not stalled and the target copy is not writable), mirroring (a
//!   mirror copy takes its principal's position and read-only flag while both partners are
//!   reachable and the session is not SUSPENDED). There is no wall clock inside.
//! - **Links and workloads through mirroring**: an endpoint instance that is a partner in a
//!   mirroring session for the database resolves to the current principal of that session.
//! - **Mirroring**: the mirror copy is RESTORING with role MIRROR. The state shown on a
//!   partner is DISCONNECTED while the other partner is unreachable, else the stored state.
//!   Planned failover (on the principal; needs SYNCHRONIZED, safety FULL and a reachable
//!   mirror, else 1422; 1477 with safety OFF; on the mirror 1470) swaps roles: the new principal is ONLINE with the
//!   old principal's read-only flag, the old one RESTORING. With a switch delay
//!   ([`Estate::set_partner_failover_delay`]) the statement returns first and the roles
//!   switch that many ticks later ("can complete successfully when entered, but fail
//!   later"); meanwhile both partners show PENDING_FAILOVER with their old roles, and the
//!   switch fails (roles kept, the session back to SYNCHRONIZED) when a partner is
//!   unreachable at its tick. Forced service (on the mirror,
//!   only while the principal is unreachable and the session has no witness or one connected
//!   to the mirror ([`Estate::set_witness`]), else 1455) makes the mirror PRINCIPAL and
//!   ONLINE, the old principal MIRROR and RESTORING, and the session SUSPENDED. With a
//!   force delay ([`Estate::set_force_service_delay`]) the statement returns first and the
//!   mirror switches that many ticks later (the same "fail later" sentence); meanwhile it
//!   shows what it showed before (an inference), a second force gets 1404, and the switch
//!   fails (roles kept) when the mirror is unreachable at its tick.
//!   Automatic failover ([`Estate::set_automatic_failover`], off by default): a
//!   SYNCHRONIZED safety-FULL session whose principal is lost while its mirror is reachable
//!   and its witness is connected to the mirror fails over by itself after the estate's
//!   delay in ticks: the mirror becomes PRINCIPAL and ONLINE, the old principal's copy
//!   MIRROR and RESTORING, and it rejoins as the mirror when it comes back (see
//!   `Inner::automatic_failovers` for what is documented and what is inferred).
//!   `ALTER DATABASE … SET READ_ONLY/READ_WRITE` is allowed on a principal (the flag travels
//!   to the mirror with the log), unless
//!   [`Estate::set_read_only_refused_on_mirroring_principal`] makes `SET READ_ONLY` there
//!   fail with 1468 (whether SQL Server does is not documented; the estate models both).
//! - **Scheduled events** ([`Estate::schedule`]): a witness connecting or disconnecting, an
//!   instance going down or coming back, at a given tick (mid-run, deterministic).
//! - **Sessions**: an instance going down, [`Estate::kill_sessions`] and
//!   [`Estate::close_session`] end sessions and release their application locks.
//! - **History**: every mutation except the position changes made by ticks.
//!
//! See [`crate::error`] for the error numbers.

use crate::error::SqlError;
use crate::fault::{Fault, FaultConfig, FaultState};
use crate::grants::LoginGrants;
pub use crate::snapshot::SessionId;
use crate::snapshot::{
    Change, DbRow, InstanceSnapshot, LockSnapshot, MirrorRow, Mutation, Snapshot,
};
use failover_core::{
    DatabaseName, DbState, InstanceAddr, LocationRecord, MirrorRole, MirrorState, Operation,
    WitnessInfo, WitnessState,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Identifies a replication link for [`Estate::set_link_stalled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(usize);

/// A mistake in building the estate (unknown instance, duplicate database…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("estate setup: {0}")]
pub struct SetupError(pub String);

#[derive(Debug, Clone)]
struct Database {
    name: DatabaseName,
    state: DbState,
    read_only: bool,
    position: u64,
    /// Restored `WITH STANDBY` (ONLINE, read-only, `is_in_standby = 1`).
    standby: bool,
}

#[derive(Debug, Clone)]
struct Instance {
    version: String,
    /// What the server calls itself (`@@SERVERNAME`); `None`: [`default_server_name`].
    server_name: Option<String>,
    reachable: bool,
    databases: BTreeMap<DatabaseName, Database>,
    location: Option<LocationRecord>,
}

#[derive(Debug, Clone)]
struct Mirroring {
    database: DatabaseName,
    principal: InstanceAddr,
    mirror: InstanceAddr,
    state: MirrorState,
    safety_full: bool,
    /// A planned failover accepted but not yet done: the ticks left before the roles switch.
    pending_switch: Option<u64>,
    /// A forced service accepted but not yet done: the ticks left before the mirror becomes
    /// PRINCIPAL.
    pending_force: Option<u64>,
    /// The witness, if the session has one.
    witness: Option<Witness>,
    /// Where the session is on the way to an automatic failover.
    auto: AutoFailover,
}

/// A session's progress toward an automatic failover while its principal is lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum AutoFailover {
    /// The principal is reachable (or automatic failover is off).
    #[default]
    Idle,
    /// The principal was lost while the mirror and the witness kept quorum: ticks since.
    Counting(u64),
    /// The principal was lost without that quorum (or it broke during the count): no
    /// automatic failover until the principal is back.
    Blocked,
}

/// A change to the estate scheduled for a tick ([`Estate::schedule`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EstateEvent {
    /// [`Estate::set_witness`] at that tick (roles as they are then).
    Witness {
        /// The mirrored database.
        database: DatabaseName,
        /// Either partner of its session.
        partner: InstanceAddr,
        /// The witness's name and connections; `None`: `SET WITNESS OFF`.
        witness: Option<(String, WitnessConnection)>,
    },
    /// [`Estate::set_reachable`] at that tick.
    Reachable {
        /// The instance.
        instance: InstanceAddr,
        /// Up or down.
        reachable: bool,
    },
}

/// A session's witness: its name and the partners it is connected to, by instance (so the
/// connections stay with the servers when the roles switch).
#[derive(Debug, Clone)]
struct Witness {
    name: String,
    connected: Vec<InstanceAddr>,
}

/// Which partners of a mirroring session its witness is connected to, named by their roles
/// when [`Estate::set_witness`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessConnection {
    /// Connected to both partners (a healthy high-safety session with automatic failover).
    Both,
    /// Connected to the principal only: the mirror sees it DISCONNECTED.
    PrincipalOnly,
    /// Connected to the mirror only: the principal sees it DISCONNECTED.
    MirrorOnly,
    /// Connected to neither partner.
    Neither,
}

#[derive(Debug, Clone)]
struct Link {
    source: InstanceAddr,
    target: InstanceAddr,
    databases: Vec<DatabaseName>,
    rate: u64,
    stalled: bool,
}

#[derive(Debug, Clone)]
struct Workload {
    instances: Vec<InstanceAddr>,
    database: DatabaseName,
    rate: u64,
}

#[derive(Debug, Default)]
struct Inner {
    tick: u64,
    /// Ticks between `SET PARTNER FAILOVER` returning and the roles switching (0: inside the
    /// statement).
    switch_delay: u64,
    /// Ticks between `FORCE_SERVICE_ALLOW_DATA_LOSS` returning and the forced mirror
    /// switching (0: inside the statement).
    force_delay: u64,
    instances: BTreeMap<InstanceAddr, Instance>,
    mirrors: Vec<Mirroring>,
    links: Vec<Link>,
    workloads: Vec<Workload>,
    logins: BTreeMap<String, String>,
    default_databases: BTreeMap<String, String>,
    /// Grants per (login, instance); `None`: every instance.
    grants: BTreeMap<(String, Option<InstanceAddr>), LoginGrants>,
    /// The SQL login of each session opened with one.
    session_logins: BTreeMap<SessionId, String>,
    sessions: BTreeMap<SessionId, InstanceAddr>,
    next_session: u64,
    locks: BTreeMap<(InstanceAddr, String), (SessionId, u32)>,
    history: Vec<Mutation>,
    faults: FaultState,
    /// [`Estate::set_read_only_refused_on_mirroring_principal`].
    read_only_refused_on_mirroring_principal: bool,
    /// [`Estate::set_automatic_failover`]: `Some(delay)` enables it.
    automatic_failover: Option<u64>,
    /// [`Estate::schedule`]: events by tick, in the order scheduled.
    events: Vec<(u64, EstateEvent)>,
}

/// The estate: a cheap, clonable, thread-safe handle to shared state.
#[derive(Clone, Default)]
pub struct Estate {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for Estate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.lock();
        f.debug_struct("Estate")
            .field("tick", &g.tick)
            .field("instances", &g.instances.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Estate {
    /// An empty estate without faults.
    pub fn new() -> Self {
        let e = Self::default();
        e.lock().faults = FaultState::new(FaultConfig::default());
        e
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- building -----

    /// Adds an instance reporting `version` as `@@VERSION`.
    pub fn add_instance(&self, addr: &InstanceAddr, version: &str) -> Result<(), SetupError> {
        let mut g = self.lock();
        if g.instances.contains_key(addr) {
            return Err(SetupError(format!("instance {addr} already exists")));
        }
        g.instances.insert(
            addr.clone(),
            Instance {
                version: version.to_string(),
                server_name: None,
                reachable: true,
                databases: BTreeMap::new(),
                location: None,
            },
        );
        g.record(addr, None, Change::InstanceAdded);
        Ok(())
    }

    /// Sets what the instance calls itself: its `@@SERVERNAME` /
    /// `SERVERPROPERTY('ServerName')`, which its partners show as
    /// `mirroring_partner_instance` ("the instance name and computer name", no domain, no
    /// port: <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>,
    /// <https://learn.microsoft.com/en-us/sql/t-sql/functions/serverproperty-transact-sql>).
    /// Unset: [`default_server_name`].
    pub fn set_server_name(&self, addr: &InstanceAddr, name: &str) -> Result<(), SetupError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(SetupError(format!(
                "the server name of {addr} must have 1-128 characters"
            )));
        }
        self.lock().instance_mut(addr)?.server_name = Some(name.to_string());
        Ok(())
    }

    /// What the instance calls itself (see [`Estate::set_server_name`]).
    pub fn server_name(&self, addr: &InstanceAddr) -> String {
        self.lock().server_name(addr)
    }

    /// Adds a database copy on an instance.
    pub fn add_database(
        &self,
        addr: &InstanceAddr,
        db: &DatabaseName,
        state: DbState,
        read_only: bool,
        position: u64,
    ) -> Result<(), SetupError> {
        let mut g = self.lock();
        let inst = g.instance_mut(addr)?;
        if inst.databases.contains_key(db) {
            return Err(SetupError(format!(
                "database {db} already exists on {addr}"
            )));
        }
        inst.databases.insert(
            db.clone(),
            Database {
                name: db.clone(),
                state: state.clone(),
                read_only,
                position,
                standby: false,
            },
        );
        g.record(
            addr,
            Some(db),
            Change::DatabaseAdded {
                state,
                read_only,
                position,
            },
        );
        Ok(())
    }

    /// Gives the mirroring session of `db` on `partner` (either partner) a witness named
    /// `name` (its server network address, `TCP://witness.example:5022`), connected to the
    /// partners `connection` names by their current roles; `None` removes the witness
    /// (`ALTER DATABASE … SET WITNESS OFF`). Setup only: it records no change.
    pub fn set_witness(
        &self,
        db: &DatabaseName,
        partner: &InstanceAddr,
        witness: Option<(&str, WitnessConnection)>,
    ) -> Result<(), SetupError> {
        self.lock().set_witness(db, partner, witness)
    }

    /// Enables automatic failover by the witness (`Some(delay)`) or disables it (`None`, the
    /// default). Enabled, a mirroring session whose principal is lost (unreachable) while
    /// the session is SYNCHRONIZED with safety FULL, its mirror is reachable and its witness
    /// is connected to the mirror fails over by itself `delay` ticks later (the mirror
    /// detecting the loss: SQL Server waits for the partner timeout, 10 s by default): the
    /// mirror becomes PRINCIPAL and ONLINE with its own position and read-only flag, the
    /// lost principal's copy MIRROR and RESTORING (what it shows when it comes back). A
    /// principal lost without that quorum, or a quorum broken during the delay, blocks the
    /// automatic failover until the principal is back ("If all server instances lose
    /// communication, however, and the witness and the mirror server later regain
    /// communication, automatic failover does not occur").
    /// <https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/role-switching-during-a-database-mirroring-session-sql-server>,
    /// <https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/database-mirroring-operating-modes>.
    /// Off by default so that estates built for forced service keep their meaning; a real
    /// server with such a session always fails over automatically.
    pub fn set_automatic_failover(&self, delay: Option<u64>) {
        self.lock().automatic_failover = delay;
    }

    /// See [`Estate::set_automatic_failover`].
    pub fn automatic_failover(&self) -> Option<u64> {
        self.lock().automatic_failover
    }

    /// Schedules `event` for tick `at` (the first tick numbered `at` or later runs it, before
    /// mirroring is brought up to date and automatic failovers are decided): a witness
    /// dropping off or coming back, a principal lost, in the middle of a run. An event for a
    /// session or instance that does not exist then does nothing.
    pub fn schedule(&self, at: u64, event: EstateEvent) {
        self.lock().events.push((at, event));
    }

    /// Sets up a mirroring session for `db`: `principal` must hold an ONLINE copy; the mirror
    /// copy is created (RESTORING, at the principal's position) or, if present, set RESTORING.
    pub fn add_mirroring(
        &self,
        db: &DatabaseName,
        principal: &InstanceAddr,
        mirror: &InstanceAddr,
        state: MirrorState,
        safety_full: bool,
    ) -> Result<(), SetupError> {
        let mut g = self.lock();
        if principal == mirror {
            return Err(SetupError("principal and mirror must differ".into()));
        }
        if g.mirroring_index(principal, db).is_some() || g.mirroring_index(mirror, db).is_some() {
            return Err(SetupError(format!(
                "{db} is already mirrored on one of the partners"
            )));
        }
        let p = g
            .instance_mut(principal)?
            .databases
            .get(db)
            .cloned()
            .ok_or_else(|| SetupError(format!("no database {db} on principal {principal}")))?;
        if p.state != DbState::Online {
            return Err(SetupError(format!(
                "the principal copy of {db} must be ONLINE"
            )));
        }
        let m = g.instance_mut(mirror)?;
        m.databases.insert(
            db.clone(),
            Database {
                name: db.clone(),
                state: DbState::Restoring,
                read_only: p.read_only,
                position: p.position,
                standby: false,
            },
        );
        g.mirrors.push(Mirroring {
            database: db.clone(),
            principal: principal.clone(),
            mirror: mirror.clone(),
            state,
            safety_full,
            pending_switch: None,
            pending_force: None,
            witness: None,
            auto: AutoFailover::Idle,
        });
        g.record(
            principal,
            Some(db),
            Change::MirroringAdded {
                mirror: mirror.clone(),
            },
        );
        Ok(())
    }

    /// `ALTER DATABASE [db] SET PARTNER OFF` on either partner of `db`'s session with
    /// `instance` (the operator's step, e.g. before fencing a principal on a server that
    /// refuses `SET READ_ONLY` there with 1468): the session is removed, the principal keeps
    /// its copy as it is and the former mirror's copy stays RESTORING
    /// (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/removing-database-mirroring-sql-server>).
    pub fn remove_mirroring(
        &self,
        db: &DatabaseName,
        instance: &InstanceAddr,
    ) -> Result<(), SetupError> {
        let mut g = self.lock();
        let i = g
            .mirroring_index(instance, db)
            .ok_or_else(|| SetupError(format!("{db} on {instance} is not mirrored")))?;
        let m = g.mirrors.remove(i);
        g.record(
            &m.principal,
            Some(db),
            Change::MirroringRemoved { mirror: m.mirror },
        );
        Ok(())
    }

    /// `SET PARTNER FAILOVER` returns before the roles switch: they switch `ticks` session
    /// operations (ticks) later; 0 (the default) switches inside the statement. Ticks, not
    /// time, so tests stay deterministic (replication advances the same way).
    pub fn set_partner_failover_delay(&self, ticks: u64) {
        self.lock().switch_delay = ticks;
    }

    /// `FORCE_SERVICE_ALLOW_DATA_LOSS` returns before the forced mirror switches: it becomes
    /// PRINCIPAL and ONLINE `ticks` ticks later (0, the default: inside the statement);
    /// meanwhile it shows what it showed before (MIRROR, RESTORING).
    pub fn set_force_service_delay(&self, ticks: u64) {
        self.lock().force_delay = ticks;
    }

    /// Whether a forced service of `db` on `instance`'s session was accepted and the mirror
    /// has not switched yet.
    pub fn force_pending(&self, db: &DatabaseName, instance: &InstanceAddr) -> bool {
        let g = self.lock();
        g.mirroring_index(instance, db)
            .is_some_and(|i| g.mirrors[i].pending_force.is_some())
    }

    /// Whether a planned failover of `db` on `instance`'s session was accepted and its roles
    /// have not switched yet.
    pub fn switch_pending(&self, db: &DatabaseName, instance: &InstanceAddr) -> bool {
        let g = self.lock();
        g.mirroring_index(instance, db)
            .is_some_and(|i| g.mirrors[i].pending_switch.is_some())
    }

    /// Changes the stored state of the mirroring session of `db` that `instance` is a partner
    /// of (e.g. SYNCHRONIZING to refuse a planned failover, or resuming a SUSPENDED one).
    pub fn set_mirroring_state(
        &self,
        db: &DatabaseName,
        instance: &InstanceAddr,
        state: MirrorState,
    ) -> Result<(), SetupError> {
        let mut g = self.lock();
        let i = g
            .mirroring_index(instance, db)
            .ok_or_else(|| SetupError(format!("{db} on {instance} is not mirrored")))?;
        g.mirrors[i].state = state;
        let p = g.mirrors[i].principal.clone();
        g.record(&p, Some(db), Change::MirroringState(state));
        Ok(())
    }

    /// Adds a replication link copying `databases` from `source` to `target`, `rate`
    /// position units per tick.
    pub fn add_link(
        &self,
        source: &InstanceAddr,
        target: &InstanceAddr,
        databases: &[DatabaseName],
        rate: u64,
    ) -> Result<LinkId, SetupError> {
        let mut g = self.lock();
        g.instance_mut(source)?;
        g.instance_mut(target)?;
        g.links.push(Link {
            source: source.clone(),
            target: target.clone(),
            databases: databases.to_vec(),
            rate,
            stalled: false,
        });
        Ok(LinkId(g.links.len() - 1))
    }

    /// Stalls or resumes a link.
    pub fn set_link_stalled(&self, link: LinkId, stalled: bool) {
        let mut g = self.lock();
        if let Some(l) = g.links.get_mut(link.0) {
            l.stalled = stalled;
            let src = l.source.clone();
            g.record(&src, None, Change::LinkStalled(stalled));
        }
    }

    /// Changes a link's rate.
    pub fn set_link_rate(&self, link: LinkId, rate: u64) {
        if let Some(l) = self.lock().links.get_mut(link.0) {
            l.rate = rate;
        }
    }

    /// Adds a workload: every tick, each copy of `db` on `instances` that is writable and
    /// reachable grows by `rate` (clients write wherever the database is writable).
    pub fn add_workload(&self, instances: &[InstanceAddr], db: &DatabaseName, rate: u64) {
        self.lock().workloads.push(Workload {
            instances: instances.to_vec(),
            database: db.clone(),
            rate,
        });
    }

    /// Makes an instance reachable or not. Going down ends all its sessions (their locks are
    /// released); connections are refused until it comes back.
    pub fn set_reachable(&self, addr: &InstanceAddr, reachable: bool) -> Result<(), SetupError> {
        self.lock().set_reachable(addr, reachable)
    }

    /// Ends every session on `addr` (a network blip): their application locks are released.
    pub fn kill_sessions(&self, addr: &InstanceAddr) {
        self.lock().kill_sessions(addr);
    }

    /// Sets the position of a copy directly.
    pub fn set_position(
        &self,
        addr: &InstanceAddr,
        db: &DatabaseName,
        position: u64,
    ) -> Result<(), SetupError> {
        let mut g = self.lock();
        g.db_mut(addr, db)
            .ok_or_else(|| SetupError(format!("no database {db} on {addr}")))?
            .position = position;
        g.record(addr, Some(db), Change::PositionSet(position));
        Ok(())
    }

    /// Writes a location record directly (setup; no compare-and-swap).
    pub fn set_location(
        &self,
        addr: &InstanceAddr,
        record: Option<LocationRecord>,
    ) -> Result<(), SetupError> {
        let mut g = self.lock();
        g.instance_mut(addr)?.location = record.clone();
        if let Some(r) = record {
            g.record(addr, None, Change::LocationWritten(r));
        }
        Ok(())
    }

    /// Adds (or replaces) an SQL login. With no login configured, every login is accepted.
    pub fn add_login(&self, user: &str, password: &str) {
        self.lock()
            .logins
            .insert(user.to_string(), password.to_string());
    }

    /// Sets the default database of login `user` (`None`: `master`), the database a session
    /// starts in when the client names none. SQL Server refuses such a login with 4064 when
    /// that database cannot be opened:
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-login-transact-sql>
    /// (`DEFAULT_DATABASE`).
    pub fn set_login_default_database(&self, user: &str, database: Option<&DatabaseName>) {
        let mut g = self.lock();
        match database {
            Some(d) => g.default_databases.insert(user.to_string(), d.to_string()),
            None => g.default_databases.remove(user),
        };
    }

    /// The default database of login `user`, when one other than `master` was set.
    pub fn login_default_database(&self, user: &str) -> Option<String> {
        self.lock().default_databases.get(user).cloned()
    }

    /// Makes the copy of `db` on `addr` a log-shipping STANDBY copy: ONLINE, read-only and
    /// `is_in_standby = 1` (as `RESTORE LOG … WITH STANDBY` leaves it). It refuses `SET
    /// READ_WRITE` with 5063 and is promoted by `RESTORE DATABASE … WITH RECOVERY`.
    pub fn set_standby(&self, addr: &InstanceAddr, db: &DatabaseName) -> Result<(), SetupError> {
        let mut g = self.lock();
        let d = g
            .db_mut(addr, db)
            .ok_or_else(|| SetupError(format!("no database {db} on {addr}")))?;
        d.state = DbState::Online;
        d.read_only = true;
        d.standby = true;
        Ok(())
    }

    /// Makes `ALTER DATABASE … SET READ_ONLY` on a database that is the principal of a
    /// mirroring session (in any mirroring state) fail with 1468, which SQL Server follows
    /// with 5069 (the simulator adds it), changing nothing. Default `false`: allowed.
    ///
    /// Why both: `READ_ONLY` "requires exclusive access to the database"
    /// (<https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-set-options>,
    /// `<db_update_option>`), and options that need it are refused with 1468 on databases in
    /// a mirroring session or an availability group
    /// (<https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-1000-to-1999>;
    /// practitioners report 1468 + 5069 for `SINGLE_USER` and `SET RECOVERY`), but no
    /// Microsoft page says whether `READ_ONLY` on a mirroring principal is among them. `SET
    /// READ_WRITE` stays allowed: a read-only database cannot enter a mirroring session
    /// (1466), so with this flag on a read-only principal exists only as a read-only copy
    /// set up that way, and refusing to open it would model nothing SQL Server documents.
    pub fn set_read_only_refused_on_mirroring_principal(&self, refused: bool) {
        self.lock().read_only_refused_on_mirroring_principal = refused;
    }

    /// See [`Estate::set_read_only_refused_on_mirroring_principal`].
    pub fn read_only_refused_on_mirroring_principal(&self) -> bool {
        self.lock().read_only_refused_on_mirroring_principal
    }

    /// Replaces the fault configuration and resets the call counters.
    pub fn set_faults(&self, config: FaultConfig) {
        self.lock().faults = FaultState::new(config);
    }

    /// Turns fault injection on or off (counters do not advance while off).
    pub fn set_faults_enabled(&self, enabled: bool) {
        self.lock().faults.enabled = enabled;
    }

    /// Decides (and counts) the fault for the next call of `operation` on `addr`.
    /// Deterministic for a given seed and per-(instance, operation) call number.
    pub fn fault_for(&self, addr: &InstanceAddr, operation: Operation) -> Option<Fault> {
        self.lock().faults.next(addr, operation)
    }

    /// Advances the clock by `n` ticks.
    pub fn advance(&self, n: u64) {
        let mut g = self.lock();
        for _ in 0..n {
            g.tick();
        }
    }

    // ----- reading without side effects -----

    /// The logical clock.
    pub fn now(&self) -> u64 {
        self.lock().tick
    }

    /// Every instance address.
    pub fn instances(&self) -> Vec<InstanceAddr> {
        self.lock().instances.keys().cloned().collect()
    }

    /// Whether the instance exists and accepts connections.
    pub fn is_reachable(&self, addr: &InstanceAddr) -> bool {
        self.lock().instances.get(addr).is_some_and(|i| i.reachable)
    }

    /// The whole state; consumes no fault and does not tick.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let mut instances = BTreeMap::new();
        for (addr, inst) in &g.instances {
            instances.insert(
                addr.clone(),
                InstanceSnapshot {
                    version: inst.version.clone(),
                    reachable: inst.reachable,
                    databases: g.rows(addr),
                    location: inst.location.clone(),
                    sessions: g.sessions.values().filter(|a| *a == addr).count(),
                },
            );
        }
        let locks = g
            .locks
            .iter()
            .map(|((i, r), (s, _))| LockSnapshot {
                instance: i.clone(),
                resource: r.clone(),
                session: *s,
            })
            .collect();
        Snapshot {
            tick: g.tick,
            instances,
            locks,
        }
    }

    /// Every mutation so far, in order.
    pub fn history(&self) -> Vec<Mutation> {
        self.lock().history.clone()
    }

    /// How many mutations outlive their session ([`crate::Change::is_durable`]): a run
    /// refused after taking and releasing its lock leaves this unchanged.
    pub fn durable_changes(&self) -> usize {
        self.lock()
            .history
            .iter()
            .filter(|m| m.change.is_durable())
            .count()
    }

    // ----- sessions -----

    /// Opens a session (trusted connection). Error 53 when the instance is down or unknown.
    pub fn open_session(&self, addr: &InstanceAddr) -> Result<SessionId, SqlError> {
        let mut g = self.lock();
        if !g.instances.get(addr).is_some_and(|i| i.reachable) {
            return Err(SqlError::connection_refused(addr));
        }
        g.next_session += 1;
        let id = SessionId(g.next_session);
        g.sessions.insert(id, addr.clone());
        Ok(id)
    }

    /// Opens a session with an SQL login: 18456 when the login is unknown or the password is
    /// wrong (with no login configured every login is accepted).
    pub fn login(
        &self,
        addr: &InstanceAddr,
        user: &str,
        password: &str,
    ) -> Result<SessionId, SqlError> {
        {
            let g = self.lock();
            if !g.instances.get(addr).is_some_and(|i| i.reachable) {
                return Err(SqlError::connection_refused(addr));
            }
            if !g.logins.is_empty() && g.logins.get(user).is_none_or(|p| p != password) {
                return Err(SqlError::login_failed(user));
            }
        }
        let id = self.open_session(addr)?;
        self.lock().session_logins.insert(id, user.to_string());
        Ok(id)
    }

    /// Sets what login `user` may do on `instance` (`None`: on every instance without its
    /// own grants). A login without grants, and a trusted session, is sysadmin.
    pub fn set_login_grants(
        &self,
        user: &str,
        instance: Option<&InstanceAddr>,
        grants: LoginGrants,
    ) {
        self.lock()
            .grants
            .insert((user.to_string(), instance.cloned()), grants);
    }

    /// The session's login name (`sa` for a trusted session) and what it may do.
    pub fn session_grants(&self, session: SessionId) -> Result<(String, LoginGrants), SqlError> {
        let g = self.lock();
        let addr = g
            .sessions
            .get(&session)
            .ok_or_else(SqlError::connection_dropped)?;
        Ok(g.grants_of(session, addr))
    }

    /// The login that owns `db` on `addr` (`sa` unless a login's grants own it).
    pub fn database_owner(&self, addr: &InstanceAddr, db: &DatabaseName) -> String {
        let g = self.lock();
        let owner = |inst: Option<&InstanceAddr>| {
            g.grants
                .iter()
                .find(|((_, i), gr)| i.as_ref() == inst && gr.owns(db))
                .map(|((u, _), _)| u.clone())
        };
        owner(Some(addr))
            .or_else(|| owner(None))
            .unwrap_or_else(|| "sa".into())
    }

    /// Ends a session and releases its application locks. Idempotent.
    pub fn close_session(&self, session: SessionId) {
        self.lock().end_session(session);
    }

    /// Whether the session is still open.
    pub fn session_alive(&self, session: SessionId) -> bool {
        self.lock().sessions.contains_key(&session)
    }

    // ----- session-scoped operations (each ticks once) -----

    fn op<T>(
        &self,
        session: SessionId,
        f: impl FnOnce(&mut Inner, &InstanceAddr) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut g = self.lock();
        let addr = g
            .sessions
            .get(&session)
            .cloned()
            .ok_or_else(SqlError::connection_dropped)?;
        g.tick();
        // A scheduled event may have taken the instance down during the tick.
        if !g.sessions.contains_key(&session) {
            return Err(SqlError::connection_dropped());
        }
        f(&mut g, &addr)
    }

    /// `SELECT @@VERSION`.
    pub fn version(&self, session: SessionId) -> Result<String, SqlError> {
        self.op(session, |g, a| Ok(g.instances[a].version.clone()))
    }

    /// The instance the session is connected to.
    pub fn session_instance(&self, session: SessionId) -> Result<InstanceAddr, SqlError> {
        self.lock()
            .sessions
            .get(&session)
            .cloned()
            .ok_or_else(SqlError::connection_dropped)
    }

    /// Every database's row (`sys.databases` + `sys.database_mirroring`), by name.
    pub fn database_rows(&self, session: SessionId) -> Result<Vec<DbRow>, SqlError> {
        self.op(session, |g, a| Ok(g.rows(a)))
    }

    /// The position of each requested database (`None` when it does not exist here).
    pub fn positions(
        &self,
        session: SessionId,
        databases: &[DatabaseName],
    ) -> Result<Vec<(DatabaseName, Option<u64>)>, SqlError> {
        self.op(session, |g, a| {
            let inst = &g.instances[a];
            Ok(databases
                .iter()
                .map(|d| (d.clone(), inst.databases.get(d).map(|x| x.position)))
                .collect())
        })
    }

    /// `USE [db]`: 911 missing, 954 mirror, 942 offline, 927 restoring.
    pub fn use_database(&self, session: SessionId, db: &DatabaseName) -> Result<(), SqlError> {
        self.op(session, |g, a| {
            let d = g.instances[a]
                .databases
                .get(db)
                .ok_or_else(|| SqlError::no_such_database(db.as_str()))?;
            if g.role(a, db) == Some(MirrorRole::Mirror) {
                return Err(SqlError::is_mirror(db.as_str()));
            }
            match d.state {
                DbState::Online => Ok(()),
                DbState::Offline => Err(SqlError::offline(db.as_str())),
                _ => Err(SqlError::in_restore(db.as_str())),
            }
        })
    }

    /// `ALTER DATABASE [db] SET READ_ONLY|READ_WRITE WITH ROLLBACK IMMEDIATE`. Setting the
    /// mode a database already has succeeds and changes nothing. 911 missing, 1468 for a
    /// mirror (and for `READ_ONLY` on a principal when
    /// [`Estate::set_read_only_refused_on_mirroring_principal`] is on), 5052 for a database
    /// that is not ONLINE (SQL Server follows each with 5069; the simulator adds it).
    pub fn set_read_only(
        &self,
        session: SessionId,
        db: &DatabaseName,
        read_only: bool,
    ) -> Result<(), SqlError> {
        self.op(session, |g, a| {
            let d = g.instances[a]
                .databases
                .get(db)
                .ok_or_else(|| SqlError::no_such_database(db.as_str()))?;
            if !g.grants_of(session, a).1.can_alter(db) {
                return Err(SqlError::no_alter_permission(db.as_str()));
            }
            match g.role(a, db) {
                Some(MirrorRole::Mirror) => {
                    return Err(SqlError::in_mirroring_session(db.as_str()));
                }
                Some(MirrorRole::Principal)
                    if read_only && g.read_only_refused_on_mirroring_principal =>
                {
                    return Err(SqlError::in_mirroring_session(db.as_str()));
                }
                _ => {}
            }
            if d.state != DbState::Online {
                return Err(SqlError::not_permitted_in_state(&d.state));
            }
            if d.standby {
                return Err(SqlError::warm_standby(db.as_str()));
            }
            if d.read_only == read_only {
                return Ok(());
            }
            let position = d.position;
            g.db_mut(a, db).expect("checked").read_only = read_only;
            if let Some(i) = g.mirroring_index(a, db) {
                let m = g.mirrors[i].mirror.clone();
                if g.instances[&m].reachable && g.mirrors[i].state != MirrorState::Suspended {
                    g.db_mut(&m, db).expect("mirror copy").read_only = read_only;
                }
            }
            g.record(
                a,
                Some(db),
                Change::ReadOnly {
                    read_only,
                    position,
                },
            );
            Ok(())
        })
    }

    /// `RESTORE DATABASE [db] WITH RECOVERY`: RESTORING -> ONLINE. 911 missing, 3104 in a
    /// mirroring session, 3117 already ONLINE, 3013 any other state.
    pub fn restore_with_recovery(
        &self,
        session: SessionId,
        db: &DatabaseName,
    ) -> Result<(), SqlError> {
        self.op(session, |g, a| {
            let d = g.instances[a]
                .databases
                .get(db)
                .ok_or_else(|| SqlError::no_such_database(db.as_str()))?;
            if !g.grants_of(session, a).1.can_restore(db) {
                return Err(SqlError::no_restore_permission(db.as_str()));
            }
            if g.mirroring_index(a, db).is_some() {
                return Err(SqlError::restore_mirrored(db.as_str()));
            }
            match d.state {
                DbState::Restoring => {
                    let position = d.position;
                    g.db_mut(a, db).expect("checked").state = DbState::Online;
                    g.record(
                        a,
                        Some(db),
                        Change::State {
                            from: DbState::Restoring,
                            to: DbState::Online,
                            position,
                        },
                    );
                    Ok(())
                }
                DbState::Online if d.standby => {
                    // RESTORE … WITH RECOVERY on a STANDBY copy rolls back the uncommitted
                    // transactions kept in the undo file and opens it read-write.
                    let position = d.position;
                    let dm = g.db_mut(a, db).expect("checked");
                    dm.standby = false;
                    dm.read_only = false;
                    g.record(
                        a,
                        Some(db),
                        Change::ReadOnly {
                            read_only: false,
                            position,
                        },
                    );
                    Ok(())
                }
                DbState::Online => Err(SqlError::nothing_to_restore()),
                ref other => Err(SqlError::restore_failed(format!(
                    "Database '{db}' is {other}."
                ))),
            }
        })
    }

    /// `ALTER DATABASE [db] SET PARTNER FAILOVER` on the principal; returns the new principal.
    /// 1416 not mirrored, 1470 issued on the mirror, 1477 safety OFF, 1404 an earlier one
    /// still switching, 1422 not SYNCHRONIZED / mirror unreachable.
    pub fn set_partner_failover(
        &self,
        session: SessionId,
        db: &DatabaseName,
    ) -> Result<InstanceAddr, SqlError> {
        self.op(session, |g, a| {
            if !g.instances[a].databases.contains_key(db) {
                return Err(SqlError::no_such_database(db.as_str()));
            }
            if !g.grants_of(session, a).1.can_alter(db) {
                return Err(SqlError::no_alter_permission(db.as_str()));
            }
            let i = g
                .mirroring_index(a, db)
                .ok_or_else(|| SqlError::not_mirrored(db.as_str()))?;
            let m = g.mirrors[i].clone();
            if &m.principal != a {
                return Err(SqlError::failover_on_mirror(db.as_str()));
            }
            if !m.safety_full {
                return Err(SqlError::safety_off(db.as_str()));
            }
            if m.pending_switch.is_some() {
                return Err(SqlError::mirror_busy());
            }
            if m.state != MirrorState::Synchronized || !g.instances[&m.mirror].reachable {
                return Err(SqlError::mirror_not_caught_up(db.as_str()));
            }
            if g.switch_delay == 0 {
                g.switch_roles(i);
            } else {
                // SQL Server: "A SET PARTNER or SET WITNESS command can complete successfully
                // when entered, but fail later"
                // (https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring);
                // sys.database_mirroring's mirroring_state 3 is "Pending Failover"
                // (https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql).
                // That both partners show it with their old roles until the switch is an
                // inference: the page does not say which side shows what.
                g.mirrors[i].state = MirrorState::PendingFailover;
                g.mirrors[i].pending_switch = Some(g.switch_delay);
                g.record(
                    &m.principal,
                    Some(db),
                    Change::MirroringState(MirrorState::PendingFailover),
                );
            }
            Ok(m.mirror)
        })
    }

    /// `ALTER DATABASE [db] SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS` on the mirror while the
    /// principal is unreachable. 1416 not mirrored, 1455 issued on the principal, with the
    /// principal reachable, or with a witness that is not connected to the mirror.
    pub fn force_service(&self, session: SessionId, db: &DatabaseName) -> Result<(), SqlError> {
        self.op(session, |g, a| {
            if !g.instances[a].databases.contains_key(db) {
                return Err(SqlError::no_such_database(db.as_str()));
            }
            if !g.grants_of(session, a).1.can_alter(db) {
                return Err(SqlError::no_alter_permission(db.as_str()));
            }
            let i = g
                .mirroring_index(a, db)
                .ok_or_else(|| SqlError::not_mirrored(db.as_str()))?;
            let m = g.mirrors[i].clone();
            if &m.mirror != a || g.instances[&m.principal].reachable {
                return Err(SqlError::cannot_force(db.as_str()));
            }
            // Forcing service needs "WITNESS is set to OFF or is connected to the mirror
            // server"; otherwise 1455
            // (https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/force-service-in-a-database-mirroring-session-transact-sql).
            if m.witness.as_ref().is_some_and(|w| !w.connected.contains(a)) {
                return Err(SqlError::cannot_force(db.as_str()));
            }
            if m.pending_force.is_some() {
                // Inference: the page gives no condition for 1404 ("the database mirror is
                // busy"); a second force while the first has not switched gets it, as a
                // second SET PARTNER FAILOVER does.
                return Err(SqlError::mirror_busy());
            }
            if g.force_delay == 0 {
                g.force_roles(i);
            } else {
                // "A SET PARTNER or SET WITNESS command can complete successfully when
                // entered, but fail later"
                // (https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring).
                // What the mirror shows until the forced switch lands is not documented
                // (inference: what it showed before — MIRROR, RESTORING, DISCONNECTED with
                // its principal down; the catalog view documents PENDING_FAILOVER without
                // saying when it shows); nothing is recorded until the switch.
                g.mirrors[i].pending_force = Some(g.force_delay);
            }
            Ok(())
        })
    }

    /// `sp_getapplock @LockMode='Exclusive', @LockOwner='Session', @LockTimeout=0` (in
    /// master): 0 granted (again: the lock count grows, as on SQL Server), -1 held by
    /// another session. Never waits.
    pub fn get_app_lock(&self, session: SessionId, resource: &str) -> Result<i32, SqlError> {
        self.op(session, |g, a| {
            let key = (a.clone(), resource.to_string());
            match g.locks.get_mut(&key) {
                Some((s, n)) if *s == session => {
                    *n += 1;
                    Ok(0)
                }
                Some(_) => Ok(-1),
                None => {
                    g.locks.insert(key, (session, 1));
                    g.record(
                        a,
                        None,
                        Change::LockAcquired {
                            resource: resource.to_string(),
                            session,
                        },
                    );
                    Ok(0)
                }
            }
        })
    }

    /// `sp_releaseapplock @LockOwner='Session'`: 0 released one level of the lock; 1223 when
    /// this session does not hold it.
    pub fn release_app_lock(&self, session: SessionId, resource: &str) -> Result<i32, SqlError> {
        self.op(session, |g, a| {
            let key = (a.clone(), resource.to_string());
            match g.locks.get_mut(&key) {
                Some((s, n)) if *s == session => {
                    *n -= 1;
                    if *n == 0 {
                        g.locks.remove(&key);
                        g.record(
                            a,
                            None,
                            Change::LockReleased {
                                resource: resource.to_string(),
                                session,
                            },
                        );
                    }
                    Ok(0)
                }
                _ => Err(SqlError::applock_not_held(resource)),
            }
        })
    }

    /// `APPLOCK_MODE('public', resource, 'Session') = 'Exclusive'` for this session.
    pub fn app_lock_held(&self, session: SessionId, resource: &str) -> Result<bool, SqlError> {
        self.op(session, |g, a| {
            Ok(g.locks
                .get(&(a.clone(), resource.to_string()))
                .is_some_and(|(s, _)| *s == session))
        })
    }

    /// Reads the location record kept on the session's instance.
    pub fn read_location(&self, session: SessionId) -> Result<Option<LocationRecord>, SqlError> {
        self.op(session, |g, a| Ok(g.instances[a].location.clone()))
    }

    /// Writes the location record if the stored epoch is `expected_epoch` (`None`: no
    /// record). Writing the record already stored succeeds. Else error
    /// [`crate::LOCATION_CONFLICT`].
    pub fn write_location(
        &self,
        session: SessionId,
        record: &LocationRecord,
        expected_epoch: Option<u64>,
    ) -> Result<(), SqlError> {
        self.op(session, |g, a| {
            if !g.grants_of(session, a).1.can_write_location() {
                return Err(SqlError::object_permission_denied(
                    if g.instances[a].location.is_some() {
                        "UPDATE"
                    } else {
                        "INSERT"
                    },
                    "cms_failover_location",
                ));
            }
            let stored = g.instances[a].location.clone();
            if stored.as_ref() == Some(record) {
                return Ok(());
            }
            let stored_epoch = stored.as_ref().map(|r| r.epoch);
            if stored_epoch != expected_epoch {
                return Err(SqlError::location_conflict(expected_epoch, stored_epoch));
            }
            g.instances.get_mut(a).expect("session instance").location = Some(record.clone());
            g.record(a, None, Change::LocationWritten(record.clone()));
            Ok(())
        })
    }
}

/// The server name an instance reports unless set ([`Estate::set_server_name`]): the
/// computer name (the host's first DNS label, upper case, as Windows shows NetBIOS names)
/// and the instance name, `SQL-A\RTC` for `sql-a.cms.test\RTC`; the default instance is
/// the computer name alone. An IP host has no computer name here: the address as written.
pub fn default_server_name(addr: &InstanceAddr) -> String {
    let host = addr.host().as_str();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return addr.to_string();
    }
    let computer = host.split('.').next().unwrap_or(host).to_ascii_uppercase();
    match addr.instance() {
        Some(i) => format!("{computer}\\{i}"),
        None => computer,
    }
}

impl Inner {
    fn instance_mut(&mut self, addr: &InstanceAddr) -> Result<&mut Instance, SetupError> {
        self.instances
            .get_mut(addr)
            .ok_or_else(|| SetupError(format!("no instance {addr}")))
    }

    fn db_mut(&mut self, addr: &InstanceAddr, db: &DatabaseName) -> Option<&mut Database> {
        self.instances.get_mut(addr)?.databases.get_mut(db)
    }

    fn db(&self, addr: &InstanceAddr, db: &DatabaseName) -> Option<&Database> {
        self.instances.get(addr)?.databases.get(db)
    }

    fn mirroring_index(&self, addr: &InstanceAddr, db: &DatabaseName) -> Option<usize> {
        self.mirrors
            .iter()
            .position(|m| &m.database == db && (&m.principal == addr || &m.mirror == addr))
    }

    fn role(&self, addr: &InstanceAddr, db: &DatabaseName) -> Option<MirrorRole> {
        self.mirroring_index(addr, db).map(|i| {
            if &self.mirrors[i].principal == addr {
                MirrorRole::Principal
            } else {
                MirrorRole::Mirror
            }
        })
    }

    fn server_name(&self, addr: &InstanceAddr) -> String {
        self.instances
            .get(addr)
            .and_then(|i| i.server_name.clone())
            .unwrap_or_else(|| default_server_name(addr))
    }

    fn reachable(&self, addr: &InstanceAddr) -> bool {
        self.instances.get(addr).is_some_and(|i| i.reachable)
    }

    /// The instance that currently serves `db` for an endpoint configured as `addr`.
    fn resolve(&self, addr: &InstanceAddr, db: &DatabaseName) -> InstanceAddr {
        match self.mirroring_index(addr, db) {
            Some(i) => self.mirrors[i].principal.clone(),
            None => addr.clone(),
        }
    }

    fn row(&self, addr: &InstanceAddr, d: &Database) -> DbRow {
        let mirroring = self.mirroring_index(addr, &d.name).map(|i| {
            let m = &self.mirrors[i];
            let (role, partner) = if &m.principal == addr {
                (MirrorRole::Principal, &m.mirror)
            } else {
                (MirrorRole::Mirror, &m.principal)
            };
            let state = if self.reachable(partner) {
                m.state
            } else {
                MirrorState::Disconnected
            };
            let failover_lsn = self.db(&m.mirror, &d.name).map_or(0, |x| x.position);
            // `mirroring_witness_state_desc` on this instance: CONNECTED while the witness
            // is connected to it, else DISCONNECTED; the columns are NULL without a witness
            // (https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql).
            let witness = m.witness.as_ref().map(|w| WitnessInfo {
                name: w.name.clone(),
                state: if w.connected.contains(addr) {
                    WitnessState::Connected
                } else {
                    WitnessState::Disconnected
                },
            });
            MirrorRow {
                role,
                state,
                partner_name: self.server_name(partner),
                partner: partner.clone(),
                safety_full: m.safety_full,
                failover_lsn,
                witness,
            }
        });
        DbRow {
            name: d.name.clone(),
            state: d.state.clone(),
            read_only: d.read_only,
            position: d.position,
            mirroring,
            in_standby: d.standby,
        }
    }

    fn rows(&self, addr: &InstanceAddr) -> Vec<DbRow> {
        self.instances
            .get(addr)
            .map(|i| i.databases.values().map(|d| self.row(addr, d)).collect())
            .unwrap_or_default()
    }

    fn writable_copies(&self, db: &DatabaseName) -> Vec<InstanceAddr> {
        self.instances
            .iter()
            .filter(|(a, i)| {
                i.databases
                    .get(db)
                    .is_some_and(|d| self.row(a, d).is_writable())
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    fn record(&mut self, addr: &InstanceAddr, db: Option<&DatabaseName>, change: Change) {
        let writable_after = db.map(|d| self.writable_copies(d)).unwrap_or_default();
        self.history.push(Mutation {
            tick: self.tick,
            instance: addr.clone(),
            database: db.cloned(),
            change,
            writable_after,
        });
    }

    /// The session's login (`sa` when trusted) and its grants on `addr` (sysadmin when none
    /// are configured).
    fn grants_of(&self, session: SessionId, addr: &InstanceAddr) -> (String, LoginGrants) {
        let Some(user) = self.session_logins.get(&session) else {
            return ("sa".into(), LoginGrants::sysadmin());
        };
        let grants = self
            .grants
            .get(&(user.clone(), Some(addr.clone())))
            .or_else(|| self.grants.get(&(user.clone(), None)))
            .cloned()
            .unwrap_or_else(LoginGrants::sysadmin);
        (user.clone(), grants)
    }

    fn end_session(&mut self, session: SessionId) {
        self.session_logins.remove(&session);
        if self.sessions.remove(&session).is_none() {
            return;
        }
        let held: Vec<(InstanceAddr, String)> = self
            .locks
            .iter()
            .filter(|(_, (s, _))| *s == session)
            .map(|(k, _)| k.clone())
            .collect();
        for (addr, resource) in held {
            self.locks.remove(&(addr.clone(), resource.clone()));
            self.record(&addr, None, Change::LockReleased { resource, session });
        }
    }

    /// Switches the roles of mirroring session `i` (a planned failover landing): the mirror
    /// copy takes the principal's position and read-only flag and comes ONLINE, the old
    /// principal goes RESTORING; recorded in the history.
    fn switch_roles(&mut self, i: usize) {
        let m = self.mirrors[i].clone();
        let db = &m.database;
        let p = self
            .db_mut(&m.principal, db)
            .expect("principal copy")
            .clone();
        {
            let nm = self.db_mut(&m.mirror, db).expect("mirror copy");
            nm.position = p.position;
            nm.read_only = p.read_only;
        }
        let (pos, _) = self.swap_partners(i);
        self.record_switch(
            &m.principal,
            db,
            (DbState::Online, DbState::Restoring),
            pos,
            MirrorRole::Mirror,
            false,
        );
        self.record_switch(
            &m.mirror,
            db,
            (DbState::Restoring, DbState::Online),
            pos,
            MirrorRole::Principal,
            false,
        );
    }

    /// The partners of mirroring session `i` swap roles: the mirror copy comes ONLINE as the
    /// principal, the old principal goes RESTORING as the mirror. Returns the positions of
    /// the new and the old principal's copies.
    fn swap_partners(&mut self, i: usize) -> (u64, u64) {
        let m = self.mirrors[i].clone();
        let db = &m.database;
        let new_pos = {
            let nm = self.db_mut(&m.mirror, db).expect("mirror copy");
            nm.state = DbState::Online;
            nm.position
        };
        let old_pos = {
            let op = self.db_mut(&m.principal, db).expect("principal copy");
            op.state = DbState::Restoring;
            op.position
        };
        self.mirrors[i].principal = m.mirror;
        self.mirrors[i].mirror = m.principal;
        (new_pos, old_pos)
    }

    /// Records one partner's side of a role switch: its state change, then its new role.
    fn record_switch(
        &mut self,
        addr: &InstanceAddr,
        db: &DatabaseName,
        (from, to): (DbState, DbState),
        position: u64,
        role: MirrorRole,
        forced: bool,
    ) {
        self.record(addr, Some(db), Change::State { from, to, position });
        self.record(addr, Some(db), Change::Role { role, forced });
    }

    /// Forced service lands: the mirror becomes PRINCIPAL and ONLINE, the old principal
    /// MIRROR and RESTORING, the session SUSPENDED.
    fn force_roles(&mut self, i: usize) {
        let m = self.mirrors[i].clone();
        let (a, db) = (&m.mirror, &m.database);
        let (pos, old_pos) = self.swap_partners(i);
        self.mirrors[i].state = MirrorState::Suspended;
        self.mirrors[i].pending_switch = None;
        self.mirrors[i].pending_force = None;
        self.record_switch(
            a,
            db,
            (DbState::Restoring, DbState::Online),
            pos,
            MirrorRole::Principal,
            true,
        );
        self.record_switch(
            &m.principal,
            db,
            (DbState::Online, DbState::Restoring),
            old_pos,
            MirrorRole::Mirror,
            true,
        );
        self.record(a, Some(db), Change::MirroringState(MirrorState::Suspended));
    }

    /// Planned failovers accepted earlier: count down, then switch (or fail, with a partner
    /// unreachable: the roles stay and the session goes back to SYNCHRONIZED). Forced
    /// services accepted earlier: count down, then the mirror switches if it is reachable at
    /// its tick (else the force fails and the roles stay: an inference, as for the planned
    /// switch).
    fn pending_switches(&mut self) {
        for i in 0..self.mirrors.len() {
            match self.mirrors[i].pending_force {
                Some(n) if n > 1 => self.mirrors[i].pending_force = Some(n - 1),
                Some(_) => {
                    self.mirrors[i].pending_force = None;
                    if self.reachable(&self.mirrors[i].mirror.clone()) {
                        self.force_roles(i);
                    }
                }
                None => {}
            }
            match self.mirrors[i].pending_switch {
                Some(n) if n > 1 => self.mirrors[i].pending_switch = Some(n - 1),
                Some(_) => {
                    self.mirrors[i].pending_switch = None;
                    self.mirrors[i].state = MirrorState::Synchronized;
                    let (p, m) = (
                        self.mirrors[i].principal.clone(),
                        self.mirrors[i].mirror.clone(),
                    );
                    let db = self.mirrors[i].database.clone();
                    self.record(
                        &p,
                        Some(&db),
                        Change::MirroringState(MirrorState::Synchronized),
                    );
                    if self.reachable(&p) && self.reachable(&m) {
                        self.switch_roles(i);
                    }
                }
                None => {}
            }
        }
    }

    fn set_witness(
        &mut self,
        db: &DatabaseName,
        partner: &InstanceAddr,
        witness: Option<(&str, WitnessConnection)>,
    ) -> Result<(), SetupError> {
        let i = self
            .mirroring_index(partner, db)
            .ok_or_else(|| SetupError(format!("{db} is not mirrored on {partner}")))?;
        let m = &mut self.mirrors[i];
        m.witness = witness.map(|(name, c)| {
            let connected = match c {
                WitnessConnection::Both => vec![m.principal.clone(), m.mirror.clone()],
                WitnessConnection::PrincipalOnly => vec![m.principal.clone()],
                WitnessConnection::MirrorOnly => vec![m.mirror.clone()],
                WitnessConnection::Neither => Vec::new(),
            };
            Witness {
                name: name.to_string(),
                connected,
            }
        });
        Ok(())
    }

    fn set_reachable(&mut self, addr: &InstanceAddr, reachable: bool) -> Result<(), SetupError> {
        let inst = self.instance_mut(addr)?;
        if inst.reachable == reachable {
            return Ok(());
        }
        inst.reachable = reachable;
        self.record(addr, None, Change::Reachable(reachable));
        if !reachable {
            self.kill_sessions(addr);
        }
        Ok(())
    }

    /// Runs the events scheduled for this tick or earlier ([`Estate::schedule`]), in order.
    fn due_events(&mut self) {
        let now = self.tick;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.events = later;
        for (_, e) in due {
            // An event naming what does not exist does nothing (documented on `schedule`).
            let _ = match e {
                EstateEvent::Witness {
                    database,
                    partner,
                    witness,
                } => self.set_witness(
                    &database,
                    &partner,
                    witness.as_ref().map(|(n, c)| (n.as_str(), *c)),
                ),
                EstateEvent::Reachable {
                    instance,
                    reachable,
                } => self.set_reachable(&instance, reachable),
            };
        }
    }

    /// Automatic failover by the witness ([`Estate::set_automatic_failover`]).
    ///
    /// Documented (Role Switching During a Database Mirroring Session, "Automatic failover";
    /// Database Mirroring Operating Modes): it needs high-safety mode (safety FULL) with a
    /// witness, a mirror database already SYNCHRONIZED, and the principal lost while the
    /// mirror and the witness keep quorum; the mirror then takes the principal role and
    /// brings its copy ONLINE as the principal database; the former principal, when it
    /// comes back, takes the mirror role and is resynchronized "as quickly as possible" (here:
    /// at the next tick). No data is lost (every committed transaction is on the mirror), so
    /// the new principal keeps its own position. If all instances lose communication and the
    /// witness and the mirror regain it later, no automatic failover occurs.
    /// Inferred: the delay is a number of estate ticks (the mirror detecting the loss, after
    /// the partner timeout on a real server); a quorum broken during the delay blocks the
    /// failover until the principal is back, as when all instances lose communication; the
    /// stored state stays SYNCHRONIZED (shown DISCONNECTED while the old principal is down);
    /// a pending planned switch blocks it.
    fn automatic_failovers(&mut self) {
        let Some(delay) = self.automatic_failover else {
            return;
        };
        for i in 0..self.mirrors.len() {
            let m = self.mirrors[i].clone();
            if self.reachable(&m.principal) {
                self.mirrors[i].auto = AutoFailover::Idle;
                continue;
            }
            let quorum = self.reachable(&m.mirror)
                && m.safety_full
                && m.state == MirrorState::Synchronized
                && m.pending_switch.is_none()
                && m.witness
                    .as_ref()
                    .is_some_and(|w| w.connected.contains(&m.mirror));
            let next = match (m.auto, quorum) {
                (AutoFailover::Blocked, _) | (_, false) => AutoFailover::Blocked,
                (AutoFailover::Idle, true) => AutoFailover::Counting(0),
                (AutoFailover::Counting(n), true) => AutoFailover::Counting(n + 1),
            };
            match next {
                AutoFailover::Counting(n) if n >= delay => {
                    self.fail_over_automatically(i);
                    self.mirrors[i].auto = AutoFailover::Idle;
                }
                other => self.mirrors[i].auto = other,
            }
        }
    }

    /// The mirror of session `i` takes the principal role by itself (its principal is lost).
    fn fail_over_automatically(&mut self, i: usize) {
        let m = self.mirrors[i].clone();
        let db = &m.database;
        let (position, _) = self.swap_partners(i);
        self.record(
            &m.mirror,
            Some(db),
            Change::AutomaticFailover {
                former_principal: m.principal.clone(),
                position,
            },
        );
    }

    fn kill_sessions(&mut self, addr: &InstanceAddr) {
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, a)| *a == addr)
            .map(|(s, _)| *s)
            .collect();
        for s in ids {
            self.end_session(s);
        }
    }

    fn tick(&mut self) {
        self.tick += 1;
        self.pending_switches();
        // Workloads.
        for w in self.workloads.clone() {
            for inst in &w.instances {
                let writable = self.reachable(inst)
                    && self
                        .db(inst, &w.database)
                        .is_some_and(|d| self.row(inst, d).is_writable());
                if writable {
                    let d = self.db_mut(inst, &w.database).expect("checked");
                    d.position = d.position.saturating_add(w.rate);
                }
            }
        }
        // Replication links.
        for l in self.links.clone() {
            if l.stalled {
                continue;
            }
            for db in &l.databases {
                let src = self.resolve(&l.source, db);
                let tgt = self.resolve(&l.target, db);
                if src == tgt || !self.reachable(&src) || !self.reachable(&tgt) {
                    continue;
                }
                let Some(sp) = self.db(&src, db).map(|d| d.position) else {
                    continue;
                };
                let Some(t) = self.db(&tgt, db) else { continue };
                if self.row(&tgt, t).is_writable() || t.position >= sp {
                    continue;
                }
                let d = self.db_mut(&tgt, db).expect("checked");
                d.position = sp.min(d.position.saturating_add(l.rate));
            }
        }
        // Mirroring: scheduled events, automatic failovers, then the mirrors catch up.
        self.due_events();
        self.automatic_failovers();
        for m in self.mirrors.clone() {
            if m.state == MirrorState::Suspended
                || !self.reachable(&m.principal)
                || !self.reachable(&m.mirror)
            {
                continue;
            }
            let Some(p) = self.db(&m.principal, &m.database).cloned() else {
                continue;
            };
            if let Some(c) = self.db_mut(&m.mirror, &m.database) {
                c.position = p.position;
                c.read_only = p.read_only;
            }
        }
    }
}
