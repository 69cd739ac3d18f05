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

use blazen_controlplane::protocol::Assignment;
use blazen_core::distributed::{RunStateSnapshot, RunStatus, WorkerCapability};
use uuid::Uuid;

pub(super) use crate::common::pending_snapshot;
use crate::lock;

use super::{is_terminal, now_ms, Plane};

mod end;
mod route;

pub(super) use route::route;

#[cfg(test)]
mod tests;

/// A place and one capability: what a queue of waiting runs is for.
pub(super) type Bucket = (String, WorkerCapability);

#[derive(Default)]
pub(super) struct Runs {
    /// Shared with the store's writer, which hands routed runs over once
    /// their routing is in the store.
    table: std::sync::Arc<std::sync::Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    runs: HashMap<Uuid, Run>,
    /// Runs waiting for a worker, oldest first. A run that ended while it
    /// waited (cancelled, past its deadline) stays in its queue until it
    /// reaches the front, where it is dropped.
    waiting: HashMap<Bucket, VecDeque<Uuid>>,
    /// Runs that ended, oldest first (see [`KEEP_ENDED`]).
    ended: VecDeque<Uuid>,
}

/// Ended runs the table keeps, for `describe` and late subscriptions (the
/// oldest go first; the crate's queue kept every run for the life of the
/// process, a few hundred bytes and its output each). A run forgotten here
/// is still described from the store, when there is one, until its record
/// expires.
pub(super) const KEEP_ENDED: usize = 100_000;

impl Table {
    /// Whether `run_id` is RUNNING on `session`.
    fn running_on(&self, run_id: &Uuid, session: Uuid) -> bool {
        self.runs
            .get(run_id)
            .is_some_and(|r| r.session == Some(session) && r.snap.status == RunStatus::Running)
    }

    /// Notes that `run_id` ended, forgetting the oldest ended runs beyond
    /// `keep`.
    fn ended(&mut self, run_id: Uuid, keep: usize) {
        self.ended.push_back(run_id);
        while self.ended.len() > keep {
            if let Some(old) = self.ended.pop_front() {
                self.runs.remove(&old);
            }
        }
    }
}

struct Run {
    snap: RunStateSnapshot,
    place: String,
    cap: WorkerCapability,
    tags: Vec<String>,
    /// The run's assignment, until the run ends (boxed: the table keeps
    /// [`KEEP_ENDED`] runs that have none, each in a slot of this size).
    assignment: Option<Box<Assignment>>,
    /// The session it is assigned to, while RUNNING.
    session: Option<Uuid>,
    /// How many times it lost its worker (a run recovered from a store
    /// starts with the attempts before it): the attempt it is sent as.
    losses: u32,
}

impl Run {
    /// Whether it waits in its queue (a run that ended while it waited
    /// stays in the queue until it reaches the front).
    fn waits(&self) -> bool {
        self.snap.status == RunStatus::Pending && self.session.is_none()
    }

    /// Its assignment as it is sent next: its attempt counts the losses of
    /// its worker so far.
    fn next_assignment(&self) -> Option<Assignment> {
        let mut assignment = self.assignment.as_deref().cloned()?;
        assignment.attempt = assignment.attempt.max(self.losses);
        Some(assignment)
    }
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
                    losses: run.assignment.attempt,
                    assignment: Some(Box::new(run.assignment)),
                    session: None,
                },
            );
            t.waiting
                .entry(bucket.clone())
                .or_default()
                .push_back(run.run_id);
        }
        // Routed by the dispatcher, which takes the runs of many such
        // requests in one pass, so a worker gets them in fewer writes than
        // a routing per submission would take.
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
            .filter(|r| t.running_on(r, session))
            .collect()
    }

    /// The run's assignment as it would be sent (its attempt counted), and
    /// its tags, for a store record.
    pub(super) fn stored_assignment(&self, run_id: Uuid) -> Option<(Assignment, Vec<String>)> {
        let t = lock(&self.runs.table);
        let run = t.runs.get(&run_id)?;
        Some((run.next_assignment()?, run.tags.clone()))
    }

    /// Counts a loss of `run_id`'s worker; returns the count so far.
    pub(super) fn lost_worker(&self, run_id: Uuid) -> u32 {
        let mut t = lock(&self.runs.table);
        t.runs.get_mut(&run_id).map_or(0, |run| {
            run.losses = run.losses.saturating_add(1);
            run.losses
        })
    }

    /// The runs waiting in `bucket`'s queue, oldest first.
    pub(super) fn waiting_in(&self, bucket: &Bucket) -> Vec<Uuid> {
        let t = lock(&self.runs.table);
        let Some(queue) = t.waiting.get(bucket) else {
            return Vec::new();
        };
        queue
            .iter()
            .copied()
            .filter(|id| t.runs.get(id).is_some_and(Run::waits))
            .collect()
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

    /// Whether `run_id` waits in a queue.
    pub(super) fn is_waiting(&self, run_id: Uuid) -> bool {
        lock(&self.runs.table)
            .runs
            .get(&run_id)
            .is_some_and(Run::waits)
    }
}
