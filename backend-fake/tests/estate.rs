//! Estate semantics: clock, links, workloads, read-only, recovery, mirroring, locks,
//! location record, history, snapshot.

use backend_fake::fixtures::{self, Options, StandbyCopy};
use backend_fake::{Change, Estate, Fault, FaultConfig, ScriptedFault, WitnessConnection};
use failover_core::{
    DatabaseName, DbState, InstanceAddr, LocationRecord, MirrorRole, MirrorState, Operation, Store,
    WitnessState,
};

fn db(s: &str) -> DatabaseName {
    DatabaseName::parse(s).unwrap()
}
fn xds() -> DatabaseName {
    db("xds")
}

#[test]
fn workload_writes_only_to_writable_copies_and_link_follows_at_its_rate() {
    let f = fixtures::build(&Options::default().lag(20));
    let (a, b) = (fixtures::active(), fixtures::backup());
    let s = f.estate.snapshot();
    assert_eq!(s.position(&a, &xds()), Some(1000));
    assert_eq!(s.position(&b, &xds()), Some(980));
    f.estate.advance(1);
    let s = f.estate.snapshot();
    // Workload +1 on A (B is read-only), then the link moves B by at most 5.
    assert_eq!(s.position(&a, &xds()), Some(1001));
    assert_eq!(s.position(&b, &xds()), Some(985));
    f.estate.advance(10);
    let s = f.estate.snapshot();
    assert_eq!(s.position(&a, &xds()), Some(1011));
    assert_eq!(
        s.position(&b, &xds()),
        Some(1011),
        "caught up, then follows"
    );
    assert_eq!(s.writable_copies(&xds()), vec![a.clone()]);
}

#[test]
fn stalled_link_and_unreachable_source_stop_replication() {
    let f = fixtures::build(&Options::default().lag(20).stalled(true));
    let (a, b) = (fixtures::active(), fixtures::backup());
    f.estate.advance(5);
    assert_eq!(f.estate.snapshot().position(&b, &xds()), Some(980));
    f.estate.set_link_stalled(f.link, false);
    f.estate.set_reachable(&a, false).unwrap();
    f.estate.advance(5);
    let s = f.estate.snapshot();
    assert_eq!(s.position(&b, &xds()), Some(980));
    assert_eq!(
        s.position(&a, &xds()),
        Some(1005),
        "a down instance takes no writes"
    );
    f.estate.set_reachable(&a, true).unwrap();
    f.estate.advance(1);
    assert_eq!(f.estate.snapshot().position(&b, &xds()), Some(985));
}

#[test]
fn every_operation_ticks_once_and_snapshot_never_ticks() {
    let f = fixtures::standard();
    let t0 = f.estate.now();
    for _ in 0..5 {
        let _ = f.estate.snapshot();
        let _ = f.estate.history();
    }
    assert_eq!(f.estate.now(), t0);
    let s = f.estate.open_session(&fixtures::active()).unwrap();
    assert_eq!(f.estate.now(), t0, "opening a session is not an operation");
    f.estate.version(s).unwrap();
    f.estate.database_rows(s).unwrap();
    assert_eq!(f.estate.now(), t0 + 2);
}

