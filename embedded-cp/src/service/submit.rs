//! Submissions, cancellations and descriptions: runs are queued first in,
//! first out (`runs`), deadlines are enforced, and (with a store) a run
//! this process does not know is described from the store.

use std::sync::{Arc, Weak};
use std::time::Duration;

use blazen_controlplane::pb::{PostcardRequest, PostcardResponse};
use blazen_controlplane::protocol::{
    validate_envelope_version, Assignment, CancelInstruction, CancelRequest, DescribeRequest,
    NodeSelectorWire, RunStateSnapshotWire, ServerToWorker, SubmitRequest, DEFAULT_PLACE,
    ENVELOPE_VERSION,
};
use blazen_controlplane::server::admission::{Decision, NoCandidateReason};
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{RunStateSnapshot, RunStatus, WorkerCapability};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::store::Durable;
use crate::RunErrorKind;

use super::runs::{self, Ending, Waiting};
use super::*;

impl Plane {
    /// Fails `run_id` with a Timeout error once `deadline_ms` has passed
    /// since submission, unless it has ended by then; a running run's
    /// worker is told to cancel it.
    pub(super) async fn enforce_deadline(plane: Weak<Self>, run_id: Uuid, deadline_ms: u64) {
        tokio::time::sleep(Duration::from_millis(deadline_ms)).await;
        let Some(cp) = plane.upgrade() else {
            return;
        };
        let state = match cp.run_status(run_id) {
            Some(RunStatus::Pending) => "PENDING",
            Some(RunStatus::Running) => "RUNNING",
            _ => return,
        };
        let error = RunErrorKind::Timeout.tag(&format!(
            "the run's deadline_ms ({deadline_ms}) passed while it was {state}"
        ));
        cp.tell_cancel(run_id);
        cp.finish(run_id, Ending::Failed(error)).await;
    }

    /// Tells the worker running `run_id`, if any, to cancel it.
    fn tell_cancel(&self, run_id: Uuid) {
        if let Some(session) = self.run_session(run_id) {
            let _ = session.out.send(ServerToWorker::Cancel(CancelInstruction {
                envelope_version: ENVELOPE_VERSION,
                run_id,
            }));
        }
    }

    /// Refuses a submission that does not wait for a worker when no
    /// connected worker could ever take it. One that only finds every
    /// capable worker busy is queued.
    fn refuse_unroutable(
        &self,
        place: &str,
        cap: &WorkerCapability,
        tags: &[String],
        assignment: &Assignment,
    ) -> Result<(), Status> {
        match runs::route(self, place, cap, tags, assignment) {
            Decision::NoCandidate {
                reason: NoCandidateReason::MissingVramHint,
            } => Err(Status::invalid_argument(
                ControlPlaneError::MissingVramHint.to_string(),
            )),
            Decision::NoCandidate {
                reason:
                    NoCandidateReason::NoCapability
                    | NoCandidateReason::TagMismatch
                    | NoCandidateReason::SelectorMismatch,
            } => Err(Status::failed_precondition(
                ControlPlaneError::NoMatchingWorker {
                    workflow_name: cap.kind.clone(),
                    required_tags: tags.to_vec(),
                }
                .to_string(),
            )),
            _ => Ok(()),
        }
    }
}

/// The wire form of a run's state, in `place`.
fn encode_state(
    snap: &RunStateSnapshot,
    place: String,
) -> Result<Response<PostcardResponse>, Status> {
    let mut wire = RunStateSnapshotWire::from_core(snap)
        .map_err(|e| Status::internal(format!("encode run state: {e}")))?;
    wire.place = place;
    let postcard_payload = crate::common::postcard(&wire)
        .map_err(|e| Status::internal(format!("encode response: {e}")))?;
    Ok(Response::new(PostcardResponse { postcard_payload }))
}

