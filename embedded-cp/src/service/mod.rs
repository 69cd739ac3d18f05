//! The embedded control plane's gRPC service: blazen-controlplane 0.7.0's
//! own `ControlPlaneService` for every method except `WorkerSession`
//! (rebuilt here from the crate's public pieces), plus a wrapper around
//! `SubmitWorkflow` that enforces `deadline_ms`.
//! Each defect this works around is written up in `docs/upstream.md`.
//!
//! What the worker session does differently from the crate's:
//!
//! - It returns the response stream before it routes any queued run to the
//!   worker, and a forwarder moves every frame from the registry's channel
//!   into an unbounded one, so a backlog of any size can never block the
//!   handshake (the crate's deadlocks at 64 queued runs).
//! - It counts the runs assigned to the session and publishes the count as
//!   the worker's `in_flight` the moment each assignment is forwarded (the
//!   crate only learns it from heartbeats), so admission sees saturated
//!   workers and spreads a backlog.
//! - A single drainer task routes queued runs whenever a worker connects,
//!   a result comes back or a session ends (the crate only drains when a
//!   worker connects).
//! - When a session ends, its runs are re-queued and a `status.requeued`
//!   event `{"node_id", "reason": "worker_lost"}` is emitted for each; a
//!   run lost more than `max_requeues` times fails instead, and each
//!   re-run's assignment carries its `attempt`.
//! - A second session for a node id already connected is refused
//!   (ALREADY_EXISTS) instead of evicting the first.
//! - A result for a run that is already terminal is ignored.
//! - A run subscription starts with the run's events so far (`journal`),
//!   and an answer to an input request the run never raised is refused.
//! - A run queued with no connected worker able to take it gets a
//!   `status.waiting` event (`waiting`).
//!
//! With a durable store (`crate::store`), a submission is refused while
//! the store cannot record it, and `DescribeWorkflow` falls back to the
//! store for runs this process does not know (finished before a restart).

mod bus;
mod frames;
mod journal;
pub(crate) mod observe;
mod requeue;
mod runs;
mod session;
mod submit;
mod volatile;
mod waiting;
mod watch_all;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use blazen_controlplane::auth::PeerIdentity;
use blazen_controlplane::pb::blazen_control_plane_server::BlazenControlPlane;
use blazen_controlplane::pb::{PostcardRequest, PostcardResponse};
use blazen_controlplane::protocol::DEFAULT_PLACE;
use blazen_controlplane::server::service::PostcardResponseStream;
use blazen_controlplane::server::{ControlPlaneService, SharedState};
use blazen_core::distributed::{RunEvent, RunStatus, WorkerCapability};
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::common::now_ms;
use crate::lock;
use crate::store::Durable;

pub(crate) use bus::EVENT_BUS_CAPACITY;
pub(crate) use runs::Waiting;
use session::Session;
pub(crate) use volatile::Volatile;

/// How long after a session ends its runs are swept back into the queue a
/// second time (a run routed to it while it was ending is only recorded
/// as the session's once the routing call returns).
const RESWEEP: Duration = Duration::from_millis(200);

/// The priority every assignment carries. The C API has no priority: runs
/// are served first in, first out, per place and capability (`runs`).
const QUEUE_PRIORITY: u8 = 0;

/// How often the drainer routes queued runs for every connected worker
/// whatever happened (see [`drainer`]).
const SWEEP: Duration = Duration::from_secs(1);

/// The service tonic serves.
pub(crate) struct Service {
    inner: ControlPlaneService,
    cp: Arc<Plane>,
}

/// What the library keeps beside the crate's shared state.
struct Plane {
    shared: Arc<SharedState>,
    /// Asks the drainer to route queued runs of a place and capabilities.
    drain: mpsc::UnboundedSender<DrainKey>,
    /// Held while checking a node id and registering it, so two sessions
    /// for one node id cannot both pass the check.
    registering: Mutex<()>,
    /// Every connected session, by session id.
    sessions: Mutex<HashMap<Uuid, Arc<Session>>>,
    /// Every run, and the runs waiting for a worker.
    runs: runs::Runs,
    /// The durable store, when the server has one.
    store: Option<Arc<Durable>>,
    /// Each run's events so far, for subscriptions opened late.
    journal: journal::Journal,
    /// How many times a run is re-queued after losing its worker before
    /// it fails instead.
    max_requeues: u32,
    /// What the HTTP side and the run listing read (`observe`).
    stats: observe::Stats,
    /// Every run event, for the recorder and `SubscribeAll` (`bus`).
    bus: bus::Bus,
    /// Submissions being recorded in the store, not yet queued (`submit`).
    arriving: Mutex<HashSet<Uuid>>,
}

type DrainKey = (String, Vec<WorkerCapability>);

