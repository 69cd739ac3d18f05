//! Running operations: the panic boundary, blocking calls and futures.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use futures_util::FutureExt;

use super::{BlazenError, BlazenFuture, Result};

fn panic_error(label: &str, payload: Box<dyn std::any::Any + Send>) -> BlazenError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    tracing::error!("{label} panicked: {msg}");
    BlazenError::internal(format!("{label} panicked: {msg}"))
}

/// Runs `f`, turning a panic into an INTERNAL error.
pub fn guard<T>(label: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_error(label, p)))
}

/// Awaits `fut`, turning a panic into an INTERNAL error.
pub async fn catch_async<T>(label: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(panic_error(label, p)))
}

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

/// Writes a result into the usual `(out, out_err)` pair; returns 0 or -1.
///
/// # Safety
/// `out` and `out_err` are NULL or valid for a write.
pub unsafe fn store<T>(r: Result<T>, out: *mut *mut T, out_err: *mut *mut BlazenError) -> i32 {
    match r {
        Ok(v) => {
            if !out.is_null() && std::mem::size_of::<T>() != 0 {
                // SAFETY: checked non-NULL; the caller promises it is writable.
                unsafe { *out = Box::into_raw(Box::new(v)) };
            }
            0
        }
        Err(e) => {
            if !out_err.is_null() {
                // SAFETY: as above.
                unsafe { *out_err = Box::into_raw(Box::new(e)) };
            }
            -1
        }
    }
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
            unsafe { *out_json = super::ret::c_string(*s) };
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
