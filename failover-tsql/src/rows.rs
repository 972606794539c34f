//! Driver-neutral result rows and the typed parsers both SQL backends feed.
//!
//! A backend converts each column of each row into an `Option<SqlValue>` (`None` for SQL
//! `NULL`) and each result set into a `Vec<Row>`, then calls the parser for the operation.

use failover_core::{
    DatabaseName, DatabasePosition, DatabaseProbe, DbState, InstanceAddr, InstanceProbe,
    LocationRecord, LoginRights, MirrorInfo, MirrorRole, MirrorState, Position, Store, WitnessInfo,
    WitnessState,
};
use thiserror::Error;

/// One column value, whatever driver produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `bit`.
    Bool(bool),
    /// `tinyint`/`smallint`/`int`/`bigint`, or `numeric(p,0)` that fits.
    Int(i64),
    /// Character data, or any other type rendered as text (e.g. a large `numeric`).
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
}

/// One row: a value per column, `None` for `NULL`.
pub type Row = Vec<Option<SqlValue>>;
/// One result set.
pub type ResultSet = Vec<Row>;

/// The server's reply did not have the shape the batch promises.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unexpected result from SQL Server: {0}")]
pub struct RowError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RowError> {
    Err(RowError(msg.into()))
}

fn col<'a>(row: &'a Row, i: usize, what: &str) -> Result<Option<&'a SqlValue>, RowError> {
    match row.get(i) {
        Some(v) => Ok(v.as_ref()),
        None => err(format!("missing column {i} ({what})")),
    }
}

fn text(v: Option<&SqlValue>, what: &str) -> Result<Option<String>, RowError> {
    match v {
        None => Ok(None),
        Some(SqlValue::Text(s)) => Ok(Some(s.clone())),
        Some(other) => err(format!("{what}: expected text, got {other:?}")),
    }
}

fn req_text(v: Option<&SqlValue>, what: &str) -> Result<String, RowError> {
    text(v, what)?.map_or_else(|| err(format!("{what} is NULL")), Ok)
}

fn boolean(v: Option<&SqlValue>, what: &str) -> Result<bool, RowError> {
    match v {
        Some(SqlValue::Bool(b)) => Ok(*b),
        Some(SqlValue::Int(i)) => Ok(*i != 0),
        Some(SqlValue::Text(s)) if s == "1" || s == "0" => Ok(s == "1"),
        other => err(format!("{what}: expected bit, got {other:?}")),
    }
}

/// A non-negative integer from an integer or its decimal text, up to `u128`: LSNs are
/// `numeric(25,0)` (<https://learn.microsoft.com/en-us/sql/relational-databases/system-tables/backupset-transact-sql>),
/// which drivers hand over as text (the probe casts `mirroring_failover_lsn` to
/// `nvarchar(40)`) or as a decimal; `1234.0` and `+1234` are accepted, anything with a
/// fraction, a sign `-` or more than 38 digits is an error.
fn unsigned_wide(v: Option<&SqlValue>, what: &str) -> Result<Option<u128>, RowError> {
    match v {
        None => Ok(None),
        Some(SqlValue::Int(i)) => u128::try_from(*i)
            .map(Some)
            .map_err(|_| RowError(format!("{what}: negative value {i}"))),
        Some(SqlValue::Bool(b)) => Ok(Some(u128::from(*b))),
        Some(SqlValue::Text(s)) => {
            let t = s.trim();
            let t = t.strip_prefix('+').unwrap_or(t);
            let t = match t.split_once('.') {
                Some((int, frac)) if frac.chars().all(|c| c == '0') => int,
                Some(_) => t,
                None => t,
            };
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return err(format!("{what}: `{s}` is not a non-negative integer"));
            }
            t.parse::<u128>().map(Some).map_err(|_| {
                RowError(format!(
                    "{what}: `{s}` is not a non-negative integer that fits in 128 bits"
                ))
            })
        }
        Some(other) => err(format!("{what}: expected an integer, got {other:?}")),
    }
}

/// [`unsigned_wide`] that must fit in `u64` (epochs).
fn unsigned(v: Option<&SqlValue>, what: &str) -> Result<Option<u64>, RowError> {
    unsigned_wide(v, what)?
        .map(|x| {
            u64::try_from(x).map_err(|_| RowError(format!("{what}: {x} does not fit in 64 bits")))
        })
        .transpose()
}