impl Service {
    pub(crate) fn new(
        shared: Arc<SharedState>,
        store: Option<Arc<Durable>>,
        max_requeues: u32,
        recovered: Vec<Waiting>,
    ) -> Self {
        let (drain, requests) = mpsc::unbounded_channel();
        let cp = Arc::new(Plane {
            shared: shared.clone(),
            drain,
            registering: Mutex::new(()),
            sessions: Mutex::default(),
            runs: runs::Runs::default(),
            store,
            journal: journal::Journal::default(),
            max_requeues,
            stats: observe::Stats::default(),
            bus: bus::Bus::new(&shared, EVENT_BUS_CAPACITY),
            arriving: Mutex::default(),
        });
        for run in recovered {
            cp.admit(run);
        }
        tokio::spawn(drainer(Arc::downgrade(&cp), requests));
        if cp.store.is_some() {
            tokio::spawn(trimmer(Arc::downgrade(&cp)));
        }
        tokio::spawn(recorder(Arc::downgrade(&cp), cp.bus.subscribe()));
        Self {
            inner: ControlPlaneService::new(shared),
            cp,
        }
    }
}

/// The dispatcher: routes waiting runs, one request at a time, since only
/// one router may decide on the in-flight counts (see [`runs`]). Requests
/// that arrive while it routes are merged. Every [`SWEEP`] it also routes
/// for every connected worker, whatever happened. Ends with the server.
async fn drainer(plane: Weak<Plane>, mut requests: mpsc::UnboundedReceiver<DrainKey>) {
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut keys: HashSet<runs::Bucket> = HashSet::new();
        let mut add = |(place, caps): DrainKey| {
            keys.extend(caps.into_iter().map(|c| (place.clone(), c)));
        };
        tokio::select! {
            request = requests.recv() => match request {
                Some(k) => add(k),
                None => return,
            },
            _ = sweep.tick() => {
                let Some(cp) = plane.upgrade() else {
                    return;
                };
                let all: Vec<DrainKey> =
                    lock(&cp.sessions).values().map(|s| s.drain_key()).collect();
                all.into_iter().for_each(&mut add);
            }
        }
        while let Ok(k) = requests.try_recv() {
            add(k);
        }
        let Some(cp) = plane.upgrade() else {
            return;
        };
        for bucket in keys {
            // A few hundred at a time, so a worker that takes everything
            // (reactive admission) does not hold a runtime thread.
            while cp.dispatch(&bucket, DISPATCH_BATCH) {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Reads the event bus into the run journal and the run index (one
/// reader for both) until the server ends.
async fn recorder(plane: Weak<Plane>, mut events: broadcast::Receiver<Arc<RunEvent>>) {
    loop {
        let received = events.recv().await;
        let Some(cp) = plane.upgrade() else {
            return;
        };
        match received {
            Ok(event) => {
                cp.stats.record(&event);
                cp.journal.record(event);
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                cp.stats.missed(n);
                tracing::warn!(
                    missed = n,
                    "run journal fell behind the event bus; some events were not recorded"
                );
                cp.journal.lost_some();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Trims the store's pending lists now and then (`store/trim.rs`). Ends
/// with the server.
async fn trimmer(plane: Weak<Plane>) {
    let mut every = tokio::time::interval(crate::store::TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(cp) = plane.upgrade() else {
            return;
        };
        let Some(store) = cp.store.clone() else {
            return;
        };
        if let Err(e) = store.trim_pending(|run| cp.keeps_pending(run)).await {
            tracing::debug!(error = %e, "cannot trim the store's pending lists now");
        }
    }
}

/// The most runs the dispatcher routes before it yields.
const DISPATCH_BATCH: usize = 256;

fn is_terminal(s: RunStatus) -> bool {
    matches!(
        s,
        RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
    )
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    postcard::from_bytes(bytes).map_err(|e| Status::invalid_argument(format!("decode {what}: {e}")))
}

fn identity<T>(req: &Request<T>) -> Option<PeerIdentity> {
    req.extensions().get::<PeerIdentity>().cloned()
}

/// The place a request acts in: the authenticated identity's, else the
/// one the peer named, else the default (the crate's rule).
fn place_of(identity: Option<&PeerIdentity>, named: Option<&String>) -> String {
    match identity {
        Some(id) => id.place.clone(),
        None => named.cloned().unwrap_or_else(|| DEFAULT_PLACE.to_string()),
    }
}

// ---- worker sessions ------------------------------------------------------

#[tonic::async_trait]
impl BlazenControlPlane for Service {
    type WorkerSessionStream = PostcardResponseStream;
    type SubscribeRunEventsStream = PostcardResponseStream;
    type SubscribeAllStream = PostcardResponseStream;

    async fn worker_session(
        &self,
        request: Request<Streaming<PostcardRequest>>,
    ) -> Result<Response<Self::WorkerSessionStream>, Status> {
        let id = identity(&request);
        self.cp.worker_session(id, request.into_inner()).await
    }

    async fn submit_workflow(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        self.submit(request).await
    }

    async fn cancel_workflow(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        self.cancel(request).await
    }

    async fn describe_workflow(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        self.describe(request).await
    }

    async fn list_workers(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        self.inner.list_workers(request).await
    }

    async fn drain_worker(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        self.inner.drain_worker(request).await
    }

    async fn respond_to_input(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        self.respond(request).await
    }

    async fn subscribe_run_events(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<Self::SubscribeRunEventsStream>, Status> {
        self.subscribe_run(request).await
    }

    async fn subscribe_all(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<Self::SubscribeAllStream>, Status> {
        self.subscribe_everything(request).await
    }
}
