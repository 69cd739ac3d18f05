//! `BlazenFuture`: the result of an operation started without blocking.
//!
//! The task runs on the library's runtime and stores its result in a slot
//! guarded by a mutex; `wait` sleeps on a condition variable (no spinning)
//! and the completion descriptor (an eventfd) is made only when
//! `blazen_future_fd` is first asked for, so pending futures cost no
//! descriptors.

use std::any::Any;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::panic::{catch_async, guard};
use super::queue::{BlazenCompletionQueue, Queue};
use super::{eventfd, BlazenError, Result};

type Value = Box<dyn Any + Send>;

/// An error is boxed so that a pending future's slot stays small (a
/// `BlazenError` is a few hundred bytes; most futures never hold one).
enum Slot {
    Pending,
    Ready(std::result::Result<Value, Box<BlazenError>>),
    Taken,
}

struct State {
    slot: Slot,
    fd: Option<OwnedFd>,
    /// Threads in `blazen_future_wait`: the condition variable is notified
    /// only when there are some (a notify is a futex call even with no
    /// waiter, once per completion).
    waiters: u32,
    /// Completion queues to tell, with their tags (`blazen_future_notify`);
    /// kept after they were told, so that a free can take the tags back.
    notify: Vec<(Arc<Queue>, u64)>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        super::lock(&self.state)
    }

    /// Stores the result unless one is there already (first one wins).
    fn complete(&self, result: Result<Value>) {
        let mut st = self.lock();
        if matches!(st.slot, Slot::Pending) {
            st.slot = Slot::Ready(result.map_err(Box::new));
            if let Some(fd) = &st.fd {
                eventfd::signal(fd);
            }
            if st.waiters > 0 {
                self.ready.notify_all();
            }
            // Under this lock, so that a free either comes first (nothing
            // is told) or takes the tags back; sleepers are woken after it.
            let wake: Vec<Arc<Queue>> = st
                .notify
                .iter()
                .filter(|(queue, tag)| queue.push(*tag, self.id()))
                .map(|(queue, _)| queue.clone())
                .collect();
            drop(st);
            wake.iter().for_each(|q| q.wake());
        }
    }

    /// Tells a completion queue which future a tag is about.
    fn id(&self) -> usize {
        self as *const Self as usize
    }
}

/// An operation in progress or finished. Owned by the caller; freed with
/// `blazen_future_free`.
pub struct BlazenFuture {
    shared: Arc<Shared>,
    task: Option<tokio::task::AbortHandle>,
}

impl BlazenFuture {
    fn with_slot(slot: Slot) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    slot,
                    fd: None,
                    waiters: 0,
                    notify: Vec::new(),
                }),
                ready: Condvar::new(),
            }),
            task: None,
        }
    }

    /// A future that is already resolved.
    pub fn ready<T: Send + 'static>(result: Result<T>) -> Self {
        Self::with_slot(Slot::Ready(
            result.map(|v| Box::new(v) as Value).map_err(Box::new),
        ))
    }

    /// Runs `fut` on the library runtime; a panic inside becomes INTERNAL.
    pub fn spawn<T, F>(label: &'static str, fut: F) -> Self
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let mut this = Self::with_slot(Slot::Pending);
        let shared = this.shared.clone();
        let handle = super::runtime().spawn(async move {
            let result = catch_async(label, fut).await;
            shared.complete(result.map(|v| Box::new(v) as Value));
        });
        this.task = Some(handle.abort_handle());
        this
    }

    fn is_ready(&self) -> bool {
        !matches!(self.shared.lock().slot, Slot::Pending)
    }

    fn wait(&self) {
        let mut st = self.shared.lock();
        while matches!(st.slot, Slot::Pending) {
            st.waiters += 1;
            st = self
                .shared
                .ready
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
            st.waiters -= 1;
        }
    }

    fn fd(&self) -> Result<i64> {
        let mut st = self.shared.lock();
        if let Some(fd) = &st.fd {
            return Ok(i64::from(fd.as_raw_fd()));
        }
        let fd = eventfd::new()?;
        if !matches!(st.slot, Slot::Pending) {
            eventfd::signal(&fd);
        }
        let raw = fd.as_raw_fd();
        st.fd = Some(fd);
        Ok(i64::from(raw))
    }

    /// Puts `tag` on `queue` when this future finishes (now, if it has).
    fn notify(&self, queue: &Arc<Queue>, tag: u64) {
        let mut st = self.shared.lock();
        let wake = !matches!(st.slot, Slot::Pending) && queue.push(tag, self.shared.id());
        st.notify.push((queue.clone(), tag));
        drop(st);
        if wake {
            queue.wake();
        }
    }

    /// Stops the work and resolves the future as CANCELLED (if still pending).
    fn cancel(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        self.shared
            .complete(Err(BlazenError::cancelled("the operation")));
    }

    /// Takes the result as a `T`, exactly once.
    fn take<T: 'static>(&self) -> Result<T> {
        let mut st = self.shared.lock();
        match std::mem::replace(&mut st.slot, Slot::Taken) {
            Slot::Ready(Ok(v)) => match v.downcast::<T>() {
                Ok(v) => Ok(*v),
                Err(v) => {
                    st.slot = Slot::Ready(Ok(v));
                    Err(BlazenError::internal(format!(
                        "this future does not yield a {}",
                        std::any::type_name::<T>()
                            .rsplit("::")
                            .next()
                            .unwrap_or("value")
                    )))
                }
            },
            Slot::Ready(Err(e)) => Err(*e),
            Slot::Pending => {
                st.slot = Slot::Pending;
                Err(BlazenError::internal("the future is still pending"))
            }
            Slot::Taken => Err(BlazenError::internal(
                "the future's result was already taken",
            )),
        }
    }
}

