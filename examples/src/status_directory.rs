//! The directory (Active Directory's service control point, where Skype for Business servers
//! find the CMS) in the CLI: built from the topology's `[directory]`, read on every domain
//! controller for `status` (what `Get-CsConfigurationStoreLocation` shows), compared with the
//! SQL location record, and handed to the driver through [`attach_directory`].

use crate::config::Config;
use crate::failure::Failure;
use crate::sections::{DirectoryBind, DirectoryConfig};
use crate::status::StatusDoc;
use failover_core::{CmsLocation, Directory, Driver, Secret, Topology};
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// A directory and its bind password (kept to scrub it from every output; `None` for the
/// Kerberos bind, which has none).
pub type Built = (Arc<dyn Directory>, Option<Secret>);

/// The directory of `cfg` and its bind password (for redaction), or `None` without a
/// `[directory]` section. Reads the password and the CA file now; connects to nothing. A
/// Kerberos bind in a build without the `kerberos` feature is bad input (exit 2).
pub fn build(cfg: &Config) -> Result<Option<Built>, Failure> {
    let Some(d) = &cfg.sections.directory else {
        return Ok(None);
    };
    build_ldap(d, cfg.settings.step_timeout).map(Some)
}

fn build_ldap(d: &DirectoryConfig, timeout: Duration) -> Result<Built, Failure> {
    let (mut lc, password) = match &d.bind {
        DirectoryBind::Simple { user, password } => {
            let password = password.load().map_err(|e| {
                Failure::usage(
                    e.to_string().replace("SQL login's", "directory bind"),
                    format!(
                        "provide the directory bind password through the {} named in the topology's [directory]",
                        password.describe()
                    ),
                )
            })?;
            let lc = directory_ldap::LdapConfig::new(d.url.clone(), user.clone(), password.clone());
            (lc, Some(password))
        }
        DirectoryBind::Kerberos if !cfg!(feature = "kerberos") => {
            return Err(Failure::usage(
                "[directory] bind = \"kerberos\" but this build of cms-failover has no Kerberos support for the directory",
                "rebuild with `cargo build --release -p examples --features kerberos` (needs libkrb5-dev, clang and libclang-dev), or use bind = \"simple\" with user and password_env or password_file",
            ));
        }
        DirectoryBind::Kerberos => (directory_ldap::LdapConfig::kerberos(d.url.clone()), None),
    };
    lc.starttls = d.starttls;
    lc.ca_file = d.ca_file.clone();
    lc.scp_dn = d.scp_dn.clone();
    lc.domain_controllers = d.domain_controllers.clone();
    lc.timeout = d.timeout.unwrap_or(timeout);
    let dir = directory_ldap::LdapDirectory::new(lc).map_err(|e| {
        Failure::usage(
            format!("invalid [directory]: {e}"),
            "fix the topology's [directory] section (see examples/README.md)",
        )
    })?;
    Ok((Arc::new(dir), password))
}

/// Hands the topology's directory to the driver: its compare-and-swap is then the run's
/// commit point (`Driver::with_directory`); without one the SQL record is the directory.
pub fn attach_directory(driver: Driver, dir: Option<Arc<dyn Directory>>) -> Driver {
    match dir {
        Some(d) => driver.with_directory(d),
        None => driver,
    }
}

/// What one domain controller says.
#[derive(Debug, Clone, Serialize)]
pub struct DcValue {
    /// The DC.
    pub dc: String,
    /// Its value (`BackEndServer`, `MirrorBackEndServer`), when read.
    pub value: Option<CmsLocation>,
    /// Why it could not be read.
    pub error: Option<String>,
    /// Whether it names the store of the SQL location record (`None`: either is unknown).
    pub agrees_with_record: Option<bool>,
}

/// The directory in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryStatus {
    /// `ldap`, `fake`, …
    pub directory: String,
    /// Every DC, the one changes go to first.
    pub domain_controllers: Vec<DcValue>,
    /// Disagreements (with the SQL record, between DCs) and unreadable DCs.
    pub warnings: Vec<String>,
}

