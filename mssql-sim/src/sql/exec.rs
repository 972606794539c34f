//! Running parsed statements against the backend-fake estate.

use super::parse::{Cond, Expr, Select, Stmt, TableName, TypeName, parse_batch};
use crate::service::{
    ColType, Column, LoginAccepted, LoginRefused, LoginRequest, Output, Reply, Request, RpcCall,
    RpcParam, Service, Session, SqlMessage, Value,
};
use backend_fake::{DbRow, Estate, Fault, LOCATION_CONFLICT, SessionId, SqlError};
use failover_core::{DatabaseName, InstanceAddr, LocationRecord, MirrorRole, Operation, Store};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// System databases every instance has (not part of the estate).
const SYSTEM_DBS: [&str; 4] = ["master", "tempdb", "model", "msdb"];
/// The location table (`failover_tsql::build::LOCATION_TABLE`).
const LOCATION_TABLE: &str = failover_tsql::build::LOCATION_TABLE;
/// The position table (`failover_tsql::build::POSITION_TABLE`).
const POSITION_TABLE: &str = failover_tsql::build::POSITION_TABLE;

fn msg(e: SqlError) -> SqlMessage {
    SqlMessage::new(e.number, e.class, e.state, e.message)
}

fn is_system(db: &str) -> bool {
    SYSTEM_DBS.iter().any(|s| s.eq_ignore_ascii_case(db))
}

/// State shared by every instance the simulator serves.
#[derive(Debug, Default)]
pub struct Shared {
    /// Instances on which the location table was created by `CREATE TABLE`.
    location_tables: Mutex<HashSet<InstanceAddr>>,
    next_spid: AtomicU16,
    /// Databases another (simulated) session holds a lock on: `ALTER DATABASE` on them waits.
    blocks: Mutex<HashMap<(InstanceAddr, String), usize>>,
    /// Woken whenever a block is released.
    unblocked: tokio::sync::Notify,
}

impl Shared {
    fn is_blocked(&self, addr: &InstanceAddr, db: &str) -> bool {
        self.blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(addr.clone(), db.to_lowercase()))
            .is_some_and(|n| *n > 0)
    }

    /// Another session takes a lock on `db` (until the returned guard is dropped).
    pub fn block(self: &Arc<Self>, addr: &InstanceAddr, db: &str) -> DatabaseBlock {
        let key = (addr.clone(), db.to_lowercase());
        *self
            .blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        DatabaseBlock {
            shared: self.clone(),
            key,
        }
    }
}

/// A lock another session holds on a database: while it exists, `ALTER DATABASE … SET
/// READ_ONLY|READ_WRITE` on that database waits, up to the session's `SET LOCK_TIMEOUT`, then
/// fails with 1222 and 5069. Dropping it releases the lock. Models what `WITH ROLLBACK
/// IMMEDIATE` cannot clear at once (a long rollback, another ALTER DATABASE). `SET
/// LOCK_TIMEOUT`: "When a wait for a lock exceeds the time-out value, an error is returned"
/// (1222), <https://learn.microsoft.com/en-us/sql/t-sql/statements/set-lock-timeout-transact-sql>;
/// the options need exclusive access to the database,
/// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-set-options>.
#[derive(Debug)]
pub struct DatabaseBlock {
    shared: Arc<Shared>,
    key: (InstanceAddr, String),
}

impl Drop for DatabaseBlock {
    fn drop(&mut self) {
        let mut m = self.shared.blocks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
        drop(m);
        self.shared.unblocked.notify_waiters();
    }
}

/// One served instance of the estate.
#[derive(Debug, Clone)]
pub struct InstanceService {
    estate: Estate,
    addr: InstanceAddr,
    shared: Arc<Shared>,
}

impl InstanceService {
    /// Serves `addr` of `estate`.
    pub fn new(estate: Estate, addr: InstanceAddr, shared: Arc<Shared>) -> Self {
        Self {
            estate,
            addr,
            shared,
        }
    }
}

/// Manifests a fault before running: `Ok(Some(fault))` for the caller to finish handling.
async fn pre_fault(f: Option<Fault>) -> Option<Fault> {
    match f {
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Hang) => std::future::pending().await,
        other => other,
    }
}

impl Service for InstanceService {
    type Session = SqlSession;

    async fn login(&self, l: LoginRequest) -> Result<(SqlSession, LoginAccepted), LoginRefused> {
        match pre_fault(self.estate.fault_for(&self.addr, Operation::Connect)).await {
            Some(Fault::Error(e)) => return Err(LoginRefused::Error(msg(e))),
            Some(Fault::Disconnect) | Some(Fault::Crash { .. }) => {
                return Err(LoginRefused::Disconnect);
            }
            _ => {}
        }
        // An integrated login was authenticated and mapped already (crate::integrated).
        let opened = match l.integrated {
            true => self.estate.open_session(&self.addr),
            false => self.estate.login(&self.addr, &l.user, &l.password),
        };
        let id = match opened {
            Ok(id) => id,
            Err(e) if e.is_connection_error() => return Err(LoginRefused::Disconnect),
            Err(e) => return Err(LoginRefused::Error(msg(e))),
        };
        let spid = 51 + self.shared.next_spid.fetch_add(1, Ordering::Relaxed) % 30000;
        let mut session = SqlSession {
            estate: self.estate.clone(),
            addr: self.addr.clone(),
            shared: self.shared.clone(),
            id,
            spid,
            db: "master".into(),
            vars: HashMap::new(),
            prepared: HashMap::new(),
            next_handle: 1,
            lock_timeout_ms: -1,
        };
        if l.database.is_empty() {
            // No database in LOGIN7: the session starts in the login's default database;
            // when that cannot be opened the login fails with 4064 "Cannot open user default
            // database. Login failed."
            // https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-4000-to-4999
            if let Some(d) = self.estate.login_default_database(&l.user)
                && session.use_db(&d).is_err()
            {
                return Err(LoginRefused::Error(SqlMessage::new(
                    4064,
                    11,
                    1,
                    "Cannot open user default database. Login failed.",
                )));
            }
        } else if !l.database.eq_ignore_ascii_case("master")
            && let Err(e) = session.use_db(&l.database)
        {
            // SQL Server: 4060 "Cannot open database requested by the login".
            let text = format!(
                "Cannot open database \"{}\" requested by the login. The login failed. ({})",
                l.database, e.m.message
            );
            return Err(LoginRefused::Error(SqlMessage::new(4060, 11, 1, text)));
        }
        let database = session.db.clone();
        Ok((session, LoginAccepted { database, spid }))
    }

    fn is_up(&self) -> bool {
        self.estate.is_reachable(&self.addr)
    }
}

/// One logged-in connection: an estate session. Dropping it closes the estate session,
/// which releases its application locks (as a disconnect does on SQL Server).
#[derive(Debug)]
pub struct SqlSession {
    estate: Estate,
    addr: InstanceAddr,
    shared: Arc<Shared>,
    id: SessionId,
    spid: u16,
    db: String,
    vars: HashMap<String, (TypeName, Value)>,
    /// Statements prepared with `sp_prepare`/`sp_prepexec`: handle -> (declarations, text).
    prepared: HashMap<i32, (Option<String>, String)>,
    next_handle: i32,
    /// `SET LOCK_TIMEOUT` of this session in milliseconds (-1, the default: wait for ever).
    lock_timeout_ms: i64,
}

impl Drop for SqlSession {
    fn drop(&mut self) {
        self.estate.close_session(self.id);
    }
}

/// A statement failed; `abort` ends the batch (connection-level failures).
struct Failure {
    m: SqlMessage,
    /// Errors SQL Server sends after the specific one for the same statement (5069 after a
    /// failed ALTER DATABASE, 3013 after a failed RESTORE).
    trailer: Option<SqlMessage>,
    disconnect: bool,
}

