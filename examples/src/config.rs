//! The topology file (TOML): where the CMS lives, how to log in and how to reach the servers.
//!
//! Every value is validated while loading, and every error names the file, the line, the
//! column and the key, so bad input is caught before any connection. See
//! `examples/README.md` and `examples/topology.example.toml` for the format.

use crate::secret::PasswordSource;
use failover_core::{DatabaseName, InstanceAddr, Settings, Store, Topology, ValidationError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A topology-file error: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The key (dotted path), when known.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How backend-tiberius should protect the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// TLS with certificate validation (the default for real servers).
    #[default]
    Strict,
    /// TLS without validating the server certificate (lab servers with self-signed certs).
    TrustServerCertificate,
    /// No TLS at all (only for the simulator / trusted loopback).
    Off,
}

impl TlsMode {
    /// Parses `strict`, `trust-server-certificate` or `off`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "strict" | "on" => Some(Self::Strict),
            "trust-server-certificate" | "trust" => Some(Self::TrustServerCertificate),
            "off" | "plaintext" => Some(Self::Off),
            _ => None,
        }
    }
}

/// How connections are protected (both backends).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ConnectionOptions {
    /// TLS mode.
    pub tls: TlsMode,
    /// A CA certificate file (PEM/DER) to trust in `strict` mode (tiberius).
    pub ca_file: Option<PathBuf>,
}

/// The ODBC driver family (the connection-string keywords differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OdbcFlavour {
    /// FreeTDS (`tdsodbc`).
    FreeTds,
    /// Microsoft ODBC Driver 17/18 for SQL Server.
    Microsoft,
}

/// Options of the ODBC backend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OdbcOptions {
    /// The driver name as registered in `odbcinst.ini`.
    pub driver: String,
    /// The driver family.
    pub flavour: OdbcFlavour,
    /// A DSN from `odbc.ini` to use for every instance.
    pub dsn: Option<String>,
    /// A connection-string template (placeholders `${host}`, `${port}`, `${address}`…),
    /// without credentials.
    pub connection_string: Option<String>,
}

impl Default for OdbcOptions {
    fn default() -> Self {
        Self {
            driver: "ODBC Driver 18 for SQL Server".into(),
            flavour: OdbcFlavour::Microsoft,
            dsn: None,
            connection_string: None,
        }
    }
}

/// How the tool logs in to SQL Server (`[login]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginConfig {
    /// `method = "sql"` (the default): a SQL login and its password.
    Sql {
        /// User name.
        user: String,
        /// Where the password is read from.
        password: PasswordSource,
    },
    /// `method = "kerberos"`: the process's Kerberos credentials (the ticket cache
    /// `KRB5CCNAME`, or a client keytab `KRB5_CLIENT_KTNAME`); no user, no password.
    Kerberos,
    /// `method = "ntlm"`: a Windows account `DOMAIN\user` and its password, with NTLM
    /// (FreeTDS through `--backend odbc` only; tiberius cannot do NTLM on Linux).
    Ntlm {
        /// `DOMAIN\user`.
        user: String,
        /// Where the password is read from.
        password: PasswordSource,
    },
}

