//! The delivery of log records (see the `log` module for what a host sees):
//! the process's subscriber, the queue and the "blazen-log" thread that
//! calls the host's sink.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::reload;

use crate::rt::arg::FromCStr;
use crate::rt::callbacks::LogSink;
use crate::rt::{BlazenError, Result};

use super::record::{level_number, Text, BLAZEN_LOG_LEVEL_WARN};

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
    crate::rt::lock(&SINK)
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
    let _once = crate::rt::lock(&START);
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

/// Installs `sink` with `filter` (NULL: `info`), replacing the sink set
/// before; see `blazen_log_set_sink`.
pub fn set_sink(sink: LogSink, filter: Option<LogFilter>) -> Result<()> {
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

/// Removes the sink; see `blazen_log_clear_sink`.
pub fn clear_sink() {
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
}
