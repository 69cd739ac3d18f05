//! The one task that writes to the store: it takes the oldest waiting
//! writes, as many as have piled up (up to [`BATCH_COMMANDS`] commands
//! had each been sent alone), sends them as one pipeline of a few
//! multi-key commands ([`Folded`]) and tells their callers. While the store is
//! down it probes it every [`PROBE_EVERY`] (reconnecting, through the
//! sentinels when there are some) and then writes what waited, oldest
//! first, in the same batches.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;

use super::backlog::Entry;
use super::keys::Folded;
use super::{lock, Conns, Durable, CALL_TIMEOUT};

/// How often a store that is down is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The most commands one batch's writes would take, each sent alone.
const BATCH_COMMANDS: usize = 4096;

/// The most times the writer yields to let more writes join a batch
/// ([`Durable::gather`]).
const GATHER_PASSES: usize = 4;

/// How long the replicas a write must reach (`replicas=N`) have to confirm
/// it (Redis `WAIT`).
const WAIT_MS: u64 = 500;

/// With Sentinel, how long written writes are kept: when the primary
/// changes, those written within this time are written again to the new
/// one (before any later write), since a write the old primary (and one
/// of its replicas) confirmed may be lost when a replica that did not get
/// it is promoted; and at most this many of them ([`RECENT`] at 10,000
/// writes a second).
pub(crate) const RECENT: Duration = Duration::from_secs(30);
const RECENT_MOST: usize = 300_000;

/// Writes until the store is dropped.
pub(crate) async fn run(store: Weak<Durable>, wake: Arc<Notify>) {
    let mut failed = false;
    loop {
        if failed {
            tokio::time::sleep(PROBE_EVERY).await;
        }
        let Some(s) = store.upgrade() else {
            return;
        };
        s.gather().await;
        let batch = {
            let mut st = lock(&s.state);
            if st.closed {
                return;
            }
            st.backlog.take(BATCH_COMMANDS)
        };
        if batch.is_empty() {
            if s.down().is_some() {
                failed = !s.probe().await;
                continue;
            }
            drop(s);
            // Wakes on a write, or now and then to see whether the store
            // has been dropped.
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            failed = false;
            continue;
        }
        let sent = tokio::time::timeout(CALL_TIMEOUT * 2, s.send(&batch))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", CALL_TIMEOUT.as_millis())));
        match sent {
            Ok(()) => {
                s.written(batch);
                failed = false;
            }
            Err(why) => {
                s.failed(batch, why);
                failed = true;
            }
        }
    }
}

impl Durable {
    /// Lets the tasks that became ready with the writer (the callers of
    /// the last batch answering their clients, the dispatcher routing the
    /// runs their ends made room for) make their writes first, so that
    /// they join this batch instead of waiting for the next: the writer
    /// yields and looks again while the backlog grows, up to
    /// [`GATHER_PASSES`] times. A lone write costs one yield.
    async fn gather(&self) {
        let mut waiting = lock(&self.state).backlog.len();
        for _ in 0..GATHER_PASSES {
            tokio::task::yield_now().await;
            let now = lock(&self.state).backlog.len();
            if now == waiting {
                return;
            }
            waiting = now;
        }
    }

    /// The connections, opened first when there are none.
    pub(crate) async fn conns(&self) -> Result<Conns, String> {
        if let Some(c) = lock(&self.conns).clone() {
            return Ok(c);
        }
        let (write, server) = self.link.open(CALL_TIMEOUT).await?;
        let (read, _) = self.link.open(CALL_TIMEOUT).await?;
        let c = Conns {
            write,
            read,
            server: server.clone(),
        };
        self.rewrite_recent(&server);
        *lock(&self.conns) = Some(c.clone());
        Ok(c)
    }

