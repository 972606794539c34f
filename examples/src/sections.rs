//! The topology file's `[backup_service]` and `[directory]` sections: the Backup Service
//! status command that gates a planned failover, and the Active Directory that holds the
//! CMS location (the service control point Skype for Business servers read).
//!
//! ```toml
//! [backup_service]
//! command = ["ssh", "fe01.contoso.com", "pwsh", "-NoProfile", "-Command",
//!            "Get-CsBackupServiceStatus -PoolFqdn pool01.contoso.com | ConvertTo-Json -Depth 5 -EnumsAsStrings"]
//! timeout = "30s"              # one run of the command (killed after it)
//! pool = "pool01.contoso.com"  # optional: the PoolFqdn to pick when the output lists several
//! final_state_timeout = "10m"  # optional: after the fence, the wait for FinalState
//! poll_interval = "15s"        # optional: between two runs of the command
//!
//! [directory]
//! url = "ldaps://dc01.contoso.com"     # or ldap://… with starttls = true
//! ca_file = "/etc/cms-failover/ad-ca.pem"
//! bind = "simple"                      # or "kerberos" (then no user, no password)
//! user = "svc-cmsfailover@contoso.com"
//! password_env = "CMS_FAILOVER_AD_PASSWORD"   # or password_file = "…"
//! scp_dn = "CN=Topology Settings,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"  # optional
//! domain_controllers = ["ldaps://dc02.contoso.com"]   # optional: more DCs to watch
//! ```
//!
//! The command runs without a shell (an argv array), standard input closed; nothing secret
//! belongs in it. The directory's password comes from an environment variable or a file,
//! never the topology, argv, a log or a report. `bind = "kerberos"` binds with SASL GSSAPI
//! and the process's Kerberos credentials (`kinit`, `KRB5CCNAME`, or a client keytab in
//! `KRB5_CLIENT_KTNAME`), the service principal `ldap/<host of each URL>`; it takes no user
//! and no password, and needs a build with the `kerberos` feature.

use crate::config::{ConfigError, Ctx, RawDuration};
use crate::secret::PasswordSource;
use failover_core::BackupServiceSettings;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Both optional sections.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// `[backup_service]`: the planned failover gates on the Backup Service.
    pub backup_service: Option<BackupServiceConfig>,
    /// `[directory]`: Active Directory holds the CMS location.
    pub directory: Option<DirectoryConfig>,
}

/// `[backup_service]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupServiceConfig {
    /// The status command's argv.
    pub command: Vec<String>,
    /// One run's timeout.
    pub timeout: Duration,
    /// The `PoolFqdn` to pick.
    pub pool: Option<String>,
    /// The machine's waits.
    pub settings: BackupServiceSettings,
}

/// `[directory]` (validated; the CA file and password are read when it is built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The DC changes go to.
    pub url: String,
    /// StartTLS on `ldap://`.
    pub starttls: bool,
    /// CA certificates (PEM) of the DCs.
    pub ca_file: Option<PathBuf>,
    /// How to bind.
    pub bind: DirectoryBind,
    /// The SCP's DN, when not searched for.
    pub scp_dn: Option<String>,
    /// More DCs to read back.
    pub domain_controllers: Vec<String>,
    /// Bound on each LDAP request.
    pub timeout: Option<Duration>,
}

