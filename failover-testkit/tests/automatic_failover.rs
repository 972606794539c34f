//! Issue 12 item 2: the core against an estate whose mirroring sessions fail over by
//! themselves (automatic failover by the witness) and whose witness changes mid-run.
//!
//! - A disaster recovery whose backup principal went down and whose mirror already took over
//!   does not force: it promotes the mirror that serves. When the mirror takes over between
//!   preflight and the force, the force on a database that is already PRINCIPAL gets 1455
//!   (as SQL Server answers), and the run still ends with the partner that serves promoted.
//! - A planned failover whose source store failed over automatically fences the instance
//!   that actually serves (the source's mirror), never leaving two writers.
//! - A witness that drops off the mirror between preflight and the force makes the force
//!   fail with 1455; the run ends safely with the fence undone.

use backend_fake::fixtures::{self, Fixture, Options};
use backend_fake::{Change, EstateEvent, WitnessConnection};
use failover_core::{Failure, InstanceAddr, MirrorRole, Outcome, Refusal, StateName};
use failover_testkit::props::*;

/// Both stores mirrored; the backup store's sessions (B principal, B2 mirror) and the active
/// store's get a witness connected to both partners.
fn mirrored(delay: Option<u64>) -> Fixture {
    let fx = fixtures::build(
        &Options::default()
            .mirrored(true)
            .witness(Some(WitnessConnection::Both)),
    );
    for db in fixtures::databases() {
        fx.estate
            .set_witness(
                &db,
                &fixtures::backup(),
                Some((fixtures::WITNESS, WitnessConnection::Both)),
            )
            .unwrap();
    }
    fx.estate.set_automatic_failover(delay);
    fx
}

fn principal_of_every_db(fx: &Fixture, i: &InstanceAddr) -> bool {
    let s = fx.estate.snapshot();
    fixtures::databases().iter().all(|d| {
        s.database(i, d)
            .and_then(|r| r.mirroring.as_ref())
            .is_some_and(|m| m.role == MirrorRole::Principal)
    })
}

fn forced(fx: &Fixture) -> bool {
    fx.estate
        .history()
        .iter()
        .any(|m| matches!(m.change, Change::Role { forced: true, .. }))
}

fn single_writer(fx: &Fixture) {
    for m in fx.estate.history() {
        assert!(
            m.database.is_none() || m.writable_after.len() <= 1,
            "two writable copies after {m:?}"
        );
    }
}

/// (i) The backup principal B is down and B2 already took over: the disaster recovery
/// forces nothing, opens B2 and records it; the report says who serves.
#[test]
fn dr_after_an_automatic_failover_of_the_backup_promotes_the_mirror_without_forcing() {
    let rt = paused_runtime();
    let fx = mirrored(Some(0));
    let (a, b, b2) = (
        fixtures::active(),
        fixtures::backup(),
        fixtures::backup_mirror(),
    );
    for i in [&a, &fixtures::active_mirror(), &b] {
        fx.estate.set_reachable(i, false).unwrap();
    }
    fx.estate.advance(1);
    assert!(principal_of_every_db(&fx, &b2));
    let report = run_on_fake(&rt, &fx, true, "dr-auto");
    assert!(
        matches!(&report.outcome, Outcome::Succeeded { active, .. } if *active == b2),
        "{}",
        report.outcome
    );
    assert!(!report.states.contains(&StateName::ForcingMirror));
    assert!(!forced(&fx));
    let s = fx.estate.snapshot();
    for db in fixtures::databases() {
        assert_eq!(s.writable_reachable_copies(&db), vec![b2.clone()]);
    }
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains(&b.to_string()) && w.contains("already serves as principal")),
        "the report names the principal that is down: {:?}",
        report.warnings
    );
}

