//! The durable journal: every step is recorded before its effects run, so a later run can
//! tell what an interrupted one did and resume or restore.

use crate::machine::StateName;
use crate::op::Op;
use crate::outcome::Outcome;
use crate::request::FailoverRequest;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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
///
/// Crash safety: a record is complete only with its terminating newline. [`FileJournal::open`]
/// truncates a torn tail (the partial last line a crash, power cut or full disk leaves) back
/// to the last complete record, fsyncs and logs a warning; [`Journal::append`] repairs the
/// same way before writing if the file does not end on a complete record (a failed earlier
/// append, here or in another process), so a record is never appended after partial bytes.
/// Appends and repairs hold an exclusive advisory lock on the file, so several processes
/// can share one journal. A damaged line *before* the last one is not a torn write: it is
/// reported as an error and nothing is changed.
#[derive(Debug)]
pub struct FileJournal {
    path: PathBuf,
    file: Mutex<File>,
    fsync: bool,
}

/// Holds the file's exclusive advisory lock (`flock`) until dropped.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn exclusive(file: &'a File) -> io::Result<Self> {
        file.lock()?;
        Ok(Self(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// What the journal bytes hold: the complete records, and where the complete part ends.
struct Parsed {
    records: Vec<JournalRecord>,
    /// Length of the prefix made of complete (newline-terminated, parseable) records.
    complete_len: u64,
}

/// Parses journal bytes. A torn tail (an unterminated last line, or a terminated last line
/// that is cut short or NUL-filled) is left out of `complete_len`; any other bad line is an
/// `InvalidData` error naming it.
fn parse(bytes: &[u8], path: &Path) -> io::Result<Parsed> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let Some(nl) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            break; // unterminated: torn
        };
        let line = &bytes[offset..offset + nl];
        let end = offset + nl + 1;
        let last = end == bytes.len();
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            offset = end;
            continue;
        }
        match serde_json::from_slice::<JournalRecord>(line) {
            Ok(r) => records.push(r),
            Err(e) if last && (e.is_eof() || line.contains(&0)) => break,
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: line {line_no} is damaged ({e}); it is not the last line, so it \
                         is not a torn write: move the file aside and run `restore`",
                        path.display()
                    ),
                ));
            }
        }
        offset = end;
    }
    Ok(Parsed {
        records,
        complete_len: offset as u64,
    })
}

fn read_all(mut file: &File) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Truncates a torn tail back to the last complete record (the caller holds the file lock).
fn repair_tail(file: &File, path: &Path, fsync: bool) -> io::Result<()> {
    let bytes = read_all(file)?;
    let parsed = parse(&bytes, path)?;
    let len = bytes.len() as u64;
    if parsed.complete_len < len {
        file.set_len(parsed.complete_len)?;
        if fsync {
            file.sync_all()?;
        }
        tracing::warn!(
            journal = %path.display(),
            dropped_bytes = len - parsed.complete_len,
            kept_records = parsed.records.len(),
            "journal: dropped a torn last record (an interrupted write); its step had not run"
        );
    }
    Ok(())
}

/// Whether the file ends on a complete record (empty, or its last byte is a newline).
fn ends_clean(file: &File) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

impl FileJournal {
    /// Opens (creating if needed) the journal in `dir`, truncating a torn tail left by a
    /// crash (with a warning in the log). A damaged line before the last one is an error.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        {
            let _lock = FileLock::exclusive(&file)?;
            repair_tail(&file, &path, true)?;
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

    fn append_locked(&self, f: &File, line: &[u8]) -> io::Result<()> {
        let _lock = FileLock::exclusive(f)?;
        // Never append after partial bytes: a failed earlier append (in this process or a
        // crashed one) may have left some.
        if !ends_clean(f)? {
            repair_tail(f, &self.path, self.fsync)?;
        }
        let before = f.metadata()?.len();
        #[cfg(feature = "failpoints")]
        failpoints::torn_append(f, line)?;
        let mut w = f;
        if let Err(e) = w
            .write_all(line)
            .and_then(|()| if self.fsync { f.sync_data() } else { Ok(()) })
        {
            // Take back whatever part of the record reached the file; the next append
            // checks again in case this fails too.
            let _ = f.set_len(before);
            return Err(e);
        }
        Ok(())
    }
}

