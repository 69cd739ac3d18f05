//! The crate's `AssignmentStore` seam over [`Durable`]: what the service
//! (and the crate's own queue) calls.

use std::collections::HashSet;
use std::time::Duration;

use blazen_controlplane::protocol::{Assignment, RunStateSnapshotWire};
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{RunStateSnapshot, RunStatus, WorkerCapability};
use redis::AsyncCommands;
use uuid::Uuid;

use super::keys::{self, Op};
use super::Durable;

/// A decoded state record.
pub(crate) fn decode_state(bytes: &[u8]) -> Result<RunStateSnapshot, ControlPlaneError> {
    let wire: RunStateSnapshotWire = postcard::from_bytes(bytes)?;
    Ok(wire.to_core()?)
}

impl Durable {
    /// The write of a run's state, and whether the state is terminal (it
    /// then expires after `ttl`, or the store's own TTL).
    pub(super) fn state_op(
        &self,
        state: &RunStateSnapshot,
        ttl: Option<Duration>,
    ) -> Result<(Op, bool), ControlPlaneError> {
        let wire = RunStateSnapshotWire::from_core(state)?;
        let bytes = crate::common::postcard(&wire)?;
        let terminal = matches!(
            state.status,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        );
        let ttl_secs = terminal
            .then(|| ttl.or(self.ttl))
            .flatten()
            .map(|t| t.as_secs().max(1));
        Ok((Op::PutState { bytes, ttl_secs }, terminal))
    }
}

#[async_trait::async_trait]
impl AssignmentStore for Durable {
    async fn put_assignment(&self, run_id: Uuid, a: &Assignment) -> Result<(), ControlPlaneError> {
        let bytes = crate::common::postcard(a)?;
        self.put_assignment_bytes(run_id, bytes).await
    }

    async fn get_assignment(&self, run_id: Uuid) -> Result<Option<Assignment>, ControlPlaneError> {
        let bytes: Option<Vec<u8>> = self
            .read(|mut c| async move { c.get(keys::assign(run_id)).await })
            .await?;
        Ok(bytes.map(|b| postcard::from_bytes(&b)).transpose()?)
    }

    /// Also releases the run's claim: the run has ended.
    async fn delete_assignment(&self, run_id: Uuid) -> Result<(), ControlPlaneError> {
        self.delete_run(run_id)
    }

    async fn put_state(
        &self,
        run_id: Uuid,
        state: &RunStateSnapshot,
        ttl: Option<Duration>,
    ) -> Result<(), ControlPlaneError> {
        let (op, terminal) = self.state_op(state, ttl)?;
        if terminal {
            // Announced only once it is recorded.
            self.write(run_id, vec![op]).await
        } else {
            self.queue(run_id, vec![op])
        }
    }

    async fn get_state(&self, run_id: Uuid) -> Result<Option<RunStateSnapshot>, ControlPlaneError> {
        let bytes: Option<Vec<u8>> = self
            .read(|mut c| async move { c.get(keys::state(run_id)).await })
            .await?;
        bytes.map(|b| decode_state(&b)).transpose()
    }

    async fn enqueue_pending(
        &self,
        cap: &WorkerCapability,
        run_id: Uuid,
        tags: &[String],
    ) -> Result<(), ControlPlaneError> {
        let entry = crate::common::postcard(&(run_id, tags.to_vec()))?;
        let op = Op::Enqueue {
            cap: cap.clone(),
            entry,
        };
        self.queue(run_id, vec![op])
    }

    /// Pops the oldest entry of `cap`'s list (the recovery reads the lists
    /// without popping; this serves the crate's own recovery).
    async fn dequeue_pending(
        &self,
        cap: &WorkerCapability,
    ) -> Result<Option<(Uuid, Vec<String>)>, ControlPlaneError> {
        let key = keys::pending(cap);
        let member = keys::cap_member(cap);
        let bytes: Option<Vec<u8>> = self
            .read(|mut c| async move {
                let popped: Option<Vec<u8>> = c.lpop(&key, None).await?;
                if c.llen::<_, usize>(&key).await? == 0 {
                    c.srem::<_, _, ()>(keys::PENDING_CAPS, member).await?;
                }
                Ok(popped)
            })
            .await?;
        Ok(bytes.map(|b| postcard::from_bytes(&b)).transpose()?)
    }

    async fn list_pending_capabilities(&self) -> Result<Vec<WorkerCapability>, ControlPlaneError> {
        let members: Vec<String> = self
            .read(|mut c| async move { c.smembers(keys::PENDING_CAPS).await })
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| keys::parse_cap_member(m))
            .collect())
    }

    async fn claim_inflight(&self, run_id: Uuid, session: Uuid) -> Result<(), ControlPlaneError> {
        self.claim(run_id, session)
    }

    /// Releases what the session still claims (bounded by its runs in
    /// flight, whatever it ran before).
    async fn release_inflight(&self, session: Uuid) -> Result<Vec<Uuid>, ControlPlaneError> {
        self.release_session(session)
    }

    async fn list_orphaned_inflight(
        &self,
        alive: &HashSet<Uuid>,
    ) -> Result<Vec<Uuid>, ControlPlaneError> {
        let claims = self.claimed().await?;
        Ok(claims
            .into_iter()
            .filter(|(_, s)| s.is_some_and(|s| !alive.contains(&s)))
            .map(|(r, _)| r)
            .collect())
    }
}

impl Durable {
    /// Every claimed run in the store, with the session claiming it (two
    /// round trips).
    pub(crate) async fn claimed(&self) -> Result<Vec<(Uuid, Option<Uuid>)>, ControlPlaneError> {
        self.read(|mut c| async move {
            let raw: Vec<String> = c.smembers(keys::INFLIGHT_RUNS).await?;
            let runs: Vec<Uuid> = raw.iter().filter_map(|r| Uuid::parse_str(r).ok()).collect();
            if runs.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = runs.iter().map(|r| keys::inflight(*r)).collect();
            let sessions: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
            Ok(runs
                .into_iter()
                .zip(sessions)
                .map(|(r, s)| (r, s.and_then(|s| Uuid::parse_str(&s).ok())))
                .collect())
        })
        .await
    }
}
