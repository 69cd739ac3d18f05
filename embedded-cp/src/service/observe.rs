//! What the HTTP side (`crate::http`) and the run listing read: an index
//! of runs (newest first, with workflow, status, times, error and recent
//! events), counters by workflow, latency histograms, event-bus figures
//! and a per-second history for the dashboard's charts.
//!
//! Nothing here is on the dispatch path but one call per accepted
//! submission ([`Stats::submitted`]: one lock, one map insert). Everything
//! else is derived from the event bus by one task of its own
//! ([`observer`]), which subscribes like any other subscriber; what it
//! missed when it fell behind is counted as dropped.
//!
//! Bounds: every run not yet finished is kept, and the last
//! [`KEEP_FINISHED`] finished ones; a run keeps its last [`RUN_EVENTS`]
//! events, each event's data cut to [`EVENT_DATA_MAX`] bytes of JSON.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use blazen_controlplane::server::store::AssignmentStore;
use blazen_core::distributed::{AdmissionMode, RunEvent, RunStatus};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{lock, EventType, RunErrorKind};

use super::{now_ms, Plane, Service};

/// Finished runs the index keeps (the oldest go first).
pub(crate) const KEEP_FINISHED: usize = 10_000;

/// Events a run keeps for its timeline (the oldest go first).
pub(crate) const RUN_EVENTS: usize = 32;

/// The longest event data (as JSON text) kept; longer data is replaced
/// by a note of its length.
pub(crate) const EVENT_DATA_MAX: usize = 1024;

/// Samples of the per-second history (ten minutes).
pub(crate) const HISTORY: usize = 600;

/// Upper bounds of the latency histograms' buckets, in seconds.
pub(crate) const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The counters kept per workflow, in this order.
pub(crate) const COUNTERS: [&str; 6] = [
    "submitted",
    "completed",
    "failed",
    "cancelled",
    "requeued",
    "timed_out",
];
const SUBMITTED: usize = 0;
const COMPLETED: usize = 1;
const FAILED: usize = 2;
const CANCELLED: usize = 3;
const REQUEUED: usize = 4;
const TIMED_OUT: usize = 5;

/// Milliseconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    now_ms()
}

/// The text of a status, as the API and the listing filter spell it.
pub(crate) fn status_text(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Pending => "pending",
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

/// The status a text names (any case), if any.
pub(crate) fn status_from_text(t: &str) -> Option<RunStatus> {
    [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ]
    .into_iter()
    .find(|s| status_text(*s).eq_ignore_ascii_case(t))
}

/// A latency histogram (seconds), Prometheus-style cumulative on output.
#[derive(Default, Clone)]
pub(crate) struct Histogram {
    /// Observations in each bucket (not cumulative); the last is +Inf.
    pub(crate) counts: [u64; BUCKETS.len() + 1],
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

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
    queued_ms: u64,
    pub(crate) assigned_ms: Option<u64>,
    pub(crate) finished_ms: Option<u64>,
    pub(crate) node_id: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) requeues: u32,
    /// Re-queues seen before the workflow was known, not yet counted.
    uncounted_requeues: u32,
    /// Whether its terminal status has been counted.
    counted: bool,
    pub(crate) events: VecDeque<(u64, String, Value)>,
}

impl Entry {
    fn new(run_id: Uuid, seq: u64, at: u64) -> Self {
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
                .map(|(t, ty, data)| json!({"timestamp_ms": t, "event_type": ty, "data": data}))
                .collect();
        }
        v
    }
}

/// Live counts of one workflow.
#[derive(Default, Clone, Copy)]
pub(crate) struct Live {
    pub(crate) pending: u64,
    pub(crate) running: u64,
}

/// One second of the dashboard's history.
#[derive(Clone, Copy, serde::Serialize)]
pub(crate) struct Sample {
    pub(crate) t_ms: u64,
    pub(crate) pending: u64,
    pub(crate) running: u64,
    /// Runs that finished in that second, by outcome.
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) submitted: u64,
}

#[derive(Default)]
struct Index {
    runs: HashMap<Uuid, Entry>,
    /// Run ids by `seq`, oldest first (ids of forgotten runs linger until
    /// the next compaction).
    order: VecDeque<(u64, Uuid)>,
    /// Finished runs, oldest finish first, for forgetting.
    finished: VecDeque<Uuid>,
    next_seq: u64,
    counters: BTreeMap<String, [u64; COUNTERS.len()]>,
    live: BTreeMap<String, Live>,
    /// Totals of [`Index::counters`] over every workflow.
    totals: [u64; COUNTERS.len()],
    queue_latency: Histogram,
    run_latency: Histogram,
    history: VecDeque<Sample>,
    /// `totals` at the last sample.
    sampled: [u64; COUNTERS.len()],
}

