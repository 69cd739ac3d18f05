//! A run's end: marked at once in memory, then recorded in the store, then
//! announced.

use std::sync::Arc;

use blazen_controlplane::server::store::AssignmentStore;
use blazen_core::distributed::{RunEvent, RunStateSnapshot, RunStatus};
use uuid::Uuid;

use crate::lock;
use crate::store::{Durable, Join};

use super::super::bus::Bus;
use super::super::{is_terminal, now_ms};
use super::{Ending, Plane};

/// A run just marked ended in memory, whose end is still to be recorded
/// and announced ([`Ended::record`]).
pub(in crate::service) struct Ended {
    snap: RunStateSnapshot,
    ending: Ending,
}

impl Plane {
    /// Ends a run that has not ended: records the ending in the store, then
    /// announces it. Returns false (and does nothing) when it had ended.
    pub(in crate::service) async fn finish(&self, run_id: Uuid, ending: Ending) -> bool {
        match self.end_now(run_id, ending) {
            Some(ended) => {
                ended.record(self.store.clone(), self.bus.clone()).await;
                true
            }
            None => false,
        }
    }

    /// Marks a run that has not ended as ended, in memory (so nothing
    /// re-queues or re-routes it from now on); `None` when it had ended.
    pub(in crate::service) fn end_now(&self, run_id: Uuid, ending: Ending) -> Option<Ended> {
        let mut t = lock(&self.runs.table);
        let run = t.runs.get_mut(&run_id)?;
        if is_terminal(run.snap.status) {
            return None;
        }
        if run.snap.status == RunStatus::Pending {
            // It leaves its queue when it reaches the front: move the
            // queue now, in case it was holding the runs behind it.
            self.request_drain((run.place.clone(), vec![run.cap.clone()]));
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
        let ended = Ended {
            snap: run.snap.clone(),
            ending,
        };
        t.ended(run_id, super::KEEP_ENDED);
        Some(ended)
    }
}

impl Ended {
    /// Records the end in the store (its writes are queued behind those of
    /// its routing), then publishes its terminal event. Owns what it
    /// needs, so a session can record several results at once.
    pub(in crate::service) async fn record(self, store: Option<Arc<Durable>>, events: Bus) {
        let run_id = self.snap.run_id;
        if let Some(store) = &store {
            let (state, deleted) = tokio::join!(
                store.put_state(run_id, &self.snap, None),
                store.delete_assignment(run_id)
            );
            for e in [state.err(), deleted.err()].into_iter().flatten() {
                tracing::warn!(%run_id, error = %e, "cannot record the run's end in the store");
            }
        }
        events.send(terminal_event(run_id, self.ending));
    }

    /// As [`Ended::record`], with no task waiting: the store's writer
    /// publishes the terminal event once the end is recorded.
    pub(in crate::service) fn record_then(self, store: &Durable, events: Bus) {
        let run_id = self.snap.run_id;
        let ending = self.ending;
        let announce = Join::new(Box::new(move |recorded: Result<(), String>| {
            if let Err(e) = recorded {
                tracing::warn!(%run_id, error = %e, "cannot record the run's end in the store");
            }
            events.send(terminal_event(run_id, ending));
        }));
        if let Err(e) = store.record_end(run_id, &self.snap, &announce) {
            announce.run(Err(e.to_string()));
        }
    }
}

/// The terminal status event of a run that ended so, stamped now.
fn terminal_event(run_id: Uuid, ending: Ending) -> RunEvent {
    let (event, data) = match ending {
        Ending::Completed(output) => (
            crate::EventType::StatusCompleted,
            crate::common::one_field("output", output),
        ),
        Ending::Failed(error) => (
            crate::EventType::StatusFailed,
            crate::common::one_field("error", serde_json::Value::String(error)),
        ),
        Ending::Cancelled => (
            crate::EventType::StatusCancelled,
            serde_json::Value::Object(serde_json::Map::new()),
        ),
    };
    status_event(run_id, event, data)
}

/// A status event of `run_id`, stamped now.
pub(super) fn status_event(
    run_id: Uuid,
    event: crate::EventType,
    data: serde_json::Value,
) -> RunEvent {
    RunEvent {
        run_id,
        event_type: event.to_string(),
        data,
        timestamp_ms: now_ms(),
    }
}

impl Plane {
    /// Sends a status event on the event bus.
    pub(in crate::service) fn publish(
        &self,
        run_id: Uuid,
        event: crate::EventType,
        data: serde_json::Value,
    ) {
        self.bus.send(status_event(run_id, event, data));
    }
}
