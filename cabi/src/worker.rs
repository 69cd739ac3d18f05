//! Workers written in C: a callback table answers assignments.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blazen_cabi_macros::{export, handle};
use blazen_controlplane::protocol::Assignment;
use blazen_controlplane::worker::{
    AssignmentContext, AssignmentFailure, AssignmentHandler, Worker, WorkerConfig,
};
use blazen_controlplane::Client;
use blazen_core::distributed::{AdmissionMode, OrchestratorClient, WorkerCapability};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::relay::Relay;
use crate::rt::arg::{Capabilities, Json, Options, StringMap};
use crate::rt::callbacks::{self, BlazenAssignmentHandlerVTable, BlazenContextHandlerVTable};
use crate::rt::{BlazenError, ErrorKind, Result};

/// A worker and its handler. Caller-owned; free with
/// `blazen_controlplane_worker_free`, which shuts it down first.
#[handle(free = "blazen_controlplane_worker_free")]
pub struct BlazenControlPlaneWorker {
    inner: Arc<Cell>,
    /// Only the caller's handle shuts the worker down when dropped; the
    /// library's own copies (held by a running `run`) do not.
    owned: bool,
}

impl Clone for BlazenControlPlaneWorker {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owned: false,
        }
    }
}

impl Drop for BlazenControlPlaneWorker {
    fn drop(&mut self) {
        // Signals only: a `run` in progress ends on its own (it holds its
        // own reference), and a handler still running keeps the callback
        // table alive until it returns, so `drop_user_data` comes last.
        if self.owned {
            self.inner.shutdown();
        }
    }
}

struct Cell {
    /// The worker until `run` takes it.
    worker: Mutex<Option<Worker>>,
    /// The worker's connection to the control plane (see [`Relay`]).
    relay: Option<Relay>,
    /// How the worker reaches the control plane, for the auth check.
    access: Access,
    handler: CHandler,
    stop: CancellationToken,
    node_id: String,
}

impl Cell {
    /// Stops the worker without waiting for anything but the handler's
    /// `on_cancel` notifications, which it makes on this thread.
    fn shutdown(&self) {
        self.stop.cancel();
        self.end_session();
        if let Some(w) = lock(&self.worker).as_ref() {
            w.shutdown();
        }
        self.handler.cancel_all();
    }

    /// Ends the worker's session at the server: it stops being listed and
    /// assigned runs.
    fn end_session(&self) {
        if let Some(relay) = &self.relay {
            relay.close();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The run an assignment handler is working on, for the
/// `blazen_assignment_context_*` functions. Borrowed by `handle` for the
/// duration of the call; never freed by the caller.
#[derive(Clone)]
pub struct BlazenAssignmentContext {
    inner: Arc<AssignmentContext>,
    attempt: u32,
}

/// The control plane's handler trait, served by the C callback table. Each
/// callback runs on a blocking-pool thread, never on an executor thread.
#[derive(Clone)]
struct CHandler {
    vt: Arc<dyn callbacks::Handler>,
    /// The runs whose `handle` call has started and not yet returned.
    in_flight: Arc<Mutex<HashMap<Uuid, CancellationToken>>>,
    /// The worker's stop signal: once set, no new callback starts.
    stop: CancellationToken,
    /// `max_in_flight` permits for a Fixed worker: an assignment beyond
    /// them waits here (still counted as assigned by the control plane)
    /// until a `handle` call returns, whatever the server pushes.
    permits: Option<Arc<Semaphore>>,
}

/// Forgets a run's `handle` call however it ends, including when the crate
/// drops the call's future (its deadline or a cancellation).
/// A call abandoned that way has its run's token cancelled, so a `handle`
/// still running sees `blazen_assignment_context_is_cancelled`.
struct Started {
    in_flight: Arc<Mutex<HashMap<Uuid, CancellationToken>>>,
    run_id: Uuid,
    token: CancellationToken,
    returned: bool,
}

impl Drop for Started {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.run_id);
        if !self.returned {
            self.token.cancel();
        }
    }
}

impl CHandler {
    /// Cancels every assignment in progress and tells the handler.
    fn cancel_all(&self) {
        let runs: Vec<(Uuid, CancellationToken)> = lock(&self.in_flight).drain().collect();
        for (run_id, token) in runs {
            token.cancel();
            self.vt.on_cancel(&run_id.to_string());
        }
    }

