//! The pool pair: the topology's two stores are a symmetric pair, so `failover` moves the
//! CMS to the partner of wherever the directory (or, without one, the location records) says
//! it is now. After a failover, the same command fails back; no file edit is needed. `--to` asserts the direction.

use crate::failure::Failure;
use failover_core::{Backend, Directory, InstanceAddr, Store, Topology};
use std::time::Duration;

/// Which way a planned failover goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direction {
    /// The topology with the store the CMS is on now as `active` and its partner as
    /// `backup`.
    pub topology: Topology,
    /// Whether it is the file's `[backup]` → `[active]` (a failback).
    pub failback: bool,
}

/// The file's topology turned so that `active` is the store the CMS is on now: what the
/// directory says on its first domain controller when the topology has a `[directory]` (that
/// is what every Skype for Business server reads, and the commit point of every run), else
/// the store holding the newest location record (read-only reads; instances that do not
/// answer are skipped). With no readable answer, a value naming neither store, or a tie, the
/// file's order is kept and the run's own checks decide (its preflight refuses a directory
/// that does not point at the run's source).
pub async fn orient(
    backend: &dyn Backend,
    directory: Option<&dyn Directory>,
    topology: &Topology,
    timeout: Duration,
) -> Direction {
    let turned = Direction {
        topology: swapped(topology),
        failback: true,
    };
    let kept = Direction {
        topology: topology.clone(),
        failback: false,
    };
    if let Some(d) = directory
        && let Some(dc) = d.domain_controllers().first()
        && let Ok(Ok(value)) = tokio::time::timeout(timeout, d.read(dc)).await
    {
        if value.points_at(&topology.backup) {
            return turned;
        }
        if value.points_at(&topology.active) {
            return kept;
        }
    }
    let mut records = Vec::new();
    for i in topology.instances() {
        if let Ok(Ok(Some(r))) = tokio::time::timeout(timeout, backend.read_location(i)).await {
            records.push(r);
        }
    }
    let on_backup = matches!(
        failover_core::location::winning_record(records.iter()),
        Ok(Some(r)) if r.active.principal == topology.backup.principal
    );
    if on_backup { turned } else { kept }
}

/// The `failover --force …` flags that name `store` as a disaster-recovery target: its
/// principal's server (with `,port` when the topology gives one) and instance, and its
/// mirror's, exactly as `failover` parses them back.
pub fn disaster_recovery_flags(store: &Store) -> String {
    let server = |a: &InstanceAddr| match a.port() {
        Some(p) => format!("{},{p}", a.host()),
        None => a.host().to_string(),
    };
    let mut s = format!(
        "--force --backup-sql-server-fqdn {}",
        server(&store.principal)
    );
    if let Some(i) = store.principal.instance() {
        s.push_str(&format!(" --backup-sql-instance-name {i}"));
    }
    if let Some(m) = &store.mirror {
        s.push_str(&format!(" --backup-mirror-sql-server-fqdn {}", server(m)));
        if let Some(i) = m.instance() {
            s.push_str(&format!(" --backup-mirror-sql-instance-name {i}"));
        }
    }
    s
}

/// The same pair the other way round.
pub fn swapped(t: &Topology) -> Topology {
    Topology {
        active: t.backup.clone(),
        backup: t.active.clone(),
        databases: t.databases.clone(),
    }
}

/// Whether `to` names `store`: its file section (`active` / `backup`, from `file`), an
/// instance of it (`host[\instance][,port]`), or its principal's host name.
fn names(to: &str, store: &Store, file: &Topology) -> bool {
    let section = if store == &file.active {
        "active"
    } else {
        "backup"
    };
    if to.eq_ignore_ascii_case(section) {
        return true;
    }
    if let Ok(addr) = InstanceAddr::parse(to)
        && store.contains(&addr)
    {
        return true;
    }
    store
        .instances()
        .any(|i| i.host().to_string().eq_ignore_ascii_case(to))
}

