//! The boundary runtime: the only place (with the generated code) where raw
//! pointers are touched.
//!
//! - [`arg`] decodes C arguments into Rust values, naming the parameter in
//!   every error;
//! - [`call`] runs an operation blocking or as a [`BlazenFuture`], behind a
//!   panic boundary;
//! - [`ret`] converts results back into C values and frees handles;
//! - [`future`] is the future handle and its C functions;
//! - [`strings`] is the library's string allocator.
//!
//! One tokio runtime serves the whole process; it starts on first use.

pub mod arg;
mod arg_props;
pub mod call;
pub mod callbacks;
mod error;
pub mod future;
pub mod ret;
mod sigpipe;
pub mod strings;

use std::sync::OnceLock;

pub use error::{BlazenError, ErrorKind, Result};
pub use future::BlazenFuture;

/// The library's tokio runtime, started on first use.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Logging (BLAZEN_LOG, a host's sink) starts with the runtime.
        crate::log::init();
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("blazen-cabi")
            .on_thread_start(sigpipe::block_for_this_thread)
            .enable_all()
            .build()
            .expect("blazen-cabi: cannot start the tokio runtime")
    })
}
