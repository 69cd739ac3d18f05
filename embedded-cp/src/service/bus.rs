//! The control plane's event bus. Every run event is published once, as an
//! `Arc`, and its readers (the recorder that feeds the run journal and the
//! run index, and each `SubscribeAll` stream) share it: a broadcast
//! receiver clones what it receives, and cloning an event copies its data.
//!
//! The crate's own bus (`SharedState::events`) is still fed, but only while
//! something reads it: the crate's run subscription, which this control
//! plane uses for a run it does not know.

use std::sync::Arc;

use blazen_controlplane::server::SharedState;
use blazen_core::distributed::RunEvent;
use tokio::sync::broadcast;

/// Broadcast capacity of the event buses (the crate's `ControlPlaneServer`
/// has 1,024): a reader more than this many events behind loses some, and
/// the recorder (run journal and index) is one such reader that must keep
/// up with 10,000-run bursts.
pub(crate) const EVENT_BUS_CAPACITY: usize = 16_384;

#[derive(Clone)]
pub(super) struct Bus {
    ours: broadcast::Sender<Arc<RunEvent>>,
    crates: broadcast::Sender<RunEvent>,
}

impl Bus {
    /// A bus of `capacity` events beside `shared`'s own.
    pub(super) fn new(shared: &SharedState, capacity: usize) -> Self {
        Self {
            ours: broadcast::channel(capacity).0,
            crates: shared.events.clone(),
        }
    }

    /// Publishes `event` to every reader.
    pub(super) fn send(&self, event: RunEvent) {
        if self.crates.receiver_count() > 0 {
            let _ = self.crates.send(event.clone());
        }
        let _ = self.ours.send(Arc::new(event));
    }

    /// A reader of the events published from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<RunEvent>> {
        self.ours.subscribe()
    }
}
