//! The orchestrator client: submit, cancel, describe, list and drain.

use blazen_cabi_macros::{export, handle};
use blazen_controlplane::client::Client;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{OrchestratorClient, ResourceHint, SubmitWorkflowRequest};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Semaphore;
use tonic::transport::ClientTlsConfig;
use uuid::Uuid;

use crate::records::{BlazenRunStateSnapshot, BlazenWorkerInfoList};
use crate::rt::arg::{CheckOptions, Json, Options, TagList};
use crate::rt::{BlazenError, Result};

/// The connection count of a client made without a `connections` option
/// (`connect`, `connect_with_mtls`, and `connect_with_options` without the
/// key). Chosen from `cargo xtask bench` on the 2-core development machine:
/// see README.md, Performance.
pub const DEFAULT_CONNECTIONS: usize = 8;

/// The largest `connections` value `connect_with_options` accepts.
pub const MAX_CONNECTIONS: usize = 64;

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

/// The connections of one client handle.
struct Pool {
    conns: Box<[Conn]>,
}

/// One connection (a native `Client`, which runs its RPCs one at a time
/// behind a mutex) and the FIFO in front of it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    /// Waiting here first, in FIFO order, keeps a queued call small: the
    /// RPC's own (large) future is made only when the turn comes.
    turn: Semaphore,
    /// Calls queued on or running over this connection.
    load: AtomicUsize,
    /// Subscriptions opened over this connection and still open.
    streams: AtomicUsize,
}

/// Counts a call against its connection's load until it finishes or is
/// dropped.
struct Load<'a>(&'a AtomicUsize);

impl Drop for Load<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts an open subscription against its connection until dropped.
pub(crate) struct StreamSlot {
    pool: Arc<Pool>,
    index: usize,
}

