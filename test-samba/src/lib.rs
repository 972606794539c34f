//! A throw-away Samba AD DC for tests: `scripts/samba-dc.sh` provisions the realm `CMS.TEST`
//! (the Skype for Business service control point included) into a temp dir, starts it on a
//! loopback address of its own and writes its `env` file; [`SambaDc`] reads that file and
//! stops the DC by its PID when dropped.
//!
//! The DC's ports (LDAP 389/636, the KDC's 88) are fixed, so each test binary that starts one
//! uses its own address in 127.0.0.0/8 and starts one DC.
//!
//! The skip policy ([`available`], [`skipped`]): a test that cannot run here (not root, a
//! tool or a cargo feature missing) prints `SKIPPED <what>: <why>` and passes, except under
//! `CI` (any value), where it fails: `scripts/test-all.sh` installs every package the tests
//! need and runs them as root with `--all-features`.
//!
//! ```no_run
//! let kdc_free = std::net::TcpStream::connect("127.0.0.45:88").is_err();
//! if test_samba::available("my test", &["kvno"], &[("KDC port 88 free", kdc_free)]) {
//!     let dc = test_samba::SambaDc::start("127.0.0.45", &[]);
//!     let url = dc.var("SAMBA_URL");
//!     # let _ = url;
//! }
//! ```
#![warn(missing_docs)]

use std::collections::HashMap;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The tools `scripts/samba-dc.sh` and the OpenLDAP client helpers run (Debian packages
/// samba-ad-dc, samba, ldb-tools, ldap-utils, openssl, krb5-user).
pub const DC_TOOLS: &[&str] = &[
    "samba",
    "samba-tool",
    "ldbadd",
    "ldapsearch",
    "ldapmodify",
    "openssl",
    "kinit",
];

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs as root (the DC binds privileged ports).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Prints `SKIPPED <what>: <why>` and returns false; under `CI` panics instead
/// (`scripts/test-all.sh` installs what the tests need and runs them as root).
pub fn skipped(what: &str, why: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} cannot run under CI: {why} (scripts/test-all.sh installs the packages and runs \
         the tests as root with --all-features)"
    );
    eprintln!("SKIPPED {what}: {why}");
    false
}

/// Whether the test `what` can run here: root, the [`DC_TOOLS`] and `extra_tools` on the
/// PATH, and every `(name, ok)` of `also` ok (cargo features, a free port, …). Otherwise
/// [`skipped`] says why (and panics under `CI`).
pub fn available(what: &str, extra_tools: &[&str], also: &[(&str, bool)]) -> bool {
    let missing: Vec<&str> = DC_TOOLS
        .iter()
        .chain(extra_tools)
        .copied()
        .filter(|t| !have(t))
        .collect();
    let root = is_root();
    if missing.is_empty() && root && also.iter().all(|(_, ok)| *ok) {
        return true;
    }
    let mut why = format!("missing tools {missing:?}, root: {root}");
    for (name, ok) in also {
        why.push_str(&format!(", {name}: {ok}"));
    }
    skipped(what, &why)
}

/// `scripts/samba-dc.sh` in this workspace.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/samba-dc.sh")
}

/// A running Samba AD DC in a temp dir, stopped by its PID (`samba-dc.sh stop`) on drop.
pub struct SambaDc {
    _dir: tempfile::TempDir,
    path: PathBuf,
    env: HashMap<String, String>,
}

