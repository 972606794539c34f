//! [`FakeBackend`]: the [`Backend`] over an [`Estate`].

use crate::error::SqlError;
use crate::estate::{Estate, SessionId};
use crate::fault::Fault;
use async_trait::async_trait;
use failover_core::sqlerror::classify;
use failover_core::{
    Backend, BackendError, DatabaseName, DatabasePosition, DatabaseRights, DbState, InstanceAddr,
    InstanceProbe, LocationRecord, LockAttempt, LoginRights, MirrorFailoverKind, MirrorRole,
    MirrorState, Operation, Position,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// One client process talking to an [`Estate`].
///
/// It opens one session per instance lazily and reopens it after a disconnect; its
/// application locks belong to that session and die with it (also when the backend is
/// dropped). Before each operation it asks the estate for a fault
/// ([`Estate::fault_for`]) and manifests it: `Error` is returned, `Delay` sleeps
/// (`tokio::time::sleep`) then runs the operation, `Hang` never completes, `Disconnect` ends
/// the session and returns `Unreachable`, `Crash` maybe applies the operation and then never
/// completes. Opening a session draws a fault for [`Operation::Connect`]; there every
/// fault other than an error is a refused connection (53).
///
/// Server errors are classified with [`failover_core::sqlerror::classify`] (which lists the
/// location conflict [`crate::LOCATION_CONFLICT`] as `InvalidState`).
///
/// Contract details: `recover` treats the estate's 3117 (RESTORE on an ONLINE database) as
/// the idempotent no-op; `mirror_failover(Forced)` reads the role first and skips databases
/// already PRINCIPAL on `instance`; `acquire_lock` checks `APPLOCK_MODE` first so a second
/// call by the holder does not stack a second lock level; `release_lock` releases every
/// level this session holds and succeeds when it holds none.
pub struct FakeBackend {
    estate: Estate,
    name: String,
    login: Option<(String, String)>,
    sessions: Mutex<HashMap<InstanceAddr, SessionId>>,
}

impl fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeBackend")
            .field("name", &self.name)
            .field("login", &self.login.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        let sessions =
            std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|p| p.into_inner()));
        for s in sessions.into_values() {
            self.estate.close_session(s);
        }
    }
}

