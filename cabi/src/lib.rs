//! blazen-cabi: the C ABI of the Blazen distributed control plane.
//!
//! This crate reads as the API's table of contents. Each module holds the
//! stubs of one handle type; the `#[export]` macro turns every stub into
//! its C entry points (blocking, future, argument checks, panic boundary),
//! and `#[handle]` gives each handle its `_free` and `blazen_future_take_*`.
//! All raw-pointer work lives in [`rt`].
//!
//! Ownership, in brief: strings passed in are borrowed for the call;
//! strings and handles returned are owned by the caller and released with
//! `blazen_string_free` or the handle's `_free` (all accept NULL).

// A `BlazenError` is built at most once per failed call and then boxed for
// C, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]
// Every `extern "C"` function documents its pointer contract in the header
// (borrowed / caller-owned / NULL accepted), which is the safety section.
#![allow(clippy::missing_safety_doc)]

pub mod client;
pub mod context;
pub mod error;
pub mod log;
pub mod records;
pub mod rt;
pub mod server;
pub mod subscription;

mod spin;
mod tls;
pub mod vocabulary;
pub mod worker;

mod boundary_tests;
#[cfg(test)]
mod option_docs_tests;

use blazen_cabi_macros::export;

pub use rt::{BlazenError, BlazenFuture};

/// The library's version, e.g. "0.7.0". The string is caller-owned.
#[export]
fn blazen_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Starts the library's runtime now rather than on first use. Returns 0.
/// Idempotent; optional.
#[export]
fn blazen_init() -> i32 {
    rt::runtime();
    0
}

/// Completes at once: a round trip through the library's runtime and the
/// generated boundary without any I/O, to check the library responds or to
/// measure what the boundary costs. Takes nothing; yields nothing.
#[export]
async fn blazen_ping() -> rt::Result<()> {
    Ok(())
}

/// `blazen_surface()` of a library built for the 0.5.x reference surface
/// (the default build).
pub const BLAZEN_SURFACE_V0_5: u32 = 5;
/// `blazen_surface()` of a library built for the 0.6.x reference surface
/// (`cargo xtask install --surface v0.6`): `bearer_token` arguments on the
/// connect and worker_new functions, the context in the handler table's
/// `handle`.
pub const BLAZEN_SURFACE_V0_6: u32 = 6;

/// Which reference surface this build of the library implements:
/// `BLAZEN_SURFACE_V0_5` or `BLAZEN_SURFACE_V0_6`. The header defines
/// `BLAZEN_SURFACE` as the surface it declares; the functions whose shape
/// differs between surfaces (the client connect and worker_new functions,
/// `BlazenAssignmentHandlerVTable`) must only be called when the two agree.
/// Every other function is the same in both builds.
#[export]
fn blazen_surface() -> u32 {
    if cfg!(feature = "surface-v0_6") {
        BLAZEN_SURFACE_V0_6
    } else {
        BLAZEN_SURFACE_V0_5
    }
}

/// Returns 0. The runtime lives as long as the process, so the library
/// stays usable after this call; it exists for hosts that pair it with
/// `blazen_init`. Idempotent.
#[export]
fn blazen_shutdown() -> i32 {
    0
}
