//! The control plane's closed sets of names, each declared once: the event
//! types its runs' streams carry and the subkinds of its PEER errors.
//! `#[vocabulary]` gives each its Rust conversions; blazen-cabi's
//! generators read the same declarations and write them into its header
//! (`BLAZEN_EVENT_*`, `BLAZEN_SUBKIND_*`) and the Ruby gem.

use blazen_cabi_macros::vocabulary;
use blazen_core::distributed::{RunEvent, RunStateSnapshot, RunStatus};
use serde_json::json;

/// Event types of a run's stream (`event_type` of `on_event`) that the
/// library and the control plane send; a handler's own
/// `blazen_assignment_context_emit_event` types come on the same stream.
#[vocabulary(constants = "BLAZEN_EVENT_", ruby = "EVENT_TYPES")]
pub enum EventType {
    /// Routed to a worker: `{"node_id": str}`.
    #[text = "status.running"]
    StatusRunning,
    /// Finished with an output: `{"output": value}`.
    #[text = "status.completed"]
    StatusCompleted,
    /// Finished with an error: `{"error": str}`.
    #[text = "status.failed"]
    StatusFailed,
    /// Cancelled: `{}`.
    #[text = "status.cancelled"]
    StatusCancelled,
    /// Lost its worker and queued again: `{"node_id": str, "reason": "worker_lost"}`.
    #[text = "status.requeued"]
    StatusRequeued,
    /// Queued with no connected worker serving its workflow: `{"reason": "no_worker", ...}`.
    #[text = "status.waiting"]
    StatusWaiting,
    /// The handler asks for input: `{"request_id": str, "prompt": str, "metadata": value}`.
    #[text = "input.request"]
    InputRequest,
}

impl EventType {
    /// Whether an event of this type ends its run's stream.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventType::StatusCompleted | EventType::StatusFailed | EventType::StatusCancelled
        )
    }

    /// Whether `event_type` (any text) names a terminal event.
    pub fn is_terminal_text(event_type: &str) -> bool {
        EventType::from_text(event_type).is_some_and(EventType::is_terminal)
    }
}

/// Subkinds of the library's PEER errors (`blazen_error_subkind`): what
/// part of the way to the control plane failed. A gRPC status from the
/// control plane is `ControlPlane` + its code's name.
#[vocabulary(constants = "BLAZEN_SUBKIND_", ruby = "SUBKINDS")]
pub enum Subkind {
    /// The control plane could not be reached, or the connection broke.
    ControlPlaneTransport,
    /// A certificate or TLS handshake problem.
    ControlPlaneTls,
    /// The control plane's store (Redis/Valkey) failed or is unreachable.
    ControlPlaneStore,
    /// Another failure of the control plane's own client or server.
    ControlPlane,
    /// gRPC InvalidArgument.
    ControlPlaneInvalidArgument,
    /// gRPC DeadlineExceeded.
    ControlPlaneDeadlineExceeded,
    /// gRPC NotFound: no such run, worker or input request.
    ControlPlaneNotFound,
    /// gRPC AlreadyExists: e.g. a worker with the same node id is connected.
    ControlPlaneAlreadyExists,
    /// gRPC PermissionDenied.
    ControlPlanePermissionDenied,
    /// gRPC ResourceExhausted.
    ControlPlaneResourceExhausted,
    /// gRPC FailedPrecondition: e.g. the run has already ended.
    ControlPlaneFailedPrecondition,
    /// gRPC Aborted.
    ControlPlaneAborted,
    /// gRPC OutOfRange.
    ControlPlaneOutOfRange,
    /// gRPC Unimplemented.
    ControlPlaneUnimplemented,
    /// gRPC Internal.
    ControlPlaneInternal,
    /// gRPC DataLoss.
    ControlPlaneDataLoss,
    /// gRPC Unauthenticated: a missing or wrong bearer token.
    ControlPlaneUnauthenticated,
}

impl Subkind {
    /// The subkind of a gRPC status with code `code` (unreachable servers,
    /// unknown and cancelled calls are transport failures).
    pub fn for_code(code: tonic::Code) -> Subkind {
        use tonic::Code as C;
        match code {
            C::Ok | C::Unavailable | C::Unknown | C::Cancelled => Subkind::ControlPlaneTransport,
            C::InvalidArgument => Subkind::ControlPlaneInvalidArgument,
            C::DeadlineExceeded => Subkind::ControlPlaneDeadlineExceeded,
            C::NotFound => Subkind::ControlPlaneNotFound,
            C::AlreadyExists => Subkind::ControlPlaneAlreadyExists,
            C::PermissionDenied => Subkind::ControlPlanePermissionDenied,
            C::ResourceExhausted => Subkind::ControlPlaneResourceExhausted,
            C::FailedPrecondition => Subkind::ControlPlaneFailedPrecondition,
            C::Aborted => Subkind::ControlPlaneAborted,
            C::OutOfRange => Subkind::ControlPlaneOutOfRange,
            C::Unimplemented => Subkind::ControlPlaneUnimplemented,
            C::Internal => Subkind::ControlPlaneInternal,
            C::DataLoss => Subkind::ControlPlaneDataLoss,
            C::Unauthenticated => Subkind::ControlPlaneUnauthenticated,
        }
    }
}

/// The terminal event a run's snapshot stands for, stamped with its end
/// (`None` while it has not ended): what a subscription to an ended run
/// gets when no replay of its events is to be had.
pub fn ended_event(s: &RunStateSnapshot) -> Option<RunEvent> {
    let (event_type, data) = match s.status {
        RunStatus::Completed => (EventType::StatusCompleted, json!({"output": s.output})),
        RunStatus::Failed => (EventType::StatusFailed, json!({"error": s.error})),
        RunStatus::Cancelled => (EventType::StatusCancelled, json!({})),
        RunStatus::Pending | RunStatus::Running => return None,
    };
    Some(RunEvent {
        run_id: s.run_id,
        event_type: event_type.to_string(),
        data,
        timestamp_ms: s
            .completed_at_ms
            .or(s.last_event_at_ms)
            .unwrap_or(s.started_at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_but_the_transport_ones_is_control_plane_and_its_name() {
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            let s = Subkind::for_code(code);
            match code {
                tonic::Code::Ok
                | tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled => assert_eq!(s, Subkind::ControlPlaneTransport),
                other => assert_eq!(s.text(), format!("ControlPlane{other:?}")),
            }
        }
    }

    #[test]
    fn texts_round_trip_and_terminal_events_are_three() {
        for e in EventType::ALL {
            assert_eq!(EventType::from_text(e.text()), Some(e));
        }
        for s in Subkind::ALL {
            assert_eq!(Subkind::from_text(&s.to_string()), Some(s));
        }
        let terminal: Vec<_> = EventType::ALL.iter().filter(|e| e.is_terminal()).collect();
        assert_eq!(terminal.len(), 3);
        assert!(!EventType::is_terminal_text("progress"));
        assert!(EventType::is_terminal_text("status.failed"));
    }
}
