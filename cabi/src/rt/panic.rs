//! The panic boundary: no panic unwinds into the caller. A leaf module.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use futures_util::FutureExt;

use super::{BlazenError, Result};

fn panic_error(label: &str, payload: Box<dyn std::any::Any + Send>) -> BlazenError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    tracing::error!("{label} panicked: {msg}");
    BlazenError::internal(format!("{label} panicked: {msg}"))
}

/// Runs `f`; `None` when it panicked (the panic logged as by [`guard`]),
/// for the functions that answer with a neutral value rather than an
/// error.
pub fn catch<R>(label: &str, f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| panic_error(label, p))
        .ok()
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
