//! The orchestrator client: submit, cancel, describe, list and drain.

use blazen_cabi_macros::{export, handle};
use blazen_controlplane::client::Client;
use blazen_core::distributed::{OrchestratorClient, SubmitWorkflowRequest};
use uuid::Uuid;

use crate::records::{BlazenRunStateSnapshot, BlazenWorkerInfoList};
use crate::rt::arg::{Json, TagList};
use crate::rt::Result;

/// A connection to a control plane. Caller-owned; usable from many threads
/// at once; free with `blazen_controlplane_client_free`.
#[handle(
    free = "blazen_controlplane_client_free",
    take = "blazen_future_take_controlplane_client"
)]
#[derive(Clone)]
pub struct BlazenControlPlaneClient {
    pub(crate) inner: Client,
}

/// Connects to the control plane at `endpoint` (borrowed), e.g.
/// `http://127.0.0.1:7400`, in plaintext. Gives up after 10 seconds.
#[export]
async fn blazen_controlplane_client_connect(endpoint: String) -> Result<BlazenControlPlaneClient> {
    let inner = Client::connect(endpoint, None, None).await?;
    Ok(BlazenControlPlaneClient { inner })
}

/// Connects over mutual TLS with the client certificate, key and CA bundle
/// read from the PEM files at `cert_path`, `key_path` and `ca_path` (all
/// borrowed).
#[export]
async fn blazen_controlplane_client_connect_with_mtls(
    endpoint: String,
    cert_path: String,
    key_path: String,
    ca_path: String,
) -> Result<BlazenControlPlaneClient> {
    let (cert, key, ca) = (cert_path.as_ref(), key_path.as_ref(), ca_path.as_ref());
    let inner = Client::with_mtls(endpoint, cert, key, ca, None).await?;
    Ok(BlazenControlPlaneClient { inner })
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
    let request = SubmitWorkflowRequest {
        workflow_name,
        workflow_version: None,
        input: input_json.0,
        required_tags: required_tags_json.0,
        idempotency_key: None,
        deadline_ms: None,
        wait_for_worker,
        resource_hint: None,
    };
    Ok(BlazenRunStateSnapshot(
        client.inner.submit_workflow(request).await?,
    ))
}

/// Cancels the run `run_id` (borrowed UUID text). Yields its snapshot.
#[export]
async fn blazen_controlplane_client_cancel_workflow(
    client: &BlazenControlPlaneClient,
    run_id: Uuid,
) -> Result<BlazenRunStateSnapshot> {
    Ok(BlazenRunStateSnapshot(
        client.inner.cancel_workflow(run_id).await?,
    ))
}

/// Describes the run `run_id` (borrowed UUID text). Yields its snapshot.
#[export]
async fn blazen_controlplane_client_describe_workflow(
    client: &BlazenControlPlaneClient,
    run_id: Uuid,
) -> Result<BlazenRunStateSnapshot> {
    Ok(BlazenRunStateSnapshot(
        client.inner.describe_workflow(run_id).await?,
    ))
}

/// Lists the connected workers.
#[export]
async fn blazen_controlplane_client_list_workers(
    client: &BlazenControlPlaneClient,
) -> Result<BlazenWorkerInfoList> {
    Ok(BlazenWorkerInfoList(client.inner.list_workers().await?))
}

/// Asks the worker `node_id` (borrowed) to drain: stop taking work, and
/// with `immediate` also cancel what it runs.
#[export]
async fn blazen_controlplane_client_drain_worker(
    client: &BlazenControlPlaneClient,
    node_id: String,
    immediate: bool,
) -> Result<()> {
    Ok(client.inner.drain_worker(node_id, immediate).await?)
}
