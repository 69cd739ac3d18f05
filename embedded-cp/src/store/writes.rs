//! How writes are queued for the writer, and how their callers learn
//! that they are in the store: awaited (`write`), run on the writer once
//! written (`queue_joined`), or not at all (`queue`). All go through
//! `push`.

use std::sync::Arc;

use blazen_controlplane::ControlPlaneError;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::backlog::{Join, Waiter};
use super::keys::Op;
use super::{lock, Durable};

impl Durable {
    /// Queues writes of `run`, each with the waiter `waiter` makes while
    /// the store is up, and wakes the writer. Fails for a refused
    /// submission (nothing queued) and while the store is down (queued
    /// without waiters, kept for the replay).
    fn push(
        &self,
        run: Uuid,
        ops: Vec<Op>,
        mut waiter: impl FnMut() -> Option<Waiter>,
    ) -> Result<(), ControlPlaneError> {
        {
            let mut st = lock(&self.state);
            if st.refused.contains(&run) {
                return Err(self.error("the run's submission was refused"));
            }
            let down = st.down.clone();
            for op in ops {
                let told = if down.is_none() { waiter() } else { None };
                st.backlog.push(run, op, told);
            }
            if let Some(why) = down {
                return Err(self.error(&why));
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Queues writes of `run` without waiting for them: they are written in
    /// order with every other write (so before any write queued later).
    /// While the store is down this fails, and they are kept for the replay.
    pub(super) fn queue(&self, run: Uuid, ops: Vec<Op>) -> Result<(), ControlPlaneError> {
        self.push(run, ops, || None)
    }

    /// Queues writes of `run` and waits until they are in the store. While
    /// the store is down they fail at once and are kept for the replay.
    pub(super) async fn write(&self, run: Uuid, ops: Vec<Op>) -> Result<(), ControlPlaneError> {
        let mut waits = Vec::with_capacity(ops.len());
        self.push(run, ops, || {
            let (tx, rx) = oneshot::channel();
            waits.push(rx);
            Some(Waiter::Tell(tx))
        })?;
        for rx in waits {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => return Err(self.error(&why)),
                Err(_) => return Err(self.error("the store was dropped")),
            }
        }
        Ok(())
    }

    /// Queues writes of `run`; `join` runs its continuation on the writer
    /// once they are all in the store, or with the first that fails. While
    /// the store is down they fail at once (kept for the replay) and the
    /// continuation is not run: the caller runs it ([`Join::run`]) once it
    /// holds no lock the continuation takes.
    pub(super) fn queue_joined(
        &self,
        run: Uuid,
        ops: Vec<Op>,
        join: &Arc<Join>,
    ) -> Result<(), ControlPlaneError> {
        self.push(run, ops, || Some(join.waiter()))
    }
}
