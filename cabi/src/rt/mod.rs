//! The boundary runtime: the only place (with the generated code) where raw
//! pointers are touched.
//!
//! - [`arg`] decodes C arguments into Rust values, naming the parameter in
//!   every error;
//! - [`panic`] is the panic boundary (a leaf: it imports nothing else here);
//! - [`call`] runs an operation blocking or as a [`BlazenFuture`];
//! - [`ret`] stores results into C out-parameters and frees handles;
//! - [`future`] is the future handle and its C functions;
//! - [`queue`] is the completion queue many futures can report to;
//! - [`strings`] is the library's string allocator.
//!
//! One tokio runtime serves the whole process; it starts on first use.

pub mod arg;
mod arg_props;
pub mod call;
pub mod callbacks;
mod error;
mod eventfd;
pub mod future;
mod grpc_text;
pub mod handler;
mod log_record;
pub mod logging;
pub mod panic;
pub mod queue;
pub mod ret;
mod sigpipe;
pub mod strings;

use std::sync::{Mutex, MutexGuard, OnceLock};

pub use error::{BlazenError, ErrorKind, Result};
pub use future::BlazenFuture;

/// The library's tokio runtime, started on first use.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Logging (BLAZEN_LOG, a host's sink) starts with the runtime.
        logging::init();
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
