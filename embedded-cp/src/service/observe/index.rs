//! The index of runs: every run not yet finished and the last
//! [`KEEP_FINISHED`] finished ones, in order of first sight, fed by the
//! submissions and the event bus, with the counts and history they move.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use blazen_core::distributed::{RunEvent, RunStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{EventType, RunErrorKind};

use super::counters::{Counters, REQUEUED, SUBMITTED};
use super::entry::Entry;
use super::history::History;
use super::is_terminal;

/// Finished runs the index keeps (the oldest go first).
pub(super) const KEEP_FINISHED: usize = 10_000;

/// Events a run keeps for its timeline (the oldest go first).
pub(super) const RUN_EVENTS: usize = 32;

/// The longest event data (as JSON text) kept; longer data is replaced
/// by a note of its length.
pub(super) const EVENT_DATA_MAX: usize = 1024;

#[derive(Default)]
pub(super) struct Index {
    pub(super) runs: HashMap<Uuid, Entry>,
    /// Run ids by `seq`, oldest first (ids of forgotten runs linger until
    /// the next compaction).
    pub(super) order: VecDeque<(u64, Uuid)>,
    /// Finished runs, oldest finish first, for forgetting.
    finished: VecDeque<Uuid>,
    next_seq: u64,
    pub(super) counts: Counters,
    pub(super) history: History,
}

impl Index {
    fn entry(&mut self, run_id: Uuid, at: u64) -> &mut Entry {
        self.entry_and_counts(run_id, at).0
    }

    /// The run's entry (made at its first sight) and the counts, borrowed
    /// together.
    fn entry_and_counts(&mut self, run_id: Uuid, at: u64) -> (&mut Entry, &mut Counters) {
        let Index {
            runs,
            order,
            next_seq,
            counts,
            ..
        } = self;
        let entry = runs.entry(run_id).or_insert_with(|| {
            let seq = *next_seq;
            *next_seq += 1;
            order.push_back((seq, run_id));
            Entry::new(run_id, seq, at)
        });
        (entry, counts)
    }

    /// Records the submission of `run_id` for `workflow`.
    pub(super) fn submitted(&mut self, run_id: Uuid, workflow: &str, at: u64) {
        let e = self.entry(run_id, at);
        if e.workflow.is_some() {
            return;
        }
        e.workflow = Some(workflow.to_string());
        e.submitted_ms = e.submitted_ms.min(at);
        e.queued_ms = e.queued_ms.min(at);
        let status = e.status;
        let requeues = std::mem::take(&mut e.uncounted_requeues);
        let timed_out = e.error.as_deref().is_some_and(is_timeout);
        let was_counted = std::mem::replace(&mut e.counted, is_terminal(status));
        self.counts.count(workflow, SUBMITTED, 1);
        self.counts.count(workflow, REQUEUED, u64::from(requeues));
        if !was_counted {
            // As if it went from nowhere to where it is now.
            self.counts
                .shift(workflow, RunStatus::Completed, status, timed_out);
        }
    }