impl Service {
    /// `SubmitWorkflow` (the crate's `handle_submit_workflow`, rebuilt):
    /// the run is recorded in the store (when there is one) before it is
    /// acknowledged, then queued for the dispatcher; its deadline starts.
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
        if !core.wait_for_worker {
            self.cp
                .refuse_unroutable(&place, &cap, &tags, &assignment)?;
        }
        let _arriving = Arriving::new(&self.cp, run_id);
        if let Some(store) = &self.cp.store {
            record_queued(store, &assignment, &cap, &tags)
                .await
                .map_err(|e| Durable::status(&e))?;
        }
        let snap = self.cp.admit(Waiting {
            run_id,
            place: place.clone(),
            assignment,
            cap: cap.clone(),
            tags,
        });
        self.cp
            .stats
            .submitted(run_id, &core.workflow_name, snap.started_at_ms);
        if let Some(deadline_ms) = core.deadline_ms {
            let plane = Arc::downgrade(&self.cp);
            tokio::spawn(Plane::enforce_deadline(plane, run_id, deadline_ms));
        }
        self.cp.announce_if_unserved(run_id, &place, &cap);
        encode_state(&snap, place)
    }

    /// `CancelWorkflow`: the run's worker is told to cancel it and the run
    /// ends CANCELLED, unless it had already ended (its state is then
    /// returned as it is).
    pub(super) async fn cancel(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        let req: CancelRequest = decode(&request.get_ref().postcard_payload, "CancelRequest")?;
        validate_envelope_version(req.envelope_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        if self.cp.run_state(req.run_id).is_none() {
            return Err(Status::not_found(format!("unknown run {}", req.run_id)));
        }
        self.cp.tell_cancel(req.run_id);
        self.cp.finish(req.run_id, Ending::Cancelled).await;
        let (snap, place) = self
            .cp
            .run_state(req.run_id)
            .ok_or_else(|| Status::internal("run state missing after cancel"))?;
        encode_state(&snap, place)
    }

    /// `DescribeWorkflow`: a run in the caller's place (an authenticated
    /// caller's, else the default place), from memory, else (with a
    /// store) from the store: a run that ended before a restart, until its
    /// record expires. The store keeps no place: such runs are in the
    /// default place. A run of another place is reported unknown.
    pub(super) async fn describe(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        let req: DescribeRequest = decode(&request.get_ref().postcard_payload, "DescribeRequest")?;
        validate_envelope_version(req.envelope_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let caller = place_of(identity(&request).as_ref(), None);
        let unknown = || Status::not_found(format!("unknown run {}", req.run_id));
        if let Some((snap, place)) = self.cp.run_state(req.run_id) {
            return if place == caller {
                encode_state(&snap, place)
            } else {
                Err(unknown())
            };
        }
        match &self.cp.store {
            Some(store) if caller == DEFAULT_PLACE => match store.get_state(req.run_id).await {
                Ok(Some(snap)) => encode_state(&snap, caller),
                Ok(None) => Err(unknown()),
                Err(e) => Err(Durable::status(&e)),
            },
            _ => Err(unknown()),
        }
    }
}

/// A submission between its store records and its place in a queue: the
/// trimmer of the store's pending lists keeps its entry meanwhile (the
/// run does not wait yet, but it is not done either).
struct Arriving<'a> {
    plane: &'a Plane,
    run_id: Uuid,
}

impl<'a> Arriving<'a> {
    fn new(plane: &'a Plane, run_id: Uuid) -> Option<Self> {
        plane.store.as_ref()?;
        crate::lock(&plane.arriving).insert(run_id);
        Some(Self { plane, run_id })
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        crate::lock(&self.plane.arriving).remove(&self.run_id);
    }
}

impl Plane {
    /// Whether the store's pending list must keep `run_id`'s entry: the run
    /// waits, or its submission is being recorded.
    pub(super) fn keeps_pending(&self, run_id: Uuid) -> bool {
        self.is_waiting(run_id) || crate::lock(&self.arriving).contains(&run_id)
    }
}

/// Writes a queued run's records: its assignment, its PENDING state and its
/// place in the store's pending list (which a cold start reads), all at
/// once. Fails when the assignment cannot be written.
pub(crate) async fn record_queued(
    store: &Durable,
    assignment: &Assignment,
    cap: &WorkerCapability,
    tags: &[String],
) -> Result<(), ControlPlaneError> {
    let run_id = assignment.run_id;
    let pending = runs::pending_snapshot(run_id);
    let (put, state, queued) = tokio::join!(
        store.put_assignment(run_id, assignment),
        store.put_state(run_id, &pending, None),
        store.enqueue_pending(cap, run_id, tags)
    );
    put?;
    for e in [state.err(), queued.err()].into_iter().flatten() {
        tracing::warn!(%run_id, error = %e, "cannot record the queued run in the store");
    }
    Ok(())
}
