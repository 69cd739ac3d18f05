//! A loopback relay in front of the control plane: a test connects a
//! worker of the crate's own type through it, and closing it cuts that
//! worker's connection as a killed process would (the crate's worker
//! cannot end its own session).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running relay; closing it (or dropping it) cuts every connection.
pub struct Relay {
    closed: CancellationToken,
}

/// Where the worker should connect instead of the control plane.
pub struct Relayed {
    pub relay: Relay,
    pub endpoint: String,
}

impl Relay {
    /// Relays a loopback port to `endpoint` (`http://HOST:PORT`).
    pub async fn start(endpoint: &str) -> std::io::Result<Relayed> {
        let target = endpoint.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let local = listener.local_addr()?;
        let closed = CancellationToken::new();
        tokio::spawn(accept(listener, target, closed.clone()));
        Ok(Relayed {
            relay: Relay { closed },
            endpoint: format!("http://{local}"),
        })
    }

    pub fn close(&self) {
        self.closed.cancel();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.close();
    }
}

async fn accept(listener: TcpListener, target: String, closed: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = closed.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let (target, closed) = (target.clone(), closed.clone());
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                () = closed.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
