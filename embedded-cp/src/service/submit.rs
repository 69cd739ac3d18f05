//! Submissions: queued at one priority, deadlines enforced, and (with a
//! store) described from the store after a restart.

use std::sync::{Arc, Weak};
use std::time::Duration;

use blazen_controlplane::pb::{PostcardRequest, PostcardResponse};
use blazen_controlplane::protocol::{
    validate_envelope_version, Assignment, CancelInstruction, DescribeRequest, NodeSelectorWire,
    RunStateSnapshotWire, ServerToWorker, SubmitRequest, DEFAULT_PLACE, ENVELOPE_VERSION,
};
use blazen_controlplane::server::admission::{Decision, NoCandidateReason, RouteRequest};
use blazen_controlplane::server::queue::SubmitOutcome;
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{NodeSelector, ResourceHint, RunStatus, WorkerCapability};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::store::Durable;
use crate::{lock, RunErrorKind};

use super::*;

impl Plane {
    // ---- deadlines --------------------------------------------------------

    /// Fails `run_id` with a Timeout error once `deadline_ms` has passed
    /// since submission, unless it has ended by then; a running run's
    /// worker is told to cancel it.
    pub(super) async fn enforce_deadline(plane: Weak<Self>, run_id: Uuid, deadline_ms: u64) {
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
        let error = RunErrorKind::Timeout.tag(&format!(
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

impl Service {
    /// With accurate in-flight counts a submission finds every matching
    /// worker saturated far more often than with the crate's stale ones;
    /// the crate would then refuse it when `wait_for_worker` is false.
    /// Such a submission is queued instead (as it was before): only a
    /// submission no connected worker could ever take is refused.
    pub(super) fn all_saturated(
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
    pub(super) async fn submit(
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
        if let Some(store) = &self.cp.store {
            // Refused unless the store can record it (the queue itself
            // only logs the store's errors).
            store
                .put_assignment(run_id, &assignment)
                .await
                .map_err(|e| Durable::status(&e))?;
        }
        let shared = &self.cp.shared;
        let outcome = shared
            .queue
            .submit(
                run_id,
                place.clone(),
                assignment,
                cap.clone(),
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
        self.cp.journal.needs(run_id, &place, &cap);
        if let Some(deadline_ms) = core.deadline_ms {
            let plane = Arc::downgrade(&self.cp);
            tokio::spawn(Plane::enforce_deadline(plane, run_id, deadline_ms));
        }
        let snap = shared
            .queue
            .describe(run_id)
            .ok_or_else(|| Status::internal("run state missing after submit"))?;
        self.cp.stats.submitted(run_id, &core.workflow_name, snap.started_at_ms);
        if snap.status == RunStatus::Pending {
            self.cp.announce_if_unserved(run_id, &place, &cap);
        }
        let mut wire = RunStateSnapshotWire::from_core(&snap)
            .map_err(|e| Status::internal(format!("encode run state: {e}")))?;
        wire.place = place;
        let postcard_payload = postcard::to_allocvec(&wire)
            .map_err(|e| Status::internal(format!("encode response: {e}")))?;
        Ok(Response::new(PostcardResponse { postcard_payload }))
    }

    /// A run this process does not know, read from the store (a run that
    /// ended before a restart, until its snapshot expires). The store
    /// keeps no place: such runs are in the default place.
    pub(super) async fn describe_stored(
        &self,
        store: &Durable,
        request: &Request<PostcardRequest>,
    ) -> Option<Result<Response<PostcardResponse>, Status>> {
        let req: DescribeRequest =
            postcard::from_bytes(&request.get_ref().postcard_payload).ok()?;
        if self.cp.shared.queue.describe(req.run_id).is_some()
            || place_of(identity(request).as_ref(), None) != DEFAULT_PLACE
        {
            return None;
        }
        let snap = match store.get_state(req.run_id).await {
            Ok(Some(snap)) => snap,
            Ok(None) => return None,
            Err(e) => return Some(Err(Durable::status(&e))),
        };
        let encoded = RunStateSnapshotWire::from_core(&snap)
            .map_err(|e| Status::internal(format!("encode run state: {e}")))
            .and_then(|mut wire| {
                wire.place = DEFAULT_PLACE.to_string();
                postcard::to_allocvec(&wire)
                    .map_err(|e| Status::internal(format!("encode response: {e}")))
            });
        Some(encoded.map(|postcard_payload| Response::new(PostcardResponse { postcard_payload })))
    }
}
