//! What to run: the mode, the topology and the settings (timeouts, retries, lag gate).

use crate::model::{InstanceAddr, Store, Topology, ValidationError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The failover mode, mirroring the cmdlet's parameter sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// CMS available: wait for replication, fence the source, let the backup catch up,
    /// promote the topology's preassigned backup store.
    Planned,
    /// Source gone: promote the named backup store (and its mirror) without replication
    /// checks; report the data that may be lost.
    DisasterRecovery {
        /// The store to promote (from `--backup-sql-server-fqdn` and friends).
        target: Store,
    },
    /// Put the recorded CMS store back into service after an interrupted or failed run.
    Restore,
}

impl Mode {
    /// Builds the disaster-recovery mode from the cmdlet-style parameters, enforcing its
    /// rules: `force` is required, the backup server is required, the instance is optional
    /// (default instance), and the mirror is given as server and instance together or not at
    /// all.
    pub fn disaster_recovery(
        force: bool,
        backup_server: Option<&str>,
        backup_instance: Option<&str>,
        mirror_server: Option<&str>,
        mirror_instance: Option<&str>,
    ) -> Result<Self, ValidationError> {
        let server = backup_server.ok_or_else(|| {
            ValidationError::new(
                "--backup-sql-server-fqdn",
                "",
                "disaster recovery needs the backup SQL Server FQDN",
            )
        })?;
        if !force {
            return Err(ValidationError::new(
                "--force",
                "",
                "disaster recovery ignores replication and may lose data: pass --force to confirm you mean it",
            ));
        }
        let principal = InstanceAddr::from_parts(server, backup_instance)
            .map_err(|e| e.in_field("--backup-sql-server-fqdn / --backup-sql-instance-name"))?;
        let mirror = match (mirror_server, mirror_instance) {
            (None, None) => None,
            (Some(s), Some(i)) => Some(InstanceAddr::from_parts(s, Some(i)).map_err(|e| {
                e.in_field("--backup-mirror-sql-server-fqdn / --backup-mirror-sql-instance-name")
            })?),
            (Some(s), None) => {
                return Err(ValidationError::new(
                    "--backup-mirror-sql-instance-name",
                    s,
                    "the mirror is given as server and instance together: add --backup-mirror-sql-instance-name",
                ));
            }
            (None, Some(i)) => {
                return Err(ValidationError::new(
                    "--backup-mirror-sql-server-fqdn",
                    i,
                    "the mirror is given as server and instance together: add --backup-mirror-sql-server-fqdn",
                ));
            }
        };
        Ok(Mode::DisasterRecovery {
            target: Store::new(principal, mirror)?,
        })
    }

    /// A short name for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Planned => "planned",
            Mode::DisasterRecovery { .. } => "disaster-recovery",
            Mode::Restore => "restore",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Timeouts, retries and gates. Every wait has a timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Timeout of one backend call (per attempt).
    #[serde(with = "duration_ms")]
    pub step_timeout: Duration,
    /// How long to wait for replication to catch up before fencing (planned).
    #[serde(with = "duration_ms")]
    pub replication_timeout: Duration,
    /// How long to wait, after the fence, for the target to reach the fenced positions.
    #[serde(with = "duration_ms")]
    pub catch_up_timeout: Duration,
    /// Interval between position polls.
    #[serde(with = "duration_ms")]
    pub poll_interval: Duration,
    /// Interval between position polls after the fence (writes are stopped: poll fast).
    #[serde(with = "duration_ms")]
    pub catch_up_poll_interval: Duration,
    /// Largest lag (in positions) per database accepted by the pre-fence gate.
    pub max_lag: u64,
    /// Timeout of the attempt to fence an old source in disaster recovery.
    #[serde(with = "duration_ms")]
    pub dr_fence_timeout: Duration,
    /// The fresh deadline given to undoing a fence after a failure or cancellation.
    #[serde(with = "duration_ms")]
    pub undo_timeout: Duration,
    /// Retries of a call that failed with a retryable kind.
    pub max_retries: u32,
    /// Delay before the first retry (doubles each retry).
    #[serde(with = "duration_ms")]
    pub retry_backoff: Duration,
    /// The `sp_getapplock` resource name.
    pub lock_resource: String,
    /// The operator's wall clock when the run started, in Unix seconds (0: none): a lower
    /// bound for the run's new epoch. A commit made while the store holding the newest
    /// record was unreachable cannot see that record; taking the epoch from the clock as
    /// well (a hybrid logical clock) still orders it after every earlier commit, as long
    /// as the machines' clocks are closer than the time between the two commits (AD's
    /// Kerberos already requires them within 5 minutes). Equal epochs on different stores
    /// remain a refusal ([`crate::Refusal::RecordTie`]), never a silent choice.
    #[serde(default)]
    pub epoch_clock: u64,
    /// How long to wait, after the commit, for every domain controller to return the new
    /// directory value (a DC that has not by then is reported, not a failure).
    #[serde(with = "duration_ms", default = "default_directory_timeout")]
    pub directory_timeout: Duration,
    /// Planned: gate on the Skype for Business Backup Service's status instead of SQL
    /// positions (its copies share no log with the source); `None`: SQL positions.
    #[serde(default)]
    pub backup_service: Option<crate::backup_service::BackupServiceSettings>,
    /// Planned, on a mirrored target store served by its mirror partner: how long to wait,
    /// after `SET PARTNER FAILOVER` gives the principal role back, for the designated
    /// principal to report PRINCIPAL and ONLINE (SQL Server returns from the statement
    /// before the roles switch). Disaster recovery: the same wait after
    /// `FORCE_SERVICE_ALLOW_DATA_LOSS`, for the forced mirror.
    #[serde(with = "duration_ms", default = "default_mirror_switch_timeout")]
    pub mirror_switch_timeout: Duration,
}

