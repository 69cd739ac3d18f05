//! The chaos run's faults, drawn from the seed before the run starts: the
//! same seed and duration give the same faults, in the same order, at the
//! same planned times with the same parameters.

use std::fmt;

/// SplitMix64: small, seedable, and enough for picking faults.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `kill -9` of the control plane, a new one after a pause.
    CpKill,
    /// `kill -9` of one worker, a new one (new node id) after a pause.
    WorkerKill,
    /// Redis stopped with SIGTERM and started again on its data.
    RedisRestart,
    /// Redis frozen with SIGSTOP, then SIGCONT.
    RedisPause,
    /// Every chunk between workers and control plane delayed for a while.
    ProxyDelay,
    /// Nothing forwarded between workers and control plane for a while.
    ProxyStall,
    /// Every connection between workers and control plane reset.
    ProxyReset,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::CpKill,
        Kind::WorkerKill,
        Kind::RedisRestart,
        Kind::RedisPause,
        Kind::ProxyDelay,
        Kind::ProxyStall,
        Kind::ProxyReset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::CpKill => "control plane kill -9 + restart",
            Kind::WorkerKill => "worker kill -9 + restart",
            Kind::RedisRestart => "Redis restart (SIGTERM, start)",
            Kind::RedisPause => "Redis SIGSTOP ... SIGCONT",
            Kind::ProxyDelay => "proxy delay",
            Kind::ProxyStall => "proxy stall",
            Kind::ProxyReset => "proxy reset of every connection",
        }
    }
}

/// One planned fault.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// Planned start, in seconds from the start of the fault phase.
    pub at_s: f64,
    pub kind: Kind,
    /// Which worker (WorkerKill).
    pub worker: usize,
    /// The pause before a restart (CpKill, WorkerKill), how long Redis
    /// stays stopped (RedisPause), how long a delay or stall lasts (ms).
    pub hold_ms: u64,
    /// The delay per chunk (ProxyDelay, ms).
    pub delay_ms: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::CpKill => write!(f, "{}, restart after {} ms", self.kind.name(), self.hold_ms),
            Kind::WorkerKill => write!(
                f,
                "{} (worker {}), restart after {} ms",
                self.kind.name(),
                self.worker,
                self.hold_ms
            ),
            Kind::RedisRestart | Kind::ProxyReset => write!(f, "{}", self.kind.name()),
            Kind::RedisPause => write!(f, "{} for {} ms", self.kind.name(), self.hold_ms),
            Kind::ProxyDelay => write!(
                f,
                "{} of {} ms per chunk for {} ms",
                self.kind.name(),
                self.delay_ms,
                self.hold_ms
            ),
            Kind::ProxyStall => write!(f, "{} for {} ms", self.kind.name(), self.hold_ms),
        }
    }
}

/// The faults of a run of `secs` seconds: one every 2 to 6 s; the first
/// seven are every kind once, in a drawn order (so even a short run has
/// each), then any kind.
pub fn plan(seed: u64, secs: f64, workers: usize) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut first = Kind::ALL.to_vec();
    for i in (1..first.len()).rev() {
        first.swap(i, rng.range(0, i as u64) as usize);
    }
    let mut faults = Vec::new();
    let mut at = 0.0;
    loop {
        at += rng.range(2000, 6000) as f64 / 1000.0;
        if at > secs {
            return faults;
        }
        let kind = if faults.len() < first.len() {
            first[faults.len()]
        } else {
            Kind::ALL[rng.range(0, Kind::ALL.len() as u64 - 1) as usize]
        };
        let worker = rng.range(0, workers as u64 - 1) as usize;
        let hold_ms = match kind {
            Kind::CpKill => rng.range(0, 1500),
            Kind::WorkerKill => rng.range(0, 2000),
            Kind::RedisPause => rng.range(2000, 5000),
            Kind::ProxyDelay => rng.range(3000, 8000),
            Kind::ProxyStall => rng.range(1000, 4000),
            Kind::RedisRestart | Kind::ProxyReset => 0,
        };
        let delay_ms = rng.range(20, 150);
        faults.push(Fault {
            at_s: at,
            kind,
            worker,
            hold_ms,
            delay_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_plan_and_every_kind() {
        let a = plan(42, 60.0, 4);
        let b = plan(42, 60.0, 4);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(format!("{a:?}"), format!("{:?}", plan(43, 60.0, 4)));
        for kind in Kind::ALL {
            assert!(a.iter().any(|f| f.kind == kind), "{kind:?} missing");
        }
        assert!(a.iter().all(|f| f.at_s <= 60.0 && f.worker < 4));
    }
}
