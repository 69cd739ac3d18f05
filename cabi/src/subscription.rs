//! Run-event subscriptions delivered to a C callback table.
//!
//! A task reads the control plane's event stream into a channel; one
//! library thread per subscription calls the sink in server order and owns
//! it, so `drop_user_data` runs on that thread after its last callback.
//! Cancelling never waits for that thread: it flips a gate the thread
//! passes before every callback (see [`Gate`]) and aborts the stream task,
//! which ends the thread's channel.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use blazen_cabi_macros::{export, handle};
use blazen_core::distributed::{OrchestratorClient, RunEvent, RunStateSnapshot, RunStatus};
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::client::{BlazenControlPlaneClient, StreamSlot};
use crate::rt::arg::TagList;
use crate::rt::callbacks::{BlazenRunEventSinkVTable, EventSink};
use crate::rt::{BlazenError, Result};

/// An open subscription. Caller-owned; free with
/// `blazen_controlplane_subscription_free` (which cancels it first).
#[handle(free = "blazen_controlplane_subscription_free")]
pub struct BlazenControlPlaneSubscription {
    state: Arc<State>,
}

struct State {
    gate: Gate,
    pump: OnceLock<tokio::task::AbortHandle>,
}

impl State {
    /// Signals only: never waits for the dispatcher thread or a callback.
    fn cancel(&self) {
        self.gate.close();
        if let Some(p) = self.pump.get() {
            p.abort();
        }
    }
}

impl Drop for BlazenControlPlaneSubscription {
    fn drop(&mut self) {
        self.state.cancel();
    }
}

/// Decides, without locks, whether the dispatcher may start a callback.
/// The dispatcher moves `OPEN -> DELIVERING` before each callback and back
/// after it; `close` moves any state to `CLOSED`. A callback whose
/// transition won the race is "already being delivered" and completes;
/// once `close` has returned no new one starts.
struct Gate(AtomicU8);

const OPEN: u8 = 0;
const DELIVERING: u8 = 1;
const CLOSED: u8 = 2;

impl Gate {
    fn new() -> Self {
        Gate(AtomicU8::new(OPEN))
    }

    fn close(&self) {
        self.0.store(CLOSED, Ordering::SeqCst);
    }

