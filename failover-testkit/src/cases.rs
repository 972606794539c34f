//! One async function per contract case of [`failover_core::Backend`]. Each builds its own
//! estate from [`backend_fake::fixtures`], serves it through the harness and panics with a
//! message naming the harness when the backend breaks the contract.

use crate::harness::{Harness, Served};
use backend_fake::Estate;
use backend_fake::fixtures::{self, Fixture, Options, StandbyCopy};
use failover_core::{
    Backend, BackendError, DatabaseName, DbState, ErrorKind, InstanceAddr, LocationRecord,
    LockAttempt, MirrorFailoverKind, MirrorRole, MirrorState, Operation, Store,
};

/// The lock resource the lock cases use (a name no real deployment uses).
pub const LOCK_RESOURCE: &str = "cms-failover-conformance";

struct Ctx {
    h: String,
    estate: Estate,
    served: Box<dyn Served>,
    dbs: Vec<DatabaseName>,
}

impl Ctx {
    /// After a role switch landed: `principal` shows every database ONLINE and PRINCIPAL,
    /// and holds the one writable copy of each.
    async fn assert_switched_to(&self, b: &dyn Backend, principal: &InstanceAddr) {
        let p = b
            .probe(principal, &self.dbs)
            .await
            .expect("probe the new principal");
        for d in &p.databases {
            assert_eq!(
                (d.state.clone(), d.mirroring.as_ref().map(|m| m.role)),
                (DbState::Online, Some(MirrorRole::Principal)),
                "{}",
                self.ctx("switched")
            );
        }
        for d in &self.dbs {
            assert_eq!(
                self.estate.snapshot().writable_copies(d),
                vec![principal.clone()],
                "{}",
                self.ctx("one writable copy after the switch")
            );
        }
    }

    async fn new(h: &dyn Harness, o: Options) -> (Self, Box<dyn Backend>) {
        let Fixture { estate, .. } = fixtures::build(&o);
        let served = h.serve(estate.clone()).await;
        let b = served.client().await;
        (
            Self {
                h: h.name().to_string(),
                estate,
                served,
                dbs: fixtures::databases(),
            },
            b,
        )
    }

    fn ctx(&self, what: &str) -> String {
        format!("[{}] {what}", self.h)
    }
}

fn xds() -> DatabaseName {
    fixtures::databases()[0].clone()
}

fn missing() -> DatabaseName {
    DatabaseName::parse("cms_failover_conformance_missing").expect("name")
}

#[track_caller]
fn expect_err<T: std::fmt::Debug>(
    r: Result<T, BackendError>,
    kind: ErrorKind,
    op: Operation,
    instance: &InstanceAddr,
    what: &str,
) -> BackendError {
    let e = match r {
        Ok(v) => panic!("{what}: expected a {kind} error, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(e.kind, kind, "{what}: wrong kind in {e}");
    assert_eq!(e.operation, op, "{what}: wrong operation in {e}");
    assert_eq!(
        e.instance,
        instance.to_string(),
        "{what}: wrong instance in {e}"
    );
    e
}

// ----- probe -----

/// Probe reports the version and every requested database, ONLINE and read-write on the
/// active instance.
pub async fn probe_reports_version_and_online_databases(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let a = fixtures::active();
    let p = b
        .probe(&a, &c.dbs)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("probe")));
    assert_eq!(p.instance, a, "{}", c.ctx("probe instance"));
    assert!(
        p.version.contains("SQL Server"),
        "{}: {}",
        c.ctx("version"),
        p.version
    );
    assert_eq!(p.databases.len(), 2, "{}", c.ctx("both databases"));
    for d in &c.dbs {
        let db = p
            .database(d)
            .unwrap_or_else(|| panic!("{}", c.ctx("database present")));
        assert_eq!(db.state, DbState::Online, "{}", c.ctx("ONLINE"));
        assert!(!db.read_only, "{}", c.ctx("read-write"));
        assert!(db.mirroring.is_none(), "{}", c.ctx("not mirrored"));
        assert!(db.is_writable(), "{}", c.ctx("writable"));
    }
}

/// Probe shows an ONLINE read-only standby copy as read-only and not writable.
pub async fn probe_reports_read_only_copy(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().standby(StandbyCopy::OnlineReadOnly)).await;
    let p = b.probe(&fixtures::backup(), &c.dbs).await.expect("probe");
    let d = p.database(&xds()).expect("xds");
    assert_eq!(d.state, DbState::Online, "{}", c.ctx("ONLINE"));
    assert!(d.read_only && !d.is_writable(), "{}", c.ctx("read-only"));
}

/// Probe shows a RESTORING standby copy.
pub async fn probe_reports_restoring_copy(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().standby(StandbyCopy::Restoring)).await;
    let p = b.probe(&fixtures::backup(), &c.dbs).await.expect("probe");
    let d = p.database(&xds()).expect("xds");
    assert_eq!(d.state, DbState::Restoring, "{}", c.ctx("RESTORING"));
    assert!(!d.is_writable(), "{}", c.ctx("not writable"));
}

