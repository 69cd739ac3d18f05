//! The future handle's state machine through its C functions, with real
//! tasks on the library runtime: completion seen by poll, wait and the
//! descriptor; take exactly once; cancellation and its races; notify; free
//! while the work still runs.

#![cfg(test)]

use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::*;
use crate::rt::queue::{blazen_completion_queue_drain, BlazenCompletionQueue};
use crate::rt::test_support::{free, free_queue, new_queue, notify, readable, Ptr, HANG};
use crate::rt::ErrorKind;

/// A value whose drops are counted.
#[derive(Debug)]
struct Tracked(u64, Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

/// A spawned future that finishes with what is sent on the returned sender
/// (INTERNAL if the sender is dropped).
fn gated<T: Send + 'static>() -> (*mut BlazenFuture, oneshot::Sender<Result<T>>) {
    let (tx, rx) = oneshot::channel::<Result<T>>();
    let fut = BlazenFuture::spawn("test_gated", async move {
        rx.await
            .unwrap_or_else(|_| Err(BlazenError::internal("the sender was dropped")))
    });
    (Box::into_raw(Box::new(fut)), tx)
}

/// Waits (hang guard only) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on a new thread; its result arrives on the receiver.
fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> mpsc::Receiver<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Waits (hang guard only) until `n` threads sleep in `blazen_future_wait`.
fn wait_for_waiters(f: *mut BlazenFuture, n: u32) {
    // SAFETY: a live future.
    let shared = &unsafe { &*f }.shared;
    eventually("the waiters sleep", || shared.lock().waiters == n);
}

/// `blazen_future_wait` on another thread.
fn wait_on_thread(f: *mut BlazenFuture) -> mpsc::Receiver<i32> {
    let f = Ptr(f);
    on_thread(move || {
        let f = f;
        // SAFETY: the test frees `f` only after this returned.
        unsafe { blazen_future_wait(f.0) }
    })
}

/// `blazen_future_wait`, hang-guarded: a test fails instead of blocking
/// for ever (the waiting thread and the future are then leaked).
fn wait(f: *mut BlazenFuture) -> i32 {
    wait_on_thread(f)
        .recv_timeout(HANG)
        .expect("blazen_future_wait never returned")
}

/// Takes a (non-zero-sized) value out of `f` through the C path.
fn take_value<T: Send + 'static>(f: *mut BlazenFuture) -> Result<T> {
    assert!(std::mem::size_of::<T>() > 0);
    let mut out: *mut T = null_mut();
    let mut err: *mut BlazenError = null_mut();
    // SAFETY: a live future and two writable out-pointers.
    let rc = unsafe { take::<T>("test_take", f, &mut out, &mut err) };
    if rc == 0 {
        assert!(err.is_null() && !out.is_null());
        // SAFETY: `take` boxed the value for us.
        Ok(*unsafe { Box::from_raw(out) })
    } else {
        assert_eq!(rc, -1);
        assert!(out.is_null() && !err.is_null());
        // SAFETY: `take` boxed the error for us.
        Err(*unsafe { Box::from_raw(err) })
    }
}

fn take_unit(f: *mut BlazenFuture) -> Result<()> {
    let mut err: *mut BlazenError = null_mut();
    // SAFETY: a live future and a writable out-pointer.
    let rc = unsafe { blazen_future_take_unit(f, &mut err) };
    if rc == 0 {
        assert!(err.is_null());
        Ok(())
    } else {
        assert_eq!(rc, -1);
        // SAFETY: boxed by the call.
        Err(*unsafe { Box::from_raw(err) })
    }
}

fn poll(f: *mut BlazenFuture) -> i32 {
    // SAFETY: a live future.
    unsafe { blazen_future_poll(f) }
}

fn fd(f: *mut BlazenFuture) -> i64 {
    // SAFETY: a live future.
    unsafe { blazen_future_fd(f) }
}

fn cancel(f: *mut BlazenFuture) {
    // SAFETY: a live future.
    unsafe { blazen_future_cancel(f) }
}

/// Everything waiting in `q` now.
fn drain(q: *mut BlazenCompletionQueue) -> Vec<u64> {
    let mut buf = [0u64; 64];
    // SAFETY: a live queue and 64 writable values.
    let n = unsafe { blazen_completion_queue_drain(q, buf.as_mut_ptr(), buf.len()) };
    buf[..n].to_vec()
}

