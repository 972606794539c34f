//! The standard estate and its matching [`Topology`].
//!
//! Active store `sql-a.cms.test\RTC` (optional mirror `sql-a2.cms.test\RTC`), backup store
//! `sql-b.cms.test\RTC` (optional mirror `sql-b2.cms.test\RTC`; either store or both
//! mirrored, see [`Options::mirrored`]), databases `xds` and `lis`, a
//! replication link A -> B and a workload on every instance (clients write wherever the
//! databases are writable: before a failover that is A only). Every instance holds the
//! location record `{epoch 1, active: the active store, run_id "initial"}` unless disabled.

use crate::estate::{Estate, LinkId, WitnessConnection};
use failover_core::{
    DatabaseName, DbState, InstanceAddr, LocationRecord, MirrorState, Store, Topology,
};

/// `@@VERSION` of every fixture instance.
pub const VERSION: &str = "Microsoft SQL Server 2019 (RTM-CU22) (KB5027702) - 15.0.4322.2 (X64)";
/// The fixture SQL login's user name.
pub const LOGIN_USER: &str = "cmsfailover";
/// The fixture SQL login's password (test-only value).
pub const LOGIN_PASSWORD: &str = "Fake-Passw0rd!";
/// The fixtures' witness ([`Options::witness`]): its server network address.
pub const WITNESS: &str = "TCP://wit.cms.test:5022";
/// Initial position of the active copies.
pub const INITIAL_POSITION: u64 = 1000;

/// `sql-a.cms.test\RTC`, the active store's principal.
pub fn active() -> InstanceAddr {
    addr("sql-a.cms.test\\RTC")
}
/// `sql-a2.cms.test\RTC`, the active store's mirror.
pub fn active_mirror() -> InstanceAddr {
    addr("sql-a2.cms.test\\RTC")
}
/// `sql-b.cms.test\RTC`, the backup store's principal.
pub fn backup() -> InstanceAddr {
    addr("sql-b.cms.test\\RTC")
}
/// `sql-b2.cms.test\RTC`, the backup store's mirror.
pub fn backup_mirror() -> InstanceAddr {
    addr("sql-b2.cms.test\\RTC")
}
/// `xds` and `lis`.
pub fn databases() -> Vec<DatabaseName> {
    DatabaseName::cms_defaults()
}

fn addr(s: &str) -> InstanceAddr {
    InstanceAddr::parse(s).expect("fixture address")
}

/// How the backup store's standby copies look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyCopy {
    /// RESTORING (log-shipping style); recovered on promotion. Cannot be mirrored, so with
    /// [`Options::mirrored`] the backup mirror instance exists but holds no databases.
    Restoring,
    /// ONLINE and read-only (application-level copy); set read-write on promotion.
    OnlineReadOnly,
    /// Log shipping `WITH STANDBY`: ONLINE, read-only, `is_in_standby = 1`; `SET
    /// READ_WRITE` fails with 5063, promoted with `RESTORE … WITH RECOVERY`. Cannot be
    /// mirrored either (like [`StandbyCopy::Restoring`]).
    Standby,
}

