//! The run table's bound on ended runs, and what admission is given of a
//! run's input.

use super::*;

fn run(id: Uuid) -> Run {
    Run {
        snap: pending_snapshot(id),
        place: "p".to_string(),
        cap: WorkerCapability {
            kind: "workflow:w".to_string(),
            version: 0,
        },
        tags: Vec::new(),
        assignment: None,
        session: None,
        losses: 0,
    }
}

#[test]
fn only_the_newest_ended_runs_are_kept_and_live_ones_always() {
    let mut t = Table::default();
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        t.runs.insert(*id, run(*id));
    }
    for id in &ids[..6] {
        t.ended(*id, 4);
    }
    let kept: Vec<bool> = ids.iter().map(|id| t.runs.contains_key(id)).collect();
    assert_eq!(
        kept,
        [false, false, true, true, true, true, true, true, true, true],
        "the two oldest ended runs are forgotten, the four newest and the live ones kept"
    );
    assert_eq!(t.ended.len(), 4);
}

fn assignment(input: &str) -> Assignment {
    Assignment {
        envelope_version: blazen_controlplane::protocol::ENVELOPE_VERSION,
        run_id: Uuid::new_v4(),
        parent_run_id: None,
        workflow_name: "w".to_string(),
        workflow_version: None,
        input_json: input.as_bytes().to_vec(),
        deadline_ms: None,
        attempt: 0,
        resource_hint: None,
        priority: 0,
        selector: Default::default(),
        tolerations: Vec::new(),
    }
}

#[test]
fn admission_gets_the_input_when_it_could_name_a_model() {
    let input = |text: &str| route::affinity_input(&assignment(text));
    assert_eq!(
        input(r#"{"model_name": "llama"}"#),
        Some(serde_json::json!({"model_name": "llama"}))
    );
    assert_eq!(
        input(r#"{"\u006dodel": "m"}"#),
        Some(serde_json::json!({"model": "m"})),
        "a key spelt with escapes is still read"
    );
    assert_eq!(input(r#"{"n": 1, "text": "no such key"}"#), None);
    assert_eq!(input("[1, 2]"), None);
    assert_eq!(input("model, but not JSON"), None);
}
