//! How writes are queued for the writer, and how their callers learn
//! that they are in the store: awaited (`write`, `queue_waited` then
//! `waited`), run on the writer once written (`queue_then`), or not at
//! all (`queue`).

use blazen_controlplane::ControlPlaneError;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::backlog::{self, Then};
use super::keys::Op;
use super::{lock, Durable, Told};

impl Durable {
    /// Queues writes of `run` without waiting for them: they are written in
    /// order with every other write (so before any write queued later).
    /// While the store is down this fails, and they are kept for the replay.
    pub(super) fn queue(&self, run: Uuid, ops: Vec<Op>) -> Result<(), ControlPlaneError> {
        {
            let mut st = lock(&self.state);
            if st.refused.contains(&run) {
                return Err(self.error("the run's submission was refused"));
            }
            for op in ops {
                st.backlog.push(run, op, None);
            }
            if let Some(why) = &st.down {
                return Err(self.error(why));
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Queues writes of `run` and waits until they are in the store. While
    /// the store is down they fail at once and are kept for the replay.
    pub(super) async fn write(&self, run: Uuid, ops: Vec<Op>) -> Result<(), ControlPlaneError> {
        let waits = self.queue_waited(run, ops)?;
        self.waited(waits).await
    }

    /// [`Durable::write`]'s first half: queues the writes now and returns
    /// what tells when they are in the store ([`Durable::waited`]).
    pub(super) fn queue_waited(
        &self,
        run: Uuid,
        ops: Vec<Op>,
    ) -> Result<Vec<Told>, ControlPlaneError> {
        let mut waits = Vec::with_capacity(ops.len());
        {
            let mut st = lock(&self.state);
            if st.refused.contains(&run) {
                return Err(self.error("the run's submission was refused"));
            }
            let down = st.down.clone();
            for op in ops {
                let waiter = down.is_none().then(|| {
                    let (tx, rx) = oneshot::channel();
                    waits.push(rx);
                    backlog::Waiter::Tell(tx)
                });
                st.backlog.push(run, op, waiter);
            }
            if let Some(why) = down {
                return Err(self.error(&why));
            }
        }
        self.wake.notify_one();
        Ok(waits)
    }

    /// Queues writes of `run`; `then` runs on the writer once they are all
    /// in the store, or with the first that fails. While the store is down
    /// they fail at once (kept for the replay), and `then` is handed back
    /// with why, not run (the caller may hold locks `then` takes).
    pub(super) fn queue_then(
        &self,
        run: Uuid,
        ops: Vec<Op>,
        then: Then,
    ) -> Result<(), (ControlPlaneError, Then)> {
        {
            let mut st = lock(&self.state);
            if st.refused.contains(&run) {
                return Err((self.error("the run's submission was refused"), then));
            }
            if let Some(why) = st.down.clone() {
                for op in ops {
                    st.backlog.push(run, op, None);
                }
                return Err((self.error(&why), then));
            }
            let join = backlog::Join::new(ops.len(), then);
            for op in ops {
                st.backlog
                    .push(run, op, Some(backlog::Waiter::Join(join.clone())));
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Waits until the writes [`Durable::queue_waited`] queued are in the
    /// store.
    pub(super) async fn waited(&self, waits: Vec<Told>) -> Result<(), ControlPlaneError> {
        for rx in waits {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => return Err(self.error(&why)),
                Err(_) => return Err(self.error("the store was dropped")),
            }
        }
        Ok(())
    }
}
