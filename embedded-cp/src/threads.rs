//! The threads a control plane runs on: a tokio runtime of its own, so
//! the host's work on blazen-cabi's runtime does not hold it up.

use crate::{Error, Result};

/// How many threads a control plane runs on unless `Config::threads`
/// says otherwise: one per CPU it may use, as tokio's own default. In the
/// end-to-end bench on two cores (shared with the clients and Redis), two
/// threads gave 19-33 % more runs a second than one in memory; on Redis
/// one thread took about a fifth less CPU per run at the same rate (the
/// tasks a store reply wakes are not handed to a second, sleeping thread).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads a control plane runs on: its own tokio runtime, shut down
/// without waiting when this is dropped (which may happen on another
/// runtime's thread).
pub(crate) struct Threads(pub(crate) Option<tokio::runtime::Runtime>);

impl Threads {
    /// `threads` of them (`None`: [`default_threads`]), each running
    /// `on_start` first.
    pub(crate) fn new(
        threads: Option<std::num::NonZeroUsize>,
        on_start: Option<fn()>,
    ) -> Result<Threads> {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads.map_or_else(default_threads, |n| n.get()))
            .thread_name("blazen-cp")
            .enable_all();
        if let Some(hook) = on_start {
            b.on_thread_start(hook);
        }
        let rt = b.build().map_err(|e| {
            Error::Internal(format!("cannot start the control plane's threads: {e}"))
        })?;
        Ok(Threads(Some(rt)))
    }

    pub(crate) fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle())
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