#[test]
fn read_only_is_idempotent_and_refused_on_mirrors_restoring_and_missing() {
    let f = fixtures::build(&Options::default().mirrored(true));
    let e = &f.estate;
    let a = e.open_session(&fixtures::active()).unwrap();
    e.set_read_only(a, &xds(), true).unwrap();
    e.set_read_only(a, &xds(), true).unwrap();
    let fences = e
        .history()
        .iter()
        .filter(|m| {
            matches!(
                m.change,
                Change::ReadOnly {
                    read_only: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(fences, 1, "the second fence changes nothing");
    let row = e
        .snapshot()
        .database(&fixtures::active(), &xds())
        .cloned()
        .unwrap();
    assert!(row.read_only && !row.is_writable());
    // The flag travels to the mirror.
    e.advance(1);
    assert!(
        e.snapshot()
            .database(&fixtures::active_mirror(), &xds())
            .unwrap()
            .read_only
    );
    assert_eq!(
        e.set_read_only(a, &db("nope"), true).unwrap_err().number,
        911
    );

    let m = e.open_session(&fixtures::active_mirror()).unwrap();
    let err = e.set_read_only(m, &xds(), false).unwrap_err();
    assert_eq!(err.number, 1468);
    assert!(err.message.contains("mirroring session"));

    let f = fixtures::build(&Options::default().standby(StandbyCopy::Restoring));
    let b = f.estate.open_session(&fixtures::backup()).unwrap();
    let err = f.estate.set_read_only(b, &xds(), true).unwrap_err();
    assert_eq!(err.number, 5052);
    assert!(err.message.contains("RESTORING"));
}

/// With `read_only_refused_on_mirroring_principal` (issue 12 item 3), `SET READ_ONLY` on a
/// mirroring principal is 1468 and changes nothing, in every mirroring state; `SET
/// READ_WRITE` there, and `READ_ONLY` on an unmirrored database, are unaffected. Off (the
/// default) the principal is fenced as before (see the test above).
#[test]
fn read_only_on_a_mirroring_principal_can_be_refused_with_1468() {
    let f = fixtures::build(
        &Options::default()
            .mirrored(true)
            .read_only_refused_on_mirroring_principal(true),
    );
    let e = &f.estate;
    assert!(e.read_only_refused_on_mirroring_principal());
    let a = e.open_session(&fixtures::active()).unwrap();
    for state in [MirrorState::Synchronized, MirrorState::Suspended] {
        e.set_mirroring_state(&xds(), &fixtures::active(), state)
            .unwrap();
        let before = e.durable_changes();
        let err = e.set_read_only(a, &xds(), true).unwrap_err();
        assert_eq!((err.number, err.class), (1468, 16), "{state:?}");
        assert!(err.message.contains("database mirroring session"), "{err}");
        assert_eq!(e.durable_changes(), before, "{state:?}: nothing changed");
        assert!(
            e.snapshot()
                .database(&fixtures::active(), &xds())
                .unwrap()
                .is_writable()
        );
    }
    // The backup principal's read-only copy may still be opened.
    let b = e.open_session(&fixtures::backup()).unwrap();
    e.set_read_only(b, &xds(), false).unwrap();
    // An unmirrored database is fenced as always.
    let g = fixtures::build(&Options::default().read_only_refused_on_mirroring_principal(true));
    let a = g.estate.open_session(&fixtures::active()).unwrap();
    g.estate.set_read_only(a, &xds(), true).unwrap();
    assert!(
        g.estate
            .snapshot()
            .database(&fixtures::active(), &xds())
            .unwrap()
            .read_only
    );
    // The default allows it.
    assert!(
        !fixtures::standard()
            .estate
            .read_only_refused_on_mirroring_principal()
    );
}

#[test]
fn restore_with_recovery_semantics() {
    let f = fixtures::build(&Options::default().standby(StandbyCopy::Restoring));
    let e = &f.estate;
    let b = e.open_session(&fixtures::backup()).unwrap();
    e.restore_with_recovery(b, &xds()).unwrap();
    let row = e
        .snapshot()
        .database(&fixtures::backup(), &xds())
        .cloned()
        .unwrap();
    assert_eq!(row.state, DbState::Online);
    assert_eq!(e.restore_with_recovery(b, &xds()).unwrap_err().number, 3117);
    assert_eq!(
        e.restore_with_recovery(b, &db("nope")).unwrap_err().number,
        911
    );
    // Once online and read-write on B, the link no longer writes into it.
    e.set_read_only(b, &xds(), false).unwrap();
    let before = e.snapshot().position(&fixtures::backup(), &xds()).unwrap();
    e.advance(3);
    let after = e.snapshot().position(&fixtures::backup(), &xds()).unwrap();
    assert_eq!(after, before + 3, "only the workload writes to it now");

    let f = fixtures::build(&Options::default().mirrored(true));
    let m = f.estate.open_session(&fixtures::active_mirror()).unwrap();
    assert_eq!(
        f.estate
            .restore_with_recovery(m, &xds())
            .unwrap_err()
            .number,
        3104
    );
}

#[test]
fn planned_mirror_failover_swaps_roles() {
    let f = fixtures::build(&Options::default().mirrored(true));
    let e = &f.estate;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let s = e.snapshot();
    let m = s.database(&a2, &xds()).unwrap();
    assert_eq!(m.state, DbState::Restoring);
    let mm = m.mirroring.as_ref().unwrap();
    assert_eq!(mm.role, MirrorRole::Mirror);
    assert_eq!(mm.partner, a);
    // The partner as SQL Server names it: computer name and instance, no domain.
    assert_eq!(mm.partner_instance(), "SQL-A\\RTC");
    e.set_server_name(&a, "SQLA01\\RTC").unwrap();
    let s = e.snapshot();
    let mm = s.database(&a2, &xds()).unwrap().mirroring.clone().unwrap();
    assert_eq!(mm.partner_instance(), "SQLA01\\RTC");
    assert_eq!(
        mm.partner, a,
        "the estate still knows the address behind the name"
    );

    let sm = e.open_session(&a2).unwrap();
    assert_eq!(e.set_partner_failover(sm, &xds()).unwrap_err().number, 1470);
    let sa = e.open_session(&a).unwrap();
    assert_eq!(e.set_partner_failover(sa, &xds()).unwrap(), a2);
    let s = e.snapshot();
    let old = s.database(&a, &xds()).unwrap();
    let new = s.database(&a2, &xds()).unwrap();
    assert_eq!(
        (old.state.clone(), old.mirroring.as_ref().unwrap().role),
        (DbState::Restoring, MirrorRole::Mirror)
    );
    assert_eq!(
        (new.state.clone(), new.mirroring.as_ref().unwrap().role),
        (DbState::Online, MirrorRole::Principal)
    );
    assert_eq!(new.position, old.position);
    assert_eq!(s.writable_copies(&xds()), vec![a2.clone()]);
    // lis was not failed over.
    assert_eq!(s.database(&a, &db("lis")).unwrap().state, DbState::Online);

    // Not synchronized -> 1422.
    e.set_mirroring_state(&db("lis"), &a, MirrorState::Synchronizing)
        .unwrap();
    assert_eq!(
        e.set_partner_failover(sa, &db("lis")).unwrap_err().number,
        1422
    );
    // Not mirrored -> 1416.
    let f = fixtures::standard();
    let s = f.estate.open_session(&fixtures::active()).unwrap();
    assert_eq!(
        f.estate.set_partner_failover(s, &xds()).unwrap_err().number,
        1416
    );
}

/// `mirroring_witness_state_desc` as each partner sees it, and 1455 at the force while the
/// witness is set and not connected to the mirror; `SET WITNESS OFF` lets it through.
#[test]
fn forced_service_needs_the_witness_off_or_connected_to_the_mirror() {
    let f = fixtures::build(&Options::default().mirrored(true));
    let e = &f.estate;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let witness = |i: &InstanceAddr| {
        let s = e.snapshot();
        s.database(i, &xds())
            .unwrap()
            .mirroring
            .clone()
            .unwrap()
            .witness
    };
    assert_eq!(witness(&a2), None);
    e.set_witness(
        &xds(),
        &a2,
        Some(("TCP://wit.cms.test:5022", WitnessConnection::PrincipalOnly)),
    )
    .unwrap();
    let on_principal = witness(&a).unwrap();
    assert_eq!(on_principal.name, "TCP://wit.cms.test:5022");
    assert_eq!(on_principal.state, WitnessState::Connected);
    assert_eq!(witness(&a2).unwrap().state, WitnessState::Disconnected);

    e.set_reachable(&a, false).unwrap();
    let sm = e.open_session(&a2).unwrap();
    let err = e.force_service(sm, &xds()).unwrap_err();
    assert_eq!(err.number, 1455, "{err:?}");
    let before = e.durable_changes();
    assert_eq!(
        e.snapshot().database(&a2, &xds()).unwrap().state,
        DbState::Restoring
    );

    e.set_witness(
        &xds(),
        &a2,
        Some(("TCP://wit.cms.test:5022", WitnessConnection::Neither)),
    )
    .unwrap();
    assert_eq!(e.force_service(sm, &xds()).unwrap_err().number, 1455);
    assert_eq!(
        e.durable_changes(),
        before,
        "a refused force changes nothing"
    );

    e.set_witness(
        &xds(),
        &a2,
        Some(("TCP://wit.cms.test:5022", WitnessConnection::MirrorOnly)),
    )
    .unwrap();
    assert_eq!(witness(&a2).unwrap().state, WitnessState::Connected);
    e.force_service(sm, &xds()).unwrap();
    assert_eq!(
        e.snapshot().database(&a2, &xds()).unwrap().state,
        DbState::Online
    );
    // The witness stays with the servers: the new principal (a2) still sees it connected.
    assert_eq!(witness(&a2).unwrap().state, WitnessState::Connected);
}

/// `SET WITNESS OFF` (a `None` witness) on either partner lets the force through; the
/// fixture option sets the witness.
#[test]
fn forced_service_goes_through_once_the_witness_is_off() {
    let f = fixtures::build(
        &Options::default()
            .mirrored(true)
            .witness(Some(WitnessConnection::PrincipalOnly)),
    );
    let e = &f.estate;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let w = e
        .snapshot()
        .database(&a2, &xds())
        .unwrap()
        .mirroring
        .clone()
        .unwrap()
        .witness
        .unwrap();
    assert_eq!(
        (w.name.as_str(), w.state),
        (fixtures::WITNESS, WitnessState::Disconnected)
    );
    e.set_witness(
        &xds(),
        &a,
        Some(("TCP://wit.cms.test:5022", WitnessConnection::PrincipalOnly)),
    )
    .unwrap();
    e.set_reachable(&a, false).unwrap();
    let sm = e.open_session(&a2).unwrap();
    assert_eq!(e.force_service(sm, &xds()).unwrap_err().number, 1455);
    e.set_witness(&xds(), &a2, None).unwrap();
    e.force_service(sm, &xds()).unwrap();
}

#[test]
fn forced_service_needs_the_principal_down() {
    let f = fixtures::build(&Options::default().mirrored(true));
    let e = &f.estate;
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let sm = e.open_session(&a2).unwrap();
    assert_eq!(e.force_service(sm, &xds()).unwrap_err().number, 1455);
    let sa = e.open_session(&a).unwrap();
    assert_eq!(e.force_service(sa, &xds()).unwrap_err().number, 1455);

    e.set_reachable(&a, false).unwrap();
    let rows = e.database_rows(sm).unwrap();
    let r = rows.iter().find(|r| r.name == xds()).unwrap();
    assert_eq!(
        r.mirroring.as_ref().unwrap().state,
        MirrorState::Disconnected
    );
    e.force_service(sm, &xds()).unwrap();
    let s = e.snapshot();
    let new = s.database(&a2, &xds()).unwrap();
    assert_eq!(new.state, DbState::Online);
    let m = new.mirroring.as_ref().unwrap();
    assert_eq!(m.role, MirrorRole::Principal);
    assert_eq!(m.state, MirrorState::Disconnected, "partner still down");
    assert_eq!(s.database(&a, &xds()).unwrap().state, DbState::Restoring);
    e.set_reachable(&a, true).unwrap();
    let s = e.snapshot();
    assert_eq!(
        s.database(&a2, &xds())
            .unwrap()
            .mirroring
            .as_ref()
            .unwrap()
            .state,
        MirrorState::Suspended
    );
    assert_eq!(s.writable_copies(&xds()), vec![a2]);
}

/// With a force delay the statement returns first: the mirror keeps showing MIRROR and
/// RESTORING (nothing recorded), a second force gets 1404, and the switch lands that many
/// ticks later; a mirror unreachable at its tick keeps its role.
#[test]
fn a_delayed_force_returns_before_the_mirror_switches() {
    for reachable_at_tick in [true, false] {
        let f = fixtures::build(&Options::default().mirrored(true).force_delay(3));
        let e = &f.estate;
        let (a, a2) = (fixtures::active(), fixtures::active_mirror());
        e.set_reachable(&a, false).unwrap();
        let sm = e.open_session(&a2).unwrap();
        let before = e.durable_changes();
        e.force_service(sm, &xds()).unwrap();
        assert!(e.force_pending(&xds(), &a2));
        let shown = |e: &Estate| {
            let s = e.snapshot();
            let d = s.database(&a2, &xds()).unwrap().clone();
            (d.state, d.mirroring.unwrap().role)
        };
        assert_eq!(shown(e), (DbState::Restoring, MirrorRole::Mirror));
        assert_eq!(
            e.durable_changes(),
            before,
            "nothing recorded until the switch"
        );
        // The second force is the estate's second tick after the first.
        assert_eq!(e.force_service(sm, &xds()).unwrap_err().number, 1404);
        assert_eq!(shown(e), (DbState::Restoring, MirrorRole::Mirror));
        if !reachable_at_tick {
            e.set_reachable(&a2, false).unwrap();
        }
        e.advance(1);
        assert!(e.force_pending(&xds(), &a2), "one tick left");
        e.advance(1);
        assert!(!e.force_pending(&xds(), &a2));
        if reachable_at_tick {
            assert_eq!(shown(e), (DbState::Online, MirrorRole::Principal));
            assert_eq!(
                e.snapshot().database(&a, &xds()).unwrap().state,
                DbState::Restoring
            );
        } else {
            e.set_reachable(&a2, true).unwrap();
            assert_eq!(shown(e), (DbState::Restoring, MirrorRole::Mirror));
        }
    }
}

#[test]
fn app_locks_belong_to_sessions() {
    let f = fixtures::standard();
    let e = &f.estate;
    let a = fixtures::active();
    let s1 = e.open_session(&a).unwrap();
    let s2 = e.open_session(&a).unwrap();
    assert_eq!(e.get_app_lock(s1, "cms").unwrap(), 0);
    assert_eq!(e.get_app_lock(s2, "cms").unwrap(), -1);
    assert!(e.app_lock_held(s1, "cms").unwrap());
    assert!(!e.app_lock_held(s2, "cms").unwrap());
    assert_eq!(e.release_app_lock(s2, "cms").unwrap_err().number, 1223);
    // Re-entrant like SQL Server: two grants need two releases.
    assert_eq!(e.get_app_lock(s1, "cms").unwrap(), 0);
    e.release_app_lock(s1, "cms").unwrap();
    assert!(e.app_lock_held(s1, "cms").unwrap());
    e.release_app_lock(s1, "cms").unwrap();
    assert_eq!(e.get_app_lock(s2, "cms").unwrap(), 0);
    // Closing the session releases it.
    e.close_session(s2);
    assert_eq!(e.snapshot().lock_holder(&a, "cms"), None);
    assert_eq!(e.get_app_lock(s1, "cms").unwrap(), 0);
    // The instance going down kills the session.
    e.set_reachable(&a, false).unwrap();
    assert!(!e.session_alive(s1));
    assert_eq!(e.snapshot().lock_holder(&a, "cms"), None);
    assert_eq!(e.version(s1).unwrap_err().number, 10054);
    assert_eq!(e.open_session(&a).unwrap_err().number, 53);
    let released = e
        .history()
        .iter()
        .filter(|m| matches!(&m.change, Change::LockReleased { session, .. } if *session == s1))
        .count();
    assert_eq!(released, 2);
}

#[test]
fn location_record_compare_and_swap() {
    let f = fixtures::build(&Options::default().location(false));
    let e = &f.estate;
    let s = e.open_session(&fixtures::backup()).unwrap();
    assert_eq!(e.read_location(s).unwrap(), None);
    let rec = |epoch| LocationRecord {
        epoch,
        active: Store::new(fixtures::backup(), None).unwrap(),
        run_id: format!("run-{epoch}"),
    };
    assert_eq!(
        e.write_location(s, &rec(2), Some(1)).unwrap_err().number,
        backend_fake::LOCATION_CONFLICT
    );
    e.write_location(s, &rec(1), None).unwrap();
    e.write_location(s, &rec(1), None).unwrap();
    e.write_location(s, &rec(2), Some(1)).unwrap();
    e.write_location(s, &rec(2), Some(1)).unwrap();
    let err = e.write_location(s, &rec(3), Some(1)).unwrap_err();
    assert_eq!(err.number, backend_fake::LOCATION_CONFLICT);
    assert_eq!(e.read_location(s).unwrap(), Some(rec(2)));
}

#[test]
fn use_database_errors() {
    let f = fixtures::build(&Options::default().mirrored(true));
    let e = &f.estate;
    let m = e.open_session(&fixtures::active_mirror()).unwrap();
    assert_eq!(e.use_database(m, &xds()).unwrap_err().number, 954);
    assert_eq!(e.use_database(m, &db("nope")).unwrap_err().number, 911);
    let a = e.open_session(&fixtures::active()).unwrap();
    e.use_database(a, &xds()).unwrap();
    let r = fixtures::build(&Options::default().standby(StandbyCopy::Restoring));
    let b = r.estate.open_session(&fixtures::backup()).unwrap();
    assert_eq!(r.estate.use_database(b, &xds()).unwrap_err().number, 927);
}

#[test]
fn logins_are_checked() {
    let f = fixtures::standard();
    let a = fixtures::active();
    assert_eq!(
        f.estate
            .login(&a, fixtures::LOGIN_USER, "wrong")
            .unwrap_err()
            .number,
        18456
    );
    assert_eq!(
        f.estate
            .login(&a, "nobody", fixtures::LOGIN_PASSWORD)
            .unwrap_err()
            .number,
        18456
    );
    f.estate
        .login(&a, fixtures::LOGIN_USER, fixtures::LOGIN_PASSWORD)
        .unwrap();
}

#[test]
fn history_tracks_writable_copies_after_each_change() {
    let f = fixtures::standard();
    let e = &f.estate;
    let (a, b) = (fixtures::active(), fixtures::backup());
    let sa = e.open_session(&a).unwrap();
    let sb = e.open_session(&b).unwrap();
    e.set_read_only(sa, &xds(), true).unwrap();
    e.set_read_only(sb, &xds(), false).unwrap();
    let h: Vec<_> = e
        .history()
        .into_iter()
        .filter(|m| matches!(m.change, Change::ReadOnly { .. }))
        .collect();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].instance, a);
    assert!(h[0].writable_after.is_empty());
    assert_eq!(h[1].writable_after, vec![b]);
    assert!(h[0].tick < h[1].tick);
}

#[test]
fn snapshot_consumes_no_fault() {
    let f = fixtures::standard();
    let a = fixtures::active();
    f.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::Probe,
            1,
            Fault::Hang,
        )));
    let s1 = f.estate.snapshot();
    for _ in 0..10 {
        assert_eq!(f.estate.snapshot(), s1);
    }
    assert_eq!(f.estate.fault_for(&a, Operation::Probe), Some(Fault::Hang));
    assert_eq!(f.estate.fault_for(&a, Operation::Probe), None);
}

#[test]
fn setup_errors_are_reported() {
    let e = Estate::new();
    let a = InstanceAddr::parse("x.test").unwrap();
    assert!(
        e.add_database(&a, &xds(), DbState::Online, false, 0)
            .is_err()
    );
    e.add_instance(&a, "v").unwrap();
    assert!(e.add_instance(&a, "v").is_err());
    e.add_database(&a, &xds(), DbState::Online, false, 0)
        .unwrap();
    assert!(
        e.add_database(&a, &xds(), DbState::Online, false, 0)
            .is_err()
    );
    let b = InstanceAddr::parse("y.test").unwrap();
    e.add_instance(&b, "v").unwrap();
    assert!(
        e.add_mirroring(&xds(), &a, &a, MirrorState::Synchronized, true)
            .is_err()
    );
    e.add_mirroring(&xds(), &a, &b, MirrorState::Synchronized, true)
        .unwrap();
    assert!(
        e.add_mirroring(&xds(), &a, &b, MirrorState::Synchronized, true)
            .is_err()
    );
}