    /// Runs a callback on a blocking-pool thread, unless the worker has
    /// been stopped by then (a callback that passed the check is "already
    /// being delivered" and may complete after `shutdown` returns).
    async fn off_executor<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn callbacks::Handler) -> T + Send + 'static,
    ) -> std::result::Result<T, String> {
        self.off_executor_holding((), f).await
    }

    /// As [`Self::off_executor`], keeping `held` (a permit) until the
    /// callback has returned, even if the awaiting future is dropped.
    async fn off_executor_holding<T: Send + 'static, H: Send + 'static>(
        &self,
        held: H,
        f: impl FnOnce(&dyn callbacks::Handler) -> T + Send + 'static,
    ) -> std::result::Result<T, String> {
        let vt = self.vt.clone();
        let stop = self.stop.clone();
        tokio::task::spawn_blocking(move || {
            let _held = held;
            if stop.is_cancelled() {
                return Err(ErrorKind::Cancelled.tag("the worker was shut down"));
            }
            Ok(f(&*vt))
        })
        .await
        .map_err(|e| ErrorKind::Internal.tag(&format!("the handler callback panicked: {e}")))?
    }
}

#[async_trait::async_trait]
impl AssignmentHandler for CHandler {
    async fn handle(
        &self,
        a: Assignment,
        ctx: AssignmentContext,
    ) -> std::result::Result<serde_json::Value, AssignmentFailure> {
        let run_id = a.run_id;
        // Waits for a free slot (a cancelled run stops waiting: the crate
        // drops this future).
        let permit = match &self.permits {
            Some(p) => Some(p.clone().acquire_owned().await.map_err(|_| {
                AssignmentFailure::new(ErrorKind::Cancelled.tag("the worker was shut down"))
            })?),
            None => None,
        };
        let token = ctx.cancellation_token().clone();
        lock(&self.in_flight).insert(run_id, token.clone());
        let mut started = Started {
            in_flight: self.in_flight.clone(),
            run_id,
            token,
            returned: false,
        };
        let mut ctx = BlazenAssignmentContext {
            inner: Arc::new(ctx),
            attempt: a.attempt,
        };
        let result = self
            .off_executor_holding(permit, move |vt| {
                vt.handle(
                    &mut ctx,
                    &run_id.to_string(),
                    &a.workflow_name,
                    &a.input_json,
                )
            })
            .await
            .and_then(|r| r);
        started.returned = true;
        result.map_err(AssignmentFailure::new)
    }

    async fn on_cancel(&self, run_id: Uuid) {
        if lock(&self.in_flight).remove(&run_id).is_some() {
            let _ = self
                .off_executor(move |vt| vt.on_cancel(&run_id.to_string()))
                .await;
        }
    }

    async fn on_drain(&self, immediate: bool) {
        let _ = self.off_executor(move |vt| vt.on_drain(immediate)).await;
    }
}

/// `admission_mode`/`admission_param` as the control plane's admission.
pub(crate) fn admission(mode: u32, param: u64) -> Result<AdmissionMode> {
    match mode {
        0 => Ok(AdmissionMode::Fixed {
            max_in_flight: u32::try_from(param).unwrap_or(u32::MAX).max(1),
        }),
        1 => Ok(AdmissionMode::VramBudget { max_vram_mb: param }),
        2 => Ok(AdmissionMode::Reactive),
        other => Err(BlazenError::invalid(
            "admission_mode",
            format!("is {other}; expected 0 (Fixed), 1 (VramBudget) or 2 (Reactive)"),
        )),
    }
}

