//! Run-event subscriptions delivered to a C callback table.
//!
//! A task reads the control plane's event stream into a channel; one
//! library thread per subscription calls the sink in server order. The
//! sink is called under a lock that `cancel` also takes, so once `cancel`
//! (or `free`) returns no callback runs (unless it was called from inside
//! a callback, which is allowed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use blazen_cabi_macros::{export, handle};
use blazen_core::distributed::{OrchestratorClient, RunEvent, RunStateSnapshot, RunStatus};
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::client::BlazenControlPlaneClient;
use crate::rt::arg::TagList;
use crate::rt::callbacks::{BlazenRunEventSinkVTable, EventSink};
use crate::rt::{BlazenError, Result};

/// An open subscription. Caller-owned; free with
/// `blazen_controlplane_subscription_free` (which cancels it first).
#[handle(free = "blazen_controlplane_subscription_free")]
pub struct BlazenControlPlaneSubscription {
    state: Arc<State>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    cancelled: AtomicBool,
    dispatch: Mutex<()>,
    dispatcher: OnceLock<ThreadId>,
    pump: OnceLock<tokio::task::AbortHandle>,
}

impl State {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(p) = self.pump.get() {
            p.abort();
        }
        if self.dispatcher.get() != Some(&std::thread::current().id()) {
            // Waits out a callback in progress on the dispatcher thread.
            drop(self.dispatch.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

impl Drop for BlazenControlPlaneSubscription {
    fn drop(&mut self) {
        self.state.cancel();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

enum Msg {
    Event(RunEvent),
    Close,
    Error(String),
}

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
    client: BlazenControlPlaneClient,
    run: Option<Uuid>,
    tags: Vec<String>,
    opened: tokio::sync::oneshot::Sender<Result<()>>,
    tx: mpsc::Sender<Msg>,
) {
    let client = client.inner;
    let stream = match run {
        Some(id) => client
            .subscribe_run_events(id)
            .await
            .map_err(BlazenError::from),
        None => client.subscribe_all(tags).await.map_err(BlazenError::from),
    };
    let mut stream = match stream {
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
                    let _ = tx.send(Msg::Event(ev));
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
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => {
                let end = run.is_some() && is_terminal(&ev.event_type);
                if tx.send(Msg::Event(ev)).is_err() {
                    return;
                }
                if end {
                    let _ = tx.send(Msg::Close);
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::Error(e.to_string()));
                return;
            }
        }
    }
    let _ = tx.send(Msg::Error(
        "the control plane closed the event stream".into(),
    ));
}

fn dispatch(state: Arc<State>, sink: EventSink, rx: mpsc::Receiver<Msg>) {
    let _ = state.dispatcher.set(std::thread::current().id());
    for msg in rx {
        let _guard = state.dispatch.lock().unwrap_or_else(|p| p.into_inner());
        if state.cancelled.load(Ordering::SeqCst) {
            break;
        }
        match msg {
            Msg::Event(ev) => sink.on_event(
                &ev.run_id.to_string(),
                &ev.event_type,
                &ev.data.to_string(),
                ev.timestamp_ms,
            ),
            Msg::Close => {
                sink.on_close();
                break;
            }
            Msg::Error(m) => {
                sink.on_error(&m);
                break;
            }
        }
    }
}

async fn open(
    client: &BlazenControlPlaneClient,
    run: Option<Uuid>,
    tags: Vec<String>,
    sink: EventSink,
) -> Result<BlazenControlPlaneSubscription> {
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = mpsc::channel();
    let task = tokio::spawn(pump(client.clone(), run, tags, opened_tx, tx));
    let state = Arc::new(State {
        cancelled: AtomicBool::new(false),
        dispatch: Mutex::new(()),
        dispatcher: OnceLock::new(),
        pump: OnceLock::new(),
    });
    let _ = state.pump.set(task.abort_handle());
    opened_rx
        .await
        .map_err(|_| BlazenError::internal("the subscription task ended early"))??;
    let st = state.clone();
    let thread = std::thread::Builder::new()
        .name("blazen-events".into())
        .spawn(move || dispatch(st, sink, rx))
        .map_err(|e| BlazenError::internal(format!("cannot start the event thread: {e}")))?;
    Ok(BlazenControlPlaneSubscription {
        state,
        thread: Some(thread),
    })
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

/// Stops delivery: once this returns, no callback of the subscription runs
/// (not even `on_close`/`on_error`), except one already running on the
/// calling thread. `sub` stays caller-owned; free it afterwards. Idempotent.
#[export]
fn blazen_controlplane_subscription_cancel(sub: &mut BlazenControlPlaneSubscription) {
    sub.state.cancel()
}
