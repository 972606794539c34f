//! Preflight's permission check: from the rights each probe read ([`LoginRights`]), which
//! steps of the plan the login could not run. Pure; part of [`super::preflight::plan`], so a
//! login without the rights a run needs is refused before any change
//! ([`Refusal::InsufficientPermissions`]).
//!
//! | step | statement | needs |
//! |---|---|---|
//! | fence / its undo | `ALTER DATABASE … SET READ_ONLY / READ_WRITE` | ALTER on the database |
//! | recover | `RESTORE DATABASE … WITH RECOVERY` | sysadmin, dbcreator or the database's owner |
//! | open | `ALTER DATABASE … SET READ_WRITE` | ALTER on the database |
//! | partner failover / force service | `ALTER DATABASE … SET PARTNER …` | ALTER on the database |
//! | record location | `INSERT` / `UPDATE` of the location table | INSERT and UPDATE on it |
//! | any probe of a mirror | `sys.database_mirroring` | sysadmin (else the columns are NULL) |
//!
//! Sources: [ALTER DATABASE](https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql)
//! and [its mirroring options](https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring)
//! ("Requires ALTER permission on the database"),
//! [RESTORE](https://learn.microsoft.com/en-us/sql/t-sql/statements/restore-statements-transact-sql#permissions),
//! [sys.database_mirroring](https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql),
//! [sp_getapplock](https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-getapplock-transact-sql)
//! ("Requires membership in the public role": the lock needs nothing more).
//! A right the probe could not tell (`HAS_PERMS_BY_NAME` NULL, a backend that reports no
//! rights) is not refused: the step's own error then says it.

use super::preflight::{Observations, Plan};
use crate::model::{DatabaseName, InstanceAddr};
use crate::outcome::{MissingRight, Refusal};
use crate::server::{DbState, LoginRights};

/// `s` as a bracketed T-SQL identifier (`]` doubled).
pub(super) fn bracket(s: &str) -> String {
    format!("[{}]", s.replace(']', "]]"))
}

struct Check<'a> {
    obs: &'a Observations,
    missing: Vec<MissingRight>,
}

impl Check<'_> {
    fn rights(&self, i: &InstanceAddr) -> Option<&LoginRights> {
        match self.obs.probes.get(i) {
            Some(Ok(p)) => p.rights.as_ref(),
            _ => None,
        }
    }

    fn push(&mut self, i: &InstanceAddr, r: &LoginRights, step: &str, dbs: Vec<DatabaseName>) {
        let login = bracket(&r.login);
        let (needs, fix) = match step {
            "recover" => (
                "RESTORE permission: membership in sysadmin or dbcreator, or ownership of the database (db_owner members do not have it)".to_string(),
                format!("ALTER SERVER ROLE [dbcreator] ADD MEMBER {login};"),
            ),
            "record_location" => (
                "INSERT and UPDATE on dbo.cms_failover_location".to_string(),
                format!(
                    "GRANT SELECT, INSERT, UPDATE ON dbo.cms_failover_location TO <the user of {login}> (in the control database)"
                ),
            ),
            "read_mirroring" => (
                "membership in sysadmin: sys.database_mirroring shows the mirroring columns of a mirror copy only to sysadmin (others see NULL, as if not mirrored)".to_string(),
                format!("ALTER SERVER ROLE [sysadmin] ADD MEMBER {login};"),
            ),
            _ => (
                "ALTER on the database".to_string(),
                format!(
                    "{} (in each database), or ALTER SERVER ROLE [dbcreator] ADD MEMBER {login};",
                    dbs.iter()
                        .map(|d| format!("GRANT ALTER ON DATABASE::{} TO <its user for {login}>", bracket(d.as_str())))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
        };
        self.missing.push(MissingRight {
            instance: i.clone(),
            login: r.login.clone(),
            step: step.to_string(),
            databases: dbs,
            needs,
            fix,
        });
    }

    fn alter(&mut self, i: &InstanceAddr, step: &str, dbs: &[DatabaseName]) {
        let Some(r) = self.rights(i).cloned() else {
            return;
        };
        let denied: Vec<DatabaseName> = dbs
            .iter()
            .filter(|d| r.can_alter(d) == Some(false))
            .cloned()
            .collect();
        if !denied.is_empty() {
            self.push(i, &r, step, denied);
        }
    }

    fn restore(&mut self, i: &InstanceAddr, dbs: &[DatabaseName]) {
        let Some(r) = self.rights(i).cloned() else {
            return;
        };
        let denied: Vec<DatabaseName> = dbs.iter().filter(|d| !r.can_restore(d)).cloned().collect();
        if !denied.is_empty() {
            self.push(i, &r, "recover", denied);
        }
    }

    fn location(&mut self, i: &InstanceAddr) {
        if let Some(r) = self.rights(i).cloned()
            && !r.sysadmin
            && r.location_write == Some(false)
        {
            self.push(i, &r, "record_location", Vec::new());
        }
    }

    fn refusal(self) -> Result<(), Box<Refusal>> {
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(Box::new(Refusal::InsufficientPermissions {
                missing: self.missing,
            }))
        }
    }
}

/// Before planning: every probe that may hide a mirror copy. A login that is not sysadmin
/// sees a mirror copy as a RESTORING database outside any mirroring session, which would
/// plan a `RESTORE … WITH RECOVERY` on it; such a probe cannot be trusted.
pub(super) fn check_visibility(obs: &Observations) -> Result<(), Box<Refusal>> {
    let mut c = Check {
        obs,
        missing: Vec::new(),
    };
    for (i, p) in &obs.probes {
        let Ok(p) = p else { continue };
        let Some(r) = &p.rights else { continue };
        let hidden: Vec<DatabaseName> = p
            .databases
            .iter()
            .filter(|d| d.state == DbState::Restoring && d.mirroring.is_none())
            .map(|d| d.name.clone())
            .collect();
        if !r.sees_mirroring() && !hidden.is_empty() {
            let r = r.clone();
            c.push(i, &r, "read_mirroring", hidden);
        }
    }
    c.refusal()
}