/// A capability kind must be `workflow:NAME`: the control plane routes a
/// run of workflow `NAME` only to that kind, so any other kind would be
/// accepted and never match.
fn check_kind(kind: &str, param: &str) -> Result<()> {
    match kind.strip_prefix("workflow:") {
        Some(name) if !name.is_empty() => Ok(()),
        _ => Err(BlazenError::invalid(
            param,
            format!(
                "capability kind {kind:?} is not `workflow:NAME` (runs of workflow NAME \
                 are routed to capability `workflow:NAME`)"
            ),
        )),
    }
}

/// The configuration shared by every `worker_new_*`.
fn config(
    endpoint: String,
    node_id: String,
    capabilities: Capabilities,
    tags: StringMap,
    admission_mode: u32,
    admission_param: u64,
) -> Result<WorkerConfig> {
    let mut config = WorkerConfig::new(endpoint, node_id)
        .with_admission(admission(admission_mode, admission_param)?);
    for (kind, version) in capabilities.0 {
        check_kind(&kind, "capabilities_json")?;
        config = config.with_capability(WorkerCapability { kind, version });
    }
    for (k, v) in tags.0 {
        config = config.with_tag(k, v);
    }
    Ok(config)
}

/// Where a worker connects: through the library's relay when the endpoint
/// is a URI (see [`Relay`]).
struct Route {
    endpoint: String,
    host: Option<String>,
    relay: Option<Relay>,
    access: Access,
}

/// The endpoint, TLS settings and token a worker uses.
#[derive(Clone, Default)]
struct Access {
    endpoint: String,
    /// The endpoint as the host gave it (the relay's replaces it above).
    configured: String,
    tls: Option<tonic::transport::ClientTlsConfig>,
    token: Option<String>,
}

