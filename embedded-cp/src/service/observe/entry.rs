//! One run as the index knows it, and its JSON form.

use std::collections::VecDeque;
use std::sync::Arc;

use blazen_core::distributed::{RunEvent, RunStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use super::status_text;

/// One run as the index knows it.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) run_id: Uuid,
    /// Order of first sight (submission order, but for a run whose first
    /// event beat its submission's record).
    pub(crate) seq: u64,
    /// `None` until the submission is recorded (a run recovered from a
    /// store after a restart never has one).
    pub(crate) workflow: Option<String>,
    pub(crate) status: RunStatus,
    pub(crate) submitted_ms: u64,
    /// When it was last queued (submitted or re-queued).
    pub(super) queued_ms: u64,
    pub(crate) assigned_ms: Option<u64>,
    pub(crate) finished_ms: Option<u64>,
    pub(crate) node_id: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) requeues: u32,
    /// Re-queues seen before the workflow was known, not yet counted.
    pub(super) uncounted_requeues: u32,
    /// Whether its terminal status has been counted.
    pub(super) counted: bool,
    /// Its last events (shared with the run journal while it keeps them).
    pub(crate) events: VecDeque<Arc<RunEvent>>,
}

impl Entry {
    pub(super) fn new(run_id: Uuid, seq: u64, at: u64) -> Self {
        Entry {
            run_id,
            seq,
            workflow: None,
            status: RunStatus::Pending,
            submitted_ms: at,
            queued_ms: at,
            assigned_ms: None,
            finished_ms: None,
            node_id: None,
            error: None,
            requeues: 0,
            uncounted_requeues: 0,
            counted: false,
            events: VecDeque::new(),
        }
    }

    /// The run as the API and the listing give it.
    pub(crate) fn to_json(&self, with_events: bool) -> Value {
        let duration_ms = match (self.assigned_ms, self.finished_ms) {
            (Some(a), Some(f)) => Some(f.saturating_sub(a)),
            _ => None,
        };
        let mut v = json!({
            "run_id": self.run_id.to_string(),
            "seq": self.seq,
            "workflow": self.workflow,
            "status": status_text(self.status),
            "submitted_ms": self.submitted_ms,
            "assigned_ms": self.assigned_ms,
            "finished_ms": self.finished_ms,
            "duration_ms": duration_ms,
            "node_id": self.node_id,
            "error": self.error,
            "requeues": self.requeues,
        });
        if with_events {
            v["events"] = self
                .events
                .iter()
                .map(|e| {
                    json!({"timestamp_ms": e.timestamp_ms, "event_type": e.event_type, "data": e.data})
                })
                .collect();
        }
        v
    }
}
