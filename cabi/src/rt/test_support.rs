//! Helpers shared by the future and completion-queue tests: raw handles
//! through their C functions, with hang guards.

#![cfg(test)]

use std::time::Duration;

use super::future::{blazen_future_free, blazen_future_notify, BlazenFuture};
use super::queue::{
    blazen_completion_queue_free, blazen_completion_queue_new, BlazenCompletionQueue,
};

/// Only a guard against a hang: no test expects anything to take this long.
pub(super) const HANG: Duration = Duration::from_secs(20);

/// A raw pointer that may cross threads (the C contract allows it).
#[derive(Clone, Copy)]
pub(super) struct Ptr<T>(pub(super) *mut T);
// SAFETY: queues and futures are documented as usable from any thread.
unsafe impl<T> Send for Ptr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Ptr<T> {}

/// Whether `fd` is readable within `timeout_ms` (0: now).
pub(super) fn readable(fd: i64, timeout_ms: i32) -> bool {
    assert!(fd >= 0, "not a descriptor: {fd}");
    let mut p = libc::pollfd {
        fd: i32::try_from(fd).unwrap(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1 && p.revents & libc::POLLIN != 0
}

pub(super) fn new_queue() -> *mut BlazenCompletionQueue {
    let q = blazen_completion_queue_new();
    assert!(!q.is_null());
    q
}

pub(super) fn free_queue(q: *mut BlazenCompletionQueue) {
    // SAFETY: a live queue, handed back once.
    unsafe { blazen_completion_queue_free(q) }
}

pub(super) fn notify(f: *mut BlazenFuture, q: *mut BlazenCompletionQueue, tag: u64) {
    // SAFETY: a live future and a live queue.
    assert_eq!(unsafe { blazen_future_notify(f, q, tag) }, 0);
}

pub(super) fn free(f: *mut BlazenFuture) {
    // SAFETY: a live future, handed back once.
    unsafe { blazen_future_free(f) }
}
