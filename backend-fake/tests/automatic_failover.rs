//! Automatic failover by the witness, and scheduled estate events (a witness or an instance
//! changing in the middle of a run). docs/sql-server-behaviour.md links the Microsoft pages.

use backend_fake::fixtures::{self, Options};
use backend_fake::{Change, Estate, EstateEvent, WitnessConnection};
use failover_core::{DatabaseName, DbState, InstanceAddr, MirrorRole, MirrorState, WitnessState};

fn xds() -> DatabaseName {
    DatabaseName::parse("xds").unwrap()
}

/// The mirrored fixture with the active store's witness connected as given and automatic
/// failover after `delay` ticks.
fn estate(witness: Option<WitnessConnection>, delay: Option<u64>) -> Estate {
    let f = fixtures::build(&Options::default().mirrored(true).witness(witness));
    f.estate.set_automatic_failover(delay);
    f.estate
}

fn role(e: &Estate, i: &InstanceAddr) -> (Option<MirrorRole>, DbState) {
    let s = e.snapshot();
    let d = s.database(i, &xds()).unwrap();
    (d.mirroring.as_ref().map(|m| m.role), d.state.clone())
}

fn mirroring_state(e: &Estate, i: &InstanceAddr) -> MirrorState {
    let s = e.snapshot();
    s.database(i, &xds())
        .unwrap()
        .mirroring
        .as_ref()
        .unwrap()
        .state
}

/// Principal lost, witness connected to the mirror, SYNCHRONIZED, safety FULL: after the
/// delay the mirror is PRINCIPAL and ONLINE at the principal's last position, alone
/// writable; the former principal comes back as the MIRROR (RESTORING) and catches up;
/// forcing service on the new principal is then 1455.
#[test]
fn the_mirror_takes_over_after_the_delay_and_the_old_principal_rejoins_as_mirror() {
    let e = estate(Some(WitnessConnection::Both), Some(2));
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    e.advance(1);
    let lost_at = e.snapshot().position(&a, &xds()).unwrap();
    e.set_reachable(&a, false).unwrap();
    e.advance(2);
    assert_eq!(
        role(&e, &a2),
        (Some(MirrorRole::Mirror), DbState::Restoring)
    );
    e.advance(1);
    assert_eq!(
        role(&e, &a2),
        (Some(MirrorRole::Principal), DbState::Online)
    );
    let s = e.snapshot();
    let row = s.database(&a2, &xds()).unwrap();
    assert!(!row.read_only);
    assert_eq!(
        row.mirroring.as_ref().unwrap().state,
        MirrorState::Disconnected
    );
    assert_eq!(s.writable_copies(&xds()), vec![a2.clone()]);
    let auto: Vec<_> = e
        .history()
        .into_iter()
        .filter(|m| matches!(m.change, Change::AutomaticFailover { .. }))
        .filter(|m| m.database.as_ref() == Some(&xds()))
        .collect();
    assert_eq!(auto.len(), 1, "{auto:?}");
    assert_eq!(auto[0].instance, a2);
    assert_eq!(auto[0].writable_after, vec![a2.clone()]);
    assert!(matches!(
        &auto[0].change,
        Change::AutomaticFailover { former_principal, position }
            if *former_principal == a && *position == lost_at
    ));
    // The workload writes on the new principal; the old one rejoins as the mirror.
    e.set_reachable(&a, true).unwrap();
    e.advance(1);
    assert_eq!(role(&e, &a), (Some(MirrorRole::Mirror), DbState::Restoring));
    let s = e.snapshot();
    assert_eq!(
        s.position(&a, &xds()),
        s.position(&a2, &xds()),
        "the rejoined copy catches up"
    );
    assert_eq!(mirroring_state(&e, &a2), MirrorState::Synchronized);
    let sm = e.open_session(&a2).unwrap();
    assert_eq!(e.force_service(sm, &xds()).unwrap_err().number, 1455);
}

