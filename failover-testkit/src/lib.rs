//! The reusable [`Backend`](failover_core::Backend) conformance suite.
//!
//! Every contract case of the `Backend` rustdoc is one async function in [`cases`]; each
//! builds its own estate from [`backend_fake::fixtures`] and reaches the backend under test
//! through a [`Harness`]. Run them:
//!
//! - one test per case: `failover_testkit::conformance_tests!(MyHarness::new());` at the top
//!   level of an integration-test file (the expression is evaluated once per test);
//! - only the cases safe against a real server ([`REAL_SERVER_SAFE`]):
//!   `conformance_tests!(real_server: MyHarness::new());`;
//! - all in one test: `Suite::test_all(&harness).await`, which runs every case and panics
//!   with the list of failures.
//!
//! Real-server-safe cases assume only that the harness maps
//! [`backend_fake::fixtures::active`] to a reachable instance; they touch nothing but the
//! application lock [`cases::LOCK_RESOURCE`] and read `sys.databases`.
#![warn(missing_docs)]

pub mod cases;
pub mod dir_props;
pub mod directory;
pub mod gate;
mod harness;
pub mod history;
pub mod props;
#[cfg(feature = "tls")]
pub mod tls;

pub use harness::{FakeHarness, Harness, Served};

use futures::FutureExt;
use futures::future::BoxFuture;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// A case: its name, the function, and whether it is safe against a real server.
pub struct Case {
    /// The function name in [`cases`].
    pub name: &'static str,
    /// Whether it needs no estate arrangement and changes nothing but the conformance lock,
    /// so it can run against a real SQL Server (listed in [`REAL_SERVER_SAFE`]).
    pub real_server_safe: bool,
    /// Runs the case (panics on failure).
    pub run: for<'a> fn(&'a dyn Harness) -> BoxFuture<'a, ()>,
}

/// The one list of conformance cases, in order, each tagged `real_server` (safe against a
/// real SQL Server) or `arranged` (builds estate state a real server does not have). It
/// generates [`CASES`], [`REAL_SERVER_SAFE`] and the tests of [`conformance_tests!`]: add a
/// case here and all three have it.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($($ctx:tt)*) => {
        $crate::__conformance_expand! { [$($ctx)*]
            probe_reports_version_and_online_databases: arranged,
            probe_reports_read_only_copy: arranged,
            probe_reports_restoring_copy: arranged,
            probe_reports_mirroring: arranged,
            probe_reports_disconnected_mirror: arranged,
            probe_leaves_out_missing_database: real_server,
            probe_is_repeatable: real_server,
            probe_changes_nothing: arranged,
            probe_unreachable_instance: arranged,
            reconnects_after_instance_returns: arranged,
            positions_report_each_database: arranged,
            positions_missing_database_is_none: arranged,
            set_read_only_fences: arranged,
            set_read_only_is_idempotent: arranged,
            set_read_write_unfences: arranged,
            set_read_only_on_mirror_is_invalid_state: arranged,
            set_read_only_on_restoring_is_invalid_state: arranged,
            set_read_only_on_missing_database_is_invalid_state: arranged,
            recover_brings_restoring_online: arranged,
            recover_promotes_a_standby_copy: arranged,
            probe_reports_the_login_rights_and_refused_statements_change_nothing: arranged,
            recover_is_idempotent: arranged,
            recover_on_mirror_is_invalid_state: arranged,
            mirror_planned_failover_swaps_roles: arranged,
            mirror_planned_failover_returns_before_the_roles_switch: arranged,
            mirror_planned_failover_needs_synchronized: arranged,
            mirror_forced_failover_with_principal_down: arranged,
            mirror_forced_failover_returns_before_the_mirror_switches: arranged,
            mirror_forced_failover_sends_every_database_when_one_is_busy: arranged,
            mirror_forced_failover_is_idempotent_on_principal: arranged,
            mirror_forced_failover_with_principal_up_is_invalid_state: arranged,
            mirror_forced_failover_with_the_witness_off_the_mirror_is_invalid_state: arranged,
            mirror_failover_unmirrored_is_invalid_state: arranged,
            lock_granted_then_held_by_other: real_server,
            lock_acquire_is_idempotent_for_holder: real_server,
            lock_release_lets_other_take_it: real_server,
            lock_release_not_held_succeeds: real_server,
            lock_lost_on_disconnect: arranged,
            location_write_then_read: arranged,
            location_cas_conflict_is_invalid_state: arranged,
            location_rewrite_same_record_succeeds: arranged,
            errors_carry_operation_and_instance: arranged,
        }
    };
}

