//! Where the SQL login's password comes from: an environment variable or a file, never argv.
//! The value is a [`failover_core::Secret`] (`Debug`/`Display` show `***`), handed as is to
//! either backend.

use failover_core::Secret;
use std::path::PathBuf;

/// How this run logs in to SQL Server, loaded (the password read).
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A SQL login and its password.
    Sql {
        /// The login name.
        user: String,
        /// Its password.
        password: Secret,
    },
    /// The process's Kerberos credentials (ticket cache or client keytab).
    Kerberos,
    /// A Windows account `DOMAIN\user` and its password, with NTLM.
    Ntlm {
        /// `DOMAIN\user`.
        user: String,
        /// Its password.
        password: Secret,
    },
}

impl Credentials {
    /// The secrets to scrub from every output (the password, if any).
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Self::Sql { password, .. } | Self::Ntlm { password, .. } => vec![password.expose()],
            Self::Kerberos => Vec::new(),
        }
    }
}

/// Where the password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The named environment variable.
    Env(String),
    /// The first line of a file (trailing `\r\n` removed).
    File(PathBuf),
}

/// Why the password could not be read (never contains the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The variable is unset, empty or not Unicode.
    #[error(
        "the environment variable `{0}` that should hold the SQL login's password is not set (or empty); export it, or use `password_file` in the topology"
    )]
    MissingEnv(String),
    /// The file cannot be read or is empty.
    #[error("cannot read the password file `{path}`: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl PasswordSource {
    /// Reads the password now.
    pub fn load(&self) -> Result<Secret, PasswordError> {
        match self {
            PasswordSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                _ => Err(PasswordError::MissingEnv(var.clone())),
            },
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| PasswordError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
                if first.is_empty() {
                    return Err(PasswordError::File {
                        path: path.clone(),
                        reason: "the file is empty (the password must be on its first line)".into(),
                    });
                }
                Ok(Secret::new(first))
            }
        }
    }

    /// Describes the source for messages (`env CMS_PW`, `file /etc/x`), never the value.
    pub fn describe(&self) -> String {
        match self {
            PasswordSource::Env(v) => format!("environment variable {v}"),
            PasswordSource::File(p) => format!("file {}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let p = Secret::new("hunter2");
        assert_eq!(format!("{p:?}{p}"), "******");
        assert_eq!(p.expose(), "hunter2");
    }

    #[test]
    fn file_source_reads_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\r\nignored\n").unwrap();
        assert_eq!(
            PasswordSource::File(f.clone()).load().unwrap().expose(),
            "s3cret"
        );
        std::fs::write(&f, "").unwrap();
        assert!(PasswordSource::File(f).load().is_err());
        let missing = PasswordSource::File(dir.path().join("nope")).load();
        assert!(matches!(missing, Err(PasswordError::File { .. })));
    }

    #[test]
    fn missing_env_is_named() {
        let e = PasswordSource::Env("CMS_FAILOVER_TEST_SURELY_UNSET_VAR".into())
            .load()
            .unwrap_err();
        assert!(e.to_string().contains("CMS_FAILOVER_TEST_SURELY_UNSET_VAR"));
    }
}
