//! Each run's events so far, so that a subscription opened after its run
//! started still sees all of it (the crate's subscription starts "from now
//! on", which loses whatever a fast run emitted before the subscriber got
//! there: `status.running`, a `progress`, an `input.request`).
//!
//! One task reads the event bus. For each event it takes one lock, appends
//! the event to its run's journal and hands it to that run's subscribers.
//! A new subscriber copies the journal and joins the subscribers under the
//! same lock, so it gets every event of the run once, in order.
//!
//! Bounds: a journal holds the run's last [`JOURNAL_EVENTS`] events (an
//! `input.request` still awaiting its answer is never the one dropped) and
//! is forgotten [`JOURNAL_KEEP`] after the run ends, or sooner once
//! [`JOURNAL_ENDED_MOST`] runs that ended after it are kept.
//!
//! The journal also knows which input requests of a run await an answer,
//! so an answer to a request the run never raised is refused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blazen_controlplane::pb::blazen_control_plane_server::BlazenControlPlane;
use blazen_controlplane::pb::{PostcardRequest, PostcardResponse};
use blazen_controlplane::protocol::{
    validate_envelope_version, InputResponse, RespondToInputRequest, RunEventWire, ServerToWorker,
    SubscribeRunRequest, ENVELOPE_VERSION,
};
use blazen_controlplane::server::service::PostcardResponseStream;
use blazen_core::distributed::RunEvent;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::lock;

use super::{decode, Service};

/// The most events a run's journal keeps (the oldest go first).
pub(crate) const JOURNAL_EVENTS: usize = 256;

/// How long a finished run's journal is kept.
pub(crate) const JOURNAL_KEEP: Duration = Duration::from_secs(60);

/// The most finished runs whose journals are kept (the oldest go first):
/// without it, a control plane ending thousands of runs a second held a
/// minute of them, hundreds of megabytes. A subscription to a finished
/// run whose journal is gone gets its terminal event from its snapshot.
pub(crate) const JOURNAL_ENDED_MOST: usize = 10_000;

/// Events a subscriber may have waiting before it is dropped (its stream
/// then ends, which its client reports, instead of losing events quietly).
const SUBSCRIBER_BUFFER: usize = 4096;

#[derive(Default)]
pub(super) struct Journal {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<Uuid, RunLog>,
    /// Finished runs, oldest first, with when they finished.
    ended: VecDeque<(Instant, Uuid)>,
}

#[derive(Default)]
struct RunLog {
    events: VecDeque<Arc<RunEvent>>,
    /// Request ids of `input.request` events not yet answered.
    awaiting: HashSet<String>,
    /// Set when the bus dropped events while this run was live: its
    /// journal may lack some, so answers to input requests go unchecked.
    gaps: bool,
    ended: bool,
    subscribers: Vec<mpsc::Sender<Arc<RunEvent>>>,
}

/// What the run table knows of the run a subscription names.
pub(super) enum Known {
    /// No such run (a journal is only started for a run that exists).
    No,
    Live,
    /// It has ended, with this terminal event.
    Ended(Arc<RunEvent>),
}

/// A subscriber's receiver of a run's events from now on.
pub(super) type Live = mpsc::Receiver<Arc<RunEvent>>;

/// What the journal knows of an input request.
pub(super) enum Awaited {
    /// The run raised it and it has no answer yet.
    Yes,
    /// The run has no such request awaiting an answer; these are the ones
    /// that are.
    No(Vec<String>),
    /// The journal cannot tell (no journal, or one with gaps).
    Unknown,
}

fn is_terminal(event_type: &str) -> bool {
    crate::EventType::is_terminal_text(event_type)
}

fn request_id(event: &RunEvent) -> Option<String> {
    (event.event_type == crate::EventType::InputRequest.text())
        .then(|| event.data.get("request_id")?.as_str().map(str::to_string))
        .flatten()
}

impl RunLog {
    fn push(&mut self, event: Arc<RunEvent>) {
        if let Some(id) = request_id(&event) {
            self.awaiting.insert(id);
        }
        if is_terminal(&event.event_type) {
            self.ended = true;
            self.awaiting.clear();
        }
        self.subscribers
            .retain(|s| s.try_send(event.clone()).is_ok());
        self.events.push_back(event);
        if self.events.len() > JOURNAL_EVENTS {
            let awaited =
                |e: &RunEvent| request_id(e).is_some_and(|id| self.awaiting.contains(&id));
            if let Some(i) = self.events.iter().position(|e| !awaited(e)) {
                self.events.remove(i);
            }
        }
    }
}

impl Journal {
    /// Appends `event` to its run's journal and hands it to the run's
    /// subscribers; forgets the journals of runs that ended long enough ago.
    pub(super) fn record(&self, event: Arc<RunEvent>) {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        let run_id = event.run_id;
        let log = inner.runs.entry(run_id).or_default();
        let was_ended = log.ended;
        log.push(event);
        if log.ended && !was_ended {
            inner.ended.push_back((now, run_id));
        }
        while let Some(&(at, id)) = inner.ended.front() {
            if now.duration_since(at) < JOURNAL_KEEP && inner.ended.len() <= JOURNAL_ENDED_MOST {
                break;
            }
            inner.ended.pop_front();
            if inner.runs.get(&id).is_some_and(|l| l.ended) {
                inner.runs.remove(&id);
            }
        }
    }

