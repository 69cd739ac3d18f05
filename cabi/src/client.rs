//! The orchestrator client: submit, cancel, describe, list and drain.

use blazen_cabi_macros::{export, handle};
use blazen_controlplane::client::Client;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{OrchestratorClient, ResourceHint, SubmitWorkflowRequest};
use std::future::Future;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::records::{BlazenRunStateSnapshot, BlazenWorkerInfoList};
use crate::rt::arg::{CheckOptions, Json, Options, TagList};
use crate::rt::{BlazenError, Result};

/// A connection to a control plane. Caller-owned; usable from many threads
/// at once; free with `blazen_controlplane_client_free`.
#[handle(
    free = "blazen_controlplane_client_free",
    take = "blazen_future_take_controlplane_client"
)]
#[derive(Clone)]
pub struct BlazenControlPlaneClient {
    pub(crate) inner: Client,
    /// Calls on one `Client` run one at a time (it serialises its RPCs
    /// behind a mutex); waiting here first keeps a queued call small.
    turn: Arc<Semaphore>,
}

impl BlazenControlPlaneClient {
    fn new(inner: Client) -> Self {
        Self {
            inner,
            turn: Arc::new(Semaphore::new(1)),
        }
    }

    /// Runs one RPC in FIFO order. A call waiting for its turn holds only
    /// its arguments; the RPC's own (large) future is allocated when the
    /// turn comes, so thousands of pending calls stay cheap.
    async fn rpc<T, E, F>(&self, call: impl FnOnce(Client) -> F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, E>> + Send,
        E: Into<BlazenError>,
    {
        let _turn = self.turn.acquire().await;
        Box::pin(call(self.inner.clone())).await.map_err(Into::into)
    }
}

/// Connects to the control plane at `endpoint` (borrowed), e.g.
/// `http://127.0.0.1:7400`, in plaintext. Gives up after 10 seconds.
#[export]
async fn blazen_controlplane_client_connect(endpoint: String) -> Result<BlazenControlPlaneClient> {
    tracing::debug!(%endpoint, "connecting to the control plane");
    let inner = connect(endpoint, None, None).await?;
    Ok(BlazenControlPlaneClient::new(inner))
}

/// Refuses an endpoint that is not an `http://` or `https://` URI with a
/// host (VALIDATION naming `endpoint`), before anything connects.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<()> {
    let bad = |why: String| BlazenError::invalid("endpoint", why);
    let uri: tonic::transport::Uri = endpoint
        .parse()
        .map_err(|e| bad(format!("{endpoint:?} is not a URI ({e})")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        (None, _) => Err(bad(format!(
            "{endpoint:?} has no scheme; use \"http://{endpoint}\" (or https:// for TLS)"
        ))),
        (Some(scheme @ ("http" | "https")), _) => {
            Err(bad(format!("{endpoint:?} has no host after {scheme}://")))
        }
        (Some(scheme), _) => Err(bad(format!(
            "{endpoint:?} has the scheme {scheme:?}; the control plane speaks http:// or https://"
        ))),
    }
}

/// `Client::connect` with the endpoint checked first and a failure that
/// names the endpoint and its cause.
pub(crate) async fn connect(
    endpoint: String,
    tls: Option<tonic::transport::ClientTlsConfig>,
    token: Option<String>,
) -> Result<Client> {
    check_endpoint(&endpoint)?;
    match Client::connect(endpoint.clone(), tls.clone(), token).await {
        Ok(c) => Ok(c),
        Err(ControlPlaneError::Transport(_)) => Err(unreachable(&endpoint, tls).await),
        Err(e) => Err(e.into()),
    }
}

/// Why `endpoint` cannot be reached: the crate reports only "transport
/// error" (tonic's error shows its cause only through `source()`, which
/// the crate's string conversion drops), so this connects once more and
/// reads the cause chain. PEER, subkind `ControlPlaneTls` for certificate
/// and handshake problems, `ControlPlaneTransport` otherwise (refused,
/// DNS, timeout).
pub(crate) async fn unreachable(
    endpoint: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> BlazenError {
    let transport = |cause: &str| {
        BlazenError::peer(
            "ControlPlaneTransport",
            format!("cannot reach the control plane at {endpoint}: {cause}"),
        )
    };
    let Ok(mut probe) = tonic::transport::Endpoint::from_shared(endpoint.to_string()) else {
        return transport("the endpoint is not a valid URI");
    };
    probe = probe.connect_timeout(std::time::Duration::from_secs(5));
    if let Some(tls) = tls {
        match probe.tls_config(tls) {
            Ok(p) => probe = p,
            Err(e) => return BlazenError::peer("ControlPlaneTls", cause_chain(&e)),
        }
    }
    let cause = match probe.connect().await {
        Ok(_) => "the connection failed, then succeeded when retried".to_string(),
        Err(e) => cause_chain(&e),
    };
    let lower = cause.to_ascii_lowercase();
    if ["certificate", "tls", "handshake", "alert"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return BlazenError::peer(
            "ControlPlaneTls",
            format!("TLS with the control plane at {endpoint} failed: {cause}"),
        );
    }
    transport(&cause)
}

/// An error's causes as one line, `outer: inner: ...`, leaving out tonic's
/// uninformative "transport error" and repeats.
fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text != "transport error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        "transport error (no further detail)".to_string()
    } else {
        parts.join(": ")
    }
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
    tracing::debug!(%endpoint, "connecting to the control plane (mutual TLS)");
    let (cert, key, ca) = (cert_path.as_ref(), key_path.as_ref(), ca_path.as_ref());
    let tls = blazen_controlplane::tls::load_client_tls(cert, key, ca)
        .map_err(|e| BlazenError::peer("ControlPlaneTls", e.to_string()))?;
    let inner = connect(endpoint, Some(tls), None).await?;
    Ok(BlazenControlPlaneClient::new(inner))
}

