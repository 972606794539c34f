//! A fake Backup Service gate for the property tests: it answers from a script (every
//! export state, a failing command, garbage, a command that hits its own timeout, a call
//! that never returns), then honestly from the estate (`FinalState` only when every backup
//! copy has reached the active store's position, so a promotion it allows loses nothing).

use backend_fake::Estate;
use failover_core::backup_service::{ExportState, ModuleStatus};
use failover_core::{BackupServiceError, BackupServiceGate, ErrorKind, Topology};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// One scripted answer of the status command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateAnswer {
    /// What the estate says (`FinalState` when caught up, `SteadyState` close, else
    /// `NonSteadyState`).
    Honest,
    /// This state (never `FinalState`: a lie the machine cannot detect).
    State(ExportState),
    /// The command exits non-zero with a standard error.
    Fails,
    /// The command prints something that is not a status.
    Garbage,
    /// The command hangs and is killed at its own timeout.
    TimesOut,
    /// The call never returns (the driver's own bound must cut it).
    Stuck,
}

/// The generator of gate scripts: up to six scripted answers, then honest ones.
pub fn gate_scripts() -> impl Strategy<Value = Vec<GateAnswer>> {
    use ExportState::*;
    prop::collection::vec(
        prop_oneof![
            3 => Just(GateAnswer::Honest),
            2 => Just(GateAnswer::State(SteadyState)),
            2 => Just(GateAnswer::State(NonSteadyState)),
            1 => Just(GateAnswer::State(NotInitialized)),
            1 => Just(GateAnswer::State(ErrorState)),
            1 => Just(GateAnswer::Fails),
            1 => Just(GateAnswer::Garbage),
            1 => Just(GateAnswer::TimesOut),
            1 => Just(GateAnswer::Stuck),
        ],
        0..6,
    )
}

/// The fake gate over an estate.
pub struct FakeGate {
    estate: Estate,
    topology: Topology,
    script: Mutex<VecDeque<GateAnswer>>,
    timeout: Duration,
    stuck_allowed: bool,
    log: Mutex<Vec<(usize, ExportState)>>,
}

impl FakeGate {
    /// A gate answering `script` first; its command's timeout is `timeout`. `Stuck` answers
    /// become `TimesOut` unless `stuck_allowed` (paused time: a stuck call costs nothing).
    pub fn new(
        estate: Estate,
        topology: Topology,
        script: Vec<GateAnswer>,
        timeout: Duration,
        stuck_allowed: bool,
    ) -> Self {
        Self {
            estate,
            topology,
            script: Mutex::new(script.into()),
            timeout,
            stuck_allowed,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Every state answered, with the estate's history length at that moment.
    pub fn answers(&self) -> Vec<(usize, ExportState)> {
        self.log.lock().unwrap().clone()
    }

    fn honest(&self) -> ExportState {
        let snap = self.estate.snapshot();
        let pos = |store: &failover_core::Store, db, pick: fn(u64, u64) -> u64| {
            store
                .instances()
                .filter_map(|i| snap.instances.get(i))
                .filter_map(|i| i.databases.iter().find(|d| &d.name == db))
                .map(|d| d.position)
                .reduce(pick)
        };
        let mut worst = 0;
        for db in &self.topology.databases {
            let src = pos(&self.topology.active, db, u64::max);
            let tgt = pos(&self.topology.backup, db, u64::min);
            match (src, tgt) {
                (Some(s), Some(t)) => worst = worst.max(s.saturating_sub(t)),
                _ => return ExportState::NonSteadyState,
            }
        }
        match worst {
            0 => ExportState::FinalState,
            1..=5 => ExportState::SteadyState,
            _ => ExportState::NonSteadyState,
        }
    }
}

fn fatal(message: &str) -> BackupServiceError {
    BackupServiceError {
        kind: ErrorKind::Fatal,
        message: message.into(),
    }
}

#[async_trait::async_trait]
impl BackupServiceGate for FakeGate {
    fn describe(&self) -> Vec<String> {
        vec!["fake-backup-service-status".into()]
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn cms_status(&self) -> Result<ModuleStatus, BackupServiceError> {
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(GateAnswer::Honest);
        let state = match next {
            GateAnswer::Honest => self.honest(),
            GateAnswer::State(s) => s,
            GateAnswer::Fails => {
                return Err(fatal(
                    "the Backup Service status command failed (exit status: 1); its standard error: Get-CsBackupServiceStatus : Cannot connect",
                ));
            }
            GateAnswer::Garbage => {
                return Err(fatal(
                    "the Backup Service status command printed unusable output: the output is not JSON",
                ));
            }
            GateAnswer::Stuck if self.stuck_allowed => std::future::pending().await,
            GateAnswer::TimesOut | GateAnswer::Stuck => {
                tokio::time::sleep(self.timeout).await;
                return Err(BackupServiceError {
                    kind: ErrorKind::Timeout,
                    message: "the Backup Service status command did not finish; it was killed"
                        .into(),
                });
            }
        };
        let at = self.estate.history().len();
        self.log.lock().unwrap().push((at, state));
        Ok(ModuleStatus::cms(state))
    }
}