/// Each missing condition keeps the mirror a mirror however long the principal is gone:
/// automatic failover off, no witness, a witness not connected to the mirror, safety OFF,
/// a session not SYNCHRONIZED.
#[test]
fn no_automatic_failover_without_every_condition() {
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let cases: Vec<(&str, Estate)> = vec![
        ("off", estate(Some(WitnessConnection::Both), None)),
        ("no witness", estate(None, Some(0))),
        (
            "witness on the principal only",
            estate(Some(WitnessConnection::PrincipalOnly), Some(0)),
        ),
        ("synchronizing", {
            let e = estate(Some(WitnessConnection::Both), Some(0));
            e.set_mirroring_state(&xds(), &a, MirrorState::Synchronizing)
                .unwrap();
            e
        }),
        ("safety off", {
            let e = Estate::new();
            for i in [&a, &a2] {
                e.add_instance(i, fixtures::VERSION).unwrap();
            }
            e.add_database(&a, &xds(), DbState::Online, false, 10)
                .unwrap();
            e.add_mirroring(&xds(), &a, &a2, MirrorState::Synchronized, false)
                .unwrap();
            e.set_witness(
                &xds(),
                &a,
                Some((fixtures::WITNESS, WitnessConnection::Both)),
            )
            .unwrap();
            e.set_automatic_failover(Some(0));
            e
        }),
    ];
    for (what, e) in cases {
        e.set_reachable(&a, false).unwrap();
        e.advance(50);
        assert_eq!(
            role(&e, &a2),
            (Some(MirrorRole::Mirror), DbState::Restoring),
            "{what}"
        );
    }
}

/// The witness dropping off the mirror during the delay blocks the automatic failover, and
/// its coming back does not restart it ("If all server instances lose communication … and
/// the witness and the mirror server later regain communication, automatic failover does
/// not occur"); once the principal is back and lost again, the mirror takes over.
#[test]
fn a_quorum_lost_during_the_delay_blocks_the_failover_until_the_principal_is_back() {
    let e = estate(Some(WitnessConnection::Both), Some(3));
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let witness = |c| EstateEvent::Witness {
        database: xds(),
        partner: a.clone(),
        witness: Some((fixtures::WITNESS.to_string(), c)),
    };
    e.set_reachable(&a, false).unwrap();
    e.schedule(e.now() + 2, witness(WitnessConnection::Neither));
    e.schedule(e.now() + 3, witness(WitnessConnection::Both));
    e.advance(20);
    assert_eq!(
        role(&e, &a2),
        (Some(MirrorRole::Mirror), DbState::Restoring)
    );
    e.set_reachable(&a, true).unwrap();
    e.advance(1);
    e.set_reachable(&a, false).unwrap();
    e.advance(4);
    assert_eq!(
        role(&e, &a2),
        (Some(MirrorRole::Principal), DbState::Online)
    );
}

/// Scheduled events run at their tick: the witness as each partner reports it changes, and
/// an instance taken down mid-run drops the session whose statement ticked into it (the
/// statement does not run).
#[test]
fn scheduled_events_change_the_witness_and_reachability_at_their_tick() {
    let e = estate(Some(WitnessConnection::Both), None);
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let witness_seen = |e: &Estate, i: &InstanceAddr| {
        e.snapshot()
            .database(i, &xds())
            .unwrap()
            .mirroring
            .as_ref()
            .unwrap()
            .witness
            .as_ref()
            .map(|w| w.state)
    };
    let now = e.now();
    e.schedule(
        now + 2,
        EstateEvent::Witness {
            database: xds(),
            partner: a2.clone(),
            witness: Some((fixtures::WITNESS.into(), WitnessConnection::PrincipalOnly)),
        },
    );
    e.schedule(
        now + 4,
        EstateEvent::Reachable {
            instance: a.clone(),
            reachable: false,
        },
    );
    e.advance(1);
    assert_eq!(witness_seen(&e, &a2), Some(WitnessState::Connected));
    e.advance(1);
    assert_eq!(witness_seen(&e, &a2), Some(WitnessState::Disconnected));
    assert_eq!(witness_seen(&e, &a), Some(WitnessState::Connected));
    let s = e.open_session(&a).unwrap();
    e.version(s).unwrap();
    let err = e.set_read_only(s, &xds(), true).unwrap_err();
    assert!(!e.is_reachable(&a) && !e.session_alive(s), "{err:?}");
    assert!(!e.snapshot().database(&a, &xds()).unwrap().read_only);
}
