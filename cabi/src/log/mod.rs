//! Logs. The library and the crates under it (blazen-controlplane, tonic,
//! h2, rustls through `log`) log through `tracing`; one process-wide
//! subscriber, installed when the runtime starts, sends the records to
//!
//! - stderr, when `BLAZEN_LOG` holds an env-filter string (`info`,
//!   `blazen_controlplane=debug,warn`, ...); silent otherwise;
//! - the host's sink set with `blazen_log_set_sink`, under its own filter.
//!
//! Records for the sink are formatted where they happen and queued; one
//! library thread ("blazen-log") hands them to the host in queue order.
//! So `on_log` never runs while a lock is held (a record may be produced
//! inside a dependency holding its own lock, h2's for one), never on an
//! async executor thread, and never inside a library call of the host's
//! own thread; it may call anything in the library. A record produced on
//! the delivery thread while a callback runs (by a library call made from
//! the callback, say) is dropped rather than delivered recursively. A full
//! queue drops records and reports how many in a warning.
//!
//! Replacing or clearing the sink never waits for a callback: the sink is
//! shared (`Arc`) between the slot and the callback in flight, and whoever
//! lets go last calls `drop_user_data`, after its last callback.
//!
//! - [`delivery`]: the subscriber, the queue and the "blazen-log" thread;
//! - [`record`]: a record as the sink sees it (level number, text).
//!
//! The sink's callback table and its owner are in `rt::callbacks`.

mod delivery;
mod record;

use blazen_cabi_macros::export;

use crate::rt::callbacks::BlazenLogSinkVTable;
use crate::rt::Result;
use delivery::LogFilter;

pub use record::{
    BLAZEN_LOG_LEVEL_DEBUG, BLAZEN_LOG_LEVEL_ERROR, BLAZEN_LOG_LEVEL_INFO, BLAZEN_LOG_LEVEL_TRACE,
    BLAZEN_LOG_LEVEL_WARN,
};

/// Logging starts with the library's runtime (see [`crate::rt::runtime`]).
impl crate::rt::OnRuntimeStart for crate::rt::Startup {
    fn on_runtime_start() {
        delivery::init();
    }
}

/// Sends the library's log records that pass `filter` (borrowed; an
/// env-filter string as for `BLAZEN_LOG`, e.g. `info` or
/// `warn,blazen_controlplane=debug`; NULL means `info`; a malformed one is
/// a VALIDATION error naming `filter`) to `sink`, replacing the sink set
/// before. The library owns `sink.user_data` from this call on, on every
/// path, and calls `drop_user_data` once: after the sink's last callback,
/// when it is replaced or cleared (a callback in flight then finishes
/// first, on the log thread; nothing waits for it). May be called from
/// `on_log` itself.
#[export(status)]
async fn blazen_log_set_sink(sink: BlazenLogSinkVTable, filter: Option<LogFilter>) -> Result<()> {
    delivery::set_sink(sink, filter)
}

/// Stops sending log records to the sink set with `blazen_log_set_sink`
/// and releases it (`drop_user_data` as described there). Without a sink
/// it does nothing; logging to stderr under `BLAZEN_LOG` goes on.
#[export]
fn blazen_log_clear_sink() {
    delivery::clear_sink()
}
