//! Run-event subscriptions delivered to a C callback table.
//!
//! A task reads the control plane's event stream into a channel; one
//! library thread per subscription calls the sink in server order. The
//! sink lives in a slot the subscription shares with that thread (see
//! [`State`]): the thread borrows it for one callback at a time, and the
//! stream's end, `_cancel` or `_free` takes it out and releases it, so
//! `drop_user_data` has run by the time the `_free` that ends a
//! subscription returns (or right after a callback being delivered at
//! that moment). Nothing ever waits for the event thread.

use blazen_embedded_cp::{ended_event, EventType};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use blazen_cabi_macros::{export, handle};
use blazen_core::distributed::{OrchestratorClient, RunEvent};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::client::{BlazenControlPlaneClient, StreamSlot};
use crate::rt::arg::TagList;
use crate::rt::callbacks::{BlazenRunEventSinkVTable, EventSink};
use crate::rt::{lock, BlazenError, Result};

/// An open subscription. Caller-owned; free with
/// `blazen_controlplane_subscription_free` (which cancels it first).
#[handle(free = "blazen_controlplane_subscription_free")]
pub struct BlazenControlPlaneSubscription {
    state: Arc<State>,
}

/// What the subscription handle and its event thread share.
struct State {
    /// The sink until the stream ends or the subscription is cancelled.
    /// Locked only to clone or take the `Arc`, never during a callback; a
    /// callback holds its own clone, so whoever lets go last (the cancel,
    /// or a callback in flight) calls `drop_user_data`.
    sink: Mutex<Option<Arc<EventSink>>>,
    /// Signalled when a cancel takes the sink (see [`State::settle`]).
    taken: Condvar,
    pump: OnceLock<tokio::task::AbortHandle>,
}

impl State {
    /// Ends delivery and releases the sink: once this returns no callback
    /// starts, and `drop_user_data` has run here, unless a callback is in
    /// flight (then right after it, on the event thread). Never waits.
    fn cancel(&self) {
        let sink = lock(&self.sink).take();
        self.taken.notify_all();
        if let Some(p) = self.pump.get() {
            p.abort();
        }
        drop(sink);
    }

    /// Waits up to [`CLOSE_GRACE`] for a cancel, so that a host which ends
    /// the subscription in answer to the terminal event gets no `on_close`.
    /// A garbage-collected host (the published Ruby gems) frees its
    /// callbacks right after that cancel; an `on_close` the library had
    /// already entered (waiting there for the host's VM lock) would then
    /// run a freed callback. Only the event thread waits here.
    fn settle(&self) {
        let sink = lock(&self.sink);
        let _ = self
            .taken
            .wait_timeout_while(sink, CLOSE_GRACE, |s| s.is_some());
    }

    /// Calls `f` with the sink unless it has been released; false when it
    /// had been (the event thread then stops).
    fn deliver(&self, f: impl FnOnce(&EventSink)) -> bool {
        let Some(sink) = lock(&self.sink).clone() else {
            return false;
        };
        f(&sink);
        true
    }
}

impl Drop for BlazenControlPlaneSubscription {
    fn drop(&mut self) {
        self.state.cancel();
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

/// How long `on_close` waits after the terminal event for the host to
/// cancel the subscription instead (see [`State::settle`]).
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a subscription to a run that has already ended waits for the
/// control plane's replay of its events before it delivers the end from
/// the run's snapshot instead.
const REPLAY_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

fn is_terminal(event_type: &str) -> bool {
    EventType::is_terminal_text(event_type)
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
            let _ = opened.send(Err(slot.conn().named(e).await));
            return;
        }
    };
    // A run that had ended when the stream opened: a control plane that
    // replays a run's events (this library's embedded one) has sent them
    // all, its end included; for one that does not, the snapshot's
    // terminal event stands in once REPLAY_WAIT has passed.
    let mut finished = None;
    if let Some(id) = run {
        match client.describe_workflow(id).await {
            Ok(snap) => finished = ended_event(&snap),
            Err(e) => {
                let _ = opened.send(Err(slot.conn().named(e.into()).await));
                return;
            }
        }
    }
    let _ = opened.send(Ok(()));
    let give_up = tokio::time::Instant::now() + REPLAY_WAIT;
    // Whatever the stream has ready at once, up to BATCH, crosses as one.
    let mut chunks = stream.ready_chunks(BATCH);
    loop {
        let next = match finished.take() {
            Some(end) => match tokio::time::timeout_at(give_up, chunks.next()).await {
                Ok(next) => {
                    finished = Some(end);
                    next
                }
                Err(_) => {
                    let _ = tx.send(Msg::Events(vec![end]));
                    let _ = tx.send(Msg::Close);
                    return;
                }
            },
            None => chunks.next().await,
        };
        let Some(items) = next else {
            break;
        };
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

/// The event thread: delivers until the stream ends or the subscription
/// is cancelled, then releases the sink if nobody has yet.
fn dispatch(state: Arc<State>, rx: mpsc::Receiver<Msg>) {
    // Waits as the worker's lanes do (see [`crate::spin`]).
    let mut spin = crate::spin::Spin::default();
    while let Some(msg) = spin.recv(&rx) {
        let (delivered, last) = match msg {
            Msg::Events(events) => {
                let all = events.iter().all(|ev| {
                    state.deliver(|sink| {
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
            Msg::Close => {
                state.settle();
                (state.deliver(EventSink::on_close), true)
            }
            Msg::Error(m) => (state.deliver(|sink| sink.on_error(&m)), true),
        };
        if !delivered || last {
            break;
        }
    }
    let sink = lock(&state.sink).take();
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
        sink: Mutex::new(Some(Arc::new(sink))),
        taken: Condvar::new(),
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
        .spawn(move || dispatch(st, rx))
        .map_err(|e| BlazenError::internal(format!("cannot start the event thread: {e}")))?;
    Ok(BlazenControlPlaneSubscription { state })
}

/// Streams the events of run `run_id` (borrowed UUID text) into `sink`,
/// then calls `on_close` 500 ms after the run's terminal `status.*` event
/// (not at all if the subscription is cancelled or freed by then). From
/// this library's embedded control plane the stream starts with what the
/// run has emitted so far (its last 256 events, always including an
/// `input.request` still awaiting its answer; kept 60 s after the run
/// ends), so subscribing right after submitting misses nothing; another
/// control plane streams from now on, and for a run that has already
/// ended the library delivers one terminal event from its snapshot
/// (after waiting at most 250 ms for a replay). The library owns `sink.user_data` from this
/// call on, on every path, and calls `drop_user_data` once: when the
/// stream ends (after `on_close`/`on_error`), or in the
/// `blazen_controlplane_subscription_cancel`/`_free` that ends it (right
/// after a callback being delivered at that moment, on the event thread),
/// never later; a `_free` after the end calls nothing. Blocks until
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

/// Stops delivery and releases the sink without waiting for anything:
/// once this returns no new callback of the subscription starts (not even
/// `on_close`/`on_error`), and `drop_user_data` has been called on this
/// thread, unless a callback is being delivered on the library's event
/// thread at that moment: that one may still complete, and
/// `drop_user_data` follows right after it, on that thread. Safe to call
/// from inside a callback and while holding a lock callbacks need (but
/// `drop_user_data` itself may run here). `sub` (borrowed) stays
/// caller-owned; free it afterwards. Idempotent.
#[export]
fn blazen_controlplane_subscription_cancel(sub: &mut BlazenControlPlaneSubscription) {
    sub.state.cancel()
}
