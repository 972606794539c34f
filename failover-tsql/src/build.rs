//! The exact T-SQL batch for each [`Backend`](failover_core::Backend) operation.
//!
//! Every statement ends with `;`. Names only enter the text through [`quote_ident`] and
//! values through [`quote_nstring`] or as validated integers. Every batch starts with
//! [`USE_MASTER`] (`USE [master];`), so it runs with `master` as its context whatever the
//! login's default database or the DSN's `Database=` say: `SET PARTNER FAILOVER` "requires
//! master as the database context"
//! (<https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>),
//! `sp_getapplock` is scoped to the current database and must never be taken inside a
//! database that is about to be fenced
//! (<https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-getapplock-transact-sql>),
//! and a session whose context is a CMS database would be killed by the fence's `ROLLBACK
//! IMMEDIATE` or by a role switch. The fence also sets [`SqlConfig::fence_lock_timeout_ms`]
//! with `SET LOCK_TIMEOUT`, so the server abandons a blocked `ALTER DATABASE` (error 1222)
//! before the client's call timeout and an abandoned fence cannot land later
//! (<https://learn.microsoft.com/en-us/sql/t-sql/statements/set-lock-timeout-transact-sql>).
//!
//! | operation | batch | result sets |
//! |---|---|---|
//! | probe | [`preflight_probe`] ([`probe`] for the pre-checks of recover / mirror_failover) | 2: `version` (+ the login's rights); one row per existing requested database (+ its rights) |
//! | positions | [`positions`] | 1 per database, in order (0 or 1 row, first column) |
//! | set_read_only | [`set_read_only`] | none |
//! | recover | [`recover`] | none |
//! | mirror_failover | [`mirror_failover`] | none |
//! | acquire_lock | [`acquire_lock`] | 1: `result` (sp_getapplock return code) |
//! | release_lock | [`release_lock`] | 1: `result` (sp_releaseapplock return code) |
//! | lock_held | [`lock_mode`] | 1: `mode` (APPLOCK_MODE) |
//! | read_location | [`read_location`] | 1: 0 or 1 row (error 208 if the table does not exist) |
//! | write_location | [`write_location`] | 1: the record as stored after the compare-and-swap |

use crate::lex::{self, Token};
use crate::{quote_ident, quote_nstring};
use failover_core::{DatabaseName, LocationRecord, MirrorFailoverKind};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Name of the location table, always in schema `dbo` of [`SqlConfig::control_database`].
pub const LOCATION_TABLE: &str = "cms_failover_location";
/// Name of the position table the default [`PositionQuery`] reads, in schema `dbo` of
/// [`SqlConfig::control_database`].
pub const POSITION_TABLE: &str = "cms_failover_position";

/// Settings of the SQL backends that change which SQL they send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlConfig {
    /// How each database's change position is read (see [`PositionQuery`]).
    pub position_query: PositionQuery,
    /// The database holding `dbo.cms_failover_location` (and the default position table).
    /// Default `master`. Never one of the CMS databases: they get fenced read-only.
    pub control_database: DatabaseName,
    /// Read a database's position on its mirroring partner when it answers 954/955 on the
    /// instance asked (both partners share one log). Default on. Not read from or written to
    /// configuration files (`serde(skip)`).
    #[serde(skip, default = "yes")]
    pub mirror_fallback: bool,
    /// `SET LOCK_TIMEOUT` for the fence and its undo, in milliseconds (default 10 000): how
    /// long the server lets `ALTER DATABASE … SET READ_ONLY|READ_WRITE` wait for the
    /// database lock before failing with 1222 (transient). The SQL backend lowers it to
    /// three quarters of the driver's call timeout, so the server always gives up first.
    pub fence_lock_timeout_ms: u32,
    /// How the server names SQL Server reports (`mirroring_partner_instance`) map to
    /// topology addresses. The SQL backend adds the driver's endpoint instances. Set by the
    /// program from its topology (`[aliases]`), not read from the `[sql]` section
    /// (`serde(skip)`).
    #[serde(skip)]
    pub server_names: failover_core::ServerNames,
}

/// The first statement of every batch: `USE [master];` (see the [module documentation](self)).
pub const USE_MASTER: &str = "USE [master];";

