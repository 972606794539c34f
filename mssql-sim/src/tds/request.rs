//! Parsing of SQL batch and RPC request payloads.

use super::login::utf16le;
use crate::service::{RpcCall, RpcParam, Value};

/// A request payload the simulator cannot decode; answered with error 8016-style messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. {0}"
)]
pub struct RequestParseError(pub String);

fn err(s: impl Into<String>) -> RequestParseError {
    RequestParseError(s.into())
}

/// A byte cursor.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RequestParseError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| err("Unexpected end of data."))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, RequestParseError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RequestParseError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, RequestParseError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, RequestParseError> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }
    fn done(&self) -> bool {
        self.at >= self.b.len()
    }
}

/// Skips ALL_HEADERS (TDS 7.2+) when present.
fn skip_all_headers(c: &mut Cur<'_>) -> Result<(), RequestParseError> {
    if c.b.len() >= 4 {
        let total = u32::from_le_bytes([c.b[0], c.b[1], c.b[2], c.b[3]]) as usize;
        // ALL_HEADERS is 4 bytes of total length plus headers of >= 6 bytes each.
        if total >= 4 && total <= c.b.len() && (total == 4 || total >= 10) {
            let first_hdr = if total >= 10 {
                u32::from_le_bytes([c.b[4], c.b[5], c.b[6], c.b[7]]) as usize
            } else {
                0
            };
            if total == 4 || (first_hdr >= 6 && first_hdr <= total - 4) {
                c.take(total)?;
            }
        }
    }
    Ok(())
}

/// Decodes an SQL batch: ALL_HEADERS then UTF-16LE text.
pub fn parse_batch(data: &[u8]) -> Result<String, RequestParseError> {
    let mut c = Cur { b: data, at: 0 };
    skip_all_headers(&mut c)?;
    Ok(utf16le(&data[c.at..]))
}

/// The well-known procedure names for RPC ids.
fn proc_name(id: u16) -> Option<&'static str> {
    Some(match id {
        1 => "sp_cursor",
        2 => "sp_cursoropen",
        3 => "sp_cursorprepare",
        4 => "sp_cursorexecute",
        5 => "sp_cursorprepexec",
        6 => "sp_cursorunprepare",
        7 => "sp_cursorfetch",
        8 => "sp_cursoroption",
        9 => "sp_cursorclose",
        10 => "sp_executesql",
        11 => "sp_prepare",
        12 => "sp_execute",
        13 => "sp_prepexec",
        14 => "sp_prepexecrpc",
        15 => "sp_unprepare",
        _ => return None,
    })
}

/// Decodes an RPC request (the first call; batched calls after it are ignored).
pub fn parse_rpc(data: &[u8]) -> Result<RpcCall, RequestParseError> {
    let mut c = Cur { b: data, at: 0 };
    skip_all_headers(&mut c)?;
    let name_len = c.u16()?;
    let proc_name = if name_len == 0xFFFF {
        let id = c.u16()?;
        proc_name(id)
            .ok_or_else(|| err(format!("Unknown procedure id {id}.")))?
            .to_string()
    } else {
        utf16le(c.take(name_len as usize * 2)?)
    };
    let _flags = c.u16()?;
    let mut params = Vec::new();
    while !c.done() {
        if matches!(c.b[c.at], 0x80 | 0xFF | 0xFE) {
            break; // next batched RPC
        }
        let n = c.u8()? as usize;
        let name = utf16le(c.take(n * 2)?);
        let status = c.u8()?;
        let value = parse_typed_value(&mut c, params.len() + 1)?;
        params.push(RpcParam {
            name,
            output: status & 0x01 != 0,
            value,
        });
    }
    Ok(RpcCall { proc_name, params })
}

fn int_le(b: &[u8]) -> i64 {
    match b.len() {
        1 => b[0] as i64,
        2 => i16::from_le_bytes([b[0], b[1]]) as i64,
        4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        8 => i64::from_le_bytes(b.try_into().expect("8 bytes")),
        _ => 0,
    }
}

