//! The directory against a real Active Directory: Samba's AD DC, provisioned on loopback into
//! a temp dir by `scripts/samba-dc.sh` (schema extended with the Skype for Business service
//! control point), checked with OpenLDAP's `ldapsearch` / `ldapmodify` as the independent
//! client.
//!
//! One test, because the DC's ports are fixed: it runs the shared conformance suite, then the
//! transport and failure cases, with the simple bind; with the cargo feature `kerberos` the
//! suite runs again with the SASL GSSAPI bind (the DC's `cmsuser`, a ticket cache only, the
//! service principal `ldap/127.0.0.1` that `samba-dc.sh` registers on the DC), followed by
//! the Kerberos refusals (no ticket, an unregistered SPN, a principal without rights on the
//! SCP). Needs root and the Debian packages the README's test command installs; without them
//! it prints SKIPPED (and fails under `CI`).

use async_trait::async_trait;
use directory_ldap::{LdapConfig, LdapDirectory};
use failover_core::{CmsLocation, Directory, ErrorKind, Secret, SqlServerName};
use failover_testkit::directory::{DirectoryHarness, run_all, values};
#[cfg(feature = "kerberos")]
use std::path::PathBuf;
use std::process::{Command, Stdio};
use test_samba::SambaDc;

/// The Samba AD DC's address: `scripts/samba-dc.sh`'s default (the `lo` interface); the
/// certificate names it, and the DC has the SPN `ldap/127.0.0.1`.
const ADDR: &str = "127.0.0.1";

/// What this test needs of the shared DC: its directory configurations and a checked
/// OpenLDAP client.
trait Dc {
    fn config(&self) -> LdapConfig;
    #[cfg(feature = "kerberos")]
    fn kerberos_config(&self) -> LdapConfig;
    fn ldap(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> String;
}

impl Dc for SambaDc {
    fn config(&self) -> LdapConfig {
        let mut c = LdapConfig::new(
            self.var("SAMBA_URL"),
            self.var("SAMBA_USER"),
            Secret::new(self.password()),
        );
        c.ca_file = Some(self.var("SAMBA_CA").into());
        c
    }

    /// The same DC with the Kerberos bind (the process's ticket cache, `KRB5CCNAME`).
    #[cfg(feature = "kerberos")]
    fn kerberos_config(&self) -> LdapConfig {
        let mut c = LdapConfig::kerberos(self.var("SAMBA_URL"));
        c.ca_file = Some(self.var("SAMBA_CA").into());
        c
    }

    /// `ldapsearch` / `ldapmodify` with the admin credentials over LDAPS; asserts it
    /// succeeded and returns its stdout.
    fn ldap(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.openldap(tool, args, stdin);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

struct Harness<'a> {
    dc: &'a SambaDc,
    dir: LdapDirectory,
}

#[async_trait]
impl DirectoryHarness for Harness<'_> {
    fn directory(&self) -> &dyn Directory {
        &self.dir
    }

    async fn set_behind_our_back(&self, v: &CmsLocation) {
        let mut ldif = format!(
            "dn: {}\nchangetype: modify\nreplace: msRTCSIP-BackEndServer\nmsRTCSIP-BackEndServer: {}\n-\n",
            self.dc.var("SAMBA_SCP_DN"),
            v.backend
        );
        match &v.mirror {
            Some(m) => ldif.push_str(&format!(
                "replace: msRTCSIP-MirrorBackEndServer\nmsRTCSIP-MirrorBackEndServer: {m}\n-\n"
            )),
            None => ldif.push_str("replace: msRTCSIP-MirrorBackEndServer\n-\n"),
        }
        self.dc.ldap("ldapmodify", &[], Some(&ldif));
    }

    async fn read_independently(&self) -> CmsLocation {
        let out = self.dc.ldap(
            "ldapsearch",
            &[
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-b",
                self.dc.var("SAMBA_SCP_DN"),
                "-s",
                "base",
                "msRTCSIP-BackEndServer",
                "msRTCSIP-MirrorBackEndServer",
            ],
            None,
        );
        let get = |attr: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{attr}: ")))
                .map(|v| SqlServerName::parse(v.trim()).unwrap())
        };
        CmsLocation {
            backend: get("msRTCSIP-BackEndServer").expect("a back end value"),
            mirror: get("msRTCSIP-MirrorBackEndServer"),
        }
    }
}

