//! C callback tables and their owners. The owners are the only way the rest
//! of the crate calls into C: they hold `user_data`, call the functions with
//! borrowed C strings, and call `drop_user_data` exactly once when dropped.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Arc;

use blazen_controlplane::ControlPlaneError;
use futures_util::future::BoxFuture;

use super::BlazenError;

/// What a handler can do on the run it is working on, served by the
/// worker's session (the `blazen_assignment_context_*` functions call it).
pub(crate) trait AssignmentRun: Send + Sync {
    fn run_id(&self) -> uuid::Uuid;
    /// Whether the run has been cancelled (by the orchestrator, a drain,
    /// the worker's shutdown or the end of its session).
    fn is_cancelled(&self) -> bool;
    /// Sends the event `event_type` with `data` on the run.
    fn emit_event<'a>(
        &'a self,
        event_type: &'a str,
        data: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ControlPlaneError>>;
    /// Emits `input.request` and waits for its answer, the run's
    /// cancellation or `timeout_ms`.
    fn request_input<'a>(
        &'a self,
        prompt: &'a str,
        metadata: serde_json::Value,
        timeout_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<serde_json::Value, ControlPlaneError>>;
}

/// The run an assignment handler is working on, for the
/// `blazen_assignment_context_*` functions. Borrowed by `handle` for the
/// duration of the call; never freed by the caller.
#[derive(Clone)]
pub struct BlazenAssignmentContext {
    pub(crate) inner: Arc<dyn AssignmentRun>,
    pub(crate) attempt: u32,
}

impl BlazenAssignmentContext {
    pub(crate) fn new(run: impl AssignmentRun + 'static, attempt: u32) -> Self {
        Self {
            inner: Arc::new(run),
            attempt,
        }
    }
}

/// The assignment handler a worker calls. `handle` gets borrowed `run_id`,
/// `workflow_name` and `input_json`; returns 0 and stores a JSON string
/// made with `blazen_string_alloc` in `*out_json` (NULL means JSON null),
/// or non-zero and stores a `BlazenError` (made by the library, e.g. with
/// `blazen_error_from_json`) in `*out_err`; the library takes both.
/// `on_cancel` and `on_drain` are notifications and may be NULL, as may
/// `drop_user_data`, which is the table's last call, made when the
/// worker's run ends (before `run` returns; after a `handle` still running
/// then has returned), or by `blazen_controlplane_worker_free` for a worker
/// never run; never for NULL `user_data`. An error stored in
/// `*out_err` fails the run even when `handle` returns 0 (the error wins;
/// anything in `*out_json` is freed), and its kind is recorded with the
/// run (`blazen_run_state_snapshot_error_kind`).
#[repr(C)]
pub struct BlazenAssignmentHandlerVTable {
    pub user_data: *mut c_void,
    pub drop_user_data: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub handle: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            run_id: *const c_char,
            workflow_name: *const c_char,
            input_json: *const c_char,
            out_json: *mut *mut c_char,
            out_err: *mut *mut BlazenError,
        ) -> i32,
    >,
    pub on_cancel: Option<unsafe extern "C" fn(user_data: *mut c_void, run_id: *const c_char)>,
    pub on_drain: Option<unsafe extern "C" fn(user_data: *mut c_void, immediate: bool)>,
}

/// The assignment handler of `blazen_controlplane_worker_new_with_options`:
/// as `BlazenAssignmentHandlerVTable`, but `handle` also gets the run's
/// `BlazenAssignmentContext` (borrowed, valid only during that call) for
/// `blazen_assignment_context_*`.
#[repr(C)]
pub struct BlazenContextHandlerVTable {
    pub user_data: *mut c_void,
    pub drop_user_data: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub handle: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            ctx: *mut BlazenAssignmentContext,
            run_id: *const c_char,
            workflow_name: *const c_char,
            input_json: *const c_char,
            out_json: *mut *mut c_char,
            out_err: *mut *mut BlazenError,
        ) -> i32,
    >,
    pub on_cancel: Option<unsafe extern "C" fn(user_data: *mut c_void, run_id: *const c_char)>,
    pub on_drain: Option<unsafe extern "C" fn(user_data: *mut c_void, immediate: bool)>,
}

