//! The queue's persistence seam when the server has no store.

use std::collections::HashSet;
use std::time::Duration;

use blazen_controlplane::protocol::Assignment;
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{RunStateSnapshot, WorkerCapability};
use uuid::Uuid;

/// The queue's persistence seam, keeping nothing. The embedded control
/// plane has no durable store (the crate's default memory store is lost
/// with the process too), and the crate's memory store only ever appends
/// to its pending list at run time (`dequeue_pending` is called only by
/// the cold-start recovery), so it grows by one entry per routing attempt
/// that finds every worker busy. The queue itself keeps the runs.
#[derive(Debug)]
pub(crate) struct Volatile;

#[async_trait::async_trait]
impl AssignmentStore for Volatile {
    async fn put_assignment(&self, _: Uuid, _: &Assignment) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn get_assignment(&self, _: Uuid) -> Result<Option<Assignment>, ControlPlaneError> {
        Ok(None)
    }

    async fn delete_assignment(&self, _: Uuid) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn put_state(
        &self,
        _: Uuid,
        _: &RunStateSnapshot,
        _: Option<Duration>,
    ) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn get_state(&self, _: Uuid) -> Result<Option<RunStateSnapshot>, ControlPlaneError> {
        Ok(None)
    }

    async fn enqueue_pending(
        &self,
        _: &WorkerCapability,
        _: Uuid,
        _: &[String],
    ) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn dequeue_pending(
        &self,
        _: &WorkerCapability,
    ) -> Result<Option<(Uuid, Vec<String>)>, ControlPlaneError> {
        Ok(None)
    }

    async fn list_pending_capabilities(&self) -> Result<Vec<WorkerCapability>, ControlPlaneError> {
        Ok(Vec::new())
    }

    async fn claim_inflight(&self, _: Uuid, _: Uuid) -> Result<(), ControlPlaneError> {
        Ok(())
    }

    async fn release_inflight(&self, _: Uuid) -> Result<Vec<Uuid>, ControlPlaneError> {
        Ok(Vec::new())
    }

    async fn list_orphaned_inflight(
        &self,
        _: &HashSet<Uuid>,
    ) -> Result<Vec<Uuid>, ControlPlaneError> {
        Ok(Vec::new())
    }
}
