//! Starting and stopping the embedded control plane: bound without a port
//! race, with optional mutual TLS, bearer token and durable store, and a
//! stop that closes every connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blazen_controlplane::pb::blazen_control_plane_server::BlazenControlPlaneServer as GrpcServer;
use blazen_controlplane::server::{
    admission::Admission, key_store, queue::AssignmentQueue, registry::WorkerRegistry,
    store::AssignmentStore, SharedState,
};
use futures_util::StreamExt;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::common::{GRACE, LOG_TARGET};
use crate::conn::{Auth, Killable};
pub use crate::threads::default_threads;
use crate::threads::Threads;
use crate::{lock, Error, Result};

/// HTTP/2 PING interval and ack timeout (and TCP keepalive): a peer that
/// vanishes without closing its connection (host down, network cut) is
/// dropped within two of these, and a worker's runs are then re-queued.
/// A worker process that dies is noticed at once (its kernel closes the
/// connection).
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// How many times a run is re-queued after losing its worker, unless
/// [`Config::max_requeues`] says otherwise.
pub const DEFAULT_MAX_REQUEUES: u32 = 3;

/// How to run a control plane.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// A token every call must present (`authorization: Bearer ...`);
    /// `None` follows `BLAZEN_PEER_TOKEN`, as a standalone server does.
    pub bearer_token: Option<String>,
    /// Mutual TLS from PEM files: certificate, key, and the CA client
    /// certificates must chain to.
    pub tls: Option<[PathBuf; 3]>,
    /// A Redis or Valkey URL to keep runs in (see [`crate::store`]).
    pub store_url: Option<String>,
    /// How long finished runs stay in the store (`None`: kept).
    pub finished_ttl: Option<Duration>,
    /// How many writes may wait for the store before submissions are
    /// refused (`None`: [`crate::store::DEFAULT_REPLAY_LIMIT`]).
    pub store_replay_limit: Option<usize>,
    /// See [`DEFAULT_MAX_REQUEUES`].
    pub max_requeues: u32,
    /// Where to serve the HTTP side (`IP:PORT`, port 0 picks one; `None`:
    /// no HTTP side): metrics, health, the run API and the dashboard
    /// (see `crate::http`).
    pub http_addr: Option<String>,
    /// How many threads of its own it runs on (`None`: [`default_threads`]).
    pub threads: Option<std::num::NonZeroUsize>,
    /// Runs first on each of those threads (blazen-cabi blocks `SIGPIPE`
    /// there, as on its own threads).
    pub on_thread_start: Option<fn()>,
}

/// A running control plane. Dropping it stops it without waiting (every
/// connection is closed at once); [`Server::shutdown`] stops it gracefully.
pub struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Closes every accepted connection (see [`Killable`]).
    kill: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The listening socket, also held by the server task, which closes
    /// its copy only once it has been dropped on the runtime (see
    /// [`Server::stop_listening`]).
    listening: Mutex<Option<socket2::Socket>>,
    /// The run listing's reader and the HTTP side (`crate::http`).
    pub(crate) http: crate::http::Side,
    /// The store, when it has one: closed first when the server is
    /// dropped.
    store: Option<Arc<crate::store::Durable>>,
    /// Dropped last: every task of the control plane runs here.
    threads: Threads,
}