/// After planning: the rights each step of `plan` needs, on the instance it runs on.
pub(super) fn check(
    obs: &Observations,
    plan: &Plan,
    dbs: &[DatabaseName],
) -> Result<(), Box<Refusal>> {
    let mut c = Check {
        obs,
        missing: Vec::new(),
    };
    for (i, fence) in &plan.to_fence {
        c.alter(i, "fence", fence);
    }
    if let Some(m) = &plan.force_mirror {
        c.alter(m, "force_service", dbs);
    }
    if !plan.to_recover.is_empty() {
        c.restore(&plan.target, &plan.to_recover);
    }
    if plan.force_mirror.is_none() {
        c.alter(&plan.target, "open", dbs);
    }
    if plan.repoint_to.is_some() {
        c.alter(&plan.target, "partner_failover", dbs);
    }
    let mut written: Vec<&InstanceAddr> = plan.records.keys().collect();
    written.retain(|i| plan.reachable.contains(i));
    for i in written {
        c.location(i);
    }
    c.refusal()
}

#[cfg(test)]
mod tests {
    use crate::machine::StateName;
    use crate::machine::script::*;
    use crate::model::DatabaseName;
    use crate::outcome::{Outcome, Refusal};
    use crate::server::{DatabaseRights, LoginRights};

    /// A login with no server role, owning nothing, with ALTER where `alter` says.
    fn rights(alter: Option<bool>, location_write: Option<bool>) -> LoginRights {
        LoginRights {
            login: "cms]op".into(),
            sysadmin: false,
            dbcreator: false,
            location_write,
            databases: DatabaseName::cms_defaults()
                .into_iter()
                .map(|name| DatabaseRights {
                    name,
                    alter,
                    owner: false,
                })
                .collect(),
        }
    }

    fn missing(o: &Outcome) -> Vec<(String, String)> {
        match o.refusal() {
            Some(Refusal::InsufficientPermissions { missing }) => missing
                .iter()
                .map(|m| (m.instance.to_string(), m.step.clone()))
                .collect(),
            _ => panic!("not a permission refusal: {o}"),
        }
    }

    #[test]
    fn a_login_without_alter_on_the_source_is_refused_before_any_change() {
        let mut w = World::planned();
        w.set_rights(&a(), rights(Some(false), Some(true)));
        w.set_rights(&b(), rights(Some(true), Some(true)));
        let (o, h) = w.run(planned());
        assert_eq!(missing(&o), [("a.test".to_string(), "fence".to_string())]);
        assert_eq!(o.exit_code(), 3);
        // The first check took the lock and released it; nothing else changed.
        assert_eq!(
            h,
            [
                StateName::Preflight,
                StateName::ReleasingLocks,
                StateName::Done
            ]
        );
        assert!(w.durable_mutations().is_empty());
        let text = o.to_string();
        assert!(text.contains("GRANT ALTER ON DATABASE::[xds]"), "{text}");
        assert!(text.contains("[cms]]op]"), "the login is escaped: {text}");
    }

    #[test]
    fn every_missing_right_is_listed_with_its_instance() {
        let mut w = World::planned();
        w.set_restoring(&b());
        w.set_rights(&a(), rights(Some(false), Some(false)));
        w.set_rights(&b(), rights(None, Some(true)));
        let (o, _) = w.run(planned());
        // B's RESTORING copies look unmirrored to a login that is not sysadmin: refused
        // before planning, whatever else is missing.
        assert_eq!(
            missing(&o),
            [("b.test".to_string(), "read_mirroring".to_string())]
        );
        assert!(w.durable_mutations().is_empty());
    }

    /// A log-shipping STANDBY target is recovered with RESTORE, which ALTER does not
    /// allow: sysadmin, dbcreator or the owner only.
    #[test]
    fn recovery_needs_dbcreator_sysadmin_or_ownership() {
        let mut w = World::planned();
        w.set_standby(&b());
        w.set_rights(&a(), rights(Some(true), Some(true)));
        let mut rb = rights(Some(true), Some(true));
        rb.databases[0].owner = true;
        w.set_rights(&b(), rb.clone());
        let (o, _) = w.run(planned());
        match o.refusal() {
            Some(Refusal::InsufficientPermissions { missing }) => {
                assert_eq!(missing.len(), 1, "{o}");
                assert_eq!(missing[0].step, "recover");
                assert_eq!(missing[0].databases, vec![rb.databases[1].name.clone()]);
                assert!(missing[0].fix.contains("dbcreator"));
            }
            _ => panic!("{o}"),
        }
        assert!(w.durable_mutations().is_empty());
        rb.dbcreator = true;
        w.set_rights(&b(), rb);
        let (o, _) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
    }

    #[test]
    fn location_writes_are_checked_on_every_instance_written() {
        let mut w = World::planned();
        w.set_rights(&a(), rights(Some(true), Some(false)));
        w.set_rights(&b(), rights(Some(true), Some(true)));
        let (o, _) = w.run(planned());
        assert_eq!(
            missing(&o),
            [("a.test".to_string(), "record_location".to_string())]
        );
        assert!(w.durable_mutations().is_empty());
    }

    #[test]
    fn enough_rights_and_unknown_rights_run_through() {
        let mut w = World::planned();
        w.set_rights(&a(), rights(Some(true), Some(true)));
        w.set_rights(&b(), rights(None, None));
        let (o, _) = w.run(planned());
        assert!(matches!(o, Outcome::Succeeded { .. }), "{o}");
    }
}
