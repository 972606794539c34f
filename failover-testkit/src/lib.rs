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
pub mod directory;
mod harness;
pub mod props;

pub use harness::{FakeHarness, Harness, Served};

use futures::FutureExt;
use futures::future::BoxFuture;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// A case: its name, the function, and whether it is safe against a real server.
pub struct Case {
    /// The function name in [`cases`].
    pub name: &'static str,
    /// Runs the case (panics on failure).
    pub run: for<'a> fn(&'a dyn Harness) -> BoxFuture<'a, ()>,
}

macro_rules! table {
    ($($name:ident),* $(,)?) => {
        /// Every case, in order.
        pub static CASES: &[Case] = &[
            $(Case { name: stringify!($name), run: |h| Box::pin(cases::$name(h)) }),*
        ];
    };
}

table!(
    probe_reports_version_and_online_databases,
    probe_reports_read_only_copy,
    probe_reports_restoring_copy,
    probe_reports_mirroring,
    probe_reports_disconnected_mirror,
    probe_leaves_out_missing_database,
    probe_is_repeatable,
    probe_changes_nothing,
    probe_unreachable_instance,
    reconnects_after_instance_returns,
    positions_report_each_database,
    positions_missing_database_is_none,
    set_read_only_fences,
    set_read_only_is_idempotent,
    set_read_write_unfences,
    set_read_only_on_mirror_is_invalid_state,
    set_read_only_on_restoring_is_invalid_state,
    set_read_only_on_missing_database_is_invalid_state,
    recover_brings_restoring_online,
    recover_is_idempotent,
    recover_on_mirror_is_invalid_state,
    mirror_planned_failover_swaps_roles,
    mirror_planned_failover_needs_synchronized,
    mirror_forced_failover_with_principal_down,
    mirror_forced_failover_is_idempotent_on_principal,
    mirror_forced_failover_with_principal_up_is_invalid_state,
    mirror_failover_unmirrored_is_invalid_state,
    lock_granted_then_held_by_other,
    lock_acquire_is_idempotent_for_holder,
    lock_release_lets_other_take_it,
    lock_release_not_held_succeeds,
    lock_lost_on_disconnect,
    location_write_then_read,
    location_cas_conflict_is_invalid_state,
    location_rewrite_same_record_succeeds,
    errors_carry_operation_and_instance,
);

/// The cases that need no estate arrangement and change nothing but a conformance lock, so
/// they can run against a real SQL Server.
pub const REAL_SERVER_SAFE: &[&str] = &[
    "probe_leaves_out_missing_database",
    "probe_is_repeatable",
    "lock_granted_then_held_by_other",
    "lock_acquire_is_idempotent_for_holder",
    "lock_release_lets_other_take_it",
    "lock_release_not_held_succeeds",
];

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
/// Both forms also emit a test checking that the expansion covers its whole list.
#[macro_export]
macro_rules! conformance_tests {
    (real_server: $harness:expr) => {
        $crate::__conformance_each!(real_server; $harness;
            probe_leaves_out_missing_database,
            probe_is_repeatable,
            lock_granted_then_held_by_other,
            lock_acquire_is_idempotent_for_holder,
            lock_release_lets_other_take_it,
            lock_release_not_held_succeeds,
        );
    };
    ($harness:expr) => {
        $crate::__conformance_each!(all; $harness;
            probe_reports_version_and_online_databases,
            probe_reports_read_only_copy,
            probe_reports_restoring_copy,
            probe_reports_mirroring,
            probe_reports_disconnected_mirror,
            probe_leaves_out_missing_database,
            probe_is_repeatable,
            probe_changes_nothing,
            probe_unreachable_instance,
            reconnects_after_instance_returns,
            positions_report_each_database,
            positions_missing_database_is_none,
            set_read_only_fences,
            set_read_only_is_idempotent,
            set_read_write_unfences,
            set_read_only_on_mirror_is_invalid_state,
            set_read_only_on_restoring_is_invalid_state,
            set_read_only_on_missing_database_is_invalid_state,
            recover_brings_restoring_online,
            recover_is_idempotent,
            recover_on_mirror_is_invalid_state,
            mirror_planned_failover_swaps_roles,
            mirror_planned_failover_needs_synchronized,
            mirror_forced_failover_with_principal_down,
            mirror_forced_failover_is_idempotent_on_principal,
            mirror_forced_failover_with_principal_up_is_invalid_state,
            mirror_failover_unmirrored_is_invalid_state,
            lock_granted_then_held_by_other,
            lock_acquire_is_idempotent_for_holder,
            lock_release_lets_other_take_it,
            lock_release_not_held_succeeds,
            lock_lost_on_disconnect,
            location_write_then_read,
            location_cas_conflict_is_invalid_state,
            location_rewrite_same_record_succeeds,
            errors_carry_operation_and_instance,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($which:ident; $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::block_on(async {
                    let harness = $harness;
                    $crate::run_case(&harness, stringify!($case)).await;
                });
            }
        )*

        #[test]
        fn conformance_suite_is_complete() {
            let expanded: &[&str] = &[$(stringify!($case)),*];
            $crate::__check_expansion(stringify!($which), expanded);
        }
    };
}

#[doc(hidden)]
pub fn __check_expansion(which: &str, expanded: &[&str]) {
    let expected: Vec<&str> = if which == "real_server" {
        REAL_SERVER_SAFE.to_vec()
    } else {
        CASES.iter().map(|c| c.name).collect()
    };
    assert_eq!(
        expanded,
        expected.as_slice(),
        "conformance_tests! is out of date with CASES"
    );
}