fn assert_already_taken(r: Result<impl std::fmt::Debug>) {
    let e = r.expect_err("a second take must fail");
    assert_eq!(e.kind, ErrorKind::Internal, "{e:?}");
    assert!(e.message.contains("already taken"), "{}", e.message);
}

fn assert_cancelled(r: Result<impl std::fmt::Debug>) {
    let e = r.expect_err("a cancelled future has no value");
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e:?}");
    assert_eq!(e.message, "the operation was cancelled");
}

#[test]
fn completion_is_seen_by_poll_wait_and_the_descriptor() {
    let (f, tx) = gated::<u64>();
    assert_eq!(poll(f), 0);
    let d = fd(f);
    assert!(d >= 0);
    assert!(!readable(d, 0), "readable before the future finished");
    let waiter = wait_on_thread(f);
    wait_for_waiters(f, 1);
    assert!(
        waiter.try_recv().is_err(),
        "wait returned before the future finished"
    );
    assert_eq!(poll(f), 0);

    tx.send(Ok(42)).unwrap();
    assert_eq!(waiter.recv_timeout(HANG).expect("wait never returned"), 0);
    assert_eq!(poll(f), 1);
    assert!(readable(d, 0), "not readable once finished");
    assert_eq!(fd(f), d, "the descriptor is made once");
    // Waiting on a finished future returns, any number of times.
    assert_eq!(wait(f), 0);
    assert_eq!(wait(f), 0);

    assert_eq!(take_value::<u64>(f).unwrap(), 42);
    assert_already_taken(take_value::<u64>(f));
    // Taken is still finished, and the descriptor stays readable.
    assert_eq!(poll(f), 1);
    assert!(readable(d, 0));
    free(f);
}

#[test]
fn a_descriptor_asked_for_after_completion_is_readable_at_once() {
    let (f, tx) = gated::<String>();
    tx.send(Ok("done".into())).unwrap();
    assert_eq!(wait(f), 0);
    let d = fd(f);
    assert!(readable(d, 0));
    assert_eq!(take_value::<String>(f).unwrap(), "done");
    free(f);
}

#[test]
fn every_waiting_thread_wakes_on_completion() {
    let (f, tx) = gated::<u32>();
    let waiters: Vec<_> = (0..4).map(|_| wait_on_thread(f)).collect();
    wait_for_waiters(f, 4);
    for w in &waiters {
        assert!(w.try_recv().is_err(), "a wait returned early");
    }
    tx.send(Ok(1)).unwrap();
    for w in waiters {
        assert_eq!(w.recv_timeout(HANG).expect("a waiter never woke"), 0);
    }
    assert_eq!(take_value::<u32>(f).unwrap(), 1);
    free(f);
}

#[test]
fn a_cancel_on_another_thread_wakes_a_waiter() {
    let (f, _tx) = gated::<u32>();
    let waiter = wait_on_thread(f);
    wait_for_waiters(f, 1);
    cancel(f);
    assert_eq!(waiter.recv_timeout(HANG).expect("never woke"), 0);
    assert_cancelled(take_value::<u32>(f));
    free(f);
}

#[test]
fn take_while_pending_fails_and_leaves_the_future_usable() {
    let (f, tx) = gated::<u64>();
    let e = take_value::<u64>(f).expect_err("nothing to take yet");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.contains("still pending"), "{}", e.message);
    assert_eq!(poll(f), 0, "a failed take must not resolve the future");
    tx.send(Ok(9)).unwrap();
    assert_eq!(wait(f), 0);
    assert_eq!(take_value::<u64>(f).unwrap(), 9);
    free(f);
}

#[test]
fn take_of_another_type_fails_and_keeps_the_value() {
    let f = Box::into_raw(Box::new(BlazenFuture::ready(Ok(7u64))));
    let e = take_value::<String>(f).expect_err("a u64 is not a String");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(
        e.message.contains("does not yield a String"),
        "{}",
        e.message
    );
    assert!(take_unit(f).is_err(), "a u64 is not a unit");
    assert_eq!(take_value::<u64>(f).unwrap(), 7);
    assert_already_taken(take_value::<u64>(f));
    free(f);
}