/// Checks `--to` against the direction: fine when it names the target; refused (exit 3,
/// nothing changed) when it names the store the CMS is on now; bad input (exit 2) when it
/// names neither store.
pub fn check_to(to: &str, d: &Direction, file: &Topology) -> Result<(), Failure> {
    let (from, target) = (&d.topology.active, &d.topology.backup);
    if names(to, target, file) {
        return Ok(());
    }
    if names(to, from, file) {
        return Err(Failure::refused(
            format!(
                "--to {to} names {from}, but the CMS is recorded on {from} now: this failover would move it to {target}; nothing was changed"
            ),
            format!(
                "run `cms-failover status` to see where the CMS is; drop --to, or give --to {}",
                target.principal
            ),
        ));
    }
    Err(Failure::usage(
        format!(
            "--to {to} names neither store of the topology ({} / {})",
            file.active.principal, file.backup.principal
        ),
        "give a server of the target store (fqdn[\\instance]) or the file section `active` / `backup`",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_directory_decides_the_direction_before_the_records() {
        use failover_core::CmsLocation;
        let f = backend_fake::fixtures::build(&backend_fake::fixtures::Options::default());
        let backend = backend_fake::FakeBackend::new(f.estate.clone());
        let t = &f.topology;
        let wait = Duration::from_secs(5);
        // The records say the file's active store: kept without a directory.
        let d = orient(&backend, None, t, wait).await;
        assert!(!d.failback);
        // The directory already points at the backup (a run that crashed after its swap,
        // before the records were published): the direction follows the directory.
        let dir = backend_fake::FakeDirectory::new(CmsLocation::of_store(&t.backup), 2);
        let d = orient(&backend, Some(&dir), t, wait).await;
        assert!(d.failback);
        assert_eq!(d.topology.active, t.backup);
        let dir = backend_fake::FakeDirectory::new(CmsLocation::of_store(&t.active), 2);
        assert!(!orient(&backend, Some(&dir), t, wait).await.failback);
        // A value naming neither store: the records decide (and the run's preflight refuses).
        let other = Store::new(InstanceAddr::parse("sql-z.cms.test").unwrap(), None).unwrap();
        let dir = backend_fake::FakeDirectory::new(CmsLocation::of_store(&other), 1);
        assert!(!orient(&backend, Some(&dir), t, wait).await.failback);
    }

    #[test]
    fn disaster_recovery_flags_parse_back_to_the_store() {
        let store = Store::new(
            InstanceAddr::parse("sql-a.cms.test\\RTC").unwrap(),
            Some(InstanceAddr::parse("sql-a2.cms.test\\RTC,1533").unwrap()),
        )
        .unwrap();
        let flags = disaster_recovery_flags(&store);
        assert_eq!(
            flags,
            "--force --backup-sql-server-fqdn sql-a.cms.test --backup-sql-instance-name RTC \
             --backup-mirror-sql-server-fqdn sql-a2.cms.test,1533 --backup-mirror-sql-instance-name RTC"
        );
        let v: Vec<&str> = flags.split(' ').collect();
        let mode = failover_core::Mode::disaster_recovery(
            true,
            Some(v[2]),
            Some(v[4]),
            Some(v[6]),
            Some(v[8]),
        )
        .unwrap();
        assert_eq!(
            mode,
            failover_core::Mode::DisasterRecovery { target: store }
        );
    }
    use backend_fake::fixtures;

    #[test]
    fn to_must_name_the_target() {
        let t = fixtures::build(&fixtures::Options::default().mirrored(true)).topology;
        let forward = Direction {
            topology: t.clone(),
            failback: false,
        };
        let back = Direction {
            topology: swapped(&t),
            failback: true,
        };
        let b = fixtures::backup().to_string();
        let a = fixtures::active().to_string();
        assert_eq!(check_to(&b, &forward, &t), Ok(()));
        assert_eq!(check_to("backup", &forward, &t), Ok(()));
        assert_eq!(check_to("SQL-B.cms.test", &forward, &t), Ok(()));
        assert_eq!(check_to(&a, &back, &t), Ok(()));
        assert_eq!(check_to("active", &back, &t), Ok(()));
        let e = check_to(&a, &forward, &t).unwrap_err();
        assert_eq!(e.code, 3);
        assert!(e.what.contains("recorded on"), "{}", e.what);
        assert_eq!(
            check_to("sql-z.cms.test", &forward, &t).unwrap_err().code,
            2
        );
    }
}
