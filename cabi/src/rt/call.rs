//! Running operations: blocking calls and futures, behind the panic boundary.

use std::future::Future;

use super::panic::{catch_async, guard};
use super::ret::store;
use super::{BlazenError, BlazenFuture, Result};

/// Drives `fut` to completion on the library runtime from any thread:
/// directly on a foreign thread, through a spawned task on a thread that
/// already belongs to a runtime (callbacks, blocking pools).
pub fn run_blocking<T: Send + 'static>(
    label: &'static str,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        // No socket is written on this thread: connections are driven by
        // tasks on the runtime's threads, which block SIGPIPE.
        return super::runtime().block_on(catch_async(label, fut));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    super::runtime().spawn(async move {
        let _ = tx.send(catch_async(label, fut).await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(BlazenError::internal(format!("{label}: the task was lost"))))
}

/// Body of every `NAME_blocking` whose operation yields a handle.
///
/// # Safety
/// Out-pointers are NULL or writable.
pub unsafe fn blocking<T, F, Fut>(
    label: &'static str,
    out: *mut *mut T,
    out_err: *mut *mut BlazenError,
    make: F,
) -> i32
where
    T: Send + 'static,
    F: FnOnce() -> Result<Fut>,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let r = guard(label, || run_blocking(label, make()?));
    unsafe { store(r, out, out_err) }
}

/// Body of every `NAME_blocking` whose operation yields nothing.
///
/// # Safety
/// `out_err` is NULL or writable.
pub unsafe fn blocking_unit<F, Fut>(
    label: &'static str,
    out_err: *mut *mut BlazenError,
    make: F,
) -> i32
where
    F: FnOnce() -> Result<Fut>,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    unsafe { blocking(label, std::ptr::null_mut(), out_err, make) }
}

/// Body of every `NAME_blocking` whose operation yields a JSON string.
///
/// # Safety
/// Out-pointers are NULL or writable.
pub unsafe fn blocking_text<F, Fut>(
    label: &'static str,
    out_json: *mut *mut std::ffi::c_char,
    out_err: *mut *mut BlazenError,
    make: F,
) -> i32
where
    F: FnOnce() -> Result<Fut>,
    Fut: Future<Output = Result<String>> + Send + 'static,
{
    let r = guard(label, || run_blocking(label, make()?));
    let mut text = std::ptr::null_mut::<String>();
    let rc = unsafe { store(r, &mut text, out_err) };
    if rc == 0 {
        // SAFETY: `store` just boxed the string into `text`.
        let s = unsafe { Box::from_raw(text) };
        if !out_json.is_null() {
            // SAFETY: checked non-NULL; the caller promises it is writable.
            unsafe { *out_json = super::strings::c_string(*s) };
        }
    }
    rc
}

/// Body of every future-returning `NAME`: never NULL; bad arguments give an
/// already-failed future.
pub fn future<T, F, Fut>(label: &'static str, make: F) -> *mut BlazenFuture
where
    T: Send + 'static,
    F: FnOnce() -> Result<Fut>,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let fut = match guard(label, make) {
        Ok(fut) => {
            // One poll on the caller's thread first: an operation that can
            // finish at once then costs no task and no cross-thread wake-ups.
            let mut fut = Box::pin(catch_async(label, fut));
            let _runtime = super::runtime().enter();
            let waker = futures_util::task::noop_waker();
            match fut
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
            {
                std::task::Poll::Ready(r) => BlazenFuture::ready(r),
                std::task::Poll::Pending => BlazenFuture::spawn(label, fut),
            }
        }
        Err(e) => BlazenFuture::ready::<T>(Err(e)),
    };
    Box::into_raw(Box::new(fut))
}
