//! Routing to a session the moment it opens.
#![cfg(test)]

use super::super::*;
use super::*;
use blazen_controlplane::protocol::{
    AdmissionModeWire, Assignment, CapabilityWire, NodeSelectorWire,
};
use blazen_controlplane::server::{
    admission::Admission, key_store, queue::AssignmentQueue, registry::WorkerRegistry,
};

/// A drain may route runs to a session the moment it is registered,
/// before its handler has returned the response stream. That routing
/// must not wait on the handler (the drainer once waited for ever on a
/// session whose Welcome was queued behind a run, and no queued run
/// was routed again), and Welcome must still be the first frame.
#[tokio::test(flavor = "current_thread")]
async fn routing_to_a_session_just_opened_does_not_wait_on_it() {
    let (events, _) = tokio::sync::broadcast::channel(16);
    let shared = Arc::new(SharedState {
        registry: WorkerRegistry::new(),
        queue: AssignmentQueue::with_events_and_store(events.clone(), Arc::new(Volatile)),
        admission: Admission::new(),
        node_id: "test".to_string(),
        events,
        key_store: key_store::default_key_store(),
    });
    let service = Service::new(shared.clone(), None, 3, Vec::new());
    let cap = WorkerCapability {
        kind: "workflow:w".to_string(),
        version: 0,
    };
    let place = DEFAULT_PLACE.to_string();
    let runs = 3;
    for _ in 0..runs {
        let run_id = Uuid::new_v4();
        let assignment = Assignment {
            envelope_version: ENVELOPE_VERSION,
            run_id,
            parent_run_id: None,
            workflow_name: "w".to_string(),
            workflow_version: None,
            input_json: b"{}".to_vec(),
            deadline_ms: None,
            attempt: 0,
            resource_hint: None,
            priority: QUEUE_PRIORITY,
            selector: NodeSelectorWire::default(),
            tolerations: Vec::new(),
        };
        service.cp.admit(crate::service::Waiting {
            run_id,
            place: place.clone(),
            assignment,
            cap: cap.clone(),
            tags: Vec::new(),
        });
    }
    let hello = WorkerHello {
        envelope_version: ENVELOPE_VERSION,
        node_id: "n".to_string(),
        capabilities: vec![CapabilityWire {
            kind: cap.kind.clone(),
            version: 0,
        }],
        tags: Default::default(),
        admission: AdmissionModeWire::Fixed { max_in_flight: 4 },
        supported_envelope_versions: vec![ENVELOPE_VERSION],
        labels: Default::default(),
        taints: Vec::new(),
        descriptors: Vec::new(),
        place: None,
        identity_pubkey: None,
        agreement_pubkey: None,
        agreement_sig: None,
    };
    let (session, mut out) = service
        .cp
        .open(
            &hello,
            place.clone(),
            vec![cap.clone()],
            Default::default(),
            Default::default(),
            None,
        )
        .unwrap();
    // The session's handler has not run since: route now.
    let routed = service.cp.dispatch(&(place.clone(), cap.clone()), 100);
    assert!(
        !routed,
        "the three runs fill the worker, and the fourth routing finds none"
    );
    assert!(matches!(out.recv().await, Some(ServerToWorker::Welcome(_))));
    for _ in 0..runs {
        assert!(matches!(
            out.recv().await,
            Some(ServerToWorker::Assignment(_))
        ));
    }
    assert_eq!(lock(&session.assigned).len(), runs);
}
