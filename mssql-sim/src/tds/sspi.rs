//! Integrated security on the wire: the LOGIN7 fIntSecurity flag and SSPI data, the SSPI
//! message (packet type 0x11) and the SSPI token (0xED).

/// Packet type of an SSPI message: a further leg of the client's authentication
/// (MS-TDS 2.2.3.1.1 "Type", 2.2.6.8 "SSPI Message").
pub const SSPI_MESSAGE: u8 = 0x11;
/// The SSPI token the server answers with (MS-TDS 2.2.7.22 "SSPI": `TokenType` 0xED,
/// `USHORT` length, then the security blob).
pub const SSPI_TOKEN: u8 = 0xED;

/// Offset of `OptionFlags2` in the LOGIN7 fixed part (MS-TDS 2.2.6.4: after Length,
/// TDSVersion, PacketSize, ClientProgVer, ClientPID, ConnectionID and OptionFlags1).
const OPTION_FLAGS2: usize = 25;
/// `fIntSecurity` in `OptionFlags2`: "1 = Integrated security (Windows authentication) is
/// used" (MS-TDS 2.2.6.4).
const F_INT_SECURITY: u8 = 0x80;
/// `ibSSPI` / `cbSSPI` in the offset table (MS-TDS 2.2.6.4; after ClientID).
const IB_SSPI: usize = 78;
/// `cbSSPILong` (TDS 7.2+): the length when `cbSSPI` is `USHRT_MAX` (MS-TDS 2.2.6.4).
const CB_SSPI_LONG: usize = 90;

/// Whether a LOGIN7 payload asks for integrated security (`fIntSecurity`).
pub fn integrated(login7: &[u8]) -> bool {
    login7
        .get(OPTION_FLAGS2)
        .is_some_and(|f| f & F_INT_SECURITY != 0)
}

/// The SSPI data a LOGIN7 payload carries (`ibSSPI`/`cbSSPI`, or `cbSSPILong` when `cbSSPI`
/// is 0xFFFF; MS-TDS 2.2.6.4), or `None` when it is absent or outside the record.
pub fn login_token(login7: &[u8]) -> Option<&[u8]> {
    let u16_at = |at: usize| {
        login7
            .get(at..at + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let off = u16_at(IB_SSPI)?;
    let mut len = u16_at(IB_SSPI + 2)?;
    if len == 0xFFFF {
        let s = login7.get(CB_SSPI_LONG..CB_SSPI_LONG + 4)?;
        len = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
    }
    if len == 0 {
        return None;
    }
    login7.get(off..off.checked_add(len)?)
}

/// Appends an SSPI token (0xED) carrying `blob` to a token stream (MS-TDS 2.2.7.22).
/// Blobs longer than 65535 bytes cannot be sent in one token; Kerberos tokens are far
/// shorter, so they are refused rather than split.
pub fn push_token(buf: &mut Vec<u8>, blob: &[u8]) -> Result<(), BlobTooLong> {
    let len = u16::try_from(blob.len()).map_err(|_| BlobTooLong(blob.len()))?;
    buf.push(SSPI_TOKEN);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(blob);
    Ok(())
}

/// A security blob too long for one SSPI token.
#[derive(Debug, thiserror::Error)]
#[error("an SSPI blob of {0} bytes does not fit one SSPI token (65535 at most)")]
pub struct BlobTooLong(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn login7(flags2: u8, sspi: &[u8], long: bool) -> Vec<u8> {
        let mut b = vec![0u8; 94];
        b[OPTION_FLAGS2] = flags2;
        b[IB_SSPI..IB_SSPI + 2].copy_from_slice(&94u16.to_le_bytes());
        if long {
            b[IB_SSPI + 2..IB_SSPI + 4].copy_from_slice(&0xFFFFu16.to_le_bytes());
            b[CB_SSPI_LONG..CB_SSPI_LONG + 4].copy_from_slice(&(sspi.len() as u32).to_le_bytes());
        } else {
            b[IB_SSPI + 2..IB_SSPI + 4].copy_from_slice(&(sspi.len() as u16).to_le_bytes());
        }
        b.extend_from_slice(sspi);
        b
    }

    #[test]
    fn reads_the_flag_and_the_token() {
        let b = login7(0x80, b"krb5-token", false);
        assert!(integrated(&b));
        assert_eq!(login_token(&b), Some(&b"krb5-token"[..]));
        let b = login7(0x80, b"long-form", true);
        assert_eq!(login_token(&b), Some(&b"long-form"[..]));
        let b = login7(0x00, b"", false);
        assert!(!integrated(&b));
        assert_eq!(login_token(&b), None);
        // A length past the end of the record is no token, not a panic.
        let mut b = login7(0x80, b"abc", false);
        b.truncate(95);
        assert_eq!(login_token(&b), None);
        assert!(!integrated(&[0u8; 10]));
    }

    #[test]
    fn token_framing() {
        let mut buf = Vec::new();
        push_token(&mut buf, b"\x01\x02\x03").unwrap();
        assert_eq!(buf, [0xED, 3, 0, 1, 2, 3]);
        assert!(push_token(&mut buf, &vec![0; 70000]).is_err());
    }
}
