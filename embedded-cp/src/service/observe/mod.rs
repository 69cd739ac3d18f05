//! What the HTTP side and the run listing read: an index of runs (newest
//! first, with workflow, status, times, error and recent events),
//! counters by workflow, latency histograms, event-bus figures and a
//! per-second history for the dashboard's charts.
//!
//! Nothing here is on the dispatch path but one call per accepted
//! submission ([`Stats::submitted`]: one lock, one map insert). Everything
//! else is derived from the event bus (`bus`) by the one reader that also
//! feeds the run journal (`recorder`, through [`Stats::record`]), which
//! keeps each event shared with the journal rather than copied; what it
//! missed when it fell behind is counted as dropped.
//!
//! Bounds: every run not yet finished is kept, and the last
//! [`KEEP_FINISHED`](index::KEEP_FINISHED) finished ones; a run keeps its
//! last [`RUN_EVENTS`](index::RUN_EVENTS) events, each event's data cut to
//! [`EVENT_DATA_MAX`](index::EVENT_DATA_MAX) bytes of JSON.
//!
//! The parts: [`index`] (the runs, fed by submissions and events, one
//! [`entry`] each), [`counters`] (counts and histograms), [`history`] (the
//! per-second samples), [`filter`] (a page of the listing) and [`read`]
//! (what an [`Observer`] reads).

mod counters;
mod entry;
mod filter;
mod history;
mod index;
mod read;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use blazen_core::distributed::{RunEvent, RunStatus};
use uuid::Uuid;

use crate::lock;

use super::{is_terminal, now_ms, Plane, Service};

pub(crate) use counters::{Histogram, Live, BUCKETS, COUNTERS};
pub(crate) use filter::RunFilter;
pub(crate) use read::{Snapshot, StoreView};

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

/// What the index, counters and histograms hold, and the bus figures.
#[derive(Default)]
pub(crate) struct Stats {
    index: Mutex<index::Index>,
    /// Set once the [`observer`] runs: until then submissions are not
    /// recorded (nothing would ever forget them).
    on: AtomicBool,
    events_seen: AtomicU64,
    events_dropped: AtomicU64,
}

impl Stats {
    /// Records an accepted submission (the one call on the dispatch path).
    pub(super) fn submitted(&self, run_id: Uuid, workflow: &str, at_ms: u64) {
        if self.on.load(Ordering::Relaxed) {
            lock(&self.index).submitted(run_id, workflow, at_ms);
        }
    }
}

/// Read-only access to a running control plane, for the HTTP side and
/// the run listing (its reads are in [`read`]). Holds the plane alive
/// while it lives.
#[derive(Clone)]
pub(crate) struct Observer(Arc<Plane>);

impl Service {
    /// Starts the [`observer`] task (once) and returns a reader of the
    /// plane.
    pub(crate) fn observer(&self) -> Observer {
        if !self.cp.stats.on.swap(true, Ordering::SeqCst) {
            tokio::spawn(observer(Arc::downgrade(&self.cp)));
        }
        Observer(self.cp.clone())
    }
}

/// How often the history takes a sample.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Takes the history's samples, until the server ends. The index itself is
/// fed by the journal's reader of the event bus ([`Stats::record`]), so an
/// event is received once for both.
async fn observer(plane: Weak<Plane>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cp) = plane.upgrade() else { return };
        lock(&cp.stats.index).sample(now_ms());
    }
}

impl Stats {
    /// Records an event from the bus, once the observer runs.
    pub(super) fn record(&self, event: &Arc<RunEvent>) {
        if self.on.load(Ordering::Relaxed) {
            self.events_seen.fetch_add(1, Ordering::Relaxed);
            lock(&self.index).record(event);
        }
    }

    /// Counts events the bus's reader missed.
    pub(super) fn missed(&self, n: u64) {
        if self.on.load(Ordering::Relaxed) {
            self.events_seen.fetch_add(n, Ordering::Relaxed);
            self.events_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}
