//! Backend conformance suite and property-test harness shared by every backend
