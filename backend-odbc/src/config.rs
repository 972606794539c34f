//! Connection settings: driver flavour, DSN or connection-string template per instance,
//! endpoint overrides, credentials, encryption and timeouts.

use crate::connstr::{self, escape_value};
use crate::freetds_conf;
use failover_core::{InstanceAddr, Secret};
use failover_tsql::SqlConfig;
pub use failover_tsql::tls::Trust;
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
///
/// | | FreeTDS | Microsoft ODBC Driver 17/18 |
/// |---|---|---|
/// | `Off` | `Encryption=off` | `Encrypt=no` |
/// | `Required(SystemRoots)` | `Encryption=require`, `ca file = system` (generated freetds.conf) | `Encrypt=yes;TrustServerCertificate=no` |
/// | `Required(CaFile(p))` | `Encryption=require`, `ca file = p` (generated freetds.conf) | refused: the driver trusts the system store only |
/// | `Required(TrustServerCertificate)` | `Encryption=require` (FreeTDS checks nothing without a CA file) | `Encrypt=yes;TrustServerCertificate=yes` |
///
/// See [`crate::freetds_conf`] for why FreeTDS needs the generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// Plaintext: only for the simulator or a trusted loopback. FreeTDS still encrypts,
    /// without checking the certificate, when the server forces encryption.
    Off,
    /// TLS required, the certificate checked as [`Trust`] says. The default.
    Required(Trust),
}

