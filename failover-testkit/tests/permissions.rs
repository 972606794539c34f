//! Issue 12 item 6 at machine level: a run with a login lacking any one right a step needs
//! is refused in preflight (exit 3) with `InsufficientPermissions` naming the instance, the
//! step and the fix, and changes nothing (no database, location record or lock touched);
//! with the right granted the same run succeeds.

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options, StandbyCopy};
use backend_fake::{FakeBackend, LoginGrants};
use failover_core::{Driver, FailoverRequest, Mode, Outcome, Refusal};
use std::sync::Arc;

/// Everything a planned failover needs, without any server role.
fn enough() -> LoginGrants {
    LoginGrants {
        owns: fixtures::databases(),
        location_write: true,
        ..LoginGrants::default()
    }
}

struct Case {
    name: &'static str,
    options: Options,
    dr: bool,
    grants: LoginGrants,
    /// (instance, step) expected in the refusal.
    missing: (failover_core::InstanceAddr, &'static str),
}

fn cases() -> Vec<Case> {
    let (a, b, b2) = (
        fixtures::active(),
        fixtures::backup(),
        fixtures::backup_mirror(),
    );
    vec![
        Case {
            name: "no ALTER on the source (fence)",
            options: Options::default(),
            dr: false,
            grants: LoginGrants {
                owns: vec![],
                alter: vec![],
                ..enough()
            },
            missing: (a.clone(), "fence"),
        },
        Case {
            name: "ALTER but no RESTORE on a STANDBY target",
            options: Options::default().standby(StandbyCopy::Standby),
            dr: false,
            grants: LoginGrants {
                owns: vec![],
                alter: fixtures::databases(),
                control: fixtures::databases(),
                ..enough()
            },
            missing: (b.clone(), "recover"),
        },
        Case {
            name: "no INSERT/UPDATE on the location table",
            options: Options::default(),
            dr: false,
            grants: LoginGrants {
                location_write: false,
                ..enough()
            },
            missing: (a.clone(), "record_location"),
        },
        Case {
            name: "not sysadmin: the mirror's mirroring columns are NULL",
            options: Options::default().mirrored(true),
            dr: false,
            grants: LoginGrants {
                dbcreator: true,
                view_definition: fixtures::databases(),
                ..enough()
            },
            missing: (b2.clone(), "read_mirroring"),
        },
        Case {
            name: "disaster recovery without ALTER on the reachable old source",
            options: Options::default(),
            dr: true,
            grants: LoginGrants {
                owns: vec![],
                ..enough()
            },
            missing: (a, "fence"),
        },
    ]
}

async fn run(fx: &fixtures::Fixture, dr: bool) -> Outcome {
    let backend =
        Arc::new(FakeBackend::new(fx.estate.clone()).with_login(LOGIN_USER, LOGIN_PASSWORD));
    let mode = if dr {
        Mode::DisasterRecovery {
            target: fx.topology.backup.clone(),
        }
    } else {
        Mode::Planned
    };
    let req = FailoverRequest::new("perm-run", fx.topology.clone(), mode).unwrap();
    Driver::new(backend).run(req).await.outcome
}

#[tokio::test(start_paused = true)]
async fn a_login_lacking_any_needed_right_is_refused_before_any_change() {
    for c in cases() {
        let fx = fixtures::build(&c.options);
        fx.estate
            .set_login_grants(LOGIN_USER, None, c.grants.clone());
        let before = fx.estate.durable_changes();
        let o = run(&fx, c.dr).await;
        match o.refusal() {
            Some(Refusal::InsufficientPermissions { missing }) => {
                assert!(
                    missing
                        .iter()
                        .any(|m| m.instance == c.missing.0 && m.step == c.missing.1),
                    "{}: {o}",
                    c.name
                );
                assert!(
                    missing
                        .iter()
                        .all(|m| m.login == LOGIN_USER && !m.fix.is_empty())
                );
            }
            _ => panic!("{}: expected a permission refusal, got {o}", c.name),
        }
        assert_eq!(o.exit_code(), 3, "{}", c.name);
        // The first check took the lock and released it; nothing durable changed.
        assert_eq!(
            fx.estate.durable_changes(),
            before,
            "{}: nothing changed",
            c.name
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_the_rights_granted_the_same_runs_succeed() {
    for c in cases() {
        let fx = fixtures::build(&c.options);
        let mut g = enough();
        if c.name.starts_with("not sysadmin") {
            g = LoginGrants::sysadmin();
        }
        fx.estate.set_login_grants(LOGIN_USER, None, g);
        let o = run(&fx, c.dr).await;
        assert!(matches!(o, Outcome::Succeeded { .. }), "{}: {o}", c.name);
    }
}
