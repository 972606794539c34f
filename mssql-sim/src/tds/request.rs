//! Parsing of SQL batch and RPC request payloads.

use super::login::utf16le;
use crate::service::{RpcCall, RpcParam, Value};

/// A request payload the simulator cannot decode, answered with the error SQL Server gives:
/// 8009 (unknown data type), 8016 (invalid data length; also a truncated stream), 8018
/// (invalid precision or scale) — see "Database Engine events and errors (8000 to 8999)",
/// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-8000-to-8999>.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. {message}"
)]
pub struct RequestParseError {
    /// The SQL Server error number.
    pub number: i32,
    /// The detail after the common prefix.
    pub message: String,
}

fn err(s: impl Into<String>) -> RequestParseError {
    RequestParseError {
        number: 8016,
        message: s.into(),
    }
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

/// Decodes one RPC parameter value: TYPE_INFO then TYPE_VARBYTE, per MS-TDS "Data Type
/// Definitions" (<https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/ffb02215-af07-4b50-8545-1fd2b5e5ad6f>)
/// and "RPC Request" (<https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/619c43b6-9495-4a58-9e49-a4950db245b3>).
/// The simulator keeps integers, bits, strings and datetimes as such; other scalar values
/// (float, money, decimal with a scale, GUID, binary, date/time) become their canonical text,
/// which is what a comparison with a string literal sees after conversion.
fn parse_typed_value(c: &mut Cur<'_>, ordinal: usize) -> Result<Value, RequestParseError> {
    let ty = c.u8()?;
    // 8016: "Parameter %d: Data type 0x%02X has an invalid data length or metadata length."
    let bad_len = || RequestParseError {
        number: 8016,
        message: format!(
            "Parameter {ordinal}: Data type 0x{ty:02X} has an invalid data length or metadata length."
        ),
    };
    match ty {
        0x1F => Ok(Value::Null),
        // Fixed-length types: INT1, BIT, INT2, INT4, INT8, FLT4, FLT8, MONEY4, MONEY, DATETIM4, DATETIME.
        0x30 => Ok(Value::Int(c.u8()? as i64)),
        0x32 => Ok(Value::Bit(c.u8()? != 0)),
        0x34 => Ok(Value::Int(int_le(c.take(2)?))),
        0x38 => Ok(Value::Int(int_le(c.take(4)?))),
        0x7F => Ok(Value::Int(int_le(c.take(8)?))),
        0x3B | 0x3E => Ok(float_value(c.take(if ty == 0x3B { 4 } else { 8 })?)),
        0x7A | 0x3C => Ok(money_value(c.take(if ty == 0x7A { 4 } else { 8 })?)),
        0x3A | 0x3D => Ok(datetime_value(c.take(if ty == 0x3A { 4 } else { 8 })?)),
        // BYTELEN types: INTN, BITN, FLTN, MONEYN, DATETIMN, GUID.
        0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x24 => {
            let max = c.u8()?;
            let sizes: &[u8] = match ty {
                0x26 => &[1, 2, 4, 8],
                0x68 => &[1],
                0x6D..=0x6F => &[4, 8],
                _ => &[16],
            };
            if !sizes.contains(&max) {
                return Err(bad_len());
            }
            let len = c.u8()? as usize;
            if len == 0 {
                return Ok(Value::Null);
            }
            if len != max as usize && !(ty == 0x26 && sizes.contains(&(len as u8))) {
                return Err(bad_len());
            }
            let b = c.take(len)?;
            Ok(match ty {
                0x68 => Value::Bit(b[0] != 0),
                0x26 => Value::Int(int_le(b)),
                0x6D => float_value(b),
                0x6E => money_value(b),
                0x6F => datetime_value(b),
                _ => guid_value(b),
            })
        }
        // DECIMALN / NUMERICN: max length, precision, scale, then sign byte + magnitude.
        0x6A | 0x6C => {
            let max = c.u8()?;
            let precision = c.u8()?;
            let scale = c.u8()?;
            if !(1..=38).contains(&precision) || scale > precision {
                // 8018: "Parameter %d: Data type 0x%02X has an invalid precision or scale."
                return Err(RequestParseError {
                    number: 8018,
                    message: format!(
                        "Parameter {ordinal}: Data type 0x{ty:02X} has an invalid precision or scale."
                    ),
                });
            }
            let len = c.u8()? as usize;
            if len == 0 {
                return Ok(Value::Null);
            }
            if len > max as usize || !matches!(len, 5 | 9 | 13 | 17) {
                return Err(bad_len());
            }
            let b = c.take(len)?;
            let mut mag = [0u8; 16];
            mag[..len - 1].copy_from_slice(&b[1..]);
            // The sign byte is 1 for positive, 0 for negative.
            Ok(decimal_value(b[0] == 0, u128::from_le_bytes(mag), scale))
        }
        // DATENTYPE, TIMENTYPE, DATETIME2NTYPE, DATETIMEOFFSETNTYPE.
        0x28 => {
            let len = c.u8()? as usize;
            match len {
                0 => Ok(Value::Null),
                3 => Ok(Value::Str(date_text(c.take(3)?))),
                _ => Err(bad_len()),
            }
        }
        0x29..=0x2B => {
            let scale = c.u8()?;
            if scale > 7 {
                return Err(bad_len());
            }
            let len = c.u8()? as usize;
            if len == 0 {
                return Ok(Value::Null);
            }
            let tlen = match scale {
                0..=2 => 3,
                3 | 4 => 4,
                _ => 5,
            };
            let want = tlen + if ty == 0x29 { 0 } else { 3 } + if ty == 0x2B { 2 } else { 0 };
            if len != want {
                return Err(bad_len());
            }
            let b = c.take(len)?;
            let time = time_text(&b[..tlen], scale);
            Ok(Value::Str(match ty {
                0x29 => time,
                0x2A => format!("{} {time}", date_text(&b[tlen..tlen + 3])),
                _ => {
                    let off = i16::from_le_bytes([b[tlen + 3], b[tlen + 4]]);
                    let sign = if off < 0 { '-' } else { '+' };
                    let off = off.unsigned_abs();
                    format!(
                        "{} {time} {sign}{:02}:{:02}",
                        date_text(&b[tlen..tlen + 3]),
                        off / 60,
                        off % 60
                    )
                }
            }))
        }
        // USHORTLEN types (BIGVARCHR, BIGCHAR, NVARCHAR, NCHAR, BIGVARBIN, BIGBINARY), PLP
        // when the maximum length is 0xFFFF (the `(max)` types).
        0xE7 | 0xEF | 0xA7 | 0xAF | 0xA5 | 0xAD => {
            let max = c.u16()?;
            let binary = matches!(ty, 0xA5 | 0xAD);
            if !binary {
                c.take(5)?; // collation
            }
            let bytes = if max == 0xFFFF {
                match plp(c)? {
                    Some(v) => v,
                    None => return Ok(Value::Null),
                }
            } else {
                let n = c.u16()?;
                if n == 0xFFFF {
                    return Ok(Value::Null);
                }
                if n > max {
                    return Err(bad_len());
                }
                c.take(n as usize)?.to_vec()
            };
            Ok(text_value(ty, &bytes))
        }
        // LONGLEN types TEXT, NTEXT, IMAGE: max length, collation (not IMAGE), then a 4-byte
        // length (0xFFFFFFFF: NULL). In an RPC parameter they carry no text pointer.
        0x23 | 0x63 | 0x22 => {
            let _max = c.u32()?;
            if ty != 0x22 {
                c.take(5)?;
            }
            let n = c.u32()?;
            if n == u32::MAX {
                return Ok(Value::Null);
            }
            let bytes = c.take(n as usize)?;
            Ok(text_value(ty, bytes))
        }
        // XML: a schema-present byte (and the schema names), then PLP UTF-16.
        0xF1 => {
            if c.u8()? != 0 {
                let n = c.u8()? as usize;
                c.take(n * 2)?;
                let n = c.u8()? as usize;
                c.take(n * 2)?;
                let n = c.u16()? as usize;
                c.take(n * 2)?;
            }
            match plp(c)? {
                Some(v) => Ok(Value::Str(utf16le(&v))),
                None => Ok(Value::Null),
            }
        }
        // 8009: "Parameter %d: Data type 0x%02X is unknown." (also what this simulator answers
        // for the types it does not decode: SQL_VARIANT, UDT, table-valued parameters).
        other => Err(RequestParseError {
            number: 8009,
            message: format!("Parameter {ordinal}: Data type 0x{other:02X} is unknown."),
        }),
    }
}

/// Reads a PLP body (8-byte total length, then chunks ending with a zero-length one);
/// `None` for PLP_NULL.
fn plp(c: &mut Cur<'_>) -> Result<Option<Vec<u8>>, RequestParseError> {
    let total = c.u64()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut v = Vec::new();
    loop {
        let n = c.u32()? as usize;
        if n == 0 {
            break;
        }
        v.extend_from_slice(c.take(n)?);
    }
    Ok(Some(v))
}

/// A character or binary payload: UTF-16 for the N types, one byte per character for the
/// single-byte types (Latin-1 subset of the session's code page 1252), `0x…` hex for binary.
fn text_value(ty: u8, bytes: &[u8]) -> Value {
    Value::Str(match ty {
        0xE7 | 0xEF | 0x63 => utf16le(bytes),
        0xA5 | 0xAD | 0x22 => {
            let mut s = String::from("0x");
            for b in bytes {
                s.push_str(&format!("{b:02X}"));
            }
            s
        }
        _ => bytes.iter().map(|&b| b as char).collect(),
    })
}

fn float_value(b: &[u8]) -> Value {
    Value::Str(if b.len() == 4 {
        f32::from_le_bytes(b.try_into().expect("4 bytes")).to_string()
    } else {
        f64::from_le_bytes(b.try_into().expect("8 bytes")).to_string()
    })
}

/// MONEY is an 8-byte integer of 1/10000 units sent high 4 bytes first; SMALLMONEY 4 bytes.
fn money_value(b: &[u8]) -> Value {
    let units = if b.len() == 4 {
        int_le(b)
    } else {
        let hi = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64;
        let lo = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as i64;
        (hi << 32) | lo
    };
    decimal_value(units < 0, units.unsigned_abs() as u128, 4)
}

/// DATETIME (days since 1900-01-01, 1/300 s) or SMALLDATETIME (u16 days, u16 minutes).
fn datetime_value(b: &[u8]) -> Value {
    if b.len() == 4 {
        let days = u16::from_le_bytes([b[0], b[1]]) as i32;
        let mins = u16::from_le_bytes([b[2], b[3]]) as u32;
        Value::DateTime(days, mins * 60 * 300)
    } else {
        Value::DateTime(
            i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        )
    }
}

/// A GUID in its canonical text (the first three groups are little-endian on the wire).
fn guid_value(b: &[u8]) -> Value {
    let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02X}")).collect::<String>();
    let rev = |r: &[u8]| hex(&r.iter().rev().copied().collect::<Vec<_>>());
    Value::Str(format!(
        "{}-{}-{}-{}-{}",
        rev(&b[0..4]),
        rev(&b[4..6]),
        rev(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    ))
}

/// An exact numeric: an integer when the scale is 0 and it fits, else its decimal text.
fn decimal_value(negative: bool, magnitude: u128, scale: u8) -> Value {
    if scale == 0
        && let Ok(v) = i64::try_from(magnitude)
    {
        return Value::Int(if negative { -v } else { v });
    }
    let digits = magnitude.to_string();
    let scale = scale as usize;
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if negative { "-" } else { "" };
    Value::Str(if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

/// A DATE (3 bytes: days since 0001-01-01) as `YYYY-MM-DD`.
fn date_text(b: &[u8]) -> String {
    let days = u32::from_le_bytes([b[0], b[1], b[2], 0]) as i64;
    // Civil-from-days (proleptic Gregorian), shifted so day 0 is 0001-01-01.
    let z = days - 719_162 + 719_468; // days since 1970-01-01, then the algorithm's epoch
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A TIME of `scale` (10^-scale s units since midnight) as `hh:mm:ss[.fffffff]`.
fn time_text(b: &[u8], scale: u8) -> String {
    let mut raw = [0u8; 8];
    raw[..b.len()].copy_from_slice(b);
    let units = u64::from_le_bytes(raw);
    let per_sec = 10u64.pow(scale as u32);
    let secs = units / per_sec;
    let frac = units % per_sec;
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if scale == 0 {
        base
    } else {
        format!("{base}.{frac:0width$}", width = scale as usize)
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

    /// An RPC by id with the given raw parameter bodies (name length 0, status byte first).
    fn rpc_by_id(id: u16, params: &[&[u8]]) -> Vec<u8> {
        let mut b = all_headers();
        b.extend_from_slice(&[0xFF, 0xFF]);
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        for p in params {
            b.push(0);
            b.extend_from_slice(p);
        }
        b
    }

    #[test]
    fn prepexec_as_freetds_sends_it_ntext_and_null_ntext() {
        // The exact parameters FreeTDS' ODBC driver sends for isql's SQLPrepare+SQLExecute:
        // @handle int OUTPUT (NULL), @params ntext NULL, @stmt ntext.
        let stmt = w("SELECT 1");
        let mut p3 = vec![0, 0x63];
        p3.extend_from_slice(&(stmt.len() as u32).to_le_bytes());
        p3.extend_from_slice(&COLL);
        p3.extend_from_slice(&(stmt.len() as u32).to_le_bytes());
        p3.extend_from_slice(&stmt);
        let mut p2 = vec![0, 0x63, 0, 0, 0, 0];
        p2.extend_from_slice(&COLL);
        p2.extend_from_slice(&u32::MAX.to_le_bytes());
        let call = parse_rpc(&rpc_by_id(13, &[&[1, 0x26, 4, 0], &p2, &p3])).unwrap();
        assert_eq!(call.proc_name, "sp_prepexec");
        assert!(call.params[0].output);
        assert_eq!(call.params[0].value, Value::Null);
        assert_eq!(call.params[1].value, Value::Null);
        assert_eq!(call.params[2].value, Value::Str("SELECT 1".into()));
    }

    const COLL: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

    fn one(body: &[u8]) -> Result<Value, RequestParseError> {
        let mut p = vec![0];
        p.extend_from_slice(body);
        parse_rpc(&rpc_by_id(10, &[&p])).map(|c| c.params[0].value.clone())
    }

    #[test]
    fn text_image_and_binary_parameters() {
        let mut t = vec![0x23, 10, 0, 0, 0];
        t.extend_from_slice(&COLL);
        t.extend_from_slice(&3u32.to_le_bytes());
        t.extend_from_slice(b"abc");
        assert_eq!(one(&t).unwrap(), Value::Str("abc".into()));
        let mut img = vec![0x22, 10, 0, 0, 0];
        img.extend_from_slice(&2u32.to_le_bytes());
        img.extend_from_slice(&[0xAB, 0x01]);
        assert_eq!(one(&img).unwrap(), Value::Str("0xAB01".into()));
        let mut vb = vec![0xA5, 8, 0];
        vb.extend_from_slice(&1u16.to_le_bytes());
        vb.push(0xFF);
        assert_eq!(one(&vb).unwrap(), Value::Str("0xFF".into()));
    }

    #[test]
    fn numeric_float_money_guid_and_dates() {
        // numeric(25,0) = 12345678901234567890123 (needs more than 64 bits).
        let big: u128 = 12_345_678_901_234_567_890_123;
        let mut n = vec![0x6C, 17, 25, 0, 17, 1];
        n.extend_from_slice(&big.to_le_bytes());
        assert_eq!(one(&n).unwrap(), Value::Str(big.to_string()));
        // decimal(10,2) = -12.34
        let mut d = vec![0x6A, 5, 10, 2, 5, 0];
        d.extend_from_slice(&1234u32.to_le_bytes());
        assert_eq!(one(&d).unwrap(), Value::Str("-12.34".into()));
        // numeric(10,0) = 7: an integer.
        let mut i = vec![0x6C, 5, 10, 0, 5, 1];
        i.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(one(&i).unwrap(), Value::Int(7));
        let mut f = vec![0x6D, 8, 8];
        f.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(one(&f).unwrap(), Value::Str("1.5".into()));
        let mut m = vec![0x6E, 8, 8];
        m.extend_from_slice(&0i32.to_le_bytes());
        m.extend_from_slice(&12_500u32.to_le_bytes());
        assert_eq!(one(&m).unwrap(), Value::Str("1.2500".into()));
        let g = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD,
            0xEE, 0xFF,
        ];
        let mut gb = vec![0x24, 16, 16];
        gb.extend_from_slice(&g);
        assert_eq!(
            one(&gb).unwrap(),
            Value::Str("00112233-4455-6677-8899-AABBCCDDEEFF".into())
        );
        // date 2000-01-01 is day 730119 since 0001-01-01.
        let day = 730_119u32.to_le_bytes();
        assert_eq!(
            one(&[0x28, 3, day[0], day[1], day[2]]).unwrap(),
            Value::Str("2000-01-01".into())
        );
        // datetime2(0) 2000-01-01 01:02:03
        let secs = 3723u32.to_le_bytes();
        assert_eq!(
            one(&[
                0x2A, 0, 6, secs[0], secs[1], secs[2], day[0], day[1], day[2]
            ])
            .unwrap(),
            Value::Str("2000-01-01 01:02:03".into())
        );
        let mut dt = vec![0x6F, 8, 8];
        dt.extend_from_slice(&36_524i32.to_le_bytes());
        dt.extend_from_slice(&300u32.to_le_bytes());
        assert_eq!(one(&dt).unwrap(), Value::DateTime(36_524, 300));
    }

    #[test]
    fn bad_types_get_sql_servers_errors() {
        // SQL_VARIANT (0x62) is not decoded: 8009, as for an unknown type.
        let e = one(&[0x62, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.number, 8009);
        assert!(
            e.to_string()
                .ends_with("Parameter 1: Data type 0x62 is unknown."),
            "{e}"
        );
        assert!(!e.to_string().contains("simulator"));
        // INTN with a length of 3: 8016.
        assert_eq!(one(&[0x26, 3, 3, 0, 0, 0]).unwrap_err().number, 8016);
        // numeric with precision 0: 8018.
        assert_eq!(one(&[0x6C, 5, 0, 0, 0]).unwrap_err().number, 8018);
    }
}