impl Journal for FileJournal {
    fn append(&self, record: &JournalRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        self.append_locked(&f, &line)?;
        drop(f);
        #[cfg(feature = "failpoints")]
        failpoints::appended();
        Ok(())
    }

    fn records(&self) -> io::Result<Vec<JournalRecord>> {
        let f = File::open(&self.path)?;
        // A torn tail (another process crashed mid-append) is not a record yet.
        Ok(parse(&read_all(&f)?, &self.path)?.records)
    }
}

/// Crash points for the crash campaign (feature `failpoints`, tests only), configured with
/// the `fail` crate's `FAILPOINTS` environment variable:
///
/// - `journal::appended`: right after a record is durable. `return(abort)` aborts the
///   process there (a SIGKILL-like stop: no unwinding, no destructors), e.g.
///   `FAILPOINTS='journal::appended=3*off->return(abort)'` dies after the 4th record.
/// - `driver::op_done`: inside a step, right after one backend call returned (its effect
///   landed, its result not yet journaled or acted on). `return(abort)` aborts there;
///   `return(count:PATH)` appends one line to PATH per call (to count the crash points).
/// - `journal::torn_append`: `return(N)` writes only the first N bytes of the record and
///   fails the append (an interrupted write); `return(abort:N)` writes N bytes and aborts.
#[cfg(feature = "failpoints")]
pub mod failpoints {
    use std::fs::File;
    use std::io::{self, Write};
    use std::sync::Once;

    /// Reads `FAILPOINTS` once (later `fail::cfg` calls add to it).
    pub fn setup() {
        static SETUP: Once = Once::new();
        SETUP.call_once(|| std::mem::forget(fail::FailScenario::setup()));
    }

    pub(super) fn appended() {
        setup();
        fail::fail_point!("journal::appended", |arg: Option<String>| {
            if arg.as_deref() == Some("abort") {
                std::process::abort();
            }
        });
    }

