//! The embedded control plane's durable store (option `store_url`): a Redis
//! or Valkey server (one, over TCP, TLS or a Unix socket, or the primary a
//! set of sentinels names), in blazen-controlplane 0.7.0's key layout
//! (`keys`), and the cold-start recovery that rebuilds the queue from it
//! (the crate's `recover_from_store` loses queued runs' states and
//! duplicates runs, `docs/upstream.md` 12).
//!
//! Every write goes through one ordered backlog (`backlog`) that one task
//! (`writer`) sends in pipelines, as many writes at a time as have piled
//! up, so concurrent runs share round trips. The writes a caller acts on
//! are awaited: an assignment (a submission is acknowledged only once it
//! is written) and a terminal state (a run's end is announced only once it
//! is recorded, and with it every earlier write of the run). A run's claim
//! and RUNNING state are acted on too, but by the writer itself: it hands
//! the run to its worker once they are written (`claims`), so no task
//! waits for them. The others (PENDING states, queue entries, deletions)
//! return once queued: they are written in order, before any later write. A write that finds the store down (no answer within
//! [`CALL_TIMEOUT`], an error, a server that is no longer the primary)
//! fails at once but stays in the backlog, merged with later writes to the
//! same record, and is written when the store answers again; submissions
//! are refused meanwhile, and whenever more than `store_replay_limit`
//! writes wait ([`DEFAULT_REPLAY_LIMIT`]). A refused submission's writes
//! are withdrawn (and its records deleted), so it never runs after a
//! restart.
//!
//! Claims (which session runs a run) are kept here too, so a run's claim is
//! released when it ends and a session's end releases only the runs it
//! still holds: the crate's `release_inflight` walks every run the
//! session ever claimed, two round trips each, which after a few thousand
//! runs passed the call limit and took a healthy store for down.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blazen_controlplane::ControlPlaneError;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::lock;
use crate::Error;
pub(crate) use crate::STORE_STATUS_PREFIX as STATUS_PREFIX;

mod backlog;
mod claims;
mod keys;
mod link;
mod recover;
mod trait_impl;
mod trim;
mod url;
mod writer;
mod writes;

pub(crate) use recover::recover;
pub(crate) use trim::TRIM_EVERY;
pub use url::redact;

use backlog::Backlog;
pub(crate) use backlog::Join;
use keys::Op;

/// The longest `server_start*` waits to reach the store before it fails
/// with PEER / `ControlPlaneStore`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest one store call (a read, or a batch of writes) may take
/// before the store is taken to be down.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Default time a finished run's snapshot is kept in the store.
pub const DEFAULT_FINISHED_TTL: Duration = Duration::from_secs(3600);

/// How many writes may wait for the store (while it is down or behind)
/// before submissions are refused, unless `store_replay_limit` says
/// otherwise. Writes of runs already accepted are still kept past it, at
/// most four per run (a run's latest state, assignment, claim and queue
/// entry).
pub const DEFAULT_REPLAY_LIMIT: usize = 100_000;

/// What is known about the store and its writes.
#[derive(Default)]
struct State {
    /// Why the store is down; `None` while it answers.
    down: Option<String>,
    backlog: Backlog,
    /// Runs whose assignment is in the store (or being written): a write
    /// of a run not among them is a submission.
    known: HashSet<Uuid>,
    /// The session that claims each claimed run ...
    claims: HashMap<Uuid, Uuid>,
    /// ... and the runs each session claims.
    sessions: HashMap<Uuid, HashSet<Uuid>>,
    /// With Sentinel: the writes made lately (see [`writer::RECENT`]).
    recent: std::collections::VecDeque<(std::time::Instant, u64, Uuid, Op)>,
    /// The server the last connections were made to.
    server: Option<String>,
    /// Set when the control plane is dropped: nothing more is written.
    closed: bool,
    /// Submissions refused lately (`claims`), oldest first.
    refused: HashSet<Uuid>,
    refused_order: std::collections::VecDeque<Uuid>,
}

/// The connections: one the writer uses alone, one for reads.
#[derive(Clone)]
pub(crate) struct Conns {
    write: MultiplexedConnection,
    read: MultiplexedConnection,
    /// The server written to (with Sentinel, the primary's address).
    server: String,
}

/// The store.
pub(crate) struct Durable {
    link: link::Link,
    /// The TTL of finished runs' states (`None`: kept).
    ttl: Option<Duration>,
    limit: usize,
    state: Mutex<State>,
    conns: Mutex<Option<Conns>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("target", &self.link.target.shown)
            .finish()
    }
}