/// Probe reports mirroring role, state, partner and safety on both partners.
pub async fn probe_reports_mirroring(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let p = b.probe(&a, &c.dbs).await.expect("probe principal");
    let m = p
        .database(&xds())
        .and_then(|d| d.mirroring.clone())
        .expect("mirroring on principal");
    assert_eq!(m.role, MirrorRole::Principal, "{}", c.ctx("principal role"));
    assert_eq!(
        m.state,
        MirrorState::Synchronized,
        "{}",
        c.ctx("synchronized")
    );
    assert_eq!(m.partner.as_ref(), Some(&a2), "{}", c.ctx("partner"));
    assert!(m.safety_full, "{}", c.ctx("safety full"));
    let p = b.probe(&a2, &c.dbs).await.expect("probe mirror");
    let d = p.database(&xds()).expect("xds on mirror");
    assert_eq!(
        d.state,
        DbState::Restoring,
        "{}",
        c.ctx("mirror copy RESTORING")
    );
    let m = d.mirroring.clone().expect("mirroring on mirror");
    assert_eq!(m.role, MirrorRole::Mirror, "{}", c.ctx("mirror role"));
    assert_eq!(
        m.partner.as_ref(),
        Some(&a),
        "{}",
        c.ctx("partner of mirror")
    );
    assert!(!d.is_writable(), "{}", c.ctx("mirror not writable"));
}

/// The mirror of an unreachable principal shows DISCONNECTED.
pub async fn probe_reports_disconnected_mirror(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    c.estate
        .set_reachable(&fixtures::active(), false)
        .expect("down");
    let p = b
        .probe(&fixtures::active_mirror(), &c.dbs)
        .await
        .expect("probe mirror");
    let m = p
        .database(&xds())
        .and_then(|d| d.mirroring.clone())
        .expect("mirroring");
    assert_eq!(
        m.state,
        MirrorState::Disconnected,
        "{}",
        c.ctx("DISCONNECTED")
    );
    assert_eq!(m.role, MirrorRole::Mirror, "{}", c.ctx("still mirror"));
}

/// A database that does not exist is left out of the probe (no error). Real-server safe.
pub async fn probe_leaves_out_missing_database(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let p = b
        .probe(&fixtures::active(), &[missing()])
        .await
        .expect("probe");
    assert!(
        p.databases.is_empty(),
        "{}: {:?}",
        c.ctx("missing left out"),
        p.databases
    );
}

/// Two probes in a row agree (probing has no effect on what it reports). Real-server safe.
pub async fn probe_is_repeatable(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let a = fixtures::active();
    let p1 = b.probe(&a, &c.dbs).await.expect("probe 1");
    let p2 = b.probe(&a, &c.dbs).await.expect("probe 2");
    assert_eq!(p1, p2, "{}", c.ctx("repeatable"));
    assert!(!p1.version.is_empty(), "{}", c.ctx("version"));
}

/// Probing and reading positions change nothing in the estate.
pub async fn probe_changes_nothing(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().workload(false).mirrored(true)).await;
    let mut before = c.estate.snapshot();
    for i in [
        fixtures::active(),
        fixtures::active_mirror(),
        fixtures::backup(),
    ] {
        b.probe(&i, &c.dbs).await.expect("probe");
        b.positions(&i, &c.dbs).await.expect("positions");
        b.read_location(&i).await.expect("read location");
        b.lock_held(&i, LOCK_RESOURCE).await.expect("lock held");
    }
    let mut after = c.estate.snapshot();
    before.tick = 0;
    after.tick = 0;
    for s in [&mut before, &mut after] {
        for i in s.instances.values_mut() {
            i.sessions = 0;
        }
    }
    assert_eq!(
        before,
        after,
        "{}",
        c.ctx("read-only operations change nothing")
    );
}

/// Probing an unreachable instance fails with `Unreachable`.
pub async fn probe_unreachable_instance(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let bk = fixtures::backup();
    c.estate.set_reachable(&bk, false).expect("down");
    let r = b.probe(&bk, &c.dbs).await;
    expect_err(
        r,
        ErrorKind::Unreachable,
        Operation::Probe,
        &bk,
        &c.ctx("probe down instance"),
    );
}

/// An instance that comes back is usable again (the backend reconnects).
pub async fn reconnects_after_instance_returns(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let a = fixtures::active();
    b.probe(&a, &c.dbs).await.expect("probe before");
    c.estate.set_reachable(&a, false).expect("down");
    let r = b.probe(&a, &c.dbs).await;
    expect_err(
        r,
        ErrorKind::Unreachable,
        Operation::Probe,
        &a,
        &c.ctx("while down"),
    );
    c.estate.set_reachable(&a, true).expect("up");
    // A server that comes back takes a moment to listen again (the simulator re-opens its
    // port on its next up/down check): retry, bounded by a generous deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        match b.probe(&a, &c.dbs).await {
            Ok(p) => {
                assert_eq!(p.databases.len(), 2, "{}", c.ctx("probe after return"));
                return;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "{}: {last:?}",
        c.ctx("no reconnect after the instance came back")
    );
}

