//! The writes not yet in the store, oldest first. A write to a record
//! (a run's assignment, state, claim or queue entry) that still waits is
//! replaced by a later write to the same record, so however often a run
//! changes it holds at most four entries here.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::keys::{Op, Slot};
use crate::lock;

/// What runs once writes are in the store, or with the first that could
/// not be made (on the store's writer: briefly, without blocking).
pub(crate) type Then = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Told once the write is in the store (`Ok`) or could not be made now
/// (`Err`, why; the write itself stays, unless withdrawn).
pub(crate) enum Waiter {
    /// A caller awaiting the answer.
    Tell(oneshot::Sender<Result<(), String>>),
    /// One of the writes a [`Join`] waits for.
    Join(Arc<Join>),
}

impl Waiter {
    pub(crate) fn tell(self, answer: Result<(), String>) {
        match self {
            Waiter::Tell(tx) => drop(tx.send(answer)),
            Waiter::Join(join) => join.tell(answer),
        }
    }
}

/// Runs its [`Then`] once each of its writes is in the store, or at the
/// first that could not be made: no task waits for them.
pub(crate) struct Join {
    /// Its writes not yet in the store. All its waiters are made while the
    /// store's state is locked, before the writer can take any of them.
    left: AtomicUsize,
    then: Mutex<Option<Then>>,
}

impl Join {
    /// A join of no writes yet (see [`Join::waiter`]).
    pub(crate) fn new(then: Then) -> Arc<Join> {
        Arc::new(Join {
            left: AtomicUsize::new(0),
            then: Mutex::new(Some(then)),
        })
    }

    /// The waiter of one more write of the join.
    pub(crate) fn waiter(self: &Arc<Self>) -> Waiter {
        self.left.fetch_add(1, Ordering::AcqRel);
        Waiter::Join(self.clone())
    }

    /// Runs the continuation now with `answer`, unless it has run.
    pub(crate) fn run(&self, answer: Result<(), String>) {
        let then = lock(&self.then).take();
        if let Some(then) = then {
            then(answer);
        }
    }

    fn tell(&self, answer: Result<(), String>) {
        let last = self.left.fetch_sub(1, Ordering::AcqRel) == 1;
        if answer.is_err() || last {
            self.run(answer);
        }
    }
}

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

    /// Drops every waiting write of `run`; returns their waiters, to be
    /// told (once no lock is held) that the writes were withdrawn.
    #[must_use]
    pub(crate) fn withdraw(&mut self, run: Uuid) -> Vec<Waiter> {
        let seqs: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.run == run)
            .map(|(s, _)| *s)
            .collect();
        let mut waiters = Vec::new();
        for seq in seqs {
            if let Some(e) = self.entries.remove(&seq) {
                self.slots.remove(&(run, e.op.slot()));
                waiters.extend(e.waiters);
            }
        }
        waiters
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
        b.push(r1, Op::PutAssignment(vec![1]), Some(Waiter::Tell(tx)));
        b.push(r1, state(1), None);
        b.push(r2, state(1), None);
        for w in b.withdraw(r1) {
            w.tell(Err("withdrawn".to_string()));
        }
        assert_eq!(b.len(), 1);
        assert!(matches!(rx.try_recv(), Ok(Err(_))));
        b.push(r1, Op::DeleteAssignment, None);
        assert_eq!(b.len(), 2, "a new write of the run is kept");
    }

    #[test]
    fn a_join_runs_once_after_its_last_write_or_at_the_first_failure() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let join = || {
            let told = told.clone();
            Join::new(Box::new(move |r| lock(&told).push(r)))
        };
        let j = join();
        let (a, b) = (j.waiter(), j.waiter());
        a.tell(Ok(()));
        assert!(lock(&told).is_empty(), "one of two written: not yet");
        b.tell(Ok(()));
        assert_eq!(*lock(&told), vec![Ok(())]);
        let j = join();
        let (a, b, c) = (j.waiter(), j.waiter(), j.waiter());
        a.tell(Ok(()));
        b.tell(Err("down".to_string()));
        c.tell(Ok(()));
        j.run(Err("again".to_string()));
        assert_eq!(
            *lock(&told),
            vec![Ok(()), Err("down".to_string())],
            "run at the failure, and only then"
        );
    }
}