#[test]
fn an_operations_error_is_taken_once() {
    let (f, tx) = gated::<u64>();
    tx.send(Err(BlazenError::invalid("name", "is empty")))
        .unwrap();
    assert_eq!(wait(f), 0);
    assert_eq!(poll(f), 1);
    let e = take_value::<u64>(f).expect_err("the operation failed");
    assert_eq!(e.kind, ErrorKind::Validation);
    assert_eq!(e.message, "invalid argument `name`: is empty");
    assert_already_taken(take_value::<u64>(f));
    free(f);
}

#[test]
fn unit_results_are_taken_once() {
    let f = Box::into_raw(Box::new(BlazenFuture::spawn("test_unit", async {
        tokio::task::yield_now().await;
        Ok(())
    })));
    assert_eq!(wait(f), 0);
    take_unit(f).expect("the operation succeeded");
    assert_already_taken(take_unit(f));
    // A NULL out_err still reports the failure.
    // SAFETY: a live future; NULL out_err is allowed.
    assert_eq!(unsafe { blazen_future_take_unit(f, null_mut()) }, -1);
    free(f);
}

#[test]
fn a_panicking_operation_resolves_internal() {
    let f = Box::into_raw(Box::new(BlazenFuture::spawn("test_panics", async {
        tokio::task::yield_now().await;
        if poll_count() < usize::MAX {
            panic!("boom");
        }
        Ok(0u8)
    })));
    assert_eq!(wait(f), 0);
    let e = take_value::<u8>(f).expect_err("the operation panicked");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "test_panics panicked: boom");
    free(f);
}

/// Keeps the panic above from being a compile-time certainty.
fn poll_count() -> usize {
    std::hint::black_box(0)
}

#[test]
fn cancel_before_completion_resolves_cancelled_and_drops_the_work() {
    let (f, tx) = gated::<Tracked>();
    let d = fd(f);
    assert_eq!(poll(f), 0);
    cancel(f);
    // Resolved by the cancel itself, not later by the runtime.
    assert_eq!(poll(f), 1);
    assert!(readable(d, 0));
    // The task's future (holding the receiver) is dropped: nothing leaks.
    eventually("the aborted task drops its future", || tx.is_closed());
    let dropped = Arc::new(AtomicUsize::new(0));
    let late = tx.send(Ok(Tracked(1, dropped.clone())));
    assert!(late.is_err(), "the aborted task still listened");
    drop(late);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_cancelled(take_value::<Tracked>(f));
    assert_already_taken(take_value::<Tracked>(f));
    free(f);
}

#[test]
fn cancel_after_completion_is_harmless() {
    let (f, tx) = gated::<u64>();
    tx.send(Ok(5)).unwrap();
    assert_eq!(wait(f), 0);
    cancel(f);
    cancel(f);
    assert_eq!(poll(f), 1);
    assert_eq!(take_value::<u64>(f).unwrap(), 5);
    // After the take too.
    cancel(f);
    assert_already_taken(take_value::<u64>(f));
    free(f);

    // A future made already resolved has no task to stop.
    let r = Box::into_raw(Box::new(BlazenFuture::ready(Ok(6u64))));
    cancel(r);
    assert_eq!(take_value::<u64>(r).unwrap(), 6);
    free(r);
}

#[test]
fn cancel_twice_resolves_once() {
    let q = new_queue();
    let (f, _tx) = gated::<u64>();
    notify(f, q, 3);
    cancel(f);
    cancel(f);
    assert_eq!(drain(q), [3], "one completion, one tag");
    assert_cancelled(take_value::<u64>(f));
    free(f);
    free_queue(q);
}