/// `USE [master];` then `sql` on the next line.
/// Empty for an empty `sql` (nothing to send).
fn in_master(sql: &str) -> String {
    if sql.is_empty() {
        return String::new();
    }
    format!("{USE_MASTER}\n{sql}")
}

fn yes() -> bool {
    true
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            position_query: PositionQuery::default(),
            control_database: DatabaseName::parse("master").expect("valid name"),
            mirror_fallback: true,
            fence_lock_timeout_ms: 10_000,
            server_names: failover_core::ServerNames::default(),
        }
    }
}

/// The query that reads one database's change position, as a template.
///
/// The template is a single `SELECT` returning zero or one row whose first column is the
/// position: an integer (`int`/`bigint`/`numeric(p,0)`) or its decimal text; no row or
/// `NULL` means "this instance cannot tell". It may use these placeholders:
///
/// | placeholder | replaced with | example |
/// |---|---|---|
/// | `{db}` | the database name as a string literal | `N'xds'` |
/// | `{db_ident}` | the database name as an identifier | `[xds]` |
/// | `{control_db}` | the control database as an identifier | `[master]` |
///
/// The backends send one rendered copy per database in a single batch. Presets:
/// [`PositionQuery::position_table`] (the default), [`PositionQuery::log_shipping`] and
/// [`PositionQuery::heartbeat`]; see the backend READMEs for when to use which. The former
/// `mirroring_lsn` and `availability_group` presets are refused by name with the reason
/// (see [`PositionQuery::log_shipping`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PositionQuery {
    template: String,
}

/// A position query template that is not a single `SELECT` or uses an unknown placeholder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid position query: {0}")]
pub struct TemplateError(pub String);