/// Fixture options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Whether both stores are mirrored (SYNCHRONIZED, safety FULL).
    pub mirrored: bool,
    /// Whether the active store is mirrored (as [`Options::mirrored`] does for both): with
    /// `mirrored` off, only the active store is.
    pub active_mirrored: bool,
    /// Whether the backup store is mirrored (its standby copies must be ONLINE read-only,
    /// like with [`Options::mirrored`]): with `mirrored` off, only the backup store is.
    pub backup_mirrored: bool,
    /// How far the backup copies start behind the active ones.
    pub lag: u64,
    /// Whether the A -> B link starts stalled.
    pub stalled: bool,
    /// The standby copies' form.
    pub standby: StandbyCopy,
    /// Link rate per tick.
    pub link_rate: u64,
    /// Workload writes per tick.
    pub workload_rate: u64,
    /// Whether to add the workload at all.
    pub workload: bool,
    /// Whether the location record is written on every instance.
    pub location: bool,
    /// Whether the fixture login ([`LOGIN_USER`]) is added.
    pub login: bool,
    /// Whether `SET READ_ONLY` on a mirroring principal fails with 1468
    /// ([`Estate::set_read_only_refused_on_mirroring_principal`]).
    pub read_only_refused_on_mirroring_principal: bool,
    /// With the backup store mirrored and ONLINE read-only standby copies: it is
    /// served by its mirror partner (B2 principal, B its mirror), so a planned failover gives
    /// the principal role back to B with `SET PARTNER FAILOVER`.
    pub backup_on_mirror: bool,
    /// [`Estate::set_partner_failover_delay`]: ticks between `SET PARTNER FAILOVER`
    /// returning and the roles switching.
    pub switch_delay: u64,
    /// [`Estate::set_force_service_delay`]: ticks between `FORCE_SERVICE_ALLOW_DATA_LOSS`
    /// returning and the forced mirror switching.
    pub force_delay: u64,
    /// With the active store mirrored: its session gets the witness
    /// [`WITNESS`], connected as given ([`Estate::set_witness`]); `None`: no witness.
    pub witness: Option<WitnessConnection>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mirrored: false,
            active_mirrored: false,
            backup_mirrored: false,
            lag: 0,
            stalled: false,
            standby: StandbyCopy::OnlineReadOnly,
            link_rate: 5,
            workload_rate: 1,
            workload: true,
            location: true,
            login: true,
            read_only_refused_on_mirroring_principal: false,
            backup_on_mirror: false,
            switch_delay: 0,
            force_delay: 0,
            witness: None,
        }
    }
}

impl Options {
    /// Sets [`Options::witness`].
    pub fn witness(mut self, v: Option<WitnessConnection>) -> Self {
        self.witness = v;
        self
    }
    /// Sets [`Options::mirrored`] (both stores).
    pub fn mirrored(mut self, v: bool) -> Self {
        self.mirrored = v;
        self
    }
    /// Sets [`Options::active_mirrored`].
    pub fn active_mirrored(mut self, v: bool) -> Self {
        self.active_mirrored = v;
        self
    }
    /// Sets [`Options::backup_mirrored`].
    pub fn backup_mirrored(mut self, v: bool) -> Self {
        self.backup_mirrored = v;
        self
    }
    /// Whether the active store is mirrored ([`Options::mirrored`] or
    /// [`Options::active_mirrored`]).
    pub fn active_is_mirrored(&self) -> bool {
        self.mirrored || self.active_mirrored
    }
    /// Whether the backup store is mirrored ([`Options::mirrored`] or
    /// [`Options::backup_mirrored`]).
    pub fn backup_is_mirrored(&self) -> bool {
        self.mirrored || self.backup_mirrored
    }
    /// Sets [`Options::lag`].
    pub fn lag(mut self, v: u64) -> Self {
        self.lag = v;
        self
    }
    /// Sets [`Options::stalled`].
    pub fn stalled(mut self, v: bool) -> Self {
        self.stalled = v;
        self
    }
    /// Sets [`Options::standby`].
    pub fn standby(mut self, v: StandbyCopy) -> Self {
        self.standby = v;
        self
    }
    /// Sets [`Options::workload`].
    pub fn workload(mut self, v: bool) -> Self {
        self.workload = v;
        self
    }
    /// Sets [`Options::backup_on_mirror`].
    pub fn backup_on_mirror(mut self, v: bool) -> Self {
        self.backup_on_mirror = v;
        self
    }
    /// Sets [`Options::switch_delay`].
    pub fn switch_delay(mut self, v: u64) -> Self {
        self.switch_delay = v;
        self
    }
    /// Sets [`Options::force_delay`].
    pub fn force_delay(mut self, v: u64) -> Self {
        self.force_delay = v;
        self
    }
    /// Sets [`Options::location`].
    pub fn location(mut self, v: bool) -> Self {
        self.location = v;
        self
    }
    /// Sets [`Options::read_only_refused_on_mirroring_principal`].
    pub fn read_only_refused_on_mirroring_principal(mut self, v: bool) -> Self {
        self.read_only_refused_on_mirroring_principal = v;
        self
    }
}

