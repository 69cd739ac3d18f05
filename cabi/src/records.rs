//! Records returned by the control plane: run snapshots, worker
//! descriptions and run events. Every accessor borrows its handle and
//! returns a fresh caller-owned value (NULL / 0 when the handle is NULL).

use blazen_cabi_macros::{export, handle};
use blazen_core::distributed::{AdmissionMode, RunEvent, RunStateSnapshot, RunStatus, WorkerInfo};
use serde_json::{json, Value};

use crate::rt::ErrorKind;

/// A run's state at one moment. Caller-owned; free with
/// `blazen_run_state_snapshot_free`.
#[handle(
    free = "blazen_run_state_snapshot_free",
    take = "blazen_future_take_run_state_snapshot"
)]
pub struct BlazenRunStateSnapshot(pub(crate) RunStateSnapshot);

/// The run's id (UUID text).
#[export]
fn blazen_run_state_snapshot_run_id(snap: &BlazenRunStateSnapshot) -> String {
    snap.0.run_id.to_string()
}

/// The run's status, a `BLAZEN_RUN_STATUS_*` constant (0 also for NULL).
#[export]
fn blazen_run_state_snapshot_status(snap: &BlazenRunStateSnapshot) -> u32 {
    status_code(snap.0.status)
}

pub(crate) fn status_code(s: RunStatus) -> u32 {
    crate::vocabulary::RunStatusCode::from(s).code()
}

/// When the run was submitted (ms since the Unix epoch; the control
/// plane's field is named for a start, but it is the submission: a worker
/// taking the run does not change it, and the moment it did is the
/// `timestamp_ms` of the run's `status.running` event). `snap` is borrowed.
#[export]
fn blazen_run_state_snapshot_started_at_ms(snap: &BlazenRunStateSnapshot) -> u64 {
    snap.0.started_at_ms
}

/// When the run finished (ms since the Unix epoch), if it has.
#[export]
fn blazen_run_state_snapshot_completed_at_ms(snap: &BlazenRunStateSnapshot) -> Option<u64> {
    snap.0.completed_at_ms
}

/// The node id of the worker the run is assigned to, if any.
#[export]
fn blazen_run_state_snapshot_assigned_to(snap: &BlazenRunStateSnapshot) -> Option<String> {
    snap.0.assigned_to.clone()
}

/// When the run last produced an event (ms since the Unix epoch), if ever.
#[export]
fn blazen_run_state_snapshot_last_event_at_ms(snap: &BlazenRunStateSnapshot) -> Option<u64> {
    snap.0.last_event_at_ms
}

/// The run's output as JSON text, when it completed with one.
#[export]
fn blazen_run_state_snapshot_output_json(snap: &BlazenRunStateSnapshot) -> Option<String> {
    snap.0.output.as_ref().map(Value::to_string)
}

/// The run's error message, when it failed (without the `[Kind] ` tag
/// the library records in front of it; see
/// `blazen_run_state_snapshot_error_kind`).
#[export]
fn blazen_run_state_snapshot_error(snap: &BlazenRunStateSnapshot) -> Option<String> {
    let text = snap.0.error.as_deref()?;
    Some(ErrorKind::untag(text).1.to_string())
}

/// The kind of the error a failed run ended with, a `BLAZEN_ERROR_KIND_*`
/// constant: the kind of the `BlazenError` its handler stored in
/// `out_err`, `BLAZEN_ERROR_KIND_TIMEOUT` when its `deadline_ms` passed,
/// `BLAZEN_ERROR_KIND_VALIDATION` for output that is not JSON,
/// `BLAZEN_ERROR_KIND_WORKFLOW` for a handler that failed without an
/// error or a failure the library cannot classify. 0 when the run has no
/// error or `snap` is NULL. `snap` is borrowed.
#[export]
fn blazen_run_state_snapshot_error_kind(snap: &BlazenRunStateSnapshot) -> u32 {
    snap.0
        .error
        .as_deref()
        .map_or(0, |e| run_error_kind(e) as u32)
}

/// The kind of a failed run's recorded error text.
pub(crate) fn run_error_kind(text: &str) -> ErrorKind {
    match ErrorKind::untag(text) {
        (Some(kind), _) => kind,
        // The crate's worker reports its own deadline this way.
        (None, "deadline exceeded") => ErrorKind::Timeout,
        (None, _) => ErrorKind::Workflow,
    }
}

