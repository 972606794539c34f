//! The TDS layer against tiberius and FreeTDS `tsql`, with a toy SQL side.

mod common;

use common::{tiberius_connect, tsql};
use mssql_sim::listener::{bind, run_listener};
use mssql_sim::*;
use std::sync::Arc;
use tokio::sync::watch;

struct Toy;
struct ToySession;

impl Service for Toy {
    type Session = ToySession;
    async fn login(&self, l: LoginRequest) -> Result<(ToySession, LoginAccepted), LoginRefused> {
        if l.user == "sa" && l.password == common::PASSWORD {
            Ok((
                ToySession,
                LoginAccepted {
                    database: "master".into(),
                    spid: 51,
                },
            ))
        } else {
            Err(LoginRefused::Error(SqlMessage::new(
                18456,
                14,
                1,
                format!("Login failed for user '{}'.", l.user),
            )))
        }
    }
}

impl Session for ToySession {
    async fn execute(&mut self, request: Request) -> Reply {
        let sql = match request {
            Request::Batch(s) => s,
            Request::Rpc(c) => match &c.params[..] {
                [stmt, _, p1] => format!(
                    "{} {:?}",
                    match &stmt.value {
                        Value::Str(s) => s.clone(),
                        _ => String::new(),
                    },
                    p1.value
                ),
                _ => String::new(),
            },
        };
        let cols = vec![
            Column::new("n", ColType::Int),
            Column::new("s", ColType::NVarChar(4000)),
        ];
        match sql.trim() {
            "hang" => std::future::pending().await,
            "types" => Reply::Tokens(vec![
                Output::Rows {
                    columns: vec![
                        Column::new("i", ColType::Int),
                        Column::new("b", ColType::BigInt),
                        Column::new("f", ColType::Bit),
                        Column::new("d", ColType::DateTime),
                        Column::new("s", ColType::NVarChar(10)),
                    ],
                    rows: vec![
                        vec![
                            Value::Int(-7),
                            Value::Int(1 << 40),
                            Value::Bit(true),
                            // 2000-01-01 12:00:00 = 36524 days after 1900-01-01, 300 ticks/s
                            Value::DateTime(36524, 12 * 3600 * 300),
                            Value::Str("日本".into()),
                        ],
                        vec![
                            Value::Null,
                            Value::Null,
                            Value::Null,
                            Value::Null,
                            Value::Null,
                        ],
                    ],
                },
                Output::Done {
                    rows: Some(2),
                    error: false,
                },
            ]),
            "big" => Reply::Tokens(vec![
                Output::Rows {
                    columns: cols,
                    rows: (0..2000)
                        .map(|i| {
                            vec![
                                Value::Int(i),
                                Value::Str(format!("row {i} {}", "x".repeat(100))),
                            ]
                        })
                        .collect(),
                },
                Output::Done {
                    rows: Some(2000),
                    error: false,
                },
            ]),
            "err" => Reply::Tokens(vec![
                Output::Message(SqlMessage::new(208, 16, 1, "Invalid object name 'nope'.")),
                Output::Done {
                    rows: None,
                    error: true,
                },
            ]),
            s => Reply::Tokens(vec![
                Output::Rows {
                    columns: cols,
                    rows: vec![vec![Value::Int(s.len() as i64), Value::Str(s.to_string())]],
                },
                Output::Done {
                    rows: Some(1),
                    error: false,
                },
            ]),
        }
    }
}

async fn start() -> (u16, watch::Sender<bool>) {
    let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(run_listener(Arc::new(Toy), l, rx));
    (port, tx)
}

#[tokio::test]
async fn tiberius_login_batch_rpc_errors_and_large_results() {
    let (port, _stop) = start().await;
    let mut c = tiberius_connect(port, "sa", common::PASSWORD, None)
        .await
        .unwrap();
    let row = c
        .simple_query("hello")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<&str, _>(1), Some("hello"));
    assert_eq!(row.get::<i32, _>(0), Some(5));
    let row = c
        .query("q", &[&7i32])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<&str, _>(1), Some("q Int(7)"));
    let long = "y".repeat(20_000);
    let row = c
        .simple_query(long.clone())
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.get::<&str, _>(1).map(str::len),
        Some(4000),
        "nvarchar(4000) column truncates"
    );
    let rows = c
        .simple_query("big")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2000);
    assert_eq!(rows[1999].get::<i32, _>(0), Some(1999));
    let e = match c.simple_query("err").await {
        Ok(s) => s.into_results().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(common::server_error(e), (208, 16));
    // The connection is still usable after an error.
    assert!(
        c.simple_query("again")
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap()
            .is_some()
    );

    let bad = tiberius_connect(port, "sa", "wrong", None)
        .await
        .unwrap_err();
    assert_eq!(common::server_error(bad), (18456, 14));
}

#[tokio::test]
async fn attention_cancels_a_hanging_request() {
    let (port, _stop) = start().await;
    let mut c = tiberius_connect(port, "sa", common::PASSWORD, None)
        .await
        .unwrap();
    // tiberius cannot send an attention on demand: speak raw TDS for it.
    drop(
        c.simple_query("x")
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap(),
    );
    let mut raw = common::RawClient::login(port, "sa", common::PASSWORD).await;
    raw.send(0x01, &common::batch_payload("hang")).await;
    raw.send(0x06, &[]).await;
    let reply = raw.recv().await;
    assert_eq!(
        &reply[..3],
        &[0xFD, 0x20, 0x00],
        "DONE with DONE_ATTN: {reply:02X?}"
    );
    // The session is usable after the cancel.
    raw.send(0x01, &common::batch_payload("ok")).await;
    let reply = raw.recv().await;
    assert_eq!(reply[0], 0x81, "COLMETADATA");
}

#[tokio::test]
async fn freetds_tsql_logs_in_and_queries() {
    let (port, _stop) = start().await;
    let out = tsql(port, "sa", common::PASSWORD, "hello\ngo\nerr\ngo\n").await;
    assert!(out.contains("hello"), "{out}");
    assert!(out.contains("Msg 208 (severity 16, state 1)"), "{out}");
    let out = tsql(port, "sa", "wrong", "hello\ngo\n").await;
    assert!(out.contains("Login failed for user 'sa'"), "{out}");
}

#[tokio::test]
async fn every_column_type_decodes_in_tiberius() {
    let (port, _stop) = start().await;
    let mut c = tiberius_connect(port, "sa", common::PASSWORD, None)
        .await
        .unwrap();
    let rows = c
        .simple_query("types")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows[0].get::<i32, _>(0), Some(-7));
    assert_eq!(rows[0].get::<i64, _>(1), Some(1 << 40));
    assert_eq!(rows[0].get::<bool, _>(2), Some(true));
    match rows[0].cells().nth(3).unwrap().1 {
        tiberius::ColumnData::DateTime(Some(dt)) => {
            assert_eq!(
                (dt.days(), dt.seconds_fragments()),
                (36524, 12 * 3600 * 300)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rows[0].get::<&str, _>(4), Some("日本"));
    assert!(
        rows[1]
            .cells()
            .all(|(_, v)| format!("{v:?}").contains("None")),
        "NULLs: {:?}",
        rows[1]
    );
}
