//! The store's key layout, the one blazen-controlplane 0.7.0's
//! `ValkeyAssignmentStore` writes (so a store written by either is read by
//! the other), and the Redis commands of a batch of writes.
//!
//! | key | holds |
//! |---|---|
//! | `blazen:cp:assign:{run}` | the run's `Assignment` (postcard) while it has not ended |
//! | `blazen:cp:state:{run}` | its `RunStateSnapshotWire` (postcard); with a TTL once terminal |
//! | `blazen:cp:pending:{kind}:{version}` | list of `(run, tags)` (postcard) queued for a capability |
//! | `blazen:cp:pending_caps` | set of `{kind}:{version}` with a pending list |
//! | `blazen:cp:inflight:{run}` | the session a running run is claimed by |
//! | `blazen:cp:inflight_runs` | set of every claimed run |
//!
//! The crate's server also keeps `blazen:cp:inflight_by_session:{session}`,
//! the runs a session claims, which only the server of that session reads
//! (to release them when the session ends). This control plane keeps that
//! set in memory, so it writes none; the recovery deletes those a crate's
//! server (or an earlier version of this library) left.

use std::borrow::Cow;

use blazen_core::distributed::WorkerCapability;
use uuid::Uuid;

pub(crate) const PREFIX: &str = "blazen:cp:";
pub(crate) const PENDING_CAPS: &str = "blazen:cp:pending_caps";
pub(crate) const INFLIGHT_RUNS: &str = "blazen:cp:inflight_runs";

/// `{PREFIX}{kind}{id}`, without the formatting machinery.
fn run_key(kind: &str, id: Uuid) -> String {
    let mut key = String::with_capacity(PREFIX.len() + kind.len() + 36);
    key.push_str(PREFIX);
    key.push_str(kind);
    key.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    key
}

/// A run's id as a set member or a claim's value.
fn member(id: Uuid) -> String {
    id.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_string()
}

pub(crate) fn assign(run: Uuid) -> String {
    run_key("assign:", run)
}

pub(crate) fn state(run: Uuid) -> String {
    run_key("state:", run)
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
    run_key("inflight:", run)
}

pub(crate) fn by_session(session: Uuid) -> String {
    run_key("inflight_by_session:", session)
}

/// Which record of a run a write changes: a later write to the same slot
/// replaces one still waiting to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    Assignment,
    State,
    Claim,
    Queue,
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
    Release,
    /// `entry` is the postcard `(run, tags)` pushed on `cap`'s list.
    Enqueue {
        cap: WorkerCapability,
        entry: Vec<u8>,
    },
}

impl Op {
    pub(crate) fn slot(&self) -> Slot {
        match self {
            Op::PutAssignment(_) | Op::DeleteAssignment => Slot::Assignment,
            Op::PutState { .. } | Op::DeleteState => Slot::State,
            Op::Claim { .. } | Op::Release => Slot::Claim,
            Op::Enqueue { .. } => Slot::Queue,
        }
    }

