//! Connection settings: driver flavour, DSN or connection-string template per instance,
//! endpoint overrides, credentials, encryption and timeouts.

use crate::connstr::{self, escape_value};
use failover_core::{InstanceAddr, Secret};
use failover_tsql::SqlConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Which ODBC driver family the generated connection strings target. The keywords differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// FreeTDS (`tdsodbc`): `Server=host;Port=N;TDS_Version=7.4;Encryption=off|require`,
    /// `ClientCharset=UTF-8`. FreeTDS 1.3 has no `Encrypt` keyword (it silently ignores it).
    FreeTds,
    /// Microsoft "ODBC Driver 17/18 for SQL Server": `Server=tcp:host,N`,
    /// `Encrypt=yes|no|strict`, `TrustServerCertificate=yes|no`.
    Microsoft,
}

/// Transport encryption for generated connection strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// Plaintext (for the simulator, which answers ENCRYPT_NOT_SUP). FreeTDS `Encryption=off`,
    /// Microsoft `Encrypt=no`.
    Off,
    /// TLS required. FreeTDS `Encryption=require` (certificate checks come from the `ca file`
    /// setting of a freetds.conf section, selected with a template `ServerName=`);
    /// Microsoft `Encrypt=yes;TrustServerCertificate=no|yes`.
    Required {
        /// Accept any server certificate (Microsoft `TrustServerCertificate=yes`). Only for
        /// test servers.
        trust_server_certificate: bool,
    },
}

/// How to reach one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionSpec {
    /// Generate the connection string from the driver flavour and the instance address (or
    /// its endpoint override).
    Generated,
    /// A data source name from `odbc.ini`: `DSN=name` plus the login. When the instance has an
    /// endpoint override, `Server`/`Port` are appended (they take precedence over the DSN).
    Dsn(String),
    /// A full connection string with placeholders, expanded per instance:
    /// `${driver}`, `${host}`, `${port}`, `${instance}`, `${database}` and `${address}`
    /// (the flavour's server keywords, e.g. `Server=127.0.0.1;Port=14330` for FreeTDS or
    /// `Server=tcp:127.0.0.1,14330` for Microsoft). It must not contain `PWD`/`UID`:
    /// the login is appended from [`OdbcConfig::user`] / [`OdbcConfig::password`].
    Template(String),
}

/// Invalid configuration. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A template embeds a credential.
    #[error(
        "connection string for {0} must not contain {1}: give the login with `user` and the password via an env var or file"
    )]
    CredentialInTemplate(String, &'static str),
    /// Unknown `${…}` placeholder.
    #[error("connection string for {0} has an unknown placeholder `${{{1}}}`")]
    UnknownPlaceholder(String, String),
    /// The password cannot be written into a FreeTDS connection string.
    #[error(
        "the password contains `}};`, which FreeTDS 1.3 cannot parse in a connection string; use a DSN with the password in odbc.ini, or change the password"
    )]
    UnrepresentablePassword,
}

/// Settings of an [`OdbcBackend`](crate::OdbcBackend).
#[derive(Debug, Clone)]
pub struct OdbcConfig {
    /// Driver family for generated strings.
    pub driver_kind: DriverKind,
    /// Driver name as registered in `odbcinst.ini` (`FreeTDS`, `ODBC Driver 18 for SQL Server`).
    pub driver_name: String,
    /// How to reach instances without an entry in [`Self::instances`].
    pub default_connection: ConnectionSpec,
    /// Per-instance DSN or template.
    pub instances: HashMap<InstanceAddr, ConnectionSpec>,
    /// Instance -> socket address, consulted before DNS / SQL Browser (also for mirror
    /// partners read from `sys.database_mirroring`).
    pub endpoints: HashMap<InstanceAddr, SocketAddr>,
    /// SQL login name (`None`: the DSN/template supplies the authentication).
    pub user: Option<String>,
    /// Its password (`None`: the DSN/template supplies it, or the login needs none).
    pub password: Option<Secret>,
    /// Transport encryption for generated strings.
    pub encryption: Encryption,
    /// Initial database (default `master`, where the app lock must be taken).
    pub database: String,
    /// Login timeout (`SQL_ATTR_LOGIN_TIMEOUT`, and part of the hard bound of a call that has
    /// to connect first).
    pub connect_timeout: Duration,
    /// Hard bound of one call (`tokio::time::timeout`); also sets `SQL_ATTR_QUERY_TIMEOUT`
    /// (rounded up to whole seconds) so the driver cancels the statement by itself.
    pub call_timeout: Duration,
    /// Position query, control database and mirror fallback (shared with the tiberius
    /// backend).
    pub sql: SqlConfig,
}

impl OdbcConfig {
    /// FreeTDS (`[FreeTDS]` in odbcinst.ini), plaintext, generated connection strings.
    pub fn freetds() -> Self {
        Self {
            driver_kind: DriverKind::FreeTds,
            driver_name: "FreeTDS".into(),
            default_connection: ConnectionSpec::Generated,
            instances: HashMap::new(),
            endpoints: HashMap::new(),
            user: None,
            password: None,
            encryption: Encryption::Off,
            database: "master".into(),
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            sql: SqlConfig::default(),
        }
    }

