//! The embedded control plane: a real blazen-controlplane server inside the
//! process, bound without a port race and stopped on request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blazen_cabi_macros::{export, handle};
use blazen_controlplane::pb::blazen_control_plane_server::BlazenControlPlaneServer as GrpcServer;
use blazen_controlplane::server::{
    admission::Admission, key_store, queue::AssignmentQueue, registry::WorkerRegistry,
    store::AssignmentStore, SharedState,
};
use tokio::sync::{broadcast, oneshot};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod conn;

use crate::rt::arg::Options;
use crate::rt::{BlazenError, Result};
use conn::{Auth, Killable};

/// How long a shutdown waits for requests and streams in progress before it
/// closes every connection.
const GRACE: Duration = Duration::from_secs(1);

/// HTTP/2 PING interval and ack timeout (and TCP keepalive): a peer that
/// vanishes without closing its connection (host down, network cut) is
/// dropped within two of these, and a worker's runs are then re-queued.
/// A worker process that dies is noticed at once (its kernel closes the
/// connection).
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(10);

/// Broadcast capacity of the event bus (the crate's `ControlPlaneServer`
/// has 1,024): a subscriber more than this many events behind loses some,
/// and the run journal (`service::journal`) is one such subscriber that
/// must keep up with 10,000-run bursts.
const EVENT_BUS_CAPACITY: usize = 16_384;

/// How many times a run is re-queued after losing its worker, unless
/// `max_requeues` says otherwise.
pub(crate) const DEFAULT_MAX_REQUEUES: u32 = 3;

/// A control plane running inside this process. Caller-owned; free with
/// `blazen_controlplane_server_free`, which stops it without waiting: every
/// connection is closed at once and the port is released as soon as the
/// runtime drops the listener (call `blazen_controlplane_server_shutdown`
/// first for a graceful stop that returns once the port is free).
#[handle(
    free = "blazen_controlplane_server_free",
    take = "blazen_future_take_controlplane_server"
)]
#[derive(Clone)]
pub struct BlazenControlPlaneServer {
    inner: Arc<Running>,
}

struct Running {
    addr: SocketAddr,
    scheme: &'static str,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Closes every accepted connection (see [`Killable`]).
    kill: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Running {
    /// Signals a graceful stop, waits up to [`GRACE`], then closes every
    /// connection still open (streams end with an error at their clients).
    /// Idempotent.
    fn stop(&self) {
        let stop = crate::rt::lock(&self.stop).take();
        let task = crate::rt::lock(&self.task).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(mut task) = task {
            tracing::info!(addr = %self.addr, "embedded control plane stopping");
            let kill = self.kill.clone();
            let _ = crate::rt::call::run_blocking("server shutdown", async move {
                if tokio::time::timeout(GRACE, &mut task).await.is_err() {
                    kill.cancel();
                    if tokio::time::timeout(GRACE, &mut task).await.is_err() {
                        task.abort();
                        let _ = task.await;
                    }
                }
                Ok(())
            });
        }
        self.kill.cancel();
    }
}

impl Drop for Running {
    /// `free` signals only: it never waits for the server task.
    fn drop(&mut self) {
        if let Some(stop) = crate::rt::lock(&self.stop).take() {
            let _ = stop.send(());
        }
        self.kill.cancel();
        if let Some(task) = crate::rt::lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Keys of `server_start_with_options`; unknown keys are refused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerOptions {
    bearer_token: Option<String>,
    cert_path: Option<String>,
    key_path: Option<String>,
    ca_path: Option<String>,
    store_url: Option<String>,
    finished_ttl_ms: Option<u64>,
    max_requeues: Option<u32>,
}

impl ServerOptions {
    /// The TTL of finished runs' snapshots in the store (`None`: kept).
    fn finished_ttl(&self) -> Option<Duration> {
        match self.finished_ttl_ms {
            None => Some(crate::store::DEFAULT_FINISHED_TTL),
            Some(0) => None,
            // The store keeps whole seconds: round up.
            Some(ms) => Some(Duration::from_secs(ms.div_ceil(1000))),
        }
    }
}

impl crate::rt::arg::CheckOptions for ServerOptions {
    fn check(&self) -> std::result::Result<(), String> {
        crate::tls::pem_triple(&self.cert_path, &self.key_path, &self.ca_path)?;
        match &self.store_url {
            Some(url) => crate::store::check_url(url),
            None if self.finished_ttl_ms.is_some() => {
                Err("`finished_ttl_ms` needs `store_url`".to_string())
            }
            None => Ok(()),
        }
    }
}

async fn start(bind_addr: &str, options: ServerOptions) -> Result<BlazenControlPlaneServer> {
    let tls = match crate::tls::pem_paths(&options.cert_path, &options.key_path, &options.ca_path)?
    {
        Some([c, k, a]) => Some(crate::tls::server(&c, &k, &a)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ttl = options.finished_ttl();
    let token = options.bearer_token;
    let addr: SocketAddr = bind_addr.parse().map_err(|e| {
        BlazenError::invalid("bind_addr", format!("is not an IP:port address ({e})"))
    })?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        BlazenError::peer("ControlPlaneTransport", format!("cannot bind {addr}: {e}"))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| BlazenError::internal(format!("local_addr: {e}")))?;
    let store = match &options.store_url {
        Some(url) => Some(crate::store::connect(url, ttl).await?),
        None => None,
    };
    let queue_store: Arc<dyn AssignmentStore> = match &store {
        Some(s) => s.clone(),
        None => Arc::new(crate::service::Volatile),
    };
    let (events, _) = broadcast::channel(EVENT_BUS_CAPACITY);
    let shared = Arc::new(SharedState {
        registry: WorkerRegistry::new(),
        queue: AssignmentQueue::with_events_and_store(events.clone(), queue_store),
        admission: Admission::new(),
        node_id: format!("blazen-cabi-{addr}"),
        events,
        key_store: key_store::default_key_store(),
    });
    match &store {
        Some(store) => {
            let found = crate::store::recover(&shared, store)
                .await
                .map_err(|e| BlazenError::peer(crate::store::SUBKIND, e.to_string()))?;
            tracing::info!(
                queued = found.queued,
                rerun = found.rerun,
                "embedded control plane recovered its runs from the store"
            );
        }
        None => shared.queue.recover_from_store().await?,
    }
    let auth = Auth {
        token: token.map(Arc::from),
    };
    let max_requeues = options.max_requeues.unwrap_or(DEFAULT_MAX_REQUEUES);
    let service = crate::service::Service::new(shared, store, max_requeues);
    let service = GrpcServer::with_interceptor(service, auth);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let kill = CancellationToken::new();
    let killer = kill.clone();
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |r| {
            r.map(|io| Killable {
                io,
                killed: Box::pin(killer.clone().cancelled_owned()),
            })
        });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(crate::tls::error)?;
    }
    let task = tokio::spawn(async move {
        let _ = builder
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE))
            .tcp_keepalive(Some(KEEPALIVE))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            })
            .await;
    });
    tracing::info!(endpoint = %format!("{scheme}://{addr}"), "embedded control plane started");
    Ok(BlazenControlPlaneServer {
        inner: Arc::new(Running {
            addr,
            scheme,
            stop: Mutex::new(Some(stop_tx)),
            kill,
            task: Mutex::new(Some(task)),
        }),
    })
}