impl Access {
    /// One call with the worker's credentials before it starts: a rejected
    /// token fails `run` at once (the crate would otherwise retry it under
    /// the retry policy, forever by default), and so does a node id another
    /// worker is connected with (the control plane refuses the session with
    /// ALREADY_EXISTS, which the crate would also retry). A node id still
    /// listed is checked again for up to [`DUPLICATE_GRACE`], so a worker
    /// restarted under the same id gets in once its predecessor's session
    /// has ended. An unreachable server is left to the retry policy.
    async fn rejected(&self, node_id: &str) -> Option<BlazenError> {
        let probe = Client::connect(self.endpoint.clone(), self.tls.clone(), self.token.clone());
        let client = probe.await.ok()?;
        let deadline = tokio::time::Instant::now() + DUPLICATE_GRACE;
        loop {
            let workers = match client.list_workers().await {
                Ok(w) => w,
                Err(e) => {
                    let e = BlazenError::from(e);
                    return (e.subkind.as_deref() == Some("ControlPlaneUnauthenticated"))
                        .then_some(e);
                }
            };
            if !workers.iter().any(|w| w.node_id == node_id) {
                return None;
            }
            if tokio::time::Instant::now() >= deadline {
                return Some(BlazenError::peer(
                    "ControlPlaneAlreadyExists",
                    format!(
                        "node id `{node_id}` is already connected to the control plane at {}; \
                         each worker needs a node id of its own",
                        self.configured
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long `run` waits for a worker with the same node id to leave.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);

impl Route {
    async fn new(endpoint: String) -> Result<Self> {
        crate::client::check_endpoint(&endpoint)?;
        let configured = endpoint.clone();
        let (endpoint, host, relay) = match Relay::start(&endpoint).await? {
            Some(r) => (r.endpoint, Some(r.host), Some(r.relay)),
            None => (endpoint, None, None),
        };
        let access = Access {
            endpoint: endpoint.clone(),
            configured,
            ..Access::default()
        };
        Ok(Route {
            endpoint,
            host,
            relay,
            access,
        })
    }

    /// Mutual TLS from PEM files, checking the server's name against the
    /// configured host (not the relay's address).
    fn mtls(
        &mut self,
        config: WorkerConfig,
        cert: &Path,
        key: &Path,
        ca: &Path,
    ) -> Result<WorkerConfig> {
        let mut tls = blazen_controlplane::tls::load_client_tls(cert, key, ca)
            .map_err(|e| BlazenError::peer("ControlPlaneTls", e.to_string()))?;
        if let Some(host) = &self.host {
            tls = tls.domain_name(host.clone());
        }
        self.access.tls = Some(tls.clone());
        Ok(config.with_tls(tls))
    }
}

fn build(
    config: WorkerConfig,
    vt: Arc<dyn callbacks::Handler>,
    route: Route,
) -> Result<BlazenControlPlaneWorker> {
    let permits = match config.admission {
        AdmissionMode::Fixed { max_in_flight } => {
            Some(Arc::new(Semaphore::new(max_in_flight.max(1) as usize)))
        }
        _ => None,
    };
    let node_id = config.node_id.clone();
    let worker = Worker::connect(config)?;
    let stop = CancellationToken::new();
    Ok(BlazenControlPlaneWorker {
        inner: Arc::new(Cell {
            worker: Mutex::new(Some(worker)),
            relay: route.relay,
            access: route.access,
            handler: CHandler {
                vt,
                in_flight: Arc::default(),
                stop: stop.clone(),
                permits,
            },
            stop,
            node_id,
        }),
        owned: true,
    })
}

/// Creates a worker for the control plane at `endpoint` named `node_id`,
/// advertising `capabilities_json` (`[{"kind": "workflow:NAME", "version":
/// 0}]`) and `tags_json` (`{"k": "v"}`), with admission `admission_mode`
/// (0 Fixed: `admission_param` = max in flight, 0 means 1; 1 VramBudget:
/// MiB; 2 Reactive). Strings are borrowed. The library owns `vtable.user_data`
/// from this call on, on every path, and calls `drop_user_data` once when
/// done with it (at once if this call fails). Nothing connects until `run`.
#[export(blocking)]
async fn blazen_controlplane_worker_new(
    endpoint: String,
    node_id: String,
    capabilities_json: Capabilities,
    tags_json: StringMap,
    #[enum_like] admission_mode: u32,
    admission_param: u64,
    vtable: BlazenAssignmentHandlerVTable,
) -> Result<BlazenControlPlaneWorker> {
    // The other arguments are checked before the endpoint.
    let mut config = config(
        String::new(),
        node_id,
        capabilities_json,
        tags_json,
        admission_mode,
        admission_param,
    )?;
    let route = Route::new(endpoint).await?;
    config.endpoint = route.endpoint.clone();
    build(config, Arc::new(vtable), route)
}

/// As `blazen_controlplane_worker_new_blocking`, connecting over mutual
/// TLS with the PEM files at `cert_path`, `key_path` and `ca_path`
/// (borrowed; read now, so a missing file fails here).
#[export(blocking)]
#[allow(clippy::too_many_arguments)]
async fn blazen_controlplane_worker_new_with_mtls(
    endpoint: String,
    node_id: String,
    capabilities_json: Capabilities,
    tags_json: StringMap,
    #[enum_like] admission_mode: u32,
    admission_param: u64,
    cert_path: String,
    key_path: String,
    ca_path: String,
    vtable: BlazenAssignmentHandlerVTable,
) -> Result<BlazenControlPlaneWorker> {
    // The other arguments are checked before the endpoint.
    let mut config = config(
        String::new(),
        node_id,
        capabilities_json,
        tags_json,
        admission_mode,
        admission_param,
    )?;
    let mut route = Route::new(endpoint).await?;
    config.endpoint = route.endpoint.clone();
    let config = route.mtls(
        config,
        cert_path.as_ref(),
        key_path.as_ref(),
        ca_path.as_ref(),
    )?;
    build(config, Arc::new(vtable), route)
}

/// Connects and serves assignments until `blazen_controlplane_worker_shutdown`
/// (then 0), a drain, or a failure the retry policy gives up on (then -1).
/// `worker` is borrowed and must outlive the call; `run` may be called once
/// per worker (a second call is a VALIDATION error).
#[export]
async fn blazen_controlplane_worker_run(worker: &BlazenControlPlaneWorker) -> Result<()> {
    let cell = worker.inner.clone();
    let taken = lock(&cell.worker).take();
    let Some(w) = taken else {
        return Err(BlazenError::invalid("worker", "has already been run"));
    };
    // Ends the session however the run ends, including when its future
    // is cancelled or freed.
    let _session = SessionGuard(cell.clone());
    if let Some(rejected) = cell.access.rejected(&cell.node_id).await {
        return Err(rejected);
    }
    let handler = cell.handler.clone();
    let result = tokio::select! {
        r = w.run(handler) => r.map_err(BlazenError::from),
        () = cell.stop.cancelled() => Ok(()),
    };
    match result {
        // The worker reaches the control plane through the relay, which
        // hides the cause: find it at the configured endpoint.
        Err(e) if e.subkind.as_deref() == Some("ControlPlaneTransport") => {
            let access = &cell.access;
            Err(crate::client::unreachable(&access.configured, access.tls.clone()).await)
        }
        other => other,
    }
}

struct SessionGuard(Arc<Cell>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.end_session();
    }
}

/// Stops the worker (borrowed), whether or not it is running, without
/// waiting for any thread: the worker leaves the control plane at once, a
/// running `run` returns 0 promptly, and each assignment in progress gets
/// `on_cancel` on the calling thread before this returns (its `handle`
/// call, which may still be running on a library thread, is not waited
/// for; its result is discarded and the control plane re-queues the run).
/// No new callback starts after this returns. Idempotent.
#[export]
fn blazen_controlplane_worker_shutdown(worker: &BlazenControlPlaneWorker) {
    worker.inner.shutdown()
}

/// Keys of `worker_new_with_options`; unknown keys are refused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerOptions {
    capabilities: Vec<CapabilityOption>,
    tags: std::collections::BTreeMap<String, String>,
    labels: std::collections::BTreeMap<String, String>,
    admission: Option<AdmissionOption>,
    bearer_token: Option<String>,
    cert_path: Option<String>,
    key_path: Option<String>,
    ca_path: Option<String>,
    heartbeat_ms: Option<u64>,
    retry: Option<RetryOption>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CapabilityOption {
    kind: String,
    #[serde(default)]
    version: u32,
}

#[derive(Debug, serde::Deserialize)]
#[serde(tag = "mode", deny_unknown_fields)]
enum AdmissionOption {
    Fixed { max_in_flight: u32 },
    VramBudget { max_vram_mb: u64 },
    Reactive,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryOption {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

impl crate::rt::arg::CheckOptions for WorkerOptions {
    fn check(&self) -> std::result::Result<(), String> {
        crate::client::pem_triple(&self.cert_path, &self.key_path, &self.ca_path).map(drop)
    }
}

fn options_config(route: &mut Route, node_id: String, o: WorkerOptions) -> Result<WorkerConfig> {
    let admission = match o.admission {
        None => AdmissionMode::Fixed { max_in_flight: 1 },
        Some(AdmissionOption::Fixed { max_in_flight }) => AdmissionMode::Fixed {
            max_in_flight: max_in_flight.max(1),
        },
        Some(AdmissionOption::VramBudget { max_vram_mb }) => {
            AdmissionMode::VramBudget { max_vram_mb }
        }
        Some(AdmissionOption::Reactive) => AdmissionMode::Reactive,
    };
    let mut config = WorkerConfig::new(route.endpoint.clone(), node_id).with_admission(admission);
    for c in o.capabilities {
        check_kind(&c.kind, "options_json")?;
        config = config.with_capability(WorkerCapability {
            kind: c.kind,
            version: c.version,
        });
    }
    for (k, v) in o.tags {
        config = config.with_tag(k, v);
    }
    for (k, v) in o.labels {
        config = config.with_label(k, v);
    }
    if let Some(token) = o.bearer_token {
        route.access.token = Some(token.clone());
        config = config.with_bearer_token(token);
    }
    if let Some(ms) = o.heartbeat_ms {
        config = config.with_heartbeat_interval(Duration::from_millis(ms.max(1)));
    }
    if let Some(r) = o.retry {
        let defaults = blazen_controlplane::worker::RetryPolicy::default();
        config = config.with_retry(blazen_controlplane::worker::RetryPolicy {
            initial_backoff: r
                .initial_backoff_ms
                .map_or(defaults.initial_backoff, Duration::from_millis),
            max_backoff: r
                .max_backoff_ms
                .map_or(defaults.max_backoff, Duration::from_millis),
            multiplier: defaults.multiplier,
            max_attempts: r.max_attempts.map(|n| n.max(1)),
        });
    }
    if let Some([c, k, a]) = crate::client::pem_paths(&o.cert_path, &o.key_path, &o.ca_path)? {
        config = route.mtls(config, &c, &k, &a)?;
    }
    Ok(config)
}

/// Creates a worker from `options_json` (borrowed; NULL or an object with
/// any of `capabilities` `[{"kind", "version"}]`, `tags` and `labels`
/// `{"k": "v"}`, `admission` `{"mode": "Fixed", "max_in_flight": n}` |
/// `{"mode": "VramBudget", "max_vram_mb": n}` | `{"mode": "Reactive"}`,
/// `bearer_token`, `cert_path` + `key_path` + `ca_path`, `heartbeat_ms`,
/// `retry` `{"max_attempts", "initial_backoff_ms", "max_backoff_ms"}`
/// (without `retry` the worker reconnects forever); other keys are a
/// VALIDATION error). `vtable.handle` also receives the run's
/// `BlazenAssignmentContext`. The library owns `vtable.user_data` from this
/// call on, on every path, and calls `drop_user_data` once.
#[export(blocking)]
async fn blazen_controlplane_worker_new_with_options(
    endpoint: String,
    node_id: String,
    options_json: Options<WorkerOptions>,
    vtable: BlazenContextHandlerVTable,
) -> Result<BlazenControlPlaneWorker> {
    let mut route = Route::new(endpoint).await?;
    let config = options_config(&mut route, node_id, options_json.0)?;
    build(config, Arc::new(vtable), route)
}

/// The id of the run `ctx` (borrowed) belongs to.
#[export]
fn blazen_assignment_context_run_id(ctx: &BlazenAssignmentContext) -> String {
    ctx.inner.run_id().to_string()
}

/// Which attempt at the run this assignment is (as the control plane
/// counts them).
#[export]
fn blazen_assignment_context_attempt(ctx: &BlazenAssignmentContext) -> u32 {
    ctx.attempt
}

/// True once the run has been cancelled (by the orchestrator, a drain or
/// the worker's shutdown): the handler should stop and return.
#[export]
fn blazen_assignment_context_is_cancelled(ctx: &BlazenAssignmentContext) -> bool {
    ctx.inner.cancellation_token().is_cancelled()
}

/// Emits the event `event_type` with `data_json` (both borrowed; a JSON
/// value) on the run of `ctx` (borrowed), to its subscribers.
#[export(status)]
async fn blazen_assignment_context_emit_event(
    ctx: &BlazenAssignmentContext,
    event_type: String,
    data_json: Json,
) -> Result<()> {
    Ok(ctx.inner.emit_event(&event_type, data_json.0).await?)
}

/// Asks the orchestrator for input: emits `input.request` `{request_id,
/// prompt, metadata}` on the run of `ctx` (borrowed) and waits for
/// `blazen_controlplane_client_respond_to_input`, the run's cancellation,
/// or `timeout_ms` (0: no limit). `prompt` and `metadata_json` (a JSON
/// value) are borrowed; the answer is stored in `*out_json`.
#[export(blocking)]
async fn blazen_assignment_context_request_input(
    ctx: &BlazenAssignmentContext,
    prompt: String,
    metadata_json: Json,
    timeout_ms: u64,
) -> Result<String> {
    let limit = (timeout_ms > 0).then_some(timeout_ms);
    let answer = ctx
        .inner
        .request_input(&prompt, metadata_json.0, limit)
        .await?;
    Ok(answer.to_string())
}
