//! Issue 12 through the shared SQL backend over tiberius: the session context, the
//! server-side fence bound, SQL Server's error numbers, standby copies and server names.
//! The same cases run over ODBC in backend-odbc/tests/fidelity.rs.

mod common;

use backend_fake::fixtures::{self, LOGIN_USER, Options};
use common::{backend_with, serve};
use failover_core::{Backend, DatabaseName, ErrorKind, MirrorFailoverKind};
use std::time::Duration;

fn db(s: &str) -> DatabaseName {
    DatabaseName::parse(s).unwrap()
}

/// Item 7: the fence's `SET LOCK_TIMEOUT` sits below the call timeout, so a blocked fence
/// comes back from the server as 1222 (transient, nothing changed), not as a client time-out
/// that leaves an ALTER queued on the server.
#[tokio::test]
async fn a_blocked_fence_is_abandoned_by_the_server_before_the_call_timeout() {
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let b = backend_with(&sim, Duration::from_secs(2));
    let a = fixtures::active();
    let block = sim.block_database(&a, "xds");
    let e = b.set_read_only(&a, &[db("xds")], true).await.unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(1222)), "{e}");
    assert!(b.probe(&a, &[db("xds")]).await.unwrap().databases[0].is_writable());
    drop(block);
    b.set_read_only(&a, &[db("xds")], true).await.unwrap();
    assert!(!b.probe(&a, &[db("xds")]).await.unwrap().databases[0].is_writable());
}

/// Item 3: where SQL Server refuses `SET READ_ONLY` on a mirroring principal (the estate's
/// `read_only_refused_on_mirroring_principal`), the fence fails with 1468 (the first of
/// 1468 + 5069), classified invalid state, and changes nothing; with the flag off (the
/// default) the same fence lands.
#[tokio::test]
async fn a_fence_refused_on_a_mirroring_principal_is_1468_and_changes_nothing() {
    for refused in [true, false] {
        let fx = fixtures::build(
            &Options::default()
                .mirrored(true)
                .read_only_refused_on_mirroring_principal(refused),
        );
        let sim = serve(fx.estate.clone()).await;
        let b = backend_with(&sim, Duration::from_secs(10));
        let (a, dbs) = (fixtures::active(), fixtures::databases());
        let before = fx.estate.durable_changes();
        let r = b.set_read_only(&a, &dbs, true).await;
        let probe = b.probe(&a, &dbs).await.unwrap();
        if refused {
            let e = r.unwrap_err();
            assert_eq!(
                (e.kind, e.code),
                (ErrorKind::InvalidState, Some(1468)),
                "{e}"
            );
            assert!(e.message.contains("database mirroring session"), "{e}");
            assert_eq!(fx.estate.durable_changes(), before);
            assert!(probe.databases.iter().all(|d| d.is_writable()));
        } else {
            r.unwrap();
            assert!(probe.databases.iter().all(|d| !d.is_writable()));
        }
    }
}

/// Item 7: a login whose default database is `xds` does not break SET PARTNER FAILOVER:
/// every batch starts with `USE [master];`.
#[tokio::test]
async fn a_login_defaulting_to_xds_fails_over_in_master() {
    let fx = fixtures::build(&Options::default().mirrored(true));
    fx.estate
        .set_login_default_database(LOGIN_USER, Some(&db("xds")));
    let sim = serve(fx.estate.clone()).await;
    let b = backend_with(&sim, Duration::from_secs(10));
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let dbs = fixtures::databases();
    let now = b
        .mirror_failover(&a, &dbs, MirrorFailoverKind::Planned)
        .await
        .unwrap();
    assert_eq!(now, a2);
    assert!(
        b.probe(&a2, &dbs)
            .await
            .unwrap()
            .databases
            .iter()
            .all(|d| d.is_writable())
    );
    // The old principal's session stayed usable: the next batch on it works.
    b.probe(&a, &dbs).await.unwrap();
}

