//! Secrets (passwords) that never show up in `Debug`, `Display`, logs or errors.

use std::fmt;
use std::path::PathBuf;

/// A secret string. `Debug` and `Display` print `***`; the value is only reachable through
/// [`Secret::expose`], which call sites use to build a connection string handed straight to the
/// driver.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the SQL login's password comes from. Never from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The named environment variable.
    Env(String),
    /// The first line of a file (trailing `\r`/`\n` removed).
    File(PathBuf),
    /// A value already in memory (tests, or a caller that read it elsewhere).
    Value(Secret),
}

/// Why a password could not be read. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is unset or not valid Unicode.
    #[error("environment variable `{0}` is not set (it must hold the SQL login's password)")]
    MissingEnv(String),
    /// The password file could not be read.
    #[error("cannot read password file `{path}`: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl PasswordSource {
    /// Reads the password now.
    pub fn load(&self) -> Result<Secret, SecretError> {
        match self {
            PasswordSource::Env(var) => std::env::var(var)
                .map(Secret::new)
                .map_err(|_| SecretError::MissingEnv(var.clone())),
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let line = text.lines().next().unwrap_or_default();
                Ok(Secret::new(line.trim_end_matches(['\r', '\n'])))
            }
            PasswordSource::Value(s) => Ok(s.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(!format!("{:?}", PasswordSource::Value(s.clone())).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_source_reads_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret;{x}\r\nignored\n").unwrap();
        let s = PasswordSource::File(p).load().unwrap();
        assert_eq!(s.expose(), "s3cret;{x}");
    }

    #[test]
    fn missing_sources_are_errors_without_secret() {
        let e = PasswordSource::Env("CMS_FAILOVER_ODBC_TEST_SURELY_UNSET_VAR".into())
            .load()
            .unwrap_err();
        assert!(matches!(e, SecretError::MissingEnv(_)));
        let e = PasswordSource::File("/nonexistent/pw".into())
            .load()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/pw"));
    }
}
