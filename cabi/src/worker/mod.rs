//! Workers written in C: a callback table answers assignments.
//!
//! - [`config`]: the options a worker is made from, and the one builder of
//!   the control plane's `WorkerConfig`;
//! - [`route`]: how it reaches the control plane (credentials, the checks
//!   before `run`);
//! - [`session`]: its session with the control plane, run by the library;
//! - [`handler`]: the C callback table answering the session, with the
//!   admission cap;
//! - [`lanes`]: the threads of its own a worker runs `handle` calls on;
//! - [`answer`]: one `handle` call, and what its answer means for the run.

mod answer;
mod config;
mod handler;
mod lanes;
mod route;
mod session;

use std::sync::{Arc, Mutex};

use blazen_cabi_macros::{export, handle};
use blazen_controlplane::worker::WorkerConfig;
use blazen_core::distributed::AdmissionMode;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::rt::arg::{Capabilities, Options, StringMap};
#[allow(unused_imports)] // named in the 0.6.x surface's `#[surface]` only
use crate::rt::callbacks::BlazenAssignmentHandlerV06VTable;
use crate::rt::callbacks::{BlazenAssignmentHandlerVTable, BlazenContextHandlerVTable};
use crate::rt::handler::HandlerTable;
use crate::rt::{lock, BlazenError, Result};

pub use answer::BLAZEN_MAX_OUTPUT_BYTES;
pub use config::WorkerOptions;
use handler::{CHandler, Table};
use lanes::{Lanes, MOST_LANES};
use route::{Access, Route};
use session::Session;