impl Default for Encryption {
    fn default() -> Self {
        Self::Required(Trust::SystemRoots)
    }
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
    /// The Microsoft driver was given a CA file.
    #[error(
        "the Microsoft ODBC driver checks server certificates against the system trust store only and takes no CA file: add the CA to the system store (copy it to /usr/local/share/ca-certificates/ as .crt and run update-ca-certificates) and leave ca_file unset"
    )]
    CaFileUnsupported,
    /// FreeTDS was asked to check another name than the host it connects to.
    #[error(
        "FreeTDS checks the certificate against the host it connects to and has no HostNameInCertificate: connect by the name in the certificate, or use the Microsoft driver"
    )]
    HostNameInCertificateUnsupported,
    /// The generated freetds.conf could not be written.
    #[error("cannot write the generated freetds.conf: {0}")]
    FreeTdsConf(String),
    /// `FREETDSCONF` names the operator's own file, which the backend will not replace.
    #[error(
        "FREETDSCONF is set to {}: with FreeTDS, certificate checks need the backend's generated freetds.conf; unset FREETDSCONF, or use a connection-string template with Servername= naming a section of that file that has `encryption = require` and `ca file`", .0.display()
    )]
    FreeTdsConfInUse(std::path::PathBuf),
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
    /// Log in with the process's Kerberos credentials (the ticket cache `KRB5CCNAME` or a
    /// client keytab `KRB5_CLIENT_KTNAME`) instead of a SQL login: no `UID`/`PWD`,
    /// `Trusted_Connection=yes` and `ServerSPN=MSSQLSvc/<instance host>:<port>` (when the
    /// port is known) are added to the connection string. FreeTDS then logs in with GSSAPI
    /// (Debian's `tdsodbc` links libgssapi_krb5), as does Microsoft's driver.
    pub integrated: bool,
    /// Transport encryption for generated strings (TLS with the system trust store by
    /// default).
    pub encryption: Encryption,
    /// The name the server certificate must carry when it differs from the host connected
    /// to (Microsoft `HostNameInCertificate=`; FreeTDS cannot do it).
    pub host_name_in_certificate: Option<String>,
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
    /// FreeTDS (`[FreeTDS]` in odbcinst.ini), TLS required against the system trust store,
    /// generated connection strings.
    pub fn freetds() -> Self {
        Self {
            driver_kind: DriverKind::FreeTds,
            driver_name: "FreeTDS".into(),
            default_connection: ConnectionSpec::Generated,
            instances: HashMap::new(),
            endpoints: HashMap::new(),
            user: None,
            password: None,
            integrated: false,
            encryption: Encryption::default(),
            host_name_in_certificate: None,
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
            ..Self::freetds()
        }
    }

    /// Sets the SQL login.
    pub fn with_login(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.user = Some(user.into());
        self.password = Some(password);
        self
    }

    /// Logs in with Kerberos ([`Self::integrated`]) instead of a SQL login.
    pub fn with_kerberos(mut self) -> Self {
        self.integrated = true;
        self.user = None;
        self.password = None;
        self
    }

    /// The SPN a Kerberos login to `instance` asks a ticket for: `MSSQLSvc/<host of the
    /// instance name>:<port>` with the endpoint's or the address's port; `None` for a named
    /// instance without either (its port comes from SQL Browser at connect time).
    pub fn spn(&self, instance: &InstanceAddr) -> Option<String> {
        let port = match self.endpoints.get(instance) {
            Some(sa) => sa.port(),
            None => instance
                .port()
                .or(instance.instance().is_none().then_some(1433))?,
        };
        Some(failover_tsql::kerberos::spn(instance.host().as_str(), port))
    }

    /// Sets the endpoint override map.
    pub fn with_endpoints(mut self, endpoints: HashMap<InstanceAddr, SocketAddr>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Sets the encryption mode.
    pub fn with_encryption(mut self, e: Encryption) -> Self {
        self.encryption = e;
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
                    self.server_keywords(&target)?
                );
                s.push_str(&format!(";Database={}", escape_value(&self.database)));
                s.push_str(&self.encryption_keywords()?);
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
        if self.integrated {
            s.push_str(";Trusted_Connection=Yes");
            if let Some(spn) = self.spn(instance) {
                s.push_str(&format!(";ServerSPN={}", escape_value(&spn)));
            }
        }
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

    /// Where to connect: the flavour's server keywords, or for FreeTDS with a certificate
    /// check the generated freetds.conf section that carries the CA file (`Servername=`).
    fn server_keywords(&self, t: &Target) -> Result<String, ConfigError> {
        let ca = match (&self.driver_kind, &self.encryption) {
            (DriverKind::FreeTds, Encryption::Required(Trust::CaFile(p))) => {
                p.display().to_string()
            }
            (DriverKind::FreeTds, Encryption::Required(Trust::SystemRoots)) => "system".into(),
            _ => return Ok(self.address(t)),
        };
        let section = freetds_conf::ensure(&freetds_conf::Section {
            host: t.host.clone(),
            port: t.port,
            instance: t.instance.clone(),
            ca_file: ca,
        })?;
        Ok(format!("Servername={section}"))
    }

    /// The encryption keywords of generated strings (see [`Encryption`]).
    fn encryption_keywords(&self) -> Result<String, ConfigError> {
        Ok(match self.driver_kind {
            DriverKind::FreeTds => {
                if self.host_name_in_certificate.is_some() {
                    return Err(ConfigError::HostNameInCertificateUnsupported);
                }
                let e = match self.encryption {
                    Encryption::Off => "off",
                    Encryption::Required(_) => "require",
                };
                format!(";TDS_Version=7.4;ClientCharset=UTF-8;Encryption={e}")
            }
            DriverKind::Microsoft => {
                let mut s = match &self.encryption {
                    Encryption::Off => ";Encrypt=no".to_string(),
                    Encryption::Required(Trust::SystemRoots) => {
                        ";Encrypt=yes;TrustServerCertificate=no".into()
                    }
                    Encryption::Required(Trust::TrustServerCertificate) => {
                        ";Encrypt=yes;TrustServerCertificate=yes".into()
                    }
                    Encryption::Required(Trust::CaFile(_)) => {
                        return Err(ConfigError::CaFileUnsupported);
                    }
                };
                if let Some(h) = &self.host_name_in_certificate {
                    s.push_str(&format!(";HostNameInCertificate={}", escape_value(h)));
                }
                s
            }
        })
    }

    /// The socket address and certificate name a strict client checks for `instance`, when
    /// known without a lookup (for [`failover_tsql::tls::diagnose`]).
    pub(crate) fn tls_target(&self, instance: &InstanceAddr) -> Option<(String, u16)> {
        let t = self.target(instance);
        Some((t.host, t.port.or(t.instance.is_none().then_some(1433))?))
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
    fn kerberos_has_no_credentials_but_the_spn() {
        let a = addr("sql-a.cms.test\\RTC");
        let cfg = OdbcConfig::freetds()
            .with_encryption(Encryption::Off)
            .with_login("sa", Secret::new("pw"))
            .with_kerberos()
            .with_endpoints(HashMap::from([(
                a.clone(),
                "127.0.0.1:14330".parse().unwrap(),
            )]));
        assert_eq!(
            cfg.connection_string(&a).unwrap().expose(),
            "Driver={FreeTDS};Server=127.0.0.1;Port=14330;Database=master;TDS_Version=7.4;ClientCharset=UTF-8;Encryption=off;Trusted_Connection=Yes;ServerSPN=MSSQLSvc/sql-a.cms.test:14330;"
        );
        // A named instance without a known port: the driver names the SPN itself.
        let b = addr("sql-b.cms.test\\RTC");
        assert_eq!(cfg.spn(&b), None);
        assert_eq!(
            cfg.spn(&addr("sql-c.cms.test,1444")).as_deref(),
            Some("MSSQLSvc/sql-c.cms.test:1444")
        );
    }

    #[test]
    fn freetds_with_endpoint_override() {
        let a = addr("sql-a.cms.test\\RTC");
        let cfg = OdbcConfig::freetds()
            .with_encryption(Encryption::Off)
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
        let cfg = OdbcConfig::freetds().with_encryption(Encryption::Off);
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

    #[test]
    fn microsoft_encryption_keywords_and_host_name_in_certificate() {
        let a = addr("sql-a.cms.test,1433");
        let ms = |e: Encryption| OdbcConfig::microsoft().with_encryption(e);
        let text = |c: &OdbcConfig| c.connection_string(&a).unwrap().expose().to_string();
        assert!(text(&ms(Encryption::Off)).contains(";Encrypt=no;"));
        assert!(
            text(&ms(Encryption::default())).contains(";Encrypt=yes;TrustServerCertificate=no;")
        );
        assert!(
            text(&ms(Encryption::Required(Trust::TrustServerCertificate)))
                .contains(";Encrypt=yes;TrustServerCertificate=yes;")
        );
        assert_eq!(
            ms(Encryption::Required(Trust::CaFile("/ca.pem".into())))
                .connection_string(&a)
                .unwrap_err(),
            ConfigError::CaFileUnsupported
        );
        // The name is escaped like any value: braces, `;` and `}` cannot end the pair early.
        let mut c = ms(Encryption::default());
        c.host_name_in_certificate = Some("cms.contoso.com".into());
        assert!(text(&c).contains(";HostNameInCertificate=cms.contoso.com;"));
        c.host_name_in_certificate = Some("x;Encrypt=no}".into());
        let s = text(&c);
        assert!(
            s.contains(";HostNameInCertificate={x;Encrypt=no}}};"),
            "{s}"
        );
        let pairs = connstr::pairs(&s);
        assert_eq!(
            pairs
                .iter()
                .filter(|p| p.key.eq_ignore_ascii_case("Encrypt"))
                .count(),
            1,
            "{s}"
        );
        let freetds = OdbcConfig {
            host_name_in_certificate: Some("cms.contoso.com".into()),
            ..OdbcConfig::freetds().with_encryption(Encryption::Off)
        };
        assert_eq!(
            freetds.connection_string(&a).unwrap_err(),
            ConfigError::HostNameInCertificateUnsupported
        );
    }

    #[test]
    fn freetds_certificate_checks_go_through_a_generated_section() {
        let a = addr("sql-a.cms.test\\RTC");
        let cfg = OdbcConfig::freetds()
            .with_encryption(Encryption::Required(Trust::CaFile(
                "/tmp/corp-ca.pem".into(),
            )))
            .with_login("sa", Secret::new("pw"))
            .with_endpoints(HashMap::from([(
                a.clone(),
                "127.0.0.1:14331".parse().unwrap(),
            )]));
        let s = cfg.connection_string(&a).unwrap().expose().to_string();
        let section = s
            .split(';')
            .find_map(|p| p.strip_prefix("Servername="))
            .unwrap_or_else(|| panic!("{s}"));
        assert!(s.contains(";Encryption=require;"), "{s}");
        assert!(!s.contains("Server=") && !s.contains("Port="), "{s}");
        let conf = std::fs::read_to_string(freetds_conf::init().unwrap()).unwrap();
        let body = conf
            .split(&format!("[{section}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("{conf}"));
        assert!(
            body.contains("host = 127.0.0.1\n\tport = 14331\n")
                && body.contains("ca file = /tmp/corp-ca.pem\n")
                && body.contains("check certificate hostname = yes"),
            "{conf}"
        );
        assert!(!conf.contains("pw"), "no secret in the file: {conf}");
        // Trusting any certificate needs no section: FreeTDS checks nothing without a CA file.
        let trust = cfg.with_encryption(Encryption::Required(Trust::TrustServerCertificate));
        let s = trust.connection_string(&a).unwrap().expose().to_string();
        assert!(
            s.contains("Server=127.0.0.1;Port=14331") && s.contains(";Encryption=require;"),
            "{s}"
        );
    }
}