/// (i) The mirror takes over by itself at any point of the run (the delay swept over every
/// call of it): no forced role change lands on a database that was already PRINCIPAL; a run
/// whose force met the automatic failover (1455) looks at B2 once and promotes it in the same
/// run, saying so; every case ends with B2 serving alone after one run.
#[test]
fn dr_racing_an_automatic_failover_promotes_the_partner_that_serves() {
    let rt = paused_runtime();
    let b2 = fixtures::backup_mirror();
    let mut raced = 0;
    for delay in 0..40 {
        let fx = mirrored(Some(delay));
        for i in [
            &fixtures::active(),
            &fixtures::active_mirror(),
            &fixtures::backup(),
        ] {
            fx.estate.set_reachable(i, false).unwrap();
        }
        let report = run_on_fake(&rt, &fx, true, &format!("dr-race-{delay}"));
        if report
            .warnings
            .iter()
            .any(|w| w.contains("1455") && w.contains("took over by itself"))
        {
            // The mirror took over between preflight and the force: SQL Server refuses the
            // force with 1455, the look after it shows the mirror serving, and the same run
            // promotes it (checked below: succeeded on B2, one writable copy).
            assert!(report.states.contains(&StateName::ForcingMirror));
            raced += 1;
        }
        for db in fixtures::databases() {
            let of_db = |auto: bool| {
                fx.estate
                    .history()
                    .iter()
                    .filter(|m| m.database.as_ref() == Some(&db))
                    .filter(|m| match m.change {
                        Change::AutomaticFailover { .. } => auto,
                        Change::Role {
                            role: MirrorRole::Principal,
                            forced: true,
                        } => !auto,
                        _ => false,
                    })
                    .count()
            };
            assert!(
                of_db(true) + of_db(false) <= 1,
                "delay {delay}: {db} failed over automatically and was forced: {:?}",
                fx.estate
                    .history()
                    .iter()
                    .filter(|m| matches!(
                        m.change,
                        Change::AutomaticFailover { .. } | Change::Role { .. }
                    ))
                    .map(|m| format!("{} {} {:?} {:?}", m.tick, m.instance, m.database, m.change))
                    .collect::<Vec<_>>()
            );
        }
        assert!(
            matches!(&report.outcome, Outcome::Succeeded { active, .. } if *active == b2),
            "delay {delay}: {} (states {:?})",
            report.outcome,
            report.states
        );
        assert!(principal_of_every_db(&fx, &b2), "delay {delay}");
        let s = fx.estate.snapshot();
        for db in fixtures::databases() {
            assert_eq!(
                s.writable_reachable_copies(&db),
                vec![b2.clone()],
                "delay {delay}"
            );
        }
    }
    assert!(raced > 0, "some delay made the takeover meet the force");
}

/// (ii) The active principal A is down and A2 took over: a planned failover fences A2 (the
/// instance that serves), promotes B, and A2 stays read-only.
#[test]
fn planned_after_an_automatic_failover_of_the_source_fences_the_instance_that_serves() {
    let rt = paused_runtime();
    let fx = mirrored(Some(0));
    let (a, a2, b) = (
        fixtures::active(),
        fixtures::active_mirror(),
        fixtures::backup(),
    );
    fx.estate.set_reachable(&a, false).unwrap();
    fx.estate.advance(1);
    assert!(principal_of_every_db(&fx, &a2));
    let report = run_on_fake(&rt, &fx, false, "planned-auto");
    assert!(
        matches!(&report.outcome, Outcome::Succeeded { active, .. } if *active == b),
        "{}",
        report.outcome
    );
    single_writer(&fx);
    let s = fx.estate.snapshot();
    for db in fixtures::databases() {
        assert!(s.database(&a2, &db).unwrap().read_only, "{db} fenced on A2");
        assert_eq!(s.writable_copies(&db), vec![b.clone()]);
    }
    let fenced_on_a2 = fx.estate.history().iter().any(|m| {
        m.instance == a2
            && matches!(
                m.change,
                Change::ReadOnly {
                    read_only: true,
                    ..
                }
            )
    });
    assert!(fenced_on_a2);
}

/// (ii) The source principal is lost at any point of a planned run (swept over every call)
/// and A2 takes over by itself: never two writers, and the outcome matches the estate (a
/// success leaves B alone writable; anything else leaves the active store alone writable).
#[test]
fn planned_racing_an_automatic_failover_of_the_source_never_has_two_writers() {
    let rt = paused_runtime();
    let b = fixtures::backup();
    let mut took_over = 0;
    for at in 1..60 {
        let fx = mirrored(Some(0));
        let now = fx.estate.now();
        fx.estate.schedule(
            now + at,
            EstateEvent::Reachable {
                instance: fixtures::active(),
                reachable: false,
            },
        );
        let report = run_on_fake(&rt, &fx, false, &format!("planned-race-{at}"));
        single_writer(&fx);
        if fx
            .estate
            .history()
            .iter()
            .any(|m| matches!(m.change, Change::AutomaticFailover { .. }))
        {
            took_over += 1;
        }
        let s = fx.estate.snapshot();
        let writers: Vec<_> = fixtures::databases()
            .iter()
            .flat_map(|d| s.writable_copies(d))
            .collect();
        match &report.outcome {
            Outcome::Succeeded { .. } => {
                assert!(writers.iter().all(|w| *w == b), "at {at}: {writers:?}");
            }
            Outcome::NeedsRestore { .. } => {}
            o => assert!(
                writers.iter().all(|w| fx.topology.active.contains(w)),
                "at {at}: {o}: {writers:?}"
            ),
        }
    }
    assert!(took_over > 0, "the source's mirror took over in some runs");
}

