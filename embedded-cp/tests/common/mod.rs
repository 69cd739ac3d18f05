//! What every integration test needs: a control plane on a loopback port,
//! the crate's own client, and workers of the crate's own worker type
//! connected through a loopback [`relay`] (closing it is how a test makes
//! a worker vanish, as a killed process would).
#![allow(dead_code)]

pub mod relay;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blazen_controlplane::client::Client;
use blazen_controlplane::protocol::Assignment;
use blazen_controlplane::worker::{
    AssignmentContext, AssignmentFailure, AssignmentHandler, RetryPolicy,
};
use blazen_controlplane::worker::{Worker, WorkerConfig};
use blazen_core::distributed::{
    AdmissionMode, OrchestratorClient, RunEvent, RunStateSnapshot, RunStatus,
    SubmitWorkflowRequest, WorkerCapability,
};
use blazen_embedded_cp::{Config, Server};
use futures_util::StreamExt;
use relay::Relay;
use serde_json::Value;
use uuid::Uuid;

/// A control plane with `config` on 127.0.0.1, port picked by the system.
pub async fn server(config: Config) -> Server {
    Server::start("127.0.0.1:0", config)
        .await
        .expect("server starts")
}

/// The default configuration, with the default re-queue limit.
pub fn config() -> Config {
    Config {
        max_requeues: blazen_embedded_cp::DEFAULT_MAX_REQUEUES,
        ..Config::default()
    }
}

pub async fn client(server: &Server) -> Client {
    Client::connect(server.endpoint(), None, None)
        .await
        .expect("client connects")
}

/// Submits a run of `workflow` with `input`; its id.
pub async fn submit(c: &Client, workflow: &str, input: Value, wait_for_worker: bool) -> Uuid {
    submit_with(c, workflow, input, wait_for_worker, None).await
}

pub async fn submit_with(
    c: &Client,
    workflow: &str,
    input: Value,
    wait_for_worker: bool,
    deadline_ms: Option<u64>,
) -> Uuid {
    c.submit_workflow(SubmitWorkflowRequest {
        deadline_ms,
        wait_for_worker,
        ..request(workflow, input)
    })
    .await
    .expect("submitted")
    .run_id
}

/// A submission of `workflow` with `input` that waits for a worker.
pub fn request(workflow: &str, input: Value) -> SubmitWorkflowRequest {
    SubmitWorkflowRequest {
        workflow_name: workflow.into(),
        workflow_version: None,
        input,
        required_tags: vec![],
        idempotency_key: None,
        deadline_ms: None,
        wait_for_worker: true,
        resource_hint: None,
    }
}

/// Waits (up to `secs`) until `f` returns `Some`.
pub async fn until<T, F: Future<Output = Option<T>>>(
    secs: u64,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The run's snapshot once it has ended (within 30 s).
pub async fn ended(c: &Client, run_id: Uuid) -> RunStateSnapshot {
    until(30, || async {
        let s = c.describe_workflow(run_id).await.ok()?;
        matches!(
            s.status,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
        .then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("run {run_id} did not end"))
}

/// The events of `run_id` from a subscription opened now, until its end.
pub async fn events_of(c: &Client, run_id: Uuid) -> Vec<RunEvent> {
    let mut stream = c.subscribe_run_events(run_id).await.expect("subscribed");
    let mut seen = Vec::new();
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await
    {
        let end = ev.event_type.starts_with("status.")
            && matches!(
                ev.event_type.as_str(),
                "status.completed" | "status.failed" | "status.cancelled"
            );
        seen.push(ev);
        if end {
            break;
        }
    }
    seen
}

/// The types of [`events_of`].
pub async fn event_types(c: &Client, run_id: Uuid) -> Vec<String> {
    events_of(c, run_id)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// A worker of the crate's own type, connected through a relay.
pub struct TestWorker {
    relay: Relay,
    pub run: tokio::task::JoinHandle<Result<(), String>>,
}

impl TestWorker {
    /// Cuts the worker's connection, as if its process had died.
    pub fn vanish(self) {
        self.relay.close();
        self.run.abort();
    }
}

/// Starts worker `node` for `workflow` (version 0) taking `max_in_flight`
/// runs at once, and waits until the control plane lists it.
pub async fn worker<H: AssignmentHandler>(
    server: &Server,
    node: &str,
    workflow: &str,
    max_in_flight: u32,
    handler: H,
) -> TestWorker {
    let relayed = Relay::start(&server.endpoint()).await.expect("relay");
    let config = WorkerConfig::new(relayed.endpoint, node)
        .with_capability(WorkerCapability {
            kind: format!("workflow:{workflow}"),
            version: 0,
        })
        .with_admission(AdmissionMode::Fixed { max_in_flight })
        .with_retry(RetryPolicy {
            max_attempts: Some(1),
            ..RetryPolicy::default()
        });
    let w = Worker::connect(config).expect("worker");
    let run = tokio::spawn(async move { w.run(handler).await.map_err(|e| e.to_string()) });
    let c = client(server).await;
    until(10, || async {
        let workers = c.list_workers().await.ok()?;
        workers.iter().any(|w| w.node_id == node).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("worker {node} is not listed"));
    TestWorker {
        relay: relayed.relay,
        run,
    }
}

/// Answers with the assignment's input (after `delay`), counting its calls
/// and the most it ran at once.
#[derive(Clone, Default)]
pub struct Echo {
    pub delay: Duration,
    pub calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
    /// The `attempt` of each assignment, in order.
    pub attempts: Arc<std::sync::Mutex<Vec<u32>>>,
}

impl Echo {
    pub fn slow(delay: Duration) -> Self {
        Echo {
            delay,
            ..Echo::default()
        }
    }
}

#[async_trait::async_trait]
impl AssignmentHandler for Echo {
    async fn handle(
        &self,
        a: Assignment,
        _ctx: AssignmentContext,
    ) -> Result<Value, AssignmentFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.attempts.lock().unwrap().push(a.attempt);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(serde_json::from_slice(&a.input_json).unwrap_or(Value::Null))
    }
}

/// Never answers (until the test ends), counting its calls and attempts.
#[derive(Clone, Default)]
pub struct Hold {
    pub calls: Arc<AtomicUsize>,
    pub attempts: Arc<std::sync::Mutex<Vec<u32>>>,
}

#[async_trait::async_trait]
impl AssignmentHandler for Hold {
    async fn handle(
        &self,
        a: Assignment,
        ctx: AssignmentContext,
    ) -> Result<Value, AssignmentFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.attempts.lock().unwrap().push(a.attempt);
        ctx.cancellation_token().cancelled().await;
        Err(AssignmentFailure::new("cancelled"))
    }
}

impl Hold {
    /// Waits (up to 10 s) until it has been called `n` times.
    pub async fn called(&self, n: usize) {
        until(10, || async {
            (self.calls.load(Ordering::SeqCst) == n).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("the held handler was not called {n} times"));
    }
}

/// Emits `progress`, asks for input, and answers with the reply.
#[derive(Clone, Default)]
pub struct Ask;

#[async_trait::async_trait]
impl AssignmentHandler for Ask {
    async fn handle(
        &self,
        _a: Assignment,
        ctx: AssignmentContext,
    ) -> Result<Value, AssignmentFailure> {
        ctx.emit_event("progress", serde_json::json!({"step": 1}))
            .await
            .map_err(|e| AssignmentFailure::new(e.to_string()))?;
        ctx.request_input("Approve?", Value::Null, Some(20_000))
            .await
            .map_err(|e| AssignmentFailure::new(e.to_string()))
    }
}
