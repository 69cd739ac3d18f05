//! The C callback table answering the worker's session: each callback on
//! a library thread, never an executor thread (`handle` on the worker's
//! own [`Lanes`], the rare `on_cancel` and `on_drain` on the runtime's
//! blocking pool, so they never queue behind a long `handle`),
//! gated by the worker's stop signal and (Fixed admission) its
//! `max_in_flight` cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blazen_controlplane::protocol::Assignment;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::answer;
use super::lanes::Lanes;
use crate::rt::callbacks::{AssignmentRun, BlazenAssignmentContext};
use crate::rt::handler::HandlerTable;
use crate::rt::{lock, ErrorKind};

/// The worker's hold on its handler table, from `worker_new` until its run
/// ends. A callback borrows the table for its own duration only, so once
/// the worker lets go ([`CHandler::release`]) the table is released by
/// whoever finishes last: the run's end, or a callback still in flight.
/// Nothing else keeps it (the session's tasks hold only this slot), so a
/// `_free` after the run ended calls nothing of the host.
pub(super) struct Table(Mutex<Option<Arc<dyn HandlerTable>>>);

impl Table {
    pub(super) fn new(vt: Arc<dyn HandlerTable>) -> Self {
        Self(Mutex::new(Some(vt)))
    }

    /// The table for one callback, unless it has been released.
    fn get(&self) -> Option<Arc<dyn HandlerTable>> {
        lock(&self.0).clone()
    }
}

/// The C callback table as the worker's session calls it. Each callback
/// runs on a library thread, never on an executor thread.
#[derive(Clone)]
pub(super) struct CHandler {
    pub(super) table: Arc<Table>,
    /// The runs whose `handle` call has started and not yet returned.
    pub(super) in_flight: Arc<Mutex<HashMap<Uuid, CancellationToken>>>,
    /// The worker's stop signal: once set, no new callback starts.
    pub(super) stop: CancellationToken,
    /// `max_in_flight` permits for a Fixed worker: an assignment beyond
    /// them waits here (still counted as assigned by the control plane)
    /// until a `handle` call returns, whatever the server pushes.
    pub(super) permits: Option<Arc<Semaphore>>,
    /// The threads `handle` calls run on.
    pub(super) lanes: Arc<Lanes>,
}

/// Forgets a run's `handle` call however it ends, including when the
/// session drops the call's future (its deadline or a cancellation).
/// A call abandoned that way has its run's token cancelled, so a `handle`
/// still running sees `blazen_assignment_context_is_cancelled`.
struct Started {
    in_flight: Arc<Mutex<HashMap<Uuid, CancellationToken>>>,
    run_id: Uuid,
    token: CancellationToken,
    returned: bool,
}

impl Drop for Started {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.run_id);
        if !self.returned {
            self.token.cancel();
        }
    }
}

impl CHandler {
    /// Cancels every assignment in progress and tells the handler (when
    /// the table is still held: a run that ended has none in progress).
    pub(super) fn cancel_all(&self) {
        let runs: Vec<(Uuid, CancellationToken)> = lock(&self.in_flight).drain().collect();
        let vt = self.table.get();
        for (run_id, token) in runs {
            token.cancel();
            if let Some(vt) = &vt {
                vt.on_cancel(&run_id.to_string());
            }
        }
    }

    /// Lets go of the handler table when the run ends: `drop_user_data`
    /// runs now, on a blocking-pool thread (it may call the library), and
    /// this returns after it, so the run's result is reported only once
    /// the table is released; or, when a `handle` call is still in flight
    /// (after a shutdown), right after that call returns, on its thread,
    /// without anything waiting for it.
    pub(super) async fn release(&self) {
        let held = lock(&self.table.0).take();
        if let Some(vt) = held {
            let _ = tokio::task::spawn_blocking(move || drop(vt)).await;
        }
    }

