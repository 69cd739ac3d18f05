//! What a worker sends in its session: heartbeats, results, events and
//! key requests.

use crate::{lock, RunErrorKind};
use blazen_controlplane::protocol::{
    AssignmentStatus, KeyRequest, KeyResponse, ServerToWorker, WorkerToServer, ENVELOPE_VERSION,
};
use blazen_core::distributed::RunEvent;

use super::runs::Ending;
use super::session::Session;
use super::*;

impl Plane {
    pub(super) async fn frame(&self, session: &Session, frame: WorkerToServer) {
        match frame {
            WorkerToServer::Hello(_) | WorkerToServer::OfferDecision(_) => {}
            WorkerToServer::Heartbeat(hb) => {
                *lock(&session.snapshot) = hb.admission_snapshot.as_ref().map(Into::into);
                let n = lock(&session.assigned).len();
                session.publish(&self.shared, n);
            }
            WorkerToServer::Result(r) => {
                session.resolve(&self.shared, r.run_id);
                if !self.is_on(r.run_id, session.id) {
                    // Not this worker's run (any more).
                    self.request_drain(session.drain_key());
                    return;
                }
                let ending = match r.status {
                    AssignmentStatus::Completed => Ending::Completed(
                        serde_json::from_slice(&r.output_json).unwrap_or(serde_json::Value::Null),
                    ),
                    AssignmentStatus::Failed => Ending::Failed(match r.error.as_deref() {
                        // The crate worker's own deadline (counted from
                        // when it received the run).
                        Some("deadline exceeded") => RunErrorKind::Timeout.tag(
                            "the run's deadline_ms passed while it was RUNNING \
                             (reported by its worker)",
                        ),
                        Some(e) => e.to_string(),
                        None => RunErrorKind::Workflow.tag("the worker reported no error"),
                    }),
                    AssignmentStatus::Cancelled => Ending::Cancelled,
                };
                // A result for a run that has ended (past its deadline,
                // cancelled) changes nothing. The end is marked now; its
                // store writes and event follow without holding up the
                // session's next frames (with a store, the store's writer
                // announces it once it is recorded).
                if let Some(ended) = self.end_now(r.run_id, ending) {
                    let events = self.bus.clone();
                    match &self.store {
                        Some(store) => ended.record_then(store, events),
                        None => ended.record(None, events).await,
                    }
                }
                self.request_drain(session.drain_key());
            }
            WorkerToServer::Event(e) => {
                self.touched(e.run_id);
                let data = serde_json::from_slice(&e.data_json).unwrap_or(serde_json::Value::Null);
                self.bus.send(RunEvent {
                    run_id: e.run_id,
                    event_type: e.event_type,
                    data,
                    timestamp_ms: e.timestamp_ms,
                });
            }
            WorkerToServer::KeyRequest(k) => self.key_request(session, k).await,
        }
    }

    /// Answers a provider-key request from the worker's place's key store
    /// (no key when the store has none or fails).
    pub(super) async fn key_request(&self, session: &Session, req: KeyRequest) {
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
}