/// The assignment handler a worker calls (the 0.6.x surface,
/// `BLAZEN_SURFACE == 6`). `handle` gets borrowed `run_id`,
/// `workflow_name` and `input_json`, and the run's `BlazenAssignmentContext`
/// (borrowed, valid only during that call) for
/// `blazen_assignment_context_emit_event`,
/// `blazen_assignment_context_request_input` and the other
/// `blazen_assignment_context_*` functions; it returns 0 and stores a JSON
/// string made with `blazen_string_alloc` in `*out_json` (NULL means JSON
/// null), or non-zero and stores a `BlazenError` (made by the library) in
/// `*out_err`; the library takes both, and an error wins over an output.
/// `on_cancel` and `on_drain` are notifications and may be NULL, as may
/// `drop_user_data`, which is the table's last call, made when the
/// worker's run ends (before `run` returns; after a `handle` still running
/// then has returned), or by `blazen_controlplane_worker_free` for a worker
/// never run; never for NULL `user_data`.
#[repr(C)]
pub struct BlazenAssignmentHandlerV06VTable {
    pub user_data: *mut c_void,
    pub drop_user_data: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub handle: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            run_id: *const c_char,
            workflow_name: *const c_char,
            input_json: *const c_char,
            ctx: *const BlazenAssignmentContext,
            out_json: *mut *mut c_char,
            out_err: *mut *mut BlazenError,
        ) -> i32,
    >,
    pub on_cancel: Option<unsafe extern "C" fn(user_data: *mut c_void, run_id: *const c_char)>,
    pub on_drain: Option<unsafe extern "C" fn(user_data: *mut c_void, immediate: bool)>,
}

/// Receives a subscription's events: `on_event` with borrowed strings in
/// server order, then at most one of `on_close` (clean end) or `on_error`
/// (failure, borrowed message). Any function pointer may be NULL. All
/// callbacks come from the subscription's own library thread;
/// `drop_user_data` is the last call: after `on_close`/`on_error` on that
/// thread, or in the `_cancel`/`_free` that ends the subscription (right
/// after a callback being delivered then, on the event thread); never for
/// NULL `user_data`.
///
/// Event types and their `data_json`:
/// - `status.running` `{"node_id": str}`: routed to that worker.
/// - `status.completed` `{"output": value}`: the run's output.
/// - `status.failed` `{"error": str}`: the error text, which starts with
///   the error's kind in brackets (`"[Timeout] ..."`) when this library
///   recorded it; `blazen_run_state_snapshot_error` and
///   `blazen_run_state_snapshot_error_kind` give the two parts.
/// - `status.cancelled` `{}`.
/// - `status.requeued` `{"node_id": str, "reason": "worker_lost"}`: the
///   worker running the run left (process died, connection lost); the run
///   is PENDING again and goes to the next worker that can take it
///   (emitted by the library's embedded control plane).
/// - `input.request` `{"request_id": str, "prompt": str, "metadata":
///   value}`: from `blazen_assignment_context_request_input`; answer with
///   `blazen_controlplane_client_respond_to_input`.
/// - any other type: emitted by a handler with
///   `blazen_assignment_context_emit_event`, data as it gave it.
///
/// A run that reached its `deadline_ms` while PENDING and is routed
/// afterwards shows one more `status.running` + `status.failed` pair; its
/// snapshot stays FAILED.
#[repr(C)]
pub struct BlazenRunEventSinkVTable {
    pub user_data: *mut c_void,
    pub drop_user_data: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub on_event: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            run_id: *const c_char,
            event_type: *const c_char,
            data_json: *const c_char,
            timestamp_ms: u64,
        ),
    >,
    pub on_close: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub on_error: Option<unsafe extern "C" fn(user_data: *mut c_void, error: *const c_char)>,
}

