//! The counts the index keeps as events arrive: runs by workflow and
//! outcome, live counts (pending, running) by workflow, and the queue and
//! run latency histograms.

use std::collections::BTreeMap;

use blazen_core::distributed::RunStatus;

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
pub(super) const SUBMITTED: usize = 0;
pub(super) const COMPLETED: usize = 1;
pub(super) const FAILED: usize = 2;
pub(super) const CANCELLED: usize = 3;
pub(super) const REQUEUED: usize = 4;
pub(super) const TIMED_OUT: usize = 5;

/// A latency histogram (seconds), Prometheus-style cumulative on output.
#[derive(Default, Clone)]
pub(crate) struct Histogram {
    /// Observations in each bucket (not cumulative); the last is +Inf.
    pub(crate) counts: [u64; BUCKETS.len() + 1],
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

impl Histogram {
    pub(super) fn observe(&mut self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// Live counts of one workflow.
#[derive(Default, Clone, Copy)]
pub(crate) struct Live {
    pub(crate) pending: u64,
    pub(crate) running: u64,
}

/// Every count and histogram of the index.
#[derive(Default)]
pub(super) struct Counters {
    /// [`COUNTERS`] by workflow.
    pub(super) by_workflow: BTreeMap<String, [u64; COUNTERS.len()]>,
    pub(super) live: BTreeMap<String, Live>,
    /// Totals of [`Counters::by_workflow`] over every workflow.
    pub(super) totals: [u64; COUNTERS.len()],
    pub(super) queue_latency: Histogram,
    pub(super) run_latency: Histogram,
}

impl Counters {
    /// Moves a run of `workflow` from `from` to `to` in the live counts
    /// and counts a terminal `to`.
    pub(super) fn shift(
        &mut self,
        workflow: &str,
        from: RunStatus,
        to: RunStatus,
        timed_out: bool,
    ) {
        let live = slot(&mut self.live, workflow);
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

    /// Adds `n` to counter `which` of `workflow` (and to the totals).
    pub(super) fn count(&mut self, workflow: &str, which: usize, n: u64) {
        slot(&mut self.by_workflow, workflow)[which] += n;
        self.totals[which] += n;
    }
}

/// `workflow`'s value in `map`, inserted as the default the first time
/// (the name is copied only then).
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, workflow: &str) -> &'m mut V {
    if !map.contains_key(workflow) {
        map.insert(workflow.to_string(), V::default());
    }
    map.get_mut(workflow).expect("inserted above")
}