/// Completion on one thread against a cancel on another: each future ends
/// one way, tells its queue once, and every value made is dropped once.
#[test]
fn cancel_racing_completion_has_one_outcome_and_leaks_nothing() {
    const N: u64 = 300;
    let q = new_queue();
    let dropped = Arc::new(AtomicUsize::new(0));
    let (mut values, mut cancels) = (0, 0);
    for i in 0..N {
        let (f, tx) = gated::<Tracked>();
        notify(f, q, i);
        let go = Arc::new(Barrier::new(2));
        let (g, d, p) = (go.clone(), dropped.clone(), Ptr(f));
        let completer = std::thread::spawn(move || {
            g.wait();
            // A refused send drops the value at once (counted below).
            let _ = tx.send(Ok(Tracked(i, d)));
        });
        let canceller = std::thread::spawn(move || {
            let p = p;
            go.wait();
            cancel(p.0);
        });
        completer.join().unwrap();
        canceller.join().unwrap();
        assert_eq!(wait(f), 0);
        match take_value::<Tracked>(f) {
            Ok(t) => {
                assert_eq!(t.0, i);
                values += 1;
            }
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Cancelled, "{e:?}");
                cancels += 1;
            }
        }
        assert_already_taken(take_value::<Tracked>(f));
        assert_eq!(drain(q), [i], "future {i} told its queue other than once");
        free(f);
    }
    assert_eq!(values + cancels, N);
    eventually("every value made is dropped", || {
        dropped.load(Ordering::SeqCst) == N as usize
    });
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(dropped.load(Ordering::SeqCst), N as usize, "a double drop");
    assert!(drain(q).is_empty());
    free_queue(q);
    eprintln!("{values} completed, {cancels} cancelled first");
}

#[test]
fn notify_fires_once_when_the_future_completes() {
    let q = new_queue();
    let (f, tx) = gated::<u64>();
    notify(f, q, 77);
    assert!(drain(q).is_empty(), "told before finishing");
    tx.send(Ok(1)).unwrap();
    assert_eq!(wait(f), 0);
    assert_eq!(drain(q), [77]);
    assert!(drain(q).is_empty(), "told twice");
    // Nothing later tells it again: not a cancel, not a take.
    cancel(f);
    assert_eq!(take_value::<u64>(f).unwrap(), 1);
    assert!(drain(q).is_empty());
    free(f);
    free_queue(q);
}

#[test]
fn notify_registered_after_completion_fires_at_once_and_once() {
    let q = new_queue();
    let (f, tx) = gated::<u64>();
    tx.send(Ok(2)).unwrap();
    assert_eq!(wait(f), 0);
    notify(f, q, u64::MAX);
    assert_eq!(drain(q), [u64::MAX]);
    assert!(drain(q).is_empty());
    // Even once the result was taken.
    assert_eq!(take_value::<u64>(f).unwrap(), 2);
    notify(f, q, 0);
    assert_eq!(drain(q), [0]);
    free(f);
    free_queue(q);
}

#[test]
fn each_registration_is_told_once() {
    let (q1, q2) = (new_queue(), new_queue());
    let (f, tx) = gated::<u64>();
    notify(f, q1, 1);
    notify(f, q1, 2);
    notify(f, q2, 3);
    tx.send(Ok(0)).unwrap();
    assert_eq!(wait(f), 0);
    assert_eq!(drain(q1), [1, 2]);
    assert_eq!(drain(q2), [3]);
    assert!(drain(q1).is_empty() && drain(q2).is_empty());
    free(f);
    free_queue(q1);
    free_queue(q2);
}

#[test]
fn free_while_the_operation_awaits_stops_it_and_tells_nobody() {
    let q = new_queue();
    let (f, tx) = gated::<Tracked>();
    notify(f, q, 5);
    let _ = fd(f);
    free(f);
    eventually("the freed future's task is dropped", || tx.is_closed());
    let dropped = Arc::new(AtomicUsize::new(0));
    assert!(tx.send(Ok(Tracked(0, dropped.clone()))).is_err());
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert!(drain(q).is_empty(), "a freed future told its queue");
    free_queue(q);
}

/// Freed while its task is past its last await (so the abort cannot stop
/// it): the task finishes, its result is dropped, and no tag reaches the
/// queue the future was registered on.
#[test]
fn free_while_the_operation_runs_drops_the_late_result() {
    let q = new_queue();
    let dropped = Arc::new(AtomicUsize::new(0));
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let d = dropped.clone();
    let f = Box::into_raw(Box::new(BlazenFuture::spawn("test_late", async move {
        tokio::task::block_in_place(|| {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(HANG).unwrap();
        });
        Ok(Tracked(8, d))
    })));
    notify(f, q, 8);
    started.recv_timeout(HANG).expect("the task never started");
    free(f);
    release.send(()).unwrap();
    eventually("the late result is dropped", || {
        dropped.load(Ordering::SeqCst) == 1
    });
    // The result is dropped with the task's share of the state, after
    // its completion ran: a tag would be in the queue by now.
    assert!(drain(q).is_empty(), "a freed future told its queue");
    free_queue(q);
}

