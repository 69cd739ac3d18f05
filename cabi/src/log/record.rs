//! A `tracing` event as the host's sink sees it: a level number, and the
//! message followed by the other fields as ` key=value`.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::Level;

/// Log level of an error record.
pub const BLAZEN_LOG_LEVEL_ERROR: u32 = 1;
/// Log level of a warning record.
pub const BLAZEN_LOG_LEVEL_WARN: u32 = 2;
/// Log level of an informational record.
pub const BLAZEN_LOG_LEVEL_INFO: u32 = 3;
/// Log level of a debugging record.
pub const BLAZEN_LOG_LEVEL_DEBUG: u32 = 4;
/// Log level of a tracing (most verbose) record.
pub const BLAZEN_LOG_LEVEL_TRACE: u32 = 5;

pub(super) fn level_number(level: &Level) -> u32 {
    match *level {
        Level::ERROR => BLAZEN_LOG_LEVEL_ERROR,
        Level::WARN => BLAZEN_LOG_LEVEL_WARN,
        Level::INFO => BLAZEN_LOG_LEVEL_INFO,
        Level::DEBUG => BLAZEN_LOG_LEVEL_DEBUG,
        Level::TRACE => BLAZEN_LOG_LEVEL_TRACE,
    }
}

/// Formats a record's fields: the message, then ` key=value` for the rest
/// (leaving out the `log.*` fields a `log` record carries).
#[derive(Default)]
pub(super) struct Text {
    pub(super) message: String,
    pub(super) fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            n if n.starts_with("log.") => {}
            n => {
                let _ = write!(self.fields, " {n}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            n if n.starts_with("log.") => {}
            n => {
                let _ = write!(self.fields, " {n}={value:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_number(&Level::ERROR), BLAZEN_LOG_LEVEL_ERROR);
        assert_eq!(level_number(&Level::TRACE), BLAZEN_LOG_LEVEL_TRACE);
    }
}
