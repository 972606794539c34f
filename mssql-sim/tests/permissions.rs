//! Issue 12 item 6: logins with different rights. What a login may do is answered by
//! `IS_SRVROLEMEMBER` / `HAS_PERMS_BY_NAME` as documented, statements it may not run fail
//! with SQL Server's errors (5011 + 5069, 3110 + 3013, 229), and `sys.database_mirroring`
//! shows a mirror's columns only to sysadmin. Checked through tiberius and through FreeTDS
//! `tsql` as an independent client. The rules and their pages: `backend_fake::grants`.

mod common;

use backend_fake::LoginGrants;
use backend_fake::fixtures::{self, LOGIN_PASSWORD, LOGIN_USER, Options};
use common::*;
use failover_core::{DatabaseName, InstanceAddr};
use failover_tsql::build;
use mssql_sim::{SimHandle, SimOptions, Simulator};

async fn start(o: &Options, grants: LoginGrants) -> (SimHandle, fixtures::Fixture) {
    let f = fixtures::build(o);
    f.estate.set_login_grants(LOGIN_USER, None, grants);
    let sim = Simulator::start(f.estate.clone(), SimOptions::default())
        .await
        .unwrap();
    (sim, f)
}

fn port(sim: &SimHandle, i: &InstanceAddr) -> u16 {
    sim.addr_of(i).unwrap().port()
}

fn xds() -> DatabaseName {
    DatabaseName::parse("xds").unwrap()
}

/// A login without ALTER, RESTORE or the location grants: the backends' statements fail as
/// on SQL Server and nothing changes.
#[tokio::test]
async fn statements_without_the_right_fail_with_sql_server_errors_and_change_nothing() {
    let (sim, f) = start(
        &Options::default().standby(fixtures::StandbyCopy::Restoring),
        LoginGrants::default(),
    )
    .await;
    let (a, b) = (fixtures::active(), fixtures::backup());
    let before = f.estate.history().len();
    let record = failover_core::LocationRecord {
        epoch: 2,
        active: f.topology.backup.clone(),
        run_id: "r".into(),
    };
    let cfg = build::SqlConfig::default();
    let cases: Vec<(&InstanceAddr, String, Vec<u32>)> = vec![
        (
            &a,
            build::set_read_only(&[xds()], true, 50),
            vec![5011, 5069],
        ),
        (
            &a,
            "USE [master];\nALTER DATABASE [xds] SET PARTNER FAILOVER;".into(),
            vec![5011, 5069],
        ),
        (&b, build::recover(&[xds()]), vec![3110, 3013]),
        (&a, build::write_location(&cfg, &record, Some(1)), vec![229]),
    ];
    for (i, sql, want) in cases {
        let mut c = tiberius_connect(port(&sim, i), LOGIN_USER, LOGIN_PASSWORD, None)
            .await
            .unwrap();
        assert_eq!(batch(&mut c, &sql).await.unwrap_err().0, want[0], "{sql}");
        assert_eq!(error_numbers(port(&sim, i), &sql).await, want, "{sql}");
    }
    assert_eq!(f.estate.history().len(), before, "nothing changed");
    // The owner may restore its database (ALTER alone may not).
    f.estate.set_login_grants(
        LOGIN_USER,
        None,
        LoginGrants {
            owns: vec![xds()],
            ..LoginGrants::default()
        },
    );
    // 3014 is the informational "RESTORE DATABASE successfully processed".
    assert_eq!(
        error_numbers(port(&sim, &b), &build::recover(&[xds()])).await,
        vec![3014]
    );
    let s = f.estate.snapshot();
    let row = s.instances[&b]
        .databases
        .iter()
        .find(|d| d.name == xds())
        .unwrap()
        .clone();
    assert_eq!(row.state, failover_core::DbState::Online);
}

