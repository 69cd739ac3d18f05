//! The worker session, rebuilt from the crate's public pieces (see the
//! parent module for what it does differently).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use blazen_controlplane::auth::PeerIdentity;
use blazen_controlplane::pb::{PostcardRequest, PostcardResponse};
use blazen_controlplane::protocol::{
    validate_envelope_version, AdmissionModeWire, ServerToWorker, Welcome, WorkerHello,
    WorkerToServer, ENVELOPE_VERSION,
};
use blazen_controlplane::server::service::PostcardResponseStream;
use blazen_controlplane::server::SharedState;
use blazen_core::distributed::{AdmissionSnapshot, WorkerCapability, WorkerTaint};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tonic::{Response, Status, Streaming};
use uuid::Uuid;

use crate::lock;

use super::*;

/// One worker session: the runs assigned to it and not yet answered.
pub(super) struct Session {
    pub(super) id: Uuid,
    pub(super) node_id: String,
    pub(super) place: String,
    pub(super) caps: Vec<WorkerCapability>,
    pub(super) assigned: Mutex<HashSet<Uuid>>,
    /// The worker's last admission snapshot (from its heartbeats).
    pub(super) snapshot: Mutex<Option<AdmissionSnapshot>>,
    /// Set once a Drain instruction has been forwarded to the worker.
    pub(super) drained: std::sync::atomic::AtomicBool,
    /// The response stream, for the frame that ends a drained session.
    pub(super) out: mpsc::UnboundedSender<ServerToWorker>,
    /// Its `max_in_flight` when its admission is a fixed one (admission
    /// then finds it full when `assigned` holds that many runs).
    pub(super) max_in_flight: Option<usize>,
}

impl Session {
    /// Publishes the number of runs assigned to the session as the
    /// worker's in-flight count, which admission routes on.
    pub(super) fn publish(&self, shared: &SharedState, assigned: usize) {
        let snapshot = lock(&self.snapshot).clone();
        let n = u32::try_from(assigned).unwrap_or(u32::MAX);
        shared.registry.record_heartbeat(self.id, n, snapshot);
    }

    pub(super) fn assign(&self, shared: &SharedState, run_id: Uuid) {
        let mut assigned = lock(&self.assigned);
        assigned.insert(run_id);
        self.publish(shared, assigned.len());
    }

    pub(super) fn resolve(&self, shared: &SharedState, run_id: Uuid) {
        let mut assigned = lock(&self.assigned);
        assigned.remove(&run_id);
        self.publish(shared, assigned.len());
        if assigned.is_empty() && self.drained.load(std::sync::atomic::Ordering::SeqCst) {
            self.wake_drained();
        }
    }

    /// The crate's worker ends a drained session only when it reads a
    /// frame after its last run finished (it checks "drained and idle"
    /// after each inbound frame), so a drain that found a run in flight
    /// would leave `run` waiting for ever (docs/upstream.md 13). A frame it
    /// ignores (an input response nobody asked for) makes it look again.
    /// The worker lowers its count just after sending the result, so a
    /// second nudge follows a moment later in case the first one won.
    fn wake_drained(&self) {
        let nudge = || {
            ServerToWorker::InputResponse(blazen_controlplane::protocol::InputResponse {
                envelope_version: ENVELOPE_VERSION,
                run_id: Uuid::nil(),
                request_id: String::new(),
                response_json: b"null".to_vec(),
            })
        };
        let _ = self.out.send(nudge());
        let out = self.out.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let _ = out.send(nudge());
        });
    }

    /// Whether admission would find this worker full: a fixed
    /// `max_in_flight` that its assigned runs reach (admission routes on
    /// the count [`Session::publish`] gives it, which is this one).
    pub(super) fn is_full(&self) -> bool {
        self.max_in_flight
            .is_some_and(|most| lock(&self.assigned).len() >= most)
    }

    pub(super) fn drain_key(&self) -> DrainKey {
        (self.place.clone(), self.caps.clone())
    }
}

impl Plane {
    pub(super) fn request_drain(&self, key: DrainKey) {
        let _ = self.drain.send(key);
    }

    pub(super) async fn worker_session(
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
            crate::common::postcard(&frame)
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
    pub(super) fn open(
        self: &Arc<Self>,
        hello: &WorkerHello,
        place: String,
        caps: Vec<WorkerCapability>,
        tags: std::collections::BTreeMap<String, String>,
        labels: std::collections::BTreeMap<String, String>,
        agreement: Option<[u8; 32]>,
    ) -> Result<(Arc<Session>, mpsc::UnboundedReceiver<ServerToWorker>), Status> {
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
            drained: Default::default(),
            out: out_tx.clone(),
            max_in_flight: match hello.admission {
                AdmissionModeWire::Fixed { max_in_flight } => {
                    Some(usize::try_from(max_in_flight).unwrap_or(usize::MAX))
                }
                _ => None,
            },
        });
        lock(&self.sessions).insert(id, session.clone());
        tokio::spawn(self.clone().forward(session.clone(), rx, out_tx));
        Ok((session, out_rx))
    }

    /// Moves the frames the crate sends through the registry's channel (a
    /// drain, a key response) to the response stream. Assignments do not
    /// come this way: the dispatcher sends them (`runs`).
    pub(super) async fn forward(
        self: Arc<Self>,
        session: Arc<Session>,
        mut rx: mpsc::Receiver<ServerToWorker>,
        out: mpsc::UnboundedSender<ServerToWorker>,
    ) {
        while let Some(frame) = rx.recv().await {
            if matches!(frame, ServerToWorker::Drain(_)) {
                session
                    .drained
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if out.send(frame).is_err() {
                break;
            }
        }
    }

    /// Reads the worker's frames until its stream ends, then re-queues its
    /// runs.
    pub(super) async fn pump(
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
        self.surrender(&session).await;
        self.announce_orphans(&session);
        tokio::time::sleep(RESWEEP).await;
        self.surrender(&session).await;
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

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