impl SambaDc {
    /// Provisions and starts a DC on `addr` (an address in 127.0.0.0/8 no other DC uses),
    /// `env` passed to `samba-dc.sh` (e.g. `SQL_INSTANCES`, `SCP_BACKEND`); panics with the
    /// script's output when it fails. Check [`available`] first.
    pub fn start(addr: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dc");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&path)
            .env("SAMBA_ADDR", addr)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "samba-dc.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(path.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            _dir: dir,
            path,
            env,
        }
    }

    /// The DC's directory (removed with the DC); a place for a test's own files too.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A variable of the DC's `env` file (`SAMBA_URL`, `SAMBA_CA`, `KRB5_CONFIG`, …; the
    /// list is in `scripts/samba-dc.sh`).
    pub fn var(&self, k: &str) -> &str {
        &self.env[k]
    }

    /// The file behind a `FILE:` ticket cache or keytab variable (`KRB5CCNAME_USER`, …).
    pub fn file(&self, k: &str) -> PathBuf {
        PathBuf::from(self.var(k).trim_start_matches("FILE:"))
    }

    /// The Administrator's password (to check it appears nowhere).
    pub fn password(&self) -> String {
        std::fs::read_to_string(self.var("SAMBA_PASSWORD_FILE")).unwrap()
    }

    /// A Kerberos client's environment with the ticket cache `ccache`: the DC's
    /// `KRB5_CONFIG` and `KRB5CCNAME`.
    pub fn krb5_env<'a>(&'a self, ccache: &'a str) -> [(&'static str, &'a str); 2] {
        [
            ("KRB5CCNAME", ccache),
            ("KRB5_CONFIG", self.var("KRB5_CONFIG")),
        ]
    }

    /// Sets this process's environment for a GSSAPI acceptor (an in-process simulator):
    /// `KRB5_CONFIG`, `KRB5_KTNAME` the DC's service keytab, no `KRB5CCNAME`.
    ///
    /// # Safety
    /// As [`std::env::set_var`]: no other thread may read or write the environment
    /// meanwhile (call it before any runtime or other thread of the test starts).
    pub unsafe fn set_acceptor_env(&self) {
        // SAFETY: the caller's.
        unsafe {
            std::env::set_var("KRB5_CONFIG", self.var("KRB5_CONFIG"));
            std::env::set_var("KRB5_KTNAME", self.var("KRB5_KTNAME_SERVICE"));
            std::env::remove_var("KRB5CCNAME");
        }
    }

    /// A fresh copy of the DC's ticket cache `var` (`KRB5CCNAME_USER`, …) at `to`, as a
    /// `FILE:` name (so service tickets one part caches do not serve another).
    pub fn ccache_copy(&self, var: &str, to: &Path) -> String {
        ccache_copy(&self.file(var), to)
    }

    /// Fills the ticket cache `ccache` (a `FILE:` name) with a ticket-granting ticket for
    /// the DC's `cmsuser` from its keytab, valid for `lifetime` (`kinit -l`, e.g. `5s`).
    pub fn kinit_user(&self, ccache: &str, lifetime: &str) {
        let keytab = self
            .file("KRB5CCNAME_USER")
            .with_file_name("cmsuser.keytab");
        let st = Command::new("kinit")
            .args(["-l", lifetime, "-k", "-t"])
            .arg(&keytab)
            .args(["-c", ccache, self.var("KRB5_USER_PRINCIPAL")])
            .env("KRB5_CONFIG", self.var("KRB5_CONFIG"))
            .status()
            .unwrap();
        assert!(st.success(), "kinit -l {lifetime}");
    }

    /// Runs an OpenLDAP client (`ldapsearch`, `ldapmodify`) with the Administrator's
    /// credentials over LDAPS (the password from its file through `-y`), `stdin` written to
    /// it.
    pub fn openldap(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(tool)
            .args([
                "-H",
                self.var("SAMBA_URL"),
                "-x",
                "-D",
                self.var("SAMBA_USER"),
            ])
            .args(["-y", self.var("SAMBA_PASSWORD_FILE")])
            .args(args)
            .env("LDAPTLS_CACERT", self.var("SAMBA_CA"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.path)
            .status();
    }
}

/// A fresh copy of the ticket cache file `from` at `to`, as a `FILE:` name.
pub fn ccache_copy(from: &Path, to: &Path) -> String {
    std::fs::copy(from, to).unwrap();
    format!("FILE:{}", to.display())
}

