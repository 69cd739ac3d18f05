//! The run journal's bounds and ordering.

use super::*;

fn ev(run_id: Uuid, event_type: &str, data: serde_json::Value) -> Arc<RunEvent> {
    Arc::new(RunEvent {
        run_id,
        event_type: event_type.into(),
        data,
        timestamp_ms: 0,
    })
}

#[test]
fn a_late_subscriber_gets_every_event_once_in_order() {
    let j = Journal::default();
    let run = Uuid::new_v4();
    j.record(ev(run, "status.running", serde_json::json!({})));
    j.record(ev(run, "progress", serde_json::json!({"n": 1})));
    let (backlog, mut rx) = j.join(run, Known::Live).unwrap();
    j.record(ev(run, "status.completed", serde_json::json!({})));
    let types: Vec<_> = backlog.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["status.running", "progress"]);
    assert_eq!(rx.try_recv().unwrap().event_type, "status.completed");
    assert!(rx.try_recv().is_err());
}

#[test]
fn an_unknown_run_gets_no_journal() {
    let j = Journal::default();
    assert!(j.join(Uuid::new_v4(), Known::No).is_none());
}

#[test]
fn the_bound_never_drops_an_awaited_input_request() {
    let j = Journal::default();
    let run = Uuid::new_v4();
    j.record(ev(
        run,
        "input.request",
        serde_json::json!({"request_id": "r1"}),
    ));
    for n in 0..(JOURNAL_EVENTS + 10) {
        j.record(ev(run, "progress", serde_json::json!({ "n": n })));
    }
    let (backlog, _rx) = j.join(run, Known::Live).unwrap();
    assert_eq!(backlog.len(), JOURNAL_EVENTS);
    assert_eq!(backlog[0].event_type, "input.request");
    assert_eq!(backlog.last().unwrap().data["n"], JOURNAL_EVENTS + 9);
    assert!(matches!(j.awaited(run, "r1"), Awaited::Yes));
    match j.awaited(run, "r2") {
        Awaited::No(ids) => assert_eq!(ids, ["r1"]),
        _ => panic!("r2 should be refused"),
    }
    j.answered(run, "r1");
    assert!(matches!(j.awaited(run, "r1"), Awaited::No(_)));
}

#[test]
fn gaps_and_ended_runs_leave_answers_unchecked() {
    let j = Journal::default();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    j.record(ev(a, "status.running", serde_json::json!({})));
    j.record(ev(b, "status.completed", serde_json::json!({})));
    j.lost_some();
    assert!(matches!(j.awaited(a, "x"), Awaited::Unknown));
    assert!(matches!(j.awaited(b, "x"), Awaited::Unknown));
}

#[test]
fn only_the_latest_ended_runs_keep_their_journals() {
    let j = Journal::default();
    let runs: Vec<Uuid> = (0..JOURNAL_ENDED_MOST + 3)
        .map(|_| Uuid::new_v4())
        .collect();
    let live = Uuid::new_v4();
    j.record(ev(live, "status.running", serde_json::json!({})));
    for run in &runs {
        j.record(ev(*run, "status.running", serde_json::json!({})));
        j.record(ev(*run, "status.completed", serde_json::json!({})));
    }
    let kept = |run: Uuid| j.join(run, Known::No).map(|(backlog, _)| backlog.len());
    for (i, run) in runs.iter().enumerate() {
        let want = if i < 3 { None } else { Some(2) };
        assert_eq!(kept(*run), want, "ended run {i}");
    }
    assert_eq!(kept(live), Some(1), "a live run's journal is not counted");
}

#[test]
fn a_forgotten_ended_run_gets_its_terminal_event_alone() {
    let j = Journal::default();
    let run = Uuid::new_v4();
    let end = ev(run, "status.completed", serde_json::json!({"output": 7}));
    let (backlog, _rx) = j.join(run, Known::Ended(end)).unwrap();
    let types: Vec<_> = backlog.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["status.completed"]);
    assert_eq!(lock(&j.inner).ended.len(), 1, "forgotten in its turn");
}
