//! A throw-away Samba AD DC for the CLI's directory tests (`scripts/samba-dc.sh`): the SCP
//! pointing at the fixture's active store, LDAPS with a test CA, the Administrator's
//! password in a file. One per test binary, each on its own loopback address (the DC's ports
//! are fixed), stopped by its PID on drop.

use backend_fake::fixtures;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The SCP's attribute that names the CMS store.
pub const BACKEND_ATTR: &str = "msRTCSIP-BackEndServer";

/// A running Samba AD DC.
pub struct SambaDc {
    _dir: tempfile::TempDir,
    path: PathBuf,
    env: HashMap<String, String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/samba-dc.sh")
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a Samba DC can run here (root and the tools). Without, prints SKIPPED for `what`
/// and returns false, or panics under CI (`scripts/test-all.sh` installs what it needs).
pub fn available(what: &str) -> bool {
    let missing: Vec<_> = [
        "samba",
        "samba-tool",
        "ldbadd",
        "ldapsearch",
        "ldapmodify",
        "openssl",
    ]
    .into_iter()
    .filter(|t| !have(t))
    .collect();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if missing.is_empty() && root {
        return true;
    }
    skipped(what, &format!("missing tools {missing:?}, root: {root}"))
}

/// Prints SKIPPED for `what` because of `why` and returns false, or panics under CI
/// (`scripts/test-all.sh` installs what the tests need and runs them as root).
pub fn skipped(what: &str, why: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} cannot run under CI: {why} (scripts/test-all.sh installs what it needs)"
    );
    eprintln!("SKIPPED {what}: {why}");
    false
}

impl SambaDc {
    /// Provisions and starts a DC on `addr` (a 127.0.0.0/8 address of its own), the SCP
    /// naming the fixture's active store; `None` (SKIPPED) without root or the tools, or when
    /// another DC holds that address's LDAPS port outside CI.
    pub fn start(addr: &str, what: &str) -> Option<Self> {
        Self::start_with(addr, what, &[])
    }

