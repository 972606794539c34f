//! Running the operator's status command: an argv array (no shell), a timeout, bounded output.

use crate::status::{self, ModuleStatus, ParseError, ServiceStatus};
use failover_core::{BackupServiceError, BackupServiceGate, ErrorKind};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// At most this much standard output is read (a status is a few kilobytes).
const MAX_STDOUT: u64 = 4 << 20;
/// At most this much standard error is kept for the message.
const MAX_STDERR: usize = 4096;

/// The command that prints `Get-CsBackupServiceStatus` output as JSON, for example
/// `["ssh", "fe01.contoso.com", "pwsh", "-NoProfile", "-Command",
/// "Get-CsBackupServiceStatus -PoolFqdn pool01.contoso.com | ConvertTo-Json -Depth 5 -EnumsAsStrings"]`.
///
/// It runs without a shell, with standard input closed, and is killed when it outlives its
/// timeout. Nothing secret belongs in its argv (argv is visible to every local user): use the
/// remoting tool's own key or credential store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCommand {
    argv: Vec<String>,
    timeout: Duration,
    pool: Option<String>,
    /// Environment variables the child must not inherit (the caller's secrets).
    hidden_env: Vec<String>,
}

/// Why no status could be read. [`GateError::kind`] tells the core what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The command could not be started.
    #[error("cannot start the Backup Service status command `{program}`: {reason}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The OS error.
        reason: String,
    },
    /// It ran longer than its timeout and was killed.
    #[error("the Backup Service status command `{program}` did not finish within {}; it was killed", secs(*.after))]
    Timeout {
        /// argv\[0\].
        program: String,
        /// The timeout.
        after: Duration,
    },
    /// It exited unsuccessfully.
    #[error(
        "the Backup Service status command `{program}` failed ({status}){}",
        stderr_suffix(stderr)
    )]
    Failed {
        /// argv\[0\].
        program: String,
        /// How it ended (`exit status 1`, `signal 9`).
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// It succeeded but printed something unusable.
    #[error(
        "the Backup Service status command `{program}` printed unusable output: {error}{}",
        stderr_suffix(stderr)
    )]
    Output {
        /// argv\[0\].
        program: String,
        /// What is wrong with it.
        error: ParseError,
        /// The end of its standard error.
        stderr: String,
    },
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its standard error: {}", stderr.trim())
    }
}

impl GateError {
    /// A time-out may be retried; a command that fails or prints garbage will do so again.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GateError::Timeout { .. } => ErrorKind::Timeout,
            _ => ErrorKind::Fatal,
        }
    }
}

/// An empty argv.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Backup Service status command is empty: give its argv as an array, e.g. [\"ssh\", \"fe01.contoso.com\", \"pwsh\", \"-Command\", \"Get-CsBackupServiceStatus -PoolFqdn pool01.contoso.com | ConvertTo-Json -Depth 5 -EnumsAsStrings\"]"
)]
pub struct EmptyCommand;

impl StatusCommand {
    /// A command with its argv and timeout. `argv[0]` is looked up on `PATH`.
    pub fn new(argv: Vec<String>, timeout: Duration) -> Result<Self, EmptyCommand> {
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(EmptyCommand);
        }
        Ok(Self {
            argv,
            timeout,
            pool: None,
            hidden_env: Vec::new(),
        })
    }

    /// Picks this pool (`PoolFqdn`) when the output lists several.
    pub fn with_pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// Removes these variables from the child's environment (the variables that carry the
    /// caller's passwords): the command inherits everything else, for its own remoting.
    pub fn without_env(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.hidden_env.extend(names);
        self
    }

    /// The argv.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn program(&self) -> String {
        self.argv[0].clone()
    }

    /// Runs the command once and parses what it printed.
    pub async fn run(&self) -> Result<ServiceStatus, GateError> {
        let (stdout, stderr) = self.output().await?;
        status::parse(&stdout, self.pool.as_deref()).map_err(|error| GateError::Output {
            program: self.program(),
            error,
            stderr,
        })
    }

    async fn output(&self) -> Result<(String, String), GateError> {
        tracing::debug!(argv = ?self.argv, "running the Backup Service status command");
        let mut command = tokio::process::Command::new(&self.argv[0]);
        for name in &self.hidden_env {
            command.env_remove(name);
        }
        let mut child = command
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| GateError::Spawn {
                program: self.program(),
                reason: e.to_string(),
            })?;
        let mut out = child.stdout.take().expect("piped stdout").take(MAX_STDOUT);
        let mut err = child.stderr.take().expect("piped stderr");
        let work = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let (o, e) = tokio::join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr));
            // A read error only loses output; the exit status still tells what happened.
            let _ = (o, e);
            let status = child.wait().await;
            (status, stdout, stderr)
        };
        let (status, stdout, stderr) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            // Dropping `work` drops the child, which `kill_on_drop` kills.
            Err(_) => {
                return Err(GateError::Timeout {
                    program: self.program(),
                    after: self.timeout,
                });
            }
        };
        let stderr = tail(&String::from_utf8_lossy(&stderr));
        let status = status.map_err(|e| GateError::Spawn {
            program: self.program(),
            reason: e.to_string(),
        })?;
        if !status.success() {
            return Err(GateError::Failed {
                program: self.program(),
                status: status.to_string(),
                stderr,
            });
        }
        Ok((String::from_utf8_lossy(&stdout).into_owned(), stderr))
    }
}

impl From<GateError> for BackupServiceError {
    fn from(e: GateError) -> Self {
        BackupServiceError {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// The planned failover's gate: each read runs the command once and picks the
/// [`CMS_MODULE`](crate::CMS_MODULE) from its output (a missing module is an error).
#[async_trait::async_trait]
impl BackupServiceGate for StatusCommand {
    fn describe(&self) -> Vec<String> {
        self.argv.clone()
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn cms_status(&self) -> Result<ModuleStatus, BackupServiceError> {
        let status = self.run().await?;
        match status.cms() {
            Ok(m) => Ok(m.clone()),
            Err(error) => Err(GateError::Output {
                program: self.program(),
                error,
                stderr: String::new(),
            }
            .into()),
        }
    }
}

/// The last [`MAX_STDERR`] bytes of `s`, on a character boundary.
fn tail(s: &str) -> String {
    if s.len() <= MAX_STDERR {
        return s.to_string();
    }
    let mut start = s.len() - MAX_STDERR;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}
