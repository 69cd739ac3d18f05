//! One test per repair in docs/upstream.md, against a real control plane
//! on a loopback port, the crate's own client and workers. Each test is
//! named after the section it covers and fails on blazen-controlplane
//! 0.7.0's own behaviour.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use blazen_core::distributed::RunStatus;
use common::*;
use futures_util::StreamExt;
use serde_json::json;

/// §1: a worker that connects behind 64 or more queued runs gets them all
/// (the crate's session deadlocked at 64).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_a_worker_connecting_behind_200_queued_runs_gets_them_all() {
    let s = server(config()).await;
    let c = client(&s).await;
    let mut runs = Vec::new();
    for i in 0..200 {
        runs.push(submit(&c, "backlog", json!(i), true).await);
    }
    let echo = Echo::default();
    let _w = worker(&s, "late", "backlog", 8, echo.clone()).await;
    for (i, run) in runs.into_iter().enumerate() {
        let snap = ended(&c, run).await;
        assert_eq!(snap.status, RunStatus::Completed, "run {i}");
        assert_eq!(snap.output, Some(json!(i)));
    }
    assert_eq!(echo.calls.load(Ordering::SeqCst), 200);
}

/// §2: a backlog spreads over the workers (the crate put it all on the
/// first, whose in-flight count it only learnt from heartbeats). The
/// server's count is what it has forwarded, so a burst of submissions,
/// routed outside the drainer, can put one or two runs over a worker's
/// cap (printed here, measured 3 to 4 on a cap of 2); blazen-cabi's
/// worker holds those before its handler, which tests/c/test_backlog.c
/// checks against the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_max_in_flight_holds_and_a_backlog_spreads() {
    let s = server(config()).await;
    let c = client(&s).await;
    let (a, b) = (
        Echo::slow(Duration::from_millis(20)),
        Echo::slow(Duration::from_millis(20)),
    );
    let _wa = worker(&s, "a", "spread", 2, a.clone()).await;
    let _wb = worker(&s, "b", "spread", 2, b.clone()).await;
    let mut runs = Vec::new();
    for i in 0..40 {
        runs.push(submit(&c, "spread", json!(i), true).await);
    }
    for run in runs {
        assert_eq!(ended(&c, run).await.status, RunStatus::Completed);
    }
    // The crate's worker runs whatever it is sent: its peaks are the
    // control plane's admission alone.
    let (pa, pb) = (a.peak.load(Ordering::SeqCst), b.peak.load(Ordering::SeqCst));
    println!("server side alone: peaks {pa} / {pb} with max_in_flight 2");
    assert!(
        pa <= 2 && pb <= 2,
        "a worker was sent more than max_in_flight: {pa} / {pb}"
    );
    let (na, nb) = (
        a.calls.load(Ordering::SeqCst),
        b.calls.load(Ordering::SeqCst),
    );
    assert_eq!(na + nb, 40);
    assert!(na >= 8 && nb >= 8, "spread over both workers: {na} / {nb}");
}

/// §3 and §11: queued runs are routed when results come back, not only
/// when a worker connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_queued_runs_are_routed_as_results_come_back() {
    let s = server(config()).await;
    let c = client(&s).await;
    let echo = Echo::slow(Duration::from_millis(5));
    let _w = worker(&s, "one", "serial", 1, echo.clone()).await;
    let mut runs = Vec::new();
    for i in 0..30 {
        runs.push(submit(&c, "serial", json!(i), true).await);
    }
    for run in runs {
        assert_eq!(ended(&c, run).await.status, RunStatus::Completed);
    }
    let peak = echo.peak.load(Ordering::SeqCst);
    println!("server side alone: peak {peak} with max_in_flight 1 (see s02)");
    assert_eq!(peak, 1, "the one slot was exceeded or never used");
}

/// §4: a lost worker's runs go back to the queue with a `status.requeued`
/// event, and the re-run's `attempt` counts the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_a_lost_workers_run_is_requeued_announced_and_counted() {
    let s = server(config()).await;
    let c = client(&s).await;
    let hold = Hold::default();
    let a = worker(&s, "doomed", "lost", 1, hold.clone()).await;
    let run = submit(&c, "lost", json!("x"), true).await;
    hold.called(1).await;
    a.vanish();
    let echo = Echo::default();
    let _b = worker(&s, "heir", "lost", 1, echo.clone()).await;
    assert_eq!(ended(&c, run).await.status, RunStatus::Completed);
    let types = event_types(&c, run).await;
    assert!(types.contains(&"status.requeued".to_string()), "{types:?}");
    assert_eq!(*hold.attempts.lock().unwrap(), [0]);
    assert_eq!(*echo.attempts.lock().unwrap(), [1]);
}