/// Receives the library's log records (see `blazen_log_set_sink`).
/// `on_log` gets the record's level (`BLAZEN_LOG_LEVEL_*`), its target
/// (where it comes from, e.g. `blazen_controlplane::server::session`) and
/// its message followed by its fields as ` key=value`; both strings are
/// borrowed for the call. It runs on one library thread, a record at a
/// time, never while a library lock is held, and may call any library
/// function (a record the library produces on that thread during the call
/// is dropped). `on_log` and `drop_user_data` may be NULL.
#[repr(C)]
pub struct BlazenLogSinkVTable {
    pub user_data: *mut c_void,
    pub drop_user_data: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub on_log: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            level: u32,
            target: *const c_char,
            message: *const c_char,
        ),
    >,
}

/// A borrowed C string for the duration of a callback.
pub(super) fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// The owner of a callback table and the table's `Callbacks` impl; used
/// only in this file, for every table above.
macro_rules! owner {
    ($owner:ident, $vtable:ident) => {
        owner!($owner, $vtable, held);

        impl super::arg::Callbacks for $vtable {
            type Owner = $owner;
            fn own(self) -> $owner {
                $owner { vt: self }
            }
        }
    };
    // The owner alone: the table's `Callbacks` impl is in rt/handler.rs
    // (handler tables, which all become one `Arc<dyn HandlerTable>`).
    ($owner:ident, $vtable:ident, held) => {
        /// Owns a callback table: calls `drop_user_data` once on drop
        /// (unless `user_data` is NULL).
        pub struct $owner {
            pub(crate) vt: $vtable,
        }

        // SAFETY: the C contract: callbacks may be called from any thread
        // and concurrently; `user_data` is the host's to synchronise.
        unsafe impl Send for $owner {}
        // SAFETY: as above.
        unsafe impl Sync for $owner {}

        impl Drop for $owner {
            fn drop(&mut self) {
                // A NULL `user_data` has nothing to release, and skipping
                // the call spares a garbage-collected host (whose tables
                // carry NULL) a call into a callback it may have freed.
                if self.vt.user_data.is_null() {
                    return;
                }
                if let Some(f) = self.vt.drop_user_data {
                    // SAFETY: called once, with the host's own pointer.
                    unsafe { f(self.vt.user_data) };
                }
            }
        }
    };
}

owner!(AssignmentHandler, BlazenAssignmentHandlerVTable, held);
owner!(ContextHandler, BlazenContextHandlerVTable, held);
owner!(AssignmentHandlerV06, BlazenAssignmentHandlerV06VTable, held);
owner!(EventSink, BlazenRunEventSinkVTable);
owner!(LogSink, BlazenLogSinkVTable);

impl EventSink {
    /// Calls `on_event` if set.
    pub fn on_event(&self, run_id: &str, event_type: &str, data_json: &str, timestamp_ms: u64) {
        if let Some(f) = self.vt.on_event {
            let (r, t, d) = (cstr(run_id), cstr(event_type), cstr(data_json));
            // SAFETY: valid strings for the call.
            unsafe {
                f(
                    self.vt.user_data,
                    r.as_ptr(),
                    t.as_ptr(),
                    d.as_ptr(),
                    timestamp_ms,
                )
            };
        }
    }

    /// Calls `on_close` if set.
    pub fn on_close(&self) {
        if let Some(f) = self.vt.on_close {
            // SAFETY: plain call with the host's pointer.
            unsafe { f(self.vt.user_data) };
        }
    }

    /// Calls `on_error` if set.
    pub fn on_error(&self, message: &str) {
        if let Some(f) = self.vt.on_error {
            let m = cstr(message);
            // SAFETY: valid string for the call.
            unsafe { f(self.vt.user_data, m.as_ptr()) };
        }
    }
}

impl LogSink {
    /// Calls `on_log` if set.
    pub(crate) fn on_log(&self, level: u32, target: &CStr, message: &CStr) {
        if let Some(f) = self.vt.on_log {
            // SAFETY: valid strings for the call, the host's own pointer.
            unsafe { f(self.vt.user_data, level, target.as_ptr(), message.as_ptr()) };
        }
    }
}
