//! The service control point: finding it, reading it, and the modify that swaps it.

use crate::classify;
use failover_core::{CmsLocation, DirectoryError, DirectoryOperation, ErrorKind, SqlServerName};
use ldap3::{Ldap, Mod, Scope, SearchEntry};
use std::collections::HashSet;

/// The SCP's object class.
pub const SCP_CLASS: &str = "msRTCSIP-GlobalTopologySetting";
/// Where the CMS store is: `fqdn\instance`.
pub const ATTR_BACKEND: &str = "msRTCSIP-BackEndServer";
/// The CMS store's mirror, when mirrored.
pub const ATTR_MIRROR: &str = "msRTCSIP-MirrorBackEndServer";

fn filter() -> String {
    format!("(objectClass={})", ldap3::ldap_escape(SCP_CLASS))
}

async fn search(
    ldap: &mut Ldap,
    dc: &str,
    op: DirectoryOperation,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> Result<Vec<SearchEntry>, DirectoryError> {
    let res = ldap
        .search(base, scope, filter, attrs.to_vec())
        .await
        .map_err(|e| classify::error(op, dc, e))?;
    let (entries, result) = (res.0, res.1);
    // 32 (noSuchObject) under a search base means "nothing there".
    if result.rc == 32 {
        return Ok(Vec::new());
    }
    classify::result(op, dc, result, "search")?;
    // Referrals (AD returns one for the schema partition) are not entries.
    Ok(entries
        .into_iter()
        .filter(|e| !e.is_ref() && !e.is_intermediate())
        .map(SearchEntry::construct)
        .collect())
}

fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

/// Finds the SCP under the configuration naming context, then under the root domain's
/// `CN=System` (older forests). Exactly one must exist.
pub(crate) async fn find(
    ldap: &mut Ldap,
    dc: &str,
    op: DirectoryOperation,
) -> Result<String, DirectoryError> {
    let root = search(
        ldap,
        dc,
        op,
        "",
        Scope::Base,
        "(objectClass=*)",
        &["configurationNamingContext", "rootDomainNamingContext"],
    )
    .await?;
    let root = root.first().ok_or_else(|| {
        DirectoryError::new(ErrorKind::Fatal, op, dc, "the DC returned no RootDSE")
    })?;
    let mut bases = Vec::new();
    if let Some(c) = first(root, "configurationNamingContext") {
        bases.push(c);
    }
    if let Some(d) = first(root, "rootDomainNamingContext") {
        bases.push(format!("CN=System,{d}"));
    }
    if bases.is_empty() {
        return Err(DirectoryError::new(
            ErrorKind::Fatal,
            op,
            dc,
            "the RootDSE names no configurationNamingContext: is this an Active Directory domain controller?",
        ));
    }
    let mut found = Vec::new();
    for base in &bases {
        found = search(ldap, dc, op, base, Scope::Subtree, &filter(), &["1.1"])
            .await?
            .into_iter()
            .map(|e| e.dn)
            .collect();
        if !found.is_empty() {
            break;
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DirectoryError::new(
            ErrorKind::InvalidState,
            op,
            dc,
            format!(
                "no {SCP_CLASS} object under {}: is Skype for Business / Lync deployed in this forest? Give its DN as the directory's scp_dn if it lives elsewhere",
                bases.join(" or ")
            ),
        )),
        n => Err(DirectoryError::new(
            ErrorKind::InvalidState,
            op,
            dc,
            format!(
                "{n} {SCP_CLASS} objects found ({}): set the directory's scp_dn to the one Skype for Business uses",
                found.join("; ")
            ),
        )),
    }
}

/// Reads the SCP's values.
pub(crate) async fn read(
    ldap: &mut Ldap,
    dc: &str,
    op: DirectoryOperation,
    dn: &str,
) -> Result<CmsLocation, DirectoryError> {
    let entries = search(
        ldap,
        dc,
        op,
        dn,
        Scope::Base,
        &filter(),
        &[ATTR_BACKEND, ATTR_MIRROR],
    )
    .await?;
    let e = entries.first().ok_or_else(|| {
        DirectoryError::new(
            ErrorKind::InvalidState,
            op,
            dc,
            format!("`{dn}` is not a {SCP_CLASS} object on this DC"),
        )
    })?;
    let parse = |attr: &str, v: &str| {
        SqlServerName::parse(v).map_err(|err| {
            DirectoryError::new(
                ErrorKind::InvalidState,
                op,
                dc,
                format!("{attr} of `{dn}` holds `{v}`, which is not fqdn\\instance: {err}"),
            )
        })
    };
    let backend = first(e, ATTR_BACKEND).ok_or_else(|| {
        DirectoryError::new(
            ErrorKind::InvalidState,
            op,
            dc,
            format!("`{dn}` has no {ATTR_BACKEND}: the CMS location was never set"),
        )
    })?;
    let backend = parse(ATTR_BACKEND, &backend)?;
    let mirror = match first(e, ATTR_MIRROR) {
        Some(m) if !m.trim().is_empty() => Some(parse(ATTR_MIRROR, &m)?),
        _ => None,
    };
    Ok(CmsLocation { backend, mirror })
}

fn set(v: &SqlServerName) -> HashSet<String> {
    HashSet::from([v.to_string()])
}

/// The modifications of one compare-and-swap from `expected` to `new`: each expected value
/// is deleted (the guard: the DC refuses the whole modify when it is not there) and each new
/// value added. An unchanged mirror is deleted and added back, so it is guarded too. Empty
/// when there is nothing to change.
pub fn swap_mods(expected: &CmsLocation, new: &CmsLocation) -> Vec<Mod<String>> {
    if expected == new {
        return Vec::new();
    }
    let mut mods = vec![
        Mod::Delete(ATTR_BACKEND.to_string(), set(&expected.backend)),
        Mod::Add(ATTR_BACKEND.to_string(), set(&new.backend)),
    ];
    if let Some(m) = &expected.mirror {
        mods.push(Mod::Delete(ATTR_MIRROR.to_string(), set(m)));
    }
    if let Some(m) = &new.mirror {
        mods.push(Mod::Add(ATTR_MIRROR.to_string(), set(m)));
    }
    mods
}

/// The modify as LDIF, for what-if plans and reports.
pub(crate) fn ldif(dn: &str, expected: &CmsLocation, new: &CmsLocation) -> String {
    let mut out = format!("dn: {dn}\nchangetype: modify\n");
    for m in swap_mods(expected, new) {
        let (op, attr, vals) = match &m {
            Mod::Delete(a, v) => ("delete", a, v),
            Mod::Add(a, v) => ("add", a, v),
            _ => continue,
        };
        out.push_str(&format!("{op}: {attr}\n"));
        for v in vals {
            out.push_str(&format!("{attr}: {v}\n"));
        }
        out.push_str("-\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(b: &str, m: Option<&str>) -> CmsLocation {
        CmsLocation {
            backend: SqlServerName::parse(b).unwrap(),
            mirror: m.map(|m| SqlServerName::parse(m).unwrap()),
        }
    }

    #[test]
    fn the_swap_deletes_what_is_expected_and_adds_what_is_new() {
        let a = loc("sql-a.cms.test\\RTC", Some("sql-a2.cms.test\\RTC"));
        let b = loc("sql-b.cms.test\\RTC", None);
        let text = ldif("CN=Topology Settings,CN=RTC Service", &a, &b);
        assert_eq!(
            text,
            "dn: CN=Topology Settings,CN=RTC Service\nchangetype: modify\n\
             delete: msRTCSIP-BackEndServer\nmsRTCSIP-BackEndServer: sql-a.cms.test\\RTC\n-\n\
             add: msRTCSIP-BackEndServer\nmsRTCSIP-BackEndServer: sql-b.cms.test\\RTC\n-\n\
             delete: msRTCSIP-MirrorBackEndServer\nmsRTCSIP-MirrorBackEndServer: sql-a2.cms.test\\RTC\n-\n"
        );
        assert!(swap_mods(&a, &a).is_empty());
        assert_eq!(swap_mods(&b, &a).len(), 3);
    }

    #[test]
    fn the_filter_is_constant_and_escaped() {
        assert_eq!(filter(), "(objectClass=msRTCSIP-GlobalTopologySetting)");
        assert_eq!(ldap3::ldap_escape("x)(cn=*"), "x\\29\\28cn=\\2a");
        assert_eq!(ldap3::dn_escape("a,b=c+d"), "a\\2cb\\3dc\\2bd");
    }
}
