//! Every run the control plane knows, the queues of runs waiting for a
//! worker, and the dispatcher that routes them. This replaces the crate's
//! `AssignmentQueue`, whose every dispatch scans the whole queue
//! (`docs/upstream.md` 9) and whose routings race each other past a
//! worker's `max_in_flight`:
//!
//! - A waiting run sits in a first-in first-out queue per place and
//!   capability. Routing looks only at the queue's front, so the rate a
//!   worker drains does not depend on how many runs wait behind it.
//! - Only the dispatcher routes, one run at a time, and each run is
//!   counted against its worker before the next one is routed: no worker
//!   is sent more than its `max_in_flight`.
//! - A run's `status.running` is published before its assignment is sent
//!   to the worker, and its terminal event only after the result is in the
//!   store (and after the store writes of its routing), so a run's events
//!   are in order on every store.
//!
//! Routing itself is the crate's admission (`Admission::route`: capability,
//! tags, selector, taints, capacity, least loaded, round robin).

use std::collections::{HashMap, VecDeque};

use blazen_controlplane::protocol::{Assignment, Offer, ServerToWorker, ENVELOPE_VERSION};
use blazen_controlplane::server::admission::{Decision, RouteRequest};
use blazen_controlplane::server::store::AssignmentStore;
use blazen_core::distributed::{
    NodeSelector, ResourceHint, RunEvent, RunStateSnapshot, RunStatus, TolerationSpec,
    WorkerCapability,
};
use uuid::Uuid;

use crate::lock;

use super::{is_terminal, now_ms, Plane};

/// A place and one capability: what a queue of waiting runs is for.
pub(super) type Bucket = (String, WorkerCapability);

#[derive(Default)]
pub(super) struct Runs {
    table: std::sync::Mutex<Table>,
}

#[derive(Default)]
struct Table {
    runs: HashMap<Uuid, Run>,
    /// Runs waiting for a worker, oldest first. A run that ended while it
    /// waited (cancelled, past its deadline) stays in its queue until it
    /// reaches the front, where it is dropped.
    waiting: HashMap<Bucket, VecDeque<Uuid>>,
}

struct Run {
    snap: RunStateSnapshot,
    place: String,
    cap: WorkerCapability,
    tags: Vec<String>,
    /// The run's assignment, until the run ends.
    assignment: Option<Assignment>,
    /// The session it is assigned to, while RUNNING.
    session: Option<Uuid>,
    /// The store writes of its routing; its result waits for them.
    routed: Option<tokio::task::JoinHandle<()>>,
}

/// How a run ends.
pub(super) enum Ending {
    Completed(serde_json::Value),
    Failed(String),
    Cancelled,
}

/// A run to queue: new or recovered from a store.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub(crate) run_id: Uuid,
    pub(crate) place: String,
    pub(crate) assignment: Assignment,
    pub(crate) cap: WorkerCapability,
    pub(crate) tags: Vec<String>,
}

/// What a routing decision needs from an assignment, owned.
struct RouteInputs {
    hint: Option<ResourceHint>,
    selector: NodeSelector,
    tolerations: Vec<TolerationSpec>,
    input: Option<serde_json::Value>,
}

impl RouteInputs {
    fn of(a: &Assignment) -> Self {
        Self {
            hint: a.resource_hint.as_ref().map(Into::into),
            selector: a.selector.clone().into(),
            tolerations: a.tolerations.iter().cloned().map(Into::into).collect(),
            input: a.input_value().ok(),
        }
    }

    fn request<'a>(
        &'a self,
        place: &'a str,
        cap: &'a WorkerCapability,
        tags: &'a [String],
    ) -> RouteRequest<'a> {
        RouteRequest {
            place,
            required_capability: cap,
            required_tags: tags,
            resource_hint: self.hint.as_ref(),
            selector: &self.selector,
            tolerations: &self.tolerations,
            input: self.input.as_ref(),
        }
    }
}

/// The admission decision for `assignment` now.
pub(super) fn route(
    plane: &Plane,
    place: &str,
    cap: &WorkerCapability,
    tags: &[String],
    assignment: &Assignment,
) -> Decision {
    let inputs = RouteInputs::of(assignment);
    let shared = &plane.shared;
    shared
        .admission
        .route(&shared.registry, &inputs.request(place, cap, tags))
}

