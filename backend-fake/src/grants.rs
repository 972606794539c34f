//! What a login may do: server roles, database ownership and grants, and the answers of
//! `IS_SRVROLEMEMBER` and `HAS_PERMS_BY_NAME` for it, as SQL Server documents them.
//!
//! - Fixed server roles: sysadmin may do anything (CONTROL SERVER); dbcreator "can create,
//!   alter, drop, and restore any database":
//!   <https://learn.microsoft.com/en-us/sql/relational-databases/security/authentication-access/server-level-roles>
//! - `ALTER DATABASE` (also `SET PARTNER …`) "Requires ALTER permission on the database";
//!   CONTROL implies ALTER, and the owner (dbo) holds CONTROL:
//!   <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql>,
//!   <https://learn.microsoft.com/en-us/sql/relational-databases/security/permissions-database-engine>.
//!   Without it SQL Server answers 5011 then 5069 (the error does not say whether the
//!   database exists).
//! - `RESTORE`: "RESTORE permissions default to members of the sysadmin and dbcreator fixed
//!   server roles and the owner (dbo) of the database"; db_owner members do not have them:
//!   <https://learn.microsoft.com/en-us/sql/t-sql/statements/restore-statements-transact-sql#permissions>.
//!   Without them: 3110 "User does not have permission to RESTORE database '%.*ls'." then
//!   3013 ([errors 3000-3999](https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-3000-to-3999)).
//! - `sys.database_mirroring`: "To see non-NULL values on a mirror database, you must be a
//!   member of the sysadmin fixed server role":
//!   <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>.
//! - Writing the location table: INSERT / UPDATE on it, else 229 "The %ls permission was
//!   denied on the object …".
//! - `sp_getapplock` "Requires membership in the public role": every login may.

use failover_core::DatabaseName;
use serde::Deserialize;

/// The rights of one login (on one instance, or on all). A session without configured
/// grants (a trusted session, or a login the estate has no grants for) is sysadmin, as
/// the estate's logins always were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginGrants {
    /// Member of the sysadmin fixed server role.
    pub sysadmin: bool,
    /// Member of the dbcreator fixed server role.
    pub dbcreator: bool,
    /// Holds VIEW SERVER STATE (reported by `HAS_PERMS_BY_NAME`, needed by no step).
    pub view_server_state: bool,
    /// Databases the login owns (`sys.databases.owner_sid`).
    pub owns: Vec<DatabaseName>,
    /// Databases it holds ALTER on.
    pub alter: Vec<DatabaseName>,
    /// Databases it holds CONTROL on (implies ALTER and VIEW DEFINITION).
    pub control: Vec<DatabaseName>,
    /// Databases it holds VIEW DEFINITION on (does not show a mirror's mirroring columns).
    pub view_definition: Vec<DatabaseName>,
    /// INSERT and UPDATE on the location table.
    pub location_write: bool,
}

impl LoginGrants {
    /// Everything (a sysadmin).
    pub fn sysadmin() -> Self {
        Self {
            sysadmin: true,
            ..Self::default()
        }
    }

    /// Whether the login owns `db`.
    pub fn owns(&self, db: &DatabaseName) -> bool {
        self.owns.contains(db)
    }

    /// `ALTER DATABASE [db] …` is allowed.
    pub fn can_alter(&self, db: &DatabaseName) -> bool {
        self.sysadmin
            || self.dbcreator
            || self.owns(db)
            || self.control.contains(db)
            || self.alter.contains(db)
    }

    /// `RESTORE DATABASE [db] …` is allowed.
    pub fn can_restore(&self, db: &DatabaseName) -> bool {
        self.sysadmin || self.dbcreator || self.owns(db)
    }

    /// The mirroring columns of a mirror copy are shown.
    pub fn sees_mirror_columns(&self) -> bool {
        self.sysadmin
    }

    /// INSERT / UPDATE on the location table is allowed.
    pub fn can_write_location(&self) -> bool {
        self.sysadmin || self.location_write
    }

    /// `IS_SRVROLEMEMBER(role)` for the current login: 1 or 0, NULL for a role that does not
    /// exist. `public` holds every login.
    /// <https://learn.microsoft.com/en-us/sql/t-sql/functions/is-srvrolemember-transact-sql>
    pub fn is_srvrolemember(&self, role: &str) -> Option<bool> {
        match role.to_ascii_lowercase().as_str() {
            "sysadmin" => Some(self.sysadmin),
            // Membership, not permission: a sysadmin is not a dbcreator member.
            "dbcreator" => Some(self.dbcreator),
            "public" => Some(true),
            "serveradmin" | "setupadmin" | "bulkadmin" | "securityadmin" | "diskadmin"
            | "processadmin" => Some(false),
            _ => None,
        }
    }