impl FakeBackend {
    /// A client of `estate` using trusted sessions.
    pub fn new(estate: Estate) -> Self {
        Self {
            estate,
            name: "fake".into(),
            login: None,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Uses an SQL login for every session (a wrong password fails with 18456).
    pub fn with_login(mut self, user: &str, password: &str) -> Self {
        self.login = Some((user.to_string(), password.to_string()));
        self
    }

    /// The estate.
    pub fn estate(&self) -> &Estate {
        &self.estate
    }

    /// The session this backend currently has open on `addr`, if any.
    pub fn session(&self, addr: &InstanceAddr) -> Option<SessionId> {
        self.sessions().get(addr).copied()
    }

    /// Closes this backend's session on `addr` (client side), releasing its locks there.
    pub fn disconnect(&self, addr: &InstanceAddr) {
        if let Some(s) = self.sessions().remove(addr) {
            self.estate.close_session(s);
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceAddr, SessionId>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, op: Operation, addr: &InstanceAddr, e: SqlError) -> BackendError {
        BackendError::new(classify(e.number), op, addr, e.message).with_code(e.number)
    }

    fn connect(&self, op: Operation, addr: &InstanceAddr) -> Result<SessionId, BackendError> {
        if let Some(s) = self.session(addr) {
            if self.estate.session_alive(s) {
                return Ok(s);
            }
            self.sessions().remove(addr);
        }
        match self.estate.fault_for(addr, Operation::Connect) {
            Some(Fault::Error(e)) => return Err(self.error(op, addr, e)),
            Some(Fault::Disconnect | Fault::Hang | Fault::Crash { .. } | Fault::Delay(_)) => {
                // At connect time every non-error fault is a refused/failed connection.
                return Err(self.error(op, addr, SqlError::connection_refused(addr)));
            }
            None => {}
        }
        let s = match &self.login {
            Some((u, p)) => self.estate.login(addr, u, p),
            None => self.estate.open_session(addr),
        }
        .map_err(|e| self.error(op, addr, e))?;
        self.sessions().insert(addr.clone(), s);
        Ok(s)
    }

    /// Runs `f` on this backend's session on `addr`.
    fn exec<T>(
        &self,
        op: Operation,
        addr: &InstanceAddr,
        f: &impl Fn(&Estate, SessionId) -> Result<T, SqlError>,
    ) -> Result<T, BackendError> {
        let s = self.connect(op, addr)?;
        f(&self.estate, s).map_err(|e| {
            if e.is_connection_error() {
                self.sessions().remove(addr);
            }
            self.error(op, addr, e)
        })
    }

    /// Manifests the operation's fault, then runs it.
    async fn run<T>(
        &self,
        op: Operation,
        addr: &InstanceAddr,
        f: impl Fn(&Estate, SessionId) -> Result<T, SqlError> + Send + Sync,
    ) -> Result<T, BackendError> {
        match self.estate.fault_for(addr, op) {
            None => {}
            Some(Fault::Error(e)) => return Err(self.error(op, addr, e)),
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::Disconnect) => {
                self.disconnect(addr);
                return Err(self.error(op, addr, SqlError::connection_dropped()));
            }
            Some(Fault::Crash { applied }) => {
                if applied {
                    let _ = self.exec(op, addr, &f);
                }
                std::future::pending::<()>().await
            }
        }
        self.exec(op, addr, &f)
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn probe(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<InstanceProbe, BackendError> {
        self.run(Operation::Probe, instance, |e, s| {
            let version = e.version(s)?;
            let rows = e.database_rows(s)?;
            let (login, grants) = e.session_grants(s)?;
            let databases: Vec<_> = databases
                .iter()
                .filter_map(|d| rows.iter().find(|r| &r.name == d).map(|r| r.to_probe()))
                .map(|mut p| {
                    // NULL mirroring columns on a mirror for a login that is not sysadmin.
                    if !grants.sees_mirror_columns()
                        && p.mirroring
                            .as_ref()
                            .is_some_and(|m| m.role == MirrorRole::Mirror)
                    {
                        p.mirroring = None;
                    }
                    p
                })
                .collect();
            let rights = LoginRights {
                sysadmin: grants.sysadmin,
                dbcreator: grants.dbcreator,
                location_write: Some(grants.can_write_location()),
                databases: databases
                    .iter()
                    .map(|p| DatabaseRights {
                        name: p.name.clone(),
                        alter: (p.state == DbState::Online).then(|| grants.can_alter(&p.name)),
                        owner: e.database_owner(instance, &p.name) == login,
                    })
                    .collect(),
                login,
            };
            Ok(InstanceProbe {
                instance: instance.clone(),
                version,
                databases,
                rights: Some(rights),
            })
        })
        .await
    }

    async fn positions(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<Vec<DatabasePosition>, BackendError> {
        self.run(Operation::Positions, instance, |e, s| {
            Ok(e.positions(s, databases)?
                .into_iter()
                .map(|(database, p)| DatabasePosition {
                    database,
                    position: p.map(|p| Position(p.into())),
                })
                .collect())
        })
        .await
    }

    async fn set_read_only(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
        read_only: bool,
    ) -> Result<(), BackendError> {
        self.run(Operation::SetReadOnly, instance, |e, s| {
            databases
                .iter()
                .try_for_each(|d| e.set_read_only(s, d, read_only))
        })
        .await
    }

    async fn recover(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
    ) -> Result<(), BackendError> {
        self.run(Operation::Recover, instance, |e, s| {
            databases
                .iter()
                .try_for_each(|d| match e.restore_with_recovery(s, d) {
                    // 3117: nothing to roll forward, i.e. already ONLINE: the contract's no-op.
                    Err(err) if err.number == 3117 => Ok(()),
                    r => r,
                })
        })
        .await
    }

    async fn mirror_failover(
        &self,
        instance: &InstanceAddr,
        databases: &[DatabaseName],
        kind: MirrorFailoverKind,
    ) -> Result<InstanceAddr, BackendError> {
        self.run(Operation::MirrorFailover, instance, |e, s| {
            let mut serving = instance.clone();
            // Planned, like the SQL backend's plan: a database already switched (a retry) or
            // switching (PENDING_FAILOVER: SET PARTNER FAILOVER returns before the roles
            // switch) is not sent again; clients use its partner.
            let sent = match kind {
                MirrorFailoverKind::Planned => e.database_rows(s)?,
                MirrorFailoverKind::Forced => Vec::new(),
            };
            // One batch of one ALTER per database, as the SQL backends send it: an error ends
            // its statement, not the batch ("When SET XACT_ABORT is OFF, in some cases only
            // the Transact-SQL statement that raised the error is rolled back and the
            // transaction continues processing",
            // https://learn.microsoft.com/en-us/sql/t-sql/statements/set-xact-abort-transact-sql;
            // the simulator does the same), so every database is sent and the first error
            // is the answer.
            let mut first_error = None;
            for d in databases {
                let done = sent
                    .iter()
                    .find(|r| &r.name == d)
                    .and_then(|r| r.mirroring.as_ref())
                    .filter(|m| {
                        m.role == MirrorRole::Mirror || m.state == MirrorState::PendingFailover
                    });
                match kind {
                    MirrorFailoverKind::Planned => match done {
                        Some(m) => serving = m.partner.clone(),
                        None => match e.set_partner_failover(s, d) {
                            Ok(p) => serving = p,
                            Err(err) => {
                                first_error.get_or_insert(err);
                            }
                        },
                    },
                    MirrorFailoverKind::Forced => {
                        let rows = e.database_rows(s)?;
                        let role = rows
                            .iter()
                            .find(|r| &r.name == d)
                            .and_then(|r| r.mirroring.as_ref().map(|m| m.role));
                        if role != Some(MirrorRole::Principal)
                            && let Err(err) = e.force_service(s, d)
                        {
                            first_error.get_or_insert(err);
                        }
                        serving = instance.clone();
                    }
                }
            }
            first_error.map_or(Ok(serving), Err)
        })
        .await
    }

    async fn acquire_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<LockAttempt, BackendError> {
        self.run(Operation::AcquireLock, instance, |e, s| {
            if e.app_lock_held(s, resource)? {
                return Ok(LockAttempt::Granted);
            }
            Ok(match e.get_app_lock(s, resource)? {
                0 | 1 => LockAttempt::Granted,
                _ => LockAttempt::Held,
            })
        })
        .await
    }

    async fn release_lock(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<(), BackendError> {
        self.run(Operation::ReleaseLock, instance, |e, s| {
            while e.app_lock_held(s, resource)? {
                e.release_app_lock(s, resource)?;
            }
            Ok(())
        })
        .await
    }

    async fn lock_held(
        &self,
        instance: &InstanceAddr,
        resource: &str,
    ) -> Result<bool, BackendError> {
        self.run(Operation::CheckLock, instance, |e, s| {
            e.app_lock_held(s, resource)
        })
        .await
    }

    async fn read_location(
        &self,
        instance: &InstanceAddr,
    ) -> Result<Option<LocationRecord>, BackendError> {
        self.run(Operation::ReadLocation, instance, |e, s| e.read_location(s))
            .await
    }

    async fn write_location(
        &self,
        instance: &InstanceAddr,
        record: &LocationRecord,
        expected_epoch: Option<u64>,
    ) -> Result<(), BackendError> {
        self.run(Operation::WriteLocation, instance, |e, s| {
            e.write_location(s, record, expected_epoch)
        })
        .await
    }
}
