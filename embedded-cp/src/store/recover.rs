//! The cold start on a store: the runs it knew, queued again once.

use std::collections::HashSet;

use blazen_controlplane::protocol::{Assignment, DEFAULT_PLACE};
use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::ControlPlaneError;
use blazen_core::distributed::{RunStateSnapshot, RunStatus, WorkerCapability};
use redis::AsyncCommands;
use uuid::Uuid;

use super::keys::{self, Op};
use super::trait_impl::decode_state;
use super::Durable;

/// The values of an `MGET`.
type Values = Vec<Option<Vec<u8>>>;

/// Reads of many keys go in pipelines of this many.
const CHUNK: usize = 1000;

/// What a cold start found in the store.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Runs queued again: those that were waiting for a worker ...
    pub queued: usize,
    /// ... and those that were RUNNING on a worker of the lost control
    /// plane (queued again as a new attempt).
    pub rerun: usize,
    /// The runs to queue, in the order found.
    pub runs: Vec<Recovered>,
}

/// A run to queue again.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub run_id: Uuid,
    /// The default place (the store keeps none).
    pub place: String,
    pub assignment: Assignment,
    pub cap: WorkerCapability,
    pub tags: Vec<String>,
}

/// A run found in the store's indexes or by its assignment record.
struct Found {
    run: Uuid,
    tags: Vec<String>,
    was_running: bool,
}

/// Rebuilds the queue from the store on a cold start, instead of the
/// crate's `recover_from_store` (`docs/upstream.md` 12): every run that
/// has an assignment record and no terminal state is queued again, once,
/// in the default place, waiting for a worker; runs that were RUNNING (a
/// claim in the store) go back as attempt + 1, first; then the pending
/// lists' runs in their order; then any other run with an assignment (its
/// queue entry was not written before the crash), oldest first.
///
/// Everything is read in pipelines (a few round trips for any number of
/// runs). The queued runs' records are written again (PENDING state, a new
/// entry at the end of their list) before the old list entries and the
/// lost control plane's claims are removed, so a crash during recovery
/// loses none.
pub(crate) async fn recover(store: &Durable) -> Result<Recovery, ControlPlaneError> {
    let claimed = store.claimed().await?;
    let mut order: Vec<Found> = Vec::new();
    let mut seen = HashSet::new();
    for (run, _) in &claimed {
        if seen.insert(*run) {
            order.push(Found {
                run: *run,
                tags: Vec::new(),
                was_running: true,
            });
        }
    }
    let caps = store.list_pending_capabilities().await?;
    let mut lists = Vec::new();
    for cap in caps {
        let key = keys::pending(&cap);
        let raw: Vec<Vec<u8>> = store
            .read(|mut c| async move { c.lrange(&key, 0, -1).await })
            .await?;
        for bytes in &raw {
            let Ok((run, tags)) = postcard::from_bytes::<(Uuid, Vec<String>)>(bytes) else {
                continue;
            };
            if seen.insert(run) {
                order.push(Found {
                    run,
                    tags,
                    was_running: false,
                });
            }
        }
        lists.push((cap, raw.len()));
    }
    let mut others: Vec<Uuid> = store.assigned().await?;
    others.retain(|r| seen.insert(*r));
    let first_others = order.len();
    order.extend(others.into_iter().map(|run| Found {
        run,
        tags: Vec::new(),
        was_running: false,
    }));

    let records = store
        .records(&order.iter().map(|f| f.run).collect::<Vec<_>>())
        .await?;
    // (run, its assignment, when it was submitted if found by its record)
    let mut kept: Vec<(Found, Assignment, Option<u64>)> = Vec::new();
    let mut ended = Vec::new();
    for (i, (f, (a, s))) in order.into_iter().zip(records).enumerate() {
        let Some(a) = a else {
            continue; // ended (its record is deleted then)
        };
        let terminal = s.as_ref().is_some_and(|s| {
            matches!(
                s.status,
                RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
            )
        });
        if terminal {
            ended.push(f.run);
            continue;
        }
        let since = (i >= first_others).then(|| s.map_or(u64::MAX, |s| s.started_at_ms));
        kept.push((f, a, since));
    }
    // The runs found by their assignment alone, oldest first.
    let tail = kept
        .iter()
        .position(|(_, _, since)| since.is_some())
        .unwrap_or(kept.len());
    kept[tail..].sort_by_key(|(_, _, since)| *since);

    let mut found = Recovery::default();
    let mut writes = Vec::new();
    for (f, mut assignment, _) in kept {
        store.know(f.run);
        let mut ops = Vec::new();
        if f.was_running {
            assignment.attempt = assignment.attempt.saturating_add(1);
            ops.push(Op::PutAssignment(crate::common::postcard(&assignment)?));
            found.rerun += 1;
        } else {
            found.queued += 1;
        }
        let cap = WorkerCapability {
            kind: format!("workflow:{}", assignment.workflow_name),
            version: assignment.workflow_version.unwrap_or(0),
        };
        let pending = crate::common::pending_snapshot(f.run);
        let wire = blazen_controlplane::protocol::RunStateSnapshotWire::from_core(&pending)?;
        ops.push(Op::PutState {
            bytes: crate::common::postcard(&wire)?,
            ttl_secs: None,
        });
        ops.push(Op::Enqueue {
            cap: cap.clone(),
            entry: crate::common::postcard(&(f.run, f.tags.clone()))?,
        });
        writes.push(store.write(f.run, ops));
        found.runs.push(Recovered {
            run_id: f.run,
            place: DEFAULT_PLACE.to_string(),
            assignment,
            cap,
            tags: f.tags,
        });
    }
    for w in futures_util::future::join_all(writes).await {
        w?;
    }
    // Only now the old entries, the lost claims and ended runs' records go.
    let mut p = redis::pipe();
    for (cap, n) in &lists {
        p.ltrim(keys::pending(cap), *n as isize, -1).ignore();
    }
    let mut sessions = HashSet::new();
    for (run, session) in &claimed {
        p.del(keys::inflight(*run)).ignore();
        p.srem(keys::INFLIGHT_RUNS, run.to_string()).ignore();
        sessions.extend(*session);
    }
    for s in sessions {
        p.del(keys::by_session(s)).ignore();
    }
    for run in ended {
        p.del(keys::assign(run)).ignore();
    }
    if !p.is_empty() {
        store
            .read(|mut c| async move { p.query_async::<()>(&mut c).await })
            .await?;
    }
    Ok(found)
}

