//! Estate description files (TOML) for the `mssql-sim` binary. See the crate README.

use crate::tls::ServerTls;
use backend_fake::{Estate, WitnessConnection};
use failover_core::{DatabaseName, DbState, InstanceAddr, LocationRecord, MirrorState, Store};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `@@VERSION` an instance reports unless its file entry says otherwise.
pub const DEFAULT_VERSION: &str = "Microsoft SQL Server 2019 (RTM) - 15.0.2000.5 (X64) (mssql-sim)";

/// An estate file that could not be read or does not describe a valid estate.
#[derive(Debug, thiserror::Error)]
pub enum EstateFileError {
    /// TOML syntax or schema error.
    #[error("estate file: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value or combination the estate refuses.
    #[error("estate file: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstateFile {
    /// Instances with their databases.
    #[serde(default, rename = "instance")]
    pub instances: Vec<InstanceEntry>,
    /// Database mirroring sessions.
    #[serde(default, rename = "mirroring")]
    pub mirroring: Vec<MirroringEntry>,
    /// Replication links.
    #[serde(default, rename = "link")]
    pub links: Vec<LinkEntry>,
    /// Client workloads.
    #[serde(default, rename = "workload")]
    pub workloads: Vec<WorkloadEntry>,
    /// SQL logins besides `sa`.
    #[serde(default, rename = "login")]
    pub logins: Vec<LoginEntry>,
    /// Windows (Kerberos) logins: with any, every instance accepts integrated security
    /// (see [`crate::integrated`]).
    #[serde(default, rename = "windows_login")]
    pub windows_logins: Vec<crate::integrated::WindowsLogin>,
    /// Active-location records.
    #[serde(default, rename = "location")]
    pub locations: Vec<LocationEntry>,
    /// Keep the durable state in this directory (relative to the estate file), as
    /// `--state-dir` does; the flag wins.
    #[serde(default)]
    pub state_dir: Option<std::path::PathBuf>,
    /// `ALTER DATABASE … SET READ_ONLY` on a mirroring principal fails with 1468 then 5069
    /// (default false: allowed). Microsoft does not document which SQL Server does, so the
    /// simulator can act either way: see
    /// `backend_fake::Estate::set_read_only_refused_on_mirroring_principal`.
    #[serde(default)]
    pub read_only_refused_on_mirroring_principal: bool,
    /// `SET PARTNER FAILOVER` returns before the roles switch ("can complete successfully
    /// when entered, but fail later":
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-database-mirroring>):
    /// the roles switch after this many further statements (estate ticks, so runs stay
    /// deterministic); meanwhile both partners show PENDING_FAILOVER. 0: inside the statement.
    #[serde(default)]
    pub partner_failover_delay: u64,
    /// Automatic failover by the witness after this many estate ticks (absent: off): a
    /// SYNCHRONIZED safety-FULL session whose principal is lost while its witness is
    /// connected to the mirror fails over by itself, as SQL Server does in high-safety mode
    /// with a witness
    /// (<https://learn.microsoft.com/en-us/sql/database-engine/database-mirroring/role-switching-during-a-database-mirroring-session-sql-server>);
    /// see `backend_fake::Estate::set_automatic_failover`.
    #[serde(default)]
    pub automatic_failover_delay: Option<u64>,
    /// Changes scheduled for a tick: a witness connecting or disconnecting, an instance
    /// going down or coming back (`backend_fake::Estate::schedule`).
    #[serde(default, rename = "event")]
    pub events: Vec<EventEntry>,
    /// `FORCE_SERVICE_ALLOW_DATA_LOSS` returns before the forced mirror switches (the same
    /// "fail later" sentence): the mirror becomes PRINCIPAL and ONLINE after this many further
    /// statements (estate ticks); meanwhile it shows what it showed before (an inference:
    /// Microsoft does not say what it shows). 0: inside the statement. See
    /// `backend_fake::Estate::set_force_service_delay`.
    #[serde(default)]
    pub force_service_delay: u64,
}

