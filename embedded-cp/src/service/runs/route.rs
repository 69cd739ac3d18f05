//! Routing: the dispatcher takes the front run of a queue, asks the
//! crate's admission for a worker, counts the run against that worker and
//! sends it.

use blazen_controlplane::protocol::{Assignment, Offer, ServerToWorker, ENVELOPE_VERSION};
use blazen_controlplane::server::admission::{Decision, RouteRequest};
use blazen_core::distributed::{
    NodeSelector, ResourceHint, RunStatus, TolerationSpec, WorkerCapability,
};

use crate::lock;
use crate::store::Join;

use super::end::status_event;
use super::{Bucket, Plane, Run, Table};

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
            input: affinity_input(a),
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

/// The assignment's input as admission reads it: only for model affinity,
/// a `model_name` or `model` key of an object. It is parsed only when its
/// text could hold such a key (the name itself, or a `\u` escape that
/// could spell it); without one, admission would find none.
pub(super) fn affinity_input(a: &Assignment) -> Option<serde_json::Value> {
    let text = &a.input_json;
    let holds = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    (holds(b"model") || holds(b"\\u"))
        .then(|| a.input_value().ok())
        .flatten()
}

/// The admission decision for `assignment` now.
pub(in crate::service) fn route(
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

impl Plane {
    /// Routes the waiting runs of `bucket`, oldest first, until the front
    /// one finds no worker or `most` are routed; true in the second case.
    /// Only the dispatcher calls this.
    pub(in crate::service) fn dispatch(&self, bucket: &Bucket, most: usize) -> bool {
        (0..most).all(|_| self.route_front(bucket))
    }

    /// Whether every connected worker serving `bucket` is full (see
    /// [`Session::is_full`]), so admission would find none for any run of
    /// it: a run then queues without the cost of asking.
    fn all_full(&self, bucket: &Bucket) -> bool {
        lock(&self.sessions)
            .values()
            .filter(|s| s.place == bucket.0 && s.caps.contains(&bucket.1))
            .all(|s| s.is_full())
    }

    /// Routes the front run of `bucket`; false when there is none or it
    /// found no worker.
    fn route_front(&self, bucket: &Bucket) -> bool {
        let mut t = lock(&self.runs.table);
        let Table { runs, waiting, .. } = &mut *t;
        let Some(queue) = waiting.get_mut(bucket) else {
            return false;
        };
        // Drop runs that ended while they waited.
        while let Some(id) = queue.front() {
            if runs.get(id).is_some_and(Run::waits) {
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
        if self.all_full(bucket) {
            return false;
        }
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
        let Some(assignment) = run.next_assignment() else {
            return false;
        };
        queue.pop_front();
        run.losses = assignment.attempt;
        run.session = Some(session_id);
        run.snap.status = RunStatus::Running;
        run.snap.assigned_to = Some(node_id.clone());
        // Counted before the next routing decision.
        session.assign(&self.shared, run_id);
        let frame = if offer {
            ServerToWorker::Offer(Offer {
                envelope_version: ENVELOPE_VERSION,
                assignment,
            })
        } else {
            ServerToWorker::Assignment(assignment)
        };
        let events = self.bus.clone();
        let (shared, slot) = (self.shared.clone(), session.clone());
        // `status.running`, then the run to its worker (a session that has
        // just ended re-queues it at its second sweep).
        let hand_over = move || {
            let data = crate::common::one_field("node_id", serde_json::Value::String(node_id));
            events.send(status_event(run_id, crate::EventType::StatusRunning, data));
            let _ = session.out.send(frame);
        };
        match &self.store {
            // The claim is in the store before the worker has the run: a
            // control plane that takes the store over after a crash then
            // knows the run may have run, and runs it as a new attempt.
            // The dispatcher goes on meanwhile; the store's writer hands
            // the run over once the claim is written (under the run
            // table's lock, so a run's `status.running` is published
            // before its end, or not at all). A run that stopped being
            // this session's in that time (its worker left, it was
            // cancelled or passed its deadline) is not handed over (its
            // `status.running` would follow its `status.requeued`), and
            // the worker's slot is given back at once, as no result of it
            // will come, for the dispatcher to fill.
            Some(store) => {
                let table = self.runs.table.clone();
                let drain = self.drain.clone();
                let settle = Join::new(Box::new(move |written: Result<(), String>| {
                    if let Err(e) = written {
                        tracing::warn!(%run_id, error = %e, "cannot record the run's routing in the store");
                    }
                    let t = lock(&table);
                    if t.running_on(&run_id, session_id) {
                        hand_over();
                    } else {
                        drop(t);
                        slot.resolve(&shared, run_id);
                        let _ = drain.send(slot.drain_key());
                    }
                }));
                // Queued now, before anything can re-queue or end the run.
                if let Err(e) = store.claim_running(run_id, session_id, &run.snap, &settle) {
                    drop(t);
                    settle.run(Err(e.to_string()));
                }
            }
            None => {
                drop(t);
                hand_over();
            }
        }
        true
    }
}