/// `IS_SRVROLEMEMBER` and `HAS_PERMS_BY_NAME` answer 1, 0 or NULL as documented, seen by
/// FreeTDS `tsql`.
#[tokio::test]
async fn login_functions_answer_one_zero_or_null() {
    let (sim, _f) = start(
        &Options::default(),
        LoginGrants {
            alter: vec![xds()],
            view_server_state: true,
            ..LoginGrants::default()
        },
    )
    .await;
    let sql = "SELECT SUSER_SNAME() AS l, IS_SRVROLEMEMBER(N'sysadmin') AS sa, \
        IS_SRVROLEMEMBER(N'public') AS pub, IS_SRVROLEMEMBER(N'no_such_role') AS bad, \
        HAS_PERMS_BY_NAME(N'xds', N'DATABASE', N'ALTER') AS x_alter, \
        HAS_PERMS_BY_NAME(N'lis', N'DATABASE', N'ALTER') AS l_alter, \
        HAS_PERMS_BY_NAME(N'nope', N'DATABASE', N'ALTER') AS missing, \
        HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') AS vss\ngo\n";
    let out = tsql(
        port(&sim, &fixtures::active()),
        LOGIN_USER,
        LOGIN_PASSWORD,
        sql,
    )
    .await;
    let sets = tsql_sets(&out);
    let v = |s: &str| Some(s.to_string());
    assert_eq!(
        sets[0][1],
        vec![
            v(LOGIN_USER),
            v("0"),
            v("1"),
            None,
            v("1"),
            v("0"),
            None,
            v("1")
        ],
        "{out}"
    );
}

/// A login that is not sysadmin sees NULL mirroring columns on the mirror (VIEW DEFINITION
/// does not help) and the principal's columns; sysadmin sees both. The preflight probe
/// reports the rights in the same two result sets.
#[tokio::test]
async fn mirror_columns_are_null_for_a_login_that_is_not_sysadmin() {
    let dbs = fixtures::databases();
    let (sim, f) = start(
        &Options::default().mirrored(true),
        LoginGrants {
            view_definition: dbs.clone(),
            ..LoginGrants::default()
        },
    )
    .await;
    let cfg = build::SqlConfig::default();
    let probe = build::preflight_probe(&cfg, &dbs);
    let role_col = 3;
    for (i, shown) in [
        (fixtures::active(), true),
        (fixtures::active_mirror(), false),
    ] {
        let out = tsql(
            port(&sim, &i),
            LOGIN_USER,
            LOGIN_PASSWORD,
            &format!("{probe}\ngo\n"),
        )
        .await;
        let sets = tsql_sets(&out);
        assert_eq!(sets.len(), 2, "{out}");
        // The version row: login, is_sysadmin 0, is_dbcreator 0, location INSERT/UPDATE 0.
        assert_eq!(
            &sets[0][1][1..],
            &[
                Some(LOGIN_USER.into()),
                Some("0".into()),
                Some("0".into()),
                Some("0".into()),
                Some("0".into())
            ],
            "{out}"
        );
        for r in &sets[1][1..] {
            assert_eq!(r[role_col].is_some(), shown, "{i}: {out}");
            // The owner is sa; ALTER is 0 on the ONLINE principal, NULL on the RESTORING mirror.
            assert_eq!(r[12].as_deref(), Some("sa"), "{out}");
            assert_eq!(r[11].as_deref(), shown.then_some("0"), "{out}");
        }
    }
    f.estate
        .set_login_grants(LOGIN_USER, None, LoginGrants::sysadmin());
    let mut c = tiberius_connect(
        port(&sim, &fixtures::active_mirror()),
        LOGIN_USER,
        LOGIN_PASSWORD,
        None,
    )
    .await
    .unwrap();
    let sets = batch(&mut c, &probe).await.unwrap();
    assert!(
        sets[1]
            .iter()
            .all(|r| r[role_col].as_deref() == Some("MIRROR")),
        "{sets:?}"
    );
    assert_eq!(sets[0][0][2].as_deref(), Some("1"), "is_sysadmin");
}