impl StreamSlot {
    pub(crate) fn conn(&self) -> &Conn {
        &self.pool.conns[self.index]
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.conn().streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BlazenControlPlaneClient {
    fn new(clients: Vec<Client>) -> Self {
        let conns = clients
            .into_iter()
            .map(|client| Conn {
                client,
                turn: Semaphore::new(1),
                load: AtomicUsize::new(0),
                streams: AtomicUsize::new(0),
            })
            .collect();
        Self {
            pool: Arc::new(Pool { conns }),
        }
    }

    /// The connection with the fewest calls queued or running (the first
    /// such one).
    fn least_loaded(&self) -> &Conn {
        let conns = &self.pool.conns;
        let mut best = &conns[0];
        let mut best_load = best.load.load(Ordering::Relaxed);
        for c in &conns[1..] {
            if best_load == 0 {
                break;
            }
            let l = c.load.load(Ordering::Relaxed);
            if l < best_load {
                (best, best_load) = (c, l);
            }
        }
        best
    }

    /// The connection of every call about `run_id`: the same one each time,
    /// so calls about one run keep their order.
    fn index_for_run(&self, run_id: Uuid) -> usize {
        let v = run_id.as_u128();
        let folded = (v as u64) ^ ((v >> 64) as u64);
        (folded % self.pool.conns.len() as u64) as usize
    }

    /// Takes a connection for a subscription: the run's own for a run's
    /// events, otherwise the one with the fewest open subscriptions (then
    /// the fewest calls).
    pub(crate) fn stream_slot(&self, run_id: Option<Uuid>) -> StreamSlot {
        let conns = &self.pool.conns;
        let index = match run_id {
            Some(id) => self.index_for_run(id),
            None => (0..conns.len())
                .min_by_key(|&i| {
                    let c = &conns[i];
                    (
                        c.streams.load(Ordering::Relaxed),
                        c.load.load(Ordering::Relaxed),
                    )
                })
                .unwrap_or(0),
        };
        conns[index].streams.fetch_add(1, Ordering::Relaxed);
        StreamSlot {
            pool: self.pool.clone(),
            index,
        }
    }

    /// Runs one RPC on the least-loaded connection.
    fn rpc<'a, T: 'a, E, F>(
        &'a self,
        call: impl FnOnce(Client) -> F + 'a,
    ) -> impl Future<Output = Result<T>> + 'a
    where
        F: Future<Output = std::result::Result<T, E>> + Send + 'a,
        E: Into<BlazenError> + 'a,
    {
        rpc_on(self.least_loaded(), call)
    }

    /// Runs one RPC about `run_id` on that run's connection.
    fn rpc_for<'a, T: 'a, E, F>(
        &'a self,
        run_id: Uuid,
        call: impl FnOnce(Client) -> F + 'a,
    ) -> impl Future<Output = Result<T>> + 'a
    where
        F: Future<Output = std::result::Result<T, E>> + Send + 'a,
        E: Into<BlazenError> + 'a,
    {
        rpc_on(&self.pool.conns[self.index_for_run(run_id)], call)
    }
}

/// Runs one RPC on `conn` in FIFO order. A call waiting for its turn holds
/// only its arguments; the RPC's own (large) future is allocated when the
/// turn comes, so thousands of pending calls stay cheap.
async fn rpc_on<T, E, F>(conn: &Conn, call: impl FnOnce(Client) -> F) -> Result<T>
where
    F: Future<Output = std::result::Result<T, E>> + Send,
    E: Into<BlazenError>,
{
    conn.load.fetch_add(1, Ordering::Relaxed);
    let _load = Load(&conn.load);
    let _turn = conn.turn.acquire().await;
    Box::pin(call(conn.client.clone()))
        .await
        .map_err(Into::into)
}

/// Opens `n` connections at once; fails if any fails.
async fn connect_pool(
    endpoint: String,
    tls: Option<ClientTlsConfig>,
    bearer_token: Option<String>,
    n: usize,
) -> Result<BlazenControlPlaneClient> {
    check_endpoint(&endpoint)?;
    let clients = futures_util::future::try_join_all(
        (0..n).map(|_| connect(endpoint.clone(), tls.clone(), bearer_token.clone())),
    )
    .await?;
    Ok(BlazenControlPlaneClient::new(clients))
}

/// Connects to the control plane at `endpoint` (borrowed), e.g.
/// `http://127.0.0.1:7400`, in plaintext, over the default number of
/// connections (8; see `connect_with_options`). Gives up after 10 seconds.
/// Yields a caller-owned client.
#[export]
async fn blazen_controlplane_client_connect(endpoint: String) -> Result<BlazenControlPlaneClient> {
    tracing::debug!(%endpoint, "connecting to the control plane");
    connect_pool(endpoint, None, None, DEFAULT_CONNECTIONS).await
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
/// borrowed), over the default number of connections (8). Yields a
/// caller-owned client.
#[export]
async fn blazen_controlplane_client_connect_with_mtls(
    endpoint: String,
    cert_path: String,
    key_path: String,
    ca_path: String,
) -> Result<BlazenControlPlaneClient> {
    tracing::debug!(%endpoint, "connecting to the control plane (mutual TLS)");
    let (cert, key, ca) = (cert_path.as_ref(), key_path.as_ref(), ca_path.as_ref());
    let tls = crate::tls::client(cert, key, ca)?;
    connect_pool(endpoint, Some(tls), None, DEFAULT_CONNECTIONS).await
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
    connections: Option<u64>,
}

impl CheckOptions for ConnectOptions {
    fn check(&self) -> std::result::Result<(), String> {
        crate::tls::pem_triple(&self.cert_path, &self.key_path, &self.ca_path)?;
        match self.connections {
            Some(n) if n == 0 || n > MAX_CONNECTIONS as u64 => Err(format!(
                "`connections` must be from 1 to {MAX_CONNECTIONS}, not {n}"
            )),
            _ => Ok(()),
        }
    }
}

impl CheckOptions for SubmitOptions {}

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
    let n = o.connections.map_or(DEFAULT_CONNECTIONS, |n| n as usize);
    let connect = connect_pool(endpoint, tls, o.bearer_token, n);
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
    Ok(inner)
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
