//! The chaos run's TCP proxy between the workers and the control plane: it
//! forwards bytes both ways and, on command, delays every chunk, stalls
//! every connection (holds what it has read, reads no more, so the
//! senders' buffers fill), or resets every open connection (RST on both
//! sides).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What every connection reads before it forwards a chunk.
struct Faults {
    /// Added before each chunk is written on, in ms (0: none).
    delay_ms: AtomicU64,
    /// True while nothing is forwarded.
    stall: watch::Sender<bool>,
    /// Bumped to reset every open connection.
    reset: watch::Sender<u64>,
    /// Connections open now, and accepted in all.
    open: AtomicUsize,
    accepted: AtomicU64,
}

/// A running proxy (stopped when dropped).
pub struct Proxy {
    runtime: Option<tokio::runtime::Runtime>,
    faults: Arc<Faults>,
    port: u16,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `127.0.0.1:upstream` (a connection whose upstream refuses is closed
    /// at once, as the control plane itself would be while down).
    pub fn start(upstream: u16) -> Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chaos-proxy")
            .enable_all()
            .build()
            .context("the proxy's runtime")?;
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let faults = Arc::new(Faults {
            delay_ms: AtomicU64::new(0),
            stall: watch::channel(false).0,
            reset: watch::channel(0).0,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
        });
        let f = faults.clone();
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(std_listener) else {
                return;
            };
            while let Ok((inbound, _)) = listener.accept().await {
                f.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(forward(inbound, upstream, f.clone()));
            }
        });
        Ok(Proxy {
            runtime: Some(runtime),
            faults,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Adds `ms` before every forwarded chunk (0: none).
    pub fn set_delay(&self, ms: u64) {
        self.faults.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Stops (true) or resumes (false) forwarding on every connection.
    pub fn set_stall(&self, on: bool) {
        self.faults.stall.send_replace(on);
    }

    /// Resets every open connection; returns how many were open.
    pub fn reset_all(&self) -> usize {
        let open = self.faults.open.load(Ordering::Relaxed);
        self.faults.reset.send_modify(|g| *g += 1);
        open
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.faults.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Counts a connection as open until dropped.
struct Open(Arc<Faults>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn forward(inbound: TcpStream, upstream: u16, faults: Arc<Faults>) {
    let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    faults.open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(faults.clone());
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let mut reset = faults.reset.subscribe();
    let (mut in_r, mut in_w) = inbound.into_split();
    let (mut out_r, mut out_w) = outbound.into_split();
    let rst = tokio::select! {
        r = async {
            tokio::try_join!(
                pump(&mut in_r, &mut out_w, &faults),
                pump(&mut out_r, &mut in_w, &faults)
            )
        } => r.is_err(),
        _ = reset.changed() => true,
    };
    if rst {
        // Both sockets close with RST, as a broken link or a middlebox
        // would: neither side gets a clean end of stream.
        let _ = in_w.as_ref().set_zero_linger();
        let _ = out_w.as_ref().set_zero_linger();
    }
}

/// Copies `from` to `to` until the end of stream (passed on as a
/// half-close), obeying the faults; an error ends both directions.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    faults: &Faults,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut stall = faults.stall.subscribe();
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        if *stall.borrow_and_update() {
            let _ = stall.wait_for(|on| !*on).await;
        }
        let delay = faults.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}