/// `[directory] bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryBind {
    /// `"simple"` (the default): a user and its password.
    Simple {
        /// Bind user (DN or user@domain).
        user: String,
        /// Where the bind password is read from.
        password: PasswordSource,
    },
    /// `"kerberos"`: SASL GSSAPI with the process's Kerberos credentials.
    Kerberos,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackupService {
    command: Spanned<toml::Value>,
    timeout: Option<Spanned<RawDuration>>,
    pool: Option<Spanned<String>>,
    final_state_timeout: Option<Spanned<RawDuration>>,
    poll_interval: Option<Spanned<RawDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDirectory {
    url: Spanned<String>,
    starttls: Option<bool>,
    ca_file: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    scp_dn: Option<Spanned<String>>,
    domain_controllers: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<RawDuration>>,
}

/// The default time one run of the status command may take.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl RawBackupService {
    pub(crate) fn parse(&self, cx: &Ctx) -> Result<BackupServiceConfig, ConfigError> {
        let key = "backup_service.command";
        let shape = "give the command as an array of arguments, run without a shell, e.g. command = [\"ssh\", \"fe01.contoso.com\", \"pwsh\", \"-Command\", \"Get-CsBackupServiceStatus -PoolFqdn pool01.contoso.com | ConvertTo-Json -Depth 5 -EnumsAsStrings\"]";
        let toml::Value::Array(items) = self.command.get_ref() else {
            return Err(cx.err(Some(self.command.span()), Some(key), shape));
        };
        let mut command = Vec::with_capacity(items.len());
        for v in items {
            match v {
                toml::Value::String(s) => command.push(s.clone()),
                _ => return Err(cx.err(Some(self.command.span()), Some(key), shape)),
            }
        }
        if command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(cx.err(
                Some(self.command.span()),
                Some(key),
                format!("the command is empty: {shape}"),
            ));
        }
        if let Some(arg) = command.iter().find(|a| {
            let l = a.to_ascii_lowercase().replace(' ', "");
            l.contains("password=") || l.contains("pwd=") || l.contains("-password")
        }) {
            let shown: String = arg.chars().take(24).collect();
            return Err(cx.err(
                Some(self.command.span()),
                Some(key),
                format!("an argument looks like it carries a password (`{shown}…`): argv is visible to every local user; use the remoting tool's key or credential store (e.g. an SSH key)"),
            ));
        }
        let mut timeout = DEFAULT_COMMAND_TIMEOUT;
        cx.duration(&self.timeout, "backup_service.timeout", &mut timeout)?;
        let mut settings = BackupServiceSettings::default();
        cx.duration(
            &self.final_state_timeout,
            "backup_service.final_state_timeout",
            &mut settings.final_state_timeout,
        )?;
        cx.duration(
            &self.poll_interval,
            "backup_service.poll_interval",
            &mut settings.poll_interval,
        )?;
        let pool = match &self.pool {
            Some(p)
                if p.get_ref().trim().is_empty() || p.get_ref().contains(char::is_whitespace) =>
            {
                return Err(cx.err(
                    Some(p.span()),
                    Some("backup_service.pool"),
                    "give the pool's FQDN as Get-CsBackupServiceStatus prints it in PoolFqdn (e.g. pool01.contoso.com)",
                ));
            }
            Some(p) => Some(p.get_ref().clone()),
            None => None,
        };
        Ok(BackupServiceConfig {
            command,
            timeout,
            pool,
            settings,
        })
    }
}

