//! The TDS 7.4 server protocol: framing, login, TLS inside TDS, request parsing and token
//! encoding.

pub mod login;
pub mod packet;
pub mod request;
pub mod sspi;
pub mod tls;
pub mod token;
