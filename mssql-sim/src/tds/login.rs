//! PRELOGIN and LOGIN7.

use crate::service::LoginRequest;

/// PRELOGIN option: version.
const OPT_VERSION: u8 = 0x00;
/// PRELOGIN option: encryption.
const OPT_ENCRYPTION: u8 = 0x01;
/// PRELOGIN option: instance name.
const OPT_INSTOPT: u8 = 0x02;
/// PRELOGIN option: thread id.
const OPT_THREADID: u8 = 0x03;
/// PRELOGIN option: MARS.
const OPT_MARS: u8 = 0x04;
/// ENCRYPT_OFF: "Encryption is available but off" (MS-TDS 2.2.6.5).
pub const ENCRYPT_OFF: u8 = 0x00;
/// ENCRYPT_ON: "Encryption is available and on".
pub const ENCRYPT_ON: u8 = 0x01;
/// ENCRYPT_NOT_SUP: "Encryption is not available" (the simulator without a certificate).
pub const ENCRYPT_NOT_SUP: u8 = 0x02;
/// ENCRYPT_REQ: "Encryption is required".
pub const ENCRYPT_REQ: u8 = 0x03;

/// The product version the simulator reports: 15.0.2000 (SQL Server 2019).
pub const SERVER_VERSION: [u8; 4] = [0x0F, 0x00, 0x07, 0xD0];

/// Reads the client's ENCRYPTION option from a PRELOGIN payload, if present.
pub fn client_encryption(prelogin: &[u8]) -> Option<u8> {
    let mut i = 0;
    while i + 5 <= prelogin.len() && prelogin[i] != 0xFF {
        let opt = prelogin[i];
        let off = u16::from_be_bytes([prelogin[i + 1], prelogin[i + 2]]) as usize;
        let len = u16::from_be_bytes([prelogin[i + 3], prelogin[i + 4]]) as usize;
        if opt == OPT_ENCRYPTION && len >= 1 {
            return prelogin.get(off).copied();
        }
        i += 5;
    }
    None
}

/// The PRELOGIN reply payload (sent in a packet of type 0x04): VERSION, ENCRYPTION =
/// `encryption` (see [`crate::tds::tls::negotiate`]), INSTOPT, THREADID, MARS, terminator.
pub fn prelogin_reply(encryption: u8) -> Vec<u8> {
    let options: [(u8, Vec<u8>); 5] = [
        (
            OPT_VERSION,
            vec![
                SERVER_VERSION[0],
                SERVER_VERSION[1],
                SERVER_VERSION[2],
                SERVER_VERSION[3],
                0,
                0,
            ],
        ),
        (OPT_ENCRYPTION, vec![encryption]),
        (OPT_INSTOPT, vec![0]),
        (OPT_THREADID, vec![]),
        (OPT_MARS, vec![0]),
    ];
    let header_len = options.len() * 5 + 1;
    let mut head = Vec::with_capacity(header_len);
    let mut body = Vec::new();
    for (opt, data) in &options {
        head.push(*opt);
        head.extend_from_slice(&((header_len + body.len()) as u16).to_be_bytes());
        head.extend_from_slice(&(data.len() as u16).to_be_bytes());
        body.extend_from_slice(data);
    }
    head.push(0xFF);
    head.extend_from_slice(&body);
    head
}

/// A LOGIN7 record that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("malformed LOGIN7: {0}")]
pub struct LoginParseError(&'static str);

fn u32_at(b: &[u8], at: usize) -> Result<u32, LoginParseError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(LoginParseError("truncated fixed part"))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, LoginParseError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(LoginParseError("truncated fixed part"))
}

/// Decodes UTF-16LE bytes (lossy for unpaired surrogates).
pub fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Reverses the LOGIN7 password obfuscation (XOR 0xA5, then swap nibbles).
fn deobfuscate(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect()
}

/// Parses a LOGIN7 payload.
pub fn parse_login7(b: &[u8]) -> Result<LoginRequest, LoginParseError> {
    let tds_version = u32_at(b, 4)?;
    let packet_size = u32_at(b, 8)?;
    let field = |at: usize| -> Result<&[u8], LoginParseError> {
        let off = u16_at(b, at)? as usize;
        let cch = u16_at(b, at + 2)? as usize;
        b.get(off..off + cch * 2)
            .ok_or(LoginParseError("field outside the record"))
    };
    Ok(LoginRequest {
        host_name: utf16le(field(36)?),
        user: utf16le(field(40)?),
        password: utf16le(&deobfuscate(field(44)?)),
        app_name: utf16le(field(48)?),
        database: utf16le(field(68)?),
        packet_size,
        tds_version,
        integrated: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obfuscate(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .map(|b| b.rotate_left(4) ^ 0xA5)
            .collect()
    }

    #[test]
    fn password_round_trip() {
        assert_eq!(utf16le(&deobfuscate(&obfuscate("pä$$w0rd"))), "pä$$w0rd");
    }

    #[test]
    fn prelogin_reply_offsets() {
        let r = prelogin_reply(ENCRYPT_NOT_SUP);
        assert_eq!(r[0], OPT_VERSION);
        assert_eq!(client_encryption(&r), Some(ENCRYPT_NOT_SUP));
        assert_eq!(
            client_encryption(&prelogin_reply(ENCRYPT_REQ)),
            Some(ENCRYPT_REQ)
        );
        assert_eq!(*r.last().unwrap(), 0, "MARS off is the last byte");
    }

    #[test]
    fn parses_fields() {
        let mut b = vec![0u8; 94];
        let mut data = Vec::new();
        let fields: [(usize, Vec<u8>); 5] = [
            (
                36,
                "host"
                    .encode_utf16()
                    .flat_map(|u| u.to_le_bytes())
                    .collect(),
            ),
            (
                40,
                "sa".encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
            ),
            (44, obfuscate("secret")),
            (
                48,
                "app".encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
            ),
            (
                68,
                "xds".encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
            ),
        ];
        for (at, bytes) in fields {
            let off = 94 + data.len();
            b[at..at + 2].copy_from_slice(&(off as u16).to_le_bytes());
            b[at + 2..at + 4].copy_from_slice(&((bytes.len() / 2) as u16).to_le_bytes());
            data.extend_from_slice(&bytes);
        }
        b[8..12].copy_from_slice(&8192u32.to_le_bytes());
        b.extend_from_slice(&data);
        let l = parse_login7(&b).unwrap();
        assert_eq!(
            (l.user.as_str(), l.password.as_str(), l.database.as_str()),
            ("sa", "secret", "xds")
        );
        assert_eq!(
            (l.app_name.as_str(), l.host_name.as_str(), l.packet_size),
            ("app", "host", 8192)
        );
        assert!(!format!("{l:?}").contains("secret"));
        assert!(parse_login7(&b[..50]).is_err());
    }
}