fn signed(v: Option<&SqlValue>, what: &str) -> Result<i64, RowError> {
    match v {
        Some(SqlValue::Int(i)) => Ok(*i),
        Some(SqlValue::Text(s)) => s
            .trim()
            .parse()
            .map_err(|_| RowError(format!("{what}: `{s}` is not an integer"))),
        other => err(format!("{what}: expected an integer, got {other:?}")),
    }
}

fn sets<'a>(sets: &'a [ResultSet], n: usize, what: &str) -> Result<&'a [ResultSet], RowError> {
    if sets.len() != n {
        return err(format!(
            "{what}: expected {n} result set(s), got {}",
            sets.len()
        ));
    }
    Ok(sets)
}

/// Parses the reply to [`crate::build::probe`]: the version set, then one row per database.
/// Rows for databases that were not requested are ignored.
pub fn parse_probe(
    instance: &InstanceAddr,
    requested: &[DatabaseName],
    result: &[ResultSet],
) -> Result<InstanceProbe, RowError> {
    let s = sets(result, 2, "probe")?;
    let version = match s[0].first() {
        Some(row) => req_text(col(row, 0, "version")?, "version")?,
        None => return err("probe: no version row"),
    };
    let version = version
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut databases = Vec::new();
    // Owner names, resolved against the login once it is known.
    let mut db_rights: Vec<DatabaseRights<Option<String>>> = Vec::new();
    for row in &s[1] {
        let name = req_text(col(row, 0, "name")?, "name")?;
        let name = DatabaseName::parse(&name).map_err(|e| RowError(e.to_string()))?;
        if !requested.contains(&name) || databases.iter().any(|d: &DatabaseProbe| d.name == name) {
            continue;
        }
        let state = DbState::from_desc(&req_text(col(row, 1, "state_desc")?, "state_desc")?);
        let read_only = boolean(col(row, 2, "is_read_only")?, "is_read_only")?;
        let role = text(col(row, 3, "mirroring_role_desc")?, "mirroring_role_desc")?;
        let mirroring = match role {
            None => None,
            Some(role) => {
                let role = match role.to_ascii_uppercase().as_str() {
                    "PRINCIPAL" => MirrorRole::Principal,
                    "MIRROR" => MirrorRole::Mirror,
                    other => return err(format!("unknown mirroring_role_desc `{other}`")),
                };
                let state_desc =
                    req_text(col(row, 4, "mirroring_state_desc")?, "mirroring_state_desc")?;
                let state = MirrorState::from_desc(&state_desc).ok_or_else(|| {
                    RowError(format!("unknown mirroring_state_desc `{state_desc}`"))
                })?;
                // The partner's server name (`SQLB01\RTC`), not an address: the backend
                // maps it to a topology address (`ServerNames`).
                let partner_name = text(
                    col(row, 5, "mirroring_partner_instance")?,
                    "mirroring_partner_instance",
                )?
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty());
                let safety = text(
                    col(row, 6, "mirroring_safety_level_desc")?,
                    "mirroring_safety_level_desc",
                )?;
                let safety_full = safety.is_some_and(|s| s.eq_ignore_ascii_case("FULL"));
                let failover_lsn = unsigned_wide(
                    col(row, 7, "mirroring_failover_lsn")?,
                    "mirroring_failover_lsn",
                )?;
                Some(MirrorInfo {
                    role,
                    state,
                    partner: None,
                    partner_name,
                    safety_full,
                    failover_lsn,
                    witness: witness(row)?,
                })
            }
        };
        // `is_in_standby` (column 8); a reply without it (an older probe) means not standby.
        let in_standby = match row.get(8) {
            Some(v) => v.is_some() && boolean(v.as_ref(), "is_in_standby")?,
            None => false,
        };
        // The preflight probe's rights columns (11: can_alter, 12: owner_login).
        if let Some(v) = row.get(11) {
            db_rights.push(DatabaseRights {
                name: name.clone(),
                alter: flag(v.as_ref(), "can_alter")?,
                owner: text(row.get(12).and_then(|v| v.as_ref()), "owner_login")?,
            });
        }
        databases.push(DatabaseProbe {
            name,
            state,
            read_only,
            mirroring,
            in_standby,
        });
    }
    let rights = login_rights(&s[0][0], db_rights)?;
    Ok(InstanceProbe {
        instance: instance.clone(),
        version,
        databases,
        rights,
    })
}

