//! §12 of docs/upstream.md: with a durable store (a real Redis, started
//! here), a control plane that stops keeps every run, and a new one on the
//! same store runs each exactly once (the crate's recovery lost queued
//! runs' states and duplicated others). Needs `redis-server` (installed by
//! .ci/install-deps); without it the test fails and says so.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use blazen_core::distributed::RunStatus;
use common::*;
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