    /// As [`Self::release`] from a synchronous drop (the run's future was
    /// dropped before it finished): the release is started, not awaited.
    pub(super) fn release_later(&self) {
        let held = lock(&self.table.0).take();
        if let Some(vt) = held {
            drop(crate::rt::runtime().spawn_blocking(move || drop(vt)));
        }
    }

    /// Runs a callback on a blocking-pool thread, unless the worker has
    /// been stopped by then (a callback that passed the check is "already
    /// being delivered" and may complete after `shutdown` returns).
    async fn off_executor<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn HandlerTable) -> T + Send + 'static,
    ) -> std::result::Result<T, String> {
        let call = self.gated((), f);
        tokio::task::spawn_blocking(call)
            .await
            .map_err(|e| panicked(&e.to_string()))?
    }

    /// As [`Self::off_executor`] on one of the worker's lanes, keeping
    /// `held` (a permit) until the callback has returned, even if the
    /// awaiting future is dropped.
    async fn on_lane<T: Send + 'static, H: Send + 'static>(
        &self,
        held: H,
        f: impl FnOnce(&dyn HandlerTable) -> T + Send + 'static,
    ) -> std::result::Result<T, String> {
        let call = self.gated(held, f);
        self.lanes.run(call).await.map_err(|p| panicked(&p.0))?
    }

    /// `f` with the table, unless it was released or the worker stopped
    /// by the time it runs.
    fn gated<T, H: Send + 'static>(
        &self,
        held: H,
        f: impl FnOnce(&dyn HandlerTable) -> T + Send + 'static,
    ) -> impl FnOnce() -> std::result::Result<T, String> + Send + 'static {
        let table = self.table.clone();
        let stop = self.stop.clone();
        move || {
            let _held = held;
            let vt = table.get().filter(|_| !stop.is_cancelled());
            let Some(vt) = vt else {
                return Err(ErrorKind::Cancelled.tag("the worker was shut down"));
            };
            Ok(f(&*vt))
        }
    }
}

fn panicked(what: &str) -> String {
    ErrorKind::Internal.tag(&format!("the handler callback panicked: {what}"))
}

impl CHandler {
    /// Runs assignment `a` through the table's `handle`, with `run` for
    /// its context and `token` its cancellation: its output, or the error
    /// that fails the run.
    pub(super) async fn handle(
        &self,
        a: Assignment,
        token: CancellationToken,
        run: impl AssignmentRun + 'static,
    ) -> std::result::Result<serde_json::Value, String> {
        let run_id = a.run_id;
        // Waits for a free slot (a cancelled run stops waiting: the
        // session drops this future).
        let permit = match &self.permits {
            Some(p) => Some(
                p.clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ErrorKind::Cancelled.tag("the worker was shut down"))?,
            ),
            None => None,
        };
        lock(&self.in_flight).insert(run_id, token.clone());
        let mut started = Started {
            in_flight: self.in_flight.clone(),
            run_id,
            token,
            returned: false,
        };
        let mut ctx = BlazenAssignmentContext::new(run, a.attempt);
        let result = self
            .on_lane(permit, move |vt| {
                answer::call(
                    vt,
                    &mut ctx,
                    &run_id.to_string(),
                    &a.workflow_name,
                    &a.input_json,
                )
            })
            .await
            .and_then(|r| r);
        started.returned = true;
        result
    }

    /// Tells the table that `run_id` was cancelled, if its `handle` call
    /// is still running.
    pub(super) async fn on_cancel(&self, run_id: Uuid) {
        if lock(&self.in_flight).remove(&run_id).is_some() {
            let _ = self
                .off_executor(move |vt| vt.on_cancel(&run_id.to_string()))
                .await;
        }
    }

    /// Tells the table the control plane drains the worker.
    pub(super) async fn on_drain(&self, immediate: bool) {
        let _ = self.off_executor(move |vt| vt.on_drain(immediate)).await;
    }
}
