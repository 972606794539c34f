//! Durable simulator state (`--state-dir`): what a real SQL Server keeps across a restart.
//!
//! A SQL Server instance keeps its databases (their `state_desc`, `is_read_only`, their
//! data, so their change positions), its database mirroring sessions (roles, partner,
//! safety level, a suspended session stays suspended) and its user tables (the location
//! record in `master`) across a crash, because every committed transaction is hardened in
//! the log before the commit is acknowledged ("Write-Ahead Transaction Log",
//! <https://learn.microsoft.com/sql/relational-databases/sql-server-transaction-log-architecture-and-management-guide>).
//! It does not keep sessions nor the locks they own: application locks taken with
//! `@LockOwner = 'Session'` are released when the session ends
//! (<https://learn.microsoft.com/sql/relational-databases/system-stored-procedures/sp-getapplock-transact-sql>),
//! and a restart ends every session.
//!
//! The simulator does the same: after every request that changed the estate (and before the
//! reply is sent, so an acknowledged change is durable) it writes the whole estate's durable
//! part to `DIR/state.json` atomically (a temporary file, fsync, rename over the old one,
//! fsync of the directory). On start, a state file found in `DIR` replaces the databases,
//! mirroring sessions and location records of the estate file; links, workloads, logins and
//! reachability still come from the estate file.

use crate::estate_file::{DatabaseEntry, EstateFile, EstateFileError, MirroringEntry};
use crate::service::{LoginAccepted, LoginRefused, LoginRequest, Reply, Request, Service, Session};
use backend_fake::{Estate, WitnessConnection};
use failover_core::{DatabaseName, DbState, InstanceAddr, LocationRecord, MirrorRole, MirrorState};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file name inside the state directory.
pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// The durable part of an estate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableState {
    /// Format version of the file.
    pub format: u32,
    /// Every instance.
    pub instances: Vec<InstanceState>,
    /// Every database mirroring session.
    pub mirroring: Vec<MirroringState>,
}

/// The durable part of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceState {
    /// The instance.
    pub name: InstanceAddr,
    /// Its databases.
    pub databases: Vec<DatabaseState>,
    /// The location record in its `master`.
    pub location: Option<LocationRecord>,
}

/// One database copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseState {
    /// Its name.
    pub name: DatabaseName,
    /// `state_desc`.
    pub state: DbState,
    /// `is_read_only`.
    pub read_only: bool,
    /// Its change position.
    pub position: u64,
    /// A STANDBY copy (`is_in_standby`).
    #[serde(default)]
    pub standby: bool,
}

/// One mirroring session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirroringState {
    /// The mirrored database.
    pub database: DatabaseName,
    /// The current principal.
    pub principal: InstanceAddr,
    /// The current mirror.
    pub mirror: InstanceAddr,
    /// The stored session state.
    pub state: MirrorState,
    /// Safety FULL.
    pub safety_full: bool,
}

/// A state directory that cannot be read, written or applied.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state dir {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid.
    #[error(
        "state file {path} is damaged ({message}); move it aside to start from the estate file"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The state does not fit the estate file.
    #[error(
        "state file {path} does not fit the estate file: {message}; use another --state-dir \
         or move the file aside to start from the estate file"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
}

impl DurableState {
    /// The durable part of `estate` now. A session shown DISCONNECTED (a partner is down)
    /// keeps the stored state from `previous` (else SYNCHRONIZED), as the state shown is
    /// derived from reachability, which is not durable.
    pub fn capture(estate: &Estate, previous: Option<&DurableState>) -> Self {
        let snap = estate.snapshot();
        let mut instances = Vec::new();
        let mut mirroring = Vec::new();
        for (addr, inst) in &snap.instances {
            instances.push(InstanceState {
                name: addr.clone(),
                databases: inst
                    .databases
                    .iter()
                    .map(|d| DatabaseState {
                        name: d.name.clone(),
                        state: d.state.clone(),
                        read_only: d.read_only,
                        position: d.position,
                        standby: d.in_standby,
                    })
                    .collect(),
                location: inst.location.clone(),
            });
            for d in &inst.databases {
                let Some(m) = &d.mirroring else { continue };
                if m.role != MirrorRole::Principal {
                    continue;
                }
                let state = if m.state == MirrorState::Disconnected {
                    previous
                        .and_then(|p| {
                            p.mirroring.iter().find(|s| {
                                s.database == d.name && (&s.principal == addr || s.mirror == *addr)
                            })
                        })
                        .map_or(MirrorState::Synchronized, |s| s.state)
                } else {
                    m.state
                };
                mirroring.push(MirroringState {
                    database: d.name.clone(),
                    principal: addr.clone(),
                    mirror: m.partner.clone(),
                    state,
                    safety_full: m.safety_full,
                });
            }
        }
        Self {
            format: FORMAT,
            instances,
            mirroring,
        }
    }