// ----- positions -----

/// Positions are reported for each database, between the estate's values just before and
/// just after the call, and a lagging copy is behind.
pub async fn positions_report_each_database(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().lag(50).stalled(true)).await;
    let (a, bk) = (fixtures::active(), fixtures::backup());
    let before = c.estate.snapshot();
    let pa = b.positions(&a, &c.dbs).await.expect("positions A");
    let pb = b.positions(&bk, &c.dbs).await.expect("positions B");
    let after = c.estate.snapshot();
    for d in &c.dbs {
        let get = |v: &Vec<failover_core::DatabasePosition>| {
            v.iter()
                .find(|p| &p.database == d)
                .and_then(|p| p.position)
                .map(|p| u64::try_from(p.0).expect("fake positions fit in u64"))
        };
        let (x, y) = (get(&pa).expect("A position"), get(&pb).expect("B position"));
        assert!(
            before.position(&a, d).unwrap() <= x && x <= after.position(&a, d).unwrap(),
            "{}",
            c.ctx("A position within the estate's")
        );
        assert_eq!(
            Some(y),
            after.position(&bk, d),
            "{}",
            c.ctx("stalled B position")
        );
        assert!(y + 50 <= x, "{}", c.ctx("B behind A by the lag"));
    }
}

/// A database that does not exist has no position (absent or `None`), without an error.
pub async fn positions_missing_database_is_none(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let p = b
        .positions(&fixtures::active(), &[missing()])
        .await
        .expect("positions");
    assert!(
        p.iter().all(|p| p.position.is_none()),
        "{}: {p:?}",
        c.ctx("no position")
    );
}

// ----- set_read_only -----

/// The fence makes every database read-only, visible to probe.
pub async fn set_read_only_fences(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let a = fixtures::active();
    b.set_read_only(&a, &c.dbs, true).await.expect("fence");
    let p = b.probe(&a, &c.dbs).await.expect("probe");
    for d in &p.databases {
        assert!(d.read_only && !d.is_writable(), "{}", c.ctx("fenced"));
    }
    for d in &c.dbs {
        assert!(
            c.estate.snapshot().writable_copies(d).is_empty(),
            "{}",
            c.ctx("estate fenced")
        );
    }
}

/// Fencing twice and unfencing twice both succeed and end in the requested mode.
pub async fn set_read_only_is_idempotent(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let a = fixtures::active();
    for ro in [true, true, false, false] {
        b.set_read_only(&a, &c.dbs, ro)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("set")));
        let p = b.probe(&a, &c.dbs).await.expect("probe");
        assert!(
            p.databases.iter().all(|d| d.read_only == ro),
            "{}",
            c.ctx("mode")
        );
    }
}

/// Setting read-write unfences a read-only copy.
pub async fn set_read_write_unfences(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().standby(StandbyCopy::OnlineReadOnly)).await;
    let bk = fixtures::backup();
    b.set_read_only(&bk, &c.dbs, false).await.expect("unfence");
    let p = b.probe(&bk, &c.dbs).await.expect("probe");
    assert!(
        p.databases.iter().all(|d| d.is_writable()),
        "{}",
        c.ctx("writable")
    );
}

/// Read-only on a mirror copy is `InvalidState` and changes nothing.
pub async fn set_read_only_on_mirror_is_invalid_state(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let a2 = fixtures::active_mirror();
    let before = c.estate.snapshot().database(&a2, &xds()).cloned();
    let r = b.set_read_only(&a2, &c.dbs, true).await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::SetReadOnly,
        &a2,
        &c.ctx("fence mirror"),
    );
    let after = c.estate.snapshot().database(&a2, &xds()).cloned();
    assert_eq!(
        before.map(|d| d.read_only),
        after.map(|d| d.read_only),
        "{}",
        c.ctx("unchanged")
    );
}

/// Read-only on a RESTORING copy is `InvalidState`.
pub async fn set_read_only_on_restoring_is_invalid_state(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().standby(StandbyCopy::Restoring)).await;
    let bk = fixtures::backup();
    let r = b.set_read_only(&bk, &c.dbs, false).await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::SetReadOnly,
        &bk,
        &c.ctx("restoring"),
    );
}

/// Read-only on a missing database is `InvalidState`.
pub async fn set_read_only_on_missing_database_is_invalid_state(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let a = fixtures::active();
    let r = b.set_read_only(&a, &[missing()], true).await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::SetReadOnly,
        &a,
        &c.ctx("missing db"),
    );
}

// ----- recover -----

/// Recover brings a RESTORING copy ONLINE.
pub async fn recover_brings_restoring_online(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().standby(StandbyCopy::Restoring)).await;
    let bk = fixtures::backup();
    b.recover(&bk, &c.dbs)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("recover")));
    let p = b.probe(&bk, &c.dbs).await.expect("probe");
    assert!(
        p.databases.iter().all(|d| d.state == DbState::Online),
        "{}",
        c.ctx("ONLINE")
    );
}