    /// `HAS_PERMS_BY_NAME(securable, class, permission)`: 1 or 0, NULL for a class or
    /// permission it does not know, and for a database that `accessible` says is missing or
    /// not ONLINE (the securable is not found / "not in a state that allows access checks",
    /// as 5011 words it: the query fails; an inference, the page does not list the cases).
    /// Sysadmin holds every permission.
    /// <https://learn.microsoft.com/en-us/sql/t-sql/functions/has-perms-by-name-transact-sql>
    pub fn has_perms_by_name(
        &self,
        securable: Option<&str>,
        class: &str,
        permission: &str,
        accessible: impl Fn(&DatabaseName) -> bool,
    ) -> Option<bool> {
        let perm = permission.to_ascii_uppercase();
        match class.to_ascii_uppercase().as_str() {
            // The server itself: securable and class NULL (the page's first example), or
            // class SERVER.
            "" | "SERVER" if securable.is_none() => match perm.as_str() {
                "VIEW SERVER STATE" => Some(self.sysadmin || self.view_server_state),
                "CONTROL SERVER" | "ALTER ANY DATABASE" => Some(self.sysadmin),
                "CREATE ANY DATABASE" => Some(self.sysadmin || self.dbcreator),
                "VIEW ANY DATABASE" => Some(true),
                _ => None,
            },
            "DATABASE" => {
                let db = DatabaseName::parse(securable?.trim_matches(['[', ']'])).ok()?;
                if !accessible(&db) {
                    return None;
                }
                let control = self.sysadmin || self.owns(&db) || self.control.contains(&db);
                match perm.as_str() {
                    "ALTER" => Some(self.can_alter(&db)),
                    "CONTROL" => Some(control),
                    "VIEW DEFINITION" => Some(control || self.view_definition.contains(&db)),
                    _ => None,
                }
            }
            "OBJECT" => {
                let name = securable?.to_ascii_lowercase().replace(['[', ']'], "");
                if !name.ends_with(failover_tsql_location_table()) {
                    return None;
                }
                match perm.as_str() {
                    "SELECT" => Some(true),
                    "INSERT" | "UPDATE" => Some(self.can_write_location()),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// The location table's name (`failover_tsql::build::LOCATION_TABLE`; this crate does not
/// depend on failover-tsql).
fn failover_tsql_location_table() -> &'static str {
    "cms_failover_location"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(s: &str) -> DatabaseName {
        DatabaseName::parse(s).unwrap()
    }

    #[test]
    fn functions_answer_one_zero_or_null_as_documented() {
        let g = LoginGrants {
            alter: vec![db("xds")],
            owns: vec![db("lis")],
            ..LoginGrants::default()
        };
        let exists = |d: &DatabaseName| d.as_str() != "nope";
        assert_eq!(g.is_srvrolemember("sysadmin"), Some(false));
        assert_eq!(g.is_srvrolemember("public"), Some(true));
        assert_eq!(g.is_srvrolemember("no_such_role"), None);
        assert_eq!(
            g.has_perms_by_name(Some("xds"), "DATABASE", "ALTER", exists),
            Some(true)
        );
        assert_eq!(
            g.has_perms_by_name(Some("xds"), "DATABASE", "CONTROL", exists),
            Some(false)
        );
        assert_eq!(
            g.has_perms_by_name(Some("lis"), "DATABASE", "CONTROL", exists),
            Some(true)
        );
        assert_eq!(
            g.has_perms_by_name(Some("nope"), "DATABASE", "ALTER", exists),
            None
        );
        assert_eq!(
            g.has_perms_by_name(Some("xds"), "DATABASE", "FLY", exists),
            None
        );
        assert_eq!(
            g.has_perms_by_name(None, "SERVER", "VIEW SERVER STATE", exists),
            Some(false)
        );
        assert_eq!(
            g.has_perms_by_name(
                Some("master.dbo.cms_failover_location"),
                "OBJECT",
                "INSERT",
                exists
            ),
            Some(false)
        );
        assert!(!g.can_restore(&db("xds")), "ALTER does not allow RESTORE");
        assert!(g.can_restore(&db("lis")), "the owner may RESTORE");
        assert!(LoginGrants::sysadmin().can_write_location());
    }
}