/// (iii) The witness drops off the backup mirror B2 between preflight and the force (at any
/// call of the run): the force gets 1455 and the run ends with the fence on the old source
/// undone (A writable again), or, dropped before preflight, refused with nothing changed;
/// dropped after the force, the run succeeds. Dropped between the two databases' ALTERs
/// (one forced, the other refused), the run stops needing a restore with A's fence kept
/// (never two writable copies of a database), and the operator's `SET WITNESS OFF` then a
/// second disaster recovery finish it on B2.
#[test]
fn a_witness_dropping_off_before_the_force_ends_with_the_fence_undone() {
    let rt = paused_runtime();
    let (a, b, b2) = (
        fixtures::active(),
        fixtures::backup(),
        fixtures::backup_mirror(),
    );
    let (mut failed_force, mut partly) = (0, 0);
    for at in 1..50 {
        let fx = mirrored(None);
        fx.estate.set_reachable(&b, false).unwrap();
        let now = fx.estate.now();
        for db in fixtures::databases() {
            fx.estate.schedule(
                now + at,
                EstateEvent::Witness {
                    database: db,
                    partner: b2.clone(),
                    witness: Some((fixtures::WITNESS.into(), WitnessConnection::PrincipalOnly)),
                },
            );
        }
        let report = run_on_fake(&rt, &fx, true, &format!("dr-witness-{at}"));
        let s = fx.estate.snapshot();
        match &report.outcome {
            Outcome::Succeeded { active, .. } => assert_eq!(*active, b2, "at {at}"),
            Outcome::Refused { refusal } => assert!(
                matches!(**refusal, Refusal::WitnessDisconnected { .. }),
                "at {at}: {refusal}"
            ),
            o @ Outcome::NeedsRestore { .. } => {
                assert!(
                    matches!(o.failure(), Some(Failure::ForcePartlyRefused { .. })),
                    "at {at}: {o}"
                );
                for db in fixtures::databases() {
                    let w = s.writable_copies(&db);
                    assert!(w.iter().all(|i| *i == b2), "at {at}: {db}: {w:?}");
                    let on_a = s.database(&a, &db).expect("A's copy");
                    assert!(on_a.read_only, "at {at}: A's fence kept");
                }
                // The operator follows the outcome: SET WITNESS OFF on B2, run it again.
                for db in fixtures::databases() {
                    let _ = fx.estate.set_witness(&db, &b2, None);
                }
                let again = run_on_fake(&rt, &fx, true, &format!("dr-witness-{at}-again"));
                assert!(
                    matches!(&again.outcome, Outcome::Succeeded { active, .. } if *active == b2),
                    "at {at}: {}",
                    again.outcome
                );
                partly += 1;
            }
            o => {
                assert!(
                    matches!(o.failure(), Some(Failure::ForceFailed { .. })),
                    "at {at}: {o}"
                );
                assert!(!matches!(o, Outcome::NeedsRestore { .. }), "at {at}: {o}");
                for db in fixtures::databases() {
                    assert_eq!(s.writable_copies(&db), vec![a.clone()], "at {at}: {o}");
                }
                failed_force += 1;
            }
        }
        assert_eq!(report.states.last(), Some(&StateName::Done), "at {at}");
        assert!(s.locks.is_empty(), "at {at}");
    }
    assert!(
        failed_force > 0,
        "some drop landed between preflight and the force"
    );
    assert!(
        partly > 0,
        "some drop landed between the two databases' ALTERs"
    );
}

