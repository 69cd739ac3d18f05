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
//!   event `{"node_id", "reason": "worker_lost"}` is emitted for each.
//! - A second session for a node id already connected is refused
//!   (ALREADY_EXISTS) instead of evicting the first.
//! - A result for a run that is already terminal is ignored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use blazen_controlplane::auth::PeerIdentity;
use blazen_controlplane::pb::blazen_control_plane_server::BlazenControlPlane;
use blazen_controlplane::pb::{PostcardRequest, PostcardResponse};
use blazen_controlplane::protocol::{
    validate_envelope_version, Assignment, AssignmentStatus, CancelInstruction, KeyRequest,
    KeyResponse, NodeSelectorWire, RunStateSnapshotWire, ServerToWorker, SubmitRequest, Welcome,
    WorkerHello, WorkerToServer, DEFAULT_PLACE, ENVELOPE_VERSION,
};
use blazen_controlplane::server::admission::{Decision, NoCandidateReason, RouteRequest};
use blazen_controlplane::server::queue::SubmitOutcome;
use blazen_controlplane::server::service::PostcardResponseStream;
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::server::{ControlPlaneService, SharedState};
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{
    AdmissionSnapshot, NodeSelector, ResourceHint, RunEvent, RunStateSnapshot, RunStatus,
    WorkerCapability, WorkerTaint,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::rt::ErrorKind;

/// How long after a session ends its runs are swept back into the queue a
/// second time (a run routed to it while it was ending is only recorded
/// as the session's once the routing call returns).
const RESWEEP: Duration = Duration::from_millis(200);

/// The priority runs are queued at. The C API has no priority, so every
/// run gets the same one; the crate's `DEFAULT_PRIORITY` (128) falls in its
/// scheduler's fifth band, and for each of the four bands above it the
/// scheduler scans the whole queue on every dispatch (`docs/upstream.md`
/// 9). At band 0 the run itself is found at the first entry and only the
/// seven (empty) lower bands are scanned, once per scheduler round, which
/// roughly halves the time to drain 10,000 queued runs (41 s to 24 s on
/// the 2-core machine).
const QUEUE_PRIORITY: u8 = 0;

/// How often the drainer routes queued runs for every connected worker
/// whatever happened (see [`drainer`]).
const SWEEP: Duration = Duration::from_secs(1);

/// The longest a result waits for its run's routing to be recorded
/// (see [`Plane::routing_recorded`]), in milliseconds.
const ROUTING_WAIT_MS: u32 = 2000;

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
    /// Runs failed by their deadline, with the error they failed with: a
    /// late result or a late routing of one of them keeps it failed.
    expired: Mutex<HashMap<Uuid, String>>,
    /// The drain key of every connected session, for the drainer's sweep.
    sessions: Mutex<HashMap<Uuid, DrainKey>>,
}

type DrainKey = (String, Vec<WorkerCapability>);

