//! The run journal and the repairs built on it: a subscription opened
//! after its run started sees all of it; answers to input requests the run
//! never raised are refused; runs nobody can take are announced.

mod common;

use std::time::Duration;

use blazen_core::distributed::{OrchestratorClient, RunStatus};
use common::*;
use futures_util::StreamExt;
use serde_json::json;

/// Submitting, then subscribing, misses nothing (the crate's subscription
/// starts "from now on" and lost `status.running` and `input.request`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_opened_after_the_submission_sees_every_event() {
    let s = server(config()).await;
    let c = client(&s).await;
    let _w = worker(&s, "asker", "ask", 4, Ask).await;
    for i in 0..20 {
        let run = submit(&c, "ask", json!(null), false).await;
        // Late on purpose: the run has emitted its first events by now.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut stream = c.subscribe_run_events(run).await.expect("subscribed");
        let mut types = Vec::new();
        while let Ok(Some(Ok(ev))) =
            tokio::time::timeout(Duration::from_secs(20), stream.next()).await
        {
            if ev.event_type == "input.request" {
                let id = ev.data["request_id"].as_str().unwrap().to_string();
                c.respond_to_input(run, id, json!(i))
                    .await
                    .expect("answered");
            }
            let end = ev.event_type == "status.completed";
            types.push(ev.event_type);
            if end {
                break;
            }
        }
        types.sort();
        assert_eq!(
            types,
            [
                "input.request",
                "progress",
                "status.completed",
                "status.running"
            ],
            "run {i}"
        );
    }
}

/// A finished run's subscription replays it, its end last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_is_replayed() {
    let s = server(config()).await;
    let c = client(&s).await;
    let run = submit(&c, "later", json!(7), true).await;
    let _w = worker(&s, "later", "later", 1, Echo::default()).await;
    assert_eq!(ended(&c, run).await.status, RunStatus::Completed);
    let types = event_types(&c, run).await;
    assert_eq!(
        types,
        ["status.waiting", "status.running", "status.completed"]
    );
}

/// An answer to a request the run never raised, or one already answered,
/// is refused naming what does await an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_requests_never_raised_are_refused() {
    let s = server(config()).await;
    let c = client(&s).await;
    let _w = worker(&s, "asker", "ask", 1, Ask).await;
    let run = submit(&c, "ask", json!(null), false).await;
    let mut stream = c.subscribe_run_events(run).await.expect("subscribed");
    let request = loop {
        let ev = stream.next().await.expect("an event").expect("ok");
        if ev.event_type == "input.request" {
            break ev.data["request_id"].as_str().unwrap().to_string();
        }
    };
    let e = c
        .respond_to_input(run, "nope".into(), json!(1))
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("not found") && e.contains("nope") && e.contains(&request),
        "{e}"
    );
    c.respond_to_input(run, request.clone(), json!(1))
        .await
        .expect("the awaited one");
    let again = c.respond_to_input(run, request, json!(2)).await;
    assert!(again.is_err(), "a second answer is refused");
    assert_eq!(ended(&c, run).await.output, Some(json!(1)));
}

/// A run queued for a workflow no connected worker serves gets
/// `status.waiting`, naming the versions that are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_nobody_can_take_is_announced() {
    let s = server(config()).await;
    let c = client(&s).await;
    let run = submit(&c, "nobody", json!(null), true).await;
    let mut stream = c.subscribe_run_events(run).await.expect("subscribed");
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event")
        .expect("open")
        .expect("ok");
    assert_eq!(ev.event_type, "status.waiting");
    assert_eq!(ev.data["reason"], "no_worker");
    assert_eq!(ev.data["capability"], "workflow:nobody");
    assert_eq!(ev.data["connected_versions"], json!([]));
}

/// Only the last 10,000 runs that ended keep a journal (the journal's
/// bound); a subscription to an older ended run gets its terminal event,
/// from the run table, and its stream ends with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ended_before_the_last_ten_thousand_still_gets_its_end() {
    let s = server(config()).await;
    let c = client(&s).await;
    let first = submit(&c, "nobody", json!(0), true).await;
    c.cancel_workflow(first).await.expect("cancelled");
    futures_util::stream::iter(0..10_050)
        .for_each_concurrent(64, |i| {
            let c = c.clone();
            async move {
                let run = submit(&c, "nobody", json!(i), true).await;
                c.cancel_workflow(run).await.expect("cancelled");
            }
        })
        .await;
    let types = event_types(&c, first).await;
    assert_eq!(types, ["status.cancelled"], "its end alone");
    // A run still among the last 10,000 is replayed whole.
    let last = submit(&c, "nobody", json!(1), true).await;
    c.cancel_workflow(last).await.expect("cancelled");
    assert_eq!(
        event_types(&c, last).await,
        ["status.waiting", "status.cancelled"]
    );
}
