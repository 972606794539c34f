//! The one secret type of the workspace (passwords, connection strings holding them).

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// A secret string, wrapping [`secrecy::SecretString`] (wiped from memory on drop).
///
/// `Debug` and `Display` print `***`; only [`Secret::expose`] reveals the value, for handing
/// it straight to a driver. Deliberately no `PartialEq`, `Serialize` or `Deserialize`: where a
/// password comes from (an environment variable, a file) is the program's business, never
/// argv, a log, a report or a journal.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret itself. Hand it to a driver; never format or log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_stars_and_exposes_only_on_request() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.clone().expose(), "hunter2");
        assert!(!s.is_empty());
        assert!(Secret::from(String::new()).is_empty());
    }
}