/// What the index, counters and histograms hold, and the bus figures.
#[derive(Default)]
pub(crate) struct Stats {
    index: Mutex<Index>,
    /// Set once the [`observer`] runs: until then submissions are not
    /// recorded (nothing would ever forget them).
    on: AtomicBool,
    events_seen: AtomicU64,
    events_dropped: AtomicU64,
}

impl Index {
    fn entry(&mut self, run_id: Uuid, at: u64) -> &mut Entry {
        let seq = self.next_seq;
        let fresh = !self.runs.contains_key(&run_id);
        if fresh {
            self.next_seq += 1;
            self.order.push_back((seq, run_id));
        }
        self.runs
            .entry(run_id)
            .or_insert_with(|| Entry::new(run_id, seq, at))
    }

    /// Moves a run of `workflow` from `from` to `to` in the live counts
    /// and counts a terminal `to`.
    fn shift(&mut self, workflow: &str, from: RunStatus, to: RunStatus, timed_out: bool) {
        let live = self.live.entry(workflow.to_string()).or_default();
        match from {
            RunStatus::Pending => live.pending = live.pending.saturating_sub(1),
            RunStatus::Running => live.running = live.running.saturating_sub(1),
            _ => {}
        }
        match to {
            RunStatus::Pending => live.pending += 1,
            RunStatus::Running => live.running += 1,
            RunStatus::Completed => self.count(workflow, COMPLETED, 1),
            RunStatus::Failed => {
                self.count(workflow, FAILED, 1);
                if timed_out {
                    self.count(workflow, TIMED_OUT, 1);
                }
            }
            RunStatus::Cancelled => self.count(workflow, CANCELLED, 1),
        }
    }

    fn count(&mut self, workflow: &str, which: usize, n: u64) {
        self.counters
            .entry(workflow.to_string())
            .or_insert([0; COUNTERS.len()])[which] += n;
        self.totals[which] += n;
    }

    /// Records the submission of `run_id` for `workflow`.
    fn submitted(&mut self, run_id: Uuid, workflow: &str, at: u64) {
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
        self.count(workflow, SUBMITTED, 1);
        self.count(workflow, REQUEUED, u64::from(requeues));
        if !was_counted {
            // As if it went from nowhere to where it is now.
            self.shift(workflow, RunStatus::Completed, status, timed_out);
        }
    }

    /// Applies one event of the bus.
    fn record(&mut self, event: &RunEvent) {
        let at = event.timestamp_ms;
        let e = self.entry(event.run_id, at);
        e.events
            .push_back((at, event.event_type.clone(), cut(&event.data)));
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
        let workflow = e.workflow.clone();
        let timed_out = e.error.as_deref().is_some_and(is_timeout);
        let requeued = kind == Some(EventType::StatusRequeued);
        if workflow.is_none() && requeued {
            e.uncounted_requeues += 1;
        }
        e.status = after;
        if workflow.is_some() && is_terminal(after) {
            e.counted = true;
        }
        let run_id = e.run_id;
        if let Some(ms) = queued_for {
            self.queue_latency.observe(ms as f64 / 1000.0);
        }
        if let Some(ms) = ran_for {
            self.run_latency.observe(ms as f64 / 1000.0);
        }
        if let Some(wf) = workflow {
            if requeued {
                self.count(&wf, REQUEUED, 1);
            }
            if after != before {
                self.shift(&wf, before, after, timed_out);
            }
        }
        if is_terminal(after) {
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
    }

    fn sample(&mut self, t_ms: u64) {
        let (pending, running) = self
            .live
            .values()
            .fold((0, 0), |(p, r), l| (p + l.pending, r + l.running));
        let d = |i: usize| self.totals[i] - self.sampled[i];
        let s = Sample {
            t_ms,
            pending,
            running,
            completed: d(COMPLETED),
            failed: d(FAILED),
            cancelled: d(CANCELLED),
            submitted: d(SUBMITTED),
        };
        self.sampled = self.totals;
        self.history.push_back(s);
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }
}

fn is_terminal(s: RunStatus) -> bool {
    super::is_terminal(s)
}

fn is_timeout(error: &str) -> bool {
    error.starts_with(&RunErrorKind::Timeout.tag(""))
}

/// `data`, or a note of its size when its JSON is longer than
/// [`EVENT_DATA_MAX`].
fn cut(data: &Value) -> Value {
    let len = serde_json::to_string(data).map_or(0, |s| s.len());
    if len <= EVENT_DATA_MAX {
        data.clone()
    } else {
        json!({ "truncated": true, "json_bytes": len })
    }
}

impl Stats {
    /// Records an accepted submission (the one call on the dispatch path).
    pub(super) fn submitted(&self, run_id: Uuid, workflow: &str, at_ms: u64) {
        if self.on.load(Ordering::Relaxed) {
            lock(&self.index).submitted(run_id, workflow, at_ms);
        }
    }
}

/// A page of the run listing, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// At most this many (1..=[`RunFilter::MAX_LIMIT`]).
    pub limit: usize,
    /// Only runs older than this cursor (`next_cursor` of the page before).
    pub before: Option<u64>,
}

