//! The seam between the TDS protocol layer and the SQL side: requests in, results out.

use std::future::Future;

/// An error or informational message as SQL Server sends it (ERROR / INFO token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlMessage {
    /// SQL Server message number (e.g. 18456, 3906, 5701).
    pub number: i32,
    /// Severity class (0-10 informational, 11-16 user errors, 17+ resource/fatal).
    pub class: u8,
    /// Error state.
    pub state: u8,
    /// Message text.
    pub message: String,
}

impl SqlMessage {
    /// Builds a message.
    pub fn new(number: i32, class: u8, state: u8, message: impl Into<String>) -> Self {
        Self {
            number,
            class,
            state,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SqlMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, State {}: {}",
            self.number, self.class, self.state, self.message
        )
    }
}

/// A column type the simulator can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `int` (INTN, 4 bytes).
    Int,
    /// `bigint` (INTN, 8 bytes).
    BigInt,
    /// `bit` (BITN).
    Bit,
    /// `nvarchar(n)` with `n` in characters (1-4000).
    NVarChar(u16),
    /// `datetime` (DATETIMEN, 8 bytes).
    DateTime,
}

/// A value in a row or a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (`tinyint` … `bigint`).
    Int(i64),
    /// A `bit`.
    Bit(bool),
    /// A Unicode string.
    Str(String),
    /// A `datetime` as (days since 1900-01-01, 1/300 s ticks since midnight).
    DateTime(i32, u32),
}

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name (may be empty for unnamed expressions).
    pub name: String,
    /// Its type.
    pub ty: ColType,
}

impl Column {
    /// Builds a column.
    pub fn new(name: impl Into<String>, ty: ColType) -> Self {
        Self {
            name: name.into(),
            ty,
        }
    }
}

/// A request from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An SQL batch.
    Batch(String),
    /// A remote procedure call.
    Rpc(RpcCall),
}

/// One RPC (packet type 0x03) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCall {
    /// The procedure: a name, or `sp_executesql` etc. for well-known ids.
    pub proc_name: String,
    /// Parameters in order.
    pub params: Vec<RpcParam>,
}

/// One RPC parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcParam {
    /// Its name including `@`, or empty for positional parameters.
    pub name: String,
    /// Whether it is an output parameter.
    pub output: bool,
    /// Its value.
    pub value: Value,
}

/// One piece of a reply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A result set (COLMETADATA + ROWs); the statement's DONE follows separately.
    Rows {
        /// Column descriptions.
        columns: Vec<Column>,
        /// Rows, each with one value per column.
        rows: Vec<Vec<Value>>,
    },
    /// The end of a statement, with its row count if it has one.
    Done {
        /// Rows affected/returned (DONE_COUNT), `None` for statements without one.
        rows: Option<u64>,
        /// Whether the statement failed (DONE_ERROR).
        error: bool,
    },
    /// An ERROR token (class > 10) or INFO token (class <= 10).
    Message(SqlMessage),
    /// The current database changed (ENVCHANGE type 1).
    DatabaseChanged {
        /// The new database.
        new: String,
        /// The previous database.
        old: String,
    },
    /// A stored procedure's return status (RETURNSTATUS).
    ReturnStatus(i32),
    /// An output parameter's value (RETURNVALUE), e.g. the handle `sp_prepare` returns.
    ReturnValue {
        /// The parameter's position in the call (0-based).
        ordinal: u16,
        /// Its name as the client sent it (may be empty).
        name: String,
        /// Its value: integers are sent as `int`, NULL as a NULL `int`, strings as `nvarchar`.
        value: Value,
    },
}

/// What happens with a request.
#[derive(Debug)]
pub enum Reply {
    /// Send these tokens.
    Tokens(Vec<Output>),
    /// Drop the TCP connection without answering.
    Disconnect,
}

/// The login the client asked for (from LOGIN7).
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// SQL login name.
    pub user: String,
    /// The de-obfuscated password (never logged; `Debug` hides it).
    pub password: String,
    /// Initial database (empty: the login's default).
    pub database: String,
    /// Client application name.
    pub app_name: String,
    /// Client host name.
    pub host_name: String,
    /// Requested packet size (0: server default).
    pub packet_size: u32,
    /// Requested TDS version as the client sent it.
    pub tds_version: u32,
    /// Authenticated by integrated security (Kerberos): `user` is the Windows login the
    /// principal maps to and no password is checked (see [`crate::integrated`]).
    pub integrated: bool,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("database", &self.database)
            .field("app_name", &self.app_name)
            .field("host_name", &self.host_name)
            .field("packet_size", &self.packet_size)
            .field("integrated", &self.integrated)
            .finish()
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAccepted {
    /// The session's current database after login.
    pub database: String,
    /// The session id (`@@SPID`) reported in packet headers.
    pub spid: u16,
}

/// One client connection's SQL side.
pub trait Session: Send {
    /// Runs one request. The future may sleep or never finish (faults); the protocol layer
    /// drops it when the client sends an attention.
    fn execute(&mut self, request: Request) -> impl Future<Output = Reply> + Send + '_;
}

/// Why a login did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefused {
    /// Answer with this error (18456, 4060…) and close.
    Error(SqlMessage),
    /// Drop the connection without answering.
    Disconnect,
}

/// Accepts logins for one served instance and creates sessions.
pub trait Service: Send + Sync + 'static {
    /// The per-connection session type. Dropping it ends the session (locks are released).
    type Session: Session + 'static;
    /// Authenticates `login` and opens a session, or refuses. May sleep or never finish.
    fn login(
        &self,
        login: LoginRequest,
    ) -> impl Future<Output = Result<(Self::Session, LoginAccepted), LoginRefused>> + Send + '_;
    /// Whether the instance currently accepts connections and requests.
    fn is_up(&self) -> bool {
        true
    }
    /// The instance's certificate and encryption policy; `None` (the default) means no
    /// certificate: PRELOGIN is answered with ENCRYPT_NOT_SUP and the session is plaintext.
    fn tls(&self) -> Option<crate::tls::ServerTls> {
        None
    }
    /// Integrated security (Kerberos) for this instance; `None` (the default): logins with
    /// `fIntSecurity` are refused with 18452.
    fn integrated(&self) -> Option<std::sync::Arc<crate::integrated::IntegratedAuth>> {
        None
    }
}