/// Reads the value on every DC of `dir` (each within `timeout`) and compares it with the
/// SQL record of `doc`. Read-only.
pub async fn gather(dir: &dyn Directory, doc: &StatusDoc, timeout: Duration) -> DirectoryStatus {
    let record = doc.active.as_ref().map(|a| &a.record.active);
    let mut dcs = Vec::new();
    let mut warnings = Vec::new();
    // One DC after the other: a handful of DCs, each bounded by `timeout`.
    for dc in dir.domain_controllers() {
        let r = match tokio::time::timeout(timeout, dir.read(&dc)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        match r {
            Ok(v) => {
                let agrees = record.map(|s| v.points_at(s));
                if agrees == Some(false) {
                    warnings.push(format!(
                        "DISAGREEMENT: the directory on {dc} points Skype for Business servers at {v}, but the SQL location record says the CMS is active on {}",
                        record.expect("known")
                    ));
                }
                dcs.push(DcValue {
                    dc,
                    value: Some(v),
                    error: None,
                    agrees_with_record: agrees,
                });
            }
            Err(e) => {
                warnings.push(format!("the directory cannot be read on {dc}: {e}"));
                dcs.push(DcValue {
                    dc,
                    value: None,
                    error: Some(e),
                    agrees_with_record: None,
                });
            }
        }
    }
    let values: Vec<&CmsLocation> = dcs.iter().filter_map(|d| d.value.as_ref()).collect();
    if values.windows(2).any(|w| w[0] != w[1]) {
        warnings.push(
            "the domain controllers disagree (Active Directory replication has not converged yet): see each DC's value".into(),
        );
    }
    DirectoryStatus {
        directory: dir.name().to_string(),
        domain_controllers: dcs,
        warnings,
    }
}

/// The directory as text: one line per DC, then the warnings.
pub fn render_text(d: &DirectoryStatus) -> String {
    let mut o = format!(
        "Directory ({}): where Skype for Business servers find the CMS\n",
        d.directory
    );
    for v in &d.domain_controllers {
        let mark = match v.agrees_with_record {
            Some(true) => "  (matches the SQL record)",
            Some(false) => "  <- DISAGREES with the SQL record",
            None => "",
        };
        match (&v.value, &v.error) {
            (Some(val), _) => {
                let _ = writeln!(o, "  {}: BackEndServer {}{mark}", v.dc, describe(val));
            }
            (None, e) => {
                let _ = writeln!(o, "  {}: unreadable: {}", v.dc, e.as_deref().unwrap_or("?"));
            }
        }
    }
    for w in &d.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

fn describe(v: &CmsLocation) -> String {
    match &v.mirror {
        Some(m) => format!("{}, MirrorBackEndServer {m}", v.backend),
        None => v.backend.to_string(),
    }
}

/// Before a run: what the directory says on its first DC, and whether that is the
/// topology's active store (the cmdlet refuses when "the Central Management Store database in
/// Active Directory doesn't match the one in the topology").
pub async fn preflight_lines(
    dir: &dyn Directory,
    topology: &Topology,
    timeout: Duration,
) -> Vec<String> {
    let Some(dc) = dir.domain_controllers().into_iter().next() else {
        return vec!["directory: no domain controller configured".into()];
    };
    match tokio::time::timeout(timeout, dir.read(&dc)).await {
        Ok(Ok(v)) if v.points_at(&topology.active) => vec![format!(
            "directory ({}) on {dc}: BackEndServer {} (the topology's active store)",
            dir.name(),
            describe(&v)
        )],
        Ok(Ok(v)) => vec![format!(
            "warning: the directory ({}) on {dc} points at {}, not at the topology's active store {}",
            dir.name(),
            describe(&v),
            topology.active
        )],
        Ok(Err(e)) => vec![format!("warning: the directory cannot be read: {e}")],
        Err(_) => vec![format!(
            "warning: the directory on {dc} did not answer within {timeout:?}"
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_fake::fixtures;
    use backend_fake::{FakeBackend, FakeDirectory};

    #[tokio::test]
    async fn status_shows_each_dc_and_flags_disagreement_with_the_record() {
        let fx = fixtures::build(&fixtures::Options::default());
        let backend = FakeBackend::new(fx.estate.clone());
        let doc = crate::status::gather(&backend, &fx.topology, &[], Duration::from_secs(5)).await;
        let record_store = doc
            .active
            .as_ref()
            .expect("the fixture records A")
            .record
            .active
            .clone();
        let dir = FakeDirectory::new(CmsLocation::of_store(&record_store), 2);
        let s = gather(&dir, &doc, Duration::from_secs(5)).await;
        assert_eq!(s.domain_controllers.len(), 2);
        assert!(
            s.domain_controllers
                .iter()
                .all(|d| d.agrees_with_record == Some(true))
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);

        // Someone points dc02 at the backup store: it disagrees with the record and with dc01.
        dir.change_behind_our_back("dc02.cms.test", CmsLocation::of_store(&fx.topology.backup));
        let s = gather(&dir, &doc, Duration::from_secs(5)).await;
        assert_eq!(s.domain_controllers[1].agrees_with_record, Some(false));
        let text = render_text(&s);
        assert!(
            text.contains("dc02.cms.test: BackEndServer") && text.contains("DISAGREES"),
            "{text}"
        );
        assert!(
            s.warnings.iter().any(|w| w.contains("replication")),
            "{:?}",
            s.warnings
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["domain_controllers"][1]["agrees_with_record"], false);

        // An unreachable DC is reported with its error.
        dir.set_fault(
            "dc01.cms.test",
            Some(backend_fake::DirectoryFault::Unreachable),
        );
        let s = gather(&dir, &doc, Duration::from_secs(5)).await;
        assert!(s.domain_controllers[0].error.is_some());
        let lines = preflight_lines(&dir, &fx.topology, Duration::from_secs(5)).await;
        assert!(
            lines[0].starts_with("warning: the directory cannot be read"),
            "{lines:?}"
        );
        dir.set_fault("dc01.cms.test", None);
        let lines = preflight_lines(&dir, &fx.topology, Duration::from_secs(5)).await;
        assert!(
            lines[0].contains("the topology's active store"),
            "{lines:?}"
        );
    }
}
