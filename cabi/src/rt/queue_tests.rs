//! The completion queue through its C functions, fed by real futures on the
//! library runtime: order, exactly-once delivery, the descriptor, blocking
//! waits and their wake-ups, freeing with futures still registered, and
//! completions racing drains.

#![cfg(test)]

use std::collections::BTreeSet;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::*;
use crate::rt::future::{blazen_future_cancel, blazen_future_wait, take};
use crate::rt::test_support::{free, free_queue, new_queue, notify, readable, Ptr, HANG};
use crate::rt::{BlazenError, BlazenFuture};

/// A spawned future that finishes with the value sent on the sender.
fn gated() -> (*mut BlazenFuture, oneshot::Sender<u64>) {
    let (tx, rx) = oneshot::channel::<u64>();
    let fut = BlazenFuture::spawn("test_gated", async move {
        rx.await
            .map_err(|_| BlazenError::internal("the sender was dropped"))
    });
    (Box::into_raw(Box::new(fut)), tx)
}

/// `blazen_future_wait`, hang-guarded: a test fails instead of blocking
/// for ever (the waiting thread and the future are then leaked).
fn wait(f: *mut BlazenFuture) {
    let (tx, rx) = mpsc::channel();
    let p = Ptr(f);
    std::thread::spawn(move || {
        let p = p;
        // SAFETY: the test frees the future only after this returned.
        let _ = tx.send(unsafe { blazen_future_wait(p.0) });
    });
    let rc = rx
        .recv_timeout(HANG)
        .expect("blazen_future_wait never returned");
    assert_eq!(rc, 0);
}

fn take_u64(f: *mut BlazenFuture) -> Option<u64> {
    let mut out: *mut u64 = null_mut();
    // SAFETY: a live future; the value is boxed into `out`.
    let rc = unsafe { take::<u64>("test_take", f, &mut out, null_mut()) };
    // SAFETY: boxed by `take` when it succeeded.
    (rc == 0).then(|| *unsafe { Box::from_raw(out) })
}

/// Up to `max` tags, without waiting.
fn drain_max(q: *mut BlazenCompletionQueue, max: usize) -> Vec<u64> {
    let mut buf = vec![0u64; max];
    // SAFETY: a live queue and `max` writable values.
    let n = unsafe { blazen_completion_queue_drain(q, buf.as_mut_ptr(), max) };
    buf.truncate(n);
    buf
}

fn drain(q: *mut BlazenCompletionQueue) -> Vec<u64> {
    drain_max(q, 256)
}

fn next_blocking(q: *mut BlazenCompletionQueue, max: usize, timeout_ms: i64) -> Vec<u64> {
    let mut buf = vec![0u64; max];
    // SAFETY: a queue live for the call (or freed meanwhile, which the
    // function allows) and `max` writable values.
    let n = unsafe { blazen_completion_queue_next_blocking(q, buf.as_mut_ptr(), max, timeout_ms) };
    buf.truncate(n);
    buf
}

fn queue_fd(q: *mut BlazenCompletionQueue) -> i64 {
    // SAFETY: a live queue.
    let fd = unsafe { blazen_completion_queue_fd(q) };
    assert!(fd >= 0);
    fd
}

/// The lock-free count must agree with the tags held.
fn assert_consistent(q: *mut BlazenCompletionQueue) {
    // SAFETY: a live queue.
    let queue = &unsafe { &*q }.queue;
    let held = queue.lock().tags.len();
    assert_eq!(queue.waiting.load(Ordering::Acquire), held);
}