impl RunFilter {
    /// The most runs one page holds.
    pub const MAX_LIMIT: usize = 1000;
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: usize = 50;

    /// The filter a JSON object gives: `status` (`"pending"`, `"running"`,
    /// `"completed"`, `"failed"` or `"cancelled"`, any case), `workflow`
    /// (a string), `limit` (1 to 1,000; default 50) and `before` (a
    /// cursor); `null` is the default filter. Anything else is refused,
    /// with why.
    pub fn from_json(v: &Value) -> Result<RunFilter, String> {
        let mut f = RunFilter {
            limit: Self::DEFAULT_LIMIT,
            ..RunFilter::default()
        };
        let obj = match v {
            Value::Null => return Ok(f),
            Value::Object(o) => o,
            _ => return Err("must be null or a JSON object".into()),
        };
        for (k, val) in obj {
            match (k.as_str(), val) {
                (_, Value::Null) => {}
                ("status", Value::String(s)) => f.status = Some(Self::status(s)?),
                ("workflow", Value::String(s)) => f.workflow = Some(s.clone()),
                ("limit", v) => f.limit = Self::limit(&v.to_string())?,
                ("before", v) => f.before = Some(Self::cursor(&v.to_string())?),
                ("status" | "workflow", _) => return Err(format!("`{k}` must be a string")),
                _ => {
                    return Err(format!(
                        "unknown key `{k}` (expected `status`, `workflow`, `limit` or `before`)"
                    ))
                }
            }
        }
        Ok(f)
    }

    pub(crate) fn status(s: &str) -> Result<RunStatus, String> {
        status_from_text(s).ok_or_else(|| {
            format!(
                "`status` must be pending, running, completed, failed or cancelled, got {:?}",
                s.chars().take(64).collect::<String>()
            )
        })
    }

    pub(crate) fn limit(s: &str) -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(n) if (1..=Self::MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "`limit` must be an integer from 1 to {}, got {}",
                Self::MAX_LIMIT,
                s.chars().take(64).collect::<String>()
            )),
        }
    }

    pub(crate) fn cursor(s: &str) -> Result<u64, String> {
        s.parse::<u64>().map_err(|_| {
            format!(
                "`before` must be a cursor (a non-negative integer), got {}",
                s.chars().take(64).collect::<String>()
            )
        })
    }
}

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

/// Read-only access to a running control plane, for `crate::http` and
/// the run listing. Holds the plane alive while it lives.
#[derive(Clone)]
pub(crate) struct Observer(Arc<Plane>);

impl Service {
    /// Starts the [`observer`] task (once) and returns a reader of the
    /// plane.
    pub(crate) fn observer(&self) -> Observer {
        if !self.cp.stats.on.swap(true, Ordering::SeqCst) {
            tokio::spawn(observer(
                Arc::downgrade(&self.cp),
                self.cp.shared.events.subscribe(),
            ));
        }
        Observer(self.cp.clone())
    }
}