/// `[[event]]`: at estate tick `tick`, either an instance goes down or comes back
/// (`instance`, `reachable`), or the witness of `database`'s session (named by either
/// `partner`) is set to `witness` connected as `witness_connected` (roles at that tick;
/// `witness` absent: `SET WITNESS OFF`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEntry {
    /// The estate tick (each statement is one tick).
    pub tick: u64,
    /// The instance going down or coming back.
    #[serde(default)]
    pub instance: Option<InstanceAddr>,
    /// With `instance`: up or down.
    #[serde(default)]
    pub reachable: Option<bool>,
    /// The mirrored database whose witness changes.
    #[serde(default)]
    pub database: Option<DatabaseName>,
    /// With `database`: either partner of its session.
    #[serde(default)]
    pub partner: Option<InstanceAddr>,
    /// With `database`: the witness's server network address (absent: no witness).
    #[serde(default)]
    pub witness: Option<String>,
    /// With `witness`: which partners it is connected to (default `both`).
    #[serde(default)]
    pub witness_connected: Option<WitnessConnection>,
}

impl EventEntry {
    fn event(&self) -> Result<backend_fake::EstateEvent, EstateFileError> {
        use backend_fake::EstateEvent;
        match (self, &self.instance, &self.database) {
            (
                EventEntry {
                    reachable: Some(r),
                    partner: None,
                    witness: None,
                    witness_connected: None,
                    ..
                },
                Some(i),
                None,
            ) => Ok(EstateEvent::Reachable {
                instance: i.clone(),
                reachable: *r,
            }),
            (
                EventEntry {
                    reachable: None,
                    partner: Some(p),
                    ..
                },
                None,
                Some(d),
            ) if self.witness.is_some() || self.witness_connected.is_none() => {
                Ok(EstateEvent::Witness {
                    database: d.clone(),
                    partner: p.clone(),
                    witness: self
                        .witness
                        .clone()
                        .map(|w| (w, self.witness_connected.unwrap_or(WitnessConnection::Both))),
                })
            }
            _ => Err(invalid(format!(
                "event at tick {}: give `instance` and `reachable`, or `database`, `partner` and optionally `witness` / `witness_connected` (`witness_connected` needs `witness`)",
                self.tick
            ))),
        }
    }
}

/// `[[instance]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceEntry {
    /// `fqdn[\instance]`, e.g. `sql-a.cms.test\RTC`.
    pub name: InstanceAddr,
    /// What the server calls itself (`@@SERVERNAME`, and `mirroring_partner_instance` on
    /// its partners): computer name and instance, e.g. `SQLB01\RTC`; no domain, no port
    /// (<https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-mirroring-transact-sql>).
    /// Absent: the host's first label in upper case and the instance
    /// ([`backend_fake::default_server_name`]).
    #[serde(default)]
    pub server_name: Option<String>,
    /// `@@VERSION`.
    #[serde(default)]
    pub version: Option<String>,
    /// Loopback port (absent or 0: ephemeral).
    #[serde(default)]
    pub port: u16,
    /// The address it listens on, e.g. `127.0.1.1` (absent: 127.0.0.1). With one address per
    /// instance every instance can use SQL Server's standard port 1433, as in a real estate.
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
    /// Whether the instance starts up (default true).
    #[serde(default = "yes")]
    pub reachable: bool,
    /// TLS certificate chain (PEM, leaf first; relative to the estate file). Absent: the
    /// instance has no certificate and answers PRELOGIN with ENCRYPT_NOT_SUP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Force Encryption: refuse clients that will not encrypt (needs `tls_cert`).
    #[serde(default)]
    pub force_encryption: bool,
    /// Databases on this instance.
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabaseEntry>,
}

fn yes() -> bool {
    true
}