pub(super) fn pending_snapshot(run_id: Uuid) -> RunStateSnapshot {
    RunStateSnapshot {
        run_id,
        status: RunStatus::Pending,
        started_at_ms: now_ms(),
        completed_at_ms: None,
        assigned_to: None,
        last_event_at_ms: None,
        output: None,
        error: None,
    }
}

impl Plane {
    /// The run's state and place.
    pub(super) fn run_state(&self, run_id: Uuid) -> Option<(RunStateSnapshot, String)> {
        let t = lock(&self.runs.table);
        t.runs
            .get(&run_id)
            .map(|r| (r.snap.clone(), r.place.clone()))
    }

    /// The run's status.
    pub(super) fn run_status(&self, run_id: Uuid) -> Option<RunStatus> {
        lock(&self.runs.table)
            .runs
            .get(&run_id)
            .map(|r| r.snap.status)
    }

    /// The session the run is assigned to, if it is RUNNING on one.
    pub(super) fn run_session(&self, run_id: Uuid) -> Option<std::sync::Arc<super::Session>> {
        let id = lock(&self.runs.table).runs.get(&run_id)?.session?;
        lock(&self.sessions).get(&id).cloned()
    }

    /// Queues a new run (or one recovered from a store) and asks the
    /// dispatcher to route it. Its store records are written by the caller.
    pub(super) fn admit(&self, run: Waiting) -> RunStateSnapshot {
        let snap = pending_snapshot(run.run_id);
        let bucket = (run.place.clone(), run.cap.clone());
        {
            let mut t = lock(&self.runs.table);
            t.runs.insert(
                run.run_id,
                Run {
                    snap: snap.clone(),
                    place: run.place,
                    cap: run.cap,
                    tags: run.tags,
                    assignment: Some(run.assignment),
                    session: None,
                    routed: None,
                },
            );
            t.waiting
                .entry(bucket.clone())
                .or_default()
                .push_back(run.run_id);
        }
        self.request_drain((bucket.0, vec![bucket.1]));
        snap
    }

    /// Puts runs that lost their worker back at the front of their queues
    /// (in their order), PENDING again. Returns those that were still
    /// running on `session` (the others ended meanwhile), with their
    /// queue.
    pub(super) fn requeue(&self, session: Uuid, runs: &[Uuid]) -> Vec<(Uuid, Bucket)> {
        let mut t = lock(&self.runs.table);
        let mut back = Vec::new();
        for run_id in runs.iter().rev() {
            let Some(run) = t.runs.get_mut(run_id) else {
                continue;
            };
            if run.session != Some(session) || is_terminal(run.snap.status) {
                continue;
            }
            run.session = None;
            run.snap.status = RunStatus::Pending;
            run.snap.assigned_to = None;
            let bucket = (run.place.clone(), run.cap.clone());
            t.waiting
                .entry(bucket.clone())
                .or_default()
                .push_front(*run_id);
            back.push((*run_id, bucket));
        }
        back.reverse();
        back
    }

    /// The runs of `session` that are RUNNING on it.
    pub(super) fn running_on(&self, session: Uuid, candidates: &[Uuid]) -> Vec<Uuid> {
        let t = lock(&self.runs.table);
        candidates
            .iter()
            .copied()
            .filter(|r| {
                t.runs.get(r).is_some_and(|run| {
                    run.session == Some(session) && run.snap.status == RunStatus::Running
                })
            })
            .collect()
    }

    /// The run's assignment as it would be sent (its attempt counted), and
    /// its capability, for a store record.
    pub(super) fn stored_assignment(&self, run_id: Uuid) -> Option<(Assignment, Vec<String>)> {
        let t = lock(&self.runs.table);
        let run = t.runs.get(&run_id)?;
        Some((run.assignment.clone()?, run.tags.clone()))
    }

    /// Whether `run_id` is RUNNING on `session`.
    pub(super) fn is_on(&self, run_id: Uuid, session: Uuid) -> bool {
        lock(&self.runs.table)
            .runs
            .get(&run_id)
            .is_some_and(|r| r.session == Some(session))
    }

