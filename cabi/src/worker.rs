//! Workers written in C: a callback table answers assignments.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use blazen_cabi_macros::{export, handle};
use blazen_controlplane::protocol::Assignment;
use blazen_controlplane::worker::{
    AssignmentContext, AssignmentFailure, AssignmentHandler, Worker, WorkerConfig,
};
use blazen_core::distributed::{AdmissionMode, WorkerCapability};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::rt::arg::{Capabilities, StringMap};
use crate::rt::callbacks::{self, BlazenAssignmentHandlerVTable};
use crate::rt::{BlazenError, Result};

/// How long `free` waits for a running worker to wind down.
const STOP_WAIT: Duration = Duration::from_secs(10);

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
        if self.owned {
            self.inner.shutdown();
            self.inner.wait_stopped(STOP_WAIT);
        }
    }
}

struct Cell {
    /// The worker until `run` takes it.
    worker: Mutex<Option<Worker>>,
    handler: CHandler,
    stop: CancellationToken,
    /// True while a `run` is in progress.
    running: Mutex<bool>,
    stopped: Condvar,
}

impl Cell {
    fn shutdown(&self) {
        self.stop.cancel();
        if let Some(w) = lock(&self.worker).as_ref() {
            w.shutdown();
        }
        self.handler.cancel_all();
    }

    fn wait_stopped(&self, limit: Duration) {
        let running = lock(&self.running);
        let _ = self
            .stopped
            .wait_timeout_while(running, limit, |r| *r)
            .unwrap_or_else(|p| p.into_inner());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The control plane's handler trait, served by the C callback table. Each
/// callback runs on a blocking-pool thread, never on an executor thread.
#[derive(Clone)]
struct CHandler {
    vt: Arc<callbacks::AssignmentHandler>,
    in_flight: Arc<Mutex<HashMap<Uuid, CancellationToken>>>,
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

    async fn off_executor<T: Send + 'static>(
        &self,
        f: impl FnOnce(&callbacks::AssignmentHandler) -> T + Send + 'static,
    ) -> std::result::Result<T, String> {
        let vt = self.vt.clone();
        tokio::task::spawn_blocking(move || f(&vt))
            .await
            .map_err(|e| format!("the handler callback panicked: {e}"))
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
        lock(&self.in_flight).insert(run_id, ctx.cancellation_token().clone());
        let result = self
            .off_executor(move |vt| vt.handle(&run_id.to_string(), &a.workflow_name, &a.input_json))
            .await
            .and_then(|r| r);
        lock(&self.in_flight).remove(&run_id);
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
fn admission(mode: u32, param: u64) -> Result<AdmissionMode> {
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
        config = config.with_capability(WorkerCapability { kind, version });
    }
    for (k, v) in tags.0 {
        config = config.with_tag(k, v);
    }
    Ok(config)
}

fn build(
    config: WorkerConfig,
    vt: callbacks::AssignmentHandler,
) -> Result<BlazenControlPlaneWorker> {
    let worker = Worker::connect(config)?;
    Ok(BlazenControlPlaneWorker {
        inner: Arc::new(Cell {
            worker: Mutex::new(Some(worker)),
            handler: CHandler {
                vt: Arc::new(vt),
                in_flight: Arc::default(),
            },
            stop: CancellationToken::new(),
            running: Mutex::new(false),
            stopped: Condvar::new(),
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
    admission_mode: u32,
    admission_param: u64,
    vtable: BlazenAssignmentHandlerVTable,
) -> Result<BlazenControlPlaneWorker> {
    let config = config(
        endpoint,
        node_id,
        capabilities_json,
        tags_json,
        admission_mode,
        admission_param,
    )?;
    build(config, vtable)
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
    admission_mode: u32,
    admission_param: u64,
    cert_path: String,
    key_path: String,
    ca_path: String,
    vtable: BlazenAssignmentHandlerVTable,
) -> Result<BlazenControlPlaneWorker> {
    let config = config(
        endpoint,
        node_id,
        capabilities_json,
        tags_json,
        admission_mode,
        admission_param,
    )?;
    let config = config.with_mtls(cert_path.as_ref(), key_path.as_ref(), ca_path.as_ref())?;
    build(config, vtable)
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
    *lock(&cell.running) = true;
    let handler = cell.handler.clone();
    let result = tokio::select! {
        r = w.run(handler) => r.map_err(BlazenError::from),
        () = cell.stop.cancelled() => Ok(()),
    };
    *lock(&cell.running) = false;
    cell.stopped.notify_all();
    result
}

/// Stops the worker (borrowed), whether or not it is running: a running
/// `run` returns 0 promptly and assignments in progress get `on_cancel`.
/// Idempotent.
#[export]
fn blazen_controlplane_worker_shutdown(worker: &BlazenControlPlaneWorker) {
    worker.inner.shutdown()
}
