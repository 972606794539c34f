//! TDS packet framing: the 8-byte header and messages spanning several packets.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Packet type: SQL batch.
pub const SQL_BATCH: u8 = 0x01;
/// Packet type: RPC request.
pub const RPC: u8 = 0x03;
/// Packet type: tabular result (every server reply, including the PRELOGIN reply).
pub const TABULAR_RESULT: u8 = 0x04;
/// Packet type: attention (cancel).
pub const ATTENTION: u8 = 0x06;
/// Packet type: LOGIN7.
pub const LOGIN7: u8 = 0x10;
/// Packet type: PRELOGIN.
pub const PRELOGIN: u8 = 0x12;

/// Status bit: last packet of the message.
const STATUS_EOM: u8 = 0x01;
/// The header length.
pub const HEADER_LEN: usize = 8;
/// The largest packet size a client may negotiate.
pub const MAX_PACKET_SIZE: usize = 32767;
/// The largest message the simulator accepts (requests are small; this bounds memory).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// One complete client message (the payloads of all its packets concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The packet type of the message.
    pub ty: u8,
    /// The payload.
    pub data: Vec<u8>,
}

/// Reads one whole message; `Ok(None)` on a clean EOF before any byte of it.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Message>> {
    let mut data = Vec::new();
    let mut ty = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if ty.is_none() {
            // Distinguish a clean close from a truncated header.
            let n = r.read(&mut header[..1]).await?;
            if n == 0 {
                return Ok(None);
            }
            r.read_exact(&mut header[1..]).await?;
        } else {
            r.read_exact(&mut header).await?;
        }
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if !(HEADER_LEN..=MAX_PACKET_SIZE + HEADER_LEN).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad TDS packet length {len}"),
            ));
        }
        match ty {
            None => ty = Some(header[0]),
            Some(t) if t != header[0] => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "packet type changed inside a message",
                ));
            }
            Some(_) => {}
        }
        let start = data.len();
        data.resize(start + len - HEADER_LEN, 0);
        r.read_exact(&mut data[start..]).await?;
        if data.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TDS message too large",
            ));
        }
        if header[1] & STATUS_EOM != 0 {
            return Ok(Some(Message {
                ty: header[0],
                data,
            }));
        }
    }
}

/// Splits `payload` into packets of at most `packet_size` bytes (header included).
pub fn packetize(ty: u8, payload: &[u8], packet_size: usize, spid: u16) -> Vec<u8> {
    let chunk = packet_size.clamp(512, MAX_PACKET_SIZE) - HEADER_LEN;
    let mut out = Vec::with_capacity(payload.len() + (payload.len() / chunk + 1) * HEADER_LEN);
    let mut chunks = payload.chunks(chunk).peekable();
    let mut id: u8 = 1;
    if payload.is_empty() {
        push_header(&mut out, ty, STATUS_EOM, HEADER_LEN, spid, id);
        return out;
    }
    while let Some(c) = chunks.next() {
        let status = if chunks.peek().is_none() {
            STATUS_EOM
        } else {
            0
        };
        push_header(&mut out, ty, status, c.len() + HEADER_LEN, spid, id);
        out.extend_from_slice(c);
        id = id.wrapping_add(1);
    }
    out
}

fn push_header(out: &mut Vec<u8>, ty: u8, status: u8, len: usize, spid: u16, id: u8) {
    out.push(ty);
    out.push(status);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&spid.to_be_bytes());
    out.push(id);
    out.push(0);
}

/// Writes `payload` as a reply message of type 0x04 split into packets.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
    packet_size: usize,
    spid: u16,
) -> io::Result<()> {
    w.write_all(&packetize(TABULAR_RESULT, payload, packet_size, spid))
        .await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multi_packet_round_trip() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let bytes = packetize(SQL_BATCH, &payload, 512, 7);
        // 5000 / 504 -> 10 packets
        assert_eq!(bytes.len(), payload.len() + 10 * HEADER_LEN);
        assert_eq!(bytes[1], 0, "first packet is not the last");
        let mut r = &bytes[..];
        let m = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(m.ty, SQL_BATCH);
        assert_eq!(m.data, payload);
        assert!(read_message(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_bad_length() {
        let bytes = [0x01u8, 0x01, 0x00, 0x03, 0, 0, 1, 0];
        let mut r = &bytes[..];
        assert!(read_message(&mut r).await.is_err());
    }
}

#[cfg(test)]
mod reply_tests {
    use super::*;

    #[test]
    fn replies_use_packet_type_4_even_for_prelogin() {
        let bytes = packetize(
            TABULAR_RESULT,
            &crate::tds::login::prelogin_reply(crate::tds::login::ENCRYPT_NOT_SUP),
            4096,
            0,
        );
        assert_eq!((bytes[0], bytes[1]), (0x04, 0x01));
        assert_eq!(
            u16::from_be_bytes([bytes[2], bytes[3]]) as usize,
            bytes.len()
        );
    }
}