/// Issue 12 item 4: a log-shipping STANDBY copy (ONLINE, read-only, `is_in_standby`) is
/// probed as such, refuses `SET READ_WRITE` (5063, invalid state) and is promoted by recover
/// (`RESTORE … WITH RECOVERY`); a second recover changes nothing.
pub async fn recover_promotes_a_standby_copy(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let bk = fixtures::backup();
    for d in &c.dbs {
        c.estate.set_standby(&bk, d).expect("standby copy");
    }
    let p = b.probe(&bk, &c.dbs).await.expect("probe");
    assert!(
        p.databases
            .iter()
            .all(|d| d.in_standby && d.read_only && d.needs_recovery()),
        "{}: {p:?}",
        c.ctx("STANDBY probed")
    );
    let e = b
        .set_read_only(&bk, &c.dbs, false)
        .await
        .expect_err("SET READ_WRITE on a STANDBY copy");
    assert_eq!(
        (e.kind, e.code),
        (ErrorKind::InvalidState, Some(5063)),
        "{}",
        c.ctx("5063")
    );
    b.recover(&bk, &c.dbs)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("recover")));
    b.recover(&bk, &c.dbs)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("recover again")));
    let p = b.probe(&bk, &c.dbs).await.expect("probe");
    assert!(
        p.databases.iter().all(|d| d.is_writable() && !d.in_standby),
        "{}: {p:?}",
        c.ctx("promoted")
    );
}

/// Issue 12 item 6: the probe reports what the login may do (`SUSER_SNAME`,
/// `IS_SRVROLEMEMBER`, `HAS_PERMS_BY_NAME`), a statement it lacks the right for fails as
/// SQL Server fails it (5011 ALTER, 3110 RESTORE, 229 the location table; each a permission
/// error) and changes nothing, and a mirror copy shows no mirroring to a login that is not
/// sysadmin.
pub async fn probe_reports_the_login_rights_and_refused_statements_change_nothing(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let lis = c.dbs[1].clone();
    c.estate.set_login_grants(
        fixtures::LOGIN_USER,
        None,
        backend_fake::LoginGrants {
            alter: vec![xds()],
            ..Default::default()
        },
    );
    let (a, bk) = (fixtures::active(), fixtures::backup());
    c.estate.set_standby(&bk, &xds()).expect("standby copy");
    let p = b.probe(&a, &c.dbs).await.expect("probe");
    let r = p
        .rights
        .unwrap_or_else(|| panic!("{}", c.ctx("rights probed")));
    assert_eq!(r.login, fixtures::LOGIN_USER, "{}", c.ctx("SUSER_SNAME"));
    assert!(!r.sysadmin && !r.dbcreator, "{}: {r:?}", c.ctx("no role"));
    assert_eq!(
        (
            r.can_alter(&xds()),
            r.can_alter(&lis),
            r.can_restore(&xds())
        ),
        (Some(true), Some(false), false),
        "{}: {r:?}",
        c.ctx("ALTER / RESTORE")
    );
    assert_eq!(
        r.location_write,
        Some(false),
        "{}",
        c.ctx("location grants")
    );
    let before = c.estate.history().len();
    let e = expect_err(
        b.set_read_only(&a, &[lis], true).await,
        ErrorKind::Permission,
        Operation::SetReadOnly,
        &a,
        &c.ctx("fence without ALTER"),
    );
    assert_eq!(e.code, Some(5011), "{}", c.ctx("5011"));
    let e = expect_err(
        b.recover(&bk, &[xds()]).await,
        ErrorKind::Permission,
        Operation::Recover,
        &bk,
        &c.ctx("RESTORE without dbcreator"),
    );
    assert_eq!(e.code, Some(3110), "{}", c.ctx("3110"));
    let rec = LocationRecord {
        epoch: 2,
        active: Store::new(bk.clone(), None).expect("store"),
        run_id: "conformance".into(),
    };
    let e = expect_err(
        b.write_location(&a, &rec, Some(1)).await,
        ErrorKind::Permission,
        Operation::WriteLocation,
        &a,
        &c.ctx("location write without INSERT/UPDATE"),
    );
    assert_eq!(e.code, Some(229), "{}", c.ctx("229"));
    assert_eq!(
        c.estate.history().len(),
        before,
        "{}",
        c.ctx("nothing changed")
    );

    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    c.estate.set_login_grants(
        fixtures::LOGIN_USER,
        None,
        backend_fake::LoginGrants::default(),
    );
    let p = b
        .probe(&fixtures::active_mirror(), &c.dbs)
        .await
        .expect("probe");
    assert!(
        p.databases
            .iter()
            .all(|d| d.state == DbState::Restoring && d.mirroring.is_none()),
        "{}: {p:?}",
        c.ctx("NULL mirroring columns on the mirror")
    );
    assert!(
        p.rights.is_some_and(|r| !r.sees_mirroring()),
        "{}",
        c.ctx("the rights say why")
    );
}