    /// [`SambaDc::start`] with more variables for `samba-dc.sh` (e.g. `SQL_INSTANCES`: the
    /// `fqdn:port` service principals to register, their keys in `KRB5_KTNAME_SERVICE`).
    pub fn start_with(addr: &str, what: &str, env: &[(&str, &str)]) -> Option<Self> {
        if !available(what) {
            return None;
        }
        if std::net::TcpStream::connect((addr, 636)).is_ok() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{addr}:636 is taken: another LDAP server runs on this machine"
            );
            eprintln!("SKIPPED {what}: another LDAP server holds {addr}:636");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dc");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&path)
            .env("SCP_BACKEND", fixtures::active().to_string())
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
        Some(Self {
            _dir: dir,
            path,
            env,
        })
    }

    /// A variable of the DC's `env` file (`SAMBA_URL`, `SAMBA_CA`, …).
    pub fn var(&self, k: &str) -> &str {
        &self.env[k]
    }

    /// The Administrator's password (to check it appears nowhere).
    pub fn password(&self) -> String {
        std::fs::read_to_string(self.var("SAMBA_PASSWORD_FILE")).unwrap()
    }

    /// The topology's `[directory]` section for this DC, with `extra` lines (e.g.
    /// `domain_controllers = […]`).
    pub fn section(&self, extra: &str) -> String {
        self.section_with(
            self.var("SAMBA_URL"),
            self.var("SAMBA_PASSWORD_FILE"),
            extra,
        )
    }

    /// [`SambaDc::section`] with another URL and password file.
    pub fn section_with(&self, url: &str, password_file: &str, extra: &str) -> String {
        format!(
            "\n[directory]\nurl = \"{url}\"\nca_file = \"{}\"\nbind = \"simple\"\nuser = \"{}\"\npassword_file = \"{password_file}\"\n{extra}",
            self.var("SAMBA_CA"),
            self.var("SAMBA_USER"),
        )
    }

    /// The topology's `[directory]` section for this DC with the Kerberos bind: no user, no
    /// password.
    pub fn kerberos_section(&self, extra: &str) -> String {
        format!(
            "\n[directory]\nurl = \"{}\"\nca_file = \"{}\"\nbind = \"kerberos\"\n{extra}",
            self.var("SAMBA_URL"),
            self.var("SAMBA_CA"),
        )
    }

    /// The file behind a `FILE:` ticket cache or keytab variable (`KRB5CCNAME_USER`, …).
    pub fn file(&self, k: &str) -> PathBuf {
        PathBuf::from(self.var(k).trim_start_matches("FILE:"))
    }

    /// The SCP's `msRTCSIP-BackEndServer` as `ldapsearch -Y GSSAPI` reads it with the ticket
    /// cache `ccache` (an independent Kerberos LDAP client: OpenLDAP with Cyrus SASL's GSSAPI
    /// module; `-N`: the service name is the URL's host, as in our client; `maxssf=0`: no SASL
    /// security layer inside TLS).
    pub fn backend_gssapi(&self, ccache: &str) -> String {
        let out = Command::new("ldapsearch")
            .args(["-H", self.var("SAMBA_URL"), "-Y", "GSSAPI", "-N", "-Q"])
            .args(["-O", "maxssf=0", "-LLL", "-o", "ldif-wrap=no", "-s", "base"])
            .args([
                "-b",
                self.var("SAMBA_SCP_DN"),
                "(objectClass=*)",
                BACKEND_ATTR,
            ])
            .env("LDAPTLS_CACERT", self.var("SAMBA_CA"))
            .env("KRB5_CONFIG", self.var("KRB5_CONFIG"))
            .env("KRB5CCNAME", ccache)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        backend_of(&out, "ldapsearch -Y GSSAPI")
    }

    /// Runs an OpenLDAP client (`ldapsearch`, `ldapmodify`) with the Administrator's
    /// credentials over LDAPS (the password from its file through `-y`).
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

    /// The SCP's `msRTCSIP-BackEndServer` as an independent client (`ldapsearch`) reads it.
    pub fn backend(&self) -> String {
        let out = self.openldap(
            "ldapsearch",
            &[
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-b",
                self.var("SAMBA_SCP_DN"),
                "-s",
                "base",
                "(objectClass=*)",
                BACKEND_ATTR,
            ],
            None,
        );
        backend_of(&out, "ldapsearch")
    }

    /// The LDIF that replaces the SCP's store with `value`.
    pub fn replace_ldif(&self, value: &str) -> String {
        format!(
            "dn: {}\nchangetype: modify\nreplace: {BACKEND_ATTR}\n{BACKEND_ATTR}: {value}\n",
            self.var("SAMBA_SCP_DN")
        )
    }

    /// Points the SCP at `value` (behind the tool's back, with `ldapmodify`).
    pub fn set_backend(&self, value: &str) {
        let out = self.openldap("ldapmodify", &[], Some(&self.replace_ldif(value)));
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A `/bin/sh` snippet that points the SCP at `value` with `ldapmodify` (for a fake
    /// status command that changes the directory mid-run).
    pub fn set_backend_sh(&self, value: &str) -> String {
        format!(
            "LDAPTLS_CACERT='{}' ldapmodify -H '{}' -x -D '{}' -y '{}' >/dev/null <<'LDIF' || exit 99\n{}LDIF",
            self.var("SAMBA_CA"),
            self.var("SAMBA_URL"),
            self.var("SAMBA_USER"),
            self.var("SAMBA_PASSWORD_FILE"),
            self.replace_ldif(value)
        )
    }
}

/// The `msRTCSIP-BackEndServer` value in an `ldapsearch -LLL` output.
fn backend_of(out: &Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{BACKEND_ATTR}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {BACKEND_ATTR} in: {text}"))
        .to_string()
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