    /// Microsoft "ODBC Driver 18 for SQL Server", TLS required with certificate validation.
    pub fn microsoft() -> Self {
        Self {
            driver_kind: DriverKind::Microsoft,
            driver_name: "ODBC Driver 18 for SQL Server".into(),
            encryption: Encryption::Required {
                trust_server_certificate: false,
            },
            ..Self::freetds()
        }
    }

    /// Sets the SQL login.
    pub fn with_login(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.user = Some(user.into());
        self.password = Some(password);
        self
    }

    /// Sets the endpoint override map.
    pub fn with_endpoints(mut self, endpoints: HashMap<InstanceAddr, SocketAddr>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Sets the call and connect timeouts.
    pub fn with_timeouts(mut self, connect: Duration, call: Duration) -> Self {
        self.connect_timeout = connect;
        self.call_timeout = call;
        self
    }

    /// The connection string for `instance`, login included. Handle the result as a secret;
    /// log only [`connstr::redact`] of it.
    pub(crate) fn connection_string(&self, instance: &InstanceAddr) -> Result<Secret, ConfigError> {
        let spec = self
            .instances
            .get(instance)
            .unwrap_or(&self.default_connection);
        let target = self.target(instance);
        let mut s = match spec {
            ConnectionSpec::Generated => {
                let mut s = format!(
                    "Driver={{{}}};{}",
                    self.driver_name.replace('}', "}}"),
                    self.address(&target)
                );
                s.push_str(&format!(";Database={}", escape_value(&self.database)));
                match self.driver_kind {
                    DriverKind::FreeTds => {
                        s.push_str(";TDS_Version=7.4;ClientCharset=UTF-8");
                        s.push_str(match self.encryption {
                            Encryption::Off => ";Encryption=off",
                            Encryption::Required { .. } => ";Encryption=require",
                        });
                    }
                    DriverKind::Microsoft => match self.encryption {
                        Encryption::Off => s.push_str(";Encrypt=no"),
                        Encryption::Required {
                            trust_server_certificate,
                        } => s.push_str(if trust_server_certificate {
                            ";Encrypt=yes;TrustServerCertificate=yes"
                        } else {
                            ";Encrypt=yes;TrustServerCertificate=no"
                        }),
                    },
                }
                s
            }
            ConnectionSpec::Dsn(name) => {
                let mut s = format!("DSN={}", escape_value(name));
                if self.endpoints.contains_key(instance) {
                    s.push(';');
                    s.push_str(&self.address(&target));
                }
                s
            }
            ConnectionSpec::Template(t) => {
                for key in ["PWD", "Password", "UID", "User ID"] {
                    if connstr::has_key(t, key) {
                        return Err(ConfigError::CredentialInTemplate(
                            instance.to_string(),
                            key_name(key),
                        ));
                    }
                }
                let mut s = self.expand(t, instance, &target)?;
                if !connstr::has_key(&s, "Database") {
                    s.push_str(&format!(";Database={}", escape_value(&self.database)));
                }
                s
            }
        };
        if let Some(user) = &self.user {
            s.push_str(&format!(
                ";UID={}",
                self.escape(user)
                    .ok_or(ConfigError::UnrepresentablePassword)?
            ));
        }
        if let Some(pw) = &self.password {
            let v = self
                .escape(pw.expose())
                .ok_or(ConfigError::UnrepresentablePassword)?;
            s.push_str(&format!(";PWD={v}"));
        }
        // A trailing `;`: FreeTDS 1.3 keeps the closing brace of a braced value that ends
        // the string (`PWD={a;b}` would log in with `a;b}`).
        s.push(';');
        Ok(Secret::new(s))
    }

    /// Escapes a credential for this driver family (FreeTDS does not undo `}}`).
    fn escape<'a>(&self, v: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        match self.driver_kind {
            DriverKind::FreeTds => connstr::escape_value_freetds(v),
            DriverKind::Microsoft => Some(escape_value(v)),
        }
    }

    fn target(&self, instance: &InstanceAddr) -> Target {
        match self.endpoints.get(instance) {
            Some(sa) => Target {
                host: sa.ip().to_string(),
                port: Some(sa.port()),
                instance: None,
            },
            None => Target {
                host: instance.host().to_string(),
                port: instance.port(),
                instance: instance.instance().map(|i| i.to_string()),
            },
        }
    }

    fn address(&self, t: &Target) -> String {
        match (self.driver_kind, t.port, &t.instance) {
            (DriverKind::FreeTds, Some(p), _) => {
                format!("Server={};Port={p}", escape_value(&t.host))
            }
            (DriverKind::FreeTds, None, Some(i)) => {
                format!("Server={}", escape_value(&format!("{}\\{i}", t.host)))
            }
            (DriverKind::FreeTds, None, None) => {
                format!("Server={};Port=1433", escape_value(&t.host))
            }
            (DriverKind::Microsoft, Some(p), _) => {
                format!("Server={}", escape_value(&format!("tcp:{},{p}", t.host)))
            }
            (DriverKind::Microsoft, None, Some(i)) => {
                format!("Server={}", escape_value(&format!("{}\\{i}", t.host)))
            }
            (DriverKind::Microsoft, None, None) => {
                format!("Server={}", escape_value(&format!("tcp:{},1433", t.host)))
            }
        }
    }

    fn expand(
        &self,
        template: &str,
        instance: &InstanceAddr,
        t: &Target,
    ) -> Result<String, ConfigError> {
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(p) = rest.find("${") {
            out.push_str(&rest[..p]);
            let after = &rest[p + 2..];
            let Some(end) = after.find('}') else {
                return Err(ConfigError::UnknownPlaceholder(
                    instance.to_string(),
                    after.to_string(),
                ));
            };
            let name = &after[..end];
            let value = match name {
                "driver" => self.driver_name.clone(),
                "host" => t.host.clone(),
                "port" => t.port.unwrap_or(1433).to_string(),
                "instance" => t.instance.clone().unwrap_or_default(),
                "database" => self.database.clone(),
                "address" => self.address(t),
                other => {
                    return Err(ConfigError::UnknownPlaceholder(
                        instance.to_string(),
                        other.to_string(),
                    ));
                }
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn key_name(k: &str) -> &'static str {
    match k {
        "PWD" => "PWD",
        "Password" => "Password",
        "UID" => "UID",
        _ => "User ID",
    }
}

struct Target {
    host: String,
    port: Option<u16>,
    instance: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connstr::redact;

    fn addr(s: &str) -> InstanceAddr {
        InstanceAddr::parse(s).unwrap()
    }

    #[test]
    fn freetds_with_endpoint_override() {
        let a = addr("sql-a.cms.test\\RTC");
        let cfg = OdbcConfig::freetds()
            .with_login("sa", Secret::new("p;w"))
            .with_endpoints(HashMap::from([(
                a.clone(),
                "127.0.0.1:14330".parse().unwrap(),
            )]));
        let s = cfg.connection_string(&a).unwrap();
        assert_eq!(
            s.expose(),
            "Driver={FreeTDS};Server=127.0.0.1;Port=14330;Database=master;TDS_Version=7.4;ClientCharset=UTF-8;Encryption=off;UID=sa;PWD={p;w};"
        );
        assert!(!redact(s.expose()).contains("p;w"));
    }

    #[test]
    fn named_instance_without_override_uses_browser_syntax() {
        let cfg = OdbcConfig::freetds();
        let s = cfg.connection_string(&addr("sql-b.cms.test\\RTC")).unwrap();
        assert!(
            s.expose().contains("Server=sql-b.cms.test\\RTC;"),
            "{}",
            s.expose()
        );
        let cfg = OdbcConfig::microsoft();
        let s = cfg.connection_string(&addr("sql-b.cms.test,1500")).unwrap();
        assert!(
            s.expose().contains("Server=tcp:sql-b.cms.test,1500;"),
            "{}",
            s.expose()
        );
        assert!(s.expose().contains("Encrypt=yes;TrustServerCertificate=no"));
        assert!(
            s.expose()
                .starts_with("Driver={ODBC Driver 18 for SQL Server};")
        );
    }

    #[test]
    fn dsn_and_template() {
        let a = addr("sql-a.cms.test");
        let mut cfg = OdbcConfig::freetds();
        cfg.user = Some("ops".into());
        cfg.instances
            .insert(a.clone(), ConnectionSpec::Dsn("CMS-A".into()));
        assert_eq!(
            cfg.connection_string(&a).unwrap().expose(),
            "DSN=CMS-A;UID=ops;"
        );
        let bad = Secret::new("x};y");
        let mut with_bad = cfg.clone();
        with_bad.password = Some(bad.clone());
        assert_eq!(
            with_bad.connection_string(&a).unwrap_err(),
            ConfigError::UnrepresentablePassword
        );
        let ms = OdbcConfig::microsoft().with_login("ops", bad);
        let s = ms.connection_string(&a).unwrap();
        assert!(s.expose().ends_with(";PWD={x}};y};"), "{}", s.expose());
        cfg.default_connection = ConnectionSpec::Template(
            "Driver={${driver}};${address};TDS_Version=7.4;App=cms".into(),
        );
        let b = addr("sql-b.cms.test,1444");
        assert_eq!(
            cfg.connection_string(&b).unwrap().expose(),
            "Driver={FreeTDS};Server=sql-b.cms.test;Port=1444;TDS_Version=7.4;App=cms;Database=master;UID=ops;"
        );
        cfg.default_connection = ConnectionSpec::Template("Driver={x};PWD=oops".into());
        let e = cfg.connection_string(&b).unwrap_err();
        assert!(matches!(e, ConfigError::CredentialInTemplate(_, "PWD")));
        assert!(!e.to_string().contains("oops"));
        cfg.default_connection = ConnectionSpec::Template("Server=${nope}".into());
        assert!(matches!(
            cfg.connection_string(&b),
            Err(ConfigError::UnknownPlaceholder(..))
        ));
    }
}