/// `[[instance.database]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseEntry {
    /// Database name.
    pub name: DatabaseName,
    /// `state_desc` (default ONLINE).
    #[serde(default)]
    pub state: Option<String>,
    /// `is_read_only` (default false).
    #[serde(default)]
    pub read_only: bool,
    /// Change position (default 0).
    #[serde(default)]
    pub position: u64,
    /// A log-shipping STANDBY copy (ONLINE, read-only, `is_in_standby = 1`; needs `state`
    /// absent or ONLINE).
    #[serde(default)]
    pub standby: bool,
}

/// `[[mirroring]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirroringEntry {
    /// The mirrored database.
    pub database: DatabaseName,
    /// The principal (must hold an ONLINE copy).
    pub principal: InstanceAddr,
    /// The mirror (its copy is created RESTORING).
    pub mirror: InstanceAddr,
    /// `mirroring_state_desc` (default SYNCHRONIZED).
    #[serde(default)]
    pub state: Option<String>,
    /// Safety FULL (default true).
    #[serde(default = "yes")]
    pub safety_full: bool,
    /// The witness's server network address (`mirroring_witness_name`,
    /// `TCP://wit.example:5022`); absent: no witness (`SET WITNESS OFF`).
    #[serde(default)]
    pub witness: Option<String>,
    /// Which partners the witness is connected to: `both` (default), `principal_only`,
    /// `mirror_only` or `neither` (roles as listed in this entry). Each partner reports
    /// `mirroring_witness_state_desc` CONNECTED or DISCONNECTED accordingly.
    #[serde(default)]
    pub witness_connected: Option<WitnessConnection>,
}

/// `[[link]]`: a replication link copying positions from source to target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    /// Source instance.
    pub source: InstanceAddr,
    /// Target instance.
    pub target: InstanceAddr,
    /// Databases it copies.
    pub databases: Vec<DatabaseName>,
    /// Position units copied per tick.
    pub rate: u64,
    /// Starts stalled.
    #[serde(default)]
    pub stalled: bool,
}

/// `[[workload]]`: writes per tick on whichever listed instance has the database writable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadEntry {
    /// Instances it writes to.
    pub instances: Vec<InstanceAddr>,
    /// The database.
    pub database: DatabaseName,
    /// Writes per tick.
    pub rate: u64,
}

/// `[[login]]`. The password comes from the named environment variable (never the file).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginEntry {
    /// Login name.
    pub user: String,
    /// The environment variable holding the password.
    pub password_env: String,
    /// The login's default database (absent: `master`): where a session starts when the
    /// client names no database; 4064 at login when it cannot be opened.
    #[serde(default)]
    pub default_database: Option<DatabaseName>,
    /// What the login may do on every instance (`[login.grants]`: `sysadmin`, `dbcreator`,
    /// `view_server_state`, `owns`, `alter`, `control`, `view_definition`, `location_write`).
    /// Absent: sysadmin.
    #[serde(default)]
    pub grants: Option<backend_fake::LoginGrants>,
}

impl std::fmt::Debug for LoginEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginEntry")
            .field("user", &self.user)
            .field("password_env", &self.password_env)
            .field("default_database", &self.default_database)
            .field("grants", &self.grants)
            .finish()
    }
}

/// `[[location]]`: the active-location record stored on an instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationEntry {
    /// Where it is stored.
    pub instance: InstanceAddr,
    /// Fencing epoch.
    pub epoch: u64,
    /// Active principal.
    pub principal: InstanceAddr,
    /// Active mirror.
    #[serde(default)]
    pub mirror: Option<InstanceAddr>,
    /// Run id.
    #[serde(default = "initial")]
    pub run_id: String,
}

fn initial() -> String {
    "initial".into()
}

fn invalid(e: impl std::fmt::Display) -> EstateFileError {
    EstateFileError::Invalid(e.to_string())
}

