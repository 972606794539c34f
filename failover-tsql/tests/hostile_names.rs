//! Hostile names (quotes, brackets, semicolons, comments, Unicode) end up as exactly one
//! identifier or string token: every batch keeps its intended statement count and shape.

use failover_core::{DatabaseName, InstanceAddr, LocationRecord, MirrorFailoverKind, Store};
use failover_tsql::build::{self, PositionQuery, SqlConfig};
use failover_tsql::lex::{self, Token};

const HOSTILE: &[&str] = &[
    "xds",
    "x]y",
    "]]",
    "[x]",
    "a'b",
    "'; DROP DATABASE master; --",
    "x]; DROP DATABASE master; --",
    "x]]; SELECT 1 /*",
    "*/ SELECT 1 --",
    "N'x'",
    "\"quoted\"",
    "日本語のデータベース",
    "emoji 🦀 ] ' ;",
    "a;b;c",
    "-- comment",
];

fn names() -> Vec<DatabaseName> {
    HOSTILE
        .iter()
        .map(|s| DatabaseName::parse(s).unwrap())
        .collect()
}

fn stmts(sql: &str) -> Vec<Vec<Token>> {
    let s = lex::statements(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    for st in &s {
        assert!(
            !st.iter().any(|t| matches!(t, Token::Comment(_))),
            "comment in {sql}"
        );
    }
    s
}

/// The statements of a batch after its leading `USE [master];` (asserted).
fn body(sql: &str) -> Vec<Vec<Token>> {
    let mut s = stmts(sql);
    assert_eq!(s[0], vec![w("USE"), id("master")], "{sql}");
    s.remove(0);
    s
}

fn w(s: &str) -> Token {
    Token::Word(s.into())
}
fn id(s: &str) -> Token {
    Token::Ident(s.into())
}
fn ns(s: &str) -> Token {
    Token::NString(s.into())
}

#[test]
fn fence_is_one_alter_per_database() {
    let dbs = names();
    for ro in [true, false] {
        let mut s = body(&build::set_read_only(&dbs, ro, 7500));
        assert_eq!(
            s.remove(0),
            vec![w("SET"), w("LOCK_TIMEOUT"), Token::Number("7500".into())]
        );
        assert_eq!(s.len(), dbs.len());
        let mode = if ro { "READ_ONLY" } else { "READ_WRITE" };
        for (st, db) in s.iter().zip(&dbs) {
            assert_eq!(
                st,
                &vec![
                    w("ALTER"),
                    w("DATABASE"),
                    id(db.as_str()),
                    w("SET"),
                    w(mode),
                    w("WITH"),
                    w("ROLLBACK"),
                    w("IMMEDIATE")
                ]
            );
        }
    }
}

#[test]
fn recover_and_mirror_statements() {
    let dbs = names();
    let s = body(&build::recover(&dbs));
    assert_eq!(s.len(), dbs.len());
    for (st, db) in s.iter().zip(&dbs) {
        assert_eq!(
            st,
            &vec![
                w("RESTORE"),
                w("DATABASE"),
                id(db.as_str()),
                w("WITH"),
                w("RECOVERY")
            ]
        );
    }
    for (kind, word) in [
        (MirrorFailoverKind::Planned, "FAILOVER"),
        (MirrorFailoverKind::Forced, "FORCE_SERVICE_ALLOW_DATA_LOSS"),
    ] {
        let s = body(&build::mirror_failover(&dbs, kind));
        assert_eq!(s.len(), dbs.len());
        for (st, db) in s.iter().zip(&dbs) {
            assert_eq!(
                st,
                &vec![
                    w("ALTER"),
                    w("DATABASE"),
                    id(db.as_str()),
                    w("SET"),
                    w("PARTNER"),
                    w(word)
                ]
            );
        }
    }
}

#[test]
fn probe_lists_names_as_literals() {
    let dbs = names();
    let s = body(&build::probe(&dbs));
    assert_eq!(s.len(), 2);
    assert_eq!(
        s[0],
        vec![w("SELECT"), w("@@VERSION"), w("AS"), w("version")]
    );
    let literals: Vec<&str> = s[1]
        .iter()
        .filter_map(|t| match t {
            Token::NString(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(literals, HOSTILE);
    assert!(!s[1].iter().any(|t| matches!(t, Token::Ident(_))));
    let empty = body(&build::probe(&[]));
    assert_eq!(empty.len(), 2);
    assert!(empty[1].contains(&w("NULL")));
}

#[test]
fn positions_render_each_placeholder_once_per_database() {
    let dbs = names();
    for q in [
        PositionQuery::position_table(),
        PositionQuery::log_shipping(),
        PositionQuery::heartbeat(),
    ] {
        let cfg = SqlConfig {
            position_query: q.clone(),
            ..SqlConfig::default()
        };
        let s = body(&build::positions(&cfg, &dbs));
        assert_eq!(s.len(), dbs.len(), "{q}");
        let shape = |st: &Vec<Token>| {
            st.iter()
                .map(|t| match t {
                    Token::NString(_) => ns("?"),
                    Token::Ident(v)
                        if v != "master" && v != "dbo" && !v.starts_with("cms_failover") =>
                    {
                        id("?")
                    }
                    other => other.clone(),
                })
                .collect::<Vec<_>>()
        };
        let first = shape(&s[0]);
        for (st, db) in s.iter().zip(&dbs) {
            assert!(st[0].is_word("SELECT"));
            assert_eq!(shape(st), first, "{q} with {db}");
            assert!(
                st.contains(&ns(db.as_str())) || st.contains(&id(db.as_str())),
                "{q} with {db}"
            );
        }
    }
    let default = SqlConfig::default();
    let s = body(&build::positions(
        &default,
        &[DatabaseName::parse("x'y").unwrap()],
    ));
    assert_eq!(
        s[0],
        vec![
            w("SELECT"),
            w("position"),
            w("FROM"),
            id("master"),
            Token::Punct(".".into()),
            id("dbo"),
            Token::Punct(".".into()),
            id("cms_failover_position"),
            w("WHERE"),
            w("database_name"),
            Token::Punct("=".into()),
            ns("x'y"),
        ]
    );
}

#[test]
fn position_templates_are_validated() {
    assert!(PositionQuery::new("SELECT 1 AS position;").is_ok());
    assert!(PositionQuery::new("SELECT 1; SELECT 2").is_err());
    assert!(PositionQuery::new("DELETE FROM t WHERE db = {db}").is_err());
    assert!(PositionQuery::new("SELECT {nope}").is_err());
    assert!(PositionQuery::new("SELECT '{db}").is_err());
    let q: PositionQuery = String::from("log_shipping").try_into().unwrap();
    assert_eq!(q, PositionQuery::log_shipping());
    // Issue 12 item 8: presets that compared unrelated databases' LSNs are refused by name.
    for removed in ["mirroring_lsn", "availability_group"] {
        let e = PositionQuery::try_from(removed.to_string()).unwrap_err();
        assert!(e.0.contains("unrelated databases"), "{e}");
    }
    // The log-shipping preset reads which backup was applied, not when a restore ran.
    let t = PositionQuery::log_shipping().template().to_string();
    for needed in [
        "restorehistory",
        "backup_set_id",
        "last_lsn",
        "log_since_last_log_backup_mb",
    ] {
        assert!(t.contains(needed), "{needed}: {t}");
    }
    assert!(!t.contains("last_restored_date"), "{t}");
    let cfg: SqlConfig = serde_json_like();
    assert_eq!(cfg.control_database.as_str(), "ctl]db");
}

/// SqlConfig deserializes from any serde format; build one by hand through `TryFrom`.
fn serde_json_like() -> SqlConfig {
    SqlConfig {
        position_query: String::from("SELECT MAX(seq) FROM {db_ident}.dbo.hb")
            .try_into()
            .unwrap(),
        control_database: DatabaseName::parse("ctl]db").unwrap(),
        ..SqlConfig::default()
    }
}

#[test]
fn lock_batches() {
    for res in ["cms-failover", "x'); DROP TABLE t; --", "ロック ] ;"] {
        let s = stmts(&build::acquire_lock(res));
        assert_eq!(s.len(), 4);
        assert_eq!(s[0], vec![w("USE"), id("master")]);
        assert_eq!(s[1], vec![w("DECLARE"), w("@r"), w("int")]);
        let p = |x: &str| Token::Punct(x.into());
        let st = |x: &str| Token::String(x.into());
        assert_eq!(
            s[2],
            vec![
                w("EXEC"),
                w("@r"),
                p("="),
                w("sp_getapplock"),
                w("@Resource"),
                p("="),
                ns(res),
                p(","),
                w("@LockMode"),
                p("="),
                st("Exclusive"),
                p(","),
                w("@LockOwner"),
                p("="),
                st("Session"),
                p(","),
                w("@LockTimeout"),
                p("="),
                Token::Number("0".into()),
            ]
        );
        assert_eq!(s[3], vec![w("SELECT"), w("@r"), w("AS"), w("result")]);
        let s = stmts(&build::release_lock(res));
        assert_eq!(s.len(), 4);
        assert_eq!(s[2][3], w("sp_releaseapplock"));
        assert!(s[2].contains(&ns(res)));
        let s = stmts(&build::lock_mode(res));
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            vec![
                w("SELECT"),
                w("APPLOCK_MODE"),
                p("("),
                st("public"),
                p(","),
                ns(res),
                p(","),
                st("Session"),
                p(")"),
                w("AS"),
                w("mode")
            ]
        );
    }
}

#[test]
fn location_batches() {
    let cfg = SqlConfig {
        control_database: DatabaseName::parse("ctl]; DROP --").unwrap(),
        ..SqlConfig::default()
    };
    let s = body(&build::read_location(&cfg));
    assert_eq!(s.len(), 1);
    assert!(s[0].contains(&id("ctl]; DROP --")));
    let record = LocationRecord {
        epoch: 7,
        active: Store::new(
            InstanceAddr::parse("b.test\\RTC").unwrap(),
            Some(InstanceAddr::parse("b2.test\\RTC").unwrap()),
        )
        .unwrap(),
        run_id: "run'); DROP TABLE x; --".into(),
    };
    for expected in [None, Some(6)] {
        let sql = build::write_location(&cfg, &record, expected);
        let s = body(&sql);
        assert_eq!(s.len(), 3, "{sql}");
        assert!(s[0][0].is_word("IF") && s[0].iter().any(|t| t.is_word("CREATE")));
        assert!(s[0].contains(&ns("[ctl]]; DROP --].[dbo].[cms_failover_location]")));
        let verb = if expected.is_none() {
            "INSERT"
        } else {
            "UPDATE"
        };
        assert!(s[1][0].is_word(verb));
        assert!(s[1].contains(&ns("run'); DROP TABLE x; --")));
        assert!(s[1].contains(&ns("b.test\\RTC")) && s[1].contains(&ns("b2.test\\RTC")));
        assert!(s[2][0].is_word("SELECT"));
    }
}
