//! `BlazenCompletionQueue`: one place to learn which of many futures have
//! finished.
//!
//! A host with thousands of calls in flight registers each future on a
//! queue with a tag of its choosing (`blazen_future_notify`); when a future
//! finishes, its tag is appended to the queue. The host then waits on one
//! descriptor (readable exactly while tags wait) or blocks in
//! `blazen_completion_queue_next_blocking`, and takes tags in batches. No
//! descriptor, `epoll_ctl` or `close` per future: the descriptor is written
//! only when the queue goes from empty to non-empty, and read when a drain
//! empties it.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{eventfd, Result};

#[derive(Default)]
struct State {
    /// (tag, the future it is about) in the order they finished.
    tags: VecDeque<(u64, usize)>,
    /// Made on the first `blazen_completion_queue_fd`; readable exactly
    /// while `tags` is not empty.
    fd: Option<OwnedFd>,
    /// Threads sleeping in `next_blocking` (a completion wakes them only
    /// when there is one).
    sleepers: usize,
    /// Set by `blazen_completion_queue_free`: later completions are dropped.
    closed: bool,
}

/// The shared part of a queue: held by the handle and by every future
/// registered on it.
#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    /// How many tags wait, for a waiter's look without the lock.
    waiting: AtomicUsize,
}

/// How long `next_blocking` yields its CPU, looking for a tag, before it
/// sleeps: under load a completion usually comes within this, and a thread
/// that never slept needs no wake-up (a futex call and a context switch on
/// both sides). In `bench_c describe_rate_queue` (8 connections, 1,000 in
/// flight) this cut context switches about threefold and raised throughput
/// by 15 to 25%.
const YIELD_FOR: Duration = Duration::from_micros(50);
const YIELDS: usize = 64;

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        super::lock(&self.state)
    }

    /// Appends `tag` (the registered future `owner` finished). Returns
    /// whether a thread sleeps in `next_blocking`: then the caller calls
    /// `wake` once it let go of its own locks (a woken thread should not
    /// find the future's lock still held).
    #[must_use]
    pub(super) fn push(&self, tag: u64, owner: usize) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        st.tags.push_back((tag, owner));
        self.waiting.store(st.tags.len(), Ordering::Release);
        if st.tags.len() == 1 {
            if let Some(fd) = &st.fd {
                eventfd::signal(fd);
            }
        }
        st.sleepers > 0
    }

    /// Wakes a thread sleeping in `next_blocking`.
    pub(super) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Moves up to `out.len()` tags into `out`, oldest first.
    fn drain_into(&self, st: &mut State, out: &mut [u64]) -> usize {
        let n = out.len().min(st.tags.len());
        let before = st.tags.len();
        for (slot, (tag, _)) in out.iter_mut().zip(st.tags.drain(..n)) {
            *slot = tag;
        }
        self.taken(st, before);
        n
    }

    /// Takes back the tags of `owner` not drained yet (it is being freed).
    pub(super) fn withdraw(&self, owner: usize) {
        let mut st = self.lock();
        let before = st.tags.len();
        st.tags.retain(|&(_, o)| o != owner);
        self.taken(&st, before);
    }

    /// After tags were taken out (`before` were there): the count for
    /// lock-free looks, and the descriptor quiet once the queue is empty.
    fn taken(&self, st: &State, before: usize) {
        self.waiting.store(st.tags.len(), Ordering::Release);
        if before > 0 && st.tags.is_empty() {
            if let Some(fd) = &st.fd {
                eventfd::clear(fd);
            }
        }
    }

    fn drain(&self, out: &mut [u64]) -> usize {
        self.drain_into(&mut self.lock(), out)
    }

    /// Waits until a tag is there or `timeout` passed (`None`: no limit),
    /// then drains like `drain`.
    fn next(&self, out: &mut [u64], timeout: Option<Duration>) -> usize {
        let start = Instant::now();
        // A timeout too long to represent waits without limit.
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let spin_until = start + YIELD_FOR.min(timeout.unwrap_or(YIELD_FOR));
        for _ in 0..YIELDS {
            if self.waiting.load(Ordering::Acquire) > 0 || Instant::now() >= spin_until {
                break;
            }
            std::thread::yield_now();
        }
        let mut st = self.lock();
        while st.tags.is_empty() && !st.closed {
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break,
                },
            };
            st.sleepers += 1;
            st = match left {
                None => self.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.ready
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.sleepers -= 1;
        }
        self.drain_into(&mut st, out)
    }

    fn fd(&self) -> Result<i64> {
        let mut st = self.lock();
        if let Some(fd) = &st.fd {
            return Ok(i64::from(fd.as_raw_fd()));
        }
        let fd = eventfd::new()?;
        if !st.tags.is_empty() {
            eventfd::signal(&fd);
        }
        let raw = fd.as_raw_fd();
        st.fd = Some(fd);
        Ok(i64::from(raw))
    }

    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.tags.clear();
        self.waiting.store(0, Ordering::Release);
        st.fd = None;
        self.ready.notify_all();
    }
}

