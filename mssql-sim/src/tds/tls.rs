//! TLS the way SQL Server speaks it over TDS 7.x (MS-TDS 2.2.6.5 PRELOGIN, 3.3.5.1–3.3.5.3):
//! the ENCRYPTION option of PRELOGIN decides whether and how long the session is encrypted,
//! the TLS handshake then travels inside PRELOGIN (0x12) packets, and once it is complete TLS
//! records flow on the raw TCP stream with the TDS packets inside them.

use super::login::{ENCRYPT_NOT_SUP, ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_REQ};
use super::packet::{HEADER_LEN, MAX_PACKET_SIZE, PRELOGIN, packetize};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The server's encryption setting: the columns of the MS-TDS 2.2.6.5 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSetting {
    /// No certificate: "server is set to ENCRYPT_NOT_SUP".
    NotSupported,
    /// A certificate, encryption not forced: "server is set to ENCRYPT_OFF".
    Off,
    /// Force Encryption: "server is set to ENCRYPT_ON".
    On,
}

/// What the PRELOGIN exchange leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// No TLS at all (either side sent ENCRYPT_NOT_SUP, or the server has no certificate).
    Plaintext,
    /// ENCRYPT_OFF on both sides: "Encrypt login packet only"; plaintext after LOGIN7.
    LoginOnly,
    /// "Encrypt entire connection".
    Full,
    /// The server requires encryption that the client said it does not support:
    /// "ENCRYPT_REQ (connection terminated)" unless the client encrypts anyway.
    Required,
}

/// The server's PRELOGIN ENCRYPTION reply and the outcome, for the client's value (`None`:
/// the client sent no ENCRYPTION option, treated as ENCRYPT_NOT_SUP).
///
/// MS-TDS 2.2.6.5, "the server responds with an ENCRYPTION value in the response according
/// to the following table" (server setting OFF / ON / NOT_SUP):
///
/// | client \ server | ENCRYPT_OFF | ENCRYPT_ON | ENCRYPT_NOT_SUP |
/// |---|---|---|---|
/// | ENCRYPT_OFF | ENCRYPT_OFF | ENCRYPT_REQ | ENCRYPT_NOT_SUP |
/// | ENCRYPT_ON | ENCRYPT_ON | ENCRYPT_ON | ENCRYPT_NOT_SUP (connection terminated) |
/// | ENCRYPT_NOT_SUP | ENCRYPT_NOT_SUP | ENCRYPT_REQ (connection terminated) | ENCRYPT_NOT_SUP |
/// | ENCRYPT_REQ | ENCRYPT_ON | ENCRYPT_ON | ENCRYPT_NOT_SUP (connection terminated) |
///
/// and the client then behaves as: server OFF with client OFF → "Encrypt login packet only";
/// server ON or REQ → "Encrypt entire connection"; server NOT_SUP → "No encryption".
/// A client that asked for encryption from a server without a certificate terminates the
/// connection itself; if it goes on in plaintext the simulator serves it (as before TLS).
/// The client-certificate values (0x80…) are not supported and treated by their low bits.
pub fn negotiate(client: Option<u8>, server: ServerSetting) -> (u8, Negotiated) {
    let client = client.map(|c| c & 0x7F).unwrap_or(ENCRYPT_NOT_SUP);
    match server {
        ServerSetting::NotSupported => (ENCRYPT_NOT_SUP, Negotiated::Plaintext),
        ServerSetting::Off => match client {
            ENCRYPT_OFF => (ENCRYPT_OFF, Negotiated::LoginOnly),
            ENCRYPT_ON | ENCRYPT_REQ => (ENCRYPT_ON, Negotiated::Full),
            _ => (ENCRYPT_NOT_SUP, Negotiated::Plaintext),
        },
        ServerSetting::On => match client {
            ENCRYPT_OFF => (ENCRYPT_REQ, Negotiated::Full),
            ENCRYPT_ON | ENCRYPT_REQ => (ENCRYPT_ON, Negotiated::Full),
            _ => (ENCRYPT_REQ, Negotiated::Required),
        },
    }
}

/// The largest PRELOGIN packet the server sends during the handshake (the default TDS packet
/// size: the packet size is only negotiated later, in LOGIN7).
const HANDSHAKE_PACKET: usize = 4096;

