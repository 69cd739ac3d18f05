//! A worker session that ended: its runs go back to the front of their
//! queues with a `status.requeued` event each, except a run that has lost
//! its worker more than `max_requeues` times, which fails instead (no run a
//! worker dies on can loop for ever).

use blazen_controlplane::server::store::AssignmentStore;
use uuid::Uuid;

use crate::{lock, RunErrorKind};

use super::runs::{Bucket, Ending};
use super::session::Session;
use super::Plane;

impl Plane {
    /// Puts the runs still RUNNING on an ended session back in their
    /// queues, except those lost more than `max_requeues` times: those
    /// fail.
    pub(super) async fn surrender(&self, session: &Session) {
        let mut lost = self.still_running(session);
        let mut given_up = Vec::new();
        lost.retain(|run_id| {
            let n = self.lost_worker(*run_id);
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
            self.finish(run_id, Ending::Failed(error)).await;
        }
        let requeued = self.requeue(session.id, &lost);
        self.remember_requeued(session, &requeued).await;
        let ids: Vec<Uuid> = requeued.into_iter().map(|(run_id, _)| run_id).collect();
        self.announce_requeued(session, &ids);
        self.request_drain(session.drain_key());
    }

    /// With a store: the session's claims are released and each re-queued
    /// run is written back to its pending list, its stored assignment
    /// carrying its next attempt, so a control plane that takes over the
    /// store after a restart finds it and counts the losses before it too.
    async fn remember_requeued(&self, session: &Session, runs: &[(Uuid, Bucket)]) {
        let Some(store) = &self.store else {
            return;
        };
        for (run_id, (_, cap)) in runs {
            let Some((assignment, tags)) = self.stored_assignment(*run_id) else {
                continue;
            };
            if let Err(e) = super::submit::record_queued(store, &assignment, cap, &tags).await {
                tracing::warn!(%run_id, error = %e, "cannot record the re-queued run in the store");
            }
        }
        if let Err(e) = store.release_inflight(session.id).await {
            tracing::warn!(session = %session.id, error = %e, "cannot release the session's runs in the store");
        }
    }

    /// Takes the session's runs that are still RUNNING on it (those a
    /// surrender puts back in the queue); runs of it that have ended stay.
    pub(super) fn still_running(&self, session: &Session) -> Vec<Uuid> {
        let assigned: Vec<Uuid> = lock(&session.assigned).iter().copied().collect();
        let running = self.running_on(session.id, &assigned);
        let mut set = lock(&session.assigned);
        for r in &running {
            set.remove(r);
        }
        running
    }

    /// Emits `status.requeued` `{"node_id", "reason": "worker_lost"}` for
    /// each of `runs`.
    pub(super) fn announce_requeued(&self, session: &Session, runs: &[Uuid]) {
        for run_id in runs {
            self.publish(
                *run_id,
                crate::EventType::StatusRequeued,
                serde_json::json!({"node_id": session.node_id, "reason": "worker_lost"}),
            );
        }
    }
}
