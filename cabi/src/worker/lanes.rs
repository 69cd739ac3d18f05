//! The threads a worker's `handle` callbacks run on: a few library threads
//! of the worker's own, kept warm between runs, in place of a trip through
//! the runtime's shared blocking pool for every run.
//!
//! A call is queued and picked up by the first idle lane. A lane that has
//! just finished a call takes the next one without sleeping; one that finds
//! nothing looks again briefly (see [`crate::spin`]), then parks until a
//! call arrives (one wake-up) or [`KEEP_ALIVE`] passes (then it exits).
//! So a busy worker hands runs to its lanes without a system call, and the
//! lanes share no lock with any other worker's. A worker never has more lanes than calls in progress at
//! once (its `max_in_flight` for Fixed admission), nor more than
//! [`MOST_LANES`].
//!
//! The lanes are not runtime threads: a callback may block, or call the
//! library's `_blocking` functions, as on any thread of the host's.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::rt::lock;
use crate::spin::Spin;

/// How long an idle lane waits for a call before it exits.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The most lanes a worker without a fixed `max_in_flight` gets.
pub(super) const MOST_LANES: usize = 512;

/// A queued call: runs the callback and returns how to hand its result
/// over (done by the lane once it counts as free, see [`serve`]).
type Call = Box<dyn FnOnce() -> Deliver + Send>;
type Deliver = Box<dyn FnOnce() + Send>;

/// A worker's lanes. Dropping this lets every idle lane exit; calls
/// already queued still run.
pub(super) struct Lanes {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    most: usize,
}

#[derive(Default)]
struct Queue {
    calls: VecDeque<Call>,
    /// Lanes parked for want of a call, the most recent last.
    parked: Vec<Thread>,
    lanes: usize,
    /// Lanes looking for a call without having parked (see [`serve`]).
    spinning: usize,
    closed: bool,
}

/// What a call panicked with, as text.
pub(super) struct Panicked(pub(super) String);

impl Lanes {
    /// Lanes for a worker with at most `most` calls in progress at once.
    pub(super) fn new(most: usize) -> Self {
        let most = most.clamp(1, MOST_LANES);
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                most,
            }),
        }
    }

    /// Runs `f` on a lane. The call runs even if the returned future is
    /// dropped before it ends; a panic in `f` becomes `Err`.
    pub(super) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, Panicked>> {
        let (tx, rx) = oneshot::channel();
        self.push(Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                Panicked(text)
            });
            Box::new(move || drop(tx.send(r)))
        }));
        async move {
            rx.await
                .unwrap_or_else(|_| Err(Panicked("the call was lost".to_string())))
        }
    }

    fn push(&self, call: Call) {
        let mut q = lock(&self.shared.queue);
        q.calls.push_back(call);
        if q.calls.len() <= q.spinning {
            // A spinning lane takes it.
        } else if let Some(lane) = q.parked.pop() {
            drop(q);
            lane.unpark();
        } else if q.lanes < self.shared.most {
            q.lanes += 1;
            drop(q);
            self.start_lane();
        }
    }

    fn start_lane(&self) {
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name("blazen-handler".into())
            .spawn(move || serve(&shared));
        if started.is_err() {
            // No thread to be had: the lanes there are take the call; with
            // none at all, a thread of the runtime's blocking pool does.
            let mut q = lock(&self.shared.queue);
            q.lanes -= 1;
            if q.lanes == 0 {
                let calls: Vec<Call> = q.calls.drain(..).collect();
                drop(q);
                drop(
                    crate::rt::runtime()
                        .spawn_blocking(move || calls.into_iter().for_each(|c| c()())),
                );
            }
        }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        let mut q = lock(&self.shared.queue);
        q.closed = true;
        let parked = std::mem::take(&mut q.parked);
        drop(q);
        parked.iter().for_each(Thread::unpark);
    }
}

/// One lane: runs calls until it has been idle for [`KEEP_ALIVE`], or the
/// worker's lanes are dropped and nothing is queued.
fn serve(shared: &Shared) {
    let me = std::thread::current();
    let mut idle_since = Instant::now();
    let mut spin = Spin::default();
    let mut q = lock(&shared.queue);
    loop {
        if let Some(call) = q.calls.pop_front() {
            drop(q);
            let deliver = call();
            // Counted as looking for calls before the caller hears back, so
            // the call it makes next finds this lane (not a new one).
            lock(&shared.queue).spinning += 1;
            deliver();
            let _ = spin.look(|| (!lock(&shared.queue).calls.is_empty()).then_some(()));
            q = lock(&shared.queue);
            q.spinning -= 1;
            idle_since = Instant::now();
            continue;
        }
        if q.closed || idle_since.elapsed() >= KEEP_ALIVE {
            q.parked.retain(|t| t.id() != me.id());
            q.lanes -= 1;
            return;
        }
        if !q.parked.iter().any(|t| t.id() == me.id()) {
            q.parked.push(me.clone());
        }
        drop(q);
        let parked_at = Instant::now();
        std::thread::park_timeout(KEEP_ALIVE.saturating_sub(idle_since.elapsed()));
        spin.slept(parked_at.elapsed());
        q = lock(&shared.queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_run_in_parallel_up_to_the_limit_and_panics_are_reported() {
        let lanes = Lanes::new(4);
        let gate = Arc::new(std::sync::Barrier::new(4));
        let calls: Vec<_> = (0..4)
            .map(|i| {
                let gate = gate.clone();
                lanes.run(move || {
                    gate.wait();
                    i * 2
                })
            })
            .collect();
        let mut got = Vec::new();
        for c in calls {
            got.push(c.await.ok().unwrap());
        }
        assert_eq!(got, vec![0, 2, 4, 6]);
        assert_eq!(lock(&lanes.shared.queue).lanes, 4);
        let p = lanes.run(|| -> u8 { panic!("boom") }).await;
        assert_eq!(p.err().map(|p| p.0), Some("boom".to_string()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_runs_when_its_future_is_dropped_and_lanes_exit_after_the_drop() {
        let lanes = Lanes::new(2);
        let (tx, rx) = std::sync::mpsc::channel();
        drop(lanes.run(move || tx.send(7).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        let shared = lanes.shared.clone();
        drop(lanes);
        let start = Instant::now();
        while lock(&shared.queue).lanes > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "a lane outlived its worker"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sequential_calls_reuse_one_lane() {
        let lanes = Lanes::new(8);
        let mut threads = std::collections::HashSet::new();
        for _ in 0..50 {
            threads.insert(
                lanes
                    .run(|| std::thread::current().id())
                    .await
                    .ok()
                    .unwrap(),
            );
        }
        assert_eq!(threads.len(), 1, "{threads:?}");
    }
}
