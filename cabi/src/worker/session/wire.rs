//! The session's two streams: the gRPC `WorkerSession` call that carries
//! them (with the Hello/Welcome handshake), the outbound queue every frame
//! of the worker goes through, and the heartbeat.

use std::time::Duration;

use blazen_controlplane::protocol::{
    AdmissionSnapshotWire, ServerToWorker, WorkerHeartbeat, WorkerHello, WorkerToServer,
    ENVELOPE_VERSION,
};
use blazen_controlplane::worker::WorkerConfig;
use blazen_controlplane::{auth, pb, ControlPlaneError};
use blazen_core::distributed::{AdmissionMode, AdmissionSnapshot, MemoryKind};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

/// Frames from the server, as the gRPC call delivers them.
pub(super) type Inbound = tonic::Streaming<pb::PostcardResponse>;

/// The worker's side of the session: every frame it sends goes through
/// here, in order. Cloned by each assignment and the heartbeat.
#[derive(Clone)]
pub(super) struct Outbox(mpsc::Sender<WorkerToServer>);

impl Outbox {
    pub(super) async fn send(&self, frame: WorkerToServer) -> Result<(), ControlPlaneError> {
        self.0
            .send(frame)
            .await
            .map_err(|_| ControlPlaneError::Transport("the worker's session has ended".into()))
    }
}

/// How many frames may wait to be written before a sender waits.
const OUTBOX_DEPTH: usize = 256;

/// Opens the session: connects, sends the Hello and waits for the
/// Welcome. The outbound stream ends when `done` is cancelled, whoever
/// still holds an [`Outbox`], so the server sees the session end at once.
pub(super) async fn open(
    config: &WorkerConfig,
    done: &CancellationToken,
) -> Result<(Inbound, Outbox), ControlPlaneError> {
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| ControlPlaneError::Transport(format!("invalid endpoint URI: {e}")))?
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_timeout(Duration::from_secs(10));
    if let Some(tls) = config.tls.clone() {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| ControlPlaneError::Tls(e.to_string()))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ControlPlaneError::Transport(format!("connect: {e}")))?;

    let (tx, rx) = mpsc::channel(OUTBOX_DEPTH);
    let outbox = Outbox(tx);
    outbox.send(WorkerToServer::Hello(hello(config))).await?;
    let frames = ReceiverStream::new(rx)
        .take_until(done.clone().cancelled_owned())
        .filter_map(|frame| async move {
            // Encoding a frame of the protocol's own types cannot fail;
            // one that did would be dropped rather than end the session.
            let payload = postcard::to_allocvec(&frame).ok()?;
            Some(pb::PostcardRequest {
                postcard_payload: payload,
            })
        });
    let mut request = tonic::Request::new(frames);
    if let Some(bearer) = auth::bearer_metadata_value_with(config.bearer_token.as_deref()) {
        let value = bearer.parse().map_err(|e| {
            ControlPlaneError::Unauthenticated(format!("invalid bearer header: {e}"))
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut client = pb::blazen_control_plane_client::BlazenControlPlaneClient::new(channel);
    let mut inbound = client
        .worker_session(request)
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unauthenticated => {
                ControlPlaneError::Unauthenticated(s.message().to_string())
            }
            _ => ControlPlaneError::Transport(s.to_string()),
        })?
        .into_inner();
    let first = inbound
        .next()
        .await
        .ok_or_else(|| ControlPlaneError::Transport("server closed stream before Welcome".into()))?
        .map_err(|s| ControlPlaneError::Transport(s.to_string()))?;
    match postcard::from_bytes(&first.postcard_payload)? {
        ServerToWorker::Welcome(welcome) => {
            tracing::info!(
                target: "blazen_cabi::worker",
                node_id = %config.node_id,
                session_id = %welcome.session_id,
                "worker session established"
            );
            Ok((inbound, outbox))
        }
        ServerToWorker::Reject { reason } => Err(ControlPlaneError::Unauthenticated(reason)),
        other => Err(ControlPlaneError::Transport(format!(
            "expected Welcome as first server frame, got {other:?}"
        ))),
    }
}

fn hello(config: &WorkerConfig) -> WorkerHello {
    WorkerHello {
        envelope_version: ENVELOPE_VERSION,
        node_id: config.node_id.clone(),
        capabilities: config.capabilities.iter().map(Into::into).collect(),
        tags: config.tags.clone(),
        admission: (&config.admission).into(),
        supported_envelope_versions: config.envelope_versions.clone(),
        labels: config.labels.clone(),
        taints: config.taints.iter().cloned().map(Into::into).collect(),
        descriptors: config.descriptors.clone(),
        place: config.place.clone(),
        identity_pubkey: config.identity_pubkey,
        agreement_pubkey: config.agreement_pubkey,
        agreement_sig: config.agreement_sig,
    }
}

/// Sends a heartbeat every `config.heartbeat_interval` (the first one
/// interval after the Hello) until the session ends.
pub(super) async fn heartbeat(
    outbox: Outbox,
    config: WorkerConfig,
    in_flight: impl Fn() -> u32,
    done: CancellationToken,
) {
    let mut ticker = tokio::time::interval(config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let in_flight = in_flight();
        let snapshot = snapshot(&config.admission, in_flight);
        let frame = WorkerToServer::Heartbeat(WorkerHeartbeat {
            envelope_version: ENVELOPE_VERSION,
            in_flight,
            queue_depth: 0,
            mem_mb: 0,
            cpu_pct: 0.0,
            admission_snapshot: Some(AdmissionSnapshotWire::from(&snapshot)),
        });
        if outbox.send(frame).await.is_err() {
            return;
        }
    }
}

/// What a heartbeat says of the worker's capacity: for Fixed admission the
/// share of its slots free; the machine's resources are not probed.
fn snapshot(admission: &AdmissionMode, in_flight: u32) -> AdmissionSnapshot {
    let capacity_score = match admission {
        AdmissionMode::Fixed { max_in_flight: 0 } => 0.0,
        #[allow(clippy::cast_precision_loss)] // a coarse rank of small counts
        AdmissionMode::Fixed { max_in_flight } => {
            (1.0 - in_flight as f32 / *max_in_flight as f32).clamp(0.0, 1.0)
        }
        AdmissionMode::VramBudget { .. } | AdmissionMode::Reactive => 1.0,
    };
    AdmissionSnapshot {
        capacity_score,
        model_residency: Default::default(),
        vram_free_mb: None,
        in_flight_vram_mb: 0,
        cpu_cores_total: None,
        cpu_cores_free: None,
        ram_mb_total: None,
        ram_mb_free: None,
        vram_mb_total: None,
        memory_kind: MemoryKind::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_worker_reports_its_free_share() {
        let fixed = |max_in_flight| AdmissionMode::Fixed { max_in_flight };
        assert!((snapshot(&fixed(4), 1).capacity_score - 0.75).abs() < 1e-6);
        assert!(snapshot(&fixed(4), 4).capacity_score.abs() < 1e-6);
        assert!(snapshot(&fixed(4), 9).capacity_score.abs() < 1e-6);
        assert!(snapshot(&fixed(0), 0).capacity_score.abs() < 1e-6);
        assert!((snapshot(&AdmissionMode::Reactive, 3).capacity_score - 1.0).abs() < 1e-6);
    }
}
