//! The store's key layout, the one blazen-controlplane 0.7.0's
//! `ValkeyAssignmentStore` writes (so a store written by either is read by
//! the other), and the Redis commands of each write.
//!
//! | key | holds |
//! |---|---|
//! | `blazen:cp:assign:{run}` | the run's `Assignment` (postcard) while it has not ended |
//! | `blazen:cp:state:{run}` | its `RunStateSnapshotWire` (postcard); with a TTL once terminal |
//! | `blazen:cp:pending:{kind}:{version}` | list of `(run, tags)` (postcard) queued for a capability |
//! | `blazen:cp:pending_caps` | set of `{kind}:{version}` with a pending list |
//! | `blazen:cp:inflight:{run}` | the session a running run is claimed by |
//! | `blazen:cp:inflight_by_session:{session}` | set of the runs a session claims |
//! | `blazen:cp:inflight_runs` | set of every claimed run |

use std::collections::HashSet;

use blazen_core::distributed::WorkerCapability;
use uuid::Uuid;

pub(crate) const PREFIX: &str = "blazen:cp:";
pub(crate) const PENDING_CAPS: &str = "blazen:cp:pending_caps";
pub(crate) const INFLIGHT_RUNS: &str = "blazen:cp:inflight_runs";

pub(crate) fn assign(run: Uuid) -> String {
    format!("{PREFIX}assign:{run}")
}

pub(crate) fn state(run: Uuid) -> String {
    format!("{PREFIX}state:{run}")
}

pub(crate) fn pending(cap: &WorkerCapability) -> String {
    format!("{PREFIX}pending:{}:{}", cap.kind, cap.version)
}

pub(crate) fn cap_member(cap: &WorkerCapability) -> String {
    format!("{}:{}", cap.kind, cap.version)
}

/// The capability of a `pending_caps` member (the version follows the last
/// colon; the kind may hold colons).
pub(crate) fn parse_cap_member(raw: &str) -> Option<WorkerCapability> {
    let (kind, version) = raw.rsplit_once(':')?;
    Some(WorkerCapability {
        kind: kind.to_string(),
        version: version.parse().ok()?,
    })
}

pub(crate) fn inflight(run: Uuid) -> String {
    format!("{PREFIX}inflight:{run}")
}

pub(crate) fn by_session(session: Uuid) -> String {
    format!("{PREFIX}inflight_by_session:{session}")
}

/// Which record of a run a write changes: a later write to the same slot
/// replaces one still waiting to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    Assignment,
    State,
    Claim,
    Queue,
    /// A session's own set (the "run" is the session id).
    Session,
}

/// One write.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    PutAssignment(Vec<u8>),
    DeleteAssignment,
    PutState {
        bytes: Vec<u8>,
        ttl_secs: Option<u64>,
    },
    DeleteState,
    Claim {
        session: Uuid,
    },
    Release {
        session: Uuid,
    },
    /// `entry` is the postcard `(run, tags)` pushed on `cap`'s list.
    Enqueue {
        cap: WorkerCapability,
        entry: Vec<u8>,
    },
    /// Deletes the session's set of claimed runs.
    DropSession,
}

impl Op {
    pub(crate) fn slot(&self) -> Slot {
        match self {
            Op::PutAssignment(_) | Op::DeleteAssignment => Slot::Assignment,
            Op::PutState { .. } | Op::DeleteState => Slot::State,
            Op::Claim { .. } | Op::Release { .. } => Slot::Claim,
            Op::Enqueue { .. } => Slot::Queue,
            Op::DropSession => Slot::Session,
        }
    }

    /// Adds the write's commands (their replies ignored) to `p`; `run` is
    /// the run (or, for [`Op::DropSession`], the session). `listed` holds
    /// the `pending_caps` members `p` already adds: a capability is added
    /// to that set once per pipeline, by its first entry (so before any
    /// of its list's entries in the pipeline is pushed after it).
    pub(crate) fn add_to(&self, run: Uuid, p: &mut redis::Pipeline, listed: &mut HashSet<String>) {
        let id = run.to_string();
        match self {
            Op::PutAssignment(bytes) => {
                p.set(assign(run), bytes).ignore();
            }
            Op::DeleteAssignment => {
                p.del(assign(run)).ignore();
            }
            Op::PutState {
                bytes,
                ttl_secs: Some(secs),
            } => {
                p.set_ex(state(run), bytes, *secs).ignore();
            }
            Op::PutState {
                bytes,
                ttl_secs: None,
            } => {
                p.set(state(run), bytes).ignore();
            }
            Op::DeleteState => {
                p.del(state(run)).ignore();
            }
            Op::Claim { session } => {
                p.set(inflight(run), session.to_string()).ignore();
                p.sadd(by_session(*session), &id).ignore();
                p.sadd(INFLIGHT_RUNS, &id).ignore();
            }
            Op::Release { session } => {
                p.del(inflight(run)).ignore();
                p.srem(by_session(*session), &id).ignore();
                p.srem(INFLIGHT_RUNS, &id).ignore();
            }
            Op::Enqueue { cap, entry } => {
                p.rpush(pending(cap), entry).ignore();
                let member = cap_member(cap);
                if !listed.contains(&member) {
                    p.sadd(PENDING_CAPS, &member).ignore();
                    listed.insert(member);
                }
            }
            Op::DropSession => {
                p.del(by_session(run)).ignore();
            }
        }
    }

    /// How many commands [`Op::add_to`] adds, at most.
    pub(crate) fn commands(&self) -> usize {
        match self {
            Op::Claim { .. } | Op::Release { .. } => 3,
            Op::Enqueue { .. } => 2,
            _ => 1,
        }
    }

    /// The write `later` to the same slot leaves when it replaces this one
    /// before either is written.
    pub(crate) fn merged(self, later: Op) -> Op {
        match (self, later) {
            // The list already gets the run once; a second entry would only
            // be skipped by the recovery.
            (first @ Op::Enqueue { .. }, Op::Enqueue { .. }) => first,
            (_, later) => later,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enqueue(kind: &str) -> Op {
        Op::Enqueue {
            cap: WorkerCapability {
                kind: kind.to_string(),
                version: 0,
            },
            entry: vec![1],
        }
    }

    #[test]
    fn a_pipeline_lists_each_capability_once_before_its_entries() {
        let mut p = redis::pipe();
        let mut listed = HashSet::new();
        for op in [
            enqueue("workflow:a"),
            enqueue("workflow:a"),
            enqueue("workflow:b"),
        ] {
            op.add_to(Uuid::new_v4(), &mut p, &mut listed);
        }
        let names: Vec<String> = p
            .cmd_iter()
            .map(|c| {
                let args: Vec<Vec<u8>> = c
                    .args_iter()
                    .map(|a| match a {
                        redis::Arg::Simple(b) => b.to_vec(),
                        _ => Vec::new(),
                    })
                    .collect();
                format!(
                    "{} {}",
                    String::from_utf8_lossy(&args[0]),
                    String::from_utf8_lossy(&args[1])
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                format!(
                    "RPUSH {}",
                    pending(&WorkerCapability {
                        kind: "workflow:a".into(),
                        version: 0
                    })
                ),
                format!("SADD {PENDING_CAPS}"),
                format!(
                    "RPUSH {}",
                    pending(&WorkerCapability {
                        kind: "workflow:a".into(),
                        version: 0
                    })
                ),
                format!(
                    "RPUSH {}",
                    pending(&WorkerCapability {
                        kind: "workflow:b".into(),
                        version: 0
                    })
                ),
                format!("SADD {PENDING_CAPS}"),
            ]
        );
    }
}