/// §4, bounded: a run that loses its worker more than `max_requeues`
/// times fails, saying why, instead of looping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_a_run_that_keeps_losing_its_worker_fails_after_max_requeues() {
    let s = server(blazen_embedded_cp::Config {
        max_requeues: 1,
        ..config()
    })
    .await;
    let c = client(&s).await;
    let run = submit(&c, "poison", json!(null), true).await;
    for (n, node) in ["p0", "p1"].iter().enumerate() {
        let hold = Hold::default();
        let w = worker(&s, node, "poison", 1, hold.clone()).await;
        hold.called(1).await;
        assert_eq!(*hold.attempts.lock().unwrap(), [n as u32]);
        w.vanish();
    }
    let snap = ended(&c, run).await;
    assert_eq!(snap.status, RunStatus::Failed);
    let error = snap.error.unwrap_or_default();
    assert!(
        error.starts_with("[Workflow] the run lost its worker 2 times")
            && error.contains("max_requeues (1)"),
        "{error}"
    );
}

/// §5: a second session for a node id already connected is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_a_second_worker_with_a_connected_node_id_is_refused() {
    let s = server(config()).await;
    let first = worker(&s, "twin", "twin", 1, Echo::default()).await;
    let relayed = common::relay::Relay::start(&s.endpoint()).await.unwrap();
    let config = blazen_controlplane::worker::WorkerConfig::new(relayed.endpoint, "twin")
        .with_retry(blazen_controlplane::worker::RetryPolicy {
            max_attempts: Some(1),
            ..Default::default()
        });
    let second = blazen_controlplane::worker::Worker::connect(config).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), second.run(Echo::default()))
        .await
        .expect("the second worker's run ends");
    let e = r.expect_err("refused").to_string();
    assert!(
        e.contains("already connected") || e.contains("AlreadyExists"),
        "{e}"
    );
    assert!(
        !first.run.is_finished(),
        "the first worker keeps its session"
    );
}

/// §6: `deadline_ms` fails a run that is still queued when it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_a_deadline_fails_a_queued_run_with_timeout() {
    let s = server(config()).await;
    let c = client(&s).await;
    let run = submit_with(&c, "nobody", json!(null), true, Some(200)).await;
    let snap = ended(&c, run).await;
    assert_eq!(snap.status, RunStatus::Failed);
    let error = snap.error.unwrap_or_default();
    assert!(
        error.starts_with("[Timeout] the run's deadline_ms (200) passed while it was PENDING"),
        "{error}"
    );
}

/// §7: results that arrive before their routing is recorded still end
/// their runs (none is left RUNNING).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_fast_results_end_every_run() {
    let s = server(config()).await;
    let c = client(&s).await;
    let watcher = client(&s).await;
    let mut all = watcher
        .subscribe_all(Vec::new())
        .await
        .expect("subscribe_all");
    let _w = worker(&s, "fast", "fast", 16, Echo::default()).await;
    let mut runs = Vec::new();
    for i in 0..300 {
        runs.push(submit(&c, "fast", json!(i), false).await);
    }
    for run in &runs {
        assert_eq!(ended(&c, *run).await.status, RunStatus::Completed);
    }
    // Every run's status.running came before its status.completed.
    let mut running = std::collections::HashSet::new();
    let mut completed = 0;
    while completed < runs.len() {
        let ev = tokio::time::timeout(Duration::from_secs(10), all.next())
            .await
            .expect("an event")
            .expect("stream open")
            .expect("event");
        match ev.event_type.as_str() {
            "status.running" => assert!(running.insert(ev.run_id), "running twice"),
            "status.completed" => {
                assert!(
                    running.contains(&ev.run_id),
                    "completed before running: {}",
                    ev.run_id
                );
                completed += 1;
            }
            _ => {}
        }
    }
}

/// §13: a drained worker whose run was in flight returns once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_a_drained_worker_with_a_run_in_flight_returns() {
    let s = server(config()).await;
    let c = client(&s).await;
    let w = worker(
        &s,
        "drained",
        "drain",
        1,
        Echo::slow(Duration::from_millis(300)),
    )
    .await;
    let run = submit(&c, "drain", json!(1), true).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.drain_worker("drained".into(), false)
        .await
        .expect("drain");
    assert_eq!(ended(&c, run).await.status, RunStatus::Completed);
    let r = tokio::time::timeout(Duration::from_secs(10), w.run)
        .await
        .expect("the drained worker's run returns");
    assert!(matches!(r, Ok(Ok(()))), "{r:?}");
}