/// A built fixture.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The estate.
    pub estate: Estate,
    /// The matching topology.
    pub topology: Topology,
    /// The A -> B link.
    pub link: LinkId,
}

/// The default fixture: unmirrored, no lag, standby ONLINE read-only.
pub fn standard() -> Fixture {
    build(&Options::default())
}

/// Builds a fixture.
pub fn build(o: &Options) -> Fixture {
    let estate = Estate::new();
    let dbs = databases();
    let (a, a2, b, b2) = (active(), active_mirror(), backup(), backup_mirror());
    let (a_mirrored, b_mirrored) = (o.active_is_mirrored(), o.backup_is_mirrored());
    let mut all = vec![a.clone(), b.clone()];
    if a_mirrored {
        all.push(a2.clone());
    }
    if b_mirrored {
        all.push(b2.clone());
    }
    for i in &all {
        estate.add_instance(i, VERSION).expect("fixture instance");
    }
    let behind = INITIAL_POSITION.saturating_sub(o.lag);
    estate.set_partner_failover_delay(o.switch_delay);
    estate.set_force_service_delay(o.force_delay);
    let on_mirror = b_mirrored && o.backup_on_mirror && o.standby == StandbyCopy::OnlineReadOnly;
    let (bp, bm) = if on_mirror {
        (b2.clone(), b.clone())
    } else {
        (b.clone(), b2.clone())
    };
    for db in &dbs {
        estate
            .add_database(&a, db, DbState::Online, false, INITIAL_POSITION)
            .expect("fixture db");
        match o.standby {
            StandbyCopy::Restoring => estate
                .add_database(&b, db, DbState::Restoring, false, behind)
                .expect("fixture db"),
            StandbyCopy::OnlineReadOnly => estate
                .add_database(&bp, db, DbState::Online, true, behind)
                .expect("fixture db"),
            StandbyCopy::Standby => {
                estate
                    .add_database(&b, db, DbState::Online, true, behind)
                    .expect("fixture db");
                estate.set_standby(&b, db).expect("fixture standby");
            }
        }
        if a_mirrored {
            estate
                .add_mirroring(db, &a, &a2, MirrorState::Synchronized, true)
                .expect("fixture mirroring");
            if let Some(c) = o.witness {
                estate
                    .set_witness(db, &a, Some((WITNESS, c)))
                    .expect("fixture witness");
            }
        }
        if b_mirrored && o.standby == StandbyCopy::OnlineReadOnly {
            estate
                .add_mirroring(db, &bp, &bm, MirrorState::Synchronized, true)
                .expect("fixture mirroring");
        }
        if o.workload {
            estate.add_workload(&all, db, o.workload_rate);
        }
    }
    let link = estate
        .add_link(&a, &b, &dbs, o.link_rate)
        .expect("fixture link");
    if o.stalled {
        estate.set_link_stalled(link, true);
    }
    let active_store = Store::new(a.clone(), a_mirrored.then(|| a2.clone())).expect("store");
    let backup_store = Store::new(b.clone(), b_mirrored.then(|| b2.clone())).expect("store");
    let topology =
        Topology::new(active_store.clone(), backup_store, dbs).expect("fixture topology");
    if o.location {
        let rec = LocationRecord {
            epoch: 1,
            active: active_store,
            run_id: "initial".into(),
        };
        for i in &all {
            estate
                .set_location(i, Some(rec.clone()))
                .expect("fixture location");
        }
    }
    if o.login {
        estate.add_login(LOGIN_USER, LOGIN_PASSWORD);
    }
    estate.set_read_only_refused_on_mirroring_principal(o.read_only_refused_on_mirroring_principal);
    Fixture {
        estate,
        topology,
        link,
    }
}
