//! Pre-checks [`SqlBackend`](crate::SqlBackend) runs on a fresh probe before sending a
//! changing batch, so the operations are idempotent and refuse with `InvalidState` before
//! touching anything.
//!
//! Errors built here carry these SQL Server numbers, for the same meaning the server would
//! report: 911 database does not exist, 1468 database is in a mirroring session (the
//! statement is not allowed on this partner), 5052 database is not ONLINE. Their kind is
//! always [`ErrorKind::InvalidState`].

use failover_core::{
    BackendError, DatabaseName, DbState, ErrorKind, InstanceAddr, InstanceProbe, LocationRecord,
    MirrorFailoverKind, MirrorRole, MirrorState, Operation,
};

fn refuse(op: Operation, instance: &InstanceAddr, code: i32, msg: String) -> BackendError {
    BackendError::new(ErrorKind::InvalidState, op, instance, msg).with_code(code)
}

fn found<'a>(
    op: Operation,
    probe: &'a InstanceProbe,
    db: &DatabaseName,
) -> Result<&'a failover_core::DatabaseProbe, BackendError> {
    probe.database(db).ok_or_else(|| {
        refuse(
            op,
            &probe.instance,
            911,
            format!("database {db} does not exist on {}", probe.instance),
        )
    })
}

/// The databases that are RESTORING or STANDBY and need `RESTORE … WITH RECOVERY`; other
/// ONLINE ones are
/// skipped; refuses a missing database, a mirror in a session and any other state.
pub fn recover_targets(
    probe: &InstanceProbe,
    dbs: &[DatabaseName],
) -> Result<Vec<DatabaseName>, BackendError> {
    let op = Operation::Recover;
    let mut out = Vec::new();
    for db in dbs {
        let d = found(op, probe, db)?;
        if d.mirroring
            .as_ref()
            .is_some_and(|m| m.role == MirrorRole::Mirror)
        {
            return Err(refuse(
                op,
                &probe.instance,
                1468,
                format!(
                    "database {db} is a mirror in a session on {}",
                    probe.instance
                ),
            ));
        }
        match d.state {
            // A STANDBY copy (ONLINE, read-only, is_in_standby) is promoted by RESTORE …
            // WITH RECOVERY too; SET READ_WRITE would fail with 5063.
            DbState::Online if d.in_standby => out.push(db.clone()),
            DbState::Online => {}
            DbState::Restoring => out.push(db.clone()),
            ref s => {
                return Err(refuse(
                    op,
                    &probe.instance,
                    5052,
                    format!("database {db} is {s} on {}", probe.instance),
                ));
            }
        }
    }
    Ok(out)
}

/// What a mirror failover must do on the probed instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPlan {
    /// Databases the statement still has to run for (in the requested order).
    pub to_run: Vec<DatabaseName>,
    /// The instance clients must use afterwards.
    pub new_principal: InstanceAddr,
}

/// Plans a mirror failover issued on `probe.instance`.
///
/// Planned: databases where the instance is PRINCIPAL get `SET PARTNER FAILOVER`; ones where
/// it already is MIRROR, or PRINCIPAL with the switch pending (PENDING_FAILOVER), are done; clients must then use the partner
/// (`mirroring_partner_instance`). Forced: databases where it is MIRROR get
/// `FORCE_SERVICE_ALLOW_DATA_LOSS`, PRINCIPAL ones are done; clients use this instance.
/// Refuses a missing or unmirrored database, and a planned failover whose partner name
/// cannot be parsed or differs between databases.
pub fn mirror_failover_plan(
    probe: &InstanceProbe,
    dbs: &[DatabaseName],
    kind: MirrorFailoverKind,
) -> Result<MirrorPlan, BackendError> {
    let op = Operation::MirrorFailover;
    let inst = &probe.instance;
    let mut to_run = Vec::new();
    let mut partner: Option<InstanceAddr> = None;
    for db in dbs {
        let d = found(op, probe, db)?;
        let Some(m) = &d.mirroring else {
            return Err(refuse(
                op,
                inst,
                1416,
                format!("database {db} is not mirrored on {inst}"),
            ));
        };
        let needs = match kind {
            // PENDING_FAILOVER on the principal: the statement was accepted and the roles
            // have not switched yet ("can complete successfully when entered, but fail
            // later": https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring);
            // sending it again would fail (the session is not SYNCHRONIZED).
            MirrorFailoverKind::Planned => {
                m.role == MirrorRole::Principal && m.state != MirrorState::PendingFailover
            }
            MirrorFailoverKind::Forced => m.role == MirrorRole::Mirror,
        };
        if needs {
            to_run.push(db.clone());
        }
        if kind == MirrorFailoverKind::Planned {
            let Some(p) = &m.partner else {
                let why = match &m.partner_name {
                    Some(n) => format!(
                        "reports its mirroring partner as `{n}`, which maps to no instance of the topology; add `\"{n}\" = \"<address>\"` to the topology's [aliases] table"
                    ),
                    None => "shows no mirroring partner (mirroring_partner_instance is NULL: the login may not be sysadmin)".to_string(),
                };
                return Err(BackendError::new(
                    ErrorKind::InvalidState,
                    op,
                    inst,
                    format!("{db} on {inst} {why}"),
                ));
            };
            match &partner {
                Some(prev) if prev != p => {
                    return Err(refuse(
                        op,
                        inst,
                        1416,
                        format!("databases are mirrored to different partners ({prev} and {p})"),
                    ));
                }
                _ => partner = Some(p.clone()),
            }
        }
    }
    let new_principal = match kind {
        MirrorFailoverKind::Forced => inst.clone(),
        MirrorFailoverKind::Planned => partner.unwrap_or_else(|| inst.clone()),
    };
    Ok(MirrorPlan {
        to_run,
        new_principal,
    })
}

