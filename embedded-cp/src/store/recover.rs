//! The cold start on a store: the runs it knew, queued again once.

use std::collections::HashSet;

use blazen_controlplane::protocol::DEFAULT_PLACE;
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::server::SharedState;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{RunStatus, WorkerCapability};
use uuid::Uuid;

use super::*;

/// What a cold start found in the store.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Runs queued again: those that were waiting for a worker ...
    pub queued: usize,
    /// ... and those that were RUNNING on a worker of the lost control
    /// plane (queued again as a new attempt).
    pub rerun: usize,
}

/// Rebuilds the queue from the store on a cold start, instead of the
/// crate's `recover_from_store` (`docs/upstream.md` 12): every run that
/// has an assignment record and no terminal state is submitted again to
/// the queue, once, in the default place, waiting for a worker; runs that
/// were RUNNING go back as attempt + 1. Each run is claimed in the store's
/// in-flight set by a recovery session while the store's pending lists are
/// drained and written again, so a crash during recovery loses none.
pub(crate) async fn recover(
    shared: &SharedState,
    store: &Durable,
) -> Result<Recovery, ControlPlaneError> {
    let recovery_session = Uuid::new_v4();
    let mut seen = HashSet::new();
    // (run, tags, was running)
    let mut runs: Vec<(Uuid, Vec<String>, bool)> = Vec::new();
    for run in store.list_orphaned_inflight(&HashSet::new()).await? {
        if seen.insert(run) {
            store.claim_inflight(run, recovery_session).await?;
            runs.push((run, Vec::new(), true));
        }
    }
    for cap in store.list_pending_capabilities().await? {
        while let Some((run, tags)) = store.dequeue_pending(&cap).await? {
            if seen.insert(run) {
                store.claim_inflight(run, recovery_session).await?;
                runs.push((run, tags, false));
            }
        }
    }
    let mut found = Recovery::default();
    for (run, tags, was_running) in runs {
        let Some(mut assignment) = store.get_assignment(run).await? else {
            continue; // finished (its record is deleted then)
        };
        let state = store.get_state(run).await?;
        if state.is_some_and(|s| {
            matches!(
                s.status,
                RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
            )
        }) {
            store.delete_assignment(run).await?;
            continue;
        }
        if was_running {
            assignment.attempt = assignment.attempt.saturating_add(1);
            found.rerun += 1;
        } else {
            found.queued += 1;
        }
        let cap = WorkerCapability {
            kind: format!("workflow:{}", assignment.workflow_name),
            version: assignment.workflow_version.unwrap_or(0),
        };
        shared
            .queue
            .submit(
                run,
                DEFAULT_PLACE.to_string(),
                assignment,
                cap,
                tags,
                true,
                &shared.registry,
                &shared.admission,
            )
            .await;
    }
    store.release_inflight(recovery_session).await?;
    if let Some(why) = store.down() {
        return Err(store.error(&why));
    }
    Ok(found)
}
