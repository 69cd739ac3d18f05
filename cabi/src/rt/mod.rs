//! The boundary runtime: the only place (with the generated code) where raw
//! pointers are touched. Pointer mechanics only; what a value means (error
//! mapping, logging, a worker's handling of a run) is left to the modules
//! that serve it, behind safe functions here.
//!
//! - [`arg`] decodes C arguments into Rust values, naming the parameter in
//!   every error (`arg_props` holds its property tests);
//! - [`panic`] is the panic boundary (a leaf: it imports nothing else here);
//! - [`call`] runs an operation blocking or as a [`BlazenFuture`];
//! - [`ret`] stores results into C out-parameters and frees handles;
//! - [`future`] is the future handle and its C functions;
//! - [`queue`] is the completion queue many futures can report to;
//! - `eventfd` is the descriptor behind a future's or a queue's `_fd`;
//! - [`strings`] is the library's string allocator;
//! - [`callbacks`] holds the C callback tables and the owners that call
//!   them;
//! - [`handler`] makes one call of a worker's handler table and takes what
//!   it stored;
//! - `error` is the error value behind `BlazenError *` ([`BlazenError`],
//!   [`ErrorKind`]);
//! - `sigpipe` keeps SIGPIPE off the runtime's threads.
//!
//! One tokio runtime serves the whole process; it starts on first use.

pub mod arg;
mod arg_props;
pub mod call;
pub mod callbacks;
mod error;
mod eventfd;
pub mod future;
pub mod handler;
pub mod panic;
pub mod queue;
pub mod ret;
pub(crate) mod sigpipe;
pub mod strings;
#[cfg(test)]
mod test_support;

use std::sync::{Mutex, MutexGuard, OnceLock};

pub use error::{BlazenError, ErrorKind, Result};
pub use future::BlazenFuture;

/// What the rest of the crate starts with the runtime, declared here so
/// that `rt` need not name it: the `log` module implements it for
/// [`Startup`] (logging, `BLAZEN_LOG` and a host's sink, starts with the
/// runtime).
pub trait OnRuntimeStart {
    /// Runs once, before the runtime's first thread starts.
    fn on_runtime_start();
}

/// The type [`OnRuntimeStart`] is implemented for.
pub struct Startup;

/// The library's tokio runtime, started on first use.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        <Startup as OnRuntimeStart>::on_runtime_start();
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("blazen-cabi")
            .on_thread_start(sigpipe::block_for_this_thread)
            .enable_all()
            .build()
            .expect("blazen-cabi: cannot start the tokio runtime")
    })
}

/// Locks `m`, recovering the data of a lock poisoned by a panic (every
/// panic is caught at the boundary, so the data is still consistent): the
/// one way the crate locks a mutex.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