impl Failure {
    /// Adds the generic trailer SQL Server sends after this statement's specific error.
    fn with_trailer(mut self, t: SqlMessage) -> Self {
        if !self.disconnect && self.m.number != t.number {
            self.trailer = Some(t);
        }
        self
    }
}

impl From<SqlMessage> for Failure {
    fn from(m: SqlMessage) -> Self {
        Self {
            m,
            trailer: None,
            disconnect: false,
        }
    }
}

impl From<SqlError> for Failure {
    fn from(e: SqlError) -> Self {
        let disconnect = e.is_connection_error();
        Self {
            m: msg(e),
            trailer: None,
            disconnect,
        }
    }
}

type R<T> = Result<T, Failure>;

/// A materialised table: column definitions and rows.
struct Table {
    cols: Vec<Column>,
    rows: Vec<Vec<Value>>,
}

fn invalid_object(t: &TableName) -> Failure {
    SqlMessage::new(
        208,
        16,
        1,
        format!("Invalid object name '{}'.", t.display()),
    )
    .into()
}

fn nv(s: impl Into<String>) -> Value {
    Value::Str(s.into())
}

fn opt_str(s: Option<String>) -> Value {
    s.map(Value::Str).unwrap_or(Value::Null)
}

fn ty_of(t: TypeName) -> ColType {
    match t {
        TypeName::Int => ColType::Int,
        TypeName::BigInt => ColType::BigInt,
        TypeName::Bit => ColType::Bit,
        TypeName::NVarChar(n) => ColType::NVarChar(n),
    }
}

/// Compares two values the way a case-insensitive collation does; `None` when either is NULL.
fn sql_eq(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Str(x), Value::Str(y)) => Some(x.to_lowercase() == y.to_lowercase()),
        (Value::Int(x), Value::Int(y)) => Some(x == y),
        (Value::Bit(x), Value::Bit(y)) => Some(x == y),
        (Value::Bit(x), Value::Int(y)) | (Value::Int(y), Value::Bit(x)) => Some((*x as i64) == *y),
        (Value::Str(s), Value::Int(i)) | (Value::Int(i), Value::Str(s)) => {
            Some(s.trim().parse::<i64>().ok() == Some(*i))
        }
        _ => Some(false),
    }
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a, b) {
        (Value::Null, Value::Null) => Equal,
        (Value::Null, _) => Less,
        (_, Value::Null) => Greater,
        (Value::Str(x), Value::Str(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Bit(x), Value::Bit(y)) => x.cmp(y),
        _ => Equal,
    }
}

fn conversion_failed(v: &Value, to: &str) -> Failure {
    let shown = match v {
        Value::Str(s) => s.clone(),
        other => format!("{other:?}"),
    };
    SqlMessage::new(
        245,
        16,
        1,
        format!(
            "Conversion failed when converting the nvarchar value '{shown}' to data type {to}."
        ),
    )
    .into()
}