/// Recover on an ONLINE database succeeds and changes nothing.
pub async fn recover_is_idempotent(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().standby(StandbyCopy::Restoring)).await;
    let bk = fixtures::backup();
    b.recover(&bk, &c.dbs).await.expect("recover");
    b.recover(&bk, &c.dbs)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("recover again")));
    let a = fixtures::active();
    b.recover(&a, &c.dbs)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("recover ONLINE")));
    let p = b.probe(&a, &c.dbs).await.expect("probe");
    assert!(
        p.databases.iter().all(|d| d.is_writable()),
        "{}",
        c.ctx("unchanged")
    );
}

/// Recover on a mirror copy is `InvalidState` (it stays a RESTORING mirror).
pub async fn recover_on_mirror_is_invalid_state(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let a2 = fixtures::active_mirror();
    let r = b.recover(&a2, &c.dbs).await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::Recover,
        &a2,
        &c.ctx("recover mirror"),
    );
    let s = c.estate.snapshot();
    assert_eq!(
        s.database(&a2, &xds()).map(|d| d.state.clone()),
        Some(DbState::Restoring)
    );
}

// ----- mirror_failover -----

/// A planned failover on the principal swaps roles and returns the partner.
pub async fn mirror_planned_failover_swaps_roles(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let serving = b
        .mirror_failover(&a, &c.dbs, MirrorFailoverKind::Planned)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("planned failover")));
    assert_eq!(serving, a2, "{}", c.ctx("returned partner"));
    let p = b.probe(&a2, &c.dbs).await.expect("probe new principal");
    for d in &p.databases {
        assert_eq!(
            d.state,
            DbState::Online,
            "{}",
            c.ctx("new principal ONLINE")
        );
        assert_eq!(
            d.mirroring.as_ref().map(|m| m.role),
            Some(MirrorRole::Principal)
        );
    }
    for d in &c.dbs {
        assert_eq!(
            c.estate.snapshot().writable_copies(d),
            vec![a2.clone()],
            "{}",
            c.ctx("one copy")
        );
    }
}

/// `SET PARTNER FAILOVER` returns before the roles switch (the estate's switch delay): the
/// call returns the partner while both partners still show their old roles and
/// PENDING_FAILOVER; issuing it again meanwhile sends nothing; the roles switch later.
/// SQL Server: "A SET PARTNER or SET WITNESS command can complete successfully when entered,
/// but fail later"
/// (<https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>).
pub async fn mirror_planned_failover_returns_before_the_roles_switch(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    c.estate.set_partner_failover_delay(1_000);
    let serving = b
        .mirror_failover(&a, &c.dbs, MirrorFailoverKind::Planned)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("planned failover accepted")));
    assert_eq!(serving, a2, "{}", c.ctx("returned partner"));
    let p = b.probe(&a2, &c.dbs).await.expect("probe the partner");
    for d in &p.databases {
        let m = d.mirroring.as_ref().expect("mirrored");
        assert_eq!(
            (d.state.clone(), m.role, m.state),
            (
                DbState::Restoring,
                MirrorRole::Mirror,
                MirrorState::PendingFailover
            ),
            "{}",
            c.ctx("still the mirror while the switch is pending")
        );
    }
    let again = b
        .mirror_failover(&a, &c.dbs, MirrorFailoverKind::Planned)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("issued again while pending")));
    assert_eq!(again, a2, "{}", c.ctx("issued again"));
    for d in &c.dbs {
        assert!(c.estate.switch_pending(d, &a), "{}", c.ctx("still pending"));
    }
    c.estate.advance(1_000);
    c.assert_switched_to(b.as_ref(), &a2).await;
}

/// A planned failover when not SYNCHRONIZED is `InvalidState` and changes nothing.
pub async fn mirror_planned_failover_needs_synchronized(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let a = fixtures::active();
    for d in &c.dbs {
        c.estate
            .set_mirroring_state(d, &a, MirrorState::Synchronizing)
            .expect("state");
    }
    let r = b
        .mirror_failover(&a, &c.dbs, MirrorFailoverKind::Planned)
        .await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::MirrorFailover,
        &a,
        &c.ctx("1422"),
    );
    assert_eq!(
        c.estate.snapshot().writable_copies(&xds()),
        vec![a],
        "{}",
        c.ctx("unchanged")
    );
}

/// A forced failover on the mirror with the principal down makes the mirror principal.
pub async fn mirror_forced_failover_with_principal_down(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    c.estate.set_reachable(&a, false).expect("down");
    let serving = b
        .mirror_failover(&a2, &c.dbs, MirrorFailoverKind::Forced)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("forced failover")));
    assert_eq!(serving, a2, "{}", c.ctx("serving instance"));
    let p = b.probe(&a2, &c.dbs).await.expect("probe");
    for d in &p.databases {
        assert!(d.is_writable(), "{}", c.ctx("writable after forcing"));
        assert_eq!(
            d.mirroring.as_ref().map(|m| m.role),
            Some(MirrorRole::Principal)
        );
    }
    // Idempotent: forcing again on the (now) principal changes nothing.
    let again = b
        .mirror_failover(&a2, &c.dbs, MirrorFailoverKind::Forced)
        .await;
    assert_eq!(again.ok(), Some(a2), "{}", c.ctx("forced again"));
}

