//! The orchestrator client: submit, cancel, describe, list and drain.

mod options;
mod pool;
mod reach;

use blazen_embedded_cp::Subkind;
use std::sync::Arc;

use blazen_cabi_macros::{export, handle};
use blazen_core::distributed::{OrchestratorClient, ResourceHint, SubmitWorkflowRequest};
use uuid::Uuid;

use crate::records::{BlazenRunStateSnapshot, BlazenWorkerInfoList};
use crate::rt::arg::{Json, Options, TagList};
use crate::rt::{BlazenError, Result};

pub use options::{ConnectOptions, HintOptions, SubmitOptions};
pub(crate) use pool::StreamSlot;
use pool::{connect_pool, Pool};
pub(crate) use reach::{check_endpoint, named, reach_failure, wire_mismatch};

/// The connection count of a client made without a `connections` option
/// (`connect`, `connect_with_mtls`, and `connect_with_options` without the
/// key). Chosen from `cargo xtask bench` on the 2-core development machine:
/// see README.md, Performance.
pub const BLAZEN_DEFAULT_CONNECTIONS: usize = 8;

/// The largest `connections` value `connect_with_options` accepts.
pub const BLAZEN_MAX_CONNECTIONS: usize = 64;

/// A client of a control plane over one or more connections. Caller-owned;
/// usable from many threads at once; free with
/// `blazen_controlplane_client_free`.
#[handle(
    free = "blazen_controlplane_client_free",
    take = "blazen_future_take_controlplane_client"
)]
#[derive(Clone)]
pub struct BlazenControlPlaneClient {
    pool: Arc<Pool>,
}

/// Connects to the control plane at `endpoint` (borrowed), e.g.
/// `http://127.0.0.1:7400`, in plaintext, over the default number of
/// connections (8; see `connect_with_options`). Gives up after 10 seconds.
/// In the 0.6.x surface (`BLAZEN_SURFACE == 6`) it also takes
/// `bearer_token` (borrowed; NULL for none), sent on every call. Yields a
/// caller-owned client.
#[export]
async fn blazen_controlplane_client_connect(
    endpoint: String,
    #[surface(v0_6)] bearer_token: Option<String>,
) -> Result<BlazenControlPlaneClient> {
    tracing::debug!(%endpoint, "connecting to the control plane");
    connect_pool(endpoint, None, bearer_token, BLAZEN_DEFAULT_CONNECTIONS).await
}

/// Connects over mutual TLS with the client certificate, key and CA bundle
/// read from the PEM files at `cert_path`, `key_path` and `ca_path` (all
/// borrowed), over the default number of connections (8). In the 0.6.x
/// surface it also takes `bearer_token` (borrowed; NULL for none). Yields a
/// caller-owned client.
#[export]
async fn blazen_controlplane_client_connect_with_mtls(
    endpoint: String,
    cert_path: String,
    key_path: String,
    ca_path: String,
    #[surface(v0_6)] bearer_token: Option<String>,
) -> Result<BlazenControlPlaneClient> {
    tracing::debug!(%endpoint, "connecting to the control plane (mutual TLS)");
    let (cert, key, ca) = (cert_path.as_ref(), key_path.as_ref(), ca_path.as_ref());
    let tls = crate::tls::client(cert, key, ca)?;
    connect_pool(
        endpoint,
        Some(tls),
        bearer_token,
        BLAZEN_DEFAULT_CONNECTIONS,
    )
    .await
}

/// Connects with `options_json` (borrowed; NULL or an object with any of
/// `bearer_token`, `cert_path` + `key_path` + `ca_path` for mutual TLS,
/// `connect_timeout_ms` and `connections`; other keys are a VALIDATION
/// error).
/// A token is sent on every call; a wrong one makes calls fail with subkind
/// `ControlPlaneUnauthenticated`. `connections` (1 to 64, default 8) is how
/// many connections the client opens, all at connect time (the timeout
/// covers them all; any failure fails the connect): a connection runs one
/// call at a time, so more connections let more calls run at once. Calls
/// about one run (cancel, describe, respond_to_input, subscribe_run_events)
/// always use the connection picked by hashing its run id, in the order
/// made; other calls take the connection with the fewest calls queued or
/// running, and `subscribe_all` the one with the fewest subscriptions.
/// Yields a caller-owned client.
#[export]
async fn blazen_controlplane_client_connect_with_options(
    endpoint: String,
    options_json: Options<ConnectOptions>,
) -> Result<BlazenControlPlaneClient> {
    let o = options_json.0;
    tracing::debug!(%endpoint, "connecting to the control plane (with options)");
    let tls = crate::tls::client_from_options(&o.cert_path, &o.key_path, &o.ca_path)?;
    let shown = endpoint.clone();
    let n = o
        .connections
        .map_or(BLAZEN_DEFAULT_CONNECTIONS, |n| n as usize);
    let connect = connect_pool(endpoint, tls, o.bearer_token, n);
    let inner = match o.connect_timeout_ms {
        None => connect.await?,
        Some(ms) => tokio::time::timeout(std::time::Duration::from_millis(ms), connect)
            .await
            .map_err(|_| {
                BlazenError::peer(
                    Subkind::ControlPlaneTransport,
                    format!(
                        "cannot reach the control plane at {shown}: \
                         connect timed out after {ms} ms"
                    ),
                )
            })??,
    };
    Ok(inner)
}

