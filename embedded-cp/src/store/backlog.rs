//! The writes not yet in the store, oldest first. A write to a record
//! (a run's assignment, state, claim or queue entry) that still waits is
//! replaced by a later write to the same record, so however often a run
//! changes it holds at most four entries here.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::keys::{Op, Slot};

/// Told once the write is in the store (`Ok`) or could not be made now
/// (`Err`, why; the write itself stays, unless withdrawn).
pub(crate) type Waiter = oneshot::Sender<Result<(), String>>;

pub(crate) struct Entry {
    pub run: Uuid,
    pub op: Op,
    pub waiters: Vec<Waiter>,
}

#[derive(Default)]
pub(crate) struct Backlog {
    entries: BTreeMap<u64, Entry>,
    slots: HashMap<(Uuid, Slot), u64>,
    next: u64,
    /// Entries taken for the batch being written.
    pub in_flight: usize,
}

impl Backlog {
    /// Entries waiting or being written.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() + self.in_flight
    }

    /// Adds a write, or merges it into the waiting write to the same record.
    pub(crate) fn push(&mut self, run: Uuid, op: Op, waiter: Option<Waiter>) {
        let slot = op.slot();
        if let Some(entry) = self
            .slots
            .get(&(run, slot))
            .and_then(|seq| self.entries.get_mut(seq))
        {
            let first = std::mem::replace(&mut entry.op, Op::Release);
            entry.op = first.merged(op);
            entry.waiters.extend(waiter);
            return;
        }
        let seq = self.next;
        self.next += 1;
        self.slots.insert((run, slot), seq);
        self.entries.insert(
            seq,
            Entry {
                run,
                op,
                waiters: waiter.into_iter().collect(),
            },
        );
    }

    /// Takes the oldest writes, up to about `most_commands` commands.
    pub(crate) fn take(&mut self, most_commands: usize) -> Vec<(u64, Entry)> {
        let mut batch = Vec::new();
        let mut commands = 0;
        while commands < most_commands {
            let Some((seq, entry)) = self.entries.pop_first() else {
                break;
            };
            if self.slots.get(&(entry.run, entry.op.slot())) == Some(&seq) {
                self.slots.remove(&(entry.run, entry.op.slot()));
            }
            commands += entry.op.commands();
            batch.push((seq, entry));
        }
        self.in_flight = batch.len();
        batch
    }

    /// Puts back a batch that could not be written, in front of every
    /// later write (a later write to the same record stays the one merged
    /// into).
    pub(crate) fn put_back(&mut self, batch: Vec<(u64, Entry)>) {
        self.in_flight = 0;
        for (seq, entry) in batch {
            self.slots
                .entry((entry.run, entry.op.slot()))
                .or_insert(seq);
            self.entries.insert(seq, entry);
        }
    }

    /// Drops every waiting write of `run` (their waiters are told the
    /// write is withdrawn).
    pub(crate) fn withdraw(&mut self, run: Uuid) {
        let seqs: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.run == run)
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            if let Some(e) = self.entries.remove(&seq) {
                self.slots.remove(&(run, e.op.slot()));
                for w in e.waiters {
                    let _ = w.send(Err("the write was withdrawn".to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: u8) -> Op {
        Op::PutState {
            bytes: vec![n],
            ttl_secs: None,
        }
    }

    #[test]
    fn a_later_write_to_the_same_record_replaces_the_waiting_one() {
        let mut b = Backlog::default();
        let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
        b.push(r1, state(1), None);
        b.push(r2, state(1), None);
        for n in 2..100 {
            b.push(r1, state(n), None);
        }
        b.push(r1, Op::DeleteAssignment, None);
        assert_eq!(b.len(), 3, "one state each, one assignment");
        let batch = b.take(1000);
        let ops: Vec<(Uuid, String)> = batch
            .iter()
            .map(|(_, e)| (e.run, format!("{:?}", e.op)))
            .collect();
        assert_eq!(ops[0].0, r1, "the first run keeps its place");
        assert!(ops[0].1.contains("[99]"), "with its latest state: {ops:?}");
        assert_eq!(ops[1].0, r2);
        assert_eq!(b.len(), 3, "taken, in flight");
        // Written while the batch is in flight: a new entry, behind it.
        b.push(r1, state(100), None);
        b.put_back(batch);
        assert_eq!(b.len(), 4);
        let again = b.take(1000);
        assert!(format!("{:?}", again[0].1.op).contains("[99]"));
        assert!(format!("{:?}", again[3].1.op).contains("[100]"));
    }

    #[test]
    fn withdrawing_a_run_drops_its_writes_and_tells_their_waiters() {
        let mut b = Backlog::default();
        let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
        let (tx, mut rx) = oneshot::channel();
        b.push(r1, Op::PutAssignment(vec![1]), Some(tx));
        b.push(r1, state(1), None);
        b.push(r2, state(1), None);
        b.withdraw(r1);
        assert_eq!(b.len(), 1);
        assert!(matches!(rx.try_recv(), Ok(Err(_))));
        b.push(r1, Op::DeleteAssignment, None);
        assert_eq!(b.len(), 2, "a new write of the run is kept");
    }
}
