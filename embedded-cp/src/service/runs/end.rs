//! A run's end: recorded in the store, then announced.

use blazen_controlplane::server::store::AssignmentStore;
use blazen_core::distributed::{RunEvent, RunStatus};
use uuid::Uuid;

use crate::lock;

use super::super::{is_terminal, now_ms};
use super::{Ending, Plane};

impl Plane {
    /// Ends a run that has not ended: records the ending in the store, then
    /// announces it. Returns false (and does nothing) when it had ended.
    pub(in crate::service) async fn finish(&self, run_id: Uuid, ending: Ending) -> bool {
        let (snap, routed) = {
            let mut t = lock(&self.runs.table);
            let Some(run) = t.runs.get_mut(&run_id) else {
                return false;
            };
            if is_terminal(run.snap.status) {
                return false;
            }
            let snap = &mut run.snap;
            snap.completed_at_ms = Some(now_ms());
            match &ending {
                Ending::Completed(output) => {
                    snap.status = RunStatus::Completed;
                    snap.output = Some(output.clone());
                }
                Ending::Failed(error) => {
                    snap.status = RunStatus::Failed;
                    snap.error = Some(error.clone());
                }
                Ending::Cancelled => snap.status = RunStatus::Cancelled,
            }
            run.assignment = None;
            run.session = None;
            (run.snap.clone(), run.routed.take())
        };
        if let Some(routed) = routed {
            let _ = routed.await;
        }
        if let Some(store) = &self.store {
            let (state, deleted) = tokio::join!(
                store.put_state(run_id, &snap, None),
                store.delete_assignment(run_id)
            );
            for e in [state.err(), deleted.err()].into_iter().flatten() {
                tracing::warn!(%run_id, error = %e, "cannot record the run's end in the store");
            }
        }
        let (event, data) = match ending {
            Ending::Completed(output) => (
                crate::EventType::StatusCompleted,
                serde_json::json!({ "output": output }),
            ),
            Ending::Failed(error) => (
                crate::EventType::StatusFailed,
                serde_json::json!({ "error": error }),
            ),
            Ending::Cancelled => (crate::EventType::StatusCancelled, serde_json::json!({})),
        };
        self.publish(run_id, event, data);
        true
    }

    /// Sends a status event on the event bus.
    pub(in crate::service) fn publish(
        &self,
        run_id: Uuid,
        event: crate::EventType,
        data: serde_json::Value,
    ) {
        let _ = self.shared.events.send(RunEvent {
            run_id,
            event_type: event.to_string(),
            data,
            timestamp_ms: now_ms(),
        });
    }
}