/// A completion queue. Caller-owned; usable from many threads at once;
/// freed with `blazen_completion_queue_free`.
pub struct BlazenCompletionQueue {
    pub(super) queue: Arc<Queue>,
}

fn with_queue<R>(
    q: *const BlazenCompletionQueue,
    neutral: R,
    f: impl FnOnce(&BlazenCompletionQueue) -> R,
) -> R {
    // SAFETY: the C contract: NULL or a live queue made by this library.
    unsafe { super::ret::with_borrowed(q, neutral, f) }
}

impl Drop for BlazenCompletionQueue {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// `tags`/`max` as a slice (empty when `tags` is NULL).
///
/// # Safety
/// `tags` is NULL or points to `max` writable `uint64_t`.
unsafe fn out_tags<'a>(tags: *mut u64, max: usize) -> &'a mut [u64] {
    if tags.is_null() || max == 0 {
        return &mut [];
    }
    // SAFETY: the caller's promise above.
    unsafe { std::slice::from_raw_parts_mut(tags, max) }
}

/// Makes an empty completion queue. Returns a caller-owned queue (free it
/// with `blazen_completion_queue_free`), or NULL if memory ran out.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub extern "C" fn blazen_completion_queue_new() -> *mut BlazenCompletionQueue {
    std::panic::catch_unwind(|| {
        Box::into_raw(Box::new(BlazenCompletionQueue {
            queue: Arc::default(),
        }))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// A descriptor of `q` (borrowed) that is readable exactly while tags wait
/// in it, for `poll(2)`/`epoll`/`IO.select`: after waiting on it, take the
/// tags with `blazen_completion_queue_drain`. It belongs to the queue: never
/// read or close it; it is closed by `blazen_completion_queue_free`. Made on
/// the first call only. Returns -1 when `q` is NULL or no descriptor could
/// be made.
#[blazen_cabi_macros::export]
fn blazen_completion_queue_fd(q: &BlazenCompletionQueue) -> i64 {
    q.queue.fd().unwrap_or(-1)
}

/// Moves up to `max` tags of finished futures out of `q` (borrowed) into
/// `tags` (caller-owned, room for `max` values), oldest first, and returns
/// how many it moved: 0 when none waits (or `q` or `tags` is NULL). Never
/// blocks.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub unsafe extern "C" fn blazen_completion_queue_drain(
    q: *const BlazenCompletionQueue,
    tags: *mut u64,
    max: usize,
) -> usize {
    // SAFETY: the caller promises `max` writable values at `tags`.
    let out = unsafe { out_tags(tags, max) };
    with_queue(q, 0, |q| q.queue.drain(out))
}

/// Blocks until at least one tag waits in `q` (borrowed) or `timeout_ms`
/// milliseconds passed (a negative `timeout_ms` waits without limit; 0 does
/// not wait), then moves up to `max` tags into `tags` (caller-owned, room
/// for `max` values), oldest first, and returns how many it moved (0 on
/// timeout, or when `q` or `tags` is NULL or `max` is 0). It first yields
/// its CPU for up to 50 µs, looking for a tag, then sleeps (no wake-up is
/// needed for a tag that comes meanwhile). Waits only for the
/// library's own work, never for a host callback; safe to call from several
/// threads at once; a queue freed meanwhile wakes it with 0.
#[blazen_cabi_macros::hand_written(waits)]
#[no_mangle]
pub unsafe extern "C" fn blazen_completion_queue_next_blocking(
    q: *const BlazenCompletionQueue,
    tags: *mut u64,
    max: usize,
    timeout_ms: i64,
) -> usize {
    // SAFETY: the caller promises `max` writable values at `tags`.
    let out = unsafe { out_tags(tags, max) };
    if out.is_empty() {
        return 0;
    }
    let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
    // Its own reference: a free on another thread wakes this wait with 0
    // instead of pulling the queue from under it.
    let queue = with_queue(q, None, |q| Some(q.queue.clone()));
    queue.map_or(0, |queue| queue.next(out, timeout))
}

/// Releases a caller-owned queue at any time: tags still in it are dropped,
/// and futures registered on it that finish later notify nobody (they are
/// still the caller's to take and free). Returns promptly. NULL is ignored.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub unsafe extern "C" fn blazen_completion_queue_free(q: *mut BlazenCompletionQueue) {
    // SAFETY: the caller hands back a queue made by this library, once.
    unsafe { super::ret::free("blazen_completion_queue_free", q) }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
