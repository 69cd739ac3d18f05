//! What several parts share: the server and its HTTP side (kept apart so
//! that the HTTP side needs nothing from `server`), and the service and the
//! store (the clock, a queued run's first state).

use std::time::Duration;

use blazen_core::distributed::{RunStateSnapshot, RunStatus};
use uuid::Uuid;

/// How long a graceful stop waits for requests and streams in progress
/// before it closes every connection.
pub const GRACE: Duration = Duration::from_secs(1);

/// The target of the server's own log records (start, recovery, stop):
/// the one they had when this code was part of blazen-cabi, which hosts'
/// log filters and sinks name.
pub const LOG_TARGET: &str = "blazen_cabi::server";

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The state of a run queued now: PENDING, nothing else known.
pub(crate) fn pending_snapshot(run_id: Uuid) -> RunStateSnapshot {
    RunStateSnapshot {
        run_id,
        status: RunStatus::Pending,
        started_at_ms: now_ms(),
        completed_at_ms: None,
        assigned_to: None,
        last_event_at_ms: None,
        output: None,
        error: None,
    }
}

/// Room a postcard encoding starts with: most records and frames fit, so
/// they take one allocation (`postcard::to_allocvec` starts empty and
/// grows as it writes).
const ENCODE_ROOM: usize = 256;

/// `value` in postcard.
pub(crate) fn postcard<T: serde::Serialize + ?Sized>(value: &T) -> postcard::Result<Vec<u8>> {
    postcard::to_extend(value, Vec::with_capacity(ENCODE_ROOM))
}

/// The event data `{key: value}`, with `value` moved in (`json!` would
/// serialize a copy of it, which for a run's output is the whole output).
pub(crate) fn one_field(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut object = serde_json::Map::with_capacity(1);
    object.insert(key.to_string(), value);
    serde_json::Value::Object(object)
}