/// Keys of `connect_with_options`; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectOptions {
    bearer_token: Option<String>,
    cert_path: Option<String>,
    key_path: Option<String>,
    ca_path: Option<String>,
    connect_timeout_ms: Option<u64>,
}

/// The TLS settings of options that name PEM files: all three or none
/// (checked when the options are decoded, see [`CheckOptions`]).
pub(crate) fn pem_triple(
    cert: &Option<String>,
    key: &Option<String>,
    ca: &Option<String>,
) -> std::result::Result<Option<[std::path::PathBuf; 3]>, String> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(c), Some(k), Some(a)) => Ok(Some([c.into(), k.into(), a.into()])),
        _ => Err("`cert_path`, `key_path` and `ca_path` must be given together".into()),
    }
}

/// [`pem_triple`] for option structs already checked: an error names
/// `options_json`.
pub(crate) fn pem_paths(
    cert: &Option<String>,
    key: &Option<String>,
    ca: &Option<String>,
) -> Result<Option<[std::path::PathBuf; 3]>> {
    pem_triple(cert, key, ca).map_err(|e| BlazenError::invalid("options_json", e))
}

impl CheckOptions for ConnectOptions {
    fn check(&self) -> std::result::Result<(), String> {
        pem_triple(&self.cert_path, &self.key_path, &self.ca_path).map(drop)
    }
}

impl CheckOptions for SubmitOptions {}

/// Connects with `options_json` (borrowed; NULL or an object with any of
/// `bearer_token`, `cert_path` + `key_path` + `ca_path` for mutual TLS, and
/// `connect_timeout_ms`; other keys are a VALIDATION error). A token is sent
/// on every call; a wrong one makes calls fail with subkind
/// `ControlPlaneUnauthenticated`.
#[export]
async fn blazen_controlplane_client_connect_with_options(
    endpoint: String,
    options_json: Options<ConnectOptions>,
) -> Result<BlazenControlPlaneClient> {
    let o = options_json.0;
    tracing::debug!(%endpoint, "connecting to the control plane (with options)");
    let tls = match pem_paths(&o.cert_path, &o.key_path, &o.ca_path)
        .map_err(|e| BlazenError::invalid("options_json", e))?
    {
        Some([c, k, a]) => Some(
            blazen_controlplane::tls::load_client_tls(&c, &k, &a)
                .map_err(|e| BlazenError::peer("ControlPlaneTls", e.to_string()))?,
        ),
        None => None,
    };
    let shown = endpoint.clone();
    let connect = connect(endpoint, tls, o.bearer_token);
    let inner = match o.connect_timeout_ms {
        None => connect.await?,
        Some(ms) => tokio::time::timeout(std::time::Duration::from_millis(ms), connect)
            .await
            .map_err(|_| {
                BlazenError::peer(
                    "ControlPlaneTransport",
                    format!(
                        "cannot reach the control plane at {shown}: \
                         connect timed out after {ms} ms"
                    ),
                )
            })??,
    };
    Ok(BlazenControlPlaneClient::new(inner))
}

/// Keys of `submit_workflow_with_options`; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitOptions {
    workflow_version: Option<u32>,
    idempotency_key: Option<String>,
    deadline_ms: Option<u64>,
    resource_hint: Option<HintOptions>,
}

/// `resource_hint` of [`SubmitOptions`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HintOptions {
    vram_mb: Option<u64>,
    cpu_cores: Option<f32>,
    expected_seconds: Option<u32>,
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
        .rpc(|c| async move {
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
    let snapshot = client.rpc(|c| async move { c.cancel_workflow(run_id).await });
    Ok(BlazenRunStateSnapshot(snapshot.await?))
}

/// Describes the run `run_id` (borrowed UUID text). Yields its snapshot.
#[export]
async fn blazen_controlplane_client_describe_workflow(
    client: &BlazenControlPlaneClient,
    run_id: Uuid,
) -> Result<BlazenRunStateSnapshot> {
    let snapshot = client.rpc(|c| async move { c.describe_workflow(run_id).await });
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
