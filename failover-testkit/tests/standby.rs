//! Issue 12 item 4 at machine level: the backup store's copies are log-shipping STANDBY
//! copies (`WITH STANDBY`: ONLINE, read-only, `is_in_standby`). Planned and disaster
//! recovery promote them with `RESTORE … WITH RECOVERY` (never `SET READ_WRITE`, which
//! fails with 5063), restore converges after a crash at every call, and the invariants of
//! `props::check` hold (one writer, no promotion behind the fence, every outcome matches the
//! estate). The generated property scenarios draw STANDBY copies too
//! (`Scenario::log_shipping_standby`).

use backend_fake::fixtures::{self, Options, StandbyCopy};
use failover_core::Outcome;
use failover_testkit::props::*;

fn scenario(kind: Kind) -> Scenario {
    Scenario {
        log_shipping_standby: true,
        seed: 7,
        ..Scenario::plain(kind)
    }
}

#[test]
fn standby_copies_keep_the_invariants_in_every_mode_and_at_every_crash_point() {
    let rt = paused_runtime();
    for kind in [Kind::Planned, Kind::Disaster, Kind::Restore] {
        for mirrored in [false, true] {
            for lag in [0, 30] {
                let mut sc = scenario(kind);
                sc.mirrored = mirrored;
                sc.lag = lag;
                sweep(
                    &rt,
                    &sc,
                    &format!("{kind:?} mirrored={mirrored} lag={lag}"),
                    Sweep {
                        crash_points: 30,
                        fault_seeds: 0,
                        fault_rate: 0.0,
                        cancel_every: None,
                    },
                );
            }
        }
    }
}

/// The promotion is a RESTORE: the STANDBY copies end ONLINE, read-write and out of standby,
/// and no `SET READ_WRITE` was refused with 5063 on the way.
#[test]
fn planned_and_dr_promote_standby_copies_with_restore_with_recovery() {
    let rt = paused_runtime();
    for dr in [false, true] {
        let fx = fixtures::build(&Options::default().standby(StandbyCopy::Standby));
        let report = run_on_fake(&rt, &fx, dr, "standby-run");
        assert!(
            matches!(report.outcome, Outcome::Succeeded { .. }),
            "dr={dr}: {}",
            report.outcome
        );
        let refused_5063 = report
            .steps
            .iter()
            .flat_map(|s| &s.ops)
            .any(|o| o.error.as_ref().is_some_and(|e| e.code == Some(5063)));
        assert!(
            !refused_5063,
            "dr={dr}: SET READ_WRITE sent to a STANDBY copy"
        );
        let snap = fx.estate.snapshot();
        let b = &fx.topology.backup.principal;
        for d in &snap.instances[b].databases {
            assert!(
                d.state == failover_core::DbState::Online && !d.read_only && !d.in_standby,
                "dr={dr}: {d:?}"
            );
        }
    }
}