/// Item 5: SQL Server answers ALTER DATABASE on a missing database with 5011 + 5069 (it does
/// not say whether the database is missing or the login may not alter it): the backend
/// probes and reports a missing database as invalid state (as the fake does), a refusal on
/// an existing database as permission with the hint; 208 on the position view says which
/// view to create.
#[tokio::test]
async fn five_oh_one_one_is_told_apart_and_208_names_the_view_to_create() {
    use backend_fake::{Fault, FaultConfig, ScriptedFault, SqlError};
    use failover_core::Operation;
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let b = backend_with(&sim, Duration::from_secs(10));
    let a = fixtures::active();
    let e = b.set_read_only(&a, &[db("nope")], true).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (ErrorKind::InvalidState, Some(5011)),
        "{e}"
    );
    assert!(e.message.contains("does not exist"), "{e}");
    fx.estate
        .set_faults(FaultConfig::seeded(1).script(ScriptedFault::on(
            &a,
            Operation::SetReadOnly,
            1,
            Fault::Error(SqlError::new(
                5011,
                14,
                5,
                "User does not have permission to alter database 'xds'",
            )),
        )));
    let e = b.set_read_only(&a, &[db("xds")], true).await.unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Permission, Some(5011)), "{e}");
    assert!(e.message.contains("ALTER permission"), "{e}");
    fx.estate.set_faults(FaultConfig::default());
    assert!(b.probe(&a, &[db("xds")]).await.unwrap().databases[0].is_writable());
}

/// Item 5: a position view that does not exist (208) fails with what to create.
#[tokio::test]
async fn a_missing_position_view_says_which_view_to_create() {
    use backend_tiberius::{Encryption, Secret, TiberiusBackend, TiberiusConfig};
    let fx = fixtures::standard();
    let sim = serve(fx.estate.clone()).await;
    let mut cfg = TiberiusConfig::new(LOGIN_USER, Secret::new(fixtures::LOGIN_PASSWORD))
        .with_encryption(Encryption::Plaintext);
    cfg.endpoints = sim.endpoint_map();
    cfg.sql.position_query = failover_tsql::PositionQuery::new(
        "SELECT position FROM {control_db}.[dbo].[cms_failover_position_v2] WHERE database_name = {db}",
    )
    .unwrap();
    let b = TiberiusBackend::new(cfg);
    let e = b
        .positions(&fixtures::active(), &fixtures::databases())
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Fatal, Some(208)), "{e}");
    assert!(
        e.message
            .contains("create the view dbo.cms_failover_position"),
        "{e}"
    );
}

/// Item 2: `mirroring_partner_instance` is the partner's server name (computer and
/// instance, no domain, no port); the backend maps it to a topology address by the host's
/// first label, else by an alias, and a name it cannot map stops a mirror failover before
/// anything is sent.
#[tokio::test]
async fn the_mirroring_partner_is_mapped_from_its_server_name() {
    let fx = fixtures::build(&Options::default().mirrored(true));
    let (a, a2) = (fixtures::active(), fixtures::active_mirror());
    let dbs = fixtures::databases();
    let sim = serve(fx.estate.clone()).await;
    let b = backend_with(&sim, Duration::from_secs(10));
    let partner = |p: failover_core::InstanceProbe| p.databases[0].mirroring.clone().unwrap();
    let m = partner(b.probe(&a, &dbs).await.unwrap());
    assert_eq!(m.partner_name.as_deref(), Some("SQL-A2\\RTC"));
    assert_eq!(m.partner.as_ref(), Some(&a2));
    // A computer name no address of the topology gives away.
    fx.estate.set_server_name(&a2, "SQLA99\\RTC").unwrap();
    let m = partner(b.probe(&a, &dbs).await.unwrap());
    assert_eq!(
        (m.partner_name.as_deref(), m.partner),
        (Some("SQLA99\\RTC"), None)
    );
    let e = b
        .mirror_failover(&a, &dbs, MirrorFailoverKind::Planned)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState, "{e}");
    assert!(
        e.message.contains("SQLA99\\RTC") && e.message.contains("[aliases]"),
        "{e}"
    );
    assert!(
        b.probe(&a, &dbs)
            .await
            .unwrap()
            .databases
            .iter()
            .all(|d| d.is_writable()),
        "nothing was sent"
    );
    // With the alias the name maps, and the failover runs.
    let b = {
        let mut cfg = backend_tiberius::TiberiusConfig::new(
            LOGIN_USER,
            backend_tiberius::Secret::new(fixtures::LOGIN_PASSWORD),
        )
        .with_encryption(backend_tiberius::Encryption::Plaintext)
        .with_call_timeout(Duration::from_secs(10));
        cfg.endpoints = sim.endpoint_map();
        cfg.sql.server_names =
            failover_core::ServerNames::default().with_alias("SQLA99\\RTC", a2.clone());
        backend_tiberius::TiberiusBackend::new(cfg)
    };
    let m = partner(b.probe(&a, &dbs).await.unwrap());
    assert_eq!(m.partner.as_ref(), Some(&a2));
    let now = b
        .mirror_failover(&a, &dbs, MirrorFailoverKind::Planned)
        .await
        .unwrap();
    assert_eq!(now, a2);
}
