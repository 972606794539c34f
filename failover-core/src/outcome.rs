//! How a run ends, and what it learned on the way (warnings, data-loss estimate, window).

use crate::backend::Position;
use crate::model::{DatabaseName, InstanceAddr};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The end of every run: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The CMS is active on `active` (for what-if: the plan is complete with no blockers).
    Succeeded {
        /// The instance that serves the CMS databases now.
        active: InstanceAddr,
        /// The recorded epoch, when one was written.
        epoch: Option<u64>,
    },
    /// A safety check refused the run before any change.
    Refused {
        /// Why, and what to do.
        reason: String,
    },
    /// A change was made, then the run failed and undid it: the source is back in service.
    RolledBack {
        /// Why the run failed.
        reason: String,
    },
    /// The run failed and could not put things back: run `restore`.
    NeedsRestore {
        /// Why.
        reason: String,
        /// The databases known or suspected to be left read-only, per instance.
        left_read_only: Vec<(InstanceAddr, Vec<DatabaseName>)>,
    },
    /// Cancelled by the operator; any fence was undone.
    Cancelled {
        /// Where it stopped.
        detail: String,
    },
}

impl Outcome {
    /// The documented process exit code: 0 succeeded, 3 refused, 4 rolled back, 5 needs
    /// restore, 130 cancelled (2 is bad input, decided before a run starts).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Succeeded { .. } => 0,
            Outcome::Refused { .. } => 3,
            Outcome::RolledBack { .. } => 4,
            Outcome::NeedsRestore { .. } => 5,
            Outcome::Cancelled { .. } => 130,
        }
    }

    /// A short label: `succeeded`, `refused`, `rolled_back`, `needs_restore`, `cancelled`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Refused { .. } => "refused",
            Outcome::RolledBack { .. } => "rolled_back",
            Outcome::NeedsRestore { .. } => "needs_restore",
            Outcome::Cancelled { .. } => "cancelled",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded { active, epoch } => {
                write!(f, "succeeded: the CMS is active on {active}")?;
                if let Some(e) = epoch {
                    write!(f, " (epoch {e})")?;
                }
                Ok(())
            }
            Outcome::Refused { reason } => write!(f, "refused before any change: {reason}"),
            Outcome::RolledBack { reason } => {
                write!(
                    f,
                    "failed and rolled back (the source is in service again): {reason}"
                )
            }
            Outcome::NeedsRestore {
                reason,
                left_read_only,
            } => {
                write!(f, "failed and needs restore: {reason}")?;
                for (i, dbs) in left_read_only {
                    let names: Vec<_> = dbs.iter().map(|d| d.as_str()).collect();
                    write!(f, "; left read-only on {i}: {}", names.join(", "))?;
                }
                write!(
                    f,
                    ". Run `cms-failover restore` to put the CMS back into service (after a disaster recovery whose old source is still down, run the disaster recovery again instead)"
                )
            }
            Outcome::Cancelled { detail } => write!(f, "cancelled: {detail}"),
        }
    }
}

/// Per-database data-loss estimate of a disaster recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLossEstimate {
    /// The database.
    pub database: DatabaseName,
    /// The last position seen on the source (`None`: never seen, source unreachable).
    pub source_position: Option<Position>,
    /// The target's position when it was read before promotion.
    pub target_position: Option<Position>,
    /// `source - target` changes that may be lost (an upper bound), or `None` for unknown.
    pub changes_at_risk: Option<u64>,
}

impl fmt::Display for DataLossEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.changes_at_risk {
            Some(n) => write!(f, "{}: up to {n} change(s) may be lost", self.database),
            None => write!(
                f,
                "{}: unknown (the source's last position was never seen)",
                self.database
            ),
        }
    }
}