    /// How many commands the write would take on its own (a batch folds
    /// them, [`Folded`]).
    pub(crate) fn commands(&self) -> usize {
        match self {
            Op::Claim { .. } | Op::Release | Op::Enqueue { .. } => 2,
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

/// A batch of writes as a few multi-key commands: one `MSET` of every
/// record put without a TTL, a `SETEX` per terminal state, an `RPUSH`
/// per pending list (entries in the batch's order) and one `SADD` of their
/// capabilities, one `SADD` of the claimed runs, one `DEL` of every record
/// deleted and one `SREM` of the released runs, in that order.
///
/// A batch holds at most one write per record (a later write to a record
/// replaces the waiting one, [`Op::merged`]), so the order of writes to
/// different records within a batch changes nothing once it is written;
/// the order above keeps, should only part of a batch reach the store,
/// what the recovery relies on: a run's terminal state is in before its
/// assignment goes, its assignment and state before its queue entry, and a
/// claim's record before its run is listed as claimed.
#[derive(Default)]
pub(crate) struct Folded<'a> {
    put: Vec<(String, Cow<'a, [u8]>)>,
    put_ttl: Vec<(String, &'a [u8], u64)>,
    lists: Vec<(&'a WorkerCapability, Vec<&'a [u8]>)>,
    claimed: Vec<String>,
    deleted: Vec<String>,
    released: Vec<String>,
}

impl<'a> Folded<'a> {
    /// Adds `run`'s write `op`.
    pub(crate) fn add(&mut self, run: Uuid, op: &'a Op) {
        match op {
            Op::PutAssignment(bytes) => self.put.push((assign(run), Cow::Borrowed(bytes))),
            Op::DeleteAssignment => self.deleted.push(assign(run)),
            Op::PutState {
                bytes,
                ttl_secs: Some(secs),
            } => self.put_ttl.push((state(run), bytes, *secs)),
            Op::PutState {
                bytes,
                ttl_secs: None,
            } => self.put.push((state(run), Cow::Borrowed(bytes))),
            Op::DeleteState => self.deleted.push(state(run)),
            Op::Claim { session } => {
                let value = member(*session).into_bytes();
                self.put.push((inflight(run), Cow::Owned(value)));
                self.claimed.push(member(run));
            }
            Op::Release => {
                self.deleted.push(inflight(run));
                self.released.push(member(run));
            }
            Op::Enqueue { cap, entry } => match self.lists.iter_mut().find(|(c, _)| *c == cap) {
                Some((_, entries)) => entries.push(entry),
                None => self.lists.push((cap, vec![entry])),
            },
        }
    }

    /// The commands, their replies ignored.
    pub(crate) fn pipeline(&self) -> redis::Pipeline {
        let mut p = redis::Pipeline::with_capacity(6 + self.put_ttl.len() + self.lists.len());
        if !self.put.is_empty() {
            // Sized at once: the batch's largest command.
            let bytes: usize = self.put.iter().map(|(k, v)| k.len() + v.len()).sum();
            let mut mset = redis::Cmd::with_capacity(1 + 2 * self.put.len(), 4 + bytes);
            mset.arg("MSET");
            for (key, value) in &self.put {
                mset.arg(key).arg(value.as_ref());
            }
            p.add_command(mset).ignore();
        }
        for (key, value, secs) in &self.put_ttl {
            p.set_ex(key, value, *secs).ignore();
        }
        if !self.lists.is_empty() {
            let mut caps = redis::cmd("SADD");
            caps.arg(PENDING_CAPS);
            for (cap, entries) in &self.lists {
                p.rpush(pending(cap), entries.as_slice()).ignore();
                caps.arg(cap_member(cap));
            }
            p.add_command(caps).ignore();
        }
        if !self.claimed.is_empty() {
            p.sadd(INFLIGHT_RUNS, self.claimed.as_slice()).ignore();
        }
        if !self.deleted.is_empty() {
            p.del(self.deleted.as_slice()).ignore();
        }
        if !self.released.is_empty() {
            p.srem(INFLIGHT_RUNS, self.released.as_slice()).ignore();
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(kind: &str) -> WorkerCapability {
        WorkerCapability {
            kind: kind.to_string(),
            version: 0,
        }
    }

    fn enqueue(kind: &str, entry: u8) -> Op {
        Op::Enqueue {
            cap: cap(kind),
            entry: vec![entry],
        }
    }

    /// Each command of `p`, its arguments joined by spaces.
    fn commands(p: &redis::Pipeline) -> Vec<String> {
        p.cmd_iter()
            .map(|c| {
                c.args_iter()
                    .map(|a| match a {
                        redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                        _ => "<cursor>".to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn a_batch_is_folded_into_one_command_per_kind_in_a_fixed_order() {
        let [r1, r2, r3, r4, session] = [1u128, 2, 3, 4, 9].map(Uuid::from_u128);
        let ops = [
            // A run ends (its terminal state expires) ...
            (
                r4,
                Op::PutState {
                    bytes: b"done".to_vec(),
                    ttl_secs: Some(60),
                },
            ),
            (r4, Op::DeleteAssignment),
            (r4, Op::Release),
            // ... two are submitted to one list and one to another ...
            (r1, Op::PutAssignment(b"a1".to_vec())),
            (
                r1,
                Op::PutState {
                    bytes: b"s1".to_vec(),
                    ttl_secs: None,
                },
            ),
            (r1, enqueue("workflow:a", 1)),
            (r2, enqueue("workflow:b", 2)),
            (r3, enqueue("workflow:a", 3)),
            // ... and one is claimed.
            (r3, Op::Claim { session }),
        ];
        let mut folded = Folded::default();
        for (run, op) in &ops {
            folded.add(*run, op);
        }
        let (a, b) = (pending(&cap("workflow:a")), pending(&cap("workflow:b")));
        assert_eq!(
            commands(&folded.pipeline()),
            [
                format!(
                    "MSET {} a1 {} s1 {} {session}",
                    assign(r1),
                    state(r1),
                    inflight(r3)
                ),
                format!("SETEX {} 60 done", state(r4)),
                format!("RPUSH {a} \u{1} \u{3}"),
                format!("RPUSH {b} \u{2}"),
                format!("SADD {PENDING_CAPS} workflow:a:0 workflow:b:0"),
                format!("SADD {INFLIGHT_RUNS} {r3}"),
                format!("DEL {} {}", assign(r4), inflight(r4)),
                format!("SREM {INFLIGHT_RUNS} {r4}"),
            ]
        );
    }

    #[test]
    fn an_empty_batch_has_no_command() {
        assert_eq!(commands(&Folded::default().pipeline()).len(), 0);
    }

    #[test]
    fn keys_are_the_crates() {
        let run = Uuid::from_u128(0xabc);
        assert_eq!(
            assign(run),
            format!("blazen:cp:assign:{run}"),
            "the same text as the crate's format!"
        );
        assert_eq!(state(run), format!("blazen:cp:state:{run}"));
        assert_eq!(inflight(run), format!("blazen:cp:inflight:{run}"));
        assert_eq!(
            by_session(run),
            format!("blazen:cp:inflight_by_session:{run}")
        );
        assert_eq!(member(run), run.to_string());
    }
}