/// Starts a control-plane server in this process, listening on `bind_addr`
/// (borrowed, `IP:PORT`; port 0 picks a free port, bound once with no
/// race). Auth follows `BLAZEN_PEER_TOKEN` as for a standalone server.
#[export]
async fn blazen_controlplane_server_start(bind_addr: String) -> Result<BlazenControlPlaneServer> {
    start(&bind_addr, ServerOptions::default()).await
}

/// As `server_start`, with `options_json` (borrowed; NULL or an object with
/// any of `bearer_token`, which every call must then present, overriding
/// `BLAZEN_PEER_TOKEN` for this server only; and `cert_path` + `key_path` +
/// `ca_path` to serve mutual TLS from PEM files; `store_url`
/// (`redis://HOST:PORT/DB` or `unix://PATH`, a Redis or Valkey server) to
/// keep queued, running and finished runs there so a new control plane
/// on the same store resumes them (see the README's "A control plane that
/// survives a restart"), with `finished_ttl_ms` (default 3,600,000, one
/// hour; 0 keeps them; kept in whole seconds, rounded up) for how long
/// finished runs stay describable there; a store not reached within 3 s
/// fails the start with PEER / `ControlPlaneStore`; `max_requeues`
/// (default 3) for how many times a run that lost its worker is re-queued
/// before it fails instead; other keys are a VALIDATION error).
#[export]
async fn blazen_controlplane_server_start_with_options(
    bind_addr: String,
    options_json: Options<ServerOptions>,
) -> Result<BlazenControlPlaneServer> {
    start(&bind_addr, options_json.0).await
}

/// The server's endpoint for clients and workers, `http://IP:PORT`
/// (`https://` when it serves TLS)
/// (caller-owned string).
#[export]
fn blazen_controlplane_server_endpoint(server: &BlazenControlPlaneServer) -> String {
    format!("{}://{}", server.inner.scheme, server.inner.addr)
}

/// The port the server listens on (0 for NULL).
#[export]
fn blazen_controlplane_server_port(server: &BlazenControlPlaneServer) -> u16 {
    server.inner.addr.port()
}

/// Stops the server (borrowed): new connections are refused, open streams
/// get up to two seconds to finish and are then closed. Returns once it has
/// stopped. Blocks the calling thread (for the network only, never for a
/// callback). Idempotent; the handle must still be freed.
#[export(waits)]
fn blazen_controlplane_server_shutdown(server: &BlazenControlPlaneServer) {
    server.inner.stop()
}
