//! A worker's session with the control plane, run by the library itself.
//!
//! blazen-controlplane 0.7.0's `Worker` cannot end its session (a spawned
//! heartbeat and a process-global key resolver keep its sender), so a
//! worker that stopped would go on being listed and assigned runs. This
//! speaks the same protocol (the crate's public `protocol` frames, postcard
//! inside the `WorkerSession` gRPC stream) and ends the session whenever
//! the worker stops, its `run` is dropped or the connection fails.
//!
//! - [`wire`]: the stream, the handshake, the outbox and the heartbeat;
//! - [`run`]: one assignment, and the context its handler gets.

mod run;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blazen_controlplane::protocol::{
    OfferDecision, OfferOutcome, ServerToWorker, WorkerToServer, ENVELOPE_VERSION,
};
use blazen_controlplane::worker::{RetryPolicy, WorkerConfig};
use blazen_controlplane::ControlPlaneError;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::handler::CHandler;
use crate::rt::lock;
use wire::{Inbound, Outbox};

/// A worker's sessions: the first, and each reconnect under its retry
/// policy, until it is stopped or drained.
pub(super) struct Session {
    config: WorkerConfig,
    state: Arc<State>,
}

/// What the sessions of one worker share.
pub(super) struct State {
    /// Assignments received and not yet answered.
    in_flight: AtomicU32,
    /// Their cancellation tokens.
    running: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Input requests waiting for their answer, by request id.
    inputs: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// The worker's stop signal.
    stop: CancellationToken,
    /// Woken when an assignment is answered (a drained session ends once
    /// none is left).
    answered: Notify,
}

impl State {
    fn start(&self, run_id: Uuid) -> CancellationToken {
        let token = CancellationToken::new();
        lock(&self.running).insert(run_id, token.clone());
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        token
    }

    fn finish(&self, run_id: Uuid) {
        lock(&self.running).remove(&run_id);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.answered.notify_one();
    }

    fn cancel_all(&self) {
        for token in lock(&self.running).values() {
            token.cancel();
        }
    }
}

/// How long to wait before the next session after `failures` sessions in
/// a row failed: the retry policy's first wait, times its multiplier for
/// each failure after the first, at most its longest wait.
fn backoff(retry: &RetryPolicy, failures: u32) -> Duration {
    let mut secs = retry.initial_backoff.as_secs_f64();
    for _ in 1..failures.min(64) {
        secs *= f64::from(retry.multiplier);
    }
    Duration::from_secs_f64(secs.min(retry.max_backoff.as_secs_f64()).max(0.0))
}

/// How one session ended.
enum Ended {
    /// The connection was lost: reconnect (by the retry policy).
    Lost,
    /// Drained or stopped: the worker is done.
    Done,
}

/// Ends a session however its future ends: the outbound stream closes (so
/// the server sees the worker leave), the heartbeat stops, and the
/// session's assignments are cancelled (the server re-queues them).
struct SessionEnd<'a> {
    done: CancellationToken,
    state: &'a State,
}

impl Drop for SessionEnd<'_> {
    fn drop(&mut self) {
        self.done.cancel();
        self.state.cancel_all();
    }
}

impl Session {
    /// A worker's sessions by `config`, stopped by `stop`.
    pub(super) fn new(config: WorkerConfig, stop: CancellationToken) -> Self {
        let state = State {
            in_flight: AtomicU32::new(0),
            running: Mutex::default(),
            inputs: Mutex::default(),
            stop,
            answered: Notify::new(),
        };
        Self {
            config,
            state: Arc::new(state),
        }
    }