/// A ticket cache at `to` holding service tickets for `spns` and no ticket-granting ticket,
/// made from `from` (which has one), as a `FILE:` name: `kvno` fetches and caches each
/// service ticket, then the TGT's entries are renamed (`krbtgt` → `krbtgx`, same length, so
/// the file stays valid), so any other service finds no TGT: "no ticket".
pub fn ccache_without_tgt(from: &Path, to: &Path, spns: &[&str], krb5_config: &str) -> String {
    let cc = ccache_copy(from, to);
    let st = Command::new("kvno")
        .args(["-c", &cc])
        .args(spns)
        .env("KRB5_CONFIG", krb5_config)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "kvno {spns:?}");
    let mut bytes = std::fs::read(to).unwrap();
    let mut renamed = 0;
    for i in 0..bytes.len().saturating_sub(6) {
        if &bytes[i..i + 6] == b"krbtgt" {
            bytes[i + 5] = b'x';
            renamed += 1;
        }
    }
    assert!(renamed > 0, "no TGT in {}", to.display());
    std::fs::write(to, bytes).unwrap();
    // Only the services asked for are left.
    let st = Command::new("kvno")
        .args(["-c", &cc])
        .args(spns)
        .env("KRB5_CONFIG", krb5_config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "the service tickets survive: kvno {spns:?}");
    cc
}

/// Runs `cmd` to the end, `stdin` written to it (closed when `None`), stdout and stderr
/// piped; a child that has not exited within `bound` is killed and returned as `Err` (the
/// message names `what` and holds what it printed). Both pipes are drained while waiting: a
/// child that writes more than a pipe buffer (64 KiB, e.g. a disaster recovery's `--json`
/// document) would otherwise block in `write` forever, and look hung, while the parent waits
/// for its exit.
pub fn output_within(
    cmd: &mut Command,
    stdin: Option<&str>,
    bound: Duration,
    what: &str,
) -> Result<Output, String> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let writer = stdin.map(|s| {
        let mut pipe = child.stdin.take().unwrap();
        let s = s.to_string();
        // Its own thread, so a child that prints before it reads cannot block us; dropping
        // the pipe closes its stdin.
        std::thread::spawn(move || {
            let _ = pipe.write_all(s.as_bytes());
        })
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    if let Some(w) = writer {
        let _ = w.join();
    }
    let Some(status) = status else {
        return Err(format!(
            "{what} did not exit within {bound:?} (killed):\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ));
    };
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// A child process killed (and reaped) on drop, so a failing test leaves nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_within_feeds_stdin_and_drains_more_than_a_pipe_buffer() {
        // 256 KiB on stdout, more than a pipe holds, after reading stdin.
        let out = output_within(
            Command::new("sh").args(["-c", "cat; head -c 262144 /dev/zero"]),
            Some("hello\n"),
            Duration::from_secs(60),
            "sh",
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(&out.stdout[..6], b"hello\n");
        assert_eq!(out.stdout.len(), 6 + 262_144);
    }

    #[test]
    fn output_within_kills_a_child_past_its_bound() {
        let e = output_within(
            Command::new("sh").args(["-c", "echo started; exec sleep 600"]),
            None,
            Duration::from_millis(300),
            "the sleeper",
        )
        .unwrap_err();
        assert!(e.contains("the sleeper did not exit within"), "{e}");
        assert!(e.contains("started"), "{e}");
    }

    #[test]
    fn a_missing_tool_is_missing() {
        assert!(have("sh"));
        assert!(!have("no-such-tool-cms-failover"));
    }

    #[test]
    fn without_ci_an_unavailable_test_skips() {
        if std::env::var_os("CI").is_some() {
            // Under CI the same call must panic.
            let r =
                std::panic::catch_unwind(|| available("x", &["no-such-tool-cms-failover"], &[]));
            assert!(r.is_err());
        } else {
            assert!(!available("x", &["no-such-tool-cms-failover"], &[]));
            assert!(!available("x", &[], &[("feature y", false)]));
        }
    }
}