    /// With Sentinel, on a new primary: the writes made lately go back in
    /// front of the waiting ones (written again, in their order).
    fn rewrite_recent(&self, server: &str) {
        let mut st = lock(&self.state);
        let before = st.server.replace(server.to_string());
        if before.is_none() || before.as_deref() == Some(server) || st.recent.is_empty() {
            return;
        }
        let again: Vec<(u64, Entry)> = st
            .recent
            .drain(..)
            .map(|(_, seq, run, op)| {
                (
                    seq,
                    Entry {
                        run,
                        op,
                        waiters: Vec::new(),
                    },
                )
            })
            .collect();
        tracing::warn!(
            store = %self.link.target.shown,
            from = before.as_deref().unwrap_or(""),
            to = server,
            writes = again.len(),
            "the store's primary changed: the writes of the last 30 s are written again"
        );
        let in_flight = st.backlog.in_flight;
        st.backlog.put_back(again);
        st.backlog.in_flight = in_flight;
    }

    /// Reconnects and pings; true when the store answered (it is then
    /// taken to be up).
    async fn probe(&self) -> bool {
        let answer = tokio::time::timeout(CALL_TIMEOUT * 2, async {
            let mut c = self.conns().await?;
            redis::cmd("PING")
                .query_async::<()>(&mut c.write)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match answer {
            Ok(Ok(())) => {
                self.up();
                true
            }
            Ok(Err(why)) => {
                self.mark_down(why);
                false
            }
            Err(_) => {
                self.mark_down(format!("no answer within {} ms", CALL_TIMEOUT.as_millis()));
                false
            }
        }
    }

    /// Sends `batch` as one pipeline (then `WAIT` for the replicas).
    async fn send(&self, batch: &[(u64, Entry)]) -> Result<(), String> {
        let before = lock(&self.state).server.clone();
        let conns = self.conns().await?;
        if before.is_some_and(|b| b != conns.server) {
            // The writes made lately were put back in front of this batch.
            return Err(format!("the primary is now {}", conns.server));
        }
        let mut conn: MultiplexedConnection = conns.write;
        let mut folded = Folded::default();
        for (_, e) in batch {
            folded.add(e.run, &e.op);
        }
        let mut p = folded.pipeline();
        let replicas = self.link.target.replicas;
        if replicas > 0 {
            p.cmd("WAIT").arg(replicas).arg(WAIT_MS);
        }
        let replies: Vec<i64> = p.query_async(&mut conn).await.map_err(|e| e.to_string())?;
        match replies.first() {
            Some(n) if *n < i64::from(replicas) => Err(format!(
                "{n} of the {replicas} replicas a write must reach confirmed it within {WAIT_MS} ms"
            )),
            _ => Ok(()),
        }
    }

    /// The batch is in the store: its callers are told.
    fn written(&self, batch: Vec<(u64, Entry)>) {
        {
            let mut st = lock(&self.state);
            st.backlog.in_flight = 0;
            if self.link.sentinel() {
                let now = Instant::now();
                st.recent.extend(
                    batch
                        .iter()
                        .map(|(seq, e)| (now, *seq, e.run, e.op.clone())),
                );
                while st.recent.len() > RECENT_MOST
                    || st.recent.front().is_some_and(|r| now - r.0 > RECENT)
                {
                    st.recent.pop_front();
                }
            }
        }
        self.up();
        for (_, e) in batch {
            for w in e.waiters {
                w.tell(Ok(()));
            }
        }
    }

    /// The batch could not be written: it goes back in front of the
    /// waiting writes, the store is taken to be down, its callers are told.
    fn failed(&self, mut batch: Vec<(u64, Entry)>, why: String) {
        let waiters: Vec<_> = batch
            .iter_mut()
            .flat_map(|(_, e)| std::mem::take(&mut e.waiters))
            .collect();
        lock(&self.state).backlog.put_back(batch);
        self.mark_down(why.clone());
        for w in waiters {
            w.tell(Err(why.clone()));
        }
    }

    /// Takes the store to be up again (it answered; what still waits is
    /// written next, and submissions wait behind it).
    fn up(&self) {
        let mut st = lock(&self.state);
        if st.down.is_some() {
            st.down = None;
            tracing::info!(store = %self.link.target.shown, "control plane store available again");
        }
    }
}
