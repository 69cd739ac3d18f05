//! The per-second history the dashboard's charts draw: live counts and
//! what finished or arrived in each second, for the last [`HISTORY`]
//! seconds.

use std::collections::VecDeque;

use super::counters::{Counters, CANCELLED, COMPLETED, COUNTERS, FAILED, SUBMITTED};

/// Samples of the per-second history (ten minutes).
pub(super) const HISTORY: usize = 600;

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

/// The last [`HISTORY`] samples.
#[derive(Default)]
pub(super) struct History {
    samples: VecDeque<Sample>,
    /// The counters' totals at the last sample.
    sampled: [u64; COUNTERS.len()],
}

impl History {
    /// Takes the sample of the second that ends at `t_ms` from `c`.
    pub(super) fn sample(&mut self, t_ms: u64, c: &Counters) {
        let (pending, running) = c
            .live
            .values()
            .fold((0, 0), |(p, r), l| (p + l.pending, r + l.running));
        let d = |i: usize| c.totals[i] - self.sampled[i];
        let s = Sample {
            t_ms,
            pending,
            running,
            completed: d(COMPLETED),
            failed: d(FAILED),
            cancelled: d(CANCELLED),
            submitted: d(SUBMITTED),
        };
        self.sampled = c.totals;
        self.samples.push_back(s);
        if self.samples.len() > HISTORY {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub(super) fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}