/// `FORCE_SERVICE_ALLOW_DATA_LOSS` returns before the mirror switches (the estate's force
/// delay): the call returns the mirror while it still shows MIRROR and RESTORING; issuing it
/// again meanwhile is 1404 (mirror busy: transient) and changes nothing; the mirror becomes
/// the one writable principal later. SQL Server: "A SET PARTNER or SET WITNESS command can
/// complete successfully when entered, but fail later"
/// (<https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>).
pub async fn mirror_forced_failover_returns_before_the_mirror_switches(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true).force_delay(1_000)).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    c.estate.set_reachable(&a, false).expect("down");
    let serving = b
        .mirror_failover(&a2, &c.dbs, MirrorFailoverKind::Forced)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("forced failover accepted")));
    assert_eq!(serving, a2, "{}", c.ctx("serving instance"));
    let p = b.probe(&a2, &c.dbs).await.expect("probe the mirror");
    for d in &p.databases {
        assert_eq!(
            (d.state.clone(), d.mirroring.as_ref().map(|m| m.role)),
            (DbState::Restoring, Some(MirrorRole::Mirror)),
            "{}",
            c.ctx("still the mirror while the force is pending")
        );
    }
    let before = c.estate.durable_changes();
    forcing_again_is_busy(&c, b.as_ref(), &a2, "forced again while pending").await;
    assert_eq!(c.estate.durable_changes(), before, "{}", c.ctx("unchanged"));
    for d in &c.dbs {
        assert!(c.estate.force_pending(d, &a2), "{}", c.ctx("still pending"));
    }
    c.estate.advance(1_000);
    c.assert_switched_to(b.as_ref(), &a2).await;
}

/// Forcing every CMS database on `mirror` again while a force is pending: 1404, transient.
async fn forcing_again_is_busy(c: &Ctx, b: &dyn Backend, mirror: &InstanceAddr, what: &str) {
    let again = b
        .mirror_failover(mirror, &c.dbs, MirrorFailoverKind::Forced)
        .await;
    let e = expect_err(
        again,
        ErrorKind::Transient,
        Operation::MirrorFailover,
        mirror,
        what,
    );
    assert_eq!(e.code, Some(1404), "{}", c.ctx("mirror busy"));
}

/// A forced failover over several databases is one batch of one ALTER per database, and an
/// error ends its own statement only: with `xds`'s force still pending (1404 when forced
/// again), `lis` is forced by the same call, which answers with the 1404.
pub async fn mirror_forced_failover_sends_every_database_when_one_is_busy(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true).force_delay(1_000)).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    c.estate.set_reachable(&a, false).expect("down");
    let (first, rest) = c.dbs.split_first().expect("the CMS databases");
    b.mirror_failover(&a2, std::slice::from_ref(first), MirrorFailoverKind::Forced)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("the first database forced")));
    let what = "forced again while the first is pending";
    forcing_again_is_busy(&c, b.as_ref(), &a2, what).await;
    for d in rest {
        assert!(
            c.estate.force_pending(d, &a2),
            "{}",
            c.ctx("the other databases were forced by the same batch")
        );
    }
    c.estate.advance(1_000);
    c.assert_switched_to(b.as_ref(), &a2).await;
}

/// A forced failover issued on the current principal changes nothing and returns it.
pub async fn mirror_forced_failover_is_idempotent_on_principal(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let a = fixtures::active();
    let before = c.estate.snapshot();
    let serving = b
        .mirror_failover(&a, &c.dbs, MirrorFailoverKind::Forced)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("forced on principal")));
    assert_eq!(serving, a, "{}", c.ctx("returns the principal"));
    let after = c.estate.snapshot();
    for d in &c.dbs {
        assert_eq!(
            before.writable_copies(d),
            after.writable_copies(d),
            "{}",
            c.ctx("unchanged")
        );
    }
}

/// A forced failover while the principal is reachable is `InvalidState`.
pub async fn mirror_forced_failover_with_principal_up_is_invalid_state(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().mirrored(true)).await;
    let a2 = fixtures::active_mirror();
    let r = b
        .mirror_failover(&a2, &c.dbs, MirrorFailoverKind::Forced)
        .await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::MirrorFailover,
        &a2,
        &c.ctx("1455"),
    );
    assert_eq!(
        c.estate.snapshot().writable_copies(&xds()),
        vec![fixtures::active()]
    );
}