#[test]
fn samba_active_directory() {
    if !test_samba::available("samba directory test", &[], &[]) {
        return;
    }
    let dc = SambaDc::start(ADDR, &[]);
    // No ticket yet: the Kerberos part first checks the refusal without one.
    #[cfg(feature = "kerberos")]
    let empty_ccache = dc.path().join("empty.ccache");
    // SAFETY: before the runtime (or any other thread of this test) starts; this binary has
    // one test. The GSSAPI library reads these from the environment.
    #[cfg(feature = "kerberos")]
    unsafe {
        std::env::set_var("KRB5_CONFIG", dc.var("KRB5_CONFIG"));
        std::env::set_var("KRB5CCNAME", format!("FILE:{}", empty_ccache.display()));
        std::env::remove_var("KRB5_CLIENT_KTNAME");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The shared suite, the SCP found by searching (no scp_dn given).
        let h = Harness {
            dc: &dc,
            dir: LdapDirectory::new(dc.config()).unwrap(),
        };
        run_all(&h).await;
        let [a, b, _] = values();
        h.set_behind_our_back(&a).await;

        // Found under the configuration naming context, then shown in the what-if LDIF.
        let ldif = h.dir.describe_swap(&a, &b).join("\n");
        assert!(
            ldif.contains(&format!("dn: {}", dc.var("SAMBA_SCP_DN")))
                && ldif.contains("delete: msRTCSIP-BackEndServer"),
            "{ldif}"
        );

        // StartTLS on 389, and a second DC URL read back (the same DC here).
        let mut c = dc.config();
        c.url = dc.var("SAMBA_STARTTLS_URL").into();
        c.starttls = true;
        c.domain_controllers = vec![dc.var("SAMBA_URL").into()];
        let st = LdapDirectory::new(c).unwrap();
        for url in st.domain_controllers() {
            assert_eq!(st.read(&url).await.unwrap(), a, "{url}");
        }

        // A wrong password is refused as a permission error and changes nothing.
        let c = LdapConfig {
            bind: directory_ldap::LdapBind::Simple {
                user: dc.var("SAMBA_USER").into(),
                password: Secret::new("not-the-password"),
            },
            ..dc.config()
        };
        let bad = LdapDirectory::new(c).unwrap();
        let e = bad
            .compare_and_swap(dc.var("SAMBA_URL"), &a, &b)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permission, "{e}");
        assert!(e.message.contains("49"), "{e}");
        assert!(!e.to_string().contains("not-the-password"));
        assert_eq!(h.read_independently().await, a);

        // A CA that did not sign the DC's certificate: refused, says what to set.
        let other = dc.path().join("other-ca");
        std::fs::create_dir_all(&other).unwrap();
        let st = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=someone else's CA", "-keyout"])
            .arg(other.join("k.pem"))
            .arg("-out")
            .arg(other.join("ca.pem"))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let mut c = dc.config();
        c.ca_file = Some(other.join("ca.pem"));
        let e = LdapDirectory::new(c)
            .unwrap()
            .read(dc.var("SAMBA_URL"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Fatal, "{e}");
        assert!(e.message.contains("ca_file"), "{e}");

        // The certificate names localhost and 127.0.0.1, not this name.
        let mut c = dc.config();
        c.url = "ldaps://127.0.0.2".into();
        let e = LdapDirectory::new(c)
            .unwrap()
            .read("ldaps://127.0.0.2")
            .await
            .unwrap_err();
        assert!(
            e.kind == ErrorKind::Fatal || e.kind == ErrorKind::Unreachable,
            "{e}"
        );

        // An unreachable DC.
        let e = h.dir.read("ldaps://127.0.0.1:1").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");

        // A hostile SCP DN is only ever a search base: nothing found, nothing changed.
        let mut c = dc.config();
        c.scp_dn = Some("CN=x)(objectClass=*),DC=cms,DC=test".into());
        let e = LdapDirectory::new(c)
            .unwrap()
            .compare_and_swap(dc.var("SAMBA_URL"), &a, &b)
            .await
            .unwrap_err();
        assert_ne!(e.kind, ErrorKind::Timeout, "{e}");
        assert_eq!(h.read_independently().await, a);

        #[cfg(feature = "kerberos")]
        kerberos(&dc, &h).await;
    });
}

/// The conformance suite and the refusals with the SASL GSSAPI bind.
#[cfg(feature = "kerberos")]
async fn kerberos(dc: &SambaDc, simple: &Harness<'_>) {
    let url = dc.var("SAMBA_URL");
    let [a, b, _] = values();
    simple.set_behind_our_back(&a).await;

    // A Kerberos-bound swap from `a` to `b` is refused as a permission error whose message
    // has `needle`, and the SCP still holds `a`.
    let (a_, b_) = (&a, &b);
    let refused = |needle: &'static str| async move {
        let e = LdapDirectory::new(dc.kerberos_config())
            .unwrap()
            .compare_and_swap(url, a_, b_)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permission, "{e}");
        assert!(e.message.contains(needle), "{e}");
        assert_eq!(&simple.read_independently().await, a_);
    };
    // No ticket: refused before any bind, says `kinit`.
    refused("kinit").await;
    // A principal the SCP's ACL does not admit: the bind works, the swap is refused (50).
    let intruder = use_ccache(dc, "KRB5CCNAME_INTRUDER", "intruder");
    refused("(50)").await;
    drop(intruder);

    // The suite, bound as cmsuser with its ticket cache only.
    let _user = use_ccache(dc, "KRB5CCNAME_USER", "cmsuser");
    let h = Harness {
        dc,
        dir: LdapDirectory::new(dc.kerberos_config()).unwrap(),
    };
    run_all(&h).await;

    // StartTLS with Kerberos too.
    let mut c = dc.kerberos_config();
    c.url = dc.var("SAMBA_STARTTLS_URL").into();
    c.starttls = true;
    h.set_behind_our_back(&a).await;
    assert_eq!(
        LdapDirectory::new(c)
            .unwrap()
            .read(dc.var("SAMBA_STARTTLS_URL"))
            .await
            .unwrap(),
        a
    );

    // A name the DC has no SPN for (the certificate names localhost): says which to register.
    let mut c = dc.kerberos_config();
    c.url = "ldaps://localhost".into();
    let e = LdapDirectory::new(c)
        .unwrap()
        .compare_and_swap("ldaps://localhost", &a, &b)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permission, "{e}");
    assert!(e.message.contains("setspn -S ldap/localhost "), "{e}");
    assert_eq!(h.read_independently().await, a);
}

/// Points `KRB5CCNAME` at a fresh copy of the DC's ticket cache `var` (so service tickets
/// cached by one part do not serve another).
#[cfg(feature = "kerberos")]
fn use_ccache(dc: &SambaDc, var: &str, name: &str) -> PathBuf {
    let to = dc.path().join(format!("{name}-copy.ccache"));
    let cc = dc.ccache_copy(var, &to);
    // SAFETY: the runtime is single-threaded and no GSSAPI call is running; the blocking
    // pool's threads are idle between the preflights.
    unsafe { std::env::set_var("KRB5CCNAME", cc) };
    to
}