    /// Notes that the run's worker sent an event for it.
    pub(super) fn touched(&self, run_id: Uuid) {
        if let Some(run) = lock(&self.runs.table).runs.get_mut(&run_id) {
            run.snap.last_event_at_ms = Some(now_ms());
        }
    }

    /// Routes the waiting runs of `bucket`, oldest first, until the front
    /// one finds no worker or `most` are routed; true in the second case.
    /// Only the dispatcher calls this.
    pub(super) fn dispatch(&self, bucket: &Bucket, most: usize) -> bool {
        (0..most).all(|_| self.route_front(bucket))
    }

    /// Routes the front run of `bucket`; false when there is none or it
    /// found no worker.
    fn route_front(&self, bucket: &Bucket) -> bool {
        let mut t = lock(&self.runs.table);
        let Table { runs, waiting } = &mut *t;
        let Some(queue) = waiting.get_mut(bucket) else {
            return false;
        };
        // Drop runs that ended while they waited.
        while let Some(id) = queue.front() {
            if runs
                .get(id)
                .is_some_and(|r| r.snap.status == RunStatus::Pending && r.session.is_none())
            {
                break;
            }
            queue.pop_front();
        }
        let Some(&run_id) = queue.front() else {
            waiting.remove(bucket);
            return false;
        };
        let Some(run) = runs.get_mut(&run_id) else {
            return false;
        };
        let Some(assignment) = run.assignment.as_ref() else {
            return false;
        };
        let (session_id, node_id, offer) =
            match route(self, &bucket.0, &bucket.1, &run.tags, assignment) {
                Decision::Push {
                    session_id,
                    node_id,
                } => (session_id, node_id, false),
                Decision::Offer {
                    session_id,
                    node_id,
                } => (session_id, node_id, true),
                Decision::NoCandidate { .. } => return false,
            };
        let Some(session) = lock(&self.sessions).get(&session_id).cloned() else {
            // Registered, but its session is ending: the next drain routes it.
            return false;
        };
        queue.pop_front();
        let mut assignment = assignment.clone();
        assignment.attempt = assignment.attempt.max(self.journal.requeues(run_id));
        run.session = Some(session_id);
        run.snap.status = RunStatus::Running;
        run.snap.assigned_to = Some(node_id.clone());
        let running = run.snap.clone();
        // Counted before the next routing decision.
        session.assign(&self.shared, run_id);
        if let Some(store) = &self.store {
            let store = store.clone();
            run.routed = Some(tokio::spawn(async move {
                let (claim, state) = tokio::join!(
                    store.claim_inflight(run_id, session_id),
                    store.put_state(run_id, &running, None)
                );
                for e in [claim.err(), state.err()].into_iter().flatten() {
                    tracing::warn!(%run_id, error = %e, "cannot record the run's routing in the store");
                }
            }));
        }
        drop(t);
        self.journal.attempted(run_id, assignment.attempt);
        self.publish(
            run_id,
            crate::EventType::StatusRunning,
            serde_json::json!({ "node_id": node_id }),
        );
        let frame = if offer {
            ServerToWorker::Offer(Offer {
                envelope_version: ENVELOPE_VERSION,
                assignment,
            })
        } else {
            ServerToWorker::Assignment(assignment)
        };
        // A session that has just ended re-queues it (its second sweep).
        let _ = session.out.send(frame);
        true
    }

    /// Ends a run that has not ended: records the ending in the store, then
    /// announces it. Returns false (and does nothing) when it had ended.
    pub(super) async fn finish(&self, run_id: Uuid, ending: Ending) -> bool {
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
    pub(super) fn publish(&self, run_id: Uuid, event: crate::EventType, data: serde_json::Value) {
        let _ = self.shared.events.send(RunEvent {
            run_id,
            event_type: event.to_string(),
            data,
            timestamp_ms: now_ms(),
        });
    }

    /// Whether `run_id` waits in a queue.
    pub(super) fn is_waiting(&self, run_id: Uuid) -> bool {
        self.run_status(run_id) == Some(RunStatus::Pending)
    }
}