impl Drop for BlazenFuture {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        // The descriptor closes now, not when the runtime gets round to
        // dropping the aborted task (which shares this state), and no tag
        // of this future stays in (or later reaches) a completion queue.
        let mut st = self.shared.lock();
        drop(st.fd.take());
        let notify = std::mem::take(&mut st.notify);
        if !matches!(st.slot, Slot::Pending) {
            for (queue, _) in &notify {
                queue.withdraw(self.shared.id());
            }
        }
    }
}

/// Takes a typed result out of a future: the body of every generated
/// `blazen_future_take_*`.
///
/// # Safety
/// `fut` is NULL or a live future; `out`/`out_err` are NULL or writable.
pub unsafe fn take<T: Send + 'static>(
    label: &'static str,
    fut: *mut BlazenFuture,
    out: *mut *mut T,
    out_err: *mut *mut BlazenError,
) -> i32 {
    let r = guard(label, || {
        unsafe { super::arg::handle(fut, "fut") }?.take::<T>()
    });
    unsafe { super::ret::store(r, out, out_err) }
}

fn with_future<R>(fut: *const BlazenFuture, neutral: R, f: impl FnOnce(&BlazenFuture) -> R) -> R {
    // SAFETY: the C contract: NULL or a live future made by this library.
    unsafe { super::ret::with_borrowed(fut, neutral, f) }
}

/// Reports whether `fut` (borrowed) has finished: 1 ready, 0 pending, -1 when
/// `fut` is NULL. Never blocks.
#[blazen_cabi_macros::export]
fn blazen_future_poll(fut: &BlazenFuture) -> i32 {
    i32::from(fut.is_ready())
}

/// Blocks until `fut` (borrowed) has finished, then returns 0 (-1 when `fut`
/// is NULL). Safe to call from several threads at once; sleeps, never spins.
#[blazen_cabi_macros::hand_written(waits)]
#[no_mangle]
pub unsafe extern "C" fn blazen_future_wait(fut: *mut BlazenFuture) -> i32 {
    with_future(fut, -1, |f| {
        f.wait();
        0
    })
}

/// A descriptor that becomes readable when `fut` (borrowed) has finished,
/// for `poll(2)`/`epoll`/`IO.select`. It belongs to the future: never read
/// or close it; it is closed by `blazen_future_free`. Made on the first call
/// only. Returns -1 when `fut` is NULL or no descriptor could be made.
#[blazen_cabi_macros::export]
fn blazen_future_fd(fut: &BlazenFuture) -> i64 {
    fut.fd().unwrap_or(-1)
}

/// Registers `fut` (borrowed) on the completion queue `q` (borrowed): when
/// the future finishes (at once, if it already has), `tag` (any value, e.g.
/// an index, or a pointer cast through `uintptr_t`) is appended to `q`
/// once. Each call registers once more. A cancelled future notifies as it
/// finishes; freeing a future withdraws it: no tag of it is left in, or
/// later reaches, any queue once `blazen_future_free` returns. The future
/// stays caller-owned: take its result and free it as usual.
/// Returns 0, or -1 when `fut` or `q` is NULL.
#[blazen_cabi_macros::export]
fn blazen_future_notify(fut: &BlazenFuture, q: &BlazenCompletionQueue, tag: u64) -> i32 {
    fut.notify(&q.queue, tag);
    0
}

/// Cancels the work behind `fut` (borrowed): a pending future resolves at
/// once with a CANCELLED error; a finished one is unchanged. NULL is ignored.
#[blazen_cabi_macros::export]
fn blazen_future_cancel(fut: &BlazenFuture) {
    fut.cancel();
}

/// Releases a caller-owned future at any time: a pending one has its work
/// cancelled, and an untaken result is dropped. NULL is ignored.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub unsafe extern "C" fn blazen_future_free(fut: *mut BlazenFuture) {
    // SAFETY: the caller hands back a future made by this library, once.
    unsafe { super::ret::free("blazen_future_free", fut) }
}

/// Takes the result of a future whose operation yields nothing: returns 0,
/// or -1 and stores a caller-owned `BlazenError` in `*out_err` (the
/// operation's error; INTERNAL when pending, taken twice, or of another
/// type). `out_err` may be NULL; the future stays caller-owned.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub unsafe extern "C" fn blazen_future_take_unit(
    fut: *mut BlazenFuture,
    out_err: *mut *mut BlazenError,
) -> i32 {
    unsafe {
        take::<()>(
            "blazen_future_take_unit",
            fut,
            std::ptr::null_mut(),
            out_err,
        )
    }
}

#[cfg(test)]
#[path = "future_tests.rs"]
mod tests;