    pub(crate) fn op_done() {
        setup();
        fail::fail_point!("driver::op_done", |arg: Option<String>| {
            let arg = arg.unwrap_or_default();
            if arg == "abort" {
                std::process::abort();
            }
            if let Some(path) = arg.strip_prefix("count:") {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    let _ = f.write_all(b"1\n");
                }
            }
        });
    }

    pub(super) fn torn_append(mut f: &File, line: &[u8]) -> io::Result<()> {
        setup();
        fail::fail_point!("journal::torn_append", |arg: Option<String>| {
            let arg = arg.unwrap_or_default();
            let (abort, n) = match arg.strip_prefix("abort:") {
                Some(n) => (true, n),
                None => (false, arg.as_str()),
            };
            let n = n.parse::<usize>().unwrap_or(line.len() / 2).min(line.len());
            f.write_all(&line[..n])?;
            f.sync_data()?;
            if abort {
                std::process::abort();
            }
            Err(io::Error::other("failpoint journal::torn_append"))
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Mode;

    fn record(run: &str, seq: u64) -> JournalRecord {
        JournalRecord {
            run_id: run.into(),
            seq,
            at_unix_ms: 1_700_000_000_000 + seq,
            event: JournalEvent::Resolved {
                interrupted_run_id: format!("earlier-{seq}"),
            },
        }
    }

    fn raw_append(dir: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("journal.jsonl"))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn torn_line(r: &JournalRecord) -> Vec<u8> {
        let full = serde_json::to_vec(r).unwrap();
        full[..full.len() / 2].to_vec()
    }

    #[test]
    fn a_torn_last_line_is_truncated_on_open_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = FileJournal::open(dir.path()).unwrap();
            j.append(&record("r1", 1)).unwrap();
            j.append(&record("r1", 2)).unwrap();
        }
        // A crash in the middle of the third append.
        raw_append(dir.path(), &torn_line(&record("r1", 3)));
        let j = FileJournal::open(dir.path()).unwrap();
        let len = std::fs::metadata(j.path()).unwrap().len();
        let text = std::fs::read_to_string(j.path()).unwrap();
        assert!(text.ends_with('\n'), "the torn tail is gone: {text:?}");
        assert_eq!(text.lines().count(), 2);
        j.append(&record("r2", 1)).unwrap();
        assert!(std::fs::metadata(j.path()).unwrap().len() > len);
        let all = FileJournal::open(dir.path()).unwrap().records().unwrap();
        assert_eq!(all, vec![record("r1", 1), record("r1", 2), record("r2", 1)]);
    }

    #[test]
    fn a_torn_terminated_line_and_nul_fill_are_torn_tails_too() {
        for tail in [
            {
                let mut t = torn_line(&record("r1", 2));
                t.push(b'\n');
                t
            },
            vec![0u8; 40],
            vec![0u8; 40].into_iter().chain([b'\n']).collect(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            FileJournal::open(dir.path())
                .unwrap()
                .append(&record("r1", 1))
                .unwrap();
            raw_append(dir.path(), &tail);
            let j = FileJournal::open(dir.path()).unwrap();
            j.append(&record("r1", 2)).unwrap();
            assert_eq!(j.records().unwrap(), vec![record("r1", 1), record("r1", 2)]);
        }
    }

    #[test]
    fn partial_bytes_written_after_open_are_repaired_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path()).unwrap();
        j.append(&record("r1", 1)).unwrap();
        // Another process sharing the journal dies mid-append.
        raw_append(dir.path(), &torn_line(&record("other", 1)));
        assert_eq!(
            j.records().unwrap(),
            vec![record("r1", 1)],
            "torn tail ignored"
        );
        j.append(&record("r1", 2)).unwrap();
        assert_eq!(
            FileJournal::open(dir.path()).unwrap().records().unwrap(),
            vec![record("r1", 1), record("r1", 2)]
        );
    }

    #[test]
    fn a_damaged_line_before_the_last_is_an_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        FileJournal::open(dir.path())
            .unwrap()
            .append(&record("r1", 1))
            .unwrap();
        raw_append(dir.path(), b"{\"not\": a record}\n");
        let mut good = serde_json::to_vec(&record("r1", 2)).unwrap();
        good.push(b'\n');
        raw_append(dir.path(), &good);
        let before = std::fs::read(dir.path().join("journal.jsonl")).unwrap();
        let e = FileJournal::open(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("line 2"), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join("journal.jsonl")).unwrap(),
            before
        );
    }

    #[test]
    fn unfinished_runs_survive_a_torn_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path()).unwrap();
        let store =
            |h: &str| crate::Store::new(crate::InstanceAddr::parse(h).unwrap(), None).unwrap();
        let topo = crate::Topology::new(
            store("a.test"),
            store("b.test"),
            crate::DatabaseName::cms_defaults(),
        )
        .unwrap();
        let request = FailoverRequest::new("r1", topo, Mode::Restore).unwrap();
        j.append(&JournalRecord {
            run_id: "r1".into(),
            seq: 0,
            at_unix_ms: 1,
            event: JournalEvent::Started {
                request: Box::new(request),
            },
        })
        .unwrap();
        raw_append(dir.path(), &torn_line(&record("r2", 1)));
        let j = FileJournal::open(dir.path()).unwrap();
        assert_eq!(unfinished_runs(&j.records().unwrap()).len(), 1);
    }

    /// The same process's earlier append failed after writing part of its record.
    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_append_in_the_same_process_leaves_no_partial_bytes_behind() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path()).unwrap();
        j.append(&record("r1", 1)).unwrap();
        failpoints::setup();
        fail::cfg("journal::torn_append", "1*return(17)").unwrap();
        j.append(&record("r1", 2)).unwrap_err();
        fail::remove("journal::torn_append");
        assert!(
            !ends_clean(&j.file.lock().unwrap()).unwrap(),
            "17 bytes left"
        );
        j.append(&record("r1", 3)).unwrap();
        assert_eq!(
            FileJournal::open(dir.path()).unwrap().records().unwrap(),
            vec![record("r1", 1), record("r1", 3)]
        );
    }
}