async fn submit(
    client: &BlazenControlPlaneClient,
    workflow_name: String,
    input: Json,
    tags: TagList,
    wait_for_worker: bool,
    o: SubmitOptions,
) -> Result<BlazenRunStateSnapshot> {
    let request = SubmitWorkflowRequest {
        workflow_name,
        workflow_version: o.workflow_version,
        input: input.0,
        required_tags: tags.0,
        idempotency_key: o.idempotency_key,
        deadline_ms: o.deadline_ms,
        wait_for_worker,
        resource_hint: o.resource_hint.map(|h| ResourceHint {
            vram_mb: h.vram_mb,
            cpu_cores: h.cpu_cores,
            expected_seconds: h.expected_seconds,
        }),
    };
    let snapshot = client.rpc(|c| async move { c.submit_workflow(request).await });
    Ok(BlazenRunStateSnapshot(snapshot.await?))
}

/// Submits a run of `workflow_name` with `input_json` (a JSON value) and
/// `required_tags_json` (NULL, `null` or `["key=value", ...]`), all
/// borrowed. With `wait_for_worker` false, a submission no connected worker
/// can take fails (PEER, `ControlPlaneFailedPrecondition`); with true it
/// stays PENDING until one connects. Yields the run's first snapshot.
#[export]
async fn blazen_controlplane_client_submit_workflow(
    client: &BlazenControlPlaneClient,
    workflow_name: String,
    input_json: Json,
    required_tags_json: TagList,
    wait_for_worker: bool,
) -> Result<BlazenRunStateSnapshot> {
    let defaults = SubmitOptions::default();
    submit(
        client,
        workflow_name,
        input_json,
        required_tags_json,
        wait_for_worker,
        defaults,
    )
    .await
}

/// As `submit_workflow`, with `options_json` (borrowed; NULL or an object
/// with any of `workflow_version` (u32; routes to capability
/// `workflow:NAME` at that version), `idempotency_key`, `deadline_ms`,
/// `resource_hint` {`vram_mb`, `cpu_cores`, `expected_seconds`}; other keys
/// are a VALIDATION error).
#[export]
async fn blazen_controlplane_client_submit_workflow_with_options(
    client: &BlazenControlPlaneClient,
    workflow_name: String,
    input_json: Json,
    required_tags_json: TagList,
    wait_for_worker: bool,
    options_json: Options<SubmitOptions>,
) -> Result<BlazenRunStateSnapshot> {
    let o = options_json.0;
    submit(
        client,
        workflow_name,
        input_json,
        required_tags_json,
        wait_for_worker,
        o,
    )
    .await
}

/// Answers the `input.request` event `request_id` (borrowed; from the
/// event's data) of run `run_id` (borrowed UUID text) with
/// `response_json` (borrowed JSON value), resuming the handler waiting
/// for it.
#[export]
async fn blazen_controlplane_client_respond_to_input(
    client: &BlazenControlPlaneClient,
    run_id: Uuid,
    request_id: String,
    response_json: Json,
) -> Result<()> {
    client
        .rpc_for(run_id, |c| async move {
            c.respond_to_input(run_id, request_id, response_json.0)
                .await
        })
        .await
}

/// Cancels the run `run_id` (borrowed UUID text). Yields its snapshot.
#[export]
async fn blazen_controlplane_client_cancel_workflow(
    client: &BlazenControlPlaneClient,
    run_id: Uuid,
) -> Result<BlazenRunStateSnapshot> {
    let snapshot = client.rpc_for(run_id, |c| async move { c.cancel_workflow(run_id).await });
    Ok(BlazenRunStateSnapshot(snapshot.await?))
}

/// Describes the run `run_id` (borrowed UUID text). Yields its snapshot.
#[export]
async fn blazen_controlplane_client_describe_workflow(
    client: &BlazenControlPlaneClient,
    run_id: Uuid,
) -> Result<BlazenRunStateSnapshot> {
    let snapshot = client.rpc_for(run_id, |c| async move { c.describe_workflow(run_id).await });
    Ok(BlazenRunStateSnapshot(snapshot.await?))
}

/// Lists the connected workers.
#[export]
async fn blazen_controlplane_client_list_workers(
    client: &BlazenControlPlaneClient,
) -> Result<BlazenWorkerInfoList> {
    let list = client.rpc(|c| async move { c.list_workers().await });
    Ok(BlazenWorkerInfoList(list.await?))
}

/// Asks the worker `node_id` (borrowed) to drain: stop taking work, and
/// with `immediate` also cancel what it runs.
#[export]
async fn blazen_controlplane_client_drain_worker(
    client: &BlazenControlPlaneClient,
    node_id: String,
    immediate: bool,
) -> Result<()> {
    client
        .rpc(|c| async move { c.drain_worker(node_id, immediate).await })
        .await
}