/// Expands the list of [`__conformance_cases!`] for one use: `[table]` (the [`CASES`] and
/// [`REAL_SERVER_SAFE`] items), `[tests all; harness]` or `[tests real_server; harness]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ([table] $($name:ident : $kind:ident),* $(,)?) => {
        /// Every case, in order.
        pub static CASES: &[Case] = &[
            $(Case {
                name: stringify!($name),
                real_server_safe: $crate::__conformance_expand!(@safe $kind),
                run: |h| Box::pin(cases::$name(h)),
            }),*
        ];

        /// The cases that need no estate arrangement and change nothing but a conformance
        /// lock, so they can run against a real SQL Server.
        pub const REAL_SERVER_SAFE: &[&str] =
            $crate::__conformance_expand!(@names [] $($name : $kind,)*);
    };
    ([tests $which:ident; $harness:expr] $($name:ident : $kind:ident),* $(,)?) => {
        $( $crate::__conformance_test!($which $kind $name; $harness); )*
    };
    (@safe real_server) => { true };
    (@safe arranged) => { false };
    (@names [$($acc:expr,)*]) => { &[$($acc,)*] };
    (@names [$($acc:expr,)*] $name:ident : real_server, $($rest:tt)*) => {
        $crate::__conformance_expand!(@names [$($acc,)* stringify!($name),] $($rest)*)
    };
    (@names [$($acc:expr,)*] $name:ident : arranged, $($rest:tt)*) => {
        $crate::__conformance_expand!(@names [$($acc,)*] $($rest)*)
    };
}

/// One `#[test]` of [`conformance_tests!`], or nothing when the case is not in the chosen
/// list (`real_server` expands only the real-server-safe cases).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    (real_server arranged $case:ident; $harness:expr) => {};
    ($which:ident $kind:ident $case:ident; $harness:expr) => {
        #[test]
        fn $case() {
            $crate::block_on(async {
                let harness = $harness;
                $crate::run_case(&harness, stringify!($case)).await;
            });
        }
    };
}

__conformance_cases!(table);

/// How long one case may take before it fails (a hung backend must not hang the suite).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one case by name under [`CASE_TIMEOUT`]. Panics if the name is unknown, the case
/// fails or it times out.
pub async fn run_case(harness: &dyn Harness, name: &str) {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance case `{name}`"));
    if tokio::time::timeout(CASE_TIMEOUT, (case.run)(harness))
        .await
        .is_err()
    {
        panic!(
            "[{}] {name}: timed out after {CASE_TIMEOUT:?}",
            harness.name()
        );
    }
}

/// Runs `fut` on a fresh current-thread tokio runtime (used by [`conformance_tests!`]).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// A failed case: its name and panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The case.
    pub case: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Runs the suite as one test.
pub struct Suite;

impl Suite {
    /// Runs the cases whose name passes `filter`, each under [`CASE_TIMEOUT`], and returns
    /// the failures.
    pub async fn run(harness: &dyn Harness, filter: impl Fn(&str) -> bool) -> Vec<Failure> {
        let mut failures = Vec::new();
        for case in CASES.iter().filter(|c| filter(c.name)) {
            let r = AssertUnwindSafe(run_case(harness, case.name))
                .catch_unwind()
                .await;
            if let Err(p) = r {
                let message = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                failures.push(Failure {
                    case: case.name,
                    message,
                });
            }
        }
        failures
    }

    /// Runs every case; panics listing the failures.
    pub async fn test_all(harness: &dyn Harness) {
        Self::assert_none(harness, Self::run(harness, |_| true).await);
    }

    /// Runs the [`REAL_SERVER_SAFE`] cases; panics listing the failures.
    pub async fn test_real_server_safe(harness: &dyn Harness) {
        Self::assert_none(
            harness,
            Self::run(harness, |n| REAL_SERVER_SAFE.contains(&n)).await,
        );
    }

    fn assert_none(harness: &dyn Harness, failures: Vec<Failure>) {
        if !failures.is_empty() {
            let list: Vec<String> = failures
                .iter()
                .map(|f| format!("- {}: {}", f.case, f.message))
                .collect();
            panic!(
                "{} conformance case(s) failed for {}:\n{}",
                failures.len(),
                harness.name(),
                list.join("\n")
            );
        }
    }
}

/// Expands to one `#[test]` per conformance case, each running the case on its own tokio
/// runtime against the harness `$harness` (an expression evaluated in each test).
///
/// `conformance_tests!(real_server: $harness)` expands only the [`REAL_SERVER_SAFE`] cases.
/// Both forms are generated from the same case list as [`CASES`], so they cannot drift.
#[macro_export]
macro_rules! conformance_tests {
    (real_server: $harness:expr) => {
        $crate::__conformance_cases!(tests real_server; $harness);
    };
    ($harness:expr) => {
        $crate::__conformance_cases!(tests all; $harness);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case function in `cases.rs` is in the one list (so in the suite, the macro and,
    /// where tagged, the real-server list), once, in source order.
    #[test]
    fn every_case_function_is_listed_once() {
        let src = include_str!("cases.rs");
        // A signature may be wrapped over several lines (long names): read each header up to
        // its body.
        let defined: Vec<&str> = src
            .split("\npub async fn ")
            .skip(1)
            .filter(|f| {
                let header = f.split('{').next().unwrap_or_default();
                header.contains("h: &dyn Harness")
            })
            .filter_map(|f| f.split('(').next())
            .collect();
        let listed: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        assert_eq!(listed, defined);
    }

    #[test]
    fn the_real_server_list_is_the_tagged_cases() {
        let tagged: Vec<&str> = CASES
            .iter()
            .filter(|c| c.real_server_safe)
            .map(|c| c.name)
            .collect();
        assert_eq!(REAL_SERVER_SAFE, tagged.as_slice());
        assert!(
            REAL_SERVER_SAFE
                .iter()
                .all(|n| n.starts_with("probe_") || n.starts_with("lock_")),
            "only probes and the conformance lock are safe on a real server: {REAL_SERVER_SAFE:?}"
        );
    }
}
