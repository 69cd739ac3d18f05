//! The store's key layout is blazen-controlplane 0.7.0's: the crate's own
//! `ValkeyAssignmentStore` reads what this control plane writes (a batch of
//! writes goes to Redis as a few multi-key commands, not one per record,
//! and no per-session claim sets, so the layout is checked here and not
//! only by this control plane's recovery). Against a real Redis.

mod common;
mod redis_proc;

use std::collections::HashSet;

use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::server::ValkeyAssignmentStore;
use blazen_core::distributed::{RunStatus, WorkerCapability};
use common::*;
use redis_proc::Redis;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crates_store_reads_the_runs_this_control_plane_wrote() {
    let redis = Redis::start(&[]).await;
    let cp = server(blazen_embedded_cp::Config {
        store_url: Some(redis.url()),
        ..config()
    })
    .await;
    let c = client(&cp).await;
    let hold = Hold::default();
    let _held = worker(&cp, "held", "layout", 1, hold.clone()).await;
    let running = submit(&c, "layout", json!("a"), true).await;
    hold.called(1).await;
    let queued = [
        submit(&c, "layout", json!("b"), true).await,
        submit(&c, "layout", json!("c"), true).await,
    ];
    let echo = Echo::default();
    let _echo = worker(&cp, "echo", "done", 1, echo.clone()).await;
    let done = submit(&c, "done", json!({"x": 1}), true).await;
    assert_eq!(ended(&c, done).await.status, RunStatus::Completed);

    let crate_store = ValkeyAssignmentStore::new(&redis.url())
        .await
        .expect("the crate's store connects");
    assert_eq!(
        crate_store
            .list_orphaned_inflight(&HashSet::new())
            .await
            .unwrap(),
        [running],
        "the running run is claimed, with its session"
    );
    for (run, status) in [
        (running, RunStatus::Running),
        (queued[0], RunStatus::Pending),
        (queued[1], RunStatus::Pending),
    ] {
        let a = crate_store
            .get_assignment(run)
            .await
            .unwrap()
            .expect("an assignment record");
        assert_eq!((a.run_id, a.workflow_name.as_str()), (run, "layout"));
        let state = crate_store.get_state(run).await.unwrap().expect("a state");
        assert_eq!(state.status, status, "run {run}");
    }
    assert!(
        crate_store.get_assignment(done).await.unwrap().is_none(),
        "an ended run's assignment is deleted"
    );
    let state = crate_store.get_state(done).await.unwrap().expect("kept");
    assert_eq!(state.status, RunStatus::Completed);
    assert_eq!(state.output, Some(json!({"x": 1})));

    let cap = WorkerCapability {
        kind: "workflow:layout".into(),
        version: 0,
    };
    let caps = crate_store.list_pending_capabilities().await.unwrap();
    assert!(caps.contains(&cap), "{caps:?}");
    let mut entries = Vec::new();
    while let Some((run, _tags)) = crate_store.dequeue_pending(&cap).await.unwrap() {
        entries.push(run);
    }
    let waiting: Vec<_> = entries.iter().filter(|r| queued.contains(r)).collect();
    assert_eq!(waiting, [&queued[0], &queued[1]], "in submission order");
    let sets = redis_proc::keys(&redis.url(), "blazen:cp:inflight_by_session:*").await;
    assert!(sets.is_empty(), "no per-session set is written: {sets:?}");
}