impl Durable {
    /// Every run with an assignment record (`SCAN`, a round trip per
    /// thousand keys of the database).
    async fn assigned(&self) -> Result<Vec<Uuid>, ControlPlaneError> {
        let pattern = format!("{}assign:*", keys::PREFIX);
        let mut cursor = 0u64;
        let mut runs = Vec::new();
        loop {
            let pattern = pattern.clone();
            let (next, batch): (u64, Vec<String>) = self
                .read(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(CHUNK)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let prefix = format!("{}assign:", keys::PREFIX);
            runs.extend(
                batch
                    .iter()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .filter_map(|id| Uuid::parse_str(id).ok()),
            );
            if next == 0 {
                return Ok(runs);
            }
            cursor = next;
        }
    }

    /// The assignment and state records of `runs`, in order.
    async fn records(
        &self,
        runs: &[Uuid],
    ) -> Result<Vec<(Option<Assignment>, Option<RunStateSnapshot>)>, ControlPlaneError> {
        let mut out = Vec::with_capacity(runs.len());
        for chunk in runs.chunks(CHUNK) {
            let assign: Vec<String> = chunk.iter().map(|r| keys::assign(*r)).collect();
            let state: Vec<String> = chunk.iter().map(|r| keys::state(*r)).collect();
            let (a, s): (Values, Values) = self
                .read(|mut c| async move {
                    redis::pipe()
                        .cmd("MGET")
                        .arg(&assign)
                        .cmd("MGET")
                        .arg(&state)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for ((run, a), s) in chunk.iter().zip(a).zip(s) {
                let a = a.and_then(|b| match postcard::from_bytes::<Assignment>(&b) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::warn!(%run, error = %e, "an unreadable assignment record is skipped");
                        None
                    }
                });
                out.push((a, s.and_then(|b| decode_state(&b).ok())));
            }
        }
        Ok(out)
    }
}
