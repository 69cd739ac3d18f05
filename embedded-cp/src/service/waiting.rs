//! Runs that no connected worker can take are announced, not left to wait
//! in silence: a `status.waiting` event
//! `{"reason": "no_worker", "capability", "version", "place",
//! "connected_versions"}` when such a run is queued, and again for each
//! queued run whose last capable worker leaves. `connected_versions` lists
//! the versions of the same workflow that connected workers do serve (a
//! plain submission asks for version 0, and a worker serving only version
//! 1 cannot take it).

use blazen_core::distributed::{RunEvent, WorkerCapability};
use uuid::Uuid;

use super::session::Session;
use super::{now_ms, Plane};

impl Plane {
    /// Whether a connected worker in `place` serves `cap`.
    /// (Read from the open sessions: the registry's lookup copies every
    /// matching worker's record, and this runs for every submission.)
    fn served(&self, place: &str, cap: &WorkerCapability) -> bool {
        crate::lock(&self.sessions)
            .values()
            .any(|s| s.place == place && s.caps.contains(cap))
    }

    /// Emits `status.waiting` for `run_id` (queued for `place` and `cap`)
    /// when no connected worker serves them.
    pub(super) fn announce_if_unserved(&self, run_id: Uuid, place: &str, cap: &WorkerCapability) {
        if self.served(place, cap) {
            return;
        }
        let mut versions: Vec<u32> = self
            .shared
            .registry
            .list_by_place(place)
            .into_iter()
            .flat_map(|w| w.capabilities)
            .filter(|c| c.kind == cap.kind)
            .map(|c| c.version)
            .collect();
        versions.sort_unstable();
        versions.dedup();
        tracing::info!(
            %run_id,
            capability = %cap.kind,
            version = cap.version,
            place,
            "run queued with no connected worker that can take it"
        );
        self.bus.send(RunEvent {
            run_id,
            event_type: crate::EventType::StatusWaiting.to_string(),
            data: serde_json::json!({
                "reason": "no_worker",
                "capability": cap.kind,
                "version": cap.version,
                "place": place,
                "connected_versions": versions,
            }),
            timestamp_ms: now_ms(),
        });
    }

    /// After `session` ended: every queued run that needs one of its
    /// capabilities, now served by no connected worker, is announced.
    pub(super) fn announce_orphans(&self, session: &Session) {
        for cap in &session.caps {
            if self.served(&session.place, cap) {
                continue;
            }
            for run_id in self.waiting_in(&(session.place.clone(), cap.clone())) {
                self.announce_if_unserved(run_id, &session.place, cap);
            }
        }
    }
}
