//! The embedded control plane's handle: blazen-embedded-cp's [`Server`],
//! started from a C options object and stopped on request.

use std::sync::Arc;
use std::time::Duration;

use blazen_cabi_macros::{export, handle};
use blazen_embedded_cp::{Config, Server};

use crate::rt::arg::{Json, Options};
use crate::rt::Result;

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
    inner: Arc<Server>,
}

/// The most threads `threads` may give a control plane.
const MOST_THREADS: usize = 256;

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
    store_replay_limit: Option<usize>,
    max_requeues: Option<u32>,
    http_addr: Option<String>,
    threads: Option<usize>,
}

impl ServerOptions {
    /// The control plane's configuration (the options were checked when
    /// they were decoded).
    fn config(self) -> Result<Config> {
        let finished_ttl = match self.finished_ttl_ms {
            None => Some(blazen_embedded_cp::store::DEFAULT_FINISHED_TTL),
            Some(0) => None,
            // The store keeps whole seconds: round up.
            Some(ms) => Some(Duration::from_secs(ms.div_ceil(1000))),
        };
        Ok(Config {
            tls: crate::tls::pem_paths(&self.cert_path, &self.key_path, &self.ca_path)?,
            bearer_token: self.bearer_token,
            store_url: self.store_url,
            finished_ttl,
            store_replay_limit: self.store_replay_limit,
            max_requeues: self
                .max_requeues
                .unwrap_or(blazen_embedded_cp::DEFAULT_MAX_REQUEUES),
            http_addr: self.http_addr,
            threads: self.threads.and_then(std::num::NonZeroUsize::new),
            on_thread_start: Some(crate::rt::sigpipe::block_for_this_thread),
        })
    }
}

impl crate::rt::arg::CheckOptions for ServerOptions {
    fn check(&self) -> std::result::Result<(), String> {
        crate::tls::pem_triple(&self.cert_path, &self.key_path, &self.ca_path)?;
        if let Some(n) = self.threads {
            if !(1..=MOST_THREADS).contains(&n) {
                return Err(format!(
                    "`threads` must be from 1 to {MOST_THREADS}, not {n}"
                ));
            }
        }
        match &self.store_url {
            Some(url) => blazen_embedded_cp::store::check_url(url),
            None if self.finished_ttl_ms.is_some() || self.store_replay_limit.is_some() => {
                Err("`finished_ttl_ms` and `store_replay_limit` need `store_url`".to_string())
            }
            None => Ok(()),
        }
    }
}

async fn start(bind_addr: &str, options: ServerOptions) -> Result<BlazenControlPlaneServer> {
    let server = Server::start(bind_addr, options.config()?).await?;
    Ok(BlazenControlPlaneServer {
        inner: Arc::new(server),
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
/// (`redis://[USER:PASSWORD@]HOST:PORT/DB`, `rediss://...` for TLS,
/// `redis+sentinel://HOST:PORT[,HOST:PORT...]/PRIMARY/DB` for the primary
/// a set of sentinels names, followed through a failover, or
/// `unix://PATH`: a Redis or Valkey server; TLS files in the query,
/// `?tls_ca=CA.pem&tls_cert=CERT.pem&tls_key=KEY.pem`; credentials are
/// never printed; every query key in the README's "A control plane that
/// survives a restart") to keep queued, running and finished runs there so
/// a new control plane on the same store resumes them, with
/// `finished_ttl_ms` (default 3,600,000, one hour; 0 keeps them; kept in
/// whole seconds, rounded up) for how long finished runs stay describable
/// there and `store_replay_limit` (default 100,000) for how many writes may
/// wait for a store that is down or behind before submissions are refused
/// (PEER / `ControlPlaneStore`, naming the limit); a store not reached
/// within 3 s fails the start with PEER / `ControlPlaneStore`; `max_requeues`
/// (default 3) for how many times a run that lost its worker is re-queued
/// before it fails instead; `http_addr` (`IP:PORT`, port 0 picks one; off
/// when absent) to serve the HTTP side there: Prometheus `/metrics`,
/// `/healthz`, `/readyz`, the JSON run API and the dashboard at `/`, all
/// behind the bearer token when there is one (see the README's "Seeing what
/// the control plane does"), its address given by
/// `blazen_controlplane_server_http_endpoint`; a port that cannot be bound
/// fails the start with PEER / `ControlPlaneTransport`; `threads` (1 to
/// 256, default one per CPU) for how many threads of its own the control
/// plane runs on (see the README's "Threads, signals, valgrind"); other
/// keys are a VALIDATION error).
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
    server.inner.endpoint()
}

/// The port the server listens on (0 for NULL).
#[export]
fn blazen_controlplane_server_port(server: &BlazenControlPlaneServer) -> u16 {
    server.inner.addr().port()
}

/// Stops the server (borrowed): new connections are refused, open streams
/// get up to one second to finish and are then closed. Returns once it has
/// stopped. Blocks the calling thread (for the network only, never for a
/// callback). Idempotent; the handle must still be freed.
#[export(waits)]
fn blazen_controlplane_server_shutdown(server: &BlazenControlPlaneServer) {
    let server = server.inner.clone();
    let _ = crate::rt::call::run_blocking("server shutdown", async move {
        server.shutdown().await;
        Ok(())
    });
}

/// Where the server's HTTP side listens, `http://IP:PORT` (a caller-owned
/// string: free it with `blazen_string_free`), or NULL when it was started
/// without `http_addr` (or `server`, borrowed, is NULL).
#[export]
fn blazen_controlplane_server_http_endpoint(server: &BlazenControlPlaneServer) -> Option<String> {
    server.inner.http_endpoint()
}

/// One page of the runs `server` (borrowed) knows, newest first, as a
/// JSON object `{"runs": [...], "next_cursor": N}` (`next_cursor` null on
/// the last page). Each run: `run_id`, `seq`, `workflow` (null for a run
/// recovered from a store), `status` (`"pending"`, `"running"`,
/// `"completed"`, `"failed"` or `"cancelled"`), `submitted_ms`,
/// `assigned_ms`, `finished_ms`, `duration_ms` (assigned to finished),
/// `node_id`, `error` and `requeues`. The server keeps every unfinished
/// run and the last 10,000 finished ones. `filter_json` (borrowed) is NULL,
/// `null` or an object with any of `status` (one of those names, any
/// case), `workflow` (a name), `limit` (1 to 1,000; default 50) and
/// `before` (a `next_cursor`, for the next page); anything else is a
/// VALIDATION error naming `filter_json`. Does not wait for the network.
#[export(status)]
async fn blazen_controlplane_server_list_runs(
    server: &BlazenControlPlaneServer,
    filter_json: Option<Json>,
) -> Result<String> {
    let filter = filter_json.map_or(serde_json::Value::Null, |j| j.0);
    Ok(server.inner.list_runs_json(&filter)?)
}