    /// Builds the estate of `file` with this state's databases, mirroring sessions and
    /// location records instead of the file's; returns it with the file's fixed ports.
    pub fn build(
        &self,
        file: &EstateFile,
        env: impl Fn(&str) -> Option<String>,
        path: &Path,
    ) -> Result<(Estate, std::collections::HashMap<InstanceAddr, u16>), StateError> {
        let mismatch = |message: String| StateError::Mismatch {
            path: path.to_path_buf(),
            message,
        };
        if self.format != FORMAT {
            return Err(mismatch(format!(
                "format {} (this simulator writes {FORMAT})",
                self.format
            )));
        }
        let mut file = file.clone();
        for s in &self.instances {
            let Some(entry) = file.instances.iter_mut().find(|i| i.name == s.name) else {
                return Err(mismatch(format!(
                    "instance {} is not in the estate file",
                    s.name
                )));
            };
            entry.databases = s
                .databases
                .iter()
                .map(|d| DatabaseEntry {
                    name: d.name.clone(),
                    state: Some(d.state.as_desc().to_string()),
                    read_only: d.read_only,
                    position: d.position,
                    standby: d.standby,
                })
                .collect();
        }
        // The witness is not saved: it comes from the estate file, its connections named
        // by that file's roles, so they swap when the saved roles did.
        let witnesses: Vec<_> = file
            .mirroring
            .iter()
            .map(|m| {
                (
                    m.database.clone(),
                    m.principal.clone(),
                    m.witness.clone(),
                    m.witness_connected,
                )
            })
            .collect();
        file.mirroring = self
            .mirroring
            .iter()
            .map(|m| {
                let w = witnesses.iter().find(|w| w.0 == m.database);
                let swapped = w.is_some_and(|w| w.1 != m.principal);
                let witness_connected = w.and_then(|w| w.3).map(|c| match (c, swapped) {
                    (WitnessConnection::PrincipalOnly, true) => WitnessConnection::MirrorOnly,
                    (WitnessConnection::MirrorOnly, true) => WitnessConnection::PrincipalOnly,
                    (c, _) => c,
                });
                MirroringEntry {
                    database: m.database.clone(),
                    principal: m.principal.clone(),
                    mirror: m.mirror.clone(),
                    state: Some(m.state.as_desc().to_string()),
                    safety_full: m.safety_full,
                    witness: w.and_then(|w| w.2.clone()),
                    witness_connected,
                }
            })
            .collect();
        // Location records are written below, with every field they carry.
        file.locations.clear();
        let (estate, ports) = file
            .build(env)
            .map_err(|e: EstateFileError| mismatch(e.to_string()))?;
        for s in &self.instances {
            // Setting up mirroring gave each mirror copy its principal's position.
            for d in &s.databases {
                estate
                    .set_position(&s.name, &d.name, d.position)
                    .map_err(|e| mismatch(e.to_string()))?;
            }
            if s.location.is_some() {
                estate
                    .set_location(&s.name, s.location.clone())
                    .map_err(|e| mismatch(e.to_string()))?;
            }
        }
        Ok((estate, ports))
    }
}

/// Reads the state in `dir`, if there is one.
pub fn load(dir: &Path) -> Result<Option<DurableState>, StateError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Damaged {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io { path, source }),
    }
}

/// Writes an estate's durable state to its directory whenever it changed.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    estate: Estate,
    last: Mutex<Option<(DurableState, Vec<u8>)>>,
}

impl StateStore {
    /// A store for `estate` in `dir` (created if needed), writing the current state now.
    pub fn open(dir: &Path, estate: Estate) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let previous = load(dir)?;
        let store = Self {
            dir: dir.to_path_buf(),
            estate,
            last: Mutex::new(previous.map(|p| (p, Vec::new()))),
        };
        store.save()?;
        Ok(store)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the state if it changed since the last write: atomically (temporary file,
    /// fsync, rename, fsync of the directory), so a crash leaves the old or the new state.
    pub fn save(&self) -> Result<(), StateError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let state = DurableState::capture(&self.estate, last.as_ref().map(|(s, _)| s));
        let bytes = serde_json::to_vec_pretty(&state).expect("the state serializes");
        if last.as_ref().is_some_and(|(_, b)| *b == bytes) {
            return Ok(());
        }
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        *last = Some((state, bytes));
        Ok(())
    }

    /// [`Self::save`], logging a failure (the change stays in memory; the next save writes
    /// it again).
    pub fn save_or_log(&self) {
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "cannot write the durable state");
        }
    }
}

/// A [`Service`] whose sessions save the durable state after every request, before the
/// reply goes out (without a store it is the inner service unchanged).
#[derive(Debug)]
pub struct DurableService<S> {
    inner: S,
    store: Option<Arc<StateStore>>,
}

impl<S> DurableService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, store: Option<Arc<StateStore>>) -> Self {
        Self { inner, store }
    }
}

/// A session of a [`DurableService`].
pub struct DurableSession<T> {
    inner: T,
    store: Option<Arc<StateStore>>,
}

impl<T: Session> Session for DurableSession<T> {
    async fn execute(&mut self, request: Request) -> Reply {
        let reply = self.inner.execute(request).await;
        if let Some(store) = &self.store {
            store.save_or_log();
        }
        reply
    }
}

impl<S: Service> Service for DurableService<S> {
    type Session = DurableSession<S::Session>;

    async fn login(
        &self,
        login: LoginRequest,
    ) -> Result<(Self::Session, LoginAccepted), LoginRefused> {
        let (inner, accepted) = self.inner.login(login).await?;
        Ok((
            DurableSession {
                inner,
                store: self.store.clone(),
            },
            accepted,
        ))
    }

    fn is_up(&self) -> bool {
        self.inner.is_up()
    }
}
