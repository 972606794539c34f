//! Logins with different rights: what the estate refuses and what the probe reports.

use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use backend_fake::{FakeBackend, LoginGrants};
use failover_core::{
    Backend, DatabaseName, ErrorKind, LocationRecord, MirrorFailoverKind, MirrorRole,
};

fn xds() -> DatabaseName {
    DatabaseName::parse("xds").unwrap()
}

fn client(f: &fixtures::Fixture, grants: LoginGrants) -> FakeBackend {
    f.estate.set_login_grants(LOGIN_USER, None, grants);
    FakeBackend::new(f.estate.clone()).with_login(LOGIN_USER, LOGIN_PASSWORD)
}

#[tokio::test]
async fn a_login_without_rights_is_refused_with_sql_server_numbers_and_changes_nothing() {
    let f = fixtures::build(&Options::default().mirrored(true));
    let be = client(&f, LoginGrants::default());
    let (a, b) = (fixtures::active(), fixtures::backup());
    let before = f.estate.history().len();
    let e = be.set_read_only(&a, &[xds()], true).await.unwrap_err();
    assert_eq!((e.code, e.kind), (Some(5011), ErrorKind::Permission), "{e}");
    let e = be
        .mirror_failover(&b, &[xds()], MirrorFailoverKind::Planned)
        .await
        .unwrap_err();
    assert_eq!(e.code, Some(5011), "{e}");
    let rec = LocationRecord {
        epoch: 2,
        active: f.topology.backup.clone(),
        run_id: "r".into(),
    };
    let e = be.write_location(&a, &rec, Some(1)).await.unwrap_err();
    assert_eq!((e.code, e.kind), (Some(229), ErrorKind::Permission), "{e}");
    assert_eq!(f.estate.history().len(), before, "nothing changed");
}

#[tokio::test]
async fn restore_needs_sysadmin_dbcreator_or_ownership_not_alter() {
    let f = fixtures::build(&Options::default().standby(fixtures::StandbyCopy::Restoring));
    let b = fixtures::backup();
    let be = client(
        &f,
        LoginGrants {
            alter: fixtures::databases(),
            control: fixtures::databases(),
            ..LoginGrants::default()
        },
    );
    let e = be.recover(&b, &[xds()]).await.unwrap_err();
    assert_eq!((e.code, e.kind), (Some(3110), ErrorKind::Permission), "{e}");
    assert!(
        e.message.contains("permission to RESTORE database 'xds'"),
        "{e}"
    );
    let be = client(
        &f,
        LoginGrants {
            owns: vec![xds()],
            ..LoginGrants::default()
        },
    );
    be.recover(&b, &[xds()])
        .await
        .expect("the owner may restore");
    let be = client(
        &f,
        LoginGrants {
            dbcreator: true,
            ..LoginGrants::default()
        },
    );
    be.recover(&b, &fixtures::databases())
        .await
        .expect("dbcreator may restore");
}

#[tokio::test]
async fn the_probe_reports_the_rights_and_hides_mirror_columns_from_non_sysadmins() {
    let f = fixtures::build(&Options::default().mirrored(true));
    let b2 = fixtures::backup_mirror();
    let dbs = fixtures::databases();
    let be = client(
        &f,
        LoginGrants {
            alter: vec![xds()],
            view_definition: dbs.clone(),
            view_server_state: true,
            ..LoginGrants::default()
        },
    );
    let p = be.probe(&fixtures::active(), &dbs).await.unwrap();
    let r = p.rights.expect("rights");
    assert_eq!(r.login, LOGIN_USER);
    assert!(!r.sysadmin && !r.dbcreator);
    assert_eq!(r.location_write, Some(false));
    assert_eq!(r.can_alter(&xds()), Some(true));
    assert!(!r.can_restore(&xds()));
    // The principal's columns are shown; the mirror's are NULL (VIEW DEFINITION does not help).
    assert!(p.databases.iter().all(|d| {
        d.mirroring
            .as_ref()
            .is_some_and(|m| m.role == MirrorRole::Principal)
    }));
    let p = be.probe(&b2, &dbs).await.unwrap();
    assert!(p.databases.iter().all(|d| d.mirroring.is_none()), "{p:?}");
    // RESTORING copies allow no access check: HAS_PERMS_BY_NAME is NULL there.
    assert!(
        p.rights
            .unwrap()
            .databases
            .iter()
            .all(|d| d.alter.is_none())
    );
    let sa = client(&f, LoginGrants::sysadmin());
    let p = sa.probe(&b2, &dbs).await.unwrap();
    assert!(p.databases.iter().all(|d| {
        d.mirroring
            .as_ref()
            .is_some_and(|m| m.role == MirrorRole::Mirror)
    }));
}
