//! How a worker reaches the control plane, with the credentials `run`
//! checks before it starts.

use blazen_embedded_cp::Subkind;
use std::path::Path;
use std::time::Duration;

use blazen_controlplane::worker::WorkerConfig;
use blazen_controlplane::Client;
use blazen_core::distributed::OrchestratorClient;

use crate::rt::{BlazenError, Result};

/// Where a worker connects, and how.
pub(super) struct Route {
    pub(super) access: Access,
}

/// The endpoint, TLS settings and token a worker uses.
#[derive(Clone, Default)]
pub(super) struct Access {
    pub(super) endpoint: String,
    pub(super) tls: Option<tonic::transport::ClientTlsConfig>,
    pub(super) token: Option<String>,
    /// Whether the host gave a retry policy (which then also governs the
    /// first connection).
    pub(super) patient: bool,
}

impl Access {
    /// One call with the worker's credentials before it starts: a rejected
    /// token fails `run` at once (the crate would otherwise retry it under
    /// the retry policy, forever by default), and so does a node id another
    /// worker is connected with (the control plane refuses the session with
    /// ALREADY_EXISTS, which the crate would also retry). A node id still
    /// listed is checked again for up to [`DUPLICATE_GRACE`], so a worker
    /// restarted under the same id gets in once its predecessor's session
    /// has ended. A control plane not reached within [`FIRST_CONNECT`]
    /// fails `run` with the endpoint and the cause, unless the host gave a
    /// retry policy (then that policy decides, as for later reconnects).
    pub(super) async fn rejected(&self, node_id: &str) -> Option<BlazenError> {
        let start = tokio::time::Instant::now();
        loop {
            let waited = start.elapsed();
            match self.check(node_id).await {
                Check::Unreachable if !self.patient && waited < FIRST_CONNECT => {}
                Check::Unreachable if !self.patient => {
                    let e = crate::client::reach_failure(&self.endpoint, self.tls.clone()).await;
                    return Some(e.context(&format!(
                        "the worker could not connect within {} s (a `retry` policy keeps \
                         it trying)",
                        FIRST_CONNECT.as_secs()
                    )));
                }
                Check::Unreachable | Check::Admitted => return None,
                Check::Listed if waited >= DUPLICATE_GRACE => {
                    return Some(BlazenError::peer(
                        Subkind::ControlPlaneAlreadyExists,
                        format!(
                            "node id `{node_id}` is already connected to the control plane at \
                             {}; each worker needs a node id of its own",
                            self.endpoint
                        ),
                    ))
                }
                Check::Listed => {}
                Check::Refused(e) => return Some(*e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn check(&self, node_id: &str) -> Check {
        let probe = Client::connect(self.endpoint.clone(), self.tls.clone(), self.token.clone());
        let Ok(client) = probe.await else {
            return Check::Unreachable;
        };
        match client.list_workers().await {
            Ok(workers) if workers.iter().any(|w| w.node_id == node_id) => Check::Listed,
            Ok(_) => Check::Admitted,
            Err(e) => {
                let e = BlazenError::from(e);
                if let Some(mismatch) = crate::client::wire_mismatch(&e, &self.endpoint) {
                    return Check::Refused(Box::new(mismatch));
                }
                if e.has_subkind(Subkind::ControlPlaneUnauthenticated) {
                    Check::Refused(Box::new(e))
                } else if e.has_subkind(Subkind::ControlPlaneTransport) {
                    Check::Unreachable
                } else {
                    Check::Admitted
                }
            }
        }
    }
}

/// What one call before the run found.
enum Check {
    Admitted,
    /// Another worker is connected under the node id.
    Listed,
    Unreachable,
    Refused(Box<BlazenError>),
}

/// How long a worker without a retry policy tries to make its first
/// connection before `run` fails.
pub(crate) const FIRST_CONNECT: Duration = Duration::from_secs(10);

/// How long `run` waits for a worker with the same node id to leave.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);

impl Route {
    pub(super) fn new(endpoint: String) -> Result<Self> {
        crate::client::check_endpoint(&endpoint)?;
        let access = Access {
            endpoint,
            ..Access::default()
        };
        Ok(Route { access })
    }

    /// Mutual TLS from PEM files.
    pub(super) fn mtls(
        &mut self,
        config: WorkerConfig,
        cert: &Path,
        key: &Path,
        ca: &Path,
    ) -> Result<WorkerConfig> {
        let tls = crate::tls::client(cert, key, ca)?;
        self.access.tls = Some(tls.clone());
        Ok(config.with_tls(tls))
    }
}
