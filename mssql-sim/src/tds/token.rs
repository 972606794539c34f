//! Server-side token encoding.

use crate::service::{ColType, Column, Output, SqlMessage, Value};

/// The collation every string column and the session use: SQL_Latin1_General_CP1_CI_AS.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
/// The server name put in ERROR/INFO tokens.
pub const SERVER_NAME: &str = "MSSQLSIM";

const COLMETADATA: u8 = 0x81;
const ROW: u8 = 0xD1;
const DONE: u8 = 0xFD;
const DONEPROC: u8 = 0xFE;
const DONEINPROC: u8 = 0xFF;
const ERROR: u8 = 0xAA;
const INFO: u8 = 0xAB;
const LOGINACK: u8 = 0xAD;
const ENVCHANGE: u8 = 0xE3;
const RETURNSTATUS: u8 = 0x79;
const RETURNVALUE: u8 = 0xAC;

/// DONE status: more results follow.
pub const DONE_MORE: u16 = 0x01;
/// DONE status: the statement failed.
pub const DONE_ERROR: u16 = 0x02;
/// DONE status: the row count is valid.
pub const DONE_COUNT: u16 = 0x10;
/// DONE status: acknowledges an attention.
pub const DONE_ATTN: u16 = 0x20;

/// Builds a token stream.
#[derive(Debug, Default)]
pub struct TokenWriter {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// Writes a B_VARCHAR (u8 length in characters + UTF-16LE), truncating at 255 units.
fn b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

/// Writes a US_VARCHAR (u16 length in characters + UTF-16LE).
fn us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(u16::MAX as usize).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

impl TokenWriter {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_len(&mut self, token: u8, body: Vec<u8>) {
        self.buf.push(token);
        self.buf
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&body);
    }

    /// LOGINACK with TDS 7.4 (bytes `74 00 00 04`).
    pub fn login_ack(&mut self, version: [u8; 4]) {
        let mut b = vec![1u8];
        b.extend_from_slice(&[0x74, 0x00, 0x00, 0x04]);
        b_varchar(&mut b, "Microsoft SQL Server");
        b.extend_from_slice(&version);
        self.with_len(LOGINACK, b);
    }

    /// ENVCHANGE with B_VARCHAR new/old values (database 1, language 2, packet size 4).
    pub fn env_string(&mut self, ty: u8, new: &str, old: &str) {
        let mut b = vec![ty];
        b_varchar(&mut b, new);
        b_varchar(&mut b, old);
        self.with_len(ENVCHANGE, b);
    }

    /// ENVCHANGE type 7: the SQL collation.
    pub fn env_collation(&mut self) {
        let mut b = vec![7u8, COLLATION.len() as u8];
        b.extend_from_slice(&COLLATION);
        b.push(0);
        self.with_len(ENVCHANGE, b);
    }

    /// An ERROR (class > 10) or INFO token.
    pub fn message(&mut self, m: &SqlMessage) {
        let mut b = Vec::new();
        b.extend_from_slice(&m.number.to_le_bytes());
        b.push(m.state);
        b.push(m.class);
        us_varchar(&mut b, &m.message);
        b_varchar(&mut b, SERVER_NAME);
        b_varchar(&mut b, "");
        b.extend_from_slice(&1i32.to_le_bytes());
        self.with_len(if m.class > 10 { ERROR } else { INFO }, b);
    }

    /// DONE / DONEPROC / DONEINPROC.
    pub fn done_kind(&mut self, token: u8, status: u16, rows: u64) {
        self.buf.push(token);
        self.buf.extend_from_slice(&status.to_le_bytes());
        self.buf.extend_from_slice(&0xC1u16.to_le_bytes());
        self.buf.extend_from_slice(&rows.to_le_bytes());
    }

    /// A DONE token.
    pub fn done(&mut self, status: u16, rows: u64) {
        self.done_kind(DONE, status, rows);
    }