    /// Serves assignments on `handler` until the worker is stopped or
    /// drained (then `Ok`), or its retry policy gives up: `max_attempts`
    /// sessions in a row failed or were lost (the crate's worker counted
    /// them over its whole life, so a long-lived worker gave up after that
    /// many disconnections, however far apart).
    pub(super) async fn run(self, handler: CHandler) -> Result<(), ControlPlaneError> {
        let retry = &self.config.retry;
        let mut failures: u32 = 0;
        loop {
            if self.state.stop.is_cancelled() {
                return Ok(());
            }
            let failure = match self.session(&handler).await {
                Ok(Ended::Done) => return Ok(()),
                // A session that was established starts a new count: the
                // policy bounds the failures in a row, not over a lifetime.
                Ok(Ended::Lost) => {
                    failures = 0;
                    None
                }
                Err(e) => Some(e),
            };
            failures += 1;
            if retry.max_attempts.is_some_and(|max| failures >= max) {
                return Err(failure.unwrap_or_else(|| {
                    ControlPlaneError::Transport(format!(
                        "the worker's session was lost, and its retry policy allows no further \
                         attempt (max_attempts {failures})"
                    ))
                }));
            }
            let wait = backoff(retry, failures);
            tracing::warn!(failures, wait_ms = wait.as_millis(), error = ?failure, "worker session lost; reconnecting");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.state.stop.cancelled() => return Ok(()),
            }
        }
    }

    /// One session, from the handshake to its end.
    async fn session(&self, handler: &CHandler) -> Result<Ended, ControlPlaneError> {
        let done = CancellationToken::new();
        let _end = SessionEnd {
            done: done.clone(),
            state: &self.state,
        };
        let (mut inbound, outbox) = tokio::select! {
            opened = wire::open(&self.config, &done) => opened?,
            () = self.state.stop.cancelled() => return Ok(Ended::Done),
        };
        let state = self.state.clone();
        let in_flight = move || state.in_flight.load(Ordering::Relaxed);
        let beat = wire::heartbeat(outbox.clone(), self.config.clone(), in_flight, done.clone());
        tokio::spawn(beat);
        self.pump(&mut inbound, handler, &outbox).await
    }

    /// Serves the server's frames until the session ends.
    async fn pump(
        &self,
        inbound: &mut Inbound,
        handler: &CHandler,
        outbox: &Outbox,
    ) -> Result<Ended, ControlPlaneError> {
        let mut drained = false;
        loop {
            let idle = drained && self.state.in_flight.load(Ordering::Relaxed) == 0;
            if idle {
                return Ok(Ended::Done);
            }
            let frame = tokio::select! {
                () = self.state.stop.cancelled() => return Ok(Ended::Done),
                () = self.state.answered.notified(), if drained => continue,
                frame = inbound.next() => frame,
            };
            let frame = match frame {
                Some(Ok(frame)) => frame,
                Some(Err(status)) => {
                    tracing::warn!(%status, "worker session stream failed");
                    return Ok(Ended::Lost);
                }
                None => return Ok(Ended::Lost),
            };
            match postcard::from_bytes(&frame.postcard_payload) {
                Ok(frame) => self.dispatch(frame, handler, outbox, &mut drained).await,
                Err(e) => tracing::warn!(error = %e, "discarding a frame the worker cannot read"),
            }
        }
    }

    /// Acts on one frame of the server. `handle` calls run in tasks of
    /// their own; the session waits for the short `on_cancel` and
    /// `on_drain` notifications (on the blocking pool), so a drained
    /// worker ends only after its `on_drain`.
    async fn dispatch(
        &self,
        frame: ServerToWorker,
        handler: &CHandler,
        outbox: &Outbox,
        drained: &mut bool,
    ) {
        let assign = |a| {
            let work = run::assignment(a, handler.clone(), outbox.clone(), self.state.clone());
            tokio::spawn(work);
        };
        match frame {
            ServerToWorker::Assignment(a) => assign(a),
            ServerToWorker::Offer(offer) => {
                // The C handler table has no say in offers: every one is
                // claimed, and admission holds the runs back.
                let decision = WorkerToServer::OfferDecision(OfferDecision {
                    envelope_version: ENVELOPE_VERSION,
                    run_id: offer.assignment.run_id,
                    decision: OfferOutcome::Claim,
                });
                if outbox.send(decision).await.is_ok() {
                    assign(offer.assignment);
                }
            }
            ServerToWorker::Cancel(c) => {
                if let Some(token) = lock(&self.state.running).remove(&c.run_id) {
                    token.cancel();
                }
                handler.on_cancel(c.run_id).await;
            }
            ServerToWorker::Drain(d) => {
                *drained = true;
                if d.immediate {
                    self.state.cancel_all();
                }
                handler.on_drain(d.immediate).await;
            }
            ServerToWorker::InputResponse(r) => {
                if let Some(tx) = lock(&self.state.inputs).remove(&r.request_id) {
                    let _ =
                        tx.send(serde_json::from_slice(&r.response_json).unwrap_or(Value::Null));
                }
            }
            // No provider or job keys are configured through this library,
            // and a second Welcome changes nothing.
            ServerToWorker::KeyResponse(_)
            | ServerToWorker::JobKey(_)
            | ServerToWorker::Welcome(_)
            | ServerToWorker::Reject { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_by_the_policy() {
        let retry = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            multiplier: 2.0,
            max_attempts: None,
        };
        let waits: Vec<u128> = (1..=6).map(|n| backoff(&retry, n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&retry, u32::MAX), Duration::from_millis(1000));
        assert_eq!(backoff(&RetryPolicy::none(), 1), Duration::ZERO);
    }
}
