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

use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use blazen_cabi_macros::export;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::reload;

use crate::rt::arg::FromCStr;
use crate::rt::{BlazenError, Result};

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

/// Receives the library's log records (see `blazen_log_set_sink`).
/// `on_log` gets the record's level (`BLAZEN_LOG_LEVEL_*`), its target
/// (where it comes from, e.g. `blazen_controlplane::server::session`) and
/// its message followed by its fields as ` key=value`; both strings are
/// borrowed for the call. It runs on one library thread, a record at a
/// time, never while a library lock is held, and may call any library
/// function (a record the library produces on that thread during the call
/// is dropped). `on_log` and `drop_user_data` may be NULL.
#[repr(C)]
pub struct BlazenLogSinkVTable {
    pub user_data: *mut c_void,
    pub drop_user_data: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub on_log: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            level: u32,
            target: *const c_char,
            message: *const c_char,
        ),
    >,
}

crate::rt::callbacks::owner!(LogSink, BlazenLogSinkVTable);

impl LogSink {
    fn on_log(&self, level: u32, target: &CStr, message: &CStr) {
        if let Some(f) = self.vt.on_log {
            // SAFETY: valid strings for the call, the host's own pointer.
            unsafe { f(self.vt.user_data, level, target.as_ptr(), message.as_ptr()) };
        }
    }
}

/// An env-filter string (the syntax of `BLAZEN_LOG`).
pub struct LogFilter(EnvFilter);

impl FromCStr for LogFilter {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        let text = String::from_c(raw, name)?;
        parse_filter(&text)
            .map(LogFilter)
            .map_err(|e| BlazenError::invalid(name, format!("is not a log filter ({e})")))
    }
}

fn parse_filter(text: &str) -> std::result::Result<EnvFilter, String> {
    EnvFilter::builder().parse(text).map_err(|e| e.to_string())
}

/// Records waiting for the delivery thread.
const QUEUE: usize = 4096;

/// One formatted record, for the sink installed as `generation`.
struct Record {
    generation: u64,
    level: u32,
    target: CString,
    message: CString,
}

/// The host's sink while it is installed.
struct Installed {
    generation: u64,
    sink: LogSink,
}

/// The process-wide logging state, made once.
pub(crate) struct Logging {
    /// The sink's filter; "off" while no sink is set.
    filter: reload::Handle<EnvFilter, Registry>,
    /// Whether our subscriber became the process's global default.
    installed: bool,
}

/// The generation of the current sink (0: none), read by producers
/// without a lock.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
/// The current sink. Held only to read or swap it, never during a callback.
static SINK: Mutex<Option<Arc<Installed>>> = Mutex::new(None);
/// Records dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);
static QUEUE_TX: OnceLock<SyncSender<Record>> = OnceLock::new();
static LOGGING: OnceLock<Logging> = OnceLock::new();

thread_local! {
    /// Set while this thread formats a record or delivers one: a record
    /// produced meanwhile on this thread is dropped, not delivered inside.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Sets `BUSY` for its lifetime; `None` when it was already set.
struct Busy;

impl Busy {
    fn enter() -> Option<Busy> {
        match BUSY.try_with(|b| b.replace(true)) {
            Ok(false) => Some(Busy),
            _ => None,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = BUSY.try_with(|b| b.set(false));
    }
}

fn lock_sink() -> std::sync::MutexGuard<'static, Option<Arc<Installed>>> {
    SINK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the process's subscriber once: called when the runtime starts
/// and before a sink is set. Reads `BLAZEN_LOG`.
pub(crate) fn init() -> &'static Logging {
    LOGGING.get_or_init(|| {
        let (filter, handle) = reload::Layer::new(EnvFilter::new("off"));
        let stderr = std::env::var("BLAZEN_LOG")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| match parse_filter(&s) {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("blazen-cabi: BLAZEN_LOG={s:?} is not a log filter ({e}); not logging to stderr");
                    None
                }
            })
            .map(|f| {
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(f)
            });
        let subscriber = Registry::default()
            .with(SinkLayer.with_filter(filter))
            .with(stderr);
        let installed = tracing::subscriber::set_global_default(subscriber).is_ok();
        if installed {
            // Records of crates that use `log` (rustls) become events.
            let _ = tracing_log::LogTracer::init();
            tracing_log::log::set_max_level(tracing_log::AsLog::as_log(
                &tracing::level_filters::LevelFilter::current(),
            ));
        }
        Logging {
            filter: handle,
            installed,
        }
    })
}