impl PositionQuery {
    /// Validates a template: known placeholders only, and once rendered with a hostile
    /// name, exactly one statement that starts with `SELECT` (a trailing `;` is dropped).
    pub fn new(template: &str) -> Result<Self, TemplateError> {
        let t = template.trim().trim_end_matches(';').trim_end();
        let mut rest = t;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| TemplateError("unclosed `{`".into()))?;
            let name = &after[..close];
            if !matches!(name, "db" | "db_ident" | "control_db") {
                return Err(TemplateError(format!(
                    "unknown placeholder `{{{name}}}` (use {{db}}, {{db_ident}} or {{control_db}})"
                )));
            }
            rest = &after[close + 1..];
        }
        let q = Self {
            template: t.to_string(),
        };
        let probe_name = DatabaseName::parse("x'];--").expect("valid name");
        let ctl = DatabaseName::parse("master").expect("valid name");
        let stmts = lex::statements(&q.render(&probe_name, &ctl))
            .map_err(|e| TemplateError(e.to_string()))?;
        if stmts.len() != 1 {
            return Err(TemplateError(format!(
                "must be exactly one statement, found {}",
                stmts.len()
            )));
        }
        let first = stmts[0].iter().find(|t| !matches!(t, Token::Comment(_)));
        if !first.is_some_and(|t| t.is_word("SELECT")) {
            return Err(TemplateError("must be a SELECT".into()));
        }
        Ok(q)
    }

    /// The template text.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The default: reads `dbo.cms_failover_position (database_name sysname PRIMARY KEY,
    /// position bigint NULL)` in the control database. The simulator serves it from its
    /// estate; on a real deployment the operator creates it as a view over whichever
    /// mechanism feeds the standby copy (see the README), so nothing compares positions that
    /// are not comparable by accident. A missing table fails with error 208.
    pub fn position_table() -> Self {
        Self {
            template: format!(
                "SELECT position FROM {{control_db}}.[dbo].{} WHERE database_name = {{db}}",
                quote_ident(POSITION_TABLE)
            ),
        }
    }

    /// Log shipping: the LSN up to which the copy holds the log, from the backup history in
    /// `msdb` (`numeric(25,0)`).
    ///
    /// - On the secondary (the copy is RESTORING or STANDBY): the highest `last_lsn` of the
    ///   backup sets restored into it (`msdb.dbo.restorehistory` joined to
    ///   `msdb.dbo.backupset` on `backup_set_id`): which backups were applied, not when a
    ///   restore last ran (`log_shipping_monitor_secondary.last_restored_date` would make a
    ///   restore of an old file look current).
    /// - On the primary: the `last_lsn` of its newest log backup (`backupset.type = 'L'`),
    ///   plus one while `sys.dm_db_log_stats(…).log_since_last_log_backup_mb` says log was
    ///   written after it. After the fence (which itself writes log) the copy therefore only
    ///   counts as caught up once a log backup taken after the fence has been restored: the
    ///   log-shipping backup and restore jobs must run meanwhile (or run them by hand).
    ///
    /// `last_lsn` is "the log sequence number of the next log record after the backup set"
    /// (<https://learn.microsoft.com/en-us/sql/relational-databases/system-tables/backupset-transact-sql>),
    /// so the two sides compare directly; `restorehistory.backup_set_id` links a restore to
    /// the backup set it applied
    /// (<https://learn.microsoft.com/en-us/sql/relational-databases/system-tables/restorehistory-transact-sql>);
    /// `log_since_last_log_backup_mb` needs SQL Server 2016 SP2 or later
    /// (<https://learn.microsoft.com/en-us/sql/relational-databases/system-dynamic-management-views/sys-dm-db-log-stats-transact-sql>).
    /// Reading msdb needs `SELECT` on those tables (msdb's `db_datareader` or sysadmin).
    ///
    /// There is no mirroring or availability-group preset: the positions compared are the
    /// source store's and the backup store's copies, which are different databases (the
    /// Backup Service copies at application level between pools) and never partners of one
    /// mirroring session or replicas of one group, so their `mirroring_failover_lsn` /
    /// `last_hardened_lsn` are unrelated numbers. Within one store the mirror shares the
    /// principal's log and the backend already reads a mirror's position on its principal.
    pub fn log_shipping() -> Self {
        Self {
            template: "SELECT CASE WHEN d.state_desc = N'RESTORING' OR d.is_in_standby = 1 THEN \
                       (SELECT MAX(b.last_lsn) FROM msdb.dbo.restorehistory AS rh \
                       JOIN msdb.dbo.backupset AS b ON b.backup_set_id = rh.backup_set_id \
                       WHERE rh.destination_database_name = {db}) \
                       ELSE (SELECT TOP (1) b.last_lsn + CASE WHEN ls.log_since_last_log_backup_mb > 0 THEN 1 ELSE 0 END \
                       FROM msdb.dbo.backupset AS b CROSS APPLY sys.dm_db_log_stats(d.database_id) AS ls \
                       WHERE b.database_name = {db} AND b.type = 'L' ORDER BY b.last_lsn DESC) \
                       END AS position FROM sys.databases AS d WHERE d.name = {db}"
                .into(),
        }
    }

    /// Opt-in heartbeat: the highest `seq` in `dbo.cms_failover_heartbeat` inside the
    /// database itself (written on the source by an operator job). Needs the copy to be
    /// readable (ONLINE read-only or STANDBY), not RESTORING.
    pub fn heartbeat() -> Self {
        Self {
            template: "SELECT MAX(seq) AS position FROM {db_ident}.[dbo].[cms_failover_heartbeat]"
                .into(),
        }
    }

    /// Substitutes the placeholders for `db` (quoted) and the control database.
    pub fn render(&self, db: &DatabaseName, control_db: &DatabaseName) -> String {
        let mut out = String::with_capacity(self.template.len() + 32);
        let mut rest = self.template.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    match &after[..close] {
                        "db" => out.push_str(&quote_nstring(db.as_str())),
                        "db_ident" => out.push_str(&quote_ident(db.as_str())),
                        "control_db" => out.push_str(&quote_ident(control_db.as_str())),
                        other => {
                            // Unreachable for validated templates; keep the text as is.
                            out.push('{');
                            out.push_str(other);
                            out.push('}');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

impl Default for PositionQuery {
    fn default() -> Self {
        Self::position_table()
    }
}

impl TryFrom<String> for PositionQuery {
    type Error = TemplateError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "position_table" | "default" => Ok(Self::position_table()),
            "mirroring_lsn" | "availability_group" => Err(TemplateError(format!(
                "the `{s}` preset was removed: it compared LSNs of unrelated databases (the \
                 source and backup stores' copies are never partners of one mirroring session \
                 or replicas of one availability group); use `position_table` with a view over \
                 what feeds the backup copy, `log_shipping` or `heartbeat`"
            ))),
            "log_shipping" => Ok(Self::log_shipping()),
            "heartbeat" => Ok(Self::heartbeat()),
            _ => Self::new(&s),
        }
    }
}

impl From<PositionQuery> for String {
    fn from(q: PositionQuery) -> String {
        q.template
    }
}

impl fmt::Display for PositionQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

/// `N'a', N'b'` — or `NULL` for an empty list, so `IN (…)` stays valid and matches nothing.
fn name_list(dbs: &[DatabaseName]) -> String {
    if dbs.is_empty() {
        return "NULL".into();
    }
    dbs.iter()
        .map(|d| quote_nstring(d.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Probe: the version, then state, read-only flag and mirroring of each requested database.
///
/// ```sql
/// USE [master];
/// SELECT @@VERSION AS version;
/// SELECT d.name, d.state_desc, d.is_read_only, m.mirroring_role_desc, m.mirroring_state_desc,
///   m.mirroring_partner_instance, m.mirroring_safety_level_desc,
///   CAST(m.mirroring_failover_lsn AS nvarchar(40)) AS mirroring_failover_lsn, d.is_in_standby,
///   m.mirroring_witness_name, m.mirroring_witness_state_desc
/// FROM sys.databases AS d LEFT JOIN sys.database_mirroring AS m ON m.database_id = d.database_id
/// WHERE d.name IN (N'xds', N'lis') ORDER BY d.name;
/// ```
pub fn probe(dbs: &[DatabaseName]) -> String {
    format!(
        "{USE_MASTER}\nSELECT @@VERSION AS version;\n\
         SELECT d.name, d.state_desc, d.is_read_only, m.mirroring_role_desc, m.mirroring_state_desc, \
         m.mirroring_partner_instance, m.mirroring_safety_level_desc, \
         CAST(m.mirroring_failover_lsn AS nvarchar(40)) AS mirroring_failover_lsn, d.is_in_standby, \
         m.mirroring_witness_name, m.mirroring_witness_state_desc \
         FROM sys.databases AS d LEFT JOIN sys.database_mirroring AS m ON m.database_id = d.database_id \
         WHERE d.name IN ({}) ORDER BY d.name;",
        name_list(dbs)
    )
}

/// The preflight probe ([`Op::Probe`](failover_core::Op::Probe)): [`probe`] plus what the
/// login may do, in the same two result sets (one round trip). The version row adds
/// `login` (`SUSER_SNAME()`), `is_sysadmin` / `is_dbcreator` (`IS_SRVROLEMEMBER`) and
/// `can_insert_location` / `can_update_location` (`HAS_PERMS_BY_NAME` on the location
/// table, NULL while it does not exist); each database row adds `can_alter`
/// (`HAS_PERMS_BY_NAME(d.name, N'DATABASE', N'ALTER')`) and `owner_login`
/// (`SUSER_SNAME(d.owner_sid)`), from which [`crate::rows::parse_probe`] fills
/// [`failover_core::LoginRights`]. The core decides which steps they allow.
/// <https://learn.microsoft.com/en-us/sql/t-sql/functions/has-perms-by-name-transact-sql>,
/// <https://learn.microsoft.com/en-us/sql/t-sql/functions/is-srvrolemember-transact-sql>,
/// <https://learn.microsoft.com/en-us/sql/t-sql/functions/suser-sname-transact-sql>.
///
/// ```sql
/// USE [master];
/// SELECT @@VERSION AS version, SUSER_SNAME() AS login,
///   IS_SRVROLEMEMBER(N'sysadmin') AS is_sysadmin, IS_SRVROLEMEMBER(N'dbcreator') AS is_dbcreator,
///   HAS_PERMS_BY_NAME(N'[master].[dbo].[cms_failover_location]', N'OBJECT', N'INSERT') AS can_insert_location,
///   HAS_PERMS_BY_NAME(N'[master].[dbo].[cms_failover_location]', N'OBJECT', N'UPDATE') AS can_update_location;
/// SELECT d.name, …, d.is_in_standby, m.mirroring_witness_name, m.mirroring_witness_state_desc,
///   HAS_PERMS_BY_NAME(d.name, N'DATABASE', N'ALTER') AS can_alter,
///   SUSER_SNAME(d.owner_sid) AS owner_login
/// FROM sys.databases AS d LEFT JOIN sys.database_mirroring AS m ON m.database_id = d.database_id
/// WHERE d.name IN (N'xds', N'lis') ORDER BY d.name;
/// ```
pub fn preflight_probe(cfg: &SqlConfig, dbs: &[DatabaseName]) -> String {
    let table = quote_nstring(&format!(
        "{}.[dbo].{}",
        quote_ident(cfg.control_database.as_str()),
        quote_ident(LOCATION_TABLE)
    ));
    format!(
        "{USE_MASTER}\nSELECT @@VERSION AS version, SUSER_SNAME() AS login, \
         IS_SRVROLEMEMBER(N'sysadmin') AS is_sysadmin, IS_SRVROLEMEMBER(N'dbcreator') AS is_dbcreator, \
         HAS_PERMS_BY_NAME({table}, N'OBJECT', N'INSERT') AS can_insert_location, \
         HAS_PERMS_BY_NAME({table}, N'OBJECT', N'UPDATE') AS can_update_location;\n\
         SELECT d.name, d.state_desc, d.is_read_only, m.mirroring_role_desc, m.mirroring_state_desc, \
         m.mirroring_partner_instance, m.mirroring_safety_level_desc, \
         CAST(m.mirroring_failover_lsn AS nvarchar(40)) AS mirroring_failover_lsn, d.is_in_standby, \
         m.mirroring_witness_name, m.mirroring_witness_state_desc, \
         HAS_PERMS_BY_NAME(d.name, N'DATABASE', N'ALTER') AS can_alter, \
         SUSER_SNAME(d.owner_sid) AS owner_login \
         FROM sys.databases AS d LEFT JOIN sys.database_mirroring AS m ON m.database_id = d.database_id \
         WHERE d.name IN ({}) ORDER BY d.name;",
        name_list(dbs)
    )
}

/// Positions: `USE [master];`, then the configured [`PositionQuery`] once per database, in
/// order.
pub fn positions(cfg: &SqlConfig, dbs: &[DatabaseName]) -> String {
    in_master(
        &dbs.iter()
            .map(|d| format!("{};", cfg.position_query.render(d, &cfg.control_database)))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The fence (`read_only = true`) or its undo, one statement per database, bounded on the
/// server by `SET LOCK_TIMEOUT` (1222 when the database lock is not granted in time):
///
/// ```sql
/// USE [master];
/// SET LOCK_TIMEOUT 10000;
/// ALTER DATABASE [xds] SET READ_ONLY WITH ROLLBACK IMMEDIATE;
/// ```
///
/// (`… SET READ_WRITE …` for the undo). `SET LOCK_TIMEOUT` stays in effect for the session;
/// every other batch the backends send takes no long lock.
pub fn set_read_only(dbs: &[DatabaseName], read_only: bool, lock_timeout_ms: u32) -> String {
    if dbs.is_empty() {
        return String::new();
    }
    let mode = if read_only { "READ_ONLY" } else { "READ_WRITE" };
    let alters = dbs
        .iter()
        .map(|d| {
            format!(
                "ALTER DATABASE {} SET {mode} WITH ROLLBACK IMMEDIATE;",
                quote_ident(d.as_str())
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    in_master(&format!("SET LOCK_TIMEOUT {lock_timeout_ms};\n{alters}"))
}

/// `RESTORE DATABASE [xds] WITH RECOVERY;` per database (only send it for RESTORING copies,
/// see [`crate::plan::recover_targets`]).
pub fn recover(dbs: &[DatabaseName]) -> String {
    in_master(
        &dbs.iter()
            .map(|d| {
                format!(
                    "RESTORE DATABASE {} WITH RECOVERY;",
                    quote_ident(d.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// `ALTER DATABASE [xds] SET PARTNER FAILOVER;` (planned, on the principal) or
/// `ALTER DATABASE [xds] SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS;` (forced, on the mirror).
pub fn mirror_failover(dbs: &[DatabaseName], kind: MirrorFailoverKind) -> String {
    let what = match kind {
        MirrorFailoverKind::Planned => "FAILOVER",
        MirrorFailoverKind::Forced => "FORCE_SERVICE_ALLOW_DATA_LOSS",
    };
    in_master(
        &dbs.iter()
            .map(|d| {
                format!(
                    "ALTER DATABASE {} SET PARTNER {what};",
                    quote_ident(d.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Takes the session-owned exclusive application lock in `master` without waiting, and
/// selects sp_getapplock's return code (0/1 granted, -1 timed out = held elsewhere, -2
/// cancelled, -3 deadlock victim, -999 parameter or other error):
///
/// ```sql
/// USE [master];
/// DECLARE @r int;
/// EXEC @r = sp_getapplock @Resource = N'cms-failover', @LockMode = 'Exclusive',
///   @LockOwner = 'Session', @LockTimeout = 0;
/// SELECT @r AS result;
/// ```
pub fn acquire_lock(resource: &str) -> String {
    format!(
        "{USE_MASTER}\nDECLARE @r int;\n\
         EXEC @r = sp_getapplock @Resource = {}, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0;\n\
         SELECT @r AS result;",
        quote_nstring(resource)
    )
}

/// Releases the session-owned lock and selects the return code (0 released). Sent without
/// a [`lock_mode`] check first (one round trip): releasing a lock this session does not hold
/// raises error 1223 ("Cannot release the application lock … because it is not currently
/// held", severity 16; `sp_releaseapplock`, Microsoft Learn), which the backend reads as
/// "not held".
pub fn release_lock(resource: &str) -> String {
    format!(
        "{USE_MASTER}\nDECLARE @r int;\n\
         EXEC @r = sp_releaseapplock @Resource = {}, @LockOwner = 'Session';\n\
         SELECT @r AS result;",
        quote_nstring(resource)
    )
}

/// The mode in which this session holds the lock (`NoLock` when it does not):
/// `USE [master]; SELECT APPLOCK_MODE('public', N'cms-failover', 'Session') AS mode;`
pub fn lock_mode(resource: &str) -> String {
    format!(
        "{USE_MASTER}\nSELECT APPLOCK_MODE('public', {}, 'Session') AS mode;",
        quote_nstring(resource)
    )
}

/// `[master].[dbo].[cms_failover_location]` for the configured control database.
pub fn location_table(cfg: &SqlConfig) -> String {
    format!(
        "{}.[dbo].{}",
        quote_ident(cfg.control_database.as_str()),
        quote_ident(LOCATION_TABLE)
    )
}

/// Reads the location record:
/// `SELECT epoch, active_principal, active_mirror, run_id FROM [master].[dbo].[cms_failover_location] WHERE id = 1;`
/// Fails with error 208 when the table was never created (no record yet).
pub fn read_location(cfg: &SqlConfig) -> String {
    in_master(&format!(
        "SELECT epoch, active_principal, active_mirror, run_id FROM {} WHERE id = 1;",
        location_table(cfg)
    ))
}

/// The column values of a record: `epoch, N'principal', N'mirror' | NULL, N'run'`.
fn record_values(r: &LocationRecord) -> (String, String, String, String) {
    (
        r.epoch.to_string(),
        quote_nstring(&r.active.principal.to_string()),
        r.active
            .mirror
            .as_ref()
            .map_or_else(|| "NULL".to_string(), |m| quote_nstring(&m.to_string())),
        quote_nstring(&r.run_id),
    )
}

/// Epochs are stored as `bigint`.
fn epoch_sql(e: u64) -> String {
    i64::try_from(e).unwrap_or(i64::MAX).to_string()
}

/// The compare-and-swap write of the location record, creating the table if missing, then
/// the stored record. The write succeeded (or had already happened) exactly when the
/// stored record equals the one written; otherwise someone else holds another epoch.
///
/// ```sql
/// IF OBJECT_ID(N'[master].[dbo].[cms_failover_location]', N'U') IS NULL
///   CREATE TABLE [master].[dbo].[cms_failover_location] (id int NOT NULL PRIMARY KEY CHECK (id = 1),
///     epoch bigint NOT NULL, active_principal nvarchar(300) NOT NULL,
///     active_mirror nvarchar(300) NULL, run_id nvarchar(200) NOT NULL);
/// -- expected None:
/// INSERT INTO T (id, epoch, active_principal, active_mirror, run_id) SELECT 1, 1, N'a', NULL, N'run'
///   WHERE NOT EXISTS (SELECT 1 FROM T WITH (UPDLOCK, HOLDLOCK) WHERE id = 1);
/// -- expected Some(e):
/// UPDATE T SET epoch = 2, active_principal = N'b', active_mirror = NULL, run_id = N'run'
///   WHERE id = 1 AND epoch = 1;
/// SELECT epoch, active_principal, active_mirror, run_id FROM T WHERE id = 1;
/// ```
pub fn write_location(
    cfg: &SqlConfig,
    record: &LocationRecord,
    expected_epoch: Option<u64>,
) -> String {
    let t = location_table(cfg);
    let (epoch, principal, mirror, run) = record_values(record);
    let epoch = epoch_sql(epoch.parse().unwrap_or(u64::MAX));
    let create = format!(
        "IF OBJECT_ID({}, N'U') IS NULL CREATE TABLE {t} (id int NOT NULL PRIMARY KEY CHECK (id = 1), \
         epoch bigint NOT NULL, active_principal nvarchar(300) NOT NULL, active_mirror nvarchar(300) NULL, \
         run_id nvarchar(200) NOT NULL);",
        quote_nstring(&t)
    );
    let cas = match expected_epoch {
        None => format!(
            "INSERT INTO {t} (id, epoch, active_principal, active_mirror, run_id) \
             SELECT 1, {epoch}, {principal}, {mirror}, {run} \
             WHERE NOT EXISTS (SELECT 1 FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE id = 1);"
        ),
        Some(e) => format!(
            "UPDATE {t} SET epoch = {epoch}, active_principal = {principal}, active_mirror = {mirror}, \
             run_id = {run} WHERE id = 1 AND epoch = {};",
            epoch_sql(e)
        ),
    };
    in_master(&format!(
        "{create}\n{cas}\nSELECT epoch, active_principal, active_mirror, run_id FROM {t} WHERE id = 1;"
    ))
}

/// The batches [`SqlBackend`](crate::SqlBackend) sends for `op`, in order, for what-if plans
/// and reports (never contains a secret). `recover` and `mirror_failover` list their
/// pre-check probe, then the change as it would be sent if every database needed it (the
/// backend skips databases already in the requested state); `set_read_only` is one batch
/// without a probe; the lock operations list the `APPLOCK_MODE` check first. Conditional
/// batches are not listed: the positions re-read on a mirroring partner, the
/// `sp_releaseapplock` when the lock is not held.
pub fn statements(cfg: &SqlConfig, op: &failover_core::Op) -> Vec<String> {
    use failover_core::Op;
    let non_empty = |v: Vec<String>| v.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
    non_empty(match op {
        Op::Probe { databases, .. } => vec![preflight_probe(cfg, databases)],
        Op::Positions { databases, .. } => vec![positions(cfg, databases)],
        Op::SetReadOnly {
            databases,
            read_only,
            ..
        } => {
            vec![set_read_only(
                databases,
                *read_only,
                cfg.fence_lock_timeout_ms,
            )]
        }
        Op::Recover { databases, .. } => vec![probe(databases), recover(databases)],
        Op::MirrorFailover {
            databases, kind, ..
        } => vec![probe(databases), mirror_failover(databases, *kind)],
        Op::AcquireLock { resource, .. } => vec![lock_mode(resource), acquire_lock(resource)],
        Op::ReleaseLock { resource, .. } => vec![release_lock(resource)],
        Op::CheckLock { resource, .. } => vec![lock_mode(resource)],
        Op::ReadLocation { .. } => vec![read_location(cfg)],
        Op::WriteLocation {
            record,
            expected_epoch,
            ..
        } => vec![write_location(cfg, record, *expected_epoch)],
        // Directory calls send no SQL (the directory describes its own request).
        Op::ReadDirectory { .. } | Op::SwapDirectory { .. } => Vec::new(),
        // Not SQL: the driver's Backup Service gate runs the operator's command.
        Op::BackupServiceStatus { .. } => Vec::new(),
    })
}