/// A transport that carries TLS handshake records inside TDS PRELOGIN packets while
/// [`PreloginFramed::handshake_complete`] has not been called, and passes bytes through
/// unchanged afterwards (MS-TDS 2.2.6.5: "this message stream is also used to wrap the SSL
/// handshake payload … the packet data is simply the raw bytes of the SSL handshake payload").
///
/// Reading: each PRELOGIN packet's header is consumed and only its payload is handed to TLS;
/// reads never go past the current packet, so nothing sent after the handshake is consumed
/// early. Writing: what TLS writes is buffered and sent on flush as one PRELOGIN message
/// (packets of at most 4096 bytes, the last one with END OF MESSAGE), one message per flight,
/// as SQL Server does and as clients that read one message per flight (python-tds) expect.
#[derive(Debug)]
pub struct PreloginFramed<S> {
    inner: S,
    handshake: bool,
    header: [u8; HEADER_LEN],
    header_pos: usize,
    remaining: usize,
    pending: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> PreloginFramed<S> {
    /// Wraps `inner` in handshake mode.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            handshake: true,
            header: [0; HEADER_LEN],
            header_pos: 0,
            remaining: 0,
            pending: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// Switches to pass-through: from now on TLS records go directly on the stream.
    pub fn handshake_complete(&mut self) {
        self.handshake = false;
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginFramed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.handshake {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        while this.remaining == 0 {
            while this.header_pos < HEADER_LEN {
                let mut rb = ReadBuf::new(&mut this.header[this.header_pos..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    return if this.header_pos == 0 {
                        Poll::Ready(Ok(())) // clean EOF between packets
                    } else {
                        Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                this.header_pos += n;
            }
            this.header_pos = 0;
            if this.header[0] != PRELOGIN {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected a PRELOGIN (0x12) packet carrying the TLS handshake, got packet type 0x{:02X}",
                        this.header[0]
                    ),
                )));
            }
            let len = u16::from_be_bytes([this.header[2], this.header[3]]) as usize;
            if !(HEADER_LEN..=MAX_PACKET_SIZE + HEADER_LEN).contains(&len) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad TDS packet length {len}"),
                )));
            }
            this.remaining = len - HEADER_LEN;
        }
        let want = this.remaining.min(buf.remaining());
        let mut rb = ReadBuf::new(buf.initialize_unfilled_to(want));
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 && want > 0 {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.advance(n);
        this.remaining -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> PreloginFramed<S> {
    /// Writes out every framed byte not yet written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginFramed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.handshake {
            this.pending.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() && this.out.is_empty() {
            this.out = packetize(PRELOGIN, &this.pending, HANDSHAKE_PACKET, 0);
            this.pending.clear();
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn negotiation_follows_the_ms_tds_table() {
        use Negotiated::*;
        use ServerSetting as S;
        let cases = [
            // (client, server setting) -> (reply, outcome)
            (ENCRYPT_OFF, S::Off, ENCRYPT_OFF, LoginOnly),
            (ENCRYPT_OFF, S::On, ENCRYPT_REQ, Full),
            (ENCRYPT_OFF, S::NotSupported, ENCRYPT_NOT_SUP, Plaintext),
            (ENCRYPT_ON, S::Off, ENCRYPT_ON, Full),
            (ENCRYPT_ON, S::On, ENCRYPT_ON, Full),
            (ENCRYPT_ON, S::NotSupported, ENCRYPT_NOT_SUP, Plaintext),
            (ENCRYPT_NOT_SUP, S::Off, ENCRYPT_NOT_SUP, Plaintext),
            (ENCRYPT_NOT_SUP, S::On, ENCRYPT_REQ, Required),
            (ENCRYPT_NOT_SUP, S::NotSupported, ENCRYPT_NOT_SUP, Plaintext),
            (ENCRYPT_REQ, S::Off, ENCRYPT_ON, Full),
            (ENCRYPT_REQ, S::On, ENCRYPT_ON, Full),
            (ENCRYPT_REQ, S::NotSupported, ENCRYPT_NOT_SUP, Plaintext),
        ];
        for (client, server, reply, outcome) in cases {
            assert_eq!(
                negotiate(Some(client), server),
                (reply, outcome),
                "client {client} server {server:?}"
            );
        }
        assert_eq!(negotiate(None, S::On), (ENCRYPT_REQ, Required));
        assert_eq!(negotiate(None, S::Off), (ENCRYPT_NOT_SUP, Plaintext));
    }

    #[tokio::test]
    async fn frames_handshake_bytes_in_prelogin_packets_then_passes_through() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut f = PreloginFramed::new(a);
        // write: one flight of 5000 bytes -> two PRELOGIN packets, EOM on the second
        let flight: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        f.write_all(&flight).await.unwrap();
        f.flush().await.unwrap();
        let mut got = vec![0u8; 5000 + 2 * HEADER_LEN];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!((got[0], got[1]), (PRELOGIN, 0));
        assert_eq!(u16::from_be_bytes([got[2], got[3]]), 4096);
        assert_eq!((got[4096], got[4097]), (PRELOGIN, 1));
        let payload: Vec<u8> = got[8..4096]
            .iter()
            .chain(&got[4096 + 8..])
            .copied()
            .collect();
        assert_eq!(payload, flight);

        // read: the payload of a PRELOGIN packet, never past it
        b.write_all(&packetize(PRELOGIN, b"hello", 4096, 0))
            .await
            .unwrap();
        b.write_all(b"raw-after").await.unwrap();
        let mut buf = [0u8; 64];
        let n = f.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        f.handshake_complete();
        let mut rest = [0u8; 9];
        f.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"raw-after");

        // a packet of another type during the handshake is an error, not a hang
        let (a, mut b) = tokio::io::duplex(1024);
        let mut f = PreloginFramed::new(a);
        b.write_all(&packetize(0x10, b"login", 4096, 0))
            .await
            .unwrap();
        let e = f.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
