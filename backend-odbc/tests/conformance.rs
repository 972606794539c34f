//! The shared backend conformance suite: backend-odbc -> unixODBC -> FreeTDS ODBC driver ->
//! TDS -> mssql-sim, one test per case. Fails loudly when the FreeTDS driver is missing.

mod common;

failover_testkit::conformance_tests!(common::SimHarness);
