//! The embedded control plane's durable store (option `store_url`): the
//! crate's `ValkeyAssignmentStore` behind a guard that bounds every call,
//! fails fast while the store is down, keeps the writes made meanwhile and
//! replays them in order once it is back; and the cold-start recovery that
//! rebuilds the queue from it (the crate's `recover_from_store` loses
//! queued runs' states and duplicates runs, `docs/upstream.md` 12).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use blazen_controlplane::protocol::Assignment;
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::server::ValkeyAssignmentStore;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{RunStateSnapshot, WorkerCapability};
use uuid::Uuid;

use crate::lock;
use crate::Error;
pub(crate) use crate::STORE_STATUS_PREFIX as STATUS_PREFIX;

mod recover;

pub(crate) use recover::recover;

/// The longest `server_start*` waits to reach the store before it fails
/// with PEER / `ControlPlaneStore`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest one store call may take before the store is taken to be
/// down (each call is one to three Redis commands).
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a store that is down is probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Default time a finished run's snapshot is kept in the store.
pub const DEFAULT_FINISHED_TTL: Duration = Duration::from_secs(3600);

/// A write the store missed while it was down, replayed when it is back.
enum Write {
    PutAssignment(Uuid, Box<Assignment>),
    DeleteAssignment(Uuid),
    PutState(Uuid, Box<RunStateSnapshot>, Option<Duration>),
    EnqueuePending(WorkerCapability, Uuid, Vec<String>),
    ClaimInflight(Uuid, Uuid),
    ReleaseInflight(Uuid),
}

#[derive(Default)]
struct Health {
    /// Why the store is down; `None` while it is up.
    down: Option<String>,
    /// Writes made while it was down, oldest first.
    backlog: VecDeque<Write>,
    probing: bool,
}

/// The guarded store.
pub(crate) struct Durable {
    inner: ValkeyAssignmentStore,
    /// The store's URL without its credentials, for messages.
    target: String,
    health: Mutex<Health>,
    me: Weak<Durable>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("target", &self.target)
            .finish()
    }
}

/// `url` without the user and password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Checks the option: a `redis://` or `unix://` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let ok = ["redis://", "unix://", "redis+unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`store_url` must be a redis:// or unix:// URL, got `{}`",
            redact(url)
        ))
    }
}

/// The text of a store error without the variant's prefix.
fn cause(e: &ControlPlaneError) -> String {
    match e {
        ControlPlaneError::Transport(t) => t.clone(),
        other => other.to_string(),
    }
}

/// Connects to the store at `url` within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect(url: &str, ttl: Option<Duration>) -> Result<Arc<Durable>, Error> {
    let target = redact(url);
    let fail = |why: String| {
        Error::peer(
            crate::Subkind::ControlPlaneStore,
            format!("cannot reach the control plane store {target}: {why}"),
        )
    };
    let inner = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        ValkeyAssignmentStore::with_terminal_ttl(url, ttl),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(fail(cause(&e))),
        Err(_) => {
            return Err(fail(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    };
    Ok(Arc::new_cyclic(|me| Durable {
        inner,
        target,
        health: Mutex::default(),
        me: me.clone(),
    }))
}

impl Durable {
    fn error(&self, why: &str) -> ControlPlaneError {
        ControlPlaneError::Transport(format!(
            "{STATUS_PREFIX} {} is unavailable: {why}",
            self.target
        ))
    }

    /// The gRPC status for a store error.
    pub(crate) fn status(e: &ControlPlaneError) -> tonic::Status {
        match e {
            ControlPlaneError::Transport(t) if t.starts_with(STATUS_PREFIX) => {
                tonic::Status::unavailable(t.clone())
            }
            other => tonic::Status::unavailable(format!("{STATUS_PREFIX}: {other}")),
        }
    }

    /// Why the store is down, if it is.
    fn down(&self) -> Option<String> {
        lock(&self.health).down.clone()
    }

    /// Takes the store to be down for `why` and starts probing it.
    fn mark_down(&self, why: String) {
        let start = {
            let mut h = lock(&self.health);
            if h.down.is_none() {
                tracing::warn!(store = %self.target, error = %why, "control plane store unavailable");
            }
            h.down = Some(why);
            !std::mem::replace(&mut h.probing, true)
        };
        if start {
            tokio::spawn(probe(self.me.clone()));
        }
    }

    /// Runs a read: fails at once while the store is down.
    async fn read<T, F>(&self, f: F) -> Result<T, ControlPlaneError>
    where
        F: std::future::Future<Output = Result<T, ControlPlaneError>>,
    {
        if let Some(why) = self.down() {
            return Err(self.error(&why));
        }
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let why = cause(&e);
                if matches!(e, ControlPlaneError::Transport(_)) {
                    self.mark_down(why.clone());
                }
                Err(self.error(&why))
            }
            Err(_) => {
                let why = format!("no answer within {} ms", CALL_TIMEOUT.as_millis());
                self.mark_down(why.clone());
                Err(self.error(&why))
            }
        }
    }

    /// Runs a write, or keeps it for the replay while the store is down
    /// (or while earlier writes wait to be replayed).
    async fn write(&self, w: Write) -> Result<(), ControlPlaneError> {
        {
            let mut h = lock(&self.health);
            if let Some(why) = h.down.clone() {
                h.backlog.push_back(w);
                return Err(self.error(&why));
            }
        }
        match tokio::time::timeout(CALL_TIMEOUT, self.apply(&w)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let why = cause(&e);
                lock(&self.health).backlog.push_back(w);
                self.mark_down(why.clone());
                Err(self.error(&why))
            }
            Err(_) => {
                let why = format!("no answer within {} ms", CALL_TIMEOUT.as_millis());
                lock(&self.health).backlog.push_back(w);
                self.mark_down(why.clone());
                Err(self.error(&why))
            }
        }
    }

    async fn apply(&self, w: &Write) -> Result<(), ControlPlaneError> {
        let s = &self.inner;
        match w {
            Write::PutAssignment(id, a) => s.put_assignment(*id, a).await,
            Write::DeleteAssignment(id) => s.delete_assignment(*id).await,
            Write::PutState(id, st, ttl) => s.put_state(*id, st, *ttl).await,
            Write::EnqueuePending(cap, id, tags) => s.enqueue_pending(cap, *id, tags).await,
            Write::ClaimInflight(id, sid) => s.claim_inflight(*id, *sid).await,
            Write::ReleaseInflight(sid) => s.release_inflight(*sid).await.map(drop),
        }
    }
}

