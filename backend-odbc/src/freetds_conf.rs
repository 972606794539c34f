//! The generated `freetds.conf` that carries FreeTDS's certificate settings.
//!
//! FreeTDS 1.3 takes `Encryption=` in an ODBC connection string but not its CA file: a
//! `CAFile=` keyword is silently ignored, so a connection string alone cannot verify the
//! server certificate. The `ca file` and `check certificate hostname` settings only come
//! from a `freetds.conf` section, which a connection string selects with `Servername=`.
//! So, for [`Trust::CaFile`](crate::Trust::CaFile) and
//! [`Trust::SystemRoots`](crate::Trust::SystemRoots) with FreeTDS, the backend writes one
//! section per server and settings into a file of its own and points FreeTDS at it with
//! the `FREETDSCONF` environment variable, which FreeTDS reads on every connect:
//!
//! ```text
//! [global]
//! [cms-failover-1f2e…]
//!     host = 127.0.0.1
//!     port = 14330
//!     tds version = 7.4
//!     encryption = require
//!     ca file = /etc/ssl/corp-ca.pem
//!     check certificate hostname = yes
//! ```
//!
//! The file holds no secret (the login stays in the connection string). It lives in a
//! private temporary directory of this process. `FREETDSCONF` is set once, the first time
//! a section is needed; a program that starts threads calling into C code which reads the
//! environment should call [`init`] first (the CLI does, before its runtime starts). If
//! `FREETDSCONF` already names another file, that file is the operator's: the backend does
//! not replace it and says how to proceed ([`ConfigError::FreeTdsConfInUse`]).

use crate::config::ConfigError;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The environment variable FreeTDS reads its configuration file name from.
pub const ENV: &str = "FREETDSCONF";

/// One server's section: where it is and how to check its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Section {
    /// Host name or address (also the name the certificate must carry).
    pub host: String,
    /// TCP port (`None`: resolve `instance` through SQL Browser).
    pub port: Option<u16>,
    /// Named instance, when no port is known.
    pub instance: Option<String>,
    /// `ca file`: a PEM file, or `system` for the system trust store.
    pub ca_file: String,
}

impl Section {
    /// Its stable name in the file: `cms-failover-<hash of the settings>`.
    pub fn name(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        format!("cms-failover-{:016x}", h.finish())
    }

    /// The section's text.
    pub fn render(&self) -> String {
        let mut s = format!("[{}]\n\thost = {}\n", self.name(), self.host);
        match (self.port, &self.instance) {
            (Some(p), _) => s.push_str(&format!("\tport = {p}\n")),
            (None, Some(i)) => s.push_str(&format!("\tinstance = {i}\n")),
            (None, None) => s.push_str("\tport = 1433\n"),
        }
        s.push_str(&format!(
            "\ttds version = 7.4\n\tencryption = require\n\tca file = {}\n\tcheck certificate hostname = yes\n",
            self.ca_file
        ));
        s
    }
}

struct ConfFile {
    path: PathBuf,
    sections: Mutex<BTreeMap<String, String>>,
}

static CONF: OnceLock<Result<ConfFile, ConfigError>> = OnceLock::new();

fn conf() -> Result<&'static ConfFile, ConfigError> {
    CONF.get_or_init(|| {
        if let Some(other) = std::env::var_os(ENV) {
            return Err(ConfigError::FreeTdsConfInUse(PathBuf::from(other)));
        }
        let dir = tempfile::Builder::new()
            .prefix("cms-failover-freetds-")
            .tempdir()
            .map_err(|e| ConfigError::FreeTdsConf(e.to_string()))?
            .keep();
        let path = dir.join("freetds.conf");
        std::fs::write(&path, "[global]\n").map_err(|e| ConfigError::FreeTdsConf(e.to_string()))?;
        // SAFETY: set once per process, before the first FreeTDS connection that needs it;
        // `init` lets a program do it before it starts threads.
        unsafe { std::env::set_var(ENV, &path) };
        Ok(ConfFile {
            path,
            sections: Mutex::new(BTreeMap::new()),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Creates the file and sets `FREETDSCONF`, if not done yet. Call it before starting
/// threads; later calls do nothing. Returns the file's path.
pub fn init() -> Result<&'static Path, ConfigError> {
    conf().map(|c| c.path.as_path())
}

/// Makes sure `section` is in the file (rewritten atomically when it is new) and returns
/// its name, for `Servername=`.
pub fn ensure(section: &Section) -> Result<String, ConfigError> {
    let fields = [
        Some(&section.host),
        section.instance.as_ref(),
        Some(&section.ca_file),
    ];
    if fields
        .into_iter()
        .flatten()
        .any(|f| f.contains(['\n', '\r']))
    {
        return Err(ConfigError::FreeTdsConf(
            "a host, instance or CA file name contains a line break".into(),
        ));
    }
    let c = conf()?;
    let name = section.name();
    let mut sections = c.sections.lock().unwrap_or_else(|p| p.into_inner());
    if !sections.contains_key(&name) {
        sections.insert(name.clone(), section.render());
        let mut text = String::from("[global]\n");
        for s in sections.values() {
            text.push_str(s);
        }
        let tmp = c.path.with_extension("conf.new");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &c.path))
            .map_err(|e| ConfigError::FreeTdsConf(e.to_string()))?;
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_names_host_port_and_certificate_checks() {
        let s = Section {
            host: "127.0.0.1".into(),
            port: Some(14330),
            instance: None,
            ca_file: "/tmp/ca.pem".into(),
        };
        let text = s.render();
        assert!(text.starts_with(&format!("[{}]\n", s.name())), "{text}");
        for line in [
            "host = 127.0.0.1",
            "port = 14330",
            "encryption = require",
            "ca file = /tmp/ca.pem",
            "check certificate hostname = yes",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        let other = Section {
            ca_file: "system".into(),
            ..s.clone()
        };
        assert_ne!(s.name(), other.name());
        let named = Section {
            port: None,
            instance: Some("RTC".into()),
            ..s
        };
        assert!(named.render().contains("instance = RTC"));
    }
}