/// The invariants of `props::check` (one writer, no promotion behind the fence, every
/// outcome matches the estate, restore converges) in every mode with sessions that fail
/// over by themselves, a source principal lost mid-run, and the backup's witness dropping
/// off or coming back mid-run, each at every crash point and under seeded faults. The
/// generated property scenarios draw the same fields.
#[test]
fn every_mode_keeps_the_invariants_under_automatic_failover_and_witness_flips() {
    let rt = paused_runtime();
    let mirrored = |kind| Scenario {
        kind,
        mirrored: true,
        seed: 7,
        ..Scenario::default()
    };
    let mut bases = Vec::new();
    for at in [2, 6, 12, 20, 30] {
        bases.push(Scenario {
            automatic_failover: Some(at % 4),
            source_lost_at: Some(at),
            ..mirrored(Kind::Planned)
        });
    }
    for delay in [0, 5, 12] {
        bases.push(Scenario {
            automatic_failover: Some(delay),
            backup_principal_down: true,
            source_down: delay % 2 == 0,
            ..mirrored(Kind::Disaster)
        });
    }
    for (at, c) in [
        (2, WitnessConnection::PrincipalOnly),
        (8, WitnessConnection::Neither),
        (14, WitnessConnection::PrincipalOnly),
        (5, WitnessConnection::Both),
    ] {
        bases.push(Scenario {
            witness_flip: Some((at, c)),
            backup_principal_down: true,
            ..mirrored(Kind::Disaster)
        });
        bases.push(Scenario {
            witness_flip: Some((at, c)),
            automatic_failover: Some(1),
            ..mirrored(Kind::Planned)
        });
    }
    bases.push(Scenario {
        automatic_failover: Some(3),
        ..mirrored(Kind::Restore)
    });
    for base in bases {
        let tag = format!(
            "{:?} automatic_failover={:?} source_lost_at={:?} witness_flip={:?} backup_principal_down={} source_down={}",
            base.kind,
            base.automatic_failover,
            base.source_lost_at,
            base.witness_flip,
            base.backup_principal_down,
            base.source_down
        );
        sweep(
            &rt,
            &base,
            &tag,
            Sweep {
                crash_points: 30,
                fault_seeds: 25,
                fault_rate: 0.15,
                cancel_every: Some(5),
            },
        );
    }
}

/// Histories the generated scenarios found, kept as fixed cases. Each is a disaster recovery
/// whose forced switch is slow and whose witness drops off the mirror mid-run, crashed and
/// then settled by the operator following each outcome's advice:
/// - the witness flips between preflight and the force of a settling run (1455, rolled
///   back): the operator runs it again;
/// - after the faults stop, a 1455, then a `witness_disconnected` refusal (`SET WITNESS OFF`),
///   then success: each advice followed earns the operator another run;
/// - `xds`'s force pending from an earlier run (1404) while `lis` was never forced: the same
///   batch forces `lis` (one ALTER per database; an error ends its statement only), and a
///   forced switch that outlasts the run's wait is run again.
#[test]
fn histories_found_by_the_generated_scenarios_converge() {
    let rt = paused_runtime();
    let dr = |seed, fault_rate, crash_at, witness_flip, force_delay, switch_delay| Scenario {
        mirrored: true,
        seed,
        fault_rate,
        crash_at: Some(crash_at),
        source_down: true,
        backup_principal_down: true,
        switch_delay,
        witness_flip: Some(witness_flip),
        force_delay,
        ..Scenario::plain(Kind::Disaster)
    };
    let cases = [
        dr(
            16986310072552738076,
            0.08937877283818867,
            (13, false),
            (28, WitnessConnection::PrincipalOnly),
            25,
            0,
        ),
        Scenario {
            stalled: true,
            ..dr(
                916003488260472374,
                0.13994278529944923,
                (38, true),
                (38, WitnessConnection::PrincipalOnly),
                52,
                45,
            )
        },
        dr(
            4401343396315812468,
            0.12178454561623062,
            (10, false),
            (15, WitnessConnection::Neither),
            59,
            0,
        ),
        dr(
            3645219224060760679,
            0.032755388140608514,
            (1, false),
            (17, WitnessConnection::PrincipalOnly),
            46,
            14,
        ),
    ];
    for (i, sc) in cases.iter().enumerate() {
        assert_scenario(&rt, sc, &format!("history {i} ({sc:?})"));
    }
}