impl RawDirectory {
    pub(crate) fn parse(&self, cx: &Ctx) -> Result<DirectoryConfig, ConfigError> {
        let url = self.url.get_ref().trim().to_string();
        let lower = url.to_ascii_lowercase();
        let starttls = self.starttls.unwrap_or(false);
        if lower.starts_with("ldap://") && !starttls {
            return Err(cx.err(
                Some(self.url.span()),
                Some("directory.url"),
                format!("`{url}` is plain LDAP: a simple bind would send the password in the clear (and Active Directory refuses it); use ldaps://… or add starttls = true"),
            ));
        }
        if !(lower.starts_with("ldaps://") || lower.starts_with("ldap://")) {
            return Err(cx.err(
                Some(self.url.span()),
                Some("directory.url"),
                format!("`{url}` is not an LDAP URL: use ldaps://dc01.contoso.com (or ldap://… with starttls = true)"),
            ));
        }
        let bind = match self.bind.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
            None | Some(("simple", _)) => self.simple_bind(cx)?,
            Some(("kerberos", _)) => {
                for (present, key) in [
                    (self.user.as_ref().map(|v| v.span()), "directory.user"),
                    (
                        self.password_env.as_ref().map(|v| v.span()),
                        "directory.password_env",
                    ),
                    (
                        self.password_file.as_ref().map(|v| v.span()),
                        "directory.password_file",
                    ),
                ] {
                    if let Some(at) = present {
                        return Err(cx.err(
                            Some(at),
                            Some(key),
                            "bind = \"kerberos\" binds with the process's Kerberos credentials (`kinit`, KRB5CCNAME, or a client keytab in KRB5_CLIENT_KTNAME), so it takes no user and no password: remove this key",
                        ));
                    }
                }
                DirectoryBind::Kerberos
            }
            Some((other, span)) => {
                return Err(cx.err(
                    Some(span),
                    Some("directory.bind"),
                    format!("`{other}` is not a bind method: use \"simple\" (user and password) or \"kerberos\" (the process's Kerberos ticket)"),
                ));
            }
        };
        let mut domain_controllers = Vec::new();
        for dc in self.domain_controllers.iter().flatten() {
            let l = dc.get_ref().to_ascii_lowercase();
            if !(l.starts_with("ldaps://") || (l.starts_with("ldap://") && starttls)) {
                return Err(cx.err(
                    Some(dc.span()),
                    Some("directory.domain_controllers"),
                    format!(
                        "`{}` must be an ldaps:// URL (or ldap:// with starttls = true)",
                        dc.get_ref()
                    ),
                ));
            }
            domain_controllers.push(dc.get_ref().trim().to_string());
        }
        let scp_dn = match &self.scp_dn {
            Some(d) if !d.get_ref().contains('=') => {
                return Err(cx.err(Some(d.span()), Some("directory.scp_dn"), "give the service control point's distinguished name, e.g. CN=Topology Settings,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"));
            }
            Some(d) => Some(d.get_ref().clone()),
            None => None,
        };
        let mut timeout = None;
        if self.timeout.is_some() {
            let mut t = Duration::ZERO;
            cx.duration(&self.timeout, "directory.timeout", &mut t)?;
            timeout = Some(t);
        }
        Ok(DirectoryConfig {
            url,
            starttls,
            ca_file: self.ca_file.as_ref().map(|f| cx.relative(f.get_ref())),
            bind,
            scp_dn,
            domain_controllers,
            timeout,
        })
    }
}

impl RawDirectory {
    /// `bind = "simple"`: the user and where its password is.
    fn simple_bind(&self, cx: &Ctx) -> Result<DirectoryBind, ConfigError> {
        let user = match &self.user {
            Some(u) if !u.get_ref().trim().is_empty() => u.get_ref().trim().to_string(),
            Some(u) => {
                return Err(cx.err(
                    Some(u.span()),
                    Some("directory.user"),
                    "the bind user must not be empty: a DN or user@domain",
                ));
            }
            None => {
                return Err(cx.err(Some(self.url.span()), Some("directory"), "add user = \"svc-cmsfailover@contoso.com\" (a DN or user@domain) for the simple bind, or bind = \"kerberos\""));
            }
        };
        let password = cx.password(
            &self.password_env,
            &self.password_file,
            "directory",
            self.url.span(),
        )?;
        Ok(DirectoryBind::Simple { user, password })
    }
}

