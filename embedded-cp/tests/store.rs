//! §12 of docs/upstream.md: with a durable store (a real Redis, started
//! here), a control plane that stops keeps every run, and a new one on the
//! same store runs each exactly once (the crate's recovery lost queued
//! runs' states and duplicated others). Needs `redis-server` (installed by
//! .ci/install-deps); without it the test fails and says so.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blazen_controlplane::client::Client;
use blazen_controlplane::protocol::Assignment;
use blazen_controlplane::worker::{AssignmentContext, AssignmentFailure, AssignmentHandler};
use blazen_core::distributed::{OrchestratorClient, RunStatus};
use common::*;
use futures_util::StreamExt;
use serde_json::json;

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throw-away Redis on a free loopback port, without persistence.
async fn redis() -> (Redis, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (run .ci/install-deps)");
    let up = until(10, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    assert!(up.is_some(), "redis-server did not start");
    (Redis(child), format!("redis://127.0.0.1:{port}/0"))
}

/// The default configuration on the store at `url`.
fn stored(url: &str) -> blazen_embedded_cp::Config {
    blazen_embedded_cp::Config {
        store_url: Some(url.to_string()),
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_a_new_control_plane_on_the_store_runs_every_run_once() {
    let (_redis, url) = redis().await;
    let first = server(stored(&url)).await;
    let c = client(&first).await;
    let hold = Hold::default();
    let _busy = worker(&first, "busy", "kept", 1, hold.clone()).await;
    let mut runs = Vec::new();
    for i in 0..6 {
        runs.push(submit(&c, "kept", json!(i), true).await);
    }
    hold.called(1).await;
    drop(c);
    drop(first); // stops at once, as a crash would
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = server(stored(&url)).await;
    let c = client(&second).await;
    let echo = Echo::default();
    let _w = worker(&second, "after", "kept", 2, echo.clone()).await;
    for (i, run) in runs.into_iter().enumerate() {
        let snap = ended(&c, run).await;
        assert_eq!(snap.status, RunStatus::Completed, "run {i}");
        assert_eq!(snap.output, Some(json!(i)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        echo.calls.load(Ordering::SeqCst),
        6,
        "each run ran once after the restart"
    );
    let attempts = echo.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.iter().filter(|a| **a == 1).count(),
        1,
        "the running one came back as attempt 1: {attempts:?}"
    );
}

/// A run recovered after a restart and then lost again counts both: its
/// next run is attempt 2 (the recovery's attempt 1, then the loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_count_across_a_restart() {
    let (_redis, url) = redis().await;
    let first = server(stored(&url)).await;
    let c = client(&first).await;
    let held = Hold::default();
    let _w = worker(&first, "first", "twice", 1, held.clone()).await;
    let run = submit(&c, "twice", json!(1), true).await;
    held.called(1).await;
    drop(c);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = server(stored(&url)).await;
    let c = client(&second).await;
    let again = Hold::default();
    let lost = worker(&second, "second", "twice", 1, again.clone()).await;
    again.called(1).await;
    lost.vanish();
    let echo = Echo::default();
    let _w = worker(&second, "third", "twice", 1, echo.clone()).await;
    assert_eq!(ended(&c, run).await.status, RunStatus::Completed);
    let before = again.attempts.lock().unwrap().clone();
    assert_eq!(before, [1], "recovered as attempt 1");
    assert_eq!(*echo.attempts.lock().unwrap(), [2], "then lost once more");
}

mod redis_proc;

/// Answers with its input once opened, counting its calls.
#[derive(Clone)]
struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
    calls: Arc<AtomicUsize>,
}

impl Gate {
    fn new() -> Self {
        Gate {
            open: Arc::new(tokio::sync::watch::channel(false).0),
            calls: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl AssignmentHandler for Gate {
    async fn handle(
        &self,
        a: Assignment,
        _ctx: AssignmentContext,
    ) -> Result<serde_json::Value, AssignmentFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.open.subscribe().wait_for(|o| *o).await;
        Ok(serde_json::from_slice(&a.input_json).unwrap_or_default())
    }
}

/// A submission's error text, or `None` when it was accepted.
async fn refusal(c: &Client, workflow: &str) -> Option<String> {
    c.submit_workflow(request(workflow, json!(0)))
        .await
        .err()
        .map(|e| e.to_string())
}

/// `INFO commandstats` calls of `command`.
async fn calls_of(r: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(r)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The bug bench/repro/store_down.py found: a session's end released every
/// run the session had ever claimed, two round trips each, which after a
/// few thousand runs passed the store's 1 s call limit and took a healthy
/// Redis for down (submissions refused). Now each run's claim goes when the
/// run ends, and the session's end releases what it still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ran_thousands_of_runs_leaves_and_the_store_stays_up() {
    const RUNS: usize = 3000;
    let redis = redis_proc::Redis::start(&[]).await;
    let mut r = redis_proc::conn(&redis.url()).await;
    let cp = server(stored(&redis.url())).await;
    let c = client(&cp).await;
    let echo = Echo::default();
    let w = worker(&cp, "busy", "many", 16, echo.clone()).await;
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    for i in 0..RUNS {
        in_flight.push(submit(&c, "many", json!(i), true));
        if in_flight.len() >= 64 {
            runs.push(in_flight.next().await.unwrap());
        }
    }
    while let Some(run) = in_flight.next().await {
        runs.push(run);
    }
    for run in &runs {
        assert_eq!(ended(&c, *run).await.status, RunStatus::Completed);
    }
    println!(
        "{RUNS} runs on the store through one worker in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let claimed: usize = redis::cmd("SCARD")
        .arg("blazen:cp:inflight_runs")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(claimed, 0, "every run's claim was released when it ended");
    let (srem, del) = (
        calls_of(&mut r, "srem").await,
        calls_of(&mut r, "del").await,
    );
    w.vanish();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        refusal(&c, "many").await,
        None,
        "a submission right after the worker left is accepted"
    );
    let srem = calls_of(&mut r, "srem").await - srem;
    let del = calls_of(&mut r, "del").await - del;
    assert!(
        srem == 0 && del <= 4,
        "the session's end cost {srem} SREM and {del} DEL (it held no run)"
    );
    let sets = redis_proc::keys(&redis.url(), "blazen:cp:inflight_by_session:*").await;
    assert!(sets.is_empty(), "no session set is left: {sets:?}");
}

/// `store_replay_limit`: while the store is down, runs already accepted go
/// on and their writes wait; past the limit the refusal says so; once the
/// store is back the writes are made (a new control plane on the store
/// finds every result) and submissions are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_store_that_is_down_up_to_the_replay_limit() {
    const HELD: usize = 20;
    let mut redis = redis_proc::Redis::start(&["--appendfsync", "always"]).await;
    let config = blazen_embedded_cp::Config {
        store_replay_limit: Some(8),
        http_addr: Some("127.0.0.1:0".into()),
        ..stored(&redis.url())
    };
    let cp = server(config.clone()).await;
    let c = client(&cp).await;
    let gate = Gate::new();
    let _w = worker(&cp, "gated", "held", HELD as u32, gate.clone()).await;
    let mut runs = Vec::new();
    for i in 0..HELD {
        runs.push(submit(&c, "held", json!(i), true).await);
    }
    until(10, || async {
        (gate.calls.load(Ordering::SeqCst) == HELD).then_some(())
    })
    .await
    .expect("every run is RUNNING");
    redis.kill();
    gate.open.send_replace(true);
    for run in &runs {
        assert_eq!(ended(&c, *run).await.status, RunStatus::Completed);
    }
    let refused = refusal(&c, "held")
        .await
        .expect("refused while Redis is down");
    println!("refused: {refused}");
    let waiting = writes_waiting(&cp).await;
    assert!(
        waiting >= 8,
        "/metrics shows the writes held for the replay: {waiting}"
    );
    assert!(
        refused.contains("unavailable") && refused.contains("store_replay_limit 8"),
        "the refusal names the store's state and the limit: {refused}"
    );
    assert!(
        refused.contains(&redis.url()[8..]),
        "and the store: {refused}"
    );
    redis.restart().await;
    let back = until(15, || async {
        refusal(&c, "held").await.is_none().then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "submissions are accepted again once Redis is back"
    );
    // The refused submissions left no record: the 20 runs and the one
    // accepted at the end have a state, nothing else.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(writes_waiting(&cp).await, 0, "the replay is done");
    let states = redis_proc::keys(&redis.url(), "blazen:cp:state:*").await;
    assert_eq!(
        states.len(),
        HELD + 1,
        "records of refused submissions: {states:?}"
    );
    drop(c);
    drop(cp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cp = server(config).await;
    let c = client(&cp).await;
    for (i, run) in runs.iter().enumerate() {
        let snap = c
            .describe_workflow(*run)
            .await
            .expect("described from the store");
        assert_eq!(snap.status, RunStatus::Completed, "run {i}");
        assert_eq!(snap.output, Some(json!(i)), "run {i}");
    }
    assert_eq!(
        gate.calls.load(Ordering::SeqCst),
        HELD + 1,
        "none ran twice"
    );
}

/// `blazen_store_writes_waiting` from the control plane's `/metrics`.
async fn writes_waiting(cp: &blazen_embedded_cp::Server) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let endpoint = cp.http_endpoint().expect("the HTTP side is on");
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("read");
    text.lines()
        .find_map(|l| l.strip_prefix("blazen_store_writes_waiting "))
        .unwrap_or_else(|| panic!("no blazen_store_writes_waiting in /metrics: {text}"))
        .trim()
        .parse()
        .expect("a number")
}

/// A run of `workflow` routed to worker `node` (one slot) while Redis is
/// stopped (SIGSTOP), so its claim is still being written.
struct RoutedWhilePaused {
    redis: redis_proc::Redis,
    cp: blazen_embedded_cp::Server,
    c: Client,
    run: uuid::Uuid,
    echo: Echo,
    worker: TestWorker,
}

async fn routed_with_the_store_paused(workflow: &str, node: &'static str) -> RoutedWhilePaused {
    let redis = redis_proc::Redis::start(&[]).await;
    let cp = server(stored(&redis.url())).await;
    let c = client(&cp).await;
    let run = submit(&c, workflow, json!(7), true).await;
    redis.signal("STOP");
    let echo = Echo::default();
    let worker = worker(&cp, node, workflow, 1, echo.clone()).await;
    let routed = until(10, || async {
        let s = c.describe_workflow(run).await.ok()?;
        (s.assigned_to.as_deref() == Some(node)).then_some(())
    })
    .await;
    assert!(routed.is_some(), "the run is routed to `{node}`");
    RoutedWhilePaused {
        redis,
        cp,
        c,
        run,
        echo,
        worker,
    }
}

/// A run routed to a worker that leaves while the routing is still being
/// written to the store (Redis stopped) goes back to its queue and is
/// never handed to that worker: no `status.running` names it, and the next
/// worker runs the run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_requeued_while_its_routing_is_written_is_not_handed_over() {
    let p = routed_with_the_store_paused("late", "first").await;
    let (redis, cp, c, run, first) = (p.redis, p.cp, p.c, p.run, p.echo);
    p.worker.vanish();
    let back = until(10, || async {
        let s = c.describe_workflow(run).await.ok()?;
        (s.status == RunStatus::Pending).then_some(())
    })
    .await;
    assert!(back.is_some(), "the run is back in its queue");
    redis.signal("CONT");
    let second = Echo::default();
    let _w = worker(&cp, "second", "late", 1, second.clone()).await;
    let snap = ended(&c, run).await;
    assert_eq!(snap.status, RunStatus::Completed);
    assert_eq!(snap.output, Some(json!(7)));
    let events = events_of(&c, run).await;
    let running: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == "status.running")
        .map(|e| e.data["node_id"].as_str().unwrap_or("?").to_string())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(running, vec!["second"], "status.running events: {types:?}");
    assert_eq!(first.calls.load(Ordering::SeqCst), 0);
    assert_eq!(second.calls.load(Ordering::SeqCst), 1);
}

/// A run cancelled while its routing is being written to the store is not
/// handed to its worker, and the worker's slot is free again at once: its
/// only slot takes the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_its_routing_is_written_frees_its_slot() {
    let p = routed_with_the_store_paused("slot", "only").await;
    let (redis, c, run, echo, _w, _cp) = (p.redis, p.c, p.run, p.echo, p.worker, p.cp);
    let canceller = c.clone();
    let cancel = tokio::spawn(async move { canceller.cancel_workflow(run).await });
    let cancelled = until(10, || async {
        let s = c.describe_workflow(run).await.ok()?;
        (s.status == RunStatus::Cancelled).then_some(())
    })
    .await;
    assert!(cancelled.is_some(), "the run is cancelled");
    redis.signal("CONT");
    cancel.await.unwrap().expect("cancelled");
    // The store may be refused for a moment after its pause.
    let next = until(15, || async {
        c.submit_workflow(request("slot", json!(2))).await.ok()
    })
    .await
    .expect("accepted once Redis is back")
    .run_id;
    let snap = ended(&c, next).await;
    assert_eq!(snap.status, RunStatus::Completed);
    assert_eq!(snap.output, Some(json!(2)));
    assert_eq!(
        echo.calls.load(Ordering::SeqCst),
        1,
        "only the second run ran"
    );
    let types = event_types(&c, run).await;
    assert!(!types.iter().any(|t| t == "status.running"), "{types:?}");
}

/// The pending lists keep only runs that wait: the entries of runs that
/// were routed are trimmed at run time (the crate's layout only ever
/// appended to them), while a run that waits keeps its entry, and a new
/// control plane on the store still runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_lists_are_trimmed_at_run_time() {
    let redis = redis_proc::Redis::start(&[]).await;
    let url = redis.url();
    let cp = server(stored(&url)).await;
    let c = client(&cp).await;
    let waits = submit(&c, "nobody", json!("w"), true).await;
    let _w = worker(&cp, "trim", "trimmed", 8, Echo::default()).await;
    let mut runs = Vec::new();
    for i in 0..300 {
        runs.push(submit(&c, "trimmed", json!(i), true).await);
    }
    for r in &runs {
        assert_eq!(ended(&c, *r).await.status, RunStatus::Completed);
    }
    let len = |key: &'static str| {
        let url = url.clone();
        async move {
            let mut r = redis_proc::conn(&url).await;
            redis::cmd("LLEN")
                .arg(key)
                .query_async::<u64>(&mut r)
                .await
                .unwrap()
        }
    };
    let trimmed = until(15, || async {
        (len("blazen:cp:pending:workflow:trimmed:0").await == 0).then_some(())
    })
    .await;
    assert!(
        trimmed.is_some(),
        "the 300 routed runs' entries are trimmed"
    );
    assert_eq!(len("blazen:cp:pending:workflow:nobody:0").await, 1);
    drop(c);
    drop(cp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cp = server(stored(&url)).await;
    let c = client(&cp).await;
    let _w = worker(&cp, "late", "nobody", 1, Echo::default()).await;
    let snap = ended(&c, waits).await;
    assert_eq!(snap.output, Some(json!("w")));
}
