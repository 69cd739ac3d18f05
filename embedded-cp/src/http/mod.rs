//! The embedded control plane's HTTP side, off unless [`Config::http_addr`]
//! names an address: `/metrics` (Prometheus text format), `/healthz`,
//! `/readyz`, a JSON API (`/api/...`) and a live dashboard at `/`, all
//! read from the plane through [`Observer`] (nothing here is on the
//! dispatch path).
//!
//! Every route, the dashboard's files included, needs the control plane's
//! bearer token when it has one (the gRPC side's: [`Config::bearer_token`],
//! else `BLAZEN_PEER_TOKEN` as it was at start): an `Authorization: Bearer
//! TOKEN` header, or the `blazen_token` cookie a browser gets by opening
//! `/?token=TOKEN` once (the answer sets the cookie, `HttpOnly` and
//! `SameSite=Strict`, and redirects to `/`, so the token leaves the address
//! bar). Anything else is refused with 401.
//!
//! Every answer carries a Content-Security-Policy that allows only the
//! dashboard's own script and style (no inline script, no other origin),
//! and the page writes every value from the control plane with
//! `textContent`, so a workflow name, error or event data can never run as
//! script.
//!
//! [`Config::http_addr`]: crate::Config::http_addr
//! [`Config::bearer_token`]: crate::Config::bearer_token

mod api;
mod auth;
mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::common::{GRACE, LOG_TARGET};
use crate::service::observe::{Observer, RunFilter, StoreView};
use crate::{lock, Error, Result};

const PAGE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// The HTTP side of a server: the plane's reader (always there, for the
/// run listing) and the HTTP listener when one was asked for.
pub(crate) struct Side {
    observer: Observer,
    http: Option<Listening>,
}

struct Listening {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Ctx {
    observer: Observer,
    token: Option<Arc<str>>,
}

impl Side {
    /// Binds `addr` (`IP:PORT`, port 0 picks one) and serves it, when
    /// given; `token` guards every route.
    pub(crate) async fn start(
        addr: Option<&str>,
        observer: Observer,
        token: Option<Arc<str>>,
    ) -> Result<Side> {
        let Some(addr) = addr else {
            return Ok(Side {
                observer,
                http: None,
            });
        };
        let addr: SocketAddr = addr.parse().map_err(|e| Error::Invalid {
            param: "http_addr",
            problem: format!("is not an IP:port address ({e})"),
        })?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::peer(
                crate::Subkind::ControlPlaneTransport,
                format!("cannot bind the HTTP side on {addr}: {e}"),
            )
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("local_addr: {e}")))?;
        let ctx = Ctx {
            observer: observer.clone(),
            token,
        };
        let app = router(ctx);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        tracing::info!(target: LOG_TARGET, endpoint = %format!("http://{addr}"), "embedded control plane's HTTP side started");
        Ok(Side {
            observer,
            http: Some(Listening {
                addr,
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Stops the HTTP side: requests in progress get up to [`GRACE`].
    pub(crate) async fn shutdown(&self) {
        let Some(l) = &self.http else { return };
        l.stop.cancel();
        let task = lock(&l.task).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(GRACE, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Where the HTTP side listens, `http://IP:PORT`, when it has one.
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.http.as_ref().map(|l| format!("http://{}", l.addr))
    }

    /// One page of runs, newest first, as JSON text: `{"runs": [...],
    /// "next_cursor": N or null}` (see [`RunFilter::from_json`] for
    /// `filter`, and the README for a run's fields). A bad filter is an
    /// [`Error::Invalid`] naming `filter_json`.
    pub(crate) fn list_runs_json(&self, filter: &serde_json::Value) -> Result<String> {
        let f = RunFilter::from_json(filter).map_err(|problem| Error::Invalid {
            param: "filter_json",
            problem,
        })?;
        Ok(api::page(&self.observer, &f).to_string())
    }
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/", get(page))
        .route(
            "/dashboard.js",
            get(|| async { asset(SCRIPT, "text/javascript") }),
        )
        .route("/dashboard.css", get(|| async { asset(STYLE, "text/css") }))
        .route("/metrics", get(metrics::serve))
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok\n") }))
        .route("/readyz", get(ready))
        .merge(api::routes())
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn_with_state(ctx.clone(), auth::guard))
        .with_state(ctx)
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let kind = format!("{kind}; charset=utf-8");
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn page() -> Response {
    asset(PAGE, "text/html")
}

/// 200 while serving and, with a store, while the store answers; 503
/// naming why not.
async fn ready(State(ctx): State<Ctx>) -> Response {
    match ctx.observer.store().await {
        StoreView::None | StoreView::Up => text(StatusCode::OK, "ready\n"),
        StoreView::Down(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("not ready: the store is down: {why}\n"),
        )
            .into_response(),
    }
}
