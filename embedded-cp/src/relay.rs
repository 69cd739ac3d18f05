//! A loopback relay between a worker and its control plane, owned by the
//! library. blazen-controlplane 0.7.0 keeps a worker's session open after
//! its `run` future is dropped (a spawned heartbeat and a process-global
//! key resolver hold the session's sender), so the server would go on
//! listing the worker and assigning it runs. Routing the worker through
//! this relay lets the library end the session for real: `close` cuts
//! every relayed connection, the server sees the worker leave, and the
//! crate's leftover tasks fail their sends and stop.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Uri;

use crate::{Error, Result};

/// A running relay; closing it (or dropping it) cuts every connection.
pub struct Relay {
    closed: CancellationToken,
}

/// Where a worker should connect instead of its configured endpoint.
pub struct Relayed {
    pub relay: Relay,
    /// The endpoint rewritten to the relay's loopback address.
    pub endpoint: String,
    /// The configured host, for TLS name checks.
    pub host: String,
}

impl Relay {
    /// Starts a relay to the host and port of `endpoint`, an http or https
    /// URI with a host (anything else is an `Invalid` error naming
    /// `endpoint`; blazen-cabi checks the endpoint before it gets here).
    pub async fn start(endpoint: &str) -> Result<Relayed> {
        let not_a_uri = || Error::Invalid {
            param: "endpoint",
            problem: format!("{endpoint:?} is not an http:// or https:// URI with a host"),
        };
        let uri = endpoint.parse::<Uri>().map_err(|_| not_a_uri())?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(not_a_uri());
        };
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let target = format!("{}:{port}", authority.host());
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| Error::Internal(format!("worker relay: cannot listen: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("worker relay: {e}")))?;
        let closed = CancellationToken::new();
        tokio::spawn(accept_loop(listener, target, closed.clone()));
        let path = uri.path_and_query().map_or("", |p| p.as_str());
        let path = if path == "/" { "" } else { path };
        Ok(Relayed {
            relay: Relay { closed },
            endpoint: format!("{scheme}://{local}{path}"),
            host,
        })
    }

    /// Cuts every relayed connection and stops accepting. Idempotent.
    pub fn close(&self) {
        self.closed.cancel();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.close();
    }
}

async fn accept_loop(listener: TcpListener, target: String, closed: CancellationToken) {
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
            // A failed connect drops `inbound`: the worker sees the failure
            // as it would without the relay and retries by its policy.
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                () = closed.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_an_http_uri_with_a_host_is_relayed() {
        for bad in ["not a uri", "127.0.0.1:7400", "/just/a/path"] {
            match Relay::start(bad).await {
                Err(Error::Invalid { param, .. }) => assert_eq!(param, "endpoint", "{bad}"),
                Err(other) => panic!("{bad}: {other}"),
                Ok(_) => panic!("{bad}: relayed"),
            }
        }
        let relayed = Relay::start("https://example.invalid:7400/x")
            .await
            .unwrap();
        assert_eq!(relayed.host, "example.invalid");
        assert!(
            relayed.endpoint.starts_with("https://127.0.0.1:"),
            "{}",
            relayed.endpoint
        );
        assert!(relayed.endpoint.ends_with("/x"), "{}", relayed.endpoint);
    }
}