/// A worker and its handler. Caller-owned; free with
/// `blazen_controlplane_worker_free`, which shuts it down first.
#[handle(free = "blazen_controlplane_worker_free")]
pub struct BlazenControlPlaneWorker {
    inner: Arc<Shared>,
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

/// A worker's state, shared by the caller's handle and a running `run`.
struct Shared {
    /// The worker's sessions until `run` takes them.
    session: Mutex<Option<Session>>,
    /// How the worker reaches the control plane, for the auth check.
    access: Access,
    handler: CHandler,
    stop: CancellationToken,
    node_id: String,
}

impl Shared {
    /// Stops the worker without waiting for anything but the handler's
    /// `on_cancel` notifications, which it makes on this thread: its
    /// session ends (the server stops listing it and assigning it runs).
    fn shutdown(&self) {
        self.stop.cancel();
        self.handler.cancel_all();
    }
}

fn build(
    config: WorkerConfig,
    vt: Arc<dyn HandlerTable>,
    route: Route,
) -> Result<BlazenControlPlaneWorker> {
    let permits = match config.admission {
        AdmissionMode::Fixed { max_in_flight } => {
            Some(Arc::new(Semaphore::new(max_in_flight.max(1) as usize)))
        }
        _ => None,
    };
    let lanes = Lanes::new(
        permits
            .as_ref()
            .map_or(MOST_LANES, |p| p.available_permits()),
    );
    let node_id = config.node_id.clone();
    let stop = CancellationToken::new();
    let session = Session::new(config, stop.clone());
    Ok(BlazenControlPlaneWorker {
        inner: Arc::new(Shared {
            session: Mutex::new(Some(session)),
            access: route.access,
            handler: CHandler {
                table: Arc::new(Table::new(vt)),
                in_flight: Arc::default(),
                stop: stop.clone(),
                permits,
                lanes: Arc::new(lanes),
            },
            stop,
            node_id,
        }),
        owned: true,
    })
}

/// Makes a worker from `options` once the other arguments are known to be
/// good: the endpoint is checked last, so a bad
/// argument is reported under its own name.
async fn make(
    endpoint: String,
    node_id: String,
    options: WorkerOptions,
    capabilities_param: &'static str,
    vt: Arc<dyn HandlerTable>,
) -> Result<BlazenControlPlaneWorker> {
    options.check_kinds(capabilities_param)?;
    let mut route = Route::new(endpoint)?;
    if !vt.has_handle() {
        let problem = "has no `handle` function (every run would fail)";
        return Err(BlazenError::invalid("vtable", problem));
    }
    let config = config::build(&mut route, node_id, options)?;
    build(config, vt, route)
}

/// Creates a worker for the control plane at `endpoint` named `node_id`,
/// advertising `capabilities_json` (`[{"kind": "workflow:NAME", "version":
/// 0}]`) and `tags_json` (`{"k": "v"}`), with admission `admission_mode`
/// (0 Fixed: `admission_param` = max in flight, 0 means 1; 1 VramBudget:
/// MiB; 2 Reactive). Strings are borrowed. In the 0.6.x surface
/// (`BLAZEN_SURFACE == 6`) it also takes `bearer_token` (borrowed; NULL for
/// none), and `vtable.handle` gets the run's `BlazenAssignmentContext`. The
/// library owns `vtable.user_data` from this call on, on every path, and
/// calls `drop_user_data` once (not at all for NULL `user_data`): at once if
/// this call fails, when the worker's run ends, or in
/// `blazen_controlplane_worker_free` for a worker never run. Nothing
/// connects until `run`.
#[export(blocking)]
#[allow(clippy::too_many_arguments)]
async fn blazen_controlplane_worker_new(
    endpoint: String,
    node_id: String,
    capabilities_json: Capabilities,
    tags_json: StringMap,
    #[enum_like] admission_mode: u32,
    admission_param: u64,
    #[surface(v0_6)] bearer_token: Option<String>,
    #[surface(v0_6 = BlazenAssignmentHandlerV06VTable)] vtable: BlazenAssignmentHandlerVTable,
) -> Result<BlazenControlPlaneWorker> {
    let options = WorkerOptions::from_args(
        capabilities_json,
        tags_json,
        admission_mode,
        admission_param,
    )?
    .with_token(bearer_token);
    make(endpoint, node_id, options, "capabilities_json", vtable).await
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
    #[surface(v0_6)] bearer_token: Option<String>,
    #[surface(v0_6 = BlazenAssignmentHandlerV06VTable)] vtable: BlazenAssignmentHandlerVTable,
) -> Result<BlazenControlPlaneWorker> {
    let options = WorkerOptions::from_args(
        capabilities_json,
        tags_json,
        admission_mode,
        admission_param,
    )?
    .with_pem_files(cert_path, key_path, ca_path)
    .with_token(bearer_token);
    make(endpoint, node_id, options, "capabilities_json", vtable).await
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
    make(endpoint, node_id, options_json.0, "options_json", vtable).await
}

/// Connects and serves assignments until `blazen_controlplane_worker_shutdown`
/// (then 0), a drain, or a failure the retry policy gives up on (then -1;
/// without a `retry` option, a control plane not reached within 10 s of
/// the start is such a failure, naming the endpoint and the cause).
/// `worker` is borrowed and must outlive the call. When the run ends, and
/// before this returns (or the future completes), the handler table is
/// released: `drop_user_data` is called (on a library thread; or, if a
/// `handle` call is still running after a shutdown, right after it
/// returns), so a later `blazen_controlplane_worker_free` calls nothing of
/// the host. A worker runs once: a second `run` is a VALIDATION error and
/// calls nothing.
#[export]
async fn blazen_controlplane_worker_run(worker: &BlazenControlPlaneWorker) -> Result<()> {
    let shared = worker.inner.clone();
    let taken = lock(&shared.session).take();
    let Some(session) = taken else {
        return Err(BlazenError::invalid("worker", "has already been run"));
    };
    // Lets go of the table however the run ends, including when its
    // future is cancelled or freed (the session ends with the future).
    let _release = Release(shared.clone());
    let result = serve(&shared, session).await;
    shared.handler.release().await;
    result
}

/// The run itself: the auth check, then the worker's sessions until they
/// end or the worker is stopped.
async fn serve(shared: &Arc<Shared>, session: Session) -> Result<()> {
    if let Some(rejected) = shared.access.rejected(&shared.node_id).await {
        return Err(rejected);
    }
    match session.run(shared.handler.clone()).await {
        Ok(()) => Ok(()),
        // A lost connection's cause is told the way a client's is: the
        // endpoint, and the cause a fresh connection finds (tonic's own
        // error says only "transport error").
        Err(e) => {
            let access = &shared.access;
            Err(crate::client::named(e.into(), &access.endpoint, access.tls.clone()).await)
        }
    }
}

struct Release(Arc<Shared>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.handler.release_later();
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