/// How often the history takes a sample.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Reads the event bus into the index and takes the history's samples,
/// until the server ends.
async fn observer(plane: Weak<Plane>, mut events: broadcast::Receiver<RunEvent>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = events.recv() => {
                let Some(cp) = plane.upgrade() else { return };
                let stats = &cp.stats;
                match received {
                    Ok(event) => {
                        stats.events_seen.fetch_add(1, Ordering::Relaxed);
                        lock(&stats.index).record(&event);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        stats.events_seen.fetch_add(n, Ordering::Relaxed);
                        stats.events_dropped.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            _ = tick.tick() => {
                let Some(cp) = plane.upgrade() else { return };
                lock(&cp.stats.index).sample(now_ms());
            }
        }
    }
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
            counters: i.counters.clone(),
            live: i.live.clone(),
            totals: i.totals,
            queue_latency: i.queue_latency.clone(),
            run_latency: i.run_latency.clone(),
            events_published: stats.events_seen.load(Ordering::Relaxed),
            events_dropped: stats.events_dropped.load(Ordering::Relaxed),
            workers,
            store,
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
        lock(&self.0.stats.index).history.iter().copied().collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(run_id: Uuid, ty: &str, data: Value, at: u64) -> RunEvent {
        RunEvent {
            run_id,
            event_type: ty.to_string(),
            data,
            timestamp_ms: at,
        }
    }

    #[test]
    fn counts_follow_events_whichever_comes_first() {
        let mut i = Index::default();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        // a: submitted, then run and completed.
        i.submitted(a, "w", 1000);
        i.record(&ev(a, "status.running", json!({"node_id": "n1"}), 1010));
        assert_eq!(i.live["w"].running, 1);
        i.record(&ev(a, "status.completed", json!({"output": 1}), 1110));
        // b: its running and failure events beat the record of its
        // submission; a deadline failure counts as timed out too.
        i.record(&ev(b, "status.running", json!({"node_id": "n1"}), 1001));
        i.record(&ev(b, "status.requeued", json!({"node_id": "n1"}), 1002));
        let err = RunErrorKind::Timeout.tag("late");
        i.record(&ev(b, "status.failed", json!({ "error": err }), 1003));
        assert!(!i.counters.contains_key("v"));
        i.submitted(b, "v", 1000);
        assert_eq!(i.counters["w"], [1, 1, 0, 0, 0, 0]);
        assert_eq!(i.counters["v"], [1, 0, 1, 0, 1, 1]);
        assert_eq!(i.live["w"].running, 0);
        assert_eq!(i.live["v"].pending, 0);
        assert_eq!(i.live["v"].running, 0);
        // A late event changes nothing.
        i.record(&ev(a, "status.failed", json!({"error": "x"}), 2000));
        assert_eq!(i.counters["w"], [1, 1, 0, 0, 0, 0]);
        assert_eq!(i.queue_latency.count, 2);
        assert_eq!(i.run_latency.count, 1);
        assert!((i.run_latency.sum - 0.1).abs() < 1e-9);
    }

    #[test]
    fn finished_runs_beyond_the_bound_are_forgotten_oldest_first() {
        let mut i = Index::default();
        let ids: Vec<Uuid> = (0..KEEP_FINISHED + 5).map(|_| Uuid::new_v4()).collect();
        for (n, id) in ids.iter().enumerate() {
            i.submitted(*id, "w", n as u64);
            i.record(&ev(*id, "status.cancelled", json!({}), n as u64));
        }
        assert_eq!(i.runs.len(), KEEP_FINISHED);
        assert!(!i.runs.contains_key(&ids[4]));
        assert!(i.runs.contains_key(&ids[5]));
        assert_eq!(i.counters["w"][CANCELLED], (KEEP_FINISHED + 5) as u64);
    }

    #[test]
    fn filters_refuse_bad_input_with_why() {
        let ok = RunFilter::from_json(&json!({"status": "FAILED", "limit": 10, "before": 7}));
        assert_eq!(
            ok,
            Ok(RunFilter {
                workflow: None,
                status: Some(RunStatus::Failed),
                limit: 10,
                before: Some(7)
            })
        );
        for (bad, why) in [
            (json!([]), "JSON object"),
            (json!({"status": "done"}), "`status` must be"),
            (json!({"status": 3}), "`status` must be a string"),
            (json!({"limit": 0}), "`limit` must be"),
            (json!({"limit": 1001}), "`limit` must be"),
            (json!({"limit": "5"}), "`limit` must be"),
            (json!({"before": -1}), "`before` must be"),
            (json!({"page": 1}), "unknown key `page`"),
        ] {
            let e = RunFilter::from_json(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn long_event_data_is_cut() {
        let big = json!({"x": "y".repeat(EVENT_DATA_MAX)});
        assert_eq!(cut(&big)["truncated"], json!(true));
        assert_eq!(cut(&json!({"a": 1})), json!({"a": 1}));
    }
}
