//! A throw-away Samba AD DC for the CLI's directory tests (`scripts/samba-dc.sh`): the SCP
//! pointing at the fixture's active store, LDAPS with a test CA, the Administrator's
//! password in a file. One per test binary, each on its own loopback address (the DC's ports
//! are fixed), stopped by its PID on drop.

use backend_fake::fixtures;
use std::process::{Command, Output, Stdio};

/// The SCP's attribute that names the CMS store.
pub const BACKEND_ATTR: &str = "msRTCSIP-BackEndServer";

/// A running Samba AD DC ([`test_samba::SambaDc`]) with the CLI tests' view of its SCP.
pub struct SambaDc(test_samba::SambaDc);

impl std::ops::Deref for SambaDc {
    type Target = test_samba::SambaDc;
    fn deref(&self) -> &test_samba::SambaDc {
        &self.0
    }
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
        if !test_samba::available(what, &[], &[]) {
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
        let backend = fixtures::active().to_string();
        let mut env = env.to_vec();
        env.insert(0, ("SCP_BACKEND", &backend));
        Some(Self(test_samba::SambaDc::start(addr, &env)))
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
            .envs(self.krb5_env(ccache))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        backend_of(&out, "ldapsearch -Y GSSAPI")
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
