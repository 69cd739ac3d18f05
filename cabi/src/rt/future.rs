//! `BlazenFuture`: the result of an operation started without blocking.
//!
//! The task runs on the library's runtime and stores its result in a slot
//! guarded by a mutex; `wait` sleeps on a condition variable (no spinning)
//! and the completion descriptor (an eventfd) is made only when
//! `blazen_future_fd` is first asked for, so pending futures cost no
//! descriptors.

use std::any::Any;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::panic::{catch_async, guard};
use super::{BlazenError, Result};

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
                signal(fd);
            }
            self.ready.notify_all();
        }
    }
}

fn signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
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
                state: Mutex::new(State { slot, fd: None }),
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
            st = self
                .shared
                .ready
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn fd(&self) -> Result<i64> {
        let mut st = self.shared.lock();
        if let Some(fd) = &st.fd {
            return Ok(i64::from(fd.as_raw_fd()));
        }
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(BlazenError::internal(format!(
                "eventfd failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if !matches!(st.slot, Slot::Pending) {
            signal(&fd);
        }
        st.fd = Some(fd);
        Ok(i64::from(raw))
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
        // dropping the aborted task (which shares this state).
        drop(self.shared.lock().fd.take());
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
    match unsafe { fut.as_ref() } {
        None => neutral,
        Some(fut) => {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(fut))).unwrap_or(neutral)
        }
    }
}

/// Reports whether `fut` (borrowed) has finished: 1 ready, 0 pending, -1 when
/// `fut` is NULL. Never blocks.
#[no_mangle]
pub unsafe extern "C" fn blazen_future_poll(fut: *const BlazenFuture) -> i32 {
    with_future(fut, -1, |f| i32::from(f.is_ready()))
}

/// Blocks until `fut` (borrowed) has finished, then returns 0 (-1 when `fut`
/// is NULL). Safe to call from several threads at once; sleeps, never spins.
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
#[no_mangle]
pub unsafe extern "C" fn blazen_future_fd(fut: *const BlazenFuture) -> i64 {
    with_future(fut, -1, |f| f.fd().unwrap_or(-1))
}

/// Cancels the work behind `fut` (borrowed): a pending future resolves at
/// once with a CANCELLED error; a finished one is unchanged. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn blazen_future_cancel(fut: *const BlazenFuture) {
    with_future(fut, (), BlazenFuture::cancel)
}

/// Releases a caller-owned future at any time: a pending one has its work
/// cancelled, and an untaken result is dropped. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn blazen_future_free(fut: *mut BlazenFuture) {
    if !fut.is_null() {
        // SAFETY: the caller hands back a future made by this library, once.
        let fut = unsafe { Box::from_raw(fut) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(fut)));
    }
}

/// Takes the result of a future whose operation yields nothing: returns 0,
/// or -1 and stores a caller-owned `BlazenError` in `*out_err` (the
/// operation's error; INTERNAL when pending, taken twice, or of another
/// type). `out_err` may be NULL; the future stays caller-owned.
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
