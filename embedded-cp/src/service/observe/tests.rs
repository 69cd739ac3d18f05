//! Tests of the run index, its counts and the listing's filter.
#![cfg(test)]

use blazen_core::distributed::{RunEvent, RunStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::RunErrorKind;

use super::counters::CANCELLED;
use super::filter::RunFilter;
use super::index::{cut, Index, EVENT_DATA_MAX, KEEP_FINISHED};

fn ev(run_id: Uuid, ty: &str, data: Value, at: u64) -> std::sync::Arc<RunEvent> {
    std::sync::Arc::new(RunEvent {
        run_id,
        event_type: ty.to_string(),
        data,
        timestamp_ms: at,
    })
}

#[test]
fn counts_follow_events_whichever_comes_first() {
    let mut i = Index::default();
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    // a: submitted, then run and completed.
    i.submitted(a, "w", 1000);
    i.record(&ev(a, "status.running", json!({"node_id": "n1"}), 1010));
    assert_eq!(i.counts.live["w"].running, 1);
    i.record(&ev(a, "status.completed", json!({"output": 1}), 1110));
    // b: its running and failure events beat the record of its
    // submission; a deadline failure counts as timed out too.
    i.record(&ev(b, "status.running", json!({"node_id": "n1"}), 1001));
    i.record(&ev(b, "status.requeued", json!({"node_id": "n1"}), 1002));
    let err = RunErrorKind::Timeout.tag("late");
    i.record(&ev(b, "status.failed", json!({ "error": err }), 1003));
    assert!(!i.counts.by_workflow.contains_key("v"));
    i.submitted(b, "v", 1000);
    assert_eq!(i.counts.by_workflow["w"], [1, 1, 0, 0, 0, 0]);
    assert_eq!(i.counts.by_workflow["v"], [1, 0, 1, 0, 1, 1]);
    assert_eq!(i.counts.live["w"].running, 0);
    assert_eq!(i.counts.live["v"].pending, 0);
    assert_eq!(i.counts.live["v"].running, 0);
    // A late event changes nothing.
    i.record(&ev(a, "status.failed", json!({"error": "x"}), 2000));
    assert_eq!(i.counts.by_workflow["w"], [1, 1, 0, 0, 0, 0]);
    assert_eq!(i.counts.queue_latency.count, 2);
    assert_eq!(i.counts.run_latency.count, 1);
    assert!((i.counts.run_latency.sum - 0.1).abs() < 1e-9);
}

#[test]
fn finished_runs_beyond_the_bound_are_forgotten_oldest_first() {
    let mut i = Index::default();
    let ids: Vec<Uuid> = (0..KEEP_FINISHED + 5).map(|_| Uuid::new_v4()).collect();
    for (n, id) in ids.iter().enumerate() {
        i.submitted(*id, "w", n as u64);
        i.record(&ev(*id, "status.cancelled", json!({}), n as u64));
    }
    assert_eq!(i.runs.len(), KEEP_FINISHED);
    assert!(!i.runs.contains_key(&ids[4]));
    assert!(i.runs.contains_key(&ids[5]));
    assert_eq!(
        i.counts.by_workflow["w"][CANCELLED],
        (KEEP_FINISHED + 5) as u64
    );
}

#[test]
fn filters_refuse_bad_input_with_why() {
    let ok = RunFilter::from_json(&json!({"status": "FAILED", "limit": 10, "before": 7}));
    assert_eq!(
        ok,
        Ok(RunFilter {
            workflow: None,
            status: Some(RunStatus::Failed),
            limit: 10,
            before: Some(7)
        })
    );
    for (bad, why) in [
        (json!([]), "JSON object"),
        (json!({"status": "done"}), "`status` must be"),
        (json!({"status": 3}), "`status` must be a string"),
        (json!({"limit": 0}), "`limit` must be"),
        (json!({"limit": 1001}), "`limit` must be"),
        (json!({"limit": "5"}), "`limit` must be"),
        (json!({"before": -1}), "`before` must be"),
        (json!({"page": 1}), "unknown key `page`"),
    ] {
        let e = RunFilter::from_json(&bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn long_event_data_is_cut() {
    let big = json!({"x": "y".repeat(EVENT_DATA_MAX)});
    assert_eq!(cut(&big)["truncated"], json!(true));
    let len = serde_json::to_string(&big).unwrap().len();
    assert_eq!(cut(&big)["json_bytes"], json!(len));
    assert_eq!(cut(&json!({"a": 1})), json!({"a": 1}));
    // `"` + text + `"` exactly at the limit is kept; one byte more is cut.
    let at_limit = json!("z".repeat(EVENT_DATA_MAX - 2));
    assert_eq!(cut(&at_limit), at_limit);
    let over = json!("z".repeat(EVENT_DATA_MAX - 1));
    assert_eq!(cut(&over)["json_bytes"], json!(EVENT_DATA_MAX + 1));
}

#[test]
fn history_samples_are_per_second_deltas_and_bounded() {
    use super::history::HISTORY;
    let mut i = Index::default();
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    i.submitted(a, "w", 0);
    i.submitted(b, "w", 0);
    i.record(&ev(a, "status.running", json!({"node_id": "n1"}), 10));
    i.sample(1000);
    i.record(&ev(a, "status.completed", json!({}), 1500));
    i.record(&ev(b, "status.cancelled", json!({}), 1600));
    i.sample(2000);
    i.sample(3000);
    let h = i.history.samples();
    let got: Vec<_> = h
        .iter()
        .map(|s| {
            (
                s.t_ms,
                s.pending,
                s.running,
                s.submitted,
                s.completed,
                s.cancelled,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1000, 1, 1, 2, 0, 0),
            (2000, 0, 0, 0, 1, 1),
            (3000, 0, 0, 0, 0, 0)
        ]
    );
    for t in 0..HISTORY as u64 + 10 {
        i.sample(4000 + t * 1000);
    }
    let h = i.history.samples();
    assert_eq!(h.len(), HISTORY);
    assert_eq!(h[0].t_ms, 4000 + 10 * 1000);
}