/// The witness columns of a probe row (9: `mirroring_witness_name`, 10:
/// `mirroring_witness_state_desc`); NULL name or a reply without them: no witness.
fn witness(row: &Row) -> Result<Option<WitnessInfo>, RowError> {
    let name = text(
        row.get(9).and_then(|v| v.as_ref()),
        "mirroring_witness_name",
    )?
    .map(|n| n.trim().to_string())
    .filter(|n| !n.is_empty());
    let Some(name) = name else { return Ok(None) };
    let desc = text(
        row.get(10).and_then(|v| v.as_ref()),
        "mirroring_witness_state_desc",
    )?;
    let state = match desc {
        None => WitnessState::Unknown,
        Some(d) => WitnessState::from_desc(d.trim())
            .ok_or_else(|| RowError(format!("unknown mirroring_witness_state_desc `{d}`")))?,
    };
    Ok(Some(WitnessInfo { name, state }))
}

/// `HAS_PERMS_BY_NAME` / `IS_SRVROLEMEMBER`: 1, 0 or NULL (`None`).
fn flag(v: Option<&SqlValue>, what: &str) -> Result<Option<bool>, RowError> {
    match v {
        None => Ok(None),
        Some(_) => Ok(Some(boolean(v, what)?)),
    }
}

/// The rights of one database while parsing (`owner`: the owner's login name).
struct DatabaseRights<O> {
    name: DatabaseName,
    alter: Option<bool>,
    owner: O,
}

/// The version row's rights columns (1: login, 2: is_sysadmin, 3: is_dbcreator, 4 and 5:
/// INSERT / UPDATE on the location table); `None` when the reply has none (the pre-check
/// probe). IS_SRVROLEMEMBER's NULL ("you don't have permission to view the role
/// membership") reads as not a member.
fn login_rights(
    row: &Row,
    dbs: Vec<DatabaseRights<Option<String>>>,
) -> Result<Option<LoginRights>, RowError> {
    let Some(login) = row.get(1) else {
        return Ok(None);
    };
    let login = req_text(login.as_ref(), "login")?;
    let member = |i: usize, what: &str| -> Result<bool, RowError> {
        Ok(flag(col(row, i, what)?, what)?.unwrap_or(false))
    };
    let insert = flag(col(row, 4, "can_insert_location")?, "can_insert_location")?;
    let update = flag(col(row, 5, "can_update_location")?, "can_update_location")?;
    let location_write = match (insert, update) {
        (Some(i), Some(u)) => Some(i && u),
        _ => None,
    };
    Ok(Some(LoginRights {
        sysadmin: member(2, "is_sysadmin")?,
        dbcreator: member(3, "is_dbcreator")?,
        location_write,
        databases: dbs
            .into_iter()
            .map(|d| failover_core::DatabaseRights {
                owner: d.owner.is_some_and(|o| o.eq_ignore_ascii_case(&login)),
                name: d.name,
                alter: d.alter,
            })
            .collect(),
        login,
    }))
}

/// Parses the reply to [`crate::build::positions`]: one result set per database, in order;
/// no row or `NULL` means unknown.
pub fn parse_positions(
    dbs: &[DatabaseName],
    result: &[ResultSet],
) -> Result<Vec<DatabasePosition>, RowError> {
    let s = sets(result, dbs.len(), "positions")?;
    dbs.iter()
        .zip(s)
        .map(|(db, set)| {
            let position = match set.first() {
                None => None,
                Some(row) => unsigned_wide(col(row, 0, "position")?, "position")?.map(Position),
            };
            Ok(DatabasePosition {
                database: db.clone(),
                position,
            })
        })
        .collect()
}

/// Parses the single `result` integer of [`crate::build::acquire_lock`] /
/// [`crate::build::release_lock`].
pub fn parse_return_code(result: &[ResultSet]) -> Result<i32, RowError> {
    let s = sets(result, 1, "lock")?;
    let row = s[0]
        .first()
        .ok_or_else(|| RowError("lock: no result row".into()))?;
    let v = signed(col(row, 0, "result")?, "result")?;
    i32::try_from(v).map_err(|_| RowError(format!("result {v} out of range")))
}

/// Parses [`crate::build::lock_mode`]: whether this session holds the lock in any mode.
pub fn parse_lock_held(result: &[ResultSet]) -> Result<bool, RowError> {
    let s = sets(result, 1, "lock mode")?;
    let row = s[0]
        .first()
        .ok_or_else(|| RowError("lock mode: no result row".into()))?;
    let mode = req_text(col(row, 0, "mode")?, "mode")?;
    Ok(!mode.trim().eq_ignore_ascii_case("NoLock"))
}