/// Checks the option (scheme, query keys, readable TLS files).
pub fn check_url(url: &str) -> Result<(), String> {
    url::parse(url).map(drop)
}

/// Connects to the store at `url` within [`CONNECT_TIMEOUT`]; finished
/// runs' states expire after `ttl`; submissions are refused while more
/// than `limit` writes wait.
pub(crate) async fn connect(
    url: &str,
    ttl: Option<Duration>,
    limit: Option<usize>,
) -> Result<Arc<Durable>, Error> {
    let target = url::parse(url).map_err(|problem| Error::Invalid {
        param: "store_url",
        problem,
    })?;
    let shown = target.shown.clone();
    let fail = |why: String| {
        Error::peer(
            crate::Subkind::ControlPlaneStore,
            format!("cannot reach the control plane store {shown}: {why}"),
        )
    };
    let link = link::Link::new(target).map_err(fail)?;
    let wake = Arc::new(Notify::new());
    let store = Arc::new(Durable {
        link,
        ttl,
        limit: limit.unwrap_or(DEFAULT_REPLAY_LIMIT).max(1),
        state: Mutex::default(),
        conns: Mutex::default(),
        wake: wake.clone(),
    });
    let reached = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut c = store.conns().await?;
        redis::cmd("PING")
            .query_async::<()>(&mut c.write)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    match reached {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(fail(why)),
        Err(_) => {
            return Err(fail(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    }
    tokio::spawn(writer::run(Arc::downgrade(&store), wake));
    Ok(store)
}

impl Durable {
    pub(crate) fn error(&self, why: &str) -> ControlPlaneError {
        ControlPlaneError::Transport(format!(
            "{STATUS_PREFIX} {} is unavailable: {why}",
            self.link.target.shown
        ))
    }

    /// The gRPC status for a store error.
    pub(crate) fn status(e: &ControlPlaneError) -> tonic::Status {
        match e {
            ControlPlaneError::Transport(t) if t.starts_with(STATUS_PREFIX) => {
                tonic::Status::unavailable(t.clone())
            }
            other => tonic::Status::unavailable(format!("{STATUS_PREFIX}: {other}")),
        }
    }

    /// Why the store is down, if it is.
    pub(crate) fn down(&self) -> Option<String> {
        lock(&self.state).down.clone()
    }

    /// How many writes wait to be sent to the store (all of those made
    /// while it is down; normally a batch in progress).
    pub(crate) fn writes_waiting(&self) -> usize {
        lock(&self.state).backlog.len()
    }

    /// Stops writing: the writer sends no batch from now on (one already
    /// sent may still land), as if the process had ended here.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }

    /// Waits until no write waits (or `within` passed).
    pub(crate) async fn flushed(&self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while self.writes_waiting() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Takes the store to be down for `why` (the writer probes it).
    fn mark_down(&self, why: String) {
        {
            let mut st = lock(&self.state);
            if st.down.is_none() {
                tracing::warn!(store = %self.link.target.shown, error = %why, "control plane store unavailable");
            }
            st.down = Some(why);
        }
        *lock(&self.conns) = None;
        self.wake.notify_one();
    }

    /// Why a submission cannot be accepted now, if it cannot.
    fn refusal(&self, st: &State) -> Option<ControlPlaneError> {
        let waiting = st.backlog.len();
        let over = (waiting >= self.limit).then(|| {
            format!(
                "{waiting} writes wait for it, the most kept for new runs (store_replay_limit \
                 {}); submissions are refused until fewer wait",
                self.limit
            )
        });
        match (&st.down, over) {
            (Some(why), None) => Some(self.error(why)),
            (Some(why), Some(over)) => Some(self.error(&format!("{why}; {over}"))),
            (None, Some(over)) => Some(ControlPlaneError::Transport(format!(
                "{STATUS_PREFIX} {} is behind: {over}",
                self.link.target.shown
            ))),
            (None, None) => None,
        }
    }

    /// Runs a read: fails at once while the store is down.
    async fn read<T, F, Fut>(&self, f: F) -> Result<T, ControlPlaneError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if let Some(why) = self.down() {
            return Err(self.error(&why));
        }
        let conn = lock(&self.conns).clone().map(|c| c.read);
        let Some(conn) = conn else {
            return Err(self.error("not connected"));
        };
        match tokio::time::timeout(CALL_TIMEOUT, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let why = e.to_string();
                self.mark_down(why.clone());
                Err(self.error(&why))
            }
            Err(_) => {
                let why = format!("no answer within {} ms", CALL_TIMEOUT.as_millis());
                self.mark_down(why.clone());
                Err(self.error(&why))
            }
        }
    }
}