/// Waits (hang guard only) until `n` threads sleep in `next_blocking`.
fn wait_for_sleepers(q: *mut BlazenCompletionQueue, n: usize) {
    let deadline = Instant::now() + HANG;
    // SAFETY: a live queue.
    let queue = &unsafe { &*q }.queue;
    while queue.lock().sleepers != n {
        assert!(Instant::now() < deadline, "{n} threads never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `next_blocking` on another thread.
fn next_on_thread(
    q: *mut BlazenCompletionQueue,
    max: usize,
    timeout_ms: i64,
) -> mpsc::Receiver<Vec<u64>> {
    let (tx, rx) = mpsc::channel();
    let q = Ptr(q);
    std::thread::spawn(move || {
        let q = q;
        let _ = tx.send(next_blocking(q.0, max, timeout_ms));
    });
    rx
}

#[test]
fn a_new_queue_is_empty() {
    let q = new_queue();
    assert!(drain(q).is_empty());
    assert!(!readable(queue_fd(q), 0));
    assert!(next_blocking(q, 4, 0).is_empty());
    // A timeout is waited out in full when nothing comes.
    let start = Instant::now();
    assert!(next_blocking(q, 4, 30).is_empty());
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_consistent(q);
    free_queue(q);
}

#[test]
fn drain_gives_each_tag_once_in_completion_order() {
    let q = new_queue();
    let tags = [10, 11, 12, 13, 14, u64::MAX];
    let futures: Vec<_> = tags
        .iter()
        .map(|&tag| {
            let (f, tx) = gated();
            notify(f, q, tag);
            (f, Some(tx))
        })
        .collect();
    let mut futures = futures;
    let order = [3, 0, 5, 1, 4, 2];
    for &i in &order {
        futures[i].1.take().unwrap().send(i as u64).unwrap();
        wait(futures[i].0);
    }
    let expected: Vec<u64> = order.iter().map(|&i| tags[i]).collect();
    // In batches: `max` is respected, oldest first.
    assert_eq!(drain_max(q, 4), expected[..4]);
    assert_consistent(q);
    assert_eq!(drain_max(q, 4), expected[4..]);
    assert!(drain(q).is_empty());
    assert_consistent(q);
    for (i, (f, _)) in futures.into_iter().enumerate() {
        assert_eq!(take_u64(f), Some(i as u64));
        free(f);
    }
    free_queue(q);
}

#[test]
fn the_descriptor_is_readable_exactly_while_tags_wait() {
    let q = new_queue();
    let fd = queue_fd(q);
    assert_eq!(queue_fd(q), fd, "the descriptor is made once");
    let (a, ta) = gated();
    let (b, tb) = gated();
    let (c, tc) = gated();
    notify(a, q, 1);
    notify(b, q, 2);
    notify(c, q, 3);
    assert!(!readable(fd, 0));

    ta.send(0).unwrap();
    assert!(
        readable(fd, 20_000),
        "a completion did not make it readable"
    );
    wait(a);
    tb.send(0).unwrap();
    wait(b);
    assert_eq!(drain_max(q, 1), [1]);
    assert!(readable(fd, 0), "a tag still waits");
    assert_eq!(drain_max(q, 1), [2]);
    assert!(!readable(fd, 0), "readable with no tag waiting");

    // And again for a later completion.
    tc.send(0).unwrap();
    assert!(readable(fd, 20_000));
    assert_eq!(drain(q), [3]);
    assert!(!readable(fd, 0));
    for f in [a, b, c] {
        free(f);
    }
    free_queue(q);
}

#[test]
fn a_descriptor_made_while_tags_wait_is_readable() {
    let q = new_queue();
    let (f, tx) = gated();
    notify(f, q, 9);
    tx.send(0).unwrap();
    wait(f);
    let fd = queue_fd(q);
    assert!(readable(fd, 0));
    assert_eq!(drain(q), [9]);
    assert!(!readable(fd, 0));
    free(f);
    free_queue(q);
}

#[test]
fn next_blocking_returns_waiting_tags_without_waiting() {
    let q = new_queue();
    let (f, tx) = gated();
    notify(f, q, 4);
    notify(f, q, 5);
    tx.send(0).unwrap();
    wait(f);
    // No limit, but the tags are there: returns (hang-guarded).
    let got = next_on_thread(q, 8, -1).recv_timeout(HANG).expect("hung");
    assert_eq!(got, [4, 5]);
    assert!(next_blocking(q, 8, 0).is_empty());
    free(f);
    free_queue(q);
}

#[test]
fn next_blocking_wakes_for_a_completion_on_another_thread() {
    let q = new_queue();
    let (f, tx) = gated();
    notify(f, q, 21);
    let waiter = next_on_thread(q, 8, -1);
    wait_for_sleepers(q, 1);
    assert!(waiter.try_recv().is_err(), "returned with nothing to take");
    tx.send(0).unwrap();
    assert_eq!(waiter.recv_timeout(HANG).expect("never woke"), [21]);
    assert!(drain(q).is_empty());
    free(f);
    free_queue(q);
}

/// Several threads asleep, one tag at a time: every completion wakes a
/// sleeper (no wake-up is lost), and each tag goes to one of them.
#[test]
fn every_completion_reaches_one_of_several_sleepers() {
    const K: u64 = 4;
    let q = new_queue();
    let futures: Vec<_> = (0..K)
        .map(|tag| {
            let (f, tx) = gated();
            notify(f, q, tag);
            (f, tx)
        })
        .collect();
    let sleepers: Vec<_> = (0..K).map(|_| next_on_thread(q, 1, -1)).collect();
    wait_for_sleepers(q, K as usize);
    let mut handles = Vec::new();
    for (f, tx) in futures {
        tx.send(0).unwrap();
        wait(f);
        handles.push(f);
    }
    let mut got = Vec::new();
    for s in sleepers {
        let tags = s.recv_timeout(HANG).expect("a sleeper was never woken");
        assert_eq!(tags.len(), 1, "max is 1");
        got.extend(tags);
    }
    got.sort_unstable();
    assert_eq!(got, (0..K).collect::<Vec<_>>());
    assert!(drain(q).is_empty());
    for f in handles {
        free(f);
    }
    free_queue(q);
}

/// The same with completions in a burst (no wait between them), while
/// woken sleepers may not have run yet: still none is left asleep.
#[test]
fn a_burst_of_completions_reaches_every_sleeper() {
    const K: u64 = 4;
    let q = new_queue();
    for round in 0..50 {
        let futures: Vec<_> = (0..K)
            .map(|tag| {
                let (f, tx) = gated();
                notify(f, q, round * K + tag);
                (f, tx)
            })
            .collect();
        let sleepers: Vec<_> = (0..K).map(|_| next_on_thread(q, 1, -1)).collect();
        wait_for_sleepers(q, K as usize);
        let mut handles = Vec::new();
        for (f, tx) in futures {
            // SAFETY: a live future; a cancel completes it on this thread.
            unsafe { blazen_future_cancel(f) };
            drop(tx);
            handles.push(f);
        }
        let mut got: Vec<u64> = sleepers
            .into_iter()
            .flat_map(|s| s.recv_timeout(HANG).expect("a sleeper was left asleep"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (round * K..round * K + K).collect::<Vec<_>>());
        assert!(drain(q).is_empty());
        handles.into_iter().for_each(free);
    }
    free_queue(q);
}

#[test]
fn freeing_the_queue_wakes_a_blocked_next_with_zero() {
    let q = new_queue();
    let waiter = next_on_thread(q, 8, -1);
    // Asleep, so inside the call (a free must not race its start).
    wait_for_sleepers(q, 1);
    assert!(waiter.try_recv().is_err());
    free_queue(q);
    assert!(waiter.recv_timeout(HANG).expect("never woke").is_empty());
}

/// Tags waiting and futures still pending when the queue goes: the
/// futures finish, keep their results and free as usual.
#[test]
fn freeing_the_queue_with_registered_futures_is_safe() {
    let q = new_queue();
    let _ = queue_fd(q);
    let mut futures: Vec<_> = (0..6)
        .map(|tag| {
            let (f, tx) = gated();
            notify(f, q, tag);
            (f, Some(tx))
        })
        .collect();
    for (i, (f, tx)) in futures.iter_mut().enumerate().take(2) {
        tx.take().unwrap().send(i as u64 * 10).unwrap();
        wait(*f);
    }
    // SAFETY: `futures[5]` is live.
    unsafe { blazen_future_cancel(futures[5].0) };
    // The registered futures keep the queue's shared part alive: look at it.
    // SAFETY: a live queue.
    let shared = unsafe { &*q }.queue.clone();
    free_queue(q);
    for (i, (f, tx)) in futures.iter_mut().enumerate().skip(2).take(3) {
        tx.take().unwrap().send(i as u64 * 10).unwrap();
        wait(*f);
    }
    // The tags that waited were dropped, later completions told nobody, and
    // the descriptor is closed.
    let st = shared.lock();
    assert!(st.tags.is_empty(), "tags kept: {:?}", st.tags);
    assert!(st.fd.is_none());
    assert!(st.closed);
    drop(st);
    assert_eq!(shared.waiting.load(Ordering::Acquire), 0);
    for (i, (f, _)) in futures.into_iter().enumerate() {
        let expected = (i < 5).then_some(i as u64 * 10);
        assert_eq!(take_u64(f), expected, "future {i}");
        free(f);
    }
}

#[test]
fn null_and_empty_arguments_move_nothing() {
    let q = new_queue();
    let (f, tx) = gated();
    notify(f, q, 1);
    tx.send(0).unwrap();
    wait(f);
    let mut buf = [0u64; 4];
    // SAFETY: NULL and zero sizes are part of the contract.
    unsafe {
        assert_eq!(blazen_completion_queue_fd(std::ptr::null()), -1);
        assert_eq!(
            blazen_completion_queue_drain(std::ptr::null(), buf.as_mut_ptr(), 4),
            0
        );
        assert_eq!(blazen_completion_queue_drain(q, null_mut(), 4), 0);
        assert_eq!(blazen_completion_queue_drain(q, buf.as_mut_ptr(), 0), 0);
        assert_eq!(
            blazen_completion_queue_next_blocking(std::ptr::null(), buf.as_mut_ptr(), 4, -1),
            0
        );
        assert_eq!(
            blazen_completion_queue_next_blocking(q, null_mut(), 4, -1),
            0
        );
        assert_eq!(
            blazen_completion_queue_next_blocking(q, buf.as_mut_ptr(), 0, -1),
            0
        );
        blazen_completion_queue_free(null_mut());
    }
    assert_eq!(buf, [0; 4], "something was written");
    // The tag is still there for a real drain.
    assert_eq!(drain(q), [1]);
    free(f);
    free_queue(q);
}

#[test]
fn a_future_on_two_queues_reaches_each_once_and_its_free_withdraws_from_both() {
    let (q1, q2) = (new_queue(), new_queue());
    let (fd1, fd2) = (queue_fd(q1), queue_fd(q2));
    let (a, ta) = gated();
    let (b, tb) = gated();
    notify(a, q1, 1);
    notify(a, q2, 1);
    notify(b, q1, 2);
    ta.send(0).unwrap();
    tb.send(0).unwrap();
    wait(a);
    wait(b);
    assert!(readable(fd1, 0) && readable(fd2, 0));
    free(a);
    assert!(!readable(fd2, 0), "q2 held only a's tag");
    assert!(readable(fd1, 0), "b's tag still waits in q1");
    assert_consistent(q1);
    assert_consistent(q2);
    assert_eq!(drain(q1), [2]);
    assert!(drain(q2).is_empty());
    free(b);
    free_queue(q1);
    free_queue(q2);
}

/// N threads complete futures (half by a cancel on their own thread, half
/// by a value their task gets) while two threads take tags, one with the
/// descriptor and `drain`, one with `next_blocking`: every tag arrives
/// exactly once.
#[test]
fn concurrent_completions_and_drains_lose_and_duplicate_nothing() {
    const THREADS: u64 = 8;
    const EACH: u64 = 250;
    const ALL: usize = (THREADS * EACH) as usize;
    let q = new_queue();
    let fd = queue_fd(q);
    let mut work = Vec::new();
    let mut futures = Vec::new();
    for t in 0..THREADS {
        let mut mine = Vec::new();
        for i in 0..EACH {
            let tag = t * EACH + i;
            let (f, tx) = gated();
            notify(f, q, tag);
            futures.push(Ptr(f));
            mine.push((Ptr(f), tx));
        }
        work.push(mine);
    }

    let got = Arc::new(Mutex::new(Vec::<u64>::with_capacity(ALL)));
    let count = Arc::new(AtomicUsize::new(0));
    let take_tags = |by_fd: bool| {
        let (got, count, qp) = (got.clone(), count.clone(), Ptr(q));
        std::thread::spawn(move || {
            let qp = qp;
            let deadline = Instant::now() + HANG;
            while count.load(Ordering::SeqCst) < ALL {
                assert!(Instant::now() < deadline, "tags never all arrived");
                let tags = if by_fd {
                    readable(fd, 5);
                    drain_max(qp.0, 7)
                } else {
                    next_blocking(qp.0, 5, 5)
                };
                count.fetch_add(tags.len(), Ordering::SeqCst);
                got.lock().unwrap().extend(tags);
            }
        })
    };
    let drainers = [take_tags(true), take_tags(false)];
    let completers: Vec<_> = work
        .into_iter()
        .map(|mine| {
            std::thread::spawn(move || {
                for (i, (f, tx)) in mine.into_iter().enumerate() {
                    if i % 2 == 0 {
                        tx.send(i as u64).unwrap();
                    } else {
                        // SAFETY: the future is live until the test ends.
                        unsafe { blazen_future_cancel(f.0) };
                    }
                }
            })
        })
        .collect();
    for c in completers {
        c.join().unwrap();
    }
    for d in drainers {
        d.join().expect("a drainer failed");
    }

    let mut got = std::mem::take(&mut *got.lock().unwrap());
    assert_eq!(got.len(), ALL, "lost or duplicated tags");
    got.sort_unstable();
    let distinct: BTreeSet<_> = got.iter().copied().collect();
    assert_eq!(distinct.len(), ALL, "a tag came twice");
    assert_eq!(got, (0..ALL as u64).collect::<Vec<_>>());
    assert!(drain(q).is_empty());
    assert!(!readable(fd, 0), "readable once empty");
    assert_consistent(q);
    for f in futures {
        wait(f.0);
        free(f.0);
    }
    free_queue(q);
}
