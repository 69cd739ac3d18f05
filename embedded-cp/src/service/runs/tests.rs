//! The run table's bound on ended runs.

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
        routed: None,
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