/// The queue's sending end; the first call starts the delivery thread.
fn queue() -> Result<&'static SyncSender<Record>> {
    if let Some(tx) = QUEUE_TX.get() {
        return Ok(tx);
    }
    static START: Mutex<()> = Mutex::new(());
    let _once = START.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = QUEUE_TX.get() {
        return Ok(tx);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("blazen-log".into())
        .spawn(move || deliver(rx))
        .map_err(|e| BlazenError::internal(format!("cannot start the log thread: {e}")))?;
    Ok(QUEUE_TX.get_or_init(|| tx))
}

/// The delivery thread: hands each record to the sink it was made for,
/// if that sink is still the current one.
fn deliver(rx: Receiver<Record>) {
    let Some(_busy) = Busy::enter() else { return };
    for record in rx {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = Record {
                generation: record.generation,
                level: BLAZEN_LOG_LEVEL_WARN,
                target: c"blazen_cabi::log".into(),
                message: CString::new(format!(
                    "{dropped} log records were dropped: the sink fell behind"
                ))
                .unwrap_or_default(),
            };
            call(&note);
        }
        call(&record);
    }
}

fn call(record: &Record) {
    let sink = {
        let slot = lock_sink();
        match &*slot {
            Some(s) if s.generation == record.generation => s.clone(),
            _ => return,
        }
    };
    sink.sink
        .on_log(record.level, &record.target, &record.message);
    // When the sink was replaced during the call, this was its last
    // reference: `drop_user_data` runs here, after its last callback.
    drop(sink);
}

fn level_number(level: &Level) -> u32 {
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
struct Text {
    message: String,
    fields: String,
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

/// Queues the records the sink's filter lets through.
struct SinkLayer;

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let generation = GENERATION.load(Ordering::Acquire);
        if generation == 0 {
            return;
        }
        let Some(_busy) = Busy::enter() else { return };
        let Some(tx) = QUEUE_TX.get() else { return };
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut text = Text::default();
        event.record(&mut text);
        text.message.push_str(&text.fields);
        let record = Record {
            generation,
            level: level_number(meta.level()),
            target: CString::new(meta.target().replace('\0', "")).unwrap_or_default(),
            message: CString::new(text.message.replace('\0', "")).unwrap_or_default(),
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(record) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
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
    let filter = match filter {
        Some(f) => f.0,
        None => EnvFilter::new("info"),
    };
    let logging = init();
    if !logging.installed {
        return Err(BlazenError::internal(
            "another tracing subscriber is the process's default; the library cannot log to a sink",
        ));
    }
    queue()?;
    let previous = {
        let mut slot = lock_sink();
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        logging
            .filter
            .reload(filter)
            .map_err(|e| BlazenError::internal(format!("cannot set the log filter: {e}")))?;
        GENERATION.store(generation, Ordering::Release);
        slot.replace(Arc::new(Installed { generation, sink }))
    };
    // Outside the lock: the previous sink's `drop_user_data` runs here
    // unless a callback of it is in flight (then after that callback).
    drop(previous);
    Ok(())
}

/// Stops sending log records to the sink set with `blazen_log_set_sink`
/// and releases it (`drop_user_data` as described there). Without a sink
/// it does nothing; logging to stderr under `BLAZEN_LOG` goes on.
#[export]
fn blazen_log_clear_sink() {
    let previous = {
        let mut slot = lock_sink();
        GENERATION.store(0, Ordering::Release);
        if let Some(logging) = LOGGING.get() {
            let _ = logging.filter.reload(EnvFilter::new("off"));
        }
        slot.take()
    };
    drop(previous);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for ok in [
            "info",
            "warn,blazen_controlplane=debug",
            "blazen_cabi::server=info",
            "off",
        ] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        let e = LogFilter::from_c(Some(c"blazen=notalevel"), "filter")
            .err()
            .unwrap();
        assert_eq!(e.kind, crate::rt::ErrorKind::Validation);
        assert!(e.message.contains("`filter`"), "{}", e.message);
    }

    #[test]
    fn levels() {
        assert_eq!(level_number(&Level::ERROR), BLAZEN_LOG_LEVEL_ERROR);
        assert_eq!(level_number(&Level::TRACE), BLAZEN_LOG_LEVEL_TRACE);
    }
}