    /// RETURNSTATUS.
    pub fn return_status(&mut self, v: i32) {
        self.buf.push(RETURNSTATUS);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// RETURNVALUE for an output parameter (MS-TDS 2.2.7.19,
    /// <https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/7091f6f6-b83d-4ed2-afeb-ba5013dfb18f>):
    /// ordinal, name, status 0x01 (output parameter), user type, flags, TYPE_INFO, value.
    pub fn return_value(&mut self, ordinal: u16, name: &str, value: &Value) {
        self.buf.push(RETURNVALUE);
        self.buf.extend_from_slice(&ordinal.to_le_bytes());
        b_varchar(&mut self.buf, name);
        self.buf.push(0x01);
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.buf.extend_from_slice(&0x0001u16.to_le_bytes());
        match value {
            Value::Str(s) => {
                let mut bytes = utf16(s);
                bytes.truncate(8000);
                self.buf.push(0xE7);
                self.buf.extend_from_slice(&8000u16.to_le_bytes());
                self.buf.extend_from_slice(&COLLATION);
                self.buf
                    .extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                self.buf.extend_from_slice(&bytes);
            }
            Value::Int(i) => {
                self.buf.extend_from_slice(&[0x26, 4, 4]);
                self.buf.extend_from_slice(&(*i as i32).to_le_bytes());
            }
            Value::Bit(b) => self.buf.extend_from_slice(&[0x68, 1, 1, *b as u8]),
            _ => self.buf.extend_from_slice(&[0x26, 4, 0]),
        }
    }

    /// COLMETADATA.
    pub fn col_metadata(&mut self, cols: &[Column]) {
        self.buf.push(COLMETADATA);
        self.buf
            .extend_from_slice(&(cols.len() as u16).to_le_bytes());
        for c in cols {
            self.buf.extend_from_slice(&0u32.to_le_bytes()); // user type
            self.buf.extend_from_slice(&0x0001u16.to_le_bytes()); // nullable
            match c.ty {
                ColType::Int => self.buf.extend_from_slice(&[0x26, 4]),
                ColType::BigInt => self.buf.extend_from_slice(&[0x26, 8]),
                ColType::Bit => self.buf.extend_from_slice(&[0x68, 1]),
                ColType::DateTime => self.buf.extend_from_slice(&[0x6F, 8]),
                ColType::NVarChar(n) => {
                    self.buf.push(0xE7);
                    self.buf
                        .extend_from_slice(&(n.clamp(1, 4000) * 2).to_le_bytes());
                    self.buf.extend_from_slice(&COLLATION);
                }
            }
            b_varchar(&mut self.buf, &c.name);
        }
    }

    /// One ROW; values that do not fit their column are sent as NULL.
    pub fn row(&mut self, cols: &[Column], values: &[Value]) {
        self.buf.push(ROW);
        for (c, v) in cols.iter().zip(values) {
            match (c.ty, v) {
                (ColType::Int, Value::Int(i)) => {
                    self.buf.push(4);
                    self.buf.extend_from_slice(&(*i as i32).to_le_bytes());
                }
                (ColType::BigInt, Value::Int(i)) => {
                    self.buf.push(8);
                    self.buf.extend_from_slice(&i.to_le_bytes());
                }
                (ColType::Bit, Value::Bit(b)) => self.buf.extend_from_slice(&[1, *b as u8]),
                (ColType::Bit, Value::Int(i)) => self.buf.extend_from_slice(&[1, (*i != 0) as u8]),
                (ColType::DateTime, Value::DateTime(d, t)) => {
                    self.buf.push(8);
                    self.buf.extend_from_slice(&d.to_le_bytes());
                    self.buf.extend_from_slice(&t.to_le_bytes());
                }
                (ColType::NVarChar(n), Value::Str(s)) => {
                    let mut bytes = utf16(s);
                    bytes.truncate(n as usize * 2);
                    self.buf
                        .extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                    self.buf.extend_from_slice(&bytes);
                }
                (ColType::NVarChar(_), _) => self.buf.extend_from_slice(&[0xFF, 0xFF]),
                _ => self.buf.push(0),
            }
        }
    }

    /// Encodes a reply. In an RPC reply, statement DONEs become DONEINPROC and the reply ends
    /// with DONEPROC; in a batch, every DONE but the last carries DONE_MORE.
    pub fn reply(&mut self, outputs: &[Output], rpc: bool) {
        let last_done = outputs
            .iter()
            .rposition(|o| matches!(o, Output::Done { .. }));
        let mut any_error = false;
        for (i, o) in outputs.iter().enumerate() {
            match o {
                Output::Rows { columns, rows } => {
                    self.col_metadata(columns);
                    for r in rows {
                        self.row(columns, r);
                    }
                }
                Output::Done { rows, error } => {
                    any_error |= *error;
                    let mut status = if rows.is_some() { DONE_COUNT } else { 0 };
                    if *error {
                        status |= DONE_ERROR;
                    }
                    if rpc {
                        self.done_kind(DONEINPROC, status | DONE_MORE, rows.unwrap_or(0));
                    } else {
                        if Some(i) != last_done {
                            status |= DONE_MORE;
                        }
                        self.done(status, rows.unwrap_or(0));
                    }
                }
                Output::Message(m) => self.message(m),
                Output::DatabaseChanged { new, old } => self.env_string(1, new, old),
                Output::ReturnStatus(v) => self.return_status(*v),
                Output::ReturnValue {
                    ordinal,
                    name,
                    value,
                } => self.return_value(*ordinal, name, value),
            }
        }
        if rpc {
            self.done_kind(DONEPROC, if any_error { DONE_ERROR } else { 0 }, 0);
        } else if last_done.is_none() {
            self.done(if any_error { DONE_ERROR } else { 0 }, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_ack_carries_tds_74_in_wire_order() {
        let mut t = TokenWriter::new();
        t.login_ack([15, 0, 7, 208]);
        assert_eq!(t.buf[0], LOGINACK);
        assert_eq!(&t.buf[3..8], &[1, 0x74, 0x00, 0x00, 0x04]);
        assert_eq!(&t.buf[t.buf.len() - 4..], &[15, 0, 7, 208]);
    }

    #[test]
    fn batch_dones_chain_with_more_and_rpc_ends_with_doneproc() {
        let outs = vec![
            Output::Done {
                rows: None,
                error: false,
            },
            Output::Message(SqlMessage::new(911, 16, 1, "x")),
            Output::Done {
                rows: Some(3),
                error: true,
            },
        ];
        let mut t = TokenWriter::new();
        t.reply(&outs, false);
        assert_eq!(&t.buf[..3], &[DONE, DONE_MORE as u8, 0]);
        let last = &t.buf[t.buf.len() - 13..];
        assert_eq!(last[0], DONE);
        assert_eq!(
            u16::from_le_bytes([last[1], last[2]]),
            DONE_COUNT | DONE_ERROR
        );
        assert_eq!(u64::from_le_bytes(last[5..13].try_into().unwrap()), 3);
        let mut t = TokenWriter::new();
        t.reply(&outs, true);
        assert_eq!(t.buf[0], DONEINPROC);
        let last = &t.buf[t.buf.len() - 13..];
        assert_eq!(
            (last[0], u16::from_le_bytes([last[1], last[2]])),
            (DONEPROC, DONE_ERROR)
        );
    }

    #[test]
    fn error_and_info_tokens() {
        let mut t = TokenWriter::new();
        t.message(&SqlMessage::new(
            18456,
            14,
            1,
            "Login failed for user 'sa'.",
        ));
        t.message(&SqlMessage::new(
            5701,
            0,
            2,
            "Changed database context to 'master'.",
        ));
        assert_eq!(t.buf[0], ERROR);
        assert_eq!(&t.buf[3..9], &[0x18, 0x48, 0, 0, 1, 14]);
        let len = u16::from_le_bytes([t.buf[1], t.buf[2]]) as usize;
        assert_eq!(t.buf[3 + len], INFO);
    }
}