    /// Marks every live run's journal as possibly incomplete.
    pub(super) fn lost_some(&self) {
        for log in lock(&self.inner).runs.values_mut() {
            log.gaps |= !log.ended;
        }
    }

    /// Subscribes to `run_id`: the events it has emitted so far, and a
    /// receiver of the ones that follow (`None` for a run that does not
    /// exist). An ended run whose journal is gone gets one of its terminal
    /// event alone, forgotten as any other.
    pub(super) fn join(&self, run_id: Uuid, known: Known) -> Option<(Vec<Arc<RunEvent>>, Live)> {
        let mut inner = lock(&self.inner);
        if !inner.runs.contains_key(&run_id) {
            let mut log = RunLog::default();
            match known {
                Known::No => return None,
                Known::Live => {}
                Known::Ended(end) => {
                    log.push(end);
                    inner.ended.push_back((Instant::now(), run_id));
                }
            }
            inner.runs.insert(run_id, log);
        }
        let log = inner.runs.get_mut(&run_id)?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        log.subscribers.push(tx);
        Some((log.events.iter().cloned().collect(), rx))
    }

    /// Whether `request_id` of `run_id` awaits an answer.
    pub(super) fn awaited(&self, run_id: Uuid, request_id: &str) -> Awaited {
        let inner = lock(&self.inner);
        match inner.runs.get(&run_id) {
            Some(log) if !log.gaps && !log.ended => {
                if log.awaiting.contains(request_id) {
                    Awaited::Yes
                } else {
                    let mut ids: Vec<String> = log.awaiting.iter().cloned().collect();
                    ids.sort();
                    Awaited::No(ids)
                }
            }
            _ => Awaited::Unknown,
        }
    }

    /// Records that `request_id` of `run_id` has been answered.
    pub(super) fn answered(&self, run_id: Uuid, request_id: &str) {
        if let Some(log) = lock(&self.inner).runs.get_mut(&run_id) {
            log.awaiting.remove(request_id);
        }
    }
}

impl Service {
    /// `SubscribeRunEvents`: the run's journal, then its live events. A
    /// run this process does not know gets the crate's stream.
    pub(super) async fn subscribe_run(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponseStream>, Status> {
        let req: SubscribeRunRequest =
            decode(&request.get_ref().postcard_payload, "SubscribeRunRequest")?;
        validate_envelope_version(req.envelope_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let known = match self.cp.run_state(req.run_id) {
            None => Known::No,
            Some((snap, _)) => crate::vocabulary::ended_event(&snap)
                .map_or(Known::Live, |end| Known::Ended(Arc::new(end))),
        };
        let Some((backlog, live)) = self.cp.journal.join(req.run_id, known) else {
            return self.inner.subscribe_run_events(request).await;
        };
        let events = futures_util::stream::iter(backlog)
            .chain(tokio_stream::wrappers::ReceiverStream::new(live))
            .filter_map(|event| async move {
                let wire = RunEventWire::from_core(&event).ok()?;
                let postcard_payload = crate::common::postcard(&wire).ok()?;
                Some(Ok(PostcardResponse { postcard_payload }))
            });
        Ok(Response::new(Box::pin(events)))
    }

    /// `RespondToInput`: refused (NOT_FOUND, naming the requests that do
    /// await an answer) when the run has no such request awaiting one;
    /// otherwise the crate's, which sends it to the run's worker.
    pub(super) async fn respond(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponse>, Status> {
        let req: RespondToInputRequest =
            decode(&request.get_ref().postcard_payload, "RespondToInputRequest")?;
        validate_envelope_version(req.envelope_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let Some(status) = self.cp.run_status(req.run_id) else {
            return Err(Status::not_found(format!("unknown run {}", req.run_id)));
        };
        if super::is_terminal(status) {
            return Err(Status::failed_precondition(format!(
                "run {} has ended ({status:?}); no input request of it awaits an answer",
                req.run_id
            )));
        }
        if let Awaited::No(ids) = self.cp.journal.awaited(req.run_id, &req.request_id) {
            let awaiting = if ids.is_empty() {
                "none is".to_string()
            } else {
                format!(
                    "{} {}",
                    ids.join(", "),
                    if ids.len() == 1 { "is" } else { "are" }
                )
            };
            return Err(Status::not_found(format!(
                "run {} has no input request {:?} awaiting an answer ({awaiting})",
                req.run_id, req.request_id
            )));
        }
        let session = self
            .cp
            .run_session(req.run_id)
            .ok_or_else(|| Status::failed_precondition("run not assigned to a live worker"))?;
        let request_id = req.request_id.clone();
        session
            .out
            .send(ServerToWorker::InputResponse(InputResponse {
                envelope_version: ENVELOPE_VERSION,
                run_id: req.run_id,
                request_id: req.request_id,
                response_json: req.response_json,
            }))
            .map_err(|_| Status::failed_precondition("run not assigned to a live worker"))?;
        self.cp.journal.answered(req.run_id, &request_id);
        let postcard_payload = crate::common::postcard(&())
            .map_err(|e| Status::internal(format!("encode response: {e}")))?;
        Ok(Response::new(PostcardResponse { postcard_payload }))
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