fn cast(v: Value, t: TypeName) -> R<Value> {
    Ok(match (t, v) {
        (_, Value::Null) => Value::Null,
        (TypeName::NVarChar(n), v) => {
            let s = match v {
                Value::Int(i) => i.to_string(),
                Value::Bit(b) => (b as u8).to_string(),
                Value::Str(s) => s,
                Value::DateTime(..) | Value::Null => String::new(),
            };
            Value::Str(s.chars().take(n as usize).collect())
        }
        (TypeName::Bit, Value::Str(s)) => match s.trim() {
            "1" => Value::Bit(true),
            "0" => Value::Bit(false),
            _ => return Err(conversion_failed(&Value::Str(s), "bit")),
        },
        (TypeName::Bit, Value::Int(i)) => Value::Bit(i != 0),
        (_, Value::Str(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => return Err(conversion_failed(&Value::Str(s), "int")),
        },
        (_, Value::Bit(b)) => Value::Int(b as i64),
        (_, v) => v,
    })
}

/// Bound row sources while evaluating a SELECT: (alias, table, row index or None = NULLs).
type Env<'a> = [(&'a str, &'a Table, Option<usize>)];

impl SqlSession {
    fn use_db(&mut self, name: &str) -> R<()> {
        if !is_system(name) {
            let db = DatabaseName::parse(name).map_err(|_| SqlError::no_such_database(name))?;
            self.estate.use_database(self.id, &db)?;
        }
        self.db = SYSTEM_DBS
            .iter()
            .find(|s| s.eq_ignore_ascii_case(name))
            .map_or(name.to_string(), |s| s.to_string());
        Ok(())
    }

    /// `ALTER DATABASE … SET READ_ONLY|READ_WRITE` (the caller adds the 5069 trailer). A
    /// missing database is 5011 "User does not have permission to alter database '%.*ls',
    /// the database does not exist, or the database is not in a state that allows access
    /// checks.", as SQL Server reports it (it does not say which):
    /// https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-5000-to-5999
    fn alter_read_only(&self, db: &str, read_only: bool) -> R<()> {
        if is_system(db) {
            return Err(SqlMessage::new(
                5058,
                16,
                5,
                format!("Option 'READ_ONLY' cannot be set in database '{db}'."),
            )
            .into());
        }
        let no_access = || -> Failure {
            SqlMessage::new(
                5011,
                14,
                5,
                format!(
                    "User does not have permission to alter database '{db}', the database does not exist, or the database is not in a state that allows access checks."
                ),
            )
            .into()
        };
        let name = DatabaseName::parse(db).map_err(|_| no_access())?;
        match self.estate.set_read_only(self.id, &name, read_only) {
            Err(e) if e.number == 911 => Err(no_access()),
            r => Ok(r?),
        }
    }

    fn db_name(name: &str) -> R<DatabaseName> {
        DatabaseName::parse(name).map_err(|_| SqlError::no_such_database(name).into())
    }

    /// The rows of the instance's databases (one estate call).
    fn db_rows(&self) -> R<Vec<DbRow>> {
        Ok(self.estate.database_rows(self.id)?)
    }

    fn location_table_exists(&self) -> R<bool> {
        let created = self
            .shared
            .location_tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.addr);
        Ok(created || self.estate.read_location(self.id)?.is_some())
    }

    /// Checks the database part of a control table name; writes to a read-only database fail
    /// with 3906.
    fn control_db_check(&self, t: &TableName, write: bool) -> R<()> {
        let db = t.database().unwrap_or(&self.db).to_string();
        if t.schema().is_some_and(|s| !s.eq_ignore_ascii_case("dbo")) {
            return Err(invalid_object(t));
        }
        if is_system(&db) {
            return Ok(());
        }
        let rows = self.db_rows()?;
        let Some(row) = rows
            .iter()
            .find(|r| r.name.as_str().eq_ignore_ascii_case(&db))
        else {
            return Err(invalid_object(t));
        };
        if row
            .mirroring
            .as_ref()
            .is_some_and(|m| m.role == MirrorRole::Mirror)
        {
            return Err(msg(SqlError::is_mirror(&db)).into());
        }
        if write && row.read_only {
            return Err(SqlMessage::new(
                3906,
                16,
                1,
                format!("Failed to update database \"{db}\" because the database is read-only."),
            )
            .into());
        }
        Ok(())
    }

    fn load_table(&self, t: &TableName) -> R<Table> {
        let obj = t.object().to_lowercase();
        let schema = t.schema().map(str::to_lowercase);
        let s = |n: u16| ColType::NVarChar(n);
        if schema.as_deref() == Some("sys") && (obj == "databases" || obj == "database_mirroring") {
            let rows = self.db_rows()?;
            let mut all: Vec<(i64, String, Option<&DbRow>)> = SYSTEM_DBS
                .iter()
                .enumerate()
                .map(|(i, n)| (i as i64 + 1, n.to_string(), None))
                .collect();
            for (i, r) in rows.iter().enumerate() {
                all.push((i as i64 + 5, r.name.as_str().to_string(), Some(r)));
            }
            if obj == "databases" {
                let cols = vec![
                    Column::new("database_id", ColType::Int),
                    Column::new("name", s(128)),
                    Column::new("state", ColType::Int),
                    Column::new("state_desc", s(60)),
                    Column::new("is_read_only", ColType::Bit),
                    Column::new("user_access_desc", s(60)),
                    // 1 for a copy restored WITH STANDBY:
                    // https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-databases-transact-sql
                    Column::new("is_in_standby", ColType::Bit),
                    // varbinary(85) on SQL Server; the simulator has no varbinary, so it
                    // carries the owner's login name, which SUSER_SNAME maps back to itself.
                    Column::new("owner_sid", s(128)),
                ];
                let rows = all
                    .iter()
                    .map(|(id, name, r)| {
                        let (state, desc, ro, standby) = match r {
                            Some(r) => (
                                state_code(r.state.as_desc()),
                                r.state.as_desc().to_string(),
                                r.read_only,
                                r.in_standby,
                            ),
                            None => (0, "ONLINE".to_string(), false, false),
                        };
                        vec![
                            Value::Int(*id),
                            nv(name.clone()),
                            Value::Int(state),
                            nv(desc),
                            Value::Bit(ro),
                            nv("MULTI_USER"),
                            Value::Bit(standby),
                            nv(match r {
                                Some(r) => self.estate.database_owner(&self.addr, &r.name),
                                None => "sa".to_string(),
                            }),
                        ]
                    })
                    .collect();
                return Ok(Table { cols, rows });
            }
            let cols = vec![
                Column::new("database_id", ColType::Int),
                Column::new("mirroring_role_desc", s(60)),
                Column::new("mirroring_state_desc", s(60)),
                Column::new("mirroring_partner_name", s(128)),
                Column::new("mirroring_partner_instance", s(128)),
                Column::new("mirroring_safety_level_desc", s(60)),
                Column::new("mirroring_witness_name", s(128)),
                Column::new("mirroring_witness_state_desc", s(60)),
                Column::new("mirroring_failover_lsn", ColType::BigInt),
            ];
            // "To see non-NULL values on a mirror database, you must be a member of the
            // sysadmin fixed server role":
            // https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql
            let sees_mirror = self.estate.session_grants(self.id)?.1.sees_mirror_columns();
            let rows = all
                .iter()
                .map(|(id, _, r)| {
                    match r
                        .and_then(|r| r.mirroring.as_ref())
                        .filter(|m| sees_mirror || m.role != MirrorRole::Mirror)
                    {
                        Some(m) => vec![
                            Value::Int(*id),
                            nv(match m.role {
                                MirrorRole::Principal => "PRINCIPAL",
                                MirrorRole::Mirror => "MIRROR",
                            }),
                            nv(m.state.as_desc()),
                            nv(format!("TCP://{}:5022", m.partner.host())),
                            nv(m.partner_instance()),
                            nv(if m.safety_full { "FULL" } else { "OFF" }),
                            // "NULL = No witness exists"; the state as this instance sees
                            // it (UNKNOWN, CONNECTED, DISCONNECTED), same page as above.
                            opt_str(m.witness.as_ref().map(|w| w.name.clone())),
                            opt_str(m.witness.as_ref().map(|w| w.state.as_desc().to_string())),
                            Value::Int(m.failover_lsn as i64),
                        ],
                        None => {
                            let mut v = vec![Value::Int(*id)];
                            v.extend(std::iter::repeat_n(Value::Null, 8));
                            v
                        }
                    }
                })
                .collect();
            return Ok(Table { cols, rows });
        }
        if obj == POSITION_TABLE {
            self.control_db_check(t, false)?;
            let rows = self
                .db_rows()?
                .into_iter()
                .map(|r| vec![nv(r.name.as_str()), Value::Int(r.position as i64)])
                .collect();
            return Ok(Table {
                cols: vec![
                    Column::new("database_name", s(128)),
                    Column::new("position", ColType::BigInt),
                ],
                rows,
            });
        }
        if obj == LOCATION_TABLE {
            self.control_db_check(t, false)?;
            if !self.location_table_exists()? {
                return Err(invalid_object(t));
            }
            let rows = self
                .estate
                .read_location(self.id)?
                .map(|r| {
                    vec![
                        Value::Int(1),
                        Value::Int(r.epoch as i64),
                        nv(r.active.principal.to_string()),
                        opt_str(r.active.mirror.as_ref().map(|m| m.to_string())),
                        nv(r.run_id),
                    ]
                })
                .into_iter()
                .collect();
            return Ok(Table {
                cols: vec![
                    Column::new("id", ColType::Int),
                    Column::new("epoch", ColType::BigInt),
                    Column::new("active_principal", s(300)),
                    Column::new("active_mirror", s(300)),
                    Column::new("run_id", s(200)),
                ],
                rows,
            });
        }
        Err(invalid_object(t))
    }

    fn col_lookup<'a>(env: &'a Env<'a>, q: &Option<String>, name: &str) -> R<(ColType, Value)> {
        for (alias, table, row) in env {
            if q.as_ref().is_some_and(|q| q != alias) {
                continue;
            }
            if let Some(i) = table.cols.iter().position(|c| c.name == name) {
                let v = row.map_or(Value::Null, |r| table.rows[r][i].clone());
                return Ok((table.cols[i].ty, v));
            }
        }
        let shown = match q {
            Some(q) => format!("{q}.{name}"),
            None => name.to_string(),
        };
        if let Some(q) = q
            && !env.iter().any(|(a, _, _)| a == q)
        {
            return Err(SqlMessage::new(
                4104,
                16,
                1,
                format!("The multi-part identifier \"{shown}\" could not be bound."),
            )
            .into());
        }
        Err(SqlMessage::new(207, 16, 1, format!("Invalid column name '{name}'.")).into())
    }

    /// Evaluates an expression to its type and value.
    fn eval(&self, e: &Expr, env: &Env<'_>) -> R<(ColType, Value)> {
        Ok(match e {
            Expr::Col(q, name) => Self::col_lookup(env, q, name)?,
            Expr::Lit(Value::Int(i)) => (
                if i32::try_from(*i).is_ok() {
                    ColType::Int
                } else {
                    ColType::BigInt
                },
                Value::Int(*i),
            ),
            Expr::Lit(Value::Str(s)) => (
                ColType::NVarChar(s.chars().count().clamp(1, 4000) as u16),
                Value::Str(s.clone()),
            ),
            Expr::Lit(v) => (ColType::Int, v.clone()),
            Expr::Var(v) => match self.vars.get(v) {
                Some((t, val)) => (ty_of(*t), val.clone()),
                None => {
                    return Err(SqlMessage::new(
                        137,
                        15,
                        2,
                        format!("Must declare the scalar variable \"{v}\"."),
                    )
                    .into());
                }
            },
            Expr::Global(g) => match g.as_str() {
                "VERSION" => (ColType::NVarChar(300), nv(self.estate.version(self.id)?)),
                "SPID" => (ColType::Int, Value::Int(self.spid as i64)),
                "SERVERNAME" => (ColType::NVarChar(128), nv(self.server_name())),
                "SERVICENAME" => (ColType::NVarChar(128), nv(self.instance_name())),
                "TRANCOUNT" | "ROWCOUNT" | "ERROR" => (ColType::Int, Value::Int(0)),
                _ => {
                    return Err(SqlMessage::new(
                        137,
                        15,
                        2,
                        format!("Must declare the scalar variable \"@@{g}\"."),
                    )
                    .into());
                }
            },
            Expr::Cast(inner, t) => {
                let (_, v) = self.eval(inner, env)?;
                (ty_of(*t), cast(v, *t)?)
            }
            Expr::Func(f, args) => self.func(f, args, env)?,
            Expr::Star(_) => {
                return Err(
                    SqlMessage::new(263, 16, 1, "Must specify table to select from.").into(),
                );
            }
        })
    }

    /// `@@SERVERNAME` / `SERVERPROPERTY('ServerName')`: what the estate says this server
    /// calls itself, computer name and instance (`SQLB01\RTC`), no domain, no port:
    /// <https://learn.microsoft.com/en-us/sql/t-sql/functions/serverproperty-transact-sql>.
    fn server_name(&self) -> String {
        self.estate.server_name(&self.addr)
    }

    fn instance_name(&self) -> String {
        self.addr
            .instance()
            .map_or("MSSQLSERVER".to_string(), |i| i.to_string())
    }

    fn str_arg(&self, args: &[Expr], i: usize, env: &Env<'_>) -> R<Option<String>> {
        match args.get(i) {
            Some(e) => Ok(match self.eval(e, env)?.1 {
                Value::Str(s) => Some(s),
                Value::Int(n) => Some(n.to_string()),
                _ => None,
            }),
            None => Ok(None),
        }
    }

    fn func(&self, f: &str, args: &[Expr], env: &Env<'_>) -> R<(ColType, Value)> {
        let arity = |n: usize| -> R<()> {
            if args.len() == n {
                Ok(())
            } else {
                Err(SqlMessage::new(
                    174,
                    15,
                    1,
                    format!(
                        "The {} function requires {n} argument(s).",
                        f.to_lowercase()
                    ),
                )
                .into())
            }
        };
        Ok(match f {
            "SERVERPROPERTY" => {
                arity(1)?;
                let p = self.str_arg(args, 0, env)?.unwrap_or_default();
                let v = match p.to_ascii_lowercase().as_str() {
                    "productversion" => {
                        let v = self.estate.version(self.id)?;
                        nv(v.split_whitespace()
                            .find(|w| w.chars().filter(|c| *c == '.').count() == 3)
                            .unwrap_or("15.0.2000.5"))
                    }
                    "servername" => nv(self.server_name()),
                    "machinename" => nv(self.addr.host().to_string()),
                    "instancename" => opt_str(self.addr.instance().map(|i| i.to_string())),
                    "edition" => nv("Developer Edition (64-bit)"),
                    "productlevel" => nv("RTM"),
                    "engineedition" => nv("3"),
                    "ishadrenabled" | "isclustered" => nv("0"),
                    _ => Value::Null,
                };
                (ColType::NVarChar(128), v)
            }
            "DB_ID" => {
                let name = if args.is_empty() {
                    Some(self.db.clone())
                } else {
                    self.str_arg(args, 0, env)?
                };
                let Some(name) = name else {
                    return Ok((ColType::Int, Value::Null));
                };
                let id = match SYSTEM_DBS
                    .iter()
                    .position(|s| s.eq_ignore_ascii_case(&name))
                {
                    Some(i) => Some(i as i64 + 1),
                    None => self
                        .db_rows()?
                        .iter()
                        .position(|r| r.name.as_str().eq_ignore_ascii_case(&name))
                        .map(|i| i as i64 + 5),
                };
                (ColType::Int, id.map_or(Value::Null, Value::Int))
            }
            "DB_NAME" => {
                if args.is_empty() {
                    (ColType::NVarChar(128), nv(self.db.clone()))
                } else {
                    let (_, id) = self.eval(&args[0], env)?;
                    let v = match id {
                        Value::Int(i) if (1..=4).contains(&i) => nv(SYSTEM_DBS[i as usize - 1]),
                        Value::Int(i) if i >= 5 => opt_str(
                            self.db_rows()?
                                .get(i as usize - 5)
                                .map(|r| r.name.as_str().to_string()),
                        ),
                        _ => Value::Null,
                    };
                    (ColType::NVarChar(128), v)
                }
            }
            "APPLOCK_MODE" => {
                arity(3)?;
                let resource = self.str_arg(args, 1, env)?.unwrap_or_default();
                let owner = self.str_arg(args, 2, env)?.unwrap_or_default();
                let held = owner.eq_ignore_ascii_case("Session")
                    && self.estate.app_lock_held(self.id, &resource)?;
                (
                    ColType::NVarChar(32),
                    nv(if held { "Exclusive" } else { "NoLock" }),
                )
            }
            // The login functions answer from the estate's grants (backend_fake::grants, where
            // each rule cites its page):
            // https://learn.microsoft.com/en-us/sql/t-sql/functions/suser-sname-transact-sql
            // https://learn.microsoft.com/en-us/sql/t-sql/functions/is-srvrolemember-transact-sql
            // https://learn.microsoft.com/en-us/sql/t-sql/functions/has-perms-by-name-transact-sql
            "SUSER_SNAME" => {
                let v = if args.is_empty() {
                    nv(self.estate.session_grants(self.id)?.0)
                } else {
                    // `owner_sid` carries the owner's login name here (no varbinary).
                    opt_str(self.str_arg(args, 0, env)?)
                };
                (ColType::NVarChar(128), v)
            }
            "IS_SRVROLEMEMBER" => {
                if args.is_empty() || args.len() > 2 {
                    arity(1)?;
                }
                let role = self.str_arg(args, 0, env)?.unwrap_or_default();
                let (login, grants) = self.estate.session_grants(self.id)?;
                let v = match self.str_arg(args, 1, env)? {
                    // Another login than the current one: the simulator can only answer for
                    // the session's own login; others are "not valid" (NULL).
                    Some(other) if !other.eq_ignore_ascii_case(&login) => None,
                    _ => grants.is_srvrolemember(&role),
                };
                (
                    ColType::Int,
                    v.map_or(Value::Null, |b| Value::Int(b as i64)),
                )
            }
            "HAS_PERMS_BY_NAME" => {
                if args.len() < 3 {
                    arity(3)?;
                }
                let securable = self.str_arg(args, 0, env)?;
                let class = self.str_arg(args, 1, env)?.unwrap_or_default();
                let permission = self.str_arg(args, 2, env)?.unwrap_or_default();
                let (_, grants) = self.estate.session_grants(self.id)?;
                // A snapshot, not db_rows: a permission check does not advance the estate's
                // clock (db_rows ticks once per call, which would speed replication up).
                let snap = self.estate.snapshot();
                let rows = snap
                    .instances
                    .get(&self.addr)
                    .map(|i| i.databases.clone())
                    .unwrap_or_default();
                let accessible = |d: &DatabaseName| {
                    rows.iter()
                        .any(|r| &r.name == d && r.state == failover_core::DbState::Online)
                };
                let is_location = class.eq_ignore_ascii_case("OBJECT")
                    && securable
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(LOCATION_TABLE));
                let v = if is_location && !self.location_table_exists()? {
                    None
                } else {
                    grants.has_perms_by_name(securable.as_deref(), &class, &permission, accessible)
                };
                (
                    ColType::Int,
                    v.map_or(Value::Null, |b| Value::Int(b as i64)),
                )
            }
            "OBJECT_ID" => {
                let name = self.str_arg(args, 0, env)?.unwrap_or_default();
                let exists =
                    name.to_lowercase().contains(LOCATION_TABLE) && self.location_table_exists()?;
                (
                    ColType::Int,
                    if exists {
                        Value::Int(245575913)
                    } else {
                        Value::Null
                    },
                )
            }
            _ => {
                return Err(SqlMessage::new(
                    195,
                    15,
                    10,
                    format!(
                        "'{}' is not a recognized built-in function name.",
                        f.to_lowercase()
                    ),
                )
                .into());
            }
        })
    }

    fn test(&self, c: &Cond, env: &Env<'_>) -> R<bool> {
        Ok(match c {
            Cond::And(all) => {
                for c in all {
                    if !self.test(c, env)? {
                        return Ok(false);
                    }
                }
                true
            }
            Cond::Eq(a, b) => sql_eq(&self.eval(a, env)?.1, &self.eval(b, env)?.1) == Some(true),
            Cond::In(a, list) => {
                let v = self.eval(a, env)?.1;
                let mut any = false;
                for e in list {
                    any |= sql_eq(&v, &self.eval(e, env)?.1) == Some(true);
                }
                any
            }
            Cond::IsNull(a, is_null) => (self.eval(a, env)?.1 == Value::Null) == *is_null,
        })
    }

    fn select(&self, s: &Select) -> R<Vec<Output>> {
        let tables: Vec<Table> = s
            .from
            .iter()
            .map(|src| self.load_table(&src.table))
            .collect::<R<_>>()?;
        let aliases: Vec<&str> = s.from.iter().map(|src| src.alias.as_str()).collect();
        // Build the joined row combinations.
        let mut combos: Vec<Vec<Option<usize>>> = Vec::new();
        match tables.len() {
            0 => combos.push(vec![]),
            1 => combos.extend((0..tables[0].rows.len()).map(|i| vec![Some(i)])),
            _ => {
                let (a, b) = s.join_on.as_ref().expect("parser gives an ON for a join");
                for i in 0..tables[0].rows.len() {
                    let mut matched = false;
                    for j in 0..tables[1].rows.len() {
                        let env: Vec<_> = vec![
                            (aliases[0], &tables[0], Some(i)),
                            (aliases[1], &tables[1], Some(j)),
                        ];
                        if sql_eq(&self.eval(a, &env)?.1, &self.eval(b, &env)?.1) == Some(true) {
                            combos.push(vec![Some(i), Some(j)]);
                            matched = true;
                        }
                    }
                    if !matched {
                        combos.push(vec![Some(i), None]);
                    }
                }
            }
        }
        // Expand `*` / `alias.*`.
        let mut items: Vec<(Expr, Option<String>)> = Vec::new();
        for (e, a) in &s.items {
            match e {
                Expr::Star(q) if !tables.is_empty() => {
                    let mut any = false;
                    for (k, t) in tables.iter().enumerate() {
                        if q.as_deref().is_some_and(|q| q != aliases[k]) {
                            continue;
                        }
                        any = true;
                        for c in &t.cols {
                            items.push((
                                Expr::Col(Some(aliases[k].to_string()), c.name.clone()),
                                None,
                            ));
                        }
                    }
                    if !any {
                        let q = q.clone().unwrap_or_default();
                        return Err(SqlMessage::new(107, 16, 1, format!("The column prefix '{q}' does not match with a table name or alias name used in the query.")).into());
                    }
                }
                other => items.push((other.clone(), a.clone())),
            }
        }
        let env_of = |c: &Vec<Option<usize>>| -> Vec<(&str, &Table, Option<usize>)> {
            c.iter()
                .enumerate()
                .map(|(k, r)| (aliases[k], &tables[k], *r))
                .collect()
        };
        let mut kept = Vec::new();
        for c in &combos {
            let env = env_of(c);
            if let Some(f) = &s.filter
                && !self.test(f, &env)?
            {
                continue;
            }
            kept.push(c.clone());
        }
        if !s.order.is_empty() {
            let mut keyed = Vec::new();
            for c in kept {
                let env = env_of(&c);
                let keys = s
                    .order
                    .iter()
                    .map(|(e, _)| self.eval(e, &env).map(|x| x.1))
                    .collect::<R<Vec<_>>>()?;
                keyed.push((keys, c));
            }
            keyed.sort_by(|(ka, _), (kb, _)| {
                for (i, (_, desc)) in s.order.iter().enumerate() {
                    let o = cmp_values(&ka[i], &kb[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            kept = keyed.into_iter().map(|(_, c)| c).collect();
        }
        // Column types come from evaluating against a NULL row (types do not depend on data).
        let null_env: Vec<_> = aliases
            .iter()
            .zip(&tables)
            .map(|(a, t)| (*a, t, None))
            .collect();
        let mut columns = Vec::new();
        for (e, alias) in &items {
            let ty = if kept.is_empty() {
                self.eval(e, &null_env)?.0
            } else {
                self.eval(e, &env_of(&kept[0]))?.0
            };
            let name = alias.clone().unwrap_or_else(|| match e {
                Expr::Col(_, n) => n.clone(),
                _ => String::new(),
            });
            columns.push(Column::new(name, ty));
        }
        let mut rows = Vec::new();
        for c in &kept {
            let env = env_of(c);
            rows.push(
                s.items
                    .iter()
                    .map(|(e, _)| self.eval(e, &env).map(|x| x.1))
                    .collect::<R<Vec<_>>>()?,
            );
        }
        let n = rows.len() as u64;
        Ok(vec![
            Output::Rows { columns, rows },
            Output::Done {
                rows: Some(n),
                error: false,
            },
        ])
    }

    fn exec_proc(
        &mut self,
        ret: &Option<String>,
        proc_name: &str,
        args: &[(Option<String>, Expr)],
    ) -> R<Vec<Output>> {
        let mut named: HashMap<String, Value> = HashMap::new();
        for (i, (n, e)) in args.iter().enumerate() {
            let key = n.clone().unwrap_or_else(|| format!("#{i}"));
            named.insert(key, self.eval(e, &[])?.1);
        }
        let get = |k: &str, pos: usize| -> Option<String> {
            match named.get(k).or_else(|| named.get(&format!("#{pos}"))) {
                Some(Value::Str(s)) => Some(s.clone()),
                Some(Value::Int(i)) => Some(i.to_string()),
                _ => None,
            }
        };
        let missing = |p: &str, param: &str| -> Failure {
            SqlMessage::new(201, 16, 4, format!("Procedure or function '{p}' expects parameter '{param}', which was not supplied."))
                .into()
        };
        let code = match proc_name.to_ascii_lowercase().as_str() {
            "sp_getapplock" => {
                let resource =
                    get("@resource", 0).ok_or_else(|| missing("sp_getapplock", "@Resource"))?;
                let mode =
                    get("@lockmode", 1).ok_or_else(|| missing("sp_getapplock", "@LockMode"))?;
                let owner = get("@lockowner", 2).unwrap_or_else(|| "Transaction".into());
                let timeout: i64 = get("@locktimeout", 3)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(-1);
                if !owner.eq_ignore_ascii_case("Session")
                    || !mode.eq_ignore_ascii_case("Exclusive")
                    || timeout != 0
                {
                    // Only the non-waiting, session-owned exclusive lock the backends take is
                    // simulated; anything else is a call error (-999), not a silent grant.
                    -999
                } else {
                    self.estate.get_app_lock(self.id, &resource)?
                }
            }
            "sp_releaseapplock" => {
                let resource =
                    get("@resource", 0).ok_or_else(|| missing("sp_releaseapplock", "@Resource"))?;
                let owner = get("@lockowner", 1).unwrap_or_else(|| "Transaction".into());
                if !owner.eq_ignore_ascii_case("Session") {
                    return Err(msg(SqlError::applock_not_held(&resource)).into());
                }
                self.estate.release_app_lock(self.id, &resource)?
            }
            _ => {
                return Err(SqlMessage::new(
                    2812,
                    16,
                    62,
                    format!("Could not find stored procedure '{proc_name}'."),
                )
                .into());
            }
        };
        if let Some(r) = ret {
            self.assign(r, Value::Int(code as i64))?;
        }
        Ok(vec![
            Output::ReturnStatus(code),
            Output::Done {
                rows: None,
                error: false,
            },
        ])
    }

    fn assign(&mut self, var: &str, v: Value) -> R<()> {
        match self.vars.get_mut(var) {
            Some((t, slot)) => {
                *slot = cast(v, *t)?;
                Ok(())
            }
            None => Err(SqlMessage::new(
                137,
                15,
                1,
                format!("Must declare the scalar variable \"{var}\"."),
            )
            .into()),
        }
    }

    fn location_values(&self, cols: &[String], vals: &[Value]) -> R<LocationRecord> {
        let get = |c: &str| {
            cols.iter()
                .position(|x| x == c)
                .map(|i| vals[i].clone())
                .unwrap_or(Value::Null)
        };
        let epoch = match get("epoch") {
            Value::Int(e) if e >= 0 => e as u64,
            other => return Err(conversion_failed(&other, "bigint")),
        };
        let addr = |v: Value| -> R<Option<InstanceAddr>> {
            match v {
                Value::Null => Ok(None),
                Value::Str(s) => InstanceAddr::parse(&s)
                    .map(Some)
                    .map_err(|_| conversion_failed(&Value::Str(s), "instance address")),
                other => Err(conversion_failed(&other, "nvarchar")),
            }
        };
        let not_null = |c: &str| -> Failure {
            SqlMessage::new(515, 16, 2, format!("Cannot insert the value NULL into column '{c}', table '{LOCATION_TABLE}'; column does not allow nulls. INSERT fails.")).into()
        };
        let principal =
            addr(get("active_principal"))?.ok_or_else(|| not_null("active_principal"))?;
        let mirror = addr(get("active_mirror"))?;
        let run_id = match get("run_id") {
            Value::Str(s) => s,
            _ => return Err(not_null("run_id")),
        };
        let active = Store::new(principal, mirror)
            .map_err(|e| SqlMessage::new(547, 16, 0, e.to_string()))?;
        Ok(LocationRecord {
            epoch,
            active,
            run_id,
        })
    }

    /// Compare-and-swap of the location record; a conflict affects 0 rows (not an error).
    fn write_location(
        &mut self,
        t: &TableName,
        cols: &[String],
        vals: &[Value],
        expected: Option<u64>,
    ) -> R<Vec<Output>> {
        if t.object().to_lowercase() != LOCATION_TABLE {
            return Err(invalid_object(t));
        }
        self.control_db_check(t, true)?;
        if !self.location_table_exists()? {
            return Err(invalid_object(t));
        }
        let rec = self.location_values(cols, vals)?;
        let n = match self.estate.write_location(self.id, &rec, expected) {
            Ok(()) => 1,
            Err(e) if e.number == LOCATION_CONFLICT => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(vec![Output::Done {
            rows: Some(n),
            error: false,
        }])
    }

    fn stmt(&mut self, s: &Stmt) -> R<Vec<Output>> {
        let done = vec![Output::Done {
            rows: None,
            error: false,
        }];
        match s {
            Stmt::Select(sel) => self.select(sel),
            Stmt::Use(db) => {
                let old = self.db.clone();
                self.use_db(db)?;
                Ok(vec![
                    Output::DatabaseChanged {
                        new: self.db.clone(),
                        old,
                    },
                    Output::Message(SqlMessage::new(
                        5701,
                        0,
                        1,
                        format!("Changed database context to '{}'.", self.db),
                    )),
                    Output::Done {
                        rows: None,
                        error: false,
                    },
                ])
            }
            Stmt::Declare(vars) => {
                for (v, t, init) in vars {
                    let val = match init {
                        Some(e) => cast(self.eval(e, &[])?.1, *t)?,
                        None => Value::Null,
                    };
                    if self.vars.contains_key(v) {
                        return Err(SqlMessage::new(134, 15, 1, format!("The variable name '{v}' has already been declared. Variable names must be unique within a query batch or stored procedure.")).into());
                    }
                    self.vars.insert(v.clone(), (*t, val));
                }
                Ok(done)
            }
            Stmt::SetVar(v, e) => {
                let val = self.eval(e, &[])?.1;
                self.assign(v, val)?;
                Ok(done)
            }
            Stmt::SetOption => Ok(done),
            Stmt::SetLockTimeout(ms) => {
                self.lock_timeout_ms = *ms;
                Ok(done)
            }
            Stmt::Exec {
                ret,
                proc_name,
                args,
            } => self.exec_proc(ret, proc_name, args),
            Stmt::AlterReadOnly { db, read_only } => self
                .alter_read_only(db, *read_only)
                .map(|()| done)
                // Every failed ALTER DATABASE ends with 5069 "ALTER DATABASE statement
                // failed." after the specific error (5011, 1468, 5052, 5063…):
                // https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-5000-to-5999
                .map_err(|f| f.with_trailer(alter_failed())),
            Stmt::AlterPartner { db, forced } => {
                let name = Self::db_name(db)?;
                let r = if *forced {
                    self.estate.force_service(self.id, &name).map(|_| ())
                } else {
                    self.estate.set_partner_failover(self.id, &name).map(|_| ())
                };
                // Without ALTER on the database: 5011, then 5069 as for every ALTER DATABASE.
                r.map_err(|e| match e.number {
                    5011 => Failure::from(e).with_trailer(alter_failed()),
                    _ => Failure::from(e),
                })?;
                Ok(done)
            }
            Stmt::Restore(db) => {
                // A failed RESTORE ends with 3013 "RESTORE DATABASE is terminating
                // abnormally." after the specific error (3101, 3104, 3117…):
                // https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-3000-to-3999
                let terminated =
                    || SqlMessage::new(3013, 16, 1, "RESTORE DATABASE is terminating abnormally.");
                if is_system(db) {
                    return Err(Failure::from(SqlMessage::new(
                        3101,
                        16,
                        1,
                        "Exclusive access could not be obtained because the database is in use.",
                    ))
                    .with_trailer(terminated()));
                }
                self.estate
                    .restore_with_recovery(self.id, &Self::db_name(db)?)
                    .map_err(|e| Failure::from(e).with_trailer(terminated()))?;
                Ok(vec![
                    Output::Message(SqlMessage::new(
                        3014,
                        0,
                        1,
                        "RESTORE DATABASE successfully processed 0 pages.",
                    )),
                    Output::Done {
                        rows: None,
                        error: false,
                    },
                ])
            }
            Stmt::CreateTableIfMissing { table, .. } => {
                if table.object().to_lowercase() != LOCATION_TABLE {
                    return Err(SqlMessage::new(
                        262,
                        14,
                        1,
                        format!("CREATE TABLE permission denied in database '{}'.", self.db),
                    )
                    .into());
                }
                self.control_db_check(table, true)?;
                self.shared
                    .location_tables
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(self.addr.clone());
                Ok(done)
            }
            Stmt::InsertSelect {
                table,
                columns,
                values,
            } => {
                let vals = values
                    .iter()
                    .map(|e| self.eval(e, &[]).map(|x| x.1))
                    .collect::<R<Vec<_>>>()?;
                self.write_location(table, columns, &vals, None)
            }
            Stmt::Update {
                table,
                sets,
                filter,
            } => {
                // WHERE id = 1 AND epoch = <expected>
                let mut expected = None;
                let mut conds = Vec::new();
                match filter {
                    Some(Cond::And(all)) => conds.extend(all.iter()),
                    Some(c) => conds.push(c),
                    None => {}
                }
                for c in conds {
                    if let Cond::Eq(Expr::Col(_, col), e) = c
                        && col == "epoch"
                        && let Value::Int(n) = self.eval(e, &[])?.1
                    {
                        expected = Some(n as u64);
                    }
                }
                let Some(expected) = expected else {
                    return Err(SqlMessage::new(
                        50001,
                        16,
                        1,
                        "The simulator only supports the compare-and-swap UPDATE of the location record (WHERE id = 1 AND epoch = n).",
                    )
                    .into());
                };
                let cols: Vec<String> = sets.iter().map(|(c, _)| c.clone()).collect();
                let vals = sets
                    .iter()
                    .map(|(_, e)| self.eval(e, &[]).map(|x| x.1))
                    .collect::<R<Vec<_>>>()?;
                self.write_location(table, &cols, &vals, Some(expected))
            }
        }
    }

    /// Runs a batch: parse all, consult the estate's fault for the batch's operation, then run
    /// statement by statement (a failing statement reports its error; the batch goes on).
    async fn batch(&mut self, sql: &str) -> Reply {
        if !self.estate.session_alive(self.id) {
            return Reply::Disconnect;
        }
        let stmts = match parse_batch(sql) {
            Ok(s) => s,
            Err(m) => {
                return Reply::Tokens(vec![
                    Output::Message(m),
                    Output::Done {
                        rows: None,
                        error: true,
                    },
                ]);
            }
        };
        self.run(&stmts).await
    }

    /// Runs parsed statements with the batch's fault (see [`operation_of`]).
    async fn run(&mut self, stmts: &[Stmt]) -> Reply {
        if !self.estate.session_alive(self.id) {
            return Reply::Disconnect;
        }
        let mut fault = None;
        if let Some(op) = operation_of(stmts) {
            fault = pre_fault(self.estate.fault_for(&self.addr, op)).await;
        }
        let mut crash_after = false;
        match fault {
            Some(Fault::Error(e)) => {
                return Reply::Tokens(vec![
                    Output::Message(msg(e)),
                    Output::Done {
                        rows: None,
                        error: true,
                    },
                ]);
            }
            Some(Fault::Disconnect) | Some(Fault::Crash { applied: false }) => {
                self.estate.close_session(self.id);
                return Reply::Disconnect;
            }
            Some(Fault::Crash { applied: true }) => crash_after = true,
            _ => {}
        }
        let mut out = Vec::new();
        for s in stmts {
            if let Stmt::AlterReadOnly { db, .. } = s
                && let Err(m) = self.wait_for_database_lock(db).await
            {
                out.extend(m.into_iter().map(Output::Message));
                out.push(Output::Done {
                    rows: None,
                    error: true,
                });
                continue;
            }
            let disconnect_after =
                matches!(s, Stmt::AlterPartner { db, .. } if db.eq_ignore_ascii_case(&self.db));
            match self.stmt(s) {
                // "On the former principal, clients are disconnected from the database":
                // a session whose context is the database loses its connection, the issuing
                // one included (the backends prefix every batch with `USE [master];`).
                // https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/manually-fail-over-a-database-mirroring-session-transact-sql
                Ok(_) if disconnect_after => {
                    self.estate.close_session(self.id);
                    return Reply::Disconnect;
                }
                Ok(o) => out.extend(o),
                Err(Failure {
                    disconnect: true, ..
                }) => return Reply::Disconnect,
                Err(Failure { m, trailer, .. }) => {
                    out.push(Output::Message(m));
                    out.extend(trailer.map(Output::Message));
                    out.push(Output::Done {
                        rows: None,
                        error: true,
                    });
                }
            }
        }
        // Local variables live for one batch.
        self.vars.clear();
        if crash_after {
            self.estate.close_session(self.id);
            return Reply::Disconnect;
        }
        Reply::Tokens(out)
    }

    /// Waits while another session holds a lock on `db` ([`DatabaseBlock`]), at most the
    /// session's `SET LOCK_TIMEOUT`; then 1222 and 5069 (the statement fails, the batch goes
    /// on). "A value of -1 (default) indicates no time-out period (that is, wait forever)";
    /// 0 "means to not wait at all":
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/set-lock-timeout-transact-sql>.
    async fn wait_for_database_lock(&self, db: &str) -> Result<(), Vec<SqlMessage>> {
        let deadline = (self.lock_timeout_ms >= 0).then(|| {
            tokio::time::Instant::now()
                + std::time::Duration::from_millis(self.lock_timeout_ms as u64)
        });
        loop {
            let released = self.shared.unblocked.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.shared.is_blocked(&self.addr, db) {
                return Ok(());
            }
            match deadline {
                None => released.await,
                Some(d) => {
                    if tokio::time::timeout_at(d, released).await.is_err()
                        && self.shared.is_blocked(&self.addr, db)
                    {
                        // 5069 after 1222 as for every failed ALTER DATABASE (inference: the
                        // pair is what transcripts show; no page lists it).
                        return Err(vec![
                            SqlMessage::new(1222, 16, 56, "Lock request time out period exceeded."),
                            SqlMessage::new(5069, 16, 1, "ALTER DATABASE statement failed."),
                        ]);
                    }
                }
            }
        }
    }

    async fn rpc(&mut self, call: RpcCall) -> Reply {
        let name = call
            .proc_name
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        if name.eq_ignore_ascii_case("sp_getapplock")
            || name.eq_ignore_ascii_case("sp_releaseapplock")
        {
            // A direct procedure call (e.g. ODBC `{? = call sp_getapplock(…)}`).
            let args = call
                .params
                .into_iter()
                .map(|p| {
                    (
                        (!p.name.is_empty()).then(|| p.name.to_ascii_lowercase()),
                        Expr::Lit(p.value),
                    )
                })
                .collect();
            let stmt = Stmt::Exec {
                ret: None,
                proc_name: name,
                args,
            };
            self.vars.clear();
            return self.run(std::slice::from_ref(&stmt)).await;
        }
        let mut params = call.params;
        match name.to_ascii_lowercase().as_str() {
            // sp_executesql @stmt, @params, values…:
            // https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-executesql-transact-sql
            "sp_executesql" => {
                let values = params.split_off(params.len().min(2));
                let mut it = params.into_iter();
                let sql = match statement_text(it.next(), "sp_executesql", "@statement") {
                    Ok(s) => s,
                    Err(m) => return error_reply(m),
                };
                let decl = it.next().map(|p| p.value);
                self.exec_bound(&sql, decl.as_ref(), values, Vec::new())
                    .await
            }
            // sp_prepare @handle OUTPUT, @params, @stmt [, @options]: returns the handle.
            // https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-prepare-transact-sql
            // sp_prepexec @handle OUTPUT, @params, @stmt [, values…]: prepares, then executes.
            // https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-prepexec-transact-sql
            proc @ ("sp_prepare" | "sp_prepexec") => {
                if params.len() < 3 {
                    let which = ["@handle", "@params", "@stmt"][params.len()];
                    return error_reply(SqlMessage::new(
                        201,
                        16,
                        4,
                        format!(
                            "Procedure or function '{proc}' expects parameter '{which}', which was not supplied."
                        ),
                    ));
                }
                let values = params.split_off(3);
                let mut it = params.into_iter();
                let handle_param = it.next().expect("three parameters");
                let decl = it.next().expect("three parameters").value;
                let sql = match statement_text(it.next(), proc, "@stmt") {
                    Ok(s) => s,
                    Err(m) => return error_reply(m),
                };
                let decl = match decl {
                    Value::Str(d) => Some(d),
                    _ => None,
                };
                let handle = self.next_handle;
                self.next_handle += 1;
                self.prepared.insert(handle, (decl.clone(), sql.clone()));
                let ret = vec![Output::ReturnValue {
                    ordinal: 0,
                    name: handle_param.name,
                    value: Value::Int(handle as i64),
                }];
                if proc == "sp_prepare" {
                    let mut out = vec![Output::ReturnStatus(0)];
                    out.extend(ret);
                    return Reply::Tokens(out);
                }
                let decl = decl.map(Value::Str);
                self.exec_bound(&sql, decl.as_ref(), values, ret).await
            }
            // sp_execute @handle [, values…]; sp_unprepare @handle. A handle this session did
            // not prepare is error 8179 ("Could not find prepared statement with handle %d.").
            // https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-execute-transact-sql
            // https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-unprepare-transact-sql
            proc @ ("sp_execute" | "sp_unprepare") => {
                if params.is_empty() {
                    return error_reply(SqlMessage::new(
                        201,
                        16,
                        4,
                        format!(
                            "Procedure or function '{proc}' expects parameter '@handle', which was not supplied."
                        ),
                    ));
                }
                let values = params.split_off(1);
                let handle = match params[0].value {
                    Value::Int(h) => i32::try_from(h).unwrap_or(-1),
                    _ => -1,
                };
                let Some((decl, sql)) = self.prepared.get(&handle).cloned() else {
                    return error_reply(SqlMessage::new(
                        8179,
                        16,
                        2,
                        format!("Could not find prepared statement with handle {handle}."),
                    ));
                };
                if proc == "sp_unprepare" {
                    self.prepared.remove(&handle);
                    return Reply::Tokens(vec![Output::ReturnStatus(0)]);
                }
                let decl = decl.map(Value::Str);
                self.exec_bound(&sql, decl.as_ref(), values, Vec::new())
                    .await
            }
            _ => error_reply(SqlMessage::new(
                2812,
                16,
                62,
                format!("Could not find stored procedure '{}'.", call.proc_name),
            )),
        }
    }

    /// Runs `sql` with `values` bound to the variables `decl` declares (by name, or by
    /// position for unnamed parameters), then RETURNSTATUS 0 and `trailer` (RETURNVALUEs).
    async fn exec_bound(
        &mut self,
        sql: &str,
        decl: Option<&Value>,
        values: Vec<RpcParam>,
        trailer: Vec<Output>,
    ) -> Reply {
        let mut declared: Vec<(String, TypeName)> = Vec::new();
        if let Some(Value::Str(d)) = decl
            && !d.trim().is_empty()
        {
            match parse_batch(&format!("DECLARE {d}")) {
                Ok(stmts) => {
                    if let Some(Stmt::Declare(vars)) = stmts.into_iter().next() {
                        declared = vars.into_iter().map(|(v, t, _)| (v, t)).collect();
                    }
                }
                Err(m) => return error_reply(m),
            }
        }
        let mut bound = HashMap::new();
        for (i, p) in values.into_iter().enumerate() {
            let name = if p.name.is_empty() {
                match declared.get(i) {
                    Some((n, _)) => n.clone(),
                    None => continue,
                }
            } else {
                p.name.to_ascii_lowercase()
            };
            let t = declared
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| *t)
                .unwrap_or(match p.value {
                    Value::Int(_) => TypeName::BigInt,
                    Value::Bit(_) => TypeName::Bit,
                    _ => TypeName::NVarChar(4000),
                });
            bound.insert(name, (t, p.value));
        }
        self.vars = bound;
        let reply = self.batch(sql).await;
        match reply {
            Reply::Tokens(mut t) => {
                t.push(Output::ReturnStatus(0));
                t.extend(trailer);
                Reply::Tokens(t)
            }
            other => other,
        }
    }
}

/// 5069, the trailer of every failed `ALTER DATABASE`.
fn alter_failed() -> SqlMessage {
    SqlMessage::new(5069, 16, 1, "ALTER DATABASE statement failed.")
}

/// A reply of one error.
fn error_reply(m: SqlMessage) -> Reply {
    Reply::Tokens(vec![
        Output::Message(m),
        Output::Done {
            rows: None,
            error: true,
        },
    ])
}

/// The statement text parameter of a system procedure (`ntext`/`nchar`/`nvarchar`), or the
/// error SQL Server gives: 201 when missing, 214 when of another type.
fn statement_text(p: Option<RpcParam>, proc: &str, param: &str) -> Result<String, SqlMessage> {
    match p.map(|p| p.value) {
        Some(Value::Str(s)) => Ok(s),
        None => Err(SqlMessage::new(
            201,
            16,
            4,
            format!(
                "Procedure or function '{proc}' expects parameter '{param}', which was not supplied."
            ),
        )),
        Some(_) => Err(SqlMessage::new(
            214,
            16,
            2,
            format!("Procedure expects parameter '{param}' of type 'ntext/nchar/nvarchar'."),
        )),
    }
}

/// The `sys.databases.state` code for a `state_desc`.
fn state_code(desc: &str) -> i64 {
    match desc {
        "ONLINE" => 0,
        "RESTORING" => 1,
        "RECOVERING" => 2,
        "RECOVERY_PENDING" => 3,
        "SUSPECT" => 4,
        "EMERGENCY" => 5,
        "OFFLINE" => 6,
        _ => 0,
    }
}

fn refers_to(s: &Select, object: &str) -> bool {
    s.from
        .iter()
        .any(|src| src.table.object().eq_ignore_ascii_case(object))
}

fn uses_func(s: &Select, f: &str) -> bool {
    s.items
        .iter()
        .any(|(e, _)| matches!(e, Expr::Func(n, _) if n == f))
}

/// The backend operation a batch performs, for fault injection (one draw per batch, as the
/// fake backend draws one per call).
pub fn operation_of(stmts: &[Stmt]) -> Option<Operation> {
    for s in stmts {
        let op = match s {
            Stmt::Exec { proc_name, .. } if proc_name.eq_ignore_ascii_case("sp_getapplock") => {
                Operation::AcquireLock
            }
            Stmt::Exec { proc_name, .. } if proc_name.eq_ignore_ascii_case("sp_releaseapplock") => {
                Operation::ReleaseLock
            }
            Stmt::Select(sel) if uses_func(sel, "APPLOCK_MODE") => Operation::CheckLock,
            Stmt::AlterReadOnly { .. } => Operation::SetReadOnly,
            Stmt::AlterPartner { .. } => Operation::MirrorFailover,
            Stmt::Restore(_) => Operation::Recover,
            Stmt::CreateTableIfMissing { .. } | Stmt::InsertSelect { .. } | Stmt::Update { .. } => {
                Operation::WriteLocation
            }
            Stmt::Select(sel) if refers_to(sel, LOCATION_TABLE) => Operation::ReadLocation,
            Stmt::Select(sel) if refers_to(sel, POSITION_TABLE) => Operation::Positions,
            Stmt::Select(sel)
                if refers_to(sel, "database_mirroring")
                    && sel
                        .filter
                        .as_ref()
                        .is_some_and(|f| format!("{f:?}").contains("DB_ID")) =>
            {
                Operation::Positions
            }
            Stmt::Select(sel)
                if refers_to(sel, "databases")
                    || sel
                        .items
                        .iter()
                        .any(|(e, _)| matches!(e, Expr::Global(g) if g == "VERSION")) =>
            {
                Operation::Probe
            }
            _ => continue,
        };
        return Some(op);
    }
    None
}

impl Session for SqlSession {
    async fn execute(&mut self, request: Request) -> Reply {
        match request {
            Request::Batch(sql) => {
                self.vars.clear();
                self.batch(&sql).await
            }
            Request::Rpc(call) => self.rpc(call).await,
        }
    }
}