/// Rejects a lock resource `sp_getapplock` would not accept (1-255 characters).
pub fn check_lock_resource(
    op: Operation,
    instance: &InstanceAddr,
    resource: &str,
) -> Result<(), BackendError> {
    let n = resource.chars().count();
    if n == 0 || n > 255 {
        return Err(BackendError::new(
            ErrorKind::Fatal,
            op,
            instance,
            format!("lock resource must have 1-255 characters, has {n}"),
        ));
    }
    Ok(())
}

/// Rejects a record that cannot be stored (epoch beyond `bigint`, over-long names or run id).
pub fn check_location_record(
    instance: &InstanceAddr,
    record: &LocationRecord,
    expected: Option<u64>,
) -> Result<(), BackendError> {
    let bad = |msg: String| {
        Err(BackendError::new(
            ErrorKind::Fatal,
            Operation::WriteLocation,
            instance,
            msg,
        ))
    };
    if record.epoch > i64::MAX as u64 || expected.is_some_and(|e| e > i64::MAX as u64) {
        return bad("epoch does not fit in bigint".into());
    }
    if record.run_id.chars().count() > 200 {
        return bad("run id longer than 200 characters".into());
    }
    if record
        .active
        .instances()
        .any(|i| i.to_string().chars().count() > 300)
    {
        return bad("instance address longer than 300 characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_core::{DatabaseProbe, MirrorInfo, MirrorState};

    fn db(s: &str) -> DatabaseName {
        DatabaseName::parse(s).unwrap()
    }
    fn addr(s: &str) -> InstanceAddr {
        InstanceAddr::parse(s).unwrap()
    }
    fn probe(dbs: Vec<DatabaseProbe>) -> InstanceProbe {
        InstanceProbe {
            instance: addr("a.test\\RTC"),
            version: "v".into(),
            databases: dbs,
            rights: None,
        }
    }
    fn d(name: &str, state: DbState, ro: bool, role: Option<MirrorRole>) -> DatabaseProbe {
        DatabaseProbe {
            name: db(name),
            state,
            read_only: ro,
            in_standby: false,
            mirroring: role.map(|role| MirrorInfo {
                role,
                state: MirrorState::Synchronized,
                partner: Some(addr("b.test\\RTC")),
                partner_name: Some("B\\RTC".into()),
                safety_full: true,
                failover_lsn: None,
                witness: None,
            }),
        }
    }

    #[test]
    fn recover() {
        let p = probe(vec![
            d("xds", DbState::Restoring, false, None),
            d("lis", DbState::Online, false, None),
        ]);
        assert_eq!(
            recover_targets(&p, &[db("xds"), db("lis")]).unwrap(),
            vec![db("xds")]
        );
        let p = probe(vec![d(
            "xds",
            DbState::Restoring,
            false,
            Some(MirrorRole::Mirror),
        )]);
        assert_eq!(
            recover_targets(&p, &[db("xds")]).unwrap_err().kind,
            ErrorKind::InvalidState
        );
    }

    #[test]
    fn mirror() {
        let p = probe(vec![
            d("xds", DbState::Online, false, Some(MirrorRole::Principal)),
            d("lis", DbState::Restoring, false, Some(MirrorRole::Mirror)),
        ]);
        let planned =
            mirror_failover_plan(&p, &[db("xds"), db("lis")], MirrorFailoverKind::Planned).unwrap();
        assert_eq!(planned.to_run, vec![db("xds")]);
        assert_eq!(planned.new_principal, addr("b.test\\RTC"));
        let forced =
            mirror_failover_plan(&p, &[db("xds"), db("lis")], MirrorFailoverKind::Forced).unwrap();
        assert_eq!(forced.to_run, vec![db("lis")]);
        assert_eq!(forced.new_principal, addr("a.test\\RTC"));
        let p = probe(vec![d("xds", DbState::Online, false, None)]);
        assert_eq!(
            mirror_failover_plan(&p, &[db("xds")], MirrorFailoverKind::Planned)
                .unwrap_err()
                .kind,
            ErrorKind::InvalidState
        );
    }
}