fn default_mirror_switch_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_directory_timeout() -> Duration {
    Duration::from_secs(120)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(30),
            replication_timeout: Duration::from_secs(300),
            catch_up_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            catch_up_poll_interval: Duration::from_millis(100),
            max_lag: 0,
            dr_fence_timeout: Duration::from_secs(5),
            undo_timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_backoff: Duration::from_millis(250),
            lock_resource: "cms-failover".to_string(),
            epoch_clock: 0,
            directory_timeout: default_directory_timeout(),
            backup_service: None,
            mirror_switch_timeout: default_mirror_switch_timeout(),
        }
    }
}

/// A failover to run (or to plan, with `what_if`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    /// A unique id for this run (journal, lock diagnostics, location record).
    pub run_id: String,
    /// The deployment.
    pub topology: Topology,
    /// What to do.
    pub mode: Mode,
    /// Plan only: run read-only probes, change nothing.
    pub what_if: bool,
    /// Timeouts and gates.
    pub settings: Settings,
}

impl FailoverRequest {
    /// Builds a request, checking the mode against the topology (a disaster-recovery target
    /// must not be the active store).
    pub fn new(
        run_id: impl Into<String>,
        topology: Topology,
        mode: Mode,
    ) -> Result<Self, ValidationError> {
        if let Mode::DisasterRecovery { target } = &mode {
            for i in target.instances() {
                if topology.active.contains(i) {
                    return Err(ValidationError::new(
                        "--backup-sql-server-fqdn",
                        i.to_string(),
                        "the disaster-recovery target is the active store itself (source equals target)",
                    ));
                }
            }
        }
        Ok(Self {
            run_id: run_id.into(),
            topology,
            mode,
            what_if: false,
            settings: Settings::default(),
        })
    }

    /// The store the run makes active: the backup (planned), the named store (disaster
    /// recovery); `None` for restore (decided from the recorded location).
    pub fn target(&self) -> Option<&Store> {
        match &self.mode {
            Mode::Planned => Some(&self.topology.backup),
            Mode::DisasterRecovery { target } => Some(target),
            Mode::Restore => None,
        }
    }
}

pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disaster_recovery_rules() {
        assert!(
            Mode::disaster_recovery(true, None, None, None, None)
                .unwrap_err()
                .field
                .contains("fqdn")
        );
        assert!(
            Mode::disaster_recovery(false, Some("b.example"), None, None, None)
                .unwrap_err()
                .field
                .contains("force")
        );
        let e = Mode::disaster_recovery(true, Some("b.example"), None, Some("m.example"), None)
            .unwrap_err();
        assert!(e.rule.contains("together"));
        let e =
            Mode::disaster_recovery(true, Some("b.example"), None, None, Some("RTC")).unwrap_err();
        assert!(e.rule.contains("together"));
        let m = Mode::disaster_recovery(
            true,
            Some("b.example"),
            Some("RTC"),
            Some("m.example"),
            Some("RTC"),
        )
        .unwrap();
        match m {
            Mode::DisasterRecovery { target } => {
                assert_eq!(target.principal.to_string(), "b.example\\RTC");
                assert_eq!(target.mirror.unwrap().to_string(), "m.example\\RTC");
            }
            _ => panic!("wrong mode"),
        }
        assert!(Mode::disaster_recovery(true, Some("bad host"), None, None, None).is_err());
    }
}
