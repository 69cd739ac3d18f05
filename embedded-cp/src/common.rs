//! What the server and its HTTP side share (kept apart so that the HTTP
//! side needs nothing from `server`).

use std::time::Duration;

/// How long a graceful stop waits for requests and streams in progress
/// before it closes every connection.
pub const GRACE: Duration = Duration::from_secs(1);

/// The target of the server's own log records (start, recovery, stop):
/// the one they had when this code was part of blazen-cabi, which hosts'
/// log filters and sinks name.
pub const LOG_TARGET: &str = "blazen_cabi::server";