impl Service {
    pub(crate) fn new(shared: Arc<SharedState>) -> Self {
        let (drain, requests) = mpsc::unbounded_channel();
        let cp = Arc::new(Plane {
            shared: shared.clone(),
            drain,
            registering: Mutex::new(()),
            expired: Mutex::default(),
            sessions: Mutex::default(),
        });
        tokio::spawn(drainer(Arc::downgrade(&cp), requests));
        Self {
            inner: ControlPlaneService::new(shared),
            cp,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Routes queued runs, one request at a time (concurrent drains would each
/// route on the same stale in-flight counts). Requests that arrive while a
/// drain runs are merged. Every [`SWEEP`] it also drains for every
/// connected worker, so a run queued in a race with the event that should
/// have routed it (the crate decides to queue a submission, then queues
/// it, with no lock between) waits at most that long. Ends with the
/// server.
async fn drainer(plane: Weak<Plane>, mut requests: mpsc::UnboundedReceiver<DrainKey>) {
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut keys: HashSet<DrainKey> = HashSet::new();
        tokio::select! {
            request = requests.recv() => match request {
                Some(k) => {
                    keys.insert(k);
                }
                None => return,
            },
            _ = sweep.tick() => {
                let Some(cp) = plane.upgrade() else {
                    return;
                };
                keys.extend(lock(&cp.sessions).values().cloned());
            }
        }
        while let Ok(k) = requests.try_recv() {
            keys.insert(k);
        }
        let Some(cp) = plane.upgrade() else {
            return;
        };
        let shared = &cp.shared;
        for (place, caps) in keys {
            shared
                .queue
                .try_drain_for(&place, &caps, &shared.registry, &shared.admission)
                .await;
        }
    }
}

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

/// One worker session: the runs assigned to it and not yet answered.
struct Session {
    id: Uuid,
    node_id: String,
    place: String,
    caps: Vec<WorkerCapability>,
    assigned: Mutex<HashSet<Uuid>>,
    /// The worker's last admission snapshot (from its heartbeats).
    snapshot: Mutex<Option<AdmissionSnapshot>>,
}

impl Session {
    /// Publishes the number of runs assigned to the session as the
    /// worker's in-flight count, which admission routes on.
    fn publish(&self, shared: &SharedState, assigned: usize) {
        let snapshot = lock(&self.snapshot).clone();
        let n = u32::try_from(assigned).unwrap_or(u32::MAX);
        shared.registry.record_heartbeat(self.id, n, snapshot);
    }

    fn assign(&self, shared: &SharedState, run_id: Uuid) {
        let mut assigned = lock(&self.assigned);
        assigned.insert(run_id);
        self.publish(shared, assigned.len());
    }

    fn resolve(&self, shared: &SharedState, run_id: Uuid) {
        let mut assigned = lock(&self.assigned);
        assigned.remove(&run_id);
        self.publish(shared, assigned.len());
    }

    fn drain_key(&self) -> DrainKey {
        (self.place.clone(), self.caps.clone())
    }
}

impl Plane {
    fn request_drain(&self, key: DrainKey) {
        let _ = self.drain.send(key);
    }

    fn expired_error(&self, run_id: Uuid) -> Option<String> {
        lock(&self.expired).get(&run_id).cloned()
    }

    async fn worker_session(
        self: &Arc<Self>,
        identity: Option<PeerIdentity>,
        mut incoming: Streaming<PostcardRequest>,
    ) -> Result<Response<PostcardResponseStream>, Status> {
        let first = incoming
            .next()
            .await
            .ok_or_else(|| Status::failed_precondition("worker session closed before Hello"))?
            .map_err(|e| Status::internal(format!("recv failed: {}", e.message())))?;
        let WorkerToServer::Hello(hello) = decode(&first.postcard_payload, "WorkerToServer")?
        else {
            return Err(Status::failed_precondition(
                "first worker frame must be Hello",
            ));
        };
        validate_envelope_version(hello.envelope_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let place = place_of(identity.as_ref(), hello.place.as_ref());
        let agreement = verified_agreement_pubkey(&hello);
        let mut labels = hello.labels.clone();
        let mut tags = hello.tags.clone();
        blazen_controlplane::seams::trust_sanitizer().sanitize(
            identity.as_ref(),
            &mut labels,
            &mut tags,
        );
        let caps: Vec<WorkerCapability> = hello.capabilities.iter().map(Into::into).collect();
        let (session, out_rx) = self.open(&hello, place, caps, tags, labels, agreement)?;
        tokio::spawn(self.clone().pump(session.clone(), incoming));
        self.request_drain(session.drain_key());
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx).map(|frame| {
            postcard::to_allocvec(&frame)
                .map(|postcard_payload| PostcardResponse { postcard_payload })
                .map_err(|e| Status::internal(format!("encode ServerToWorker: {e}")))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// Registers the worker and starts its forwarder, with Welcome already
    /// queued on the response stream. Nothing here waits: a drain may route
    /// a run to the session the moment it is registered, and the registry's
    /// channel holds one frame, so a second routing waits for the forwarder.
    /// Had this waited between the registration and the forwarder's start
    /// (as sending Welcome through that channel did, when a run got there
    /// first), the drainer would have waited for ever and no queued run
    /// would have been routed again.
    fn open(
        self: &Arc<Self>,
        hello: &WorkerHello,
        place: String,
        caps: Vec<WorkerCapability>,
        tags: std::collections::BTreeMap<String, String>,
        labels: std::collections::BTreeMap<String, String>,
        agreement: Option<[u8; 32]>,
    ) -> Result<(Arc<Session>, mpsc::UnboundedReceiver<ServerToWorker>), Status> {
        // Capacity 1: each frame the crate routes reaches the forwarder
        // (which counts it) before the next one can be sent.
        let (tx, rx) = mpsc::channel::<ServerToWorker>(1);
        let id = {
            let _guard = lock(&self.registering);
            if self
                .shared
                .registry
                .session_for_node(&hello.node_id)
                .is_some()
            {
                return Err(Status::already_exists(format!(
                    "node id `{}` is already connected to this control plane",
                    hello.node_id
                )));
            }
            self.shared.registry.register(
                hello.node_id.clone(),
                place.clone(),
                caps.iter().cloned().collect(),
                tags,
                (&hello.admission).into(),
                tx,
                labels,
                hello
                    .taints
                    .iter()
                    .cloned()
                    .map(WorkerTaint::from)
                    .collect(),
                hello.descriptors.clone(),
            )
        };
        self.shared.registry.set_agreement_pubkey(id, agreement);
        let negotiated = hello
            .supported_envelope_versions
            .iter()
            .copied()
            .filter(|v| *v <= ENVELOPE_VERSION)
            .max()
            .unwrap_or(ENVELOPE_VERSION);
        let welcome = ServerToWorker::Welcome(Welcome {
            envelope_version: ENVELOPE_VERSION,
            session_id: id,
            negotiated_envelope_version: negotiated,
        });
        // First on the stream: the forwarder, which moves every routed
        // frame, starts below.
        let (out_tx, out_rx) = mpsc::unbounded_channel::<ServerToWorker>();
        let _ = out_tx.send(welcome);
        let session = Arc::new(Session {
            id,
            node_id: hello.node_id.clone(),
            place,
            caps,
            assigned: Mutex::default(),
            snapshot: Mutex::default(),
        });
        lock(&self.sessions).insert(id, session.drain_key());
        tokio::spawn(self.clone().forward(session.clone(), rx, out_tx));
        Ok((session, out_rx))
    }

    /// Moves frames from the registry's channel to the response stream,
    /// counting assignments. Runs whose deadline passed while they were
    /// queued are not sent; they stay failed.
    async fn forward(
        self: Arc<Self>,
        session: Arc<Session>,
        mut rx: mpsc::Receiver<ServerToWorker>,
        out: mpsc::UnboundedSender<ServerToWorker>,
    ) {
        while let Some(frame) = rx.recv().await {
            let run = match &frame {
                ServerToWorker::Assignment(a) => Some(a.run_id),
                ServerToWorker::Offer(o) => Some(o.assignment.run_id),
                _ => None,
            };
            if let Some(run_id) = run {
                if let Some(error) = self.expired_error(run_id) {
                    tokio::spawn(self.clone().keep_expired(run_id, error));
                    continue;
                }
                session.assign(&self.shared, run_id);
            }
            if out.send(frame).is_err() {
                break;
            }
        }
    }

    /// A run failed by its deadline was routed later (the crate keeps it
    /// in its pending queue): once the routing has marked it RUNNING, mark
    /// it failed again.
    async fn keep_expired(self: Arc<Self>, run_id: Uuid, error: String) {
        for _ in 0..100 {
            let status = self.shared.queue.describe(run_id).map(|s| s.status);
            if status == Some(RunStatus::Running) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.shared.queue.mark_failed(run_id, error).await;
        lock(&self.expired).remove(&run_id);
    }

    /// Reads the worker's frames until its stream ends, then re-queues its
    /// runs.
    async fn pump(
        self: Arc<Self>,
        session: Arc<Session>,
        mut incoming: Streaming<PostcardRequest>,
    ) {
        while let Some(Ok(req)) = incoming.next().await {
            let Ok(frame) = postcard::from_bytes::<WorkerToServer>(&req.postcard_payload) else {
                continue;
            };
            self.frame(&session, frame).await;
        }
        self.shared.registry.unregister(session.id);
        lock(&self.sessions).remove(&session.id);
        let lost = self.still_running(&session);
        self.shared.queue.surrender_session(session.id).await;
        self.announce_requeued(&session, &lost);
        self.request_drain(session.drain_key());
        tokio::time::sleep(RESWEEP).await;
        let late = self.still_running(&session);
        self.shared.queue.surrender_session(session.id).await;
        self.announce_requeued(&session, &late);
        self.request_drain(session.drain_key());
    }

    /// Takes the session's runs that are still RUNNING on it (those a
    /// surrender puts back in the queue).
    fn still_running(&self, session: &Session) -> Vec<Uuid> {
        let runs = std::mem::take(&mut *lock(&session.assigned));
        runs.into_iter()
            .filter(|r| {
                self.shared.queue.describe(*r).is_some_and(|s| {
                    s.status == RunStatus::Running
                        && s.assigned_to.as_deref() == Some(session.node_id.as_str())
                })
            })
            .collect()
    }

    /// Emits `status.requeued` `{"node_id", "reason": "worker_lost"}` for
    /// each of `runs`.
    fn announce_requeued(&self, session: &Session, runs: &[Uuid]) {
        for run_id in runs {
            let _ = self.shared.events.send(RunEvent {
                run_id: *run_id,
                event_type: "status.requeued".to_string(),
                data: serde_json::json!({"node_id": session.node_id, "reason": "worker_lost"}),
                timestamp_ms: now_ms(),
            });
        }
    }

    async fn frame(&self, session: &Session, frame: WorkerToServer) {
        let queue = &self.shared.queue;
        match frame {
            WorkerToServer::Hello(_) | WorkerToServer::OfferDecision(_) => {}
            WorkerToServer::Heartbeat(hb) => {
                *lock(&session.snapshot) = hb.admission_snapshot.as_ref().map(Into::into);
                let n = lock(&session.assigned).len();
                session.publish(&self.shared, n);
            }
            WorkerToServer::Result(r) => {
                session.resolve(&self.shared, r.run_id);
                self.routing_recorded(r.run_id).await;
                let expired = lock(&self.expired).remove(&r.run_id);
                let terminal = queue
                    .describe(r.run_id)
                    .is_none_or(|s| is_terminal(s.status));
                match (expired, r.status) {
                    (Some(error), _) => {
                        if !terminal {
                            queue.mark_failed(r.run_id, error).await;
                        }
                    }
                    _ if terminal => {}
                    (None, AssignmentStatus::Completed) => {
                        let output = serde_json::from_slice(&r.output_json)
                            .unwrap_or(serde_json::Value::Null);
                        queue.mark_completed(r.run_id, output).await;
                    }
                    (None, AssignmentStatus::Failed) => {
                        let error = match r.error.as_deref() {
                            // The crate worker's own deadline (counted from
                            // when it received the run).
                            Some("deadline exceeded") => ErrorKind::Timeout.tag(
                                "the run's deadline_ms passed while it was RUNNING \
                                 (reported by its worker)",
                            ),
                            Some(e) => e.to_string(),
                            None => ErrorKind::Workflow.tag("the worker reported no error"),
                        };
                        queue.mark_failed(r.run_id, error).await;
                    }
                    (None, AssignmentStatus::Cancelled) => queue.mark_cancelled(r.run_id).await,
                }
                self.request_drain(session.drain_key());
            }
            WorkerToServer::Event(e) => {
                queue.record_event(e.run_id).await;
                let data = serde_json::from_slice(&e.data_json).unwrap_or(serde_json::Value::Null);
                let _ = self.shared.events.send(RunEvent {
                    run_id: e.run_id,
                    event_type: e.event_type,
                    data,
                    timestamp_ms: e.timestamp_ms,
                });
            }
            WorkerToServer::KeyRequest(k) => self.key_request(session, k).await,
        }
    }

    /// Waits (briefly) until the routing of `run_id` has been recorded. The
    /// crate records a run as RUNNING only after the assignment has been
    /// sent, so a fast worker's result can arrive first; marking it then
    /// would be undone by that late RUNNING, leaving the run RUNNING for
    /// ever.
    async fn routing_recorded(&self, run_id: Uuid) {
        for i in 0..ROUTING_WAIT_MS {
            let pending = self
                .shared
                .queue
                .describe(run_id)
                .is_some_and(|s| s.status == RunStatus::Pending);
            if !pending {
                return;
            }
            if i < 10 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Answers a provider-key request from the worker's place's key store
    /// (no key when the store has none or fails).
    async fn key_request(&self, session: &Session, req: KeyRequest) {
        let Some(handle) = self.shared.registry.get(session.id) else {
            return;
        };
        let key = self
            .shared
            .key_store
            .get_key(&handle.place, &req.provider)
            .await
            .ok()
            .flatten();
        let (key, ttl_secs, version) = match key {
            Some(k) => (Some(k.value), k.ttl_secs, k.version),
            None => (None, None, 0),
        };
        let response = ServerToWorker::KeyResponse(KeyResponse {
            envelope_version: ENVELOPE_VERSION,
            request_id: req.request_id,
            key,
            ttl_secs,
            version,
        });
        let _ = handle.outbound.send(response).await;
    }

    // ---- deadlines --------------------------------------------------------

    /// Fails `run_id` with a Timeout error once `deadline_ms` has passed
    /// since submission, unless it has ended by then; a running run's
    /// worker is told to cancel it.
    async fn enforce_deadline(plane: Weak<Self>, run_id: Uuid, deadline_ms: u64) {
        tokio::time::sleep(Duration::from_millis(deadline_ms)).await;
        let Some(cp) = plane.upgrade() else {
            return;
        };
        let Some(snap) = cp.shared.queue.describe(run_id) else {
            return;
        };
        if is_terminal(snap.status) {
            return;
        }
        let state = if snap.status == RunStatus::Pending {
            "PENDING"
        } else {
            "RUNNING"
        };
        let error = ErrorKind::Timeout.tag(&format!(
            "the run's deadline_ms ({deadline_ms}) passed while it was {state}"
        ));
        lock(&cp.expired).insert(run_id, error.clone());
        if let Some(node) = snap.assigned_to.as_deref() {
            let session = cp.shared.registry.session_for_node(node);
            if let Some(handle) = session.and_then(|s| cp.shared.registry.get(s)) {
                let cancel = ServerToWorker::Cancel(CancelInstruction {
                    envelope_version: ENVELOPE_VERSION,
                    run_id,
                });
                let _ = handle.outbound.send(cancel).await;
            }
        }
        cp.shared.queue.mark_failed(run_id, error).await;
    }
}

/// The worker's agreement key when the installed verifier accepts its
/// binding (the crate's rule at registration).
fn verified_agreement_pubkey(hello: &WorkerHello) -> Option<[u8; 32]> {
    let (Some(id), Some(pk), Some(sig)) = (
        hello.identity_pubkey,
        hello.agreement_pubkey,
        hello.agreement_sig,
    ) else {
        return None;
    };
    blazen_controlplane::seams::agreement_verifier()
        .verify(&id, &pk, &sig)
        .then_some(pk)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---- the service ----------------------------------------------------------

impl Service {
    /// With accurate in-flight counts a submission finds every matching
    /// worker saturated far more often than with the crate's stale ones;
    /// the crate would then refuse it when `wait_for_worker` is false.
    /// Such a submission is queued instead (as it was before): only a
    /// submission no connected worker could ever take is refused.
    fn all_saturated(
        &self,
        place: &str,
        cap: &WorkerCapability,
        tags: &[String],
        hint: Option<&ResourceHint>,
    ) -> bool {
        let selector = NodeSelector::default();
        let route = RouteRequest {
            place,
            required_capability: cap,
            required_tags: tags,
            resource_hint: hint,
            selector: &selector,
            tolerations: &[],
            input: None,
        };
        let shared = &self.cp.shared;
        matches!(
            shared.admission.route(&shared.registry, &route),
            Decision::NoCandidate {
                reason: NoCandidateReason::Saturated,
            }
        )
    }

    /// The crate's `handle_submit_workflow` (`rpc.rs:41-131`), rebuilt to
    /// queue runs at [`QUEUE_PRIORITY`], to queue rather than refuse a
    /// submission that only finds busy workers, and to start the run's
    /// deadline.
    async fn submit(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        let req: SubmitRequest = decode(&request.get_ref().postcard_payload, "SubmitRequest")?;
        validate_envelope_version(req.envelope_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let place = place_of(identity(&request).as_ref(), req.place.as_ref());
        let core = req
            .to_core()
            .map_err(|e| Status::invalid_argument(format!("decode input_json: {e}")))?;
        let run_id = Uuid::new_v4();
        let assignment = Assignment {
            envelope_version: ENVELOPE_VERSION,
            run_id,
            parent_run_id: None,
            workflow_name: core.workflow_name.clone(),
            workflow_version: core.workflow_version,
            input_json: req.input_json,
            deadline_ms: core.deadline_ms,
            attempt: 0,
            resource_hint: core.resource_hint.as_ref().map(Into::into),
            priority: QUEUE_PRIORITY,
            selector: NodeSelectorWire::default(),
            tolerations: Vec::new(),
        };
        let cap = WorkerCapability {
            kind: format!("workflow:{}", core.workflow_name),
            version: core.workflow_version.unwrap_or(0),
        };
        let tags = core.required_tags;
        let wait = core.wait_for_worker
            || self.all_saturated(&place, &cap, &tags, core.resource_hint.as_ref());
        let shared = &self.cp.shared;
        let outcome = shared
            .queue
            .submit(
                run_id,
                place.clone(),
                assignment,
                cap,
                tags,
                wait,
                &shared.registry,
                &shared.admission,
            )
            .await;
        if let SubmitOutcome::Rejected { reason } = outcome {
            return Err(match reason {
                ControlPlaneError::NoMatchingWorker { .. } => {
                    Status::failed_precondition(reason.to_string())
                }
                ControlPlaneError::MissingVramHint => Status::invalid_argument(reason.to_string()),
                other => Status::internal(other.to_string()),
            });
        }
        if let Some(deadline_ms) = core.deadline_ms {
            let plane = Arc::downgrade(&self.cp);
            tokio::spawn(Plane::enforce_deadline(plane, run_id, deadline_ms));
        }
        let snap = shared
            .queue
            .describe(run_id)
            .ok_or_else(|| Status::internal("run state missing after submit"))?;
        let mut wire = RunStateSnapshotWire::from_core(&snap)
            .map_err(|e| Status::internal(format!("encode run state: {e}")))?;
        wire.place = place;
        let postcard_payload = postcard::to_allocvec(&wire)
            .map_err(|e| Status::internal(format!("encode response: {e}")))?;
        Ok(Response::new(PostcardResponse { postcard_payload }))
    }
}

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
        self.inner.cancel_workflow(request).await
    }

    async fn describe_workflow(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        self.inner.describe_workflow(request).await
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
        self.inner.respond_to_input(request).await
    }

    async fn subscribe_run_events(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<Self::SubscribeRunEventsStream>, Status> {
        self.inner.subscribe_run_events(request).await
    }

    async fn subscribe_all(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<Self::SubscribeAllStream>, Status> {
        self.inner.subscribe_all(request).await
    }
}

// ---- the store ------------------------------------------------------------

/// The queue's persistence seam, keeping nothing. The embedded control
/// plane has no durable store (the crate's default memory store is lost
/// with the process too), and the crate's memory store only ever appends
/// to its pending list at run time (`dequeue_pending` is called only by
/// the cold-start recovery), so it grows by one entry per routing attempt
/// that finds every worker busy. The queue itself keeps the runs.
#[derive(Debug)]
pub(crate) struct Volatile;

#[async_trait::async_trait]
impl AssignmentStore for Volatile {
    async fn put_assignment(&self, _: Uuid, _: &Assignment) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn get_assignment(&self, _: Uuid) -> Result<Option<Assignment>, ControlPlaneError> {
        Ok(None)
    }

    async fn delete_assignment(&self, _: Uuid) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn put_state(
        &self,
        _: Uuid,
        _: &RunStateSnapshot,
        _: Option<Duration>,
    ) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn get_state(&self, _: Uuid) -> Result<Option<RunStateSnapshot>, ControlPlaneError> {
        Ok(None)
    }

    async fn enqueue_pending(
        &self,
        _: &WorkerCapability,
        _: Uuid,
        _: &[String],
    ) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn dequeue_pending(
        &self,
        _: &WorkerCapability,
    ) -> Result<Option<(Uuid, Vec<String>)>, ControlPlaneError> {
        Ok(None)
    }

    async fn list_pending_capabilities(&self) -> Result<Vec<WorkerCapability>, ControlPlaneError> {
        Ok(Vec::new())
    }

    async fn claim_inflight(&self, _: Uuid, _: Uuid) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn release_inflight(&self, _: Uuid) -> Result<Vec<Uuid>, ControlPlaneError> {
        Ok(Vec::new())
    }

    async fn list_orphaned_inflight(
        &self,
        _: &HashSet<Uuid>,
    ) -> Result<Vec<Uuid>, ControlPlaneError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blazen_controlplane::protocol::{AdmissionModeWire, CapabilityWire};
    use blazen_controlplane::server::{
        admission::Admission, key_store, queue::AssignmentQueue, registry::WorkerRegistry,
    };

    /// A drain may route runs to a session the moment it is registered,
    /// before its handler has returned the response stream. That routing
    /// must not wait on the handler (the drainer once waited for ever on a
    /// session whose Welcome was queued behind a run, and no queued run
    /// was routed again), and Welcome must still be the first frame.
    #[tokio::test(flavor = "current_thread")]
    async fn routing_to_a_session_just_opened_does_not_wait_on_it() {
        let (events, _) = tokio::sync::broadcast::channel(16);
        let shared = Arc::new(SharedState {
            registry: WorkerRegistry::new(),
            queue: AssignmentQueue::with_events_and_store(events.clone(), Arc::new(Volatile)),
            admission: Admission::new(),
            node_id: "test".to_string(),
            events,
            key_store: key_store::default_key_store(),
        });
        let service = Service::new(shared.clone());
        let cap = WorkerCapability {
            kind: "workflow:w".to_string(),
            version: 0,
        };
        let place = DEFAULT_PLACE.to_string();
        let runs = 3;
        for _ in 0..runs {
            let run_id = Uuid::new_v4();
            let assignment = Assignment {
                envelope_version: ENVELOPE_VERSION,
                run_id,
                parent_run_id: None,
                workflow_name: "w".to_string(),
                workflow_version: None,
                input_json: b"{}".to_vec(),
                deadline_ms: None,
                attempt: 0,
                resource_hint: None,
                priority: QUEUE_PRIORITY,
                selector: NodeSelectorWire::default(),
                tolerations: Vec::new(),
            };
            let outcome = shared
                .queue
                .submit(
                    run_id,
                    place.clone(),
                    assignment,
                    cap.clone(),
                    Vec::new(),
                    true,
                    &shared.registry,
                    &shared.admission,
                )
                .await;
            assert!(matches!(outcome, SubmitOutcome::Queued { .. }));
        }
        let hello = WorkerHello {
            envelope_version: ENVELOPE_VERSION,
            node_id: "n".to_string(),
            capabilities: vec![CapabilityWire {
                kind: cap.kind.clone(),
                version: 0,
            }],
            tags: Default::default(),
            admission: AdmissionModeWire::Fixed { max_in_flight: 4 },
            supported_envelope_versions: vec![ENVELOPE_VERSION],
            labels: Default::default(),
            taints: Vec::new(),
            descriptors: Vec::new(),
            place: None,
            identity_pubkey: None,
            agreement_pubkey: None,
            agreement_sig: None,
        };
        let (session, mut out) = service
            .cp
            .open(
                &hello,
                place.clone(),
                vec![cap.clone()],
                Default::default(),
                Default::default(),
                None,
            )
            .unwrap();
        // The session's handler has not run since: route now.
        let drain = shared.queue.try_drain_for(
            &place,
            std::slice::from_ref(&cap),
            &shared.registry,
            &shared.admission,
        );
        tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .expect("routing waited on the session's handler");
        assert!(matches!(out.recv().await, Some(ServerToWorker::Welcome(_))));
        for _ in 0..runs {
            assert!(matches!(
                out.recv().await,
                Some(ServerToWorker::Assignment(_))
            ));
        }
        assert_eq!(lock(&session.assigned).len(), runs);
    }
}
