//! Issue 12 item 2: automatic failover by the witness as clients see it. In high-safety mode
//! with a witness, a principal lost while the mirror and the witness keep quorum makes the
//! mirror the principal by itself, its database ONLINE; the former principal rejoins as the
//! mirror
//! (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/role-switching-during-a-database-mirroring-session-sql-server>).

mod common;

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use backend_fake::{EstateEvent, WitnessConnection};
use common::*;
use failover_core::{DatabaseName, MirrorFailoverKind};
use failover_tsql::build;
use mssql_sim::{SimOptions, Simulator};

const VIEW: &str = "SELECT DB_NAME(database_id), mirroring_role_desc, mirroring_state_desc, mirroring_witness_state_desc FROM sys.database_mirroring WHERE database_id = DB_ID(N'xds')\ngo\nSELECT name, state_desc FROM sys.databases WHERE name IN (N'xds')\ngo\n";

/// FreeTDS `tsql` on the mirror sees it MIRROR while the witness is off it, then (the
/// witness reconnected before the principal is lost, a scheduled event) PRINCIPAL and
/// ONLINE after the principal goes down; forcing service there is 1455 (it is already the
/// principal); the former principal comes back as the MIRROR.
#[tokio::test]
async fn tsql_sees_the_mirror_take_over_when_the_principal_is_lost() {
    let f = fixtures::build(
        &Options::default()
            .mirrored(true)
            .witness(Some(WitnessConnection::PrincipalOnly)),
    );
    f.estate.set_automatic_failover(Some(0));
    let sim = Simulator::start(f.estate.clone(), SimOptions::default())
        .await
        .unwrap();
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let port = |i| sim.addr_of(i).unwrap().port();
    let xds = DatabaseName::parse("xds").unwrap();
    let out = tsql(port(&a2), LOGIN_USER, LOGIN_PASSWORD, VIEW).await;
    assert!(
        out.contains("MIRROR") && out.contains("DISCONNECTED"),
        "the witness is off the mirror: {out}"
    );
    f.estate.schedule(
        f.estate.now() + 1,
        EstateEvent::Witness {
            database: xds.clone(),
            partner: a.clone(),
            witness: Some((fixtures::WITNESS.into(), WitnessConnection::Both)),
        },
    );
    f.estate.advance(1);
    f.estate.set_reachable(&a, false).unwrap();
    let out = tsql(port(&a2), LOGIN_USER, LOGIN_PASSWORD, VIEW).await;
    assert!(
        out.contains("PRINCIPAL") && out.contains("ONLINE") && !out.contains("RESTORING"),
        "{out}"
    );
    let forced = build::mirror_failover(&[xds], MirrorFailoverKind::Forced);
    assert_eq!(error_numbers(port(&a2), &forced).await, vec![1455]);
    f.estate.set_reachable(&a, true).unwrap();
    // The simulator reopens the port of an instance that comes back: wait for it.
    let back = async {
        while tiberius_connect(port(&a), LOGIN_USER, LOGIN_PASSWORD, None)
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), back)
        .await
        .expect("the port reopens");
    let out = tsql(port(&a), LOGIN_USER, LOGIN_PASSWORD, VIEW).await;
    assert!(
        out.contains("MIRROR") && out.contains("RESTORING") && out.contains("SYNCHRONIZED"),
        "{out}"
    );
}