/// Issue 12 item 2: the probe reports the witness as the mirror sees it, and forcing
/// service while the witness is not connected to the mirror is `InvalidState` (1455) and
/// changes nothing.
pub async fn mirror_forced_failover_with_the_witness_off_the_mirror_is_invalid_state(
    h: &dyn Harness,
) {
    let o = Options::default()
        .mirrored(true)
        .witness(Some(backend_fake::WitnessConnection::PrincipalOnly));
    let (c, b) = Ctx::new(h, o).await;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    c.estate.set_reachable(&a, false).expect("down");
    let p = b.probe(&a2, &c.dbs).await.expect("probe mirror");
    let w = p
        .database(&xds())
        .and_then(|d| d.mirroring.clone())
        .and_then(|m| m.witness)
        .expect("witness on mirror");
    assert_eq!(w.name, fixtures::WITNESS, "{}", c.ctx("witness name"));
    assert_eq!(
        w.state,
        failover_core::WitnessState::Disconnected,
        "{}",
        c.ctx("witness state")
    );
    let r = b
        .mirror_failover(&a2, &c.dbs, MirrorFailoverKind::Forced)
        .await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::MirrorFailover,
        &a2,
        &c.ctx("1455"),
    );
    assert_eq!(
        c.estate
            .snapshot()
            .database(&a2, &xds())
            .map(|d| d.state.clone()),
        Some(DbState::Restoring),
        "{}",
        c.ctx("mirror unchanged")
    );
}

/// A mirror failover of an unmirrored database is `InvalidState`.
pub async fn mirror_failover_unmirrored_is_invalid_state(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let a = fixtures::active();
    let r = b
        .mirror_failover(&a, &c.dbs, MirrorFailoverKind::Planned)
        .await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::MirrorFailover,
        &a,
        &c.ctx("not mirrored"),
    );
}

// ----- locks -----

/// The lock is granted to one client and reported `Held` to another. Real-server safe.
pub async fn lock_granted_then_held_by_other(h: &dyn Harness) {
    let (c, b1) = Ctx::new(h, Options::default()).await;
    let b2 = c.served.client().await;
    let a = fixtures::active();
    assert_eq!(
        b1.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire"),
        LockAttempt::Granted
    );
    assert_eq!(
        b2.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire 2"),
        LockAttempt::Held
    );
    assert!(
        b1.lock_held(&a, LOCK_RESOURCE).await.expect("held"),
        "{}",
        c.ctx("holder holds")
    );
    assert!(
        !b2.lock_held(&a, LOCK_RESOURCE).await.expect("held 2"),
        "{}",
        c.ctx("other does not")
    );
    b1.release_lock(&a, LOCK_RESOURCE).await.expect("release");
}

/// Acquiring again as the holder is `Granted`, and one release frees it. Real-server safe.
pub async fn lock_acquire_is_idempotent_for_holder(h: &dyn Harness) {
    let (c, b1) = Ctx::new(h, Options::default()).await;
    let b2 = c.served.client().await;
    let a = fixtures::active();
    for _ in 0..2 {
        let r = b1.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire");
        assert_eq!(r, LockAttempt::Granted, "{}", c.ctx("granted again"));
    }
    b1.release_lock(&a, LOCK_RESOURCE).await.expect("release");
    assert!(
        !b1.lock_held(&a, LOCK_RESOURCE).await.expect("held"),
        "{}",
        c.ctx("released")
    );
    let r = b2.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire 2");
    assert_eq!(
        r,
        LockAttempt::Granted,
        "{}",
        c.ctx("free after one release")
    );
    b2.release_lock(&a, LOCK_RESOURCE).await.expect("release 2");
}

/// Releasing lets another client take it. Real-server safe.
pub async fn lock_release_lets_other_take_it(h: &dyn Harness) {
    let (c, b1) = Ctx::new(h, Options::default()).await;
    let b2 = c.served.client().await;
    let a = fixtures::active();
    b1.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire");
    b1.release_lock(&a, LOCK_RESOURCE).await.expect("release");
    let r = b2.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire 2");
    assert_eq!(r, LockAttempt::Granted, "{}", c.ctx("other takes it"));
    b2.release_lock(&a, LOCK_RESOURCE).await.expect("release 2");
}

/// Releasing a lock not held succeeds, also when another client holds it (which keeps it).
/// Real-server safe.
pub async fn lock_release_not_held_succeeds(h: &dyn Harness) {
    let (c, b1) = Ctx::new(h, Options::default()).await;
    let b2 = c.served.client().await;
    let a = fixtures::active();
    b1.release_lock(&a, LOCK_RESOURCE)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("release unheld")));
    b2.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire 2");
    b1.release_lock(&a, LOCK_RESOURCE)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("release other's")));
    assert!(
        b2.lock_held(&a, LOCK_RESOURCE).await.expect("held"),
        "{}",
        c.ctx("still held")
    );
    b2.release_lock(&a, LOCK_RESOURCE).await.expect("release 2");
}