/// Probes a store that is down until it answers, replays the writes it
/// missed in order, then takes it to be up. Ends with the server.
async fn probe(store: Weak<Durable>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(s) = store.upgrade() else {
            return;
        };
        let alive = tokio::time::timeout(CALL_TIMEOUT, s.inner.get_state(Uuid::nil()))
            .await
            .is_ok_and(|r| r.is_ok());
        if !alive {
            continue;
        }
        loop {
            let next = {
                let mut h = lock(&s.health);
                match h.backlog.pop_front() {
                    Some(w) => w,
                    None => {
                        h.down = None;
                        h.probing = false;
                        tracing::info!(store = %s.target, "control plane store available again");
                        return;
                    }
                }
            };
            let ok = tokio::time::timeout(CALL_TIMEOUT, s.apply(&next))
                .await
                .is_ok_and(|r| r.is_ok());
            if !ok {
                lock(&s.health).backlog.push_front(next);
                break;
            }
        }
    }
}

#[async_trait::async_trait]
impl AssignmentStore for Durable {
    async fn put_assignment(&self, run_id: Uuid, a: &Assignment) -> Result<(), ControlPlaneError> {
        self.write(Write::PutAssignment(run_id, Box::new(a.clone())))
            .await
    }

    async fn get_assignment(&self, run_id: Uuid) -> Result<Option<Assignment>, ControlPlaneError> {
        self.read(self.inner.get_assignment(run_id)).await
    }

    async fn delete_assignment(&self, run_id: Uuid) -> Result<(), ControlPlaneError> {
        self.write(Write::DeleteAssignment(run_id)).await
    }

    async fn put_state(
        &self,
        run_id: Uuid,
        state: &RunStateSnapshot,
        ttl: Option<Duration>,
    ) -> Result<(), ControlPlaneError> {
        self.write(Write::PutState(run_id, Box::new(state.clone()), ttl))
            .await
    }

    async fn get_state(&self, run_id: Uuid) -> Result<Option<RunStateSnapshot>, ControlPlaneError> {
        self.read(self.inner.get_state(run_id)).await
    }

    async fn enqueue_pending(
        &self,
        cap: &WorkerCapability,
        run_id: Uuid,
        tags: &[String],
    ) -> Result<(), ControlPlaneError> {
        self.write(Write::EnqueuePending(cap.clone(), run_id, tags.to_vec()))
            .await
    }

    async fn dequeue_pending(
        &self,
        cap: &WorkerCapability,
    ) -> Result<Option<(Uuid, Vec<String>)>, ControlPlaneError> {
        self.read(self.inner.dequeue_pending(cap)).await
    }

    async fn list_pending_capabilities(&self) -> Result<Vec<WorkerCapability>, ControlPlaneError> {
        self.read(self.inner.list_pending_capabilities()).await
    }

    async fn claim_inflight(&self, run_id: Uuid, session: Uuid) -> Result<(), ControlPlaneError> {
        self.write(Write::ClaimInflight(run_id, session)).await
    }

    /// The runs released are not reported (the queue ignores them).
    async fn release_inflight(&self, session: Uuid) -> Result<Vec<Uuid>, ControlPlaneError> {
        self.write(Write::ReleaseInflight(session))
            .await
            .map(|()| Vec::new())
    }

    async fn list_orphaned_inflight(
        &self,
        alive: &HashSet<Uuid>,
    ) -> Result<Vec<Uuid>, ControlPlaneError> {
        self.read(self.inner.list_orphaned_inflight(alive)).await
    }
}