    /// Applies one event of the bus.
    pub(super) fn record(&mut self, event: &Arc<RunEvent>) {
        let at = event.timestamp_ms;
        let (e, counts) = self.entry_and_counts(event.run_id, at);
        e.events.push_back(kept(event));
        if e.events.len() > RUN_EVENTS {
            e.events.pop_front();
        }
        let before = e.status;
        let kind = EventType::from_text(&event.event_type);
        let after = match kind {
            Some(EventType::StatusRunning) => RunStatus::Running,
            Some(EventType::StatusCompleted) => RunStatus::Completed,
            Some(EventType::StatusFailed) => RunStatus::Failed,
            Some(EventType::StatusCancelled) => RunStatus::Cancelled,
            Some(EventType::StatusRequeued) => RunStatus::Pending,
            _ => before,
        };
        if is_terminal(before) {
            // A late event of a finished run changes nothing.
            return;
        }
        let node = event.data.get("node_id").and_then(Value::as_str);
        let mut queued_for = None;
        let mut ran_for = None;
        match kind {
            Some(EventType::StatusRunning) => {
                e.node_id = node.map(str::to_string);
                e.assigned_ms = Some(at);
                queued_for = Some(at.saturating_sub(e.queued_ms));
            }
            Some(EventType::StatusRequeued) => {
                e.requeues += 1;
                e.queued_ms = at;
                e.node_id = None;
                e.assigned_ms = None;
            }
            Some(k) if k.is_terminal() => {
                e.finished_ms = Some(at);
                if let Some(a) = e.assigned_ms {
                    ran_for = Some(at.saturating_sub(a));
                }
                if k == EventType::StatusFailed {
                    e.error = Some(
                        event
                            .data
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    );
                }
            }
            _ => {}
        }
        let timed_out = e.error.as_deref().is_some_and(is_timeout);
        let requeued = kind == Some(EventType::StatusRequeued);
        if e.workflow.is_none() && requeued {
            e.uncounted_requeues += 1;
        }
        e.status = after;
        if e.workflow.is_some() && is_terminal(after) {
            e.counted = true;
        }
        let run_id = e.run_id;
        if let Some(ms) = queued_for {
            counts.queue_latency.observe(ms as f64 / 1000.0);
        }
        if let Some(ms) = ran_for {
            counts.run_latency.observe(ms as f64 / 1000.0);
        }
        if let Some(wf) = e.workflow.as_deref() {
            if requeued {
                counts.count(wf, REQUEUED, 1);
            }
            if after != before {
                counts.shift(wf, before, after, timed_out);
            }
        }
        if is_terminal(after) {
            self.forget(run_id);
        }
    }

    /// Notes that `run_id` finished and forgets the oldest finished runs
    /// beyond [`KEEP_FINISHED`].
    fn forget(&mut self, run_id: Uuid) {
        self.finished.push_back(run_id);
        while self.finished.len() > KEEP_FINISHED {
            if let Some(old) = self.finished.pop_front() {
                self.runs.remove(&old);
            }
        }
        if self.order.len() > 2 * self.runs.len() + 1024 {
            let runs = &self.runs;
            self.order.retain(|(_, id)| runs.contains_key(id));
        }
    }

    /// Takes the history's sample of the second that ends at `t_ms`.
    pub(super) fn sample(&mut self, t_ms: u64) {
        self.history.sample(t_ms, &self.counts);
    }
}

fn is_timeout(error: &str) -> bool {
    error.starts_with(&RunErrorKind::Timeout.tag(""))
}

/// `data`, or a note of its size when its JSON is longer than
/// [`EVENT_DATA_MAX`].
#[cfg(test)]
pub(super) fn cut(data: &Value) -> Value {
    too_long(data).unwrap_or_else(|| data.clone())
}

/// The event as a run's timeline keeps it: shared with the journal, or a
/// copy whose data is a note of its size when its JSON is longer than
/// [`EVENT_DATA_MAX`].
fn kept(event: &Arc<RunEvent>) -> Arc<RunEvent> {
    match too_long(&event.data) {
        None => event.clone(),
        Some(note) => Arc::new(RunEvent {
            run_id: event.run_id,
            event_type: event.event_type.clone(),
            data: note,
            timestamp_ms: event.timestamp_ms,
        }),
    }
}

/// A note of the size of `data` when its JSON is longer than
/// [`EVENT_DATA_MAX`]. The JSON is only counted, and only up to the limit
/// unless it is longer.
fn too_long(data: &Value) -> Option<Value> {
    if json_len(data, EVENT_DATA_MAX).is_some() {
        return None;
    }
    let len = json_len(data, usize::MAX).unwrap_or(usize::MAX);
    Some(json!({ "truncated": true, "json_bytes": len }))
}

/// The length of `data`'s JSON text, if it is at most `most` bytes.
fn json_len(data: &Value, most: usize) -> Option<usize> {
    /// Counts bytes, failing past its limit.
    struct Count {
        n: usize,
        most: usize,
    }
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.n += b.len();
            if self.n > self.most {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count { n: 0, most };
    serde_json::to_writer(&mut count, data).ok()?;
    Some(count.n)
}
