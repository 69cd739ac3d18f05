//! One assignment, from its arrival to its result frame, and the context
//! its handler gets (events and input requests on the run).

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use blazen_controlplane::protocol::{
    Assignment, AssignmentEvent, AssignmentResult, AssignmentStatus, WorkerToServer,
    ENVELOPE_VERSION,
};
use blazen_controlplane::ControlPlaneError;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::wire::Outbox;
use super::State;
use crate::rt::callbacks::AssignmentRun;
use crate::rt::lock;
use crate::worker::handler::CHandler;

/// Runs `a` on `handler` until it answers, its run is cancelled or its
/// deadline passes, and sends the outcome to the server.
pub(super) async fn assignment(
    a: Assignment,
    handler: CHandler,
    outbox: Outbox,
    state: Arc<State>,
) {
    let run_id = a.run_id;
    let cancel = state.start(run_id);
    let deadline = a.deadline_ms.map(Duration::from_millis);
    let ctx = RunContext {
        outbox: outbox.clone(),
        run_id,
        cancel: cancel.clone(),
        state: state.clone(),
    };
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => pending().await,
        }
    };
    // A cancellation that lands as the handler returns wins: the run was
    // cancelled, whatever its handler said.
    let (status, output_json, error) = tokio::select! {
        biased;
        () = cancel.cancelled() => (AssignmentStatus::Cancelled, Vec::new(), None),
        () = expired => (AssignmentStatus::Failed, Vec::new(), Some("deadline exceeded".into())),
        answer = handler.handle(a, cancel.clone(), ctx) => match answer {
            // A `Value` always encodes.
            Ok(v) => (AssignmentStatus::Completed, serde_json::to_vec(&v).unwrap_or_default(), None),
            Err(e) => (AssignmentStatus::Failed, Vec::new(), Some(e)),
        },
    };
    let result = WorkerToServer::Result(AssignmentResult {
        envelope_version: ENVELOPE_VERSION,
        run_id,
        output_json,
        status,
        error,
    });
    // A session that ended meanwhile has had the run re-queued.
    let _ = outbox.send(result).await;
    state.finish(run_id);
}

/// What a handler can do on its run while its `handle` call lasts.
pub(super) struct RunContext {
    outbox: Outbox,
    run_id: Uuid,
    cancel: CancellationToken,
    state: Arc<State>,
}

impl RunContext {
    async fn emit(&self, event_type: &str, data: Value) -> Result<(), ControlPlaneError> {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let frame = WorkerToServer::Event(AssignmentEvent {
            envelope_version: ENVELOPE_VERSION,
            run_id: self.run_id,
            event_type: event_type.to_string(),
            data_json: serde_json::to_vec(&data)?,
            timestamp_ms,
        });
        self.outbox.send(frame).await
    }

    async fn ask(
        &self,
        prompt: &str,
        metadata: Value,
        timeout_ms: Option<u64>,
    ) -> Result<Value, ControlPlaneError> {
        let request_id = Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.state.inputs).insert(request_id.clone(), tx);
        let _forget = Forget {
            state: &self.state,
            request_id: &request_id,
        };
        let request = serde_json::json!({
            "request_id": request_id,
            "prompt": prompt,
            "metadata": metadata,
        });
        self.emit("input.request", request).await?;
        let answer = async {
            tokio::select! {
                () = self.cancel.cancelled() => {
                    Err(ControlPlaneError::Transport("cancelled awaiting input".into()))
                }
                v = rx => v.map_err(|_| ControlPlaneError::Transport("input channel dropped".into())),
            }
        };
        match timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), answer)
                .await
                .unwrap_or_else(|_| {
                    Err(ControlPlaneError::Transport(
                        "timed out awaiting input".into(),
                    ))
                }),
            None => answer.await,
        }
    }
}

impl AssignmentRun for RunContext {
    fn run_id(&self) -> Uuid {
        self.run_id
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn emit_event<'a>(
        &'a self,
        event_type: &'a str,
        data: Value,
    ) -> BoxFuture<'a, Result<(), ControlPlaneError>> {
        Box::pin(self.emit(event_type, data))
    }

    fn request_input<'a>(
        &'a self,
        prompt: &'a str,
        metadata: Value,
        timeout_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<Value, ControlPlaneError>> {
        Box::pin(self.ask(prompt, metadata, timeout_ms))
    }
}

/// Drops an input request's entry however its wait ends.
struct Forget<'a> {
    state: &'a State,
    request_id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.state.inputs).remove(self.request_id);
    }
}
