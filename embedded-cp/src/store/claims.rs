//! What the store keeps in memory about runs: which are in the store (a
//! write of a run not among them is a submission, refused while the store
//! cannot take it and withdrawn if it fails) and which session claims
//! each running run (so a run's claim is released when it ends, and a
//! session's end releases only the runs it still holds).

use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::RunStateSnapshot;
use uuid::Uuid;

use super::keys::Op;
use std::sync::Arc;

use super::{lock, Durable, Join};

impl Durable {
    /// Writes a run's assignment. For a run the store does not know yet (a
    /// submission) it is refused while the store is down or too many
    /// writes wait, and a failed write is withdrawn with every other
    /// waiting write of the run, and its records deleted.
    pub(super) async fn put_assignment_bytes(
        &self,
        run: Uuid,
        bytes: Vec<u8>,
    ) -> Result<(), ControlPlaneError> {
        let new = {
            let mut st = lock(&self.state);
            let new = !st.known.contains(&run);
            if new {
                if let Some(e) = self.refusal(&st) {
                    st.refuse(run);
                    return Err(e);
                }
                st.known.insert(run);
            }
            new
        };
        let written = self.write(run, vec![Op::PutAssignment(bytes)]).await;
        if written.is_err() && new {
            let mut st = lock(&self.state);
            st.known.remove(&run);
            st.refuse(run);
            let withdrawn = st.backlog.withdraw(run);
            // The failed batch may have reached the store before it failed.
            st.backlog.push(run, Op::DeleteAssignment, None);
            st.backlog.push(run, Op::DeleteState, None);
            drop(st);
            for w in withdrawn {
                w.tell(Err("the write was withdrawn".to_string()));
            }
        }
        written
    }

    /// Notes that `run`'s assignment is in the store (found by recovery).
    pub(crate) fn know(&self, run: Uuid) {
        lock(&self.state).known.insert(run);
    }

    /// A run ended: its assignment is deleted and its claim released.
    pub(super) fn delete_run(&self, run: Uuid) -> Result<(), ControlPlaneError> {
        let mut ops = vec![Op::DeleteAssignment];
        {
            let mut st = lock(&self.state);
            st.known.remove(&run);
            if let Some(session) = st.claims.remove(&run) {
                if let Some(runs) = st.sessions.get_mut(&session) {
                    runs.remove(&run);
                }
                ops.push(Op::Release);
            }
        }
        self.queue(run, ops)
    }

    pub(super) fn claim(&self, run: Uuid, session: Uuid) -> Result<(), ControlPlaneError> {
        self.note_claim(run, session);
        self.queue(run, vec![Op::Claim { session }])
    }

    /// Claims `run` for `session` and records its `running` state; `join`
    /// runs its continuation on the store's writer once both are in the
    /// store (or with the first that fails), so that a control plane that
    /// takes over the store after a crash knows the run reached a worker
    /// (and runs it again as a new attempt): the dispatcher hands the run
    /// to its worker from there, with no task waiting per run. The writes
    /// are queued at once (so before any later write of the run, such as
    /// its re-queue's). On an error (the store down: the writes are kept
    /// for the replay) the continuation has not run: the caller runs it
    /// once it holds no lock the continuation takes.
    pub(crate) fn claim_running(
        &self,
        run: Uuid,
        session: Uuid,
        running: &RunStateSnapshot,
        join: &Arc<Join>,
    ) -> Result<(), ControlPlaneError> {
        let (state, _) = self.state_op(running, None)?;
        self.note_claim(run, session);
        self.queue_joined(run, vec![Op::Claim { session }, state], join)
    }

    /// Records a run's end: its terminal `state` (with the store's TTL),
    /// then the deletion of its assignment and the release of its claim.
    /// `join` runs its continuation on the store's writer once the state is
    /// written (or it failed): the end is announced from there, with no
    /// task waiting per run. On an error the continuation has not run, as
    /// for [`Durable::claim_running`].
    pub(crate) fn record_end(
        &self,
        run: Uuid,
        state: &RunStateSnapshot,
        join: &Arc<Join>,
    ) -> Result<(), ControlPlaneError> {
        let (op, _) = self.state_op(state, None)?;
        let recorded = self.queue_joined(run, vec![op], join);
        if let Err(e) = self.delete_run(run) {
            tracing::warn!(%run, error = %e, "cannot delete the ended run's assignment in the store");
        }
        recorded
    }

    fn note_claim(&self, run: Uuid, session: Uuid) {
        let mut st = lock(&self.state);
        if let Some(old) = st.claims.insert(run, session) {
            if let Some(runs) = st.sessions.get_mut(&old) {
                runs.remove(&run);
            }
        }
        st.sessions.entry(session).or_default().insert(run);
    }

    /// Releases the runs `session` still claims (not every run it ever
    /// claimed: those that ended were released then) and drops its set.
    pub(super) fn release_session(&self, session: Uuid) -> Result<Vec<Uuid>, ControlPlaneError> {
        let runs: Vec<Uuid> = {
            let mut st = lock(&self.state);
            let runs: Vec<Uuid> = st
                .sessions
                .remove(&session)
                .unwrap_or_default()
                .into_iter()
                .collect();
            for r in &runs {
                if st.claims.get(r) == Some(&session) {
                    st.claims.remove(r);
                }
            }
            runs
        };
        // Every release is kept, even while the store is down.
        let released: Vec<_> = runs
            .iter()
            .map(|r| self.queue(*r, vec![Op::Release]))
            .collect();
        released.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(runs)
    }
}

/// How many refused submissions are remembered (their other writes, made
/// at the same moment, are dropped).
const REFUSED_KEPT: usize = 4096;

impl super::State {
    /// Remembers a refused submission: its other writes are dropped.
    fn refuse(&mut self, run: Uuid) {
        if self.refused.insert(run) {
            self.refused_order.push_back(run);
            if self.refused_order.len() > REFUSED_KEPT {
                if let Some(old) = self.refused_order.pop_front() {
                    self.refused.remove(&old);
                }
            }
        }
    }
}