impl EstateFile {
    /// The estate served without a file: one instance `name` on `port` with read-write
    /// ONLINE databases `xds` and `lis`.
    pub fn single(name: InstanceAddr, port: u16) -> Self {
        Self {
            instances: vec![InstanceEntry {
                name,
                server_name: None,
                version: None,
                port,
                address: None,
                reachable: true,
                databases: DatabaseName::cms_defaults()
                    .into_iter()
                    .map(|name| DatabaseEntry {
                        name,
                        state: None,
                        read_only: false,
                        position: 0,
                        standby: false,
                    })
                    .collect(),
                tls_cert: None,
                tls_key: None,
                force_encryption: false,
            }],
            ..Self::default()
        }
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, EstateFileError> {
        Ok(toml::from_str(text)?)
    }

    /// The TLS settings of the instances that have a certificate; relative paths are taken
    /// from `base` (the estate file's directory). Certificates and keys are loaded here, so a
    /// bad file is reported before anything listens.
    pub fn tls(&self, base: &Path) -> Result<HashMap<InstanceAddr, ServerTls>, EstateFileError> {
        let mut out = HashMap::new();
        for i in &self.instances {
            match (&i.tls_cert, &i.tls_key) {
                (Some(cert), Some(key)) => {
                    let tls = ServerTls::from_pem_files(base.join(cert), base.join(key))
                        .map_err(|e| invalid(format!("instance {}: {e}", i.name)))?
                        .with_force_encryption(i.force_encryption);
                    out.insert(i.name.clone(), tls);
                }
                (None, None) if i.force_encryption => {
                    return Err(invalid(format!(
                        "instance {}: force_encryption needs tls_cert and tls_key",
                        i.name
                    )));
                }
                (None, None) => {}
                _ => {
                    return Err(invalid(format!(
                        "instance {}: set both tls_cert and tls_key, or neither",
                        i.name
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The instances that listen on an address of their own (`address`).
    pub fn addresses(&self) -> HashMap<InstanceAddr, std::net::IpAddr> {
        self.instances
            .iter()
            .filter_map(|i| i.address.map(|a| (i.name.clone(), a)))
            .collect()
    }

    /// Builds the estate and the fixed ports; `env` resolves `password_env` names.
    pub fn build(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Estate, HashMap<InstanceAddr, u16>), EstateFileError> {
        let estate = Estate::new();
        estate.set_read_only_refused_on_mirroring_principal(
            self.read_only_refused_on_mirroring_principal,
        );
        estate.set_partner_failover_delay(self.partner_failover_delay);
        estate.set_automatic_failover(self.automatic_failover_delay);
        for e in &self.events {
            estate.schedule(e.tick, e.event()?);
        }
        estate.set_force_service_delay(self.force_service_delay);
        let mut ports = HashMap::new();
        for i in &self.instances {
            estate
                .add_instance(&i.name, i.version.as_deref().unwrap_or(DEFAULT_VERSION))
                .map_err(invalid)?;
            if let Some(n) = &i.server_name {
                estate.set_server_name(&i.name, n).map_err(invalid)?;
            }
            if i.port != 0 {
                ports.insert(i.name.clone(), i.port);
            }
            for d in &i.databases {
                let state = DbState::from_desc(d.state.as_deref().unwrap_or("ONLINE"));
                if let DbState::Other(s) = &state {
                    return Err(invalid(format!(
                        "database {} on {}: unknown state `{s}`",
                        d.name, i.name
                    )));
                }
                if d.standby && state != DbState::Online {
                    return Err(invalid(format!(
                        "database {} on {}: a STANDBY copy is ONLINE (state `{state}` given)",
                        d.name, i.name
                    )));
                }
                estate
                    .add_database(&i.name, &d.name, state, d.read_only, d.position)
                    .map_err(invalid)?;
                if d.standby {
                    estate.set_standby(&i.name, &d.name).map_err(invalid)?;
                }
            }
        }
        for m in &self.mirroring {
            let state = m.state.as_deref().unwrap_or("SYNCHRONIZED");
            let state = MirrorState::from_desc(state)
                .ok_or_else(|| invalid(format!("unknown mirroring state `{state}`")))?;
            estate
                .add_mirroring(&m.database, &m.principal, &m.mirror, state, m.safety_full)
                .map_err(invalid)?;
            match (&m.witness, m.witness_connected) {
                (Some(w), c) => estate
                    .set_witness(
                        &m.database,
                        &m.principal,
                        Some((w, c.unwrap_or(WitnessConnection::Both))),
                    )
                    .map_err(invalid)?,
                (None, Some(_)) => {
                    return Err(invalid(format!(
                        "mirroring of {}: `witness_connected` needs `witness`",
                        m.database
                    )));
                }
                (None, None) => {}
            }
        }
        for l in &self.links {
            let id = estate
                .add_link(&l.source, &l.target, &l.databases, l.rate)
                .map_err(invalid)?;
            if l.stalled {
                estate.set_link_stalled(id, true);
            }
        }
        for w in &self.workloads {
            estate.add_workload(&w.instances, &w.database, w.rate);
        }
        for l in &self.logins {
            let pw = env(&l.password_env).ok_or_else(|| {
                invalid(format!(
                    "login {}: environment variable {} is not set",
                    l.user, l.password_env
                ))
            })?;
            estate.add_login(&l.user, &pw);
            estate.set_login_default_database(&l.user, l.default_database.as_ref());
            if let Some(g) = &l.grants {
                estate.set_login_grants(&l.user, None, g.clone());
            }
        }
        for l in &self.locations {
            let active = Store::new(l.principal.clone(), l.mirror.clone()).map_err(invalid)?;
            let rec = LocationRecord {
                epoch: l.epoch,
                active,
                run_id: l.run_id.clone(),
            };
            estate
                .set_location(&l.instance, Some(rec))
                .map_err(invalid)?;
        }
        for i in &self.instances {
            if !i.reachable {
                estate.set_reachable(&i.name, false).map_err(invalid)?;
            }
        }
        Ok((estate, ports))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_core::{MirrorRole, MirrorState};

    #[test]
    fn an_instance_may_listen_on_an_address_of_its_own() {
        let f = EstateFile::parse(
            "[[instance]]\nname = 'sql-a.cms.test'\naddress = '127.0.1.1'\nport = 1433\n\n[[instance]]\nname = 'sql-b.cms.test'\n",
        )
        .unwrap();
        let a = InstanceAddr::parse("sql-a.cms.test").unwrap();
        assert_eq!(
            f.addresses(),
            HashMap::from([(a.clone(), "127.0.1.1".parse().unwrap())])
        );
        let (_, ports) = f.build(|_| None).unwrap();
        assert_eq!(ports, HashMap::from([(a, 1433)]));
        let bad = EstateFile::parse("[[instance]]\nname = 'sql-a.cms.test'\naddress = 'sql-a'\n");
        assert!(
            bad.is_err(),
            "an address that is not an IP address is refused"
        );
    }

    #[test]
    fn example_file_builds() {
        let text = include_str!("../estate.example.toml");
        let f = EstateFile::parse(text).unwrap();
        let (estate, ports) = f
            .build(|v| (v == "CMS_LOGIN_PASSWORD").then(|| "pw".to_string()))
            .unwrap();
        let snap = estate.snapshot();
        assert_eq!(snap.instances.len(), 3);
        let a = InstanceAddr::parse("sql-a.cms.test\\RTC").unwrap();
        let xds = DatabaseName::parse("xds").unwrap();
        assert_eq!(snap.writable_copies(&xds), vec![a.clone()]);
        assert!(snap.location(&a).is_some());
        assert!(ports.is_empty());
        assert!(
            f.build(|_| None).is_err(),
            "a login without its password variable is refused"
        );
        // [login.grants]: the operator is dbcreator, not sysadmin; cmsfailover has none (sysadmin).
        let op = estate
            .login(&a, "cmsoperator", "pw")
            .and_then(|s| estate.session_grants(s))
            .unwrap();
        assert_eq!(op.0, "cmsoperator");
        assert!(op.1.dbcreator && op.1.location_write && !op.1.sysadmin);
        let full = estate
            .login(&a, "cmsfailover", "pw")
            .and_then(|s| estate.session_grants(s))
            .unwrap();
        assert!(full.1.sysadmin);
        assert!(
            EstateFile::parse(
                "[[login]]\nuser = 'u'\npassword_env = 'P'\n[login.grants]\nroot = true\n"
            )
            .is_err(),
            "an unknown grant is refused"
        );
        assert!(EstateFile::parse("[[instance]]\nname = 'bad host'\n").is_err());
        assert!(EstateFile::parse("[[instance]]\nname = 'a'\nfoo = 1\n").is_err());
        assert!(
            f.tls(Path::new(".")).unwrap().is_empty(),
            "no certificate: no TLS"
        );
    }

    /// `server_name` is what the server calls itself and what its partner shows as
    /// `mirroring_partner_instance`; absent, the host's first label and the instance.
    #[test]
    fn server_names_come_from_the_file() {
        let text = "[[instance]]\nname = 'sql-b.cms.test\\RTC'\nserver_name = 'SQLB01\\RTC'\n[[instance.database]]\nname = 'xds'\n\n[[instance]]\nname = 'sql-b2.cms.test\\RTC'\n\n[[mirroring]]\ndatabase = 'xds'\nprincipal = 'sql-b.cms.test\\RTC'\nmirror = 'sql-b2.cms.test\\RTC'\n";
        let (estate, _) = EstateFile::parse(text).unwrap().build(|_| None).unwrap();
        let b = InstanceAddr::parse("sql-b.cms.test\\RTC").unwrap();
        let b2 = InstanceAddr::parse("sql-b2.cms.test\\RTC").unwrap();
        assert_eq!(estate.server_name(&b), "SQLB01\\RTC");
        assert_eq!(estate.server_name(&b2), "SQL-B2\\RTC");
        let xds = DatabaseName::parse("xds").unwrap();
        let snap = estate.snapshot();
        let on = |i: &InstanceAddr| snap.database(i, &xds).unwrap().mirroring.clone().unwrap();
        assert_eq!(on(&b2).partner_instance(), "SQLB01\\RTC");
        assert_eq!(on(&b).partner_instance(), "SQL-B2\\RTC");
        let bad = "[[instance]]\nname = 'a'\nserver_name = ''\n";
        assert!(EstateFile::parse(bad).unwrap().build(|_| None).is_err());
    }

    /// `witness` / `witness_connected` on `[[mirroring]]` reach the estate: each partner
    /// reports the witness as connected to it or not.
    #[test]
    fn a_mirroring_witness_comes_from_the_file() {
        let text = "[[instance]]\nname = 'sql-b'\n[[instance.database]]\nname = 'xds'\n\n[[instance]]\nname = 'sql-b2'\n\n[[mirroring]]\ndatabase = 'xds'\nprincipal = 'sql-b'\nmirror = 'sql-b2'\nwitness = 'TCP://wit.cms.test:5022'\nwitness_connected = 'principal_only'\n";
        let (estate, _) = EstateFile::parse(text).unwrap().build(|_| None).unwrap();
        let snap = estate.snapshot();
        let xds = DatabaseName::parse("xds").unwrap();
        let w = |i: &str| {
            let i = InstanceAddr::parse(i).unwrap();
            snap.database(&i, &xds)
                .unwrap()
                .mirroring
                .clone()
                .unwrap()
                .witness
                .unwrap()
        };
        assert_eq!(w("sql-b").name, "TCP://wit.cms.test:5022");
        assert_eq!(w("sql-b").state, failover_core::WitnessState::Connected);
        assert_eq!(w("sql-b2").state, failover_core::WitnessState::Disconnected);
        let bad = text.replace("witness = 'TCP://wit.cms.test:5022'\n", "");
        assert!(EstateFile::parse(&bad).unwrap().build(|_| None).is_err());
    }

    /// The top-level `read_only_refused_on_mirroring_principal` key reaches the estate
    /// (default off).
    #[test]
    fn read_only_refusal_on_a_mirroring_principal_comes_from_the_file() {
        let text = "read_only_refused_on_mirroring_principal = true\n[[instance]]\nname = 'a'\n";
        let (estate, _) = EstateFile::parse(text).unwrap().build(|_| None).unwrap();
        assert!(estate.read_only_refused_on_mirroring_principal());
        let (estate, _) = EstateFile::parse("[[instance]]\nname = 'a'\n")
            .unwrap()
            .build(|_| None)
            .unwrap();
        assert!(!estate.read_only_refused_on_mirroring_principal());
    }

    /// `automatic_failover_delay` and `[[event]]`: the principal going down at a tick makes
    /// the mirror take over by itself once its witness is connected to it; a bad event is
    /// refused with what to write.
    #[test]
    fn automatic_failover_and_events_come_from_the_file() {
        let text = "automatic_failover_delay = 1\n[[instance]]\nname = 'sql-b'\n[[instance.database]]\nname = 'xds'\n\n[[instance]]\nname = 'sql-b2'\n\n[[mirroring]]\ndatabase = 'xds'\nprincipal = 'sql-b'\nmirror = 'sql-b2'\nwitness = 'TCP://wit.cms.test:5022'\nwitness_connected = 'principal_only'\n\n[[event]]\ntick = 2\ninstance = 'sql-b'\nreachable = false\n\n[[event]]\ntick = 5\ndatabase = 'xds'\npartner = 'sql-b'\nwitness = 'TCP://wit.cms.test:5022'\nwitness_connected = 'mirror_only'\n";
        let (estate, _) = EstateFile::parse(text).unwrap().build(|_| None).unwrap();
        assert_eq!(estate.automatic_failover(), Some(1));
        let (b, b2) = (
            InstanceAddr::parse("sql-b").unwrap(),
            InstanceAddr::parse("sql-b2").unwrap(),
        );
        let xds = DatabaseName::parse("xds").unwrap();
        let role = |e: &Estate| {
            e.snapshot()
                .database(&b2, &xds)
                .and_then(|d| d.mirroring.as_ref().map(|m| m.role))
        };
        estate.advance(4);
        assert!(!estate.is_reachable(&b));
        assert_eq!(
            role(&estate),
            Some(MirrorRole::Mirror),
            "witness not on the mirror"
        );
        estate.advance(2);
        assert_eq!(
            role(&estate),
            Some(MirrorRole::Mirror),
            "quorum was lost with the principal"
        );
        let bad = text.replace("partner = 'sql-b'\n", "");
        let err = EstateFile::parse(&bad)
            .unwrap()
            .build(|_| None)
            .unwrap_err();
        assert!(err.to_string().contains("event at tick 5"), "{err}");
        // Lost while the witness is on the mirror: taken over after the delay.
        let ok = text.replace("tick = 5", "tick = 1");
        let (estate, _) = EstateFile::parse(&ok).unwrap().build(|_| None).unwrap();
        estate.advance(3);
        assert_eq!(role(&estate), Some(MirrorRole::Principal));
    }

    /// `partner_failover_delay`: the planned failover is accepted, the roles switch later.
    #[test]
    fn the_partner_failover_delay_holds_the_role_switch() {
        let text = "partner_failover_delay = 3\n[[instance]]\nname = 'sql-b'\n[[instance.database]]\nname = 'xds'\n\n[[instance]]\nname = 'sql-b2'\n\n[[mirroring]]\ndatabase = 'xds'\nprincipal = 'sql-b'\nmirror = 'sql-b2'\n";
        let (estate, _) = EstateFile::parse(text).unwrap().build(|_| None).unwrap();
        let (b, b2) = (
            InstanceAddr::parse("sql-b").unwrap(),
            InstanceAddr::parse("sql-b2").unwrap(),
        );
        let xds = DatabaseName::parse("xds").unwrap();
        let s = estate.open_session(&b).unwrap();
        assert_eq!(estate.set_partner_failover(s, &xds).unwrap(), b2);
        let role = |i: &InstanceAddr| {
            let snap = estate.snapshot();
            let m = snap.database(i, &xds).unwrap().mirroring.clone().unwrap();
            (m.role, m.state)
        };
        assert_eq!(
            role(&b2),
            (MirrorRole::Mirror, MirrorState::PendingFailover)
        );
        estate.advance(2);
        assert_eq!(role(&b2).0, MirrorRole::Mirror);
        estate.advance(1);
        assert_eq!(
            role(&b2),
            (MirrorRole::Principal, MirrorState::Synchronized)
        );
    }

    /// `force_service_delay`: the force is accepted, the mirror switches later.
    #[test]
    fn the_force_service_delay_holds_the_forced_switch() {
        let text = "force_service_delay = 2\n[[instance]]\nname = 'sql-b'\n[[instance.database]]\nname = 'xds'\n\n[[instance]]\nname = 'sql-b2'\n\n[[mirroring]]\ndatabase = 'xds'\nprincipal = 'sql-b'\nmirror = 'sql-b2'\n";
        let (estate, _) = EstateFile::parse(text).unwrap().build(|_| None).unwrap();
        let (b, b2) = (
            InstanceAddr::parse("sql-b").unwrap(),
            InstanceAddr::parse("sql-b2").unwrap(),
        );
        let xds = DatabaseName::parse("xds").unwrap();
        estate.set_reachable(&b, false).unwrap();
        let s = estate.open_session(&b2).unwrap();
        estate.force_service(s, &xds).unwrap();
        let role = |i: &InstanceAddr| {
            let snap = estate.snapshot();
            snap.database(i, &xds)
                .unwrap()
                .mirroring
                .clone()
                .unwrap()
                .role
        };
        assert_eq!(role(&b2), MirrorRole::Mirror);
        estate.advance(1);
        assert_eq!(role(&b2), MirrorRole::Mirror);
        estate.advance(1);
        assert_eq!(role(&b2), MirrorRole::Principal);
    }

    #[test]
    fn tls_per_instance_relative_to_the_file() {
        let pki = test_pki::TestPki::generate(["sql-a.cms.test"]).unwrap();
        let a = pki.server("sql-a.cms.test").unwrap();
        let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
        let text = format!(
            "[[instance]]\nname = 'sql-a.cms.test\\RTC'\ntls_cert = '{}'\ntls_key = '{}'\nforce_encryption = true\n\n[[instance]]\nname = 'sql-b.cms.test'\n",
            name(&a.cert),
            name(&a.key)
        );
        let f = EstateFile::parse(&text).unwrap();
        let tls = f.tls(pki.dir()).unwrap();
        let addr = InstanceAddr::parse("sql-a.cms.test\\RTC").unwrap();
        assert_eq!(tls.len(), 1);
        assert!(tls[&addr].force_encryption());
        assert_eq!(tls[&addr].cert_path(), a.cert);
        // a missing key file is reported with the instance and the path
        let e = f.tls(Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(
            e.contains("sql-a.cms.test") && e.contains("/nonexistent"),
            "{e}"
        );
        // half a pair, or forcing without a certificate, is refused
        for bad in [
            "[[instance]]\nname = 'a'\ntls_cert = 'c.pem'\n",
            "[[instance]]\nname = 'a'\nforce_encryption = true\n",
        ] {
            let e = EstateFile::parse(bad).unwrap().tls(pki.dir()).unwrap_err();
            assert!(e.to_string().contains("tls_"), "{e}");
        }
    }
}