fn parse_typed_value(c: &mut Cur<'_>, ordinal: usize) -> Result<Value, RequestParseError> {
    let ty = c.u8()?;
    let bad = |what: &str| err(format!("Parameter {ordinal}: {what}."));
    match ty {
        0x1F => Ok(Value::Null),
        0x30 => Ok(Value::Int(c.u8()? as i64)),
        0x32 => Ok(Value::Bit(c.u8()? != 0)),
        0x34 => Ok(Value::Int(int_le(c.take(2)?))),
        0x38 => Ok(Value::Int(int_le(c.take(4)?))),
        0x7F => Ok(Value::Int(int_le(c.take(8)?))),
        0x26 | 0x68 => {
            let max = c.u8()?;
            if ty == 0x26 && !matches!(max, 1 | 2 | 4 | 8) {
                return Err(bad(
                    "Data type 0x26 has an invalid data length or metadata length",
                ));
            }
            let len = c.u8()? as usize;
            if len == 0 {
                return Ok(Value::Null);
            }
            if len > max as usize {
                return Err(bad("Data type has an invalid data length"));
            }
            let b = c.take(len)?;
            Ok(if ty == 0x68 {
                Value::Bit(b[0] != 0)
            } else {
                Value::Int(int_le(b))
            })
        }
        0xE7 | 0xEF | 0xA7 | 0xAF => {
            let max = c.u16()?;
            c.take(5)?; // collation
            let wide = matches!(ty, 0xE7 | 0xEF);
            let bytes = if max == 0xFFFF {
                let total = c.u64()?;
                if total == u64::MAX {
                    return Ok(Value::Null);
                }
                let mut v = Vec::new();
                loop {
                    let n = c.u32()? as usize;
                    if n == 0 {
                        break;
                    }
                    v.extend_from_slice(c.take(n)?);
                }
                v
            } else {
                let n = c.u16()?;
                if n == 0xFFFF {
                    return Ok(Value::Null);
                }
                c.take(n as usize)?.to_vec()
            };
            Ok(Value::Str(if wide {
                utf16le(&bytes)
            } else {
                bytes.iter().map(|&b| b as char).collect()
            }))
        }
        other => Err(bad(&format!(
            "Data type 0x{other:02X} is not supported by the simulator"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_headers() -> Vec<u8> {
        let mut v = 22u32.to_le_bytes().to_vec();
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&1u32.to_le_bytes());
        v
    }

    fn w(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn batch_with_and_without_headers() {
        let mut b = all_headers();
        b.extend(w("SELECT 1"));
        assert_eq!(parse_batch(&b).unwrap(), "SELECT 1");
        assert_eq!(parse_batch(&w("SELECT 1")).unwrap(), "SELECT 1");
    }

    #[test]
    fn executesql_with_plp_and_intn() {
        let mut b = all_headers();
        b.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0]);
        // @stmt as PLP nvarchar(max)
        b.push(0);
        b.push(0);
        b.extend_from_slice(&[0xE7, 0xFF, 0xFF, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&0xFFFF_FFFF_FFFF_FFFEu64.to_le_bytes());
        let s = w("SELECT @P1");
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(&s);
        b.extend_from_slice(&0u32.to_le_bytes());
        // @P1 int = 42
        let n = w("@P1");
        b.push(3);
        b.extend_from_slice(&n);
        b.push(0);
        b.extend_from_slice(&[0x26, 4, 4, 42, 0, 0, 0]);
        // @P2 NULL
        b.push(0);
        b.push(0);
        b.push(0x1F);
        let call = parse_rpc(&b).unwrap();
        assert_eq!(call.proc_name, "sp_executesql");
        assert_eq!(call.params[0].value, Value::Str("SELECT @P1".into()));
        assert_eq!(call.params[1].name, "@P1");
        assert_eq!(call.params[1].value, Value::Int(42));
        assert_eq!(call.params[2].value, Value::Null);
        assert!(parse_rpc(&b[..b.len() - 5]).is_err());
    }
}
