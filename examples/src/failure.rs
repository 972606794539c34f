//! A command that stopped before running: what happened, what to do next, and the exit code.

use std::fmt;

/// Exit code: bad input or usage, nothing changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: refused before any change.
pub const EXIT_REFUSED: i32 = 3;

/// A command that stopped before running: what happened, what to do next, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process exit code (2 or 3).
    pub code: i32,
    /// What happened.
    pub what: String,
    /// What to do next.
    pub next: String,
    /// Already shown to the operator (in the `--json` document): not printed again.
    pub shown: bool,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn usage(what: impl Into<String>, next: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            what: what.into(),
            next: next.into(),
            shown: false,
        }
    }
    /// Refused before any change (exit 3).
    pub fn refused(what: impl Into<String>, next: impl Into<String>) -> Self {
        Self {
            code: EXIT_REFUSED,
            what: what.into(),
            next: next.into(),
            shown: false,
        }
    }
}

impl Failure {
    /// The same failure, marked as already shown.
    pub fn shown(mut self) -> Self {
        self.shown = true;
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}\n  next: {}", self.what, self.next)
    }
}
