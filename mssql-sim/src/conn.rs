//! One client connection: PRELOGIN, LOGIN7, then requests until the client leaves.

use crate::service::{LoginAccepted, LoginRefused, Reply, Request, Service, Session, SqlMessage};
use crate::tds::login::{SERVER_VERSION, parse_login7, prelogin_reply};
use crate::tds::packet::{self, Message, read_message, write_reply};
use crate::tds::request::{parse_batch, parse_rpc};
use crate::tds::token::{DONE_ATTN, DONE_ERROR, TokenWriter};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// The packet size used until LOGIN7 negotiates another.
const DEFAULT_PACKET_SIZE: usize = 4096;

/// Serves one connection to completion. Errors end the connection silently (logged).
pub async fn serve_connection<S: Service>(stream: TcpStream, service: Arc<S>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (mut rd, mut wr) = stream.into_split();
    // A dedicated reader keeps reads cancel-safe while a request runs (attention detection).
    let (tx, mut rx) = mpsc::channel::<Message>(8);
    let reader = tokio::spawn(async move {
        while let Ok(Some(m)) = read_message(&mut rd).await {
            if tx.send(m).await.is_err() {
                break;
            }
        }
    });
    if let Err(e) = run(&mut rx, &mut wr, &*service).await {
        tracing::debug!(?peer, error = %e, "connection ended with an error");
    }
    reader.abort();
    let _ = wr.shutdown().await;
}

async fn run<S: Service>(
    rx: &mut mpsc::Receiver<Message>,
    wr: &mut OwnedWriteHalf,
    service: &S,
) -> std::io::Result<()> {
    let mut msg = match rx.recv().await {
        Some(m) => m,
        None => return Ok(()),
    };
    if msg.ty == packet::PRELOGIN {
        write_reply(wr, &prelogin_reply(), DEFAULT_PACKET_SIZE, 0).await?;
        msg = match rx.recv().await {
            Some(m) => m,
            None => return Ok(()),
        };
    }
    if msg.ty != packet::LOGIN7 {
        return Err(std::io::Error::other(format!(
            "expected LOGIN7, got packet type 0x{:02X}",
            msg.ty
        )));
    }
    let login = parse_login7(&msg.data).map_err(std::io::Error::other)?;
    let requested_size = login.packet_size;
    let user = login.user.clone();
    // A login that hangs (injected fault) ends when the client gives up and closes.
    let outcome = tokio::select! {
        r = service.login(login) => r,
        _ = until_closed(rx) => return Ok(()),
    };
    let (mut session, LoginAccepted { database, spid }) = match outcome {
        Ok(ok) => ok,
        Err(LoginRefused::Disconnect) => return Ok(()),
        Err(LoginRefused::Error(e)) => {
            tracing::info!(user = %user, number = e.number, "login refused");
            let mut t = TokenWriter::new();
            t.message(&e);
            t.done(DONE_ERROR, 0);
            write_reply(wr, &t.buf, DEFAULT_PACKET_SIZE, 0).await?;
            return Ok(());
        }
    };
    let packet_size = match requested_size {
        0 => DEFAULT_PACKET_SIZE,
        n => (n as usize).clamp(512, packet::MAX_PACKET_SIZE),
    };
    let mut t = TokenWriter::new();
    t.env_string(1, &database, "master");
    t.message(&SqlMessage::new(
        5701,
        0,
        2,
        format!("Changed database context to '{database}'."),
    ));
    t.env_string(2, "us_english", "");
    t.message(&SqlMessage::new(
        5703,
        0,
        1,
        "Changed language setting to us_english.",
    ));
    t.env_collation();
    t.login_ack(SERVER_VERSION);
    t.env_string(
        4,
        &packet_size.to_string(),
        &DEFAULT_PACKET_SIZE.to_string(),
    );
    t.done(0, 0);
    write_reply(wr, &t.buf, DEFAULT_PACKET_SIZE, spid).await?;

    loop {
        let Some(msg) = rx.recv().await else {
            return Ok(());
        };
        if !service.is_up() {
            return Ok(());
        }
        let (request, rpc) = match msg.ty {
            packet::SQL_BATCH => match parse_batch(&msg.data) {
                Ok(sql) => (Request::Batch(sql), false),
                Err(e) => {
                    send_error(
                        wr,
                        &SqlMessage::new(e.number, 16, 1, e.to_string()),
                        packet_size,
                        spid,
                    )
                    .await?;
                    continue;
                }
            },
            packet::RPC => match parse_rpc(&msg.data) {
                Ok(call) => (Request::Rpc(call), true),
                Err(e) => {
                    send_error(
                        wr,
                        &SqlMessage::new(e.number, 16, 1, e.to_string()),
                        packet_size,
                        spid,
                    )
                    .await?;
                    continue;
                }
            },
            packet::ATTENTION => {
                // Nothing running: acknowledge at once.
                let mut t = TokenWriter::new();
                t.done(DONE_ATTN, 0);
                write_reply(wr, &t.buf, packet_size, spid).await?;
                continue;
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "unexpected packet type 0x{other:02X}"
                )));
            }
        };
        tracing::trace!(?request, "request");
        let outcome = {
            let fut = session.execute(request);
            tokio::select! {
                reply = fut => Some(reply),
                m = rx.recv() => match m {
                    Some(m) if m.ty == packet::ATTENTION => None,
                    Some(m) => return Err(std::io::Error::other(format!("packet type 0x{:02X} while a request runs", m.ty))),
                    None => return Ok(()),
                },
            }
        };
        match outcome {
            Some(Reply::Tokens(outputs)) => {
                let mut t = TokenWriter::new();
                t.reply(&outputs, rpc);
                write_reply(wr, &t.buf, packet_size, spid).await?;
            }
            Some(Reply::Disconnect) => return Ok(()),
            None => {
                let mut t = TokenWriter::new();
                t.done(DONE_ATTN, 0);
                write_reply(wr, &t.buf, packet_size, spid).await?;
            }
        }
    }
}

async fn send_error(
    wr: &mut OwnedWriteHalf,
    m: &SqlMessage,
    packet_size: usize,
    spid: u16,
) -> std::io::Result<()> {
    let mut t = TokenWriter::new();
    t.message(m);
    t.done(DONE_ERROR, 0);
    write_reply(wr, &t.buf, packet_size, spid).await
}

/// Resolves when the client has closed its side (messages meanwhile are ignored).
async fn until_closed(rx: &mut mpsc::Receiver<Message>) {
    while rx.recv().await.is_some() {}
}