/// The lock is lost when the holder's connection drops: `lock_held` says false (possibly
/// after one `Unreachable`), and another client gets it.
pub async fn lock_lost_on_disconnect(h: &dyn Harness) {
    let (c, b1) = Ctx::new(h, Options::default()).await;
    let b2 = c.served.client().await;
    let a = fixtures::active();
    b1.acquire_lock(&a, LOCK_RESOURCE).await.expect("acquire");
    c.estate.kill_sessions(&a);
    let r = b2.acquire_lock(&a, LOCK_RESOURCE).await;
    assert!(
        matches!(r, Ok(LockAttempt::Granted)),
        "{}: {r:?}",
        c.ctx("other takes the lost lock")
    );
    let mut held = b1.lock_held(&a, LOCK_RESOURCE).await;
    if let Err(e) = &held {
        assert_eq!(
            e.kind,
            ErrorKind::Unreachable,
            "{}",
            c.ctx("dropped connection")
        );
        held = b1.lock_held(&a, LOCK_RESOURCE).await;
    }
    assert_eq!(held.ok(), Some(false), "{}", c.ctx("lock lost"));
}

// ----- location record -----

fn record(epoch: u64, store: InstanceAddr) -> LocationRecord {
    LocationRecord {
        epoch,
        active: Store::new(store, None).expect("store"),
        run_id: format!("conformance-{epoch}"),
    }
}

/// With no record, read is `None`; a write expecting none succeeds and reads back.
pub async fn location_write_then_read(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default().location(false)).await;
    let bk = fixtures::backup();
    assert_eq!(
        b.read_location(&bk).await.expect("read"),
        None,
        "{}",
        c.ctx("no record")
    );
    let r1 = record(1, fixtures::active());
    b.write_location(&bk, &r1, None).await.expect("write 1");
    assert_eq!(b.read_location(&bk).await.expect("read"), Some(r1.clone()));
    let r2 = record(2, bk.clone());
    b.write_location(&bk, &r2, Some(1)).await.expect("write 2");
    assert_eq!(
        b.read_location(&bk).await.expect("read"),
        Some(r2),
        "{}",
        c.ctx("epoch 2")
    );
}

/// A write expecting the wrong epoch is `InvalidState` and leaves the record.
pub async fn location_cas_conflict_is_invalid_state(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let bk = fixtures::backup();
    let stored = b
        .read_location(&bk)
        .await
        .expect("read")
        .expect("fixture record");
    let r = b
        .write_location(
            &bk,
            &record(stored.epoch + 1, bk.clone()),
            Some(stored.epoch + 5),
        )
        .await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::WriteLocation,
        &bk,
        &c.ctx("stale epoch"),
    );
    let r = b.write_location(&bk, &record(9, bk.clone()), None).await;
    expect_err(
        r,
        ErrorKind::InvalidState,
        Operation::WriteLocation,
        &bk,
        &c.ctx("expected none"),
    );
    assert_eq!(
        b.read_location(&bk).await.expect("read"),
        Some(stored),
        "{}",
        c.ctx("unchanged")
    );
}

/// Writing the record already stored succeeds (a retried write).
pub async fn location_rewrite_same_record_succeeds(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let bk = fixtures::backup();
    let r2 = record(2, bk.clone());
    b.write_location(&bk, &r2, Some(1)).await.expect("write");
    b.write_location(&bk, &r2, Some(1))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.ctx("same write again")));
    assert_eq!(b.read_location(&bk).await.expect("read"), Some(r2));
}

// ----- errors -----

/// Every operation against an unreachable instance fails with `Unreachable`, naming the
/// operation and the instance.
pub async fn errors_carry_operation_and_instance(h: &dyn Harness) {
    let (c, b) = Ctx::new(h, Options::default()).await;
    let bk = fixtures::backup();
    c.estate.set_reachable(&bk, false).expect("down");
    let d = &c.dbs;
    let w = |what: &str| c.ctx(what);
    let (u, i) = (ErrorKind::Unreachable, &bk);
    expect_err(b.probe(i, d).await, u, Operation::Probe, i, &w("probe"));
    expect_err(
        b.positions(i, d).await,
        u,
        Operation::Positions,
        i,
        &w("positions"),
    );
    expect_err(
        b.set_read_only(i, d, true).await,
        u,
        Operation::SetReadOnly,
        i,
        &w("fence"),
    );
    expect_err(
        b.recover(i, d).await,
        u,
        Operation::Recover,
        i,
        &w("recover"),
    );
    let k = MirrorFailoverKind::Planned;
    expect_err(
        b.mirror_failover(i, d, k).await,
        u,
        Operation::MirrorFailover,
        i,
        &w("mirror"),
    );
    expect_err(
        b.acquire_lock(i, LOCK_RESOURCE).await,
        u,
        Operation::AcquireLock,
        i,
        &w("lock"),
    );
    expect_err(
        b.lock_held(i, LOCK_RESOURCE).await,
        u,
        Operation::CheckLock,
        i,
        &w("held"),
    );
    expect_err(
        b.release_lock(i, LOCK_RESOURCE).await,
        u,
        Operation::ReleaseLock,
        i,
        &w("unlock"),
    );
    expect_err(
        b.read_location(i).await,
        u,
        Operation::ReadLocation,
        i,
        &w("read location"),
    );
    let r = record(2, bk.clone());
    expect_err(
        b.write_location(i, &r, Some(1)).await,
        u,
        Operation::WriteLocation,
        i,
        &w("write"),
    );
}