/// Parses the location record from the last result set of [`crate::build::read_location`]
/// or [`crate::build::write_location`]: `None` when there is no row.
pub fn parse_location(result: &[ResultSet]) -> Result<Option<LocationRecord>, RowError> {
    let Some(set) = result.last() else {
        return err("location: no result set");
    };
    let Some(row) = set.first() else {
        return Ok(None);
    };
    let epoch = unsigned(col(row, 0, "epoch")?, "epoch")?
        .ok_or_else(|| RowError("epoch is NULL".into()))?;
    let addr = |s: String, what: &str| {
        InstanceAddr::parse(&s).map_err(|e| RowError(format!("{what}: {e}")))
    };
    let principal = addr(
        req_text(col(row, 1, "active_principal")?, "active_principal")?,
        "active_principal",
    )?;
    let mirror = text(col(row, 2, "active_mirror")?, "active_mirror")?
        .map(|m| addr(m, "active_mirror"))
        .transpose()?;
    let run_id = req_text(col(row, 3, "run_id")?, "run_id")?;
    let active = Store::new(principal, mirror).map_err(|e| RowError(e.to_string()))?;
    Ok(Some(LocationRecord {
        epoch,
        active,
        run_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<SqlValue> {
        Some(SqlValue::Text(s.into()))
    }
    fn db(s: &str) -> DatabaseName {
        DatabaseName::parse(s).unwrap()
    }

    /// The witness columns: a name with its state as the instance sees it; a NULL name (no
    /// witness) gives none; an unknown state is an error, not a guess.
    #[test]
    fn probe_witness_columns() {
        let inst = InstanceAddr::parse("sql-b2.cms.test").unwrap();
        let row = |name: &str, w: Option<SqlValue>, ws: Option<SqlValue>| {
            vec![
                t(name),
                t("RESTORING"),
                Some(SqlValue::Int(0)),
                t("MIRROR"),
                t("DISCONNECTED"),
                t("SQLB01"),
                t("FULL"),
                t("42"),
                Some(SqlValue::Int(0)),
                w,
                ws,
            ]
        };
        let dbs = vec![
            row("lis", None, None),
            row("xds", t("TCP://wit.cms.test:5022"), t("DISCONNECTED")),
        ];
        let p = parse_probe(&inst, &[db("xds"), db("lis")], &[vec![vec![t("v")]], dbs]).unwrap();
        let m = |d: &str| p.database(&db(d)).unwrap().mirroring.clone().unwrap();
        assert_eq!(m("lis").witness, None);
        assert_eq!(
            m("xds").witness,
            Some(WitnessInfo {
                name: "TCP://wit.cms.test:5022".into(),
                state: WitnessState::Disconnected
            })
        );
        let bad = vec![row("xds", t("TCP://w:5022"), t("SLEEPY"))];
        assert!(parse_probe(&inst, &[db("xds")], &[vec![vec![t("v")]], bad]).is_err());
    }

    /// The preflight probe's rights columns: the version row's login, roles and location
    /// grants (NULL: unknown), each database's ALTER (NULL kept as unknown) and owner.
    #[test]
    fn probe_rights_rows() {
        let inst = InstanceAddr::parse("sql-b.cms.test").unwrap();
        let i = |n: i64| Some(SqlValue::Int(n));
        let version = vec![vec![t("v"), t("CMS\\op"), i(0), None, i(1), i(0)]];
        let row = |name: &str, alter: Option<SqlValue>, owner: &str| {
            vec![
                t(name),
                t("ONLINE"),
                i(0),
                None,
                None,
                None,
                None,
                None,
                i(0),
                None,
                None,
                alter,
                t(owner),
            ]
        };
        let dbs = vec![row("lis", None, "cms\\OP"), row("xds", i(0), "sa")];
        let p = parse_probe(&inst, &[db("xds"), db("lis")], &[version, dbs]).unwrap();
        let r = p.rights.unwrap();
        assert_eq!(r.login, "CMS\\op");
        assert!(
            !r.sysadmin && !r.dbcreator,
            "NULL membership reads as not a member"
        );
        assert_eq!(r.location_write, Some(false), "INSERT but not UPDATE");
        assert_eq!(r.can_alter(&db("xds")), Some(false));
        assert_eq!(
            r.can_alter(&db("lis")),
            Some(true),
            "the owner (names compare without case)"
        );
        assert!(r.can_restore(&db("lis")) && !r.can_restore(&db("xds")));
        // The pre-check probe has no rights columns.
        let plain = vec![vec![t("v")]];
        let p = parse_probe(&inst, &[db("xds")], &[plain, vec![]]).unwrap();
        assert!(p.rights.is_none());
    }

    #[test]
    fn probe_rows() {
        let inst = InstanceAddr::parse("sql-a.cms.test\\RTC").unwrap();
        let version = vec![vec![t("Microsoft SQL Server 2019 (RTM)\n\tCopyright")]];
        let dbs = vec![
            vec![
                t("lis"),
                t("RESTORING"),
                Some(SqlValue::Bool(false)),
                t("MIRROR"),
                t("SYNCHRONIZED"),
                t("sql-a2.cms.test\\RTC"),
                t("FULL"),
                t("41000000012300001"),
            ],
            vec![
                t("other"),
                t("ONLINE"),
                Some(SqlValue::Bool(false)),
                None,
                None,
                None,
                None,
                None,
            ],
            vec![
                t("xds"),
                t("ONLINE"),
                Some(SqlValue::Int(1)),
                None,
                None,
                None,
                None,
                None,
            ],
        ];
        let p = parse_probe(&inst, &[db("xds"), db("LIS")], &[version, dbs]).unwrap();
        assert_eq!(p.version, "Microsoft SQL Server 2019 (RTM)");
        assert_eq!(p.databases.len(), 2);
        let lis = p.database(&db("lis")).unwrap();
        assert_eq!(lis.state, DbState::Restoring);
        let m = lis.mirroring.as_ref().unwrap();
        assert_eq!(m.role, MirrorRole::Mirror);
        assert_eq!(m.state, MirrorState::Synchronized);
        // The server's name for its partner, verbatim: the backend maps it.
        assert_eq!(m.partner_name.as_deref(), Some("sql-a2.cms.test\\RTC"));
        assert_eq!(m.partner, None);
        assert!(m.safety_full);
        assert_eq!(m.failover_lsn, Some(41000000012300001));
        let xds = p.database(&db("xds")).unwrap();
        assert!(xds.read_only && xds.mirroring.is_none());
        assert!(parse_probe(&inst, &[], &[vec![]]).is_err());
        let bad = vec![vec![
            t("xds"),
            t("ONLINE"),
            t("maybe"),
            None,
            None,
            None,
            None,
            None,
        ]];
        assert!(parse_probe(&inst, &[db("xds")], &[vec![vec![t("v")]], bad]).is_err());
    }

    #[test]
    fn positions_rows() {
        let dbs = [db("xds"), db("lis"), db("x")];
        let r = parse_positions(
            &dbs,
            &[
                vec![vec![Some(SqlValue::Int(7))]],
                vec![],
                vec![vec![t("12")]],
            ],
        )
        .unwrap();
        assert_eq!(r[0].position, Some(Position(7)));
        assert_eq!(r[1].position, None);
        assert_eq!(r[2].position, Some(Position(12)));
        assert!(parse_positions(&dbs, &[vec![]]).is_err());
        assert!(parse_positions(&dbs[..1], &[vec![vec![Some(SqlValue::Int(-1))]]]).is_err());
        // numeric(25,0) LSNs beyond u64 parse without overflow (as text or with `.0`).
        let big = parse_positions(
            &dbs[..2],
            &[
                vec![vec![t("9999999999999999999999999")]],
                vec![vec![t(" 18446744073709551616.0 ")]],
            ],
        )
        .unwrap();
        assert_eq!(
            big[0].position,
            Some(Position(9_999_999_999_999_999_999_999_999))
        );
        assert_eq!(big[1].position, Some(Position(u128::from(u64::MAX) + 1)));
        for bad in [
            "-5",
            "1.5",
            "12abc",
            "",
            "999999999999999999999999999999999999999999",
        ] {
            assert!(
                parse_positions(&dbs[..1], &[vec![vec![t(bad)]]]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn lock_and_location_rows() {
        assert_eq!(
            parse_return_code(&[vec![vec![Some(SqlValue::Int(-1))]]]).unwrap(),
            -1
        );
        assert!(parse_lock_held(&[vec![vec![t("Exclusive")]]]).unwrap());
        assert!(!parse_lock_held(&[vec![vec![t("NoLock")]]]).unwrap());
        assert_eq!(parse_location(&[vec![]]).unwrap(), None);
        let r = parse_location(&[vec![vec![
            Some(SqlValue::Int(3)),
            t("a.test\\RTC"),
            None,
            t("run-1"),
        ]]])
        .unwrap()
        .unwrap();
        assert_eq!(r.epoch, 3);
        assert_eq!(r.active.principal.to_string(), "a.test\\RTC");
        assert_eq!(r.run_id, "run-1");
    }
}