/// One connected worker. Caller-owned; free with `blazen_worker_info_free`.
#[handle(free = "blazen_worker_info_free")]
#[derive(Clone)]
pub struct BlazenWorkerInfo(pub(crate) WorkerInfo);

/// The worker's node id.
#[export]
fn blazen_worker_info_node_id(info: &BlazenWorkerInfo) -> String {
    info.0.node_id.clone()
}

/// The worker's capabilities as `[{"kind": str, "version": n}]`.
#[export]
fn blazen_worker_info_capabilities_json(info: &BlazenWorkerInfo) -> String {
    let caps: Vec<Value> = info
        .0
        .capabilities
        .iter()
        .map(|c| json!({"kind": c.kind, "version": c.version}))
        .collect();
    Value::Array(caps).to_string()
}

/// The worker's tags as `{"key": "value"}`.
#[export]
fn blazen_worker_info_tags_json(info: &BlazenWorkerInfo) -> String {
    json!(info.0.tags).to_string()
}

/// The worker's admission mode as `{"mode": "Fixed", "max_in_flight": n}`,
/// `{"mode": "VramBudget", "max_vram_mb": n}` or `{"mode": "Reactive"}`.
#[export]
fn blazen_worker_info_admission_json(info: &BlazenWorkerInfo) -> String {
    admission_json(&info.0.admission).to_string()
}

pub(crate) fn admission_json(a: &AdmissionMode) -> Value {
    match a {
        AdmissionMode::Fixed { max_in_flight } => {
            json!({"mode": "Fixed", "max_in_flight": max_in_flight})
        }
        AdmissionMode::VramBudget { max_vram_mb } => {
            json!({"mode": "VramBudget", "max_vram_mb": max_vram_mb})
        }
        AdmissionMode::Reactive => json!({"mode": "Reactive"}),
    }
}

/// How many assignments the worker is running.
#[export]
fn blazen_worker_info_in_flight(info: &BlazenWorkerInfo) -> u32 {
    info.0.in_flight
}

/// When the worker connected (ms since the Unix epoch).
#[export]
fn blazen_worker_info_connected_at_ms(info: &BlazenWorkerInfo) -> u64 {
    info.0.connected_at_ms
}

/// The connected workers. Caller-owned; free with
/// `blazen_worker_info_list_free`.
#[handle(
    free = "blazen_worker_info_list_free",
    take = "blazen_future_take_worker_info_list"
)]
pub struct BlazenWorkerInfoList(pub(crate) Vec<WorkerInfo>);

/// Number of workers in the list (0 for NULL).
#[export]
fn blazen_worker_info_list_count(list: &BlazenWorkerInfoList) -> usize {
    list.0.len()
}

/// An independent caller-owned copy of entry `index` (free it with
/// `blazen_worker_info_free`; it outlives the list), NULL when out of range.
#[export]
fn blazen_worker_info_list_get(
    list: &BlazenWorkerInfoList,
    index: usize,
) -> Option<BlazenWorkerInfo> {
    list.0.get(index).cloned().map(BlazenWorkerInfo)
}

/// One event of a run. Caller-owned; free with `blazen_run_event_free`.
/// No function of this 0.7 library returns one (a run's events reach a
/// host through `BlazenRunEventSinkVTable`); the type and its functions
/// stay for programs written against the reference surface.
#[handle(free = "blazen_run_event_free")]
pub struct BlazenRunEvent(pub(crate) RunEvent);

/// The id of the run the event belongs to.
#[export]
fn blazen_run_event_run_id(event: &BlazenRunEvent) -> String {
    event.0.run_id.to_string()
}

/// The event's type, e.g. `status.completed`.
#[export]
fn blazen_run_event_event_type(event: &BlazenRunEvent) -> String {
    event.0.event_type.clone()
}

/// The event's data as JSON text.
#[export]
fn blazen_run_event_data_json(event: &BlazenRunEvent) -> String {
    event.0.data.to_string()
}

/// When the event happened (ms since the Unix epoch).
#[export]
fn blazen_run_event_timestamp_ms(event: &BlazenRunEvent) -> u64 {
    event.0.timestamp_ms
}