/// The gate that runs `cfg`'s command. The child does not inherit any environment variable
/// whose value is one of `secrets` (the login's and the directory's passwords).
pub fn gate(
    cfg: &BackupServiceConfig,
    secrets: &[&str],
) -> std::sync::Arc<dyn failover_core::BackupServiceGate> {
    let hidden = std::env::vars_os()
        .filter(|(_, v)| v.to_str().is_some_and(|v| secrets.contains(&v)))
        .filter_map(|(k, _)| k.into_string().ok());
    let mut cmd = backup_service::StatusCommand::new(cfg.command.clone(), cfg.timeout)
        .expect("validated non-empty argv")
        .without_env(hidden);
    if let Some(p) = &cfg.pool {
        cmd = cmd.with_pool(p.clone());
    }
    std::sync::Arc::new(cmd)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = "[active]\nprincipal = 'a.cms.test'\n[backup]\nprincipal = 'b.cms.test'\n";

    fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("/etc/cms/t.toml"), &format!("{BASE}{extra}"))
    }

    #[test]
    fn the_example_sections_parse_when_uncommented() {
        let text = include_str!("../topology.example.toml");
        let start = text.find("# [backup_service]").unwrap();
        let tail: String = text[start..]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                let key = l.split(" = ").next().unwrap_or("");
                l.starts_with('[')
                    || l.trim_start().starts_with('"')
                    || (l.contains(" = ")
                        && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&tail).unwrap_or_else(|e| panic!("{e}\n{tail}"));
        let b = c.sections.backup_service.unwrap();
        assert_eq!(b.command[0], "ssh");
        assert_eq!(b.timeout, Duration::from_secs(30));
        assert_eq!(b.pool.as_deref(), Some("pool01.contoso.com"));
        assert_eq!(b.settings.final_state_timeout, Duration::from_secs(600));
        assert_eq!(c.settings.backup_service, Some(b.settings));
        let d = c.sections.directory.unwrap();
        assert_eq!(d.url, "ldaps://dc01.contoso.com");
        assert_eq!(d.domain_controllers, ["ldaps://dc02.contoso.com"]);
        assert!(d.scp_dn.unwrap().starts_with("CN=Topology Settings"));
    }

    #[test]
    fn errors_name_the_key() {
        let key = |extra: &str| parse(extra).unwrap_err().key.unwrap_or_default();
        assert_eq!(
            key(
                "[directory]\nurl = \"ldaps://dc\"\nbind = \"kerberos\"\nuser = \"u\"\npassword_env = \"P\"\n"
            ),
            "directory.user"
        );
        assert_eq!(
            key("[directory]\nurl = \"ldaps://dc\"\nbind = \"ntlm\"\n"),
            "directory.bind"
        );
        assert_eq!(
            key("[directory]\nurl = \"ldap://dc\"\nuser = \"u\"\npassword_env = \"P\"\n"),
            "directory.url"
        );
        assert_eq!(
            key("[directory]\nurl = \"ldaps://dc\"\nuser = \"u\"\n"),
            "directory"
        );
        assert_eq!(
            key("[backup_service]\ncommand = \"ssh x\"\n"),
            "backup_service.command"
        );
        assert_eq!(
            key("[backup_service]\ncommand = [\"x\"]\npoll_interval = \"soon\"\n"),
            "backup_service.poll_interval"
        );
        // No sections: SQL positions and the SQL record, as before.
        let c = parse("").unwrap();
        assert!(c.sections.backup_service.is_none() && c.sections.directory.is_none());
        assert!(c.settings.backup_service.is_none());
        // Relative password files are relative to the topology file.
        let c = parse("[directory]\nurl = \"ldap://dc\"\nstarttls = true\nuser = \"u\"\npassword_file = \"ad-pw\"\n").unwrap();
        assert_eq!(
            c.sections.directory.unwrap().bind,
            super::DirectoryBind::Simple {
                user: "u".into(),
                password: crate::secret::PasswordSource::File("/etc/cms/ad-pw".into())
            }
        );
    }

    #[test]
    fn a_kerberos_bind_takes_no_user_and_no_password() {
        let c =
            parse("[directory]\nurl = \"ldaps://dc01.cms.test\"\nbind = \"kerberos\"\n").unwrap();
        assert_eq!(
            c.sections.directory.unwrap().bind,
            super::DirectoryBind::Kerberos
        );
        for extra in [
            "user = \"u\"",
            "password_env = \"P\"",
            "password_file = \"f\"",
        ] {
            let e = parse(&format!(
                "[directory]\nurl = \"ldaps://dc01.cms.test\"\nbind = \"kerberos\"\n{extra}\n"
            ))
            .unwrap_err();
            assert!(
                e.message.contains("kinit") && e.message.contains("remove this key"),
                "{e}"
            );
        }
        // Plain LDAP stays refused with Kerberos too.
        let e = parse("[directory]\nurl = \"ldap://dc01.cms.test\"\nbind = \"kerberos\"\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("directory.url"), "{e}");
    }
}
