//! blazen-embedded-cp: the control plane blazen-cabi runs inside a host
//! process. It serves blazen-controlplane 0.7.0's own gRPC service, except
//! where that crate loses runs, deadlocks or stays silent: the worker
//! session, submissions, subscriptions and input answers are rebuilt here
//! from the crate's public pieces ([`service`]), with a durable Redis or
//! Valkey store and a recovery that keeps every run across a restart
//! ([`store`]). Each repair is written up in `docs/upstream.md` and tested
//! in `tests/` against real tonic clients (and a real Redis).
//!
//! Nothing here knows about C: errors are [`Error`] values that
//! blazen-cabi turns into its `BlazenError`.

mod common;
mod conn;
mod error;
mod http;
mod server;
mod service;
pub mod store;
mod threads;
pub mod vocabulary;

pub use error::{Error, Result, RunErrorKind, STORE_STATUS_PREFIX};
pub use server::{default_threads, Config, Server, DEFAULT_MAX_REQUEUES, KEEPALIVE};
pub use vocabulary::{ended_event, EventType, Subkind};

/// Locks `m`, recovering the data of a lock a panicking thread held (every
/// lock here guards data that stays consistent between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
