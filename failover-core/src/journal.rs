//! The durable journal: every step is recorded before its effects run, so a later run can
//! tell what an interrupted one did and resume or restore.

use crate::machine::StateName;
use crate::op::Op;
use crate::outcome::Outcome;
use crate::request::FailoverRequest;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// The run it belongs to.
    pub run_id: String,
    /// Sequence number within the run.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What happened.
    pub event: JournalEvent,
}

/// What a journal line records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEvent {
    /// A run started.
    Started {
        /// Its request.
        request: Box<FailoverRequest>,
    },
    /// A step is about to run these calls (written before they are made).
    Step {
        /// The state waiting for the results.
        state: StateName,
        /// The calls.
        ops: Vec<Op>,
    },
    /// The run ended.
    Finished {
        /// How.
        outcome: Outcome,
    },
    /// An earlier interrupted run was settled by this (restore) run.
    Resolved {
        /// The interrupted run.
        interrupted_run_id: String,
    },
}

/// Where runs are journaled. Appends must be durable when they return.
pub trait Journal: Send + Sync {
    /// Appends one record durably.
    fn append(&self, record: &JournalRecord) -> io::Result<()>;
    /// Every record, oldest first.
    fn records(&self) -> io::Result<Vec<JournalRecord>>;
}

/// A run that started and never finished (crashed, killed, or still running elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnfinishedRun {
    /// Its id.
    pub run_id: String,
    /// Its request.
    pub request: FailoverRequest,
    /// The last step it started.
    pub last_state: Option<StateName>,
    /// Whether it had issued a fence.
    pub fenced: bool,
    /// Whether it had started recording the new location (it may be committed).
    pub recording: bool,
}

impl UnfinishedRun {
    /// How to settle it: a disaster recovery is resumed by running it again (it is forced
    /// and idempotent); anything else is settled by a restore, which ends on the recorded
    /// store: failed over if the interrupted run had recorded the new location, back on the
    /// source otherwise.
    pub fn settling_mode(&self) -> crate::request::Mode {
        match &self.request.mode {
            crate::request::Mode::DisasterRecovery { target } => {
                crate::request::Mode::DisasterRecovery {
                    target: target.clone(),
                }
            }
            _ => crate::request::Mode::Restore,
        }
    }
}

/// Finds runs that started but neither finished nor were resolved by a later restore.
pub fn unfinished_runs(records: &[JournalRecord]) -> Vec<UnfinishedRun> {
    let mut runs: Vec<UnfinishedRun> = Vec::new();
    for r in records {
        match &r.event {
            JournalEvent::Started { request } => runs.push(UnfinishedRun {
                run_id: r.run_id.clone(),
                request: (**request).clone(),
                last_state: None,
                fenced: false,
                recording: false,
            }),
            JournalEvent::Step { state, ops } => {
                if let Some(u) = runs.iter_mut().find(|u| u.run_id == r.run_id) {
                    u.last_state = Some(*state);
                    if *state == StateName::Fencing
                        && ops.iter().any(|o| {
                            matches!(
                                o,
                                Op::SetReadOnly {
                                    read_only: true,
                                    ..
                                }
                            )
                        })
                    {
                        u.fenced = true;
                    }
                    if *state == StateName::RecordingLocation {
                        u.recording = true;
                    }
                }
            }
            JournalEvent::Finished { .. } => runs.retain(|u| u.run_id != r.run_id),
            JournalEvent::Resolved { interrupted_run_id } => {
                runs.retain(|u| &u.run_id != interrupted_run_id)
            }
        }
    }
    runs
}

/// An in-memory journal for tests (clones share the records).
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    records: Arc<Mutex<Vec<JournalRecord>>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Journal for MemoryJournal {
    fn append(&self, record: &JournalRecord) -> io::Result<()> {
        self.records
            .lock()
            .expect("journal lock")
            .push(record.clone());
        Ok(())
    }
    fn records(&self) -> io::Result<Vec<JournalRecord>> {
        Ok(self.records.lock().expect("journal lock").clone())
    }
}

/// The default journal: JSON lines in `DIR/journal.jsonl`, each append flushed and
/// `fsync`ed (unless constructed with [`FileJournal::without_fsync`], for benchmarks).
#[derive(Debug)]
pub struct FileJournal {
    path: PathBuf,
    file: Mutex<File>,
    fsync: bool,
}

impl FileJournal {
    /// Opens (creating if needed) the journal in `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Self {
            path,
            file: Mutex::new(file),
            fsync: true,
        })
    }

    /// Turns fsync off (measurement only: a crash may lose the last records).
    pub fn without_fsync(mut self) -> Self {
        self.fsync = false;
        self
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Journal for FileJournal {
    fn append(&self, record: &JournalRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().expect("journal lock");
        f.write_all(&line)?;
        if self.fsync {
            f.sync_data()?;
        }
        Ok(())
    }

    fn records(&self) -> io::Result<Vec<JournalRecord>> {
        let f = File::open(&self.path)?;
        let mut out = Vec::new();
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(r) => out.push(r),
                // A torn last line (crash mid-write) is ignored; anything else is an error.
                Err(e) if e.is_eof() => break,
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: line {}: {e}", self.path.display(), n + 1),
                    ));
                }
            }
        }
        Ok(out)
    }
}