impl Server {
    /// Starts a control plane on `bind_addr` (`IP:PORT`; port 0 picks a
    /// free port, bound once with no race), on threads of its own
    /// ([`Config::threads`]). Any async context may await this.
    pub async fn start(bind_addr: &str, config: Config) -> Result<Server> {
        let threads = Threads::new(config.threads, config.on_thread_start)?;
        let Some(rt) = threads.handle() else {
            return Err(Error::Internal("no control plane threads".to_string()));
        };
        let bind_addr = bind_addr.to_string();
        let started = rt
            .spawn(async move { Self::start_here(&bind_addr, config).await })
            .await;
        match started {
            Ok(Ok(parts)) => Ok(parts.with(threads)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(Error::Internal(format!(
                "the control plane's start failed: {e}"
            ))),
        }
    }

    /// [`Server::start`] on the runtime that will serve it.
    async fn start_here(bind_addr: &str, config: Config) -> Result<Started> {
        let tls = match &config.tls {
            Some([c, k, a]) => {
                Some(blazen_controlplane::tls::load_server_tls(c, k, a).map_err(Error::tls)?)
            }
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let addr: SocketAddr = bind_addr.parse().map_err(|e| Error::Invalid {
            param: "bind_addr",
            problem: format!("is not an IP:port address ({e})"),
        })?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::peer(
                crate::Subkind::ControlPlaneTransport,
                format!("cannot bind {addr}: {e}"),
            )
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("local_addr: {e}")))?;
        let listening = std::os::fd::AsFd::as_fd(&listener)
            .try_clone_to_owned()
            .map(socket2::Socket::from)
            .map_err(|e| Error::Internal(format!("listening socket: {e}")))?;
        let store = match &config.store_url {
            Some(url) => Some(
                crate::store::connect(url, config.finished_ttl, config.store_replay_limit).await?,
            ),
            None => None,
        };
        let queue_store: Arc<dyn AssignmentStore> = match &store {
            Some(s) => s.clone(),
            None => Arc::new(crate::service::Volatile),
        };
        let (events, _) = broadcast::channel(crate::service::EVENT_BUS_CAPACITY);
        let shared = Arc::new(SharedState {
            registry: WorkerRegistry::new(),
            queue: AssignmentQueue::with_events_and_store(events.clone(), queue_store),
            admission: Admission::new(),
            node_id: format!("blazen-cabi-{addr}"),
            events,
            key_store: key_store::default_key_store(),
        });
        let mut recovered = Vec::new();
        match &store {
            Some(store) => {
                let found = crate::store::recover(store)
                    .await
                    .map_err(|e| Error::peer(crate::Subkind::ControlPlaneStore, e.to_string()))?;
                tracing::info!(
                    target: LOG_TARGET,
                    queued = found.queued,
                    rerun = found.rerun,
                    "embedded control plane recovered its runs from the store"
                );
                recovered = found
                    .runs
                    .into_iter()
                    .map(|r| crate::service::Waiting {
                        run_id: r.run_id,
                        place: r.place,
                        assignment: r.assignment,
                        cap: r.cap,
                        tags: r.tags,
                    })
                    .collect();
            }
            None => shared.queue.recover_from_store().await?,
        }
        let auth = Auth {
            token: config.bearer_token.map(Arc::from),
        };
        let durable = store.clone();
        let service = crate::service::Service::new(shared, store, config.max_requeues, recovered);
        let http_token = auth
            .token
            .clone()
            .or_else(|| blazen_controlplane::auth::resolve_peer_token().map(Arc::from));
        let http =
            crate::http::Side::start(config.http_addr.as_deref(), service.observer(), http_token)
                .await?;
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
            builder = builder.tls_config(tls).map_err(Error::tls)?;
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
        tracing::info!(target: LOG_TARGET, endpoint = %format!("{scheme}://{addr}"), "embedded control plane started");
        Ok(Started(Server {
            addr,
            scheme,
            stop: Mutex::new(Some(stop_tx)),
            kill,
            task: Mutex::new(Some(task)),
            listening: Mutex::new(Some(listening)),
            http,
            store: durable,
            threads: Threads(None),
        }))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint for clients and workers, `http://IP:PORT` (`https://`
    /// with TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Where the HTTP side listens, `http://IP:PORT`, when it has one.
    pub fn http_endpoint(&self) -> Option<String> {
        self.http.endpoint()
    }

    /// One page of runs, newest first, as JSON text: `{"runs": [...],
    /// "next_cursor": N or null}` (see `RunFilter::from_json` for
    /// `filter`, and the README for a run's fields). A bad filter is an
    /// [`Error::Invalid`] naming `filter_json`.
    pub fn list_runs_json(&self, filter: &serde_json::Value) -> Result<String> {
        self.http.list_runs_json(filter)
    }

    /// Stops gracefully: refuses new connections, waits up to [`GRACE`] for
    /// requests and streams in progress, then closes every connection
    /// still open (streams end with an error at their clients). Returns
    /// once the server task has ended and the port is free, and what the
    /// store was left to write is written (waiting up to `GRACE` for
    /// it). Idempotent.
    pub async fn shutdown(&self) {
        self.http.shutdown().await;
        let stop = lock(&self.stop).take();
        let task = lock(&self.task).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(mut task) = task {
            tracing::info!(target: LOG_TARGET, addr = %self.addr, "embedded control plane stopping");
            if tokio::time::timeout(GRACE, &mut task).await.is_err() {
                self.kill.cancel();
                if tokio::time::timeout(GRACE, &mut task).await.is_err() {
                    task.abort();
                    let _ = task.await;
                }
            }
        }
        self.kill.cancel();
        self.stop_listening();
        if let Some(store) = &self.store {
            // What the sessions' ends wrote (their runs re-queued).
            store.flushed(GRACE).await;
        }
    }

    /// Stops listening now and lets go of this copy of the socket: a
    /// connect from then on is refused, not accepted into the backlog and
    /// then reset when the task's copy closes.
    fn stop_listening(&self) {
        if let Some(socket) = lock(&self.listening).take() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A server started on its threads, not yet holding them (so that a
/// start that fails or is dropped midway drops them from outside).
struct Started(Server);

impl Started {
    fn with(mut self, threads: Threads) -> Server {
        self.0.threads = threads;
        self.0
    }
}

impl Drop for Server {
    /// Signals only: never waits for the server task. As a crash would, it
    /// leaves the store as it is now: the store writes nothing from here
    /// on (not half of what the connections' ends would write).
    fn drop(&mut self) {
        if let Some(store) = &self.store {
            store.close();
        }
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
        self.kill.cancel();
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        self.stop_listening();
    }
}