    /// Runs `f` unless the gate is closed; false when it was (or closed
    /// while `f` ran), meaning the dispatcher should stop.
    fn deliver(&self, f: impl FnOnce()) -> bool {
        if self
            .0
            .compare_exchange(OPEN, DELIVERING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        f();
        self.0
            .compare_exchange(DELIVERING, OPEN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

enum Msg {
    /// Events in server order: all the stream had ready at once (up to
    /// `BATCH`), so that a busy stream costs one hand-off and at most one
    /// wake-up of the event thread per batch, not per event.
    Events(Vec<RunEvent>),
    Close,
    Error(String),
}

/// The most events one hand-off to the event thread carries.
const BATCH: usize = 256;

fn is_terminal(event_type: &str) -> bool {
    matches!(
        event_type,
        "status.completed" | "status.failed" | "status.cancelled"
    )
}

/// The terminal event a finished run's snapshot stands for.
fn terminal_event(s: &RunStateSnapshot) -> Option<RunEvent> {
    let (event_type, data) = match s.status {
        RunStatus::Completed => ("status.completed", json!({"output": s.output})),
        RunStatus::Failed => ("status.failed", json!({"error": s.error})),
        RunStatus::Cancelled => ("status.cancelled", json!({})),
        RunStatus::Pending | RunStatus::Running => return None,
    };
    Some(RunEvent {
        run_id: s.run_id,
        event_type: event_type.into(),
        data,
        timestamp_ms: s
            .completed_at_ms
            .or(s.last_event_at_ms)
            .unwrap_or(s.started_at_ms),
    })
}

/// Opens the stream, then pumps it into `tx` until the run ends, the
/// stream fails, or the task is aborted.
async fn pump(
    slot: StreamSlot,
    run: Option<Uuid>,
    tags: Vec<String>,
    opened: tokio::sync::oneshot::Sender<Result<()>>,
    tx: mpsc::Sender<Msg>,
) {
    let client = &slot.conn().client;
    let stream = match run {
        Some(id) => client
            .subscribe_run_events(id)
            .await
            .map_err(BlazenError::from),
        None => client.subscribe_all(tags).await.map_err(BlazenError::from),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    if let Some(id) = run {
        // A run that ended before the stream opened still gets its end.
        match client.describe_workflow(id).await {
            Ok(snap) => {
                if let Some(ev) = terminal_event(&snap) {
                    let _ = opened.send(Ok(()));
                    let _ = tx.send(Msg::Events(vec![ev]));
                    let _ = tx.send(Msg::Close);
                    return;
                }
            }
            Err(e) => {
                let _ = opened.send(Err(e.into()));
                return;
            }
        }
    }
    let _ = opened.send(Ok(()));
    // Whatever the stream has ready at once, up to BATCH, crosses as one.
    let mut chunks = stream.ready_chunks(BATCH);
    while let Some(items) = chunks.next().await {
        let mut batch = Vec::with_capacity(items.len());
        let mut last = None;
        for item in items {
            match item {
                Ok(ev) => {
                    let end = run.is_some() && is_terminal(&ev.event_type);
                    batch.push(ev);
                    if end {
                        last = Some(Msg::Close);
                        break;
                    }
                }
                Err(e) => {
                    last = Some(Msg::Error(e.to_string()));
                    break;
                }
            }
        }
        if !batch.is_empty() && tx.send(Msg::Events(batch)).is_err() {
            return;
        }
        if let Some(msg) = last {
            let _ = tx.send(msg);
            return;
        }
    }
    let _ = tx.send(Msg::Error(
        "the control plane closed the event stream".into(),
    ));
}

/// The dispatcher thread: delivers until the stream ends or the gate
/// closes, then drops `sink` (calling `drop_user_data`) as its last act.
fn dispatch(state: Arc<State>, sink: EventSink, rx: mpsc::Receiver<Msg>) {
    for msg in rx {
        let (delivered, last) = match msg {
            Msg::Events(events) => {
                let all = events.iter().all(|ev| {
                    state.gate.deliver(|| {
                        sink.on_event(
                            &ev.run_id.to_string(),
                            &ev.event_type,
                            &ev.data.to_string(),
                            ev.timestamp_ms,
                        )
                    })
                });
                (all, false)
            }
            Msg::Close => (state.gate.deliver(|| sink.on_close()), true),
            Msg::Error(m) => (state.gate.deliver(|| sink.on_error(&m)), true),
        };
        if !delivered || last {
            break;
        }
    }
    drop(sink);
}

async fn open(
    client: &BlazenControlPlaneClient,
    run: Option<Uuid>,
    tags: Vec<String>,
    sink: EventSink,
) -> Result<BlazenControlPlaneSubscription> {
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = mpsc::channel();
    let slot = client.stream_slot(run);
    let task = tokio::spawn(pump(slot, run, tags, opened_tx, tx));
    let state = Arc::new(State {
        gate: Gate::new(),
        pump: OnceLock::new(),
    });
    let _ = state.pump.set(task.abort_handle());
    opened_rx
        .await
        .map_err(|_| BlazenError::internal("the subscription task ended early"))??;
    let st = state.clone();
    // Detached: teardown never joins it (it may be inside a callback).
    std::thread::Builder::new()
        .name("blazen-events".into())
        .spawn(move || dispatch(st, sink, rx))
        .map_err(|e| BlazenError::internal(format!("cannot start the event thread: {e}")))?;
    Ok(BlazenControlPlaneSubscription { state })
}

/// Streams the events of run `run_id` (borrowed UUID text) into `sink`
/// from now on, then calls `on_close` after the run's terminal `status.*`
/// event (a run that has already ended gets one terminal event from its
/// snapshot, then `on_close`). The library owns `sink.user_data` from this
/// call on, on every path, and calls `drop_user_data` once. Blocks until
/// the stream is open; returns 0 and a caller-owned subscription in
/// `*out_subscription`, or -1 and an error.
#[export(status)]
async fn blazen_controlplane_client_subscribe_run_events(
    client: &BlazenControlPlaneClient,
    run_id: Uuid,
    sink: BlazenRunEventSinkVTable,
) -> Result<BlazenControlPlaneSubscription> {
    open(client, Some(run_id), Vec::new(), sink).await
}

/// Streams the events of every run whose submission matches
/// `required_tags_json` (NULL, `null` or `["key=value", ...]`, borrowed)
/// into `sink` until cancelled; a broken stream ends with `on_error`.
/// Ownership as for `blazen_controlplane_client_subscribe_run_events`.
#[export(status)]
async fn blazen_controlplane_client_subscribe_all(
    client: &BlazenControlPlaneClient,
    required_tags_json: TagList,
    sink: BlazenRunEventSinkVTable,
) -> Result<BlazenControlPlaneSubscription> {
    open(client, None, required_tags_json.0, sink).await
}

/// Stops delivery without waiting for anything: once this returns no new
/// callback of the subscription starts (not even `on_close`/`on_error`); a
/// callback already being delivered on the library's event thread may
/// still complete. `drop_user_data` follows as the sink's last call, on
/// that thread, once `sub` has been freed or the stream has ended. Safe to
/// call from inside a callback and while holding a lock callbacks need.
/// `sub` (borrowed) stays caller-owned; free it afterwards. Idempotent.
#[export]
fn blazen_controlplane_subscription_cancel(sub: &mut BlazenControlPlaneSubscription) {
    sub.state.cancel()
}