#[test]
fn free_takes_back_tags_not_yet_drained() {
    let q = new_queue();
    let (a, ta) = gated::<u64>();
    let (b, tb) = gated::<u64>();
    notify(a, q, 1);
    notify(b, q, 2);
    ta.send(Ok(1)).unwrap();
    tb.send(Ok(2)).unwrap();
    assert_eq!(wait(a), 0);
    assert_eq!(wait(b), 0);
    free(a);
    assert_eq!(drain(q), [2], "the freed future's tag stayed");
    // A value freed untaken is dropped with the future.
    let dropped = Arc::new(AtomicUsize::new(0));
    let c = Box::into_raw(Box::new(BlazenFuture::ready(Ok(Tracked(
        3,
        dropped.clone(),
    )))));
    notify(c, q, 3);
    free(c);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert!(drain(q).is_empty());
    free(b);
    free_queue(q);
}

#[test]
fn null_handles_are_refused() {
    let q = new_queue();
    let f = Box::into_raw(Box::new(BlazenFuture::ready(Ok(1u64))));
    // SAFETY: NULL is part of every function's contract.
    unsafe {
        assert_eq!(blazen_future_poll(std::ptr::null()), -1);
        assert_eq!(blazen_future_wait(null_mut()), -1);
        assert_eq!(blazen_future_fd(std::ptr::null()), -1);
        assert_eq!(blazen_future_notify(std::ptr::null(), q, 1), -1);
        assert_eq!(blazen_future_notify(f, std::ptr::null(), 1), -1);
        blazen_future_cancel(std::ptr::null());
        blazen_future_free(null_mut());
    }
    let e = take_unit(null_mut()).expect_err("NULL has no result");
    assert_eq!(e.kind, ErrorKind::Validation);
    assert!(e.message.contains("`fut`"), "{}", e.message);
    assert!(drain(q).is_empty(), "a refused notify registered");
    assert_eq!(take_value::<u64>(f).unwrap(), 1);
    free(f);
    free_queue(q);
}

/// `call::future`, which every future-returning entry point goes through.
#[test]
fn call_future_resolves_at_once_or_spawns() {
    // Finishes on its first poll: resolved on return, no task.
    let f = crate::rt::call::future("test_now", || Ok(async { Ok(3u8) }));
    assert_eq!(poll(f), 1);
    // SAFETY: a live future.
    assert!(unsafe { &*f }.task.is_none());
    assert_eq!(take_value::<u8>(f).unwrap(), 3);
    free(f);

    // Waits for something: spawned, resolved when it comes.
    let (tx, rx) = oneshot::channel::<u8>();
    let f = crate::rt::call::future("test_later", move || {
        Ok(async move { rx.await.map_err(|_| BlazenError::internal("lost")) })
    });
    assert_eq!(poll(f), 0);
    // SAFETY: a live future.
    assert!(unsafe { &*f }.task.is_some());
    tx.send(4).unwrap();
    assert_eq!(wait(f), 0);
    assert_eq!(take_value::<u8>(f).unwrap(), 4);
    free(f);

    // Bad arguments: an already-failed future.
    let f = crate::rt::call::future::<u8, _, std::future::Ready<Result<u8>>>("test_bad", || {
        Err(BlazenError::invalid("x", "is wrong"))
    });
    assert_eq!(poll(f), 1);
    assert_eq!(
        take_value::<u8>(f).unwrap_err().message,
        "invalid argument `x`: is wrong"
    );
    free(f);

    // A panic on the first poll, on the caller's thread.
    let f = crate::rt::call::future("test_panic_now", || {
        Ok(async {
            if poll_count() < usize::MAX {
                panic!("early");
            }
            Ok(0u8)
        })
    });
    assert_eq!(poll(f), 1);
    let e = take_value::<u8>(f).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "test_panic_now panicked: early");
    free(f);
}