/// A loaded and validated topology file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Stores and databases.
    pub topology: Topology,
    /// The SQL login (`None`: the file has no `[login]`).
    pub login: Option<LoginConfig>,
    /// Fixed addresses per instance, consulted before DNS / SQL Browser.
    pub endpoints: BTreeMap<InstanceAddr, SocketAddr>,
    /// Timeouts and gates.
    pub settings: Settings,
    /// TLS options.
    pub connection: ConnectionOptions,
    /// ODBC options.
    pub odbc: OdbcOptions,
    /// SQL text options (position query, control database) shared by the SQL backends.
    pub sql: failover_tsql::SqlConfig,
    /// `[backup_service]` and `[directory]`.
    pub sections: crate::sections::Sections,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    active: Spanned<RawStore>,
    backup: Spanned<RawStore>,
    databases: Option<Vec<Spanned<String>>>,
    login: Option<RawLogin>,
    endpoints: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    aliases: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    timeouts: Option<RawTimeouts>,
    failover: Option<RawFailover>,
    connection: Option<RawConnection>,
    odbc: Option<RawOdbc>,
    sql: Option<Spanned<toml::Value>>,
    backup_service: Option<crate::sections::RawBackupService>,
    directory: Option<crate::sections::RawDirectory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    principal: Spanned<String>,
    mirror: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    method: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Seconds(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    step: Option<Spanned<RawDuration>>,
    replication: Option<Spanned<RawDuration>>,
    catch_up: Option<Spanned<RawDuration>>,
    poll_interval: Option<Spanned<RawDuration>>,
    dr_fence: Option<Spanned<RawDuration>>,
    undo: Option<Spanned<RawDuration>>,
    retry_backoff: Option<Spanned<RawDuration>>,
    mirror_switch: Option<Spanned<RawDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    max_lag: Option<u64>,
    max_retries: Option<u32>,
    lock_resource: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    tls: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOdbc {
    driver: Option<Spanned<String>>,
    flavour: Option<Spanned<String>>,
    dsn: Option<Spanned<String>>,
    connection_string: Option<Spanned<String>>,
}

/// Parses a duration with [`humantime`] (`500ms`, `30s`, `5m`, `1h 30m`, `2min`), or a bare
/// number of seconds (`30`). Zero is refused: every value is a timeout or an interval.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "write e.g. `500ms`, `30s`, `5m` or `1h 30m`";
    let t = s.trim();
    let d = if t.is_empty() {
        return Err(format!("an empty duration: {EXAMPLES}"));
    } else if t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{t}` is too large a number of seconds"))?
    } else {
        humantime::parse_duration(t)
            .map_err(|e| format!("`{t}` is not a duration ({e}): {EXAMPLES}"))?
    };
    if d.is_zero() {
        return Err(format!("`{t}`: a timeout must be greater than zero"));
    }
    Ok(d)
}

/// The file being parsed, for error positions.
pub(crate) struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// `p`, relative to the topology file's directory when relative.
    pub(crate) fn relative(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_relative() {
            self.path.parent().map_or(p.clone(), |d| d.join(&p))
        } else {
            p
        }
    }

    /// Where a section's password comes from: `password_env` or `password_file` (one of them).
    pub(crate) fn password(
        &self,
        env: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        section: &str,
        anchor: std::ops::Range<usize>,
    ) -> Result<PasswordSource, ConfigError> {
        match (env, file) {
            (Some(v), None) => {
                let name = v.get_ref();
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(self.err(
                        Some(v.span()),
                        Some(&format!("{section}.password_env")),
                        "give the name of an environment variable (not the password itself)",
                    ));
                }
                Ok(PasswordSource::Env(name.clone()))
            }
            (None, Some(f)) => Ok(PasswordSource::File(self.relative(f.get_ref()))),
            (Some(v), Some(_)) => Err(self.err(
                Some(v.span()),
                Some(&format!("{section}.password_env")),
                "give either password_env or password_file, not both",
            )),
            (None, None) => Err(self.err(
                Some(anchor),
                Some(section),
                "add password_env = \"VARIABLE\" or password_file = \"PATH\" (passwords are never written in the topology or on the command line)",
            )),
        }
    }

    /// `[login]`: `method = "sql"` (default) with user and password, or `"kerberos"` with
    /// neither.
    fn login(&self, l: &RawLogin) -> Result<LoginConfig, ConfigError> {
        let method = l.method.as_ref().map(|m| (m.get_ref().as_str(), m.span()));
        match method {
            None | Some(("sql" | "ntlm", _)) => {
                let Some(u) = &l.user else {
                    return Err(self.err(
                        method.map(|m| m.1),
                        Some("login.user"),
                        "add user = \"NAME\" (the SQL login), or method = \"kerberos\" to log in with the process's Kerberos ticket",
                    ));
                };
                let user = u.get_ref().trim();
                if user.is_empty() {
                    return Err(self.err(
                        Some(u.span()),
                        Some("login.user"),
                        "the user name must not be empty",
                    ));
                }
                let password = self.password(&l.password_env, &l.password_file, "login", u.span())?;
                let user = user.to_string();
                if matches!(method, Some(("ntlm", _))) {
                    if !user.split_once('\\').is_some_and(|(d, u)| !d.is_empty() && !u.is_empty()) {
                        return Err(self.err(
                            Some(u.span()),
                            Some("login.user"),
                            "method = \"ntlm\" needs a Windows account written DOMAIN\\user (in single quotes: user = 'CONTOSO\\svc-cms')",
                        ));
                    }
                    return Ok(LoginConfig::Ntlm { user, password });
                }
                Ok(LoginConfig::Sql { user, password })
            }
            Some(("kerberos", span)) => {
                for (present, key) in [
                    (l.user.as_ref().map(|v| v.span()), "login.user"),
                    (l.password_env.as_ref().map(|v| v.span()), "login.password_env"),
                    (l.password_file.as_ref().map(|v| v.span()), "login.password_file"),
                ] {
                    if let Some(at) = present {
                        return Err(self.err(
                            Some(at),
                            Some(key),
                            "method = \"kerberos\" logs in with the process's Kerberos credentials (`kinit`, KRB5CCNAME, or a client keytab in KRB5_CLIENT_KTNAME), so it takes no user and no password: remove this key",
                        ));
                    }
                }
                let _ = span;
                Ok(LoginConfig::Kerberos)
            }
            Some((other, span)) => Err(self.err(
                Some(span),
                Some("login.method"),
                format!("`{other}` is not a login method: use \"sql\" (a SQL login and its password), \"kerberos\" (the process's Kerberos ticket) or \"ntlm\" (DOMAIN\\user and its password, ODBC with FreeTDS only)"),
            )),
        }
    }

    pub(crate) fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.line_col(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.map(str::to_string),
            message: message.into(),
        }
    }

    fn validation(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        e: ValidationError,
    ) -> ConfigError {
        self.err(Some(span), Some(key), e.to_string())
    }

    fn addr(&self, v: &Spanned<String>, key: &str) -> Result<InstanceAddr, ConfigError> {
        InstanceAddr::parse(v.get_ref()).map_err(|e| self.validation(v.span(), key, e))
    }

    /// `[aliases]`: server name as SQL Server reports it (`"SQLB01\\RTC"`) → the topology
    /// address it is. Each name is a computer name with an optional instance (no domain, no
    /// port, as `mirroring_partner_instance` shows it); each address one of the topology's
    /// instances. The topology's instances are also matched by their host's first label.
    fn server_names(
        &self,
        topology: &Topology,
        raw: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
    ) -> Result<failover_core::ServerNames, ConfigError> {
        let known: Vec<&InstanceAddr> = topology
            .active
            .instances()
            .chain(topology.backup.instances())
            .collect();
        let mut names = failover_core::ServerNames::default().with_instances(known.iter().copied());
        for (k, v) in raw.into_iter().flatten() {
            let name = k.get_ref().trim();
            let key = format!("aliases.\"{name}\"");
            let (computer, instance) = match name.split_once('\\') {
                Some((c, i)) => (c, Some(i)),
                None => (name, None),
            };
            if computer.is_empty()
                || computer.contains(['.', ',', ':', ' ', '\\'])
                || instance.is_some_and(|i| failover_core::InstanceName::parse(i).is_err())
            {
                return Err(self.err(
                    Some(k.span()),
                    Some(&key),
                    format!(
                        "`{name}` is not a server name: write it as SQL Server reports it (SELECT @@SERVERNAME), computer name and instance without domain or port, e.g. \"SQLB01\\\\RTC\""
                    ),
                ));
            }
            let addr = self.addr(v, &key)?;
            if !known.contains(&&addr) {
                return Err(self.err(
                    Some(v.span()),
                    Some(&key),
                    format!(
                        "`{addr}` is not an instance of the topology ([active] or [backup] principal or mirror)"
                    ),
                ));
            }
            if names
                .aliases
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                return Err(self.err(
                    Some(k.span()),
                    Some(&key),
                    "this server name has two aliases",
                ));
            }
            names = names.with_alias(name, addr);
        }
        Ok(names)
    }

    fn store(&self, raw: &Spanned<RawStore>, name: &str) -> Result<Store, ConfigError> {
        let r = raw.get_ref();
        let principal = self.addr(&r.principal, &format!("{name}.principal"))?;
        let mirror = match &r.mirror {
            Some(m) => Some(self.addr(m, &format!("{name}.mirror"))?),
            None => None,
        };
        let span = r.mirror.as_ref().map_or(raw.span(), |m| m.span());
        Store::new(principal, mirror)
            .map_err(|e| self.validation(span, &format!("{name}.mirror"), e))
    }

    pub(crate) fn duration(
        &self,
        v: &Option<Spanned<RawDuration>>,
        key: &str,
        into: &mut Duration,
    ) -> Result<(), ConfigError> {
        if let Some(v) = v {
            let d = match v.get_ref() {
                RawDuration::Seconds(0) => Err("a timeout must be greater than zero".to_string()),
                RawDuration::Seconds(n) => Ok(Duration::from_secs(*n)),
                RawDuration::Text(t) => parse_duration(t),
            };
            *into = d.map_err(|m| self.err(Some(v.span()), Some(key), m))?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the topology file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the topology file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates topology text (`path` is used in messages only).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let cx = Ctx { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            let key = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
                .map(str::to_string);
            cx.err(e.span(), key.as_deref(), msg)
        })?;

        let active = cx.store(&raw.active, "active")?;
        let backup = cx.store(&raw.backup, "backup")?;
        let databases = match &raw.databases {
            None => DatabaseName::cms_defaults(),
            Some(list) => list
                .iter()
                .map(|d| {
                    DatabaseName::parse(d.get_ref())
                        .map_err(|e| cx.validation(d.span(), "databases", e))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let db_span = raw
            .databases
            .as_ref()
            .and_then(|l| l.first().map(|d| d.span()));
        let topology = Topology::new(active, backup, databases).map_err(|e| {
            let (span, key) = match e.field.as_str() {
                "databases" => (db_span.clone(), "databases"),
                _ => (
                    Some(raw.backup.get_ref().principal.span()),
                    "backup.principal",
                ),
            };
            cx.err(span, Some(key), e.to_string())
        })?;

        let login = raw.login.as_ref().map(|l| cx.login(l)).transpose()?;

        let mut endpoints = BTreeMap::new();
        for (k, v) in raw.endpoints.iter().flatten() {
            let key = format!("endpoints.\"{}\"", k.get_ref());
            let addr =
                InstanceAddr::parse(k.get_ref()).map_err(|e| cx.validation(k.span(), &key, e))?;
            let sock: SocketAddr = v.get_ref().parse().map_err(|_| {
                cx.err(
                    Some(v.span()),
                    Some(&key),
                    format!(
                        "`{}` is not an IP:port socket address (e.g. 127.0.0.1:14331)",
                        v.get_ref()
                    ),
                )
            })?;
            if endpoints.insert(addr, sock).is_some() {
                return Err(cx.err(
                    Some(k.span()),
                    Some(&key),
                    "this instance has two endpoints",
                ));
            }
        }

        let mut settings = Settings::default();
        if let Some(t) = &raw.timeouts {
            cx.duration(&t.step, "timeouts.step", &mut settings.step_timeout)?;
            cx.duration(
                &t.replication,
                "timeouts.replication",
                &mut settings.replication_timeout,
            )?;
            cx.duration(
                &t.catch_up,
                "timeouts.catch_up",
                &mut settings.catch_up_timeout,
            )?;
            cx.duration(
                &t.poll_interval,
                "timeouts.poll_interval",
                &mut settings.poll_interval,
            )?;
            cx.duration(
                &t.dr_fence,
                "timeouts.dr_fence",
                &mut settings.dr_fence_timeout,
            )?;
            cx.duration(&t.undo, "timeouts.undo", &mut settings.undo_timeout)?;
            cx.duration(
                &t.retry_backoff,
                "timeouts.retry_backoff",
                &mut settings.retry_backoff,
            )?;
            cx.duration(
                &t.mirror_switch,
                "timeouts.mirror_switch",
                &mut settings.mirror_switch_timeout,
            )?;
        }
        if let Some(f) = &raw.failover {
            if let Some(m) = f.max_lag {
                settings.max_lag = m;
            }
            if let Some(m) = f.max_retries {
                settings.max_retries = m;
            }
            if let Some(r) = &f.lock_resource {
                let v = r.get_ref();
                if v.is_empty() || v.chars().count() > 255 {
                    return Err(cx.err(
                        Some(r.span()),
                        Some("failover.lock_resource"),
                        "the lock resource name must have 1 to 255 characters",
                    ));
                }
                settings.lock_resource = v.clone();
            }
        }

        let mut connection = ConnectionOptions::default();
        if let Some(t) = &raw.connection {
            if let Some(m) = &t.tls {
                connection.tls = TlsMode::parse(m.get_ref()).ok_or_else(|| {
                    cx.err(
                        Some(m.span()),
                        Some("connection.tls"),
                        format!(
                            "`{}` is not a TLS mode: use strict, trust-server-certificate or off",
                            m.get_ref()
                        ),
                    )
                })?;
            }
            connection.ca_file = t.ca_file.as_ref().map(|f| PathBuf::from(f.get_ref()));
        }
        let mut odbc = OdbcOptions::default();
        if let Some(o) = &raw.odbc {
            if let Some(d) = &o.driver {
                if d.get_ref().trim().is_empty() || d.get_ref().contains(['{', '}', ';']) {
                    return Err(cx.err(
                        Some(d.span()),
                        Some("odbc.driver"),
                        "the driver name must be non-empty and must not contain `{`, `}` or `;`",
                    ));
                }
                odbc.driver = d.get_ref().clone();
                if d.get_ref().to_ascii_lowercase().contains("freetds") {
                    odbc.flavour = OdbcFlavour::FreeTds;
                }
            }
            if let Some(f) = &o.flavour {
                odbc.flavour = match f.get_ref().to_ascii_lowercase().as_str() {
                    "freetds" => OdbcFlavour::FreeTds,
                    "microsoft" => OdbcFlavour::Microsoft,
                    other => {
                        return Err(cx.err(
                            Some(f.span()),
                            Some("odbc.flavour"),
                            format!("`{other}` is not a driver family: use freetds or microsoft"),
                        ));
                    }
                };
            }
            for (v, key) in [
                (&o.dsn, "odbc.dsn"),
                (&o.connection_string, "odbc.connection_string"),
            ] {
                if let Some(x) = v {
                    let lower = x.get_ref().to_ascii_lowercase().replace(' ', "");
                    if lower.contains("pwd=")
                        || lower.contains("password=")
                        || lower.contains("uid=")
                    {
                        return Err(cx.err(
                            Some(x.span()),
                            Some(key),
                            "credentials must not be written here: use [login] user and password_env / password_file",
                        ));
                    }
                }
            }
            if o.dsn.is_some() && o.connection_string.is_some() {
                return Err(cx.err(
                    o.dsn.as_ref().map(|d| d.span()),
                    Some("odbc.dsn"),
                    "give either dsn or connection_string, not both",
                ));
            }
            odbc.dsn = o.dsn.as_ref().map(|d| d.get_ref().clone());
            odbc.connection_string = o.connection_string.as_ref().map(|d| d.get_ref().clone());
        }
        let mut sql: failover_tsql::SqlConfig = match &raw.sql {
            None => failover_tsql::SqlConfig::default(),
            Some(v) => v
                .get_ref()
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| {
                    cx.err(Some(v.span()), Some("sql"), e.message().trim().to_string())
                })?,
        };
        sql.server_names = cx.server_names(&topology, raw.aliases.as_ref())?;

        let sections = crate::sections::Sections {
            backup_service: raw
                .backup_service
                .as_ref()
                .map(|b| b.parse(&cx))
                .transpose()?,
            directory: raw.directory.as_ref().map(|d| d.parse(&cx)).transpose()?,
        };
        if let Some(b) = &sections.backup_service {
            settings.backup_service = Some(b.settings.clone());
        }

        Ok(Config {
            path: path.to_path_buf(),
            topology,
            login,
            endpoints,
            settings,
            connection,
            odbc,
            sql,
            sections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
databases = ["xds", "lis"]

[active]
principal = 'sql-a.contoso.com\RTC'
mirror = 'sql-a2.contoso.com\RTC'

[backup]
principal = 'sql-b.contoso.com\RTC'

[login]
user = "cmsfailover"
password_env = "CMS_PW"

[endpoints]
'sql-a.contoso.com\RTC' = "127.0.0.1:14331"

[timeouts]
step = "10s"
replication = 120
poll_interval = "500ms"

[connection]
tls = "off"
"#;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), t)
    }

    /// `[timeouts] mirror_switch`: the wait for the roles to switch after SET PARTNER FAILOVER.
    #[test]
    fn the_mirror_switch_timeout_is_read() {
        let t = GOOD.replace(
            "poll_interval = \"500ms\"",
            "poll_interval = \"500ms\"\nmirror_switch = \"90s\"",
        );
        let c = parse(&t).unwrap();
        assert_eq!(c.settings.mirror_switch_timeout, Duration::from_secs(90));
        assert_eq!(
            parse(GOOD).unwrap().settings.mirror_switch_timeout,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn parses_a_full_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(
            c.topology.active.principal.to_string(),
            "sql-a.contoso.com\\RTC"
        );
        assert!(c.topology.active.mirror.is_some());
        assert!(c.topology.backup.mirror.is_none());
        assert_eq!(c.settings.step_timeout, Duration::from_secs(10));
        assert_eq!(c.settings.replication_timeout, Duration::from_secs(120));
        assert_eq!(c.settings.poll_interval, Duration::from_millis(500));
        assert_eq!(c.connection.tls, TlsMode::Off);
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(
            c.login.unwrap(),
            LoginConfig::Sql {
                user: "cmsfailover".into(),
                password: PasswordSource::Env("CMS_PW".into())
            }
        );
    }

    /// `[aliases]`: a server name (as `@@SERVERNAME` shows it) → a topology instance; the
    /// topology's instances also match by their host's first label.
    #[test]
    fn aliases_map_server_names_to_topology_instances() {
        let with = |a: &str| parse(&format!("{GOOD}\n[aliases]\n{a}\n"));
        let c = with(r#""SQLB01\\RTC" = 'sql-b.contoso.com\RTC'"#).unwrap();
        let n = &c.sql.server_names;
        assert_eq!(
            n.resolve("sqlb01\\RTC").unwrap(),
            c.topology.backup.principal
        );
        assert_eq!(
            n.resolve("SQL-A2\\RTC").unwrap().to_string(),
            "sql-a2.contoso.com\\RTC"
        );
        assert!(n.resolve("SQLX\\RTC").is_err());
        // A name with a domain or a port, or an address outside the topology, is refused
        // with the key.
        for bad in [
            r#""sqlb01.contoso.com\\RTC" = 'sql-b.contoso.com\RTC'"#,
            r#""SQLB01\\RTC,1433" = 'sql-b.contoso.com\RTC'"#,
            r#""SQLB01\\RTC" = 'sql-z.contoso.com\RTC'"#,
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.key.as_deref().unwrap().starts_with("aliases."), "{e}");
        }
    }

    #[test]
    fn kerberos_login_takes_no_user_or_password() {
        let krb = GOOD.replace(
            "user = \"cmsfailover\"\npassword_env = \"CMS_PW\"",
            "method = \"kerberos\"",
        );
        assert_eq!(parse(&krb).unwrap().login, Some(LoginConfig::Kerberos));
        let with_sql = GOOD.replace("[login]\n", "[login]\nmethod = \"sql\"\n");
        assert!(matches!(
            parse(&with_sql).unwrap().login,
            Some(LoginConfig::Sql { .. })
        ));
        for extra in [
            "user = \"u\"",
            "password_env = \"P\"",
            "password_file = \"f\"",
        ] {
            let bad = krb.replace(
                "method = \"kerberos\"",
                &format!("method = \"kerberos\"\n{extra}"),
            );
            let e = parse(&bad).unwrap_err();
            let key = format!("login.{}", extra.split(' ').next().unwrap());
            assert_eq!(e.key.as_deref(), Some(key.as_str()), "{e}");
            assert!(
                e.message.contains("kinit") && e.message.contains("remove"),
                "{e}"
            );
        }
        let ntlm = GOOD.replace("[login]\n", "[login]\nmethod = \"ntlm\"\n");
        let e = parse(&ntlm).unwrap_err();
        assert!(e.message.contains("DOMAIN\\user"), "{e}");
        let ntlm = ntlm.replace("\"cmsfailover\"", "'CMS\\ops'");
        assert_eq!(
            parse(&ntlm).unwrap().login,
            Some(LoginConfig::Ntlm {
                user: "CMS\\ops".into(),
                password: PasswordSource::Env("CMS_PW".into())
            })
        );
        let e = parse(&krb.replace("kerberos", "ldap")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("login.method"), "{e}");
        let e = parse(&GOOD.replace("user = \"cmsfailover\"\n", "")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("login.user"), "{e}");
        assert!(e.message.contains("kerberos"), "{e}");
    }

    #[test]
    fn errors_name_line_and_key() {
        let bad = GOOD.replace("sql-b.contoso.com\\RTC", "sql b.contoso.com\\RTC");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
        assert_eq!(e.key.as_deref(), Some("backup.principal"));

        let e = parse(&GOOD.replace("step =", "stepp =")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("stepp"), "{e}");
        assert_eq!(e.line, Some(19), "{e}");

        let e = parse(&GOOD.replace("\"10s\"", "\"10 parsecs\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("timeouts.step"), "{e}");

        let e = parse(&GOOD.replace("tls = \"off\"", "tls = \"maybe\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("connection.tls"));
        assert_eq!(e.line, Some(24));

        let e = parse(&GOOD.replace("[login]", "[login\n")).unwrap_err();
        assert_eq!(e.line, Some(11), "{e}");

        let e = parse(&GOOD.replace("password_env = \"CMS_PW\"", "")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("login"));

        let e = parse(&GOOD.replace("sql-b.contoso.com", "sql-a.contoso.com")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("backup.principal"), "{e}");
        assert!(e.message.contains("source equals target"));

        let e = parse(&GOOD.replace("127.0.0.1:14331", "localhost")).unwrap_err();
        assert!(e.key.as_deref().unwrap().starts_with("endpoints."));
        assert!(e.to_string().starts_with("t.toml:16:"));
    }

    #[test]
    fn the_example_file_parses() {
        let c = Config::parse(
            Path::new("topology.example.toml"),
            include_str!("../topology.example.toml"),
        )
        .unwrap();
        assert_eq!(c.topology.databases.len(), 2);
        assert!(c.topology.backup.mirror.is_some());
        assert_eq!(c.connection.tls, TlsMode::Strict);
        assert_eq!(c.settings.replication_timeout, Duration::from_secs(300));
        assert_eq!(c.odbc.flavour, OdbcFlavour::Microsoft);
    }

    #[test]
    fn sql_section() {
        let c = parse(&format!(
            "{GOOD}\n[sql]\ncontrol_database = \"cmsctl\"\nposition_query = \"SELECT 1 AS p\"\n"
        ))
        .unwrap();
        assert_eq!(c.sql.control_database.as_str(), "cmsctl");
        let e = parse(&format!(
            "{GOOD}\n[sql]\nposition_query = \"DELETE FROM x\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sql"), "{e}");
        assert!(e.message.contains("SELECT"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("10 s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration(" 30s ").unwrap(), Duration::from_secs(30));
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            parse_duration("0")
                .unwrap_err()
                .contains("greater than zero")
        );
        let e = parse_duration("5 fortnights").unwrap_err();
        assert!(
            e.contains("`5 fortnights` is not a duration") && e.contains("30s"),
            "{e}"
        );
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999999").is_err());
    }
}
