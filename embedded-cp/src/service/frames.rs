//! What a worker sends in its session: heartbeats, results, events and
//! key requests.

use std::sync::Arc;
use std::time::Duration;

use blazen_controlplane::protocol::{
    AssignmentStatus, KeyRequest, KeyResponse, ServerToWorker, WorkerToServer, ENVELOPE_VERSION,
};
use blazen_core::distributed::{RunEvent, RunStatus};
use uuid::Uuid;

use crate::{lock, RunErrorKind};

use super::session::Session;
use super::*;

impl Plane {
    /// A run failed by its deadline was routed later (the crate keeps it
    /// in its pending queue): once the routing has marked it RUNNING, mark
    /// it failed again.
    pub(super) async fn keep_expired(self: Arc<Self>, run_id: Uuid, error: String) {
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

    pub(super) async fn frame(&self, session: &Session, frame: WorkerToServer) {
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
                            Some("deadline exceeded") => RunErrorKind::Timeout.tag(
                                "the run's deadline_ms passed while it was RUNNING \
                                 (reported by its worker)",
                            ),
                            Some(e) => e.to_string(),
                            None => RunErrorKind::Workflow.tag("the worker reported no error"),
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
    pub(super) async fn routing_recorded(&self, run_id: Uuid) {
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
