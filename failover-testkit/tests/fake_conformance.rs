//! The conformance suite against FakeBackend, one test per case.

use failover_testkit::{FakeHarness, Suite};

failover_testkit::conformance_tests!(FakeHarness);

mod real_server_subset {
    failover_testkit::conformance_tests!(real_server: failover_testkit::FakeHarness);
}

#[tokio::test]
async fn test_all_passes_for_the_fake() {
    Suite::test_all(&FakeHarness).await;
}
