//! The JSON API the dashboard polls and scripts read:
//!
//! - `GET /api/overview`: counters, live counts, runs by status, workers,
//!   store, bus figures and the per-second history;
//! - `GET /api/workers`: the connected workers;
//! - `GET /api/runs?status=S&workflow=W&limit=N&before=C`: one page of
//!   runs, newest first, and the `next_cursor` for `before`;
//! - `GET /api/runs/{run_id}`: one run, the control plane's snapshot of
//!   it and its recent events.
//!
//! A bad parameter is a 400 with `{"error": why}`; an unknown run a 404.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use uuid::Uuid;

use super::Ctx;
use crate::service::observe::{status_text, Observer, RunFilter, StoreView, COUNTERS};

pub(super) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/workers", get(workers))
        .route("/api/runs", get(runs))
        .route("/api/runs/{run_id}", get(run))
}

pub(super) fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn bad(why: String) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": why }))
}

/// One page of runs for `f`.
pub(super) fn page(o: &Observer, f: &RunFilter) -> Value {
    let (runs, next) = o.list(f);
    json!({
        "runs": runs.iter().map(|e| e.to_json(false)).collect::<Vec<_>>(),
        "next_cursor": next,
    })
}

fn workers_json(o: &Observer) -> Value {
    o.workers()
        .into_iter()
        .map(|w| {
            json!({
                "node_id": w.node_id,
                "in_flight": w.in_flight,
                "max_in_flight": w.max_in_flight,
                "admission": w.admission,
                "capabilities": w.capabilities,
                "connected_at_ms": w.connected_at_ms,
            })
        })
        .collect()
}

async fn workers(State(ctx): State<Ctx>) -> Response {
    json_response(StatusCode::OK, &workers_json(&ctx.observer))
}

async fn overview(State(ctx): State<Ctx>) -> Response {
    let o = &ctx.observer;
    let s = o.snapshot().await;
    let totals: serde_json::Map<String, Value> = COUNTERS
        .iter()
        .zip(s.totals)
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let by_status: serde_json::Map<String, Value> = o
        .by_status()
        .into_iter()
        .map(|(st, n)| (status_text(st).to_string(), json!(n)))
        .collect();
    let (pending, running) = s
        .live
        .values()
        .fold((0, 0), |(p, r), l| (p + l.pending, r + l.running));
    let store = match &s.store {
        StoreView::None => json!({"configured": false}),
        StoreView::Up => json!({"configured": true, "up": true}),
        StoreView::Down(why) => json!({"configured": true, "up": false, "error": why}),
    };
    let v = json!({
        "now_ms": crate::service::observe::now(),
        "totals": totals,
        "by_status": by_status,
        "pending": pending,
        "running": running,
        "indexed": s.indexed,
        "workers": workers_json(o),
        "store": store,
        "events": {"published": s.events_published, "dropped": s.events_dropped},
        "history": o.history(),
    });
    json_response(StatusCode::OK, &v)
}

async fn runs(State(ctx): State<Ctx>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut f = RunFilter {
        limit: RunFilter::DEFAULT_LIMIT,
        ..RunFilter::default()
    };
    for (k, v) in q {
        let set = match k.as_str() {
            "status" if v.is_empty() => Ok(()),
            "status" => RunFilter::status(&v).map(|s| f.status = Some(s)),
            "workflow" => {
                f.workflow = Some(v);
                Ok(())
            }
            "limit" => RunFilter::limit(&v).map(|n| f.limit = n),
            "before" => RunFilter::cursor(&v).map(|c| f.before = Some(c)),
            _ => Err(format!(
                "unknown parameter `{}` (expected `status`, `workflow`, `limit` or `before`)",
                k.chars().take(64).collect::<String>()
            )),
        };
        if let Err(why) = set {
            return bad(why);
        }
    }
    json_response(StatusCode::OK, &page(&ctx.observer, &f))
}

async fn run(State(ctx): State<Ctx>, Path(run_id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&run_id) else {
        return bad("`run_id` must be a UUID".to_string());
    };
    match ctx.observer.run(id) {
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no run {id} is known here")}),
        ),
        Some((entry, snapshot)) => {
            let mut v = match entry {
                Some(e) => e.to_json(true),
                None => json!({"run_id": id.to_string(), "events": []}),
            };
            v["snapshot"] = snapshot.unwrap_or(Value::Null);
            json_response(StatusCode::OK, &v)
        }
    }
}
