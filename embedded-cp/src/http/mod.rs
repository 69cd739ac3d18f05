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
mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::server::{Server, GRACE, LOG_TARGET};
use crate::service::observe::{Observer, RunFilter};
use crate::{lock, Error, Result};

/// The cookie the dashboard's token lives in.
const COOKIE: &str = "blazen_token";

/// What every answer is allowed to load and run: the dashboard's own
/// script and style, fetches to this origin, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

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
}

impl Server {
    /// Where the HTTP side listens, `http://IP:PORT`, when it has one.
    pub fn http_endpoint(&self) -> Option<String> {
        self.http
            .http
            .as_ref()
            .map(|l| format!("http://{}", l.addr))
    }

    /// One page of runs, newest first, as JSON text: `{"runs": [...],
    /// "next_cursor": N or null}` (see [`RunFilter::from_json`] for
    /// `filter`, and the README for a run's fields). A bad filter is an
    /// [`Error::Invalid`] naming `filter_json`.
    pub fn list_runs_json(&self, filter: &serde_json::Value) -> Result<String> {
        let f = RunFilter::from_json(filter).map_err(|problem| Error::Invalid {
            param: "filter_json",
            problem,
        })?;
        Ok(api::page(&self.http.observer, &f).to_string())
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
        .layer(middleware::from_fn_with_state(ctx.clone(), guard))
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
    use crate::service::observe::StoreView;
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

/// Constant-time comparison of two tokens.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The token a request presents: its bearer header, else its cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
    })
}

/// The token in a query string's `token` parameter.
fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded_token(query?)
}

fn form_urlencoded_token(query: &str) -> Option<String> {
    axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
        &format!("/?{query}").parse().ok()?,
    )
    .ok()?
    .0
    .remove("token")
}

/// Checks the token (see the module's doc), bootstraps the cookie from
/// `/?token=`, and adds the security headers to every answer.
async fn guard(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let mut resp = match &ctx.token {
        None => next.run(req).await,
        Some(token) => {
            if req.uri().path() == "/" {
                if let Some(t) = query_token(req.uri().query()) {
                    return secured(bootstrap(token, &t));
                }
            }
            match presented(req.headers()) {
                Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(req).await,
                _ => refused(req.uri().path() == "/"),
            }
        }
    };
    resp = secured(resp);
    resp
}

/// The answer to `/?token=T`: the cookie and a redirect to `/` when `T`
/// is the token, else a refusal.
fn bootstrap(token: &str, offered: &str) -> Response {
    if !same(offered.as_bytes(), token.as_bytes()) {
        return refused(true);
    }
    // RFC 6265's cookie-octet: no space, quote, comma, semicolon or backslash.
    let fits = token
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\'));
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) if fits => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            resp
        }
        // A token that cannot be a cookie value: the header is the way.
        _ => text(
            StatusCode::BAD_REQUEST,
            "this token cannot be kept in a cookie; send it as an Authorization: Bearer header\n",
        ),
    }
}

/// 401, with a page that says how to get in for `/`.
fn refused(page: bool) -> Response {
    let body = if page {
        "401: this control plane needs its bearer token. Open /?token=TOKEN once \
         (the token is then kept in a cookie), or send Authorization: Bearer TOKEN.\n"
    } else {
        "401: missing or wrong bearer token (Authorization: Bearer TOKEN)\n"
    };
    let mut resp = text(StatusCode::UNAUTHORIZED, body);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"blazen\""),
    );
    resp
}

fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; blazen_token=s3"),
        );
        assert_eq!(presented(&h), Some("s3"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t1"));
        assert_eq!(presented(&h), Some("t1"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert_eq!(query_token(Some("token=a%2Bb")), Some("a+b".to_string()));
        assert_eq!(query_token(Some("x=1")), None);
    }
}
