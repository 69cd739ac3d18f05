//! A worker session that ended: its runs go back to the queue with a
//! `status.requeued` event each, except a run that has lost its worker more
//! than `max_requeues` times, which fails instead (no run a worker dies on
//! can loop for ever).

use blazen_controlplane::server::store::AssignmentStore;
use blazen_core::distributed::{RunEvent, RunStatus};
use uuid::Uuid;

use crate::{lock, RunErrorKind};

use super::session::Session;
use super::{now_ms, Plane};

impl Plane {
    /// Puts the runs still RUNNING on an ended session back in the queue,
    /// except those lost more than `max_requeues` times: those fail.
    pub(super) async fn surrender(&self, session: &Session) {
        let mut lost = self.still_running(session);
        let mut given_up = Vec::new();
        lost.retain(|run_id| {
            let n = self.journal.requeued(*run_id);
            if n > self.max_requeues {
                given_up.push((*run_id, n));
            }
            n <= self.max_requeues
        });
        for (run_id, n) in given_up {
            let error = RunErrorKind::Workflow.tag(&format!(
                "the run lost its worker {n} times (the last: node `{}`); a run is re-queued \
                 at most max_requeues ({}) times",
                session.node_id, self.max_requeues
            ));
            tracing::warn!(%run_id, node_id = %session.node_id, "{error}");
            self.shared.queue.mark_failed(run_id, error).await;
        }
        self.shared.queue.surrender_session(session.id).await;
        self.remember_attempts(&lost).await;
        self.announce_requeued(session, &lost);
        self.request_drain(session.drain_key());
    }

    /// With a store, each re-queued run's stored assignment carries its
    /// next attempt, so a control plane that takes over the store after a
    /// restart counts the losses before it too.
    async fn remember_attempts(&self, runs: &[Uuid]) {
        let Some(store) = &self.store else {
            return;
        };
        for run_id in runs {
            let attempt = self.journal.requeues(*run_id);
            if let Ok(Some(mut a)) = store.get_assignment(*run_id).await {
                if a.attempt < attempt {
                    a.attempt = attempt;
                    if let Err(e) = store.put_assignment(*run_id, &a).await {
                        tracing::warn!(%run_id, error = %e, "cannot record the run's attempt");
                    }
                }
            }
        }
    }

    /// Takes the session's runs that have not ended (those a surrender
    /// puts back in the queue); runs of it that have ended stay.
    pub(super) fn still_running(&self, session: &Session) -> Vec<Uuid> {
        let mut running = Vec::new();
        // A run forwarded to the session whose routing is not recorded yet
        // is still PENDING (the crate marks it RUNNING only after sending
        // it): it was lost with the session too, and the crate's surrender
        // puts it back now or at the second sweep.
        lock(&session.assigned).retain(|r| {
            let on_session = self
                .shared
                .queue
                .describe(*r)
                .is_some_and(|s| match s.status {
                    RunStatus::Running => {
                        s.assigned_to.as_deref() == Some(session.node_id.as_str())
                    }
                    RunStatus::Pending => true,
                    _ => false,
                });
            if on_session {
                running.push(*r);
            }
            !on_session
        });
        running
    }

    /// Emits `status.requeued` `{"node_id", "reason": "worker_lost"}` for
    /// each of `runs`.
    pub(super) fn announce_requeued(&self, session: &Session, runs: &[Uuid]) {
        for run_id in runs {
            let _ = self.shared.events.send(RunEvent {
                run_id: *run_id,
                event_type: crate::EventType::StatusRequeued.to_string(),
                data: serde_json::json!({"node_id": session.node_id, "reason": "worker_lost"}),
                timestamp_ms: now_ms(),
            });
        }
    }
}
