//! The connections behind one client handle: which connection a call
//! takes, and the FIFO in front of each.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use blazen_controlplane::client::Client;
use tokio::sync::Semaphore;
use tonic::transport::ClientTlsConfig;
use uuid::Uuid;

use super::reach::{check_endpoint, connect};
use super::BlazenControlPlaneClient;
use crate::rt::{BlazenError, Result};

/// The connections of one client handle.
pub(super) struct Pool {
    conns: Box<[Conn]>,
}

/// One connection (a native `Client`, which runs its RPCs one at a time
/// behind a mutex) and the FIFO in front of it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    /// Waiting here first, in FIFO order, keeps a queued call small: the
    /// RPC's own (large) future is made only when the turn comes.
    turn: Semaphore,
    /// Calls queued on or running over this connection.
    load: AtomicUsize,
    /// Subscriptions opened over this connection and still open.
    streams: AtomicUsize,
    /// Where it goes, for errors that name it.
    pub(crate) endpoint: Arc<str>,
    tls: Option<ClientTlsConfig>,
}

/// Counts a call against its connection's load until it finishes or is
/// dropped.
struct Load<'a>(&'a AtomicUsize);

impl Drop for Load<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts an open subscription against its connection until dropped.
pub(crate) struct StreamSlot {
    pool: Arc<Pool>,
    index: usize,
}

impl StreamSlot {
    pub(crate) fn conn(&self) -> &Conn {
        &self.pool.conns[self.index]
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.conn().streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BlazenControlPlaneClient {
    pub(super) fn new(clients: Vec<Client>, endpoint: &str, tls: Option<ClientTlsConfig>) -> Self {
        let endpoint: Arc<str> = Arc::from(endpoint);
        let conns = clients
            .into_iter()
            .map(|client| Conn {
                client,
                endpoint: endpoint.clone(),
                tls: tls.clone(),
                turn: Semaphore::new(1),
                load: AtomicUsize::new(0),
                streams: AtomicUsize::new(0),
            })
            .collect();
        Self {
            pool: Arc::new(Pool { conns }),
        }
    }

    /// The connection with the fewest calls queued or running (the first
    /// such one).
    fn least_loaded(&self) -> &Conn {
        let conns = &self.pool.conns;
        let mut best = &conns[0];
        let mut best_load = best.load.load(Ordering::Relaxed);
        for c in &conns[1..] {
            if best_load == 0 {
                break;
            }
            let l = c.load.load(Ordering::Relaxed);
            if l < best_load {
                (best, best_load) = (c, l);
            }
        }
        best
    }

    /// The connection of every call about `run_id`: the same one each time,
    /// so calls about one run keep their order.
    fn index_for_run(&self, run_id: Uuid) -> usize {
        let v = run_id.as_u128();
        let folded = (v as u64) ^ ((v >> 64) as u64);
        (folded % self.pool.conns.len() as u64) as usize
    }

    /// Takes a connection for a subscription: the run's own for a run's
    /// events, otherwise the one with the fewest open subscriptions (then
    /// the fewest calls).
    pub(crate) fn stream_slot(&self, run_id: Option<Uuid>) -> StreamSlot {
        let conns = &self.pool.conns;
        let index = match run_id {
            Some(id) => self.index_for_run(id),
            None => (0..conns.len())
                .min_by_key(|&i| {
                    let c = &conns[i];
                    (
                        c.streams.load(Ordering::Relaxed),
                        c.load.load(Ordering::Relaxed),
                    )
                })
                .unwrap_or(0),
        };
        conns[index].streams.fetch_add(1, Ordering::Relaxed);
        StreamSlot {
            pool: self.pool.clone(),
            index,
        }
    }

    /// Runs one RPC on the least-loaded connection.
    pub(super) fn rpc<'a, T: 'a, E, F>(
        &'a self,
        call: impl FnOnce(Client) -> F + 'a,
    ) -> impl Future<Output = Result<T>> + 'a
    where
        F: Future<Output = std::result::Result<T, E>> + Send + 'a,
        E: Into<BlazenError> + 'a,
    {
        rpc_on(self.least_loaded(), call)
    }

    /// Runs one RPC about `run_id` on that run's connection.
    pub(super) fn rpc_for<'a, T: 'a, E, F>(
        &'a self,
        run_id: Uuid,
        call: impl FnOnce(Client) -> F + 'a,
    ) -> impl Future<Output = Result<T>> + 'a
    where
        F: Future<Output = std::result::Result<T, E>> + Send + 'a,
        E: Into<BlazenError> + 'a,
    {
        rpc_on(&self.pool.conns[self.index_for_run(run_id)], call)
    }
}

/// Runs one RPC on `conn` in FIFO order. A call waiting for its turn holds
/// only its arguments; the RPC's own (large) future is allocated when the
/// turn comes, so thousands of pending calls stay cheap.
async fn rpc_on<T, E, F>(conn: &Conn, call: impl FnOnce(Client) -> F) -> Result<T>
where
    F: Future<Output = std::result::Result<T, E>> + Send,
    E: Into<BlazenError>,
{
    conn.load.fetch_add(1, Ordering::Relaxed);
    let _load = Load(&conn.load);
    let _turn = conn.turn.acquire().await;
    match Box::pin(call(conn.client.clone())).await {
        Ok(v) => Ok(v),
        Err(e) => Err(conn.named(e.into()).await),
    }
}

impl Conn {
    /// `e`, naming this connection's endpoint and the cause when it is a
    /// failure to reach the control plane.
    pub(crate) async fn named(&self, e: BlazenError) -> BlazenError {
        super::reach::named(e, &self.endpoint, self.tls.clone()).await
    }
}

/// Opens `n` connections at once; fails if any fails.
pub(super) async fn connect_pool(
    endpoint: String,
    tls: Option<ClientTlsConfig>,
    bearer_token: Option<String>,
    n: usize,
) -> Result<BlazenControlPlaneClient> {
    check_endpoint(&endpoint)?;
    let clients = futures_util::future::try_join_all(
        (0..n).map(|_| connect(endpoint.clone(), tls.clone(), bearer_token.clone())),
    )
    .await?;
    if let Some(first) = clients.first() {
        super::reach::check_wire(first, &endpoint).await?;
    }
    Ok(BlazenControlPlaneClient::new(clients, &endpoint, tls))
}
