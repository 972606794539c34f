//! The shared backend conformance suite: backend-tiberius -> TDS -> mssql-sim, one test per
//! case.

mod common;

failover_testkit::conformance_tests!(common::SimHarness);
