//! What an [`Observer`] reads: the counters at once ([`Snapshot`]), the
//! workers, the store's state, the history, a page of runs, the runs by
//! status, and one run.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use blazen_controlplane::server::store::AssignmentStore;
use blazen_core::distributed::{AdmissionMode, RunStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::lock;

use super::counters::{Histogram, Live, COUNTERS};
use super::entry::Entry;
use super::filter::RunFilter;
use super::history::Sample;
use super::{status_text, Observer};

/// A worker as the API gives it.
pub(crate) struct WorkerView {
    pub(crate) node_id: String,
    pub(crate) in_flight: u32,
    /// `max_in_flight` of a Fixed worker.
    pub(crate) max_in_flight: Option<u32>,
    pub(crate) admission: &'static str,
    pub(crate) capabilities: Vec<String>,
    pub(crate) connected_at_ms: u64,
}

/// The store's state for `/readyz` and `/metrics`.
pub(crate) enum StoreView {
    None,
    Up,
    Down(String),
}

/// Everything `/metrics` and the dashboard's overview show, read at once.
pub(crate) struct Snapshot {
    pub(crate) counters: BTreeMap<String, [u64; COUNTERS.len()]>,
    pub(crate) live: BTreeMap<String, Live>,
    pub(crate) totals: [u64; COUNTERS.len()],
    pub(crate) queue_latency: Histogram,
    pub(crate) run_latency: Histogram,
    pub(crate) events_published: u64,
    pub(crate) events_dropped: u64,
    pub(crate) workers: Vec<WorkerView>,
    pub(crate) store: StoreView,
    /// Writes waiting to be sent to the store (0 without one).
    pub(crate) writes_waiting: usize,
    /// Runs the index holds.
    pub(crate) indexed: usize,
}

impl Observer {
    /// Counters, gauges and histograms as they are now.
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let store = self.store().await;
        let stats = &self.0.stats;
        let workers = self.workers();
        let i = lock(&stats.index);
        Snapshot {
            counters: i.counts.by_workflow.clone(),
            live: i.counts.live.clone(),
            totals: i.counts.totals,
            queue_latency: i.counts.queue_latency.clone(),
            run_latency: i.counts.run_latency.clone(),
            events_published: stats.events_seen.load(Ordering::Relaxed),
            events_dropped: stats.events_dropped.load(Ordering::Relaxed),
            workers,
            store,
            writes_waiting: self.0.store.as_ref().map_or(0, |s| s.writes_waiting()),
            indexed: i.runs.len(),
        }
    }

    /// The connected workers, by node id.
    pub(crate) fn workers(&self) -> Vec<WorkerView> {
        let mut v: Vec<WorkerView> = self
            .0
            .shared
            .registry
            .list()
            .into_iter()
            .map(|w| {
                let (admission, max_in_flight) = match w.admission {
                    AdmissionMode::Fixed { max_in_flight } => ("Fixed", Some(max_in_flight)),
                    AdmissionMode::VramBudget { .. } => ("VramBudget", None),
                    AdmissionMode::Reactive => ("Reactive", None),
                };
                WorkerView {
                    node_id: w.node_id,
                    in_flight: w.in_flight,
                    max_in_flight,
                    admission,
                    capabilities: w
                        .capabilities
                        .iter()
                        .map(|c| format!("{}@{}", c.kind, c.version))
                        .collect(),
                    connected_at_ms: w.connected_at_ms,
                }
            })
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    /// Whether the store answers: a read through its guard, which fails
    /// at once while the guard takes it to be down.
    pub(crate) async fn store(&self) -> StoreView {
        match &self.0.store {
            None => StoreView::None,
            Some(s) => match s.get_state(Uuid::nil()).await {
                Ok(_) => StoreView::Up,
                Err(e) => StoreView::Down(e.to_string()),
            },
        }
    }

    /// The per-second history, oldest first.
    pub(crate) fn history(&self) -> Vec<Sample> {
        lock(&self.0.stats.index).history.samples()
    }

    /// One page of runs, newest first, and the cursor of the next page
    /// (`None` on the last).
    pub(crate) fn list(&self, f: &RunFilter) -> (Vec<Entry>, Option<u64>) {
        let i = lock(&self.0.stats.index);
        let mut page = Vec::new();
        let mut more = false;
        for (seq, id) in i.order.iter().rev() {
            if f.before.is_some_and(|b| *seq >= b) {
                continue;
            }
            let Some(e) = i.runs.get(id) else { continue };
            if f.status.is_some_and(|s| s != e.status)
                || f.workflow
                    .as_ref()
                    .is_some_and(|w| e.workflow.as_ref() != Some(w))
            {
                continue;
            }
            if page.len() == f.limit {
                more = true;
                break;
            }
            page.push(e.clone());
        }
        let next = if more {
            page.last().map(|e| e.seq)
        } else {
            None
        };
        (page, next)
    }

    /// How many runs the index holds in each status.
    pub(crate) fn by_status(&self) -> [(RunStatus, u64); 5] {
        let i = lock(&self.0.stats.index);
        let mut n = [
            (RunStatus::Pending, 0),
            (RunStatus::Running, 0),
            (RunStatus::Completed, 0),
            (RunStatus::Failed, 0),
            (RunStatus::Cancelled, 0),
        ];
        for e in i.runs.values() {
            if let Some(slot) = n.iter_mut().find(|(s, _)| *s == e.status) {
                slot.1 += 1;
            }
        }
        n
    }

    /// One run: the index's entry (with its events) and the control
    /// plane's own snapshot.
    pub(crate) fn run(&self, run_id: Uuid) -> Option<(Option<Entry>, Option<Value>)> {
        let entry = lock(&self.0.stats.index).runs.get(&run_id).cloned();
        let snap = self.0.run_state(run_id).map(|(s, place)| {
            json!({
                "place": place,
                "status": status_text(s.status),
                "started_at_ms": s.started_at_ms,
                "completed_at_ms": s.completed_at_ms,
                "assigned_to": s.assigned_to,
                "last_event_at_ms": s.last_event_at_ms,
                "output": s.output,
                "error": s.error,
            })
        });
        (entry.is_some() || snap.is_some()).then_some((entry, snap))
    }
}
