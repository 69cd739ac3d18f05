//! C callback tables and their owners. The owners are the only way the rest
//! of the crate calls into C: they hold `user_data`, call the functions with
//! borrowed C strings, and call `drop_user_data` exactly once when dropped.

use std::ffi::{c_char, c_void, CString};

use serde_json::Value;

use super::strings::take_string;
use super::{BlazenError, ErrorKind};
use crate::worker::BlazenAssignmentContext;

/// The assignment handler a worker calls. `handle` gets borrowed `run_id`,
/// `workflow_name` and `input_json`; returns 0 and stores a JSON string
/// made with `blazen_string_alloc` in `*out_json` (NULL means JSON null),
/// or non-zero and stores a `BlazenError` (made by the library, e.g. with
/// `blazen_error_from_json`) in `*out_err`; the library takes both.
/// `on_cancel` and `on_drain` are notifications and may be NULL, as may
/// `drop_user_data`, which is the table's last call: after the worker is
/// freed and every `handle` still running has returned. An error stored in
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

/// Receives a subscription's events: `on_event` with borrowed strings in
/// server order, then at most one of `on_close` (clean end) or `on_error`
/// (failure, borrowed message). Any function pointer may be NULL. All
/// calls come from the subscription's own library thread;
/// `drop_user_data` is the last of them, once the stream has ended or the
/// subscription has been cancelled and freed (never waited for by them).
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

/// A borrowed C string for the duration of a callback.
fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

macro_rules! owner {
    ($owner:ident, $vtable:ident) => {
        /// Owns a callback table: calls `drop_user_data` once on drop.
        pub struct $owner {
            vt: $vtable,
        }

        // SAFETY: the C contract: callbacks may be called from any thread
        // and concurrently; `user_data` is the host's to synchronise.
        unsafe impl Send for $owner {}
        // SAFETY: as above.
        unsafe impl Sync for $owner {}

        impl Drop for $owner {
            fn drop(&mut self) {
                if let Some(f) = self.vt.drop_user_data {
                    // SAFETY: called once, with the host's own pointer.
                    unsafe { f(self.vt.user_data) };
                }
            }
        }

        impl $crate::rt::arg::Callbacks for $vtable {
            type Owner = $owner;
            fn own(self) -> $owner {
                $owner { vt: self }
            }
        }
    };
}

// For callback tables declared beside the code that uses them (log.rs).
pub(crate) use owner;

owner!(AssignmentHandler, BlazenAssignmentHandlerVTable);
owner!(ContextHandler, BlazenContextHandlerVTable);
owner!(EventSink, BlazenRunEventSinkVTable);

/// What a worker needs from a handler table, whichever kind it is.
pub trait Handler: Send + Sync {
    /// Calls `handle`; `Ok` is the run's output, `Err` its failure message.
    fn handle(
        &self,
        ctx: &mut BlazenAssignmentContext,
        run_id: &str,
        workflow_name: &str,
        input_json: &[u8],
    ) -> Result<Value, String>;
    /// Calls `on_cancel` if set.
    fn on_cancel(&self, run_id: &str);
    /// Calls `on_drain` if set.
    fn on_drain(&self, immediate: bool);
}

/// The C strings of one `handle` call and the handler's answer.
struct Call {
    run_id: CString,
    workflow_name: CString,
    input: CString,
    out: *mut c_char,
    err: *mut BlazenError,
}

impl Call {
    fn new(run_id: &str, workflow_name: &str, input_json: &[u8]) -> Result<Self, String> {
        Ok(Self {
            run_id: cstr(run_id),
            workflow_name: cstr(workflow_name),
            input: CString::new(input_json.to_vec())
                .map_err(|_| ErrorKind::Validation.tag("assignment input contains a NUL byte"))?,
            out: std::ptr::null_mut(),
            err: std::ptr::null_mut(),
        })
    }

    /// Turns the handler's status and out-slots into the run's result,
    /// taking ownership of what it stored (both slots are freed whatever
    /// the status). A failure is the run's error text, tagged with its
    /// kind (see [`ErrorKind::tag`]). An error in `out_err` fails the run
    /// even when the status is 0: the error wins and the output is dropped.
    fn finish(self, rc: i32) -> Result<Value, String> {
        // SAFETY: the contract: `out` is NULL or made by blazen_string_alloc.
        let out = unsafe { take_string(self.out) };
        // SAFETY: `err` is NULL or a BlazenError made by this library.
        let err = (!self.err.is_null()).then(|| *unsafe { Box::from_raw(self.err) });
        if let Some(e) = err {
            return Err(e.kind.tag(&e.message));
        }
        if rc != 0 {
            return Err(ErrorKind::Workflow.tag(&format!(
                "the handler failed with status {rc} and gave no error"
            )));
        }
        let invalid = |why: String| ErrorKind::Validation.tag(&why);
        match out {
            None => Ok(Value::Null),
            Some(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    invalid("the handler returned output that is not UTF-8".to_string())
                })?;
                serde_json::from_str(&text).map_err(|e| {
                    invalid(format!(
                        "the handler returned output that is not JSON ({e})"
                    ))
                })
            }
        }
    }
}

const NO_HANDLE: &str = "[Validation] the handler vtable has no `handle` function";

macro_rules! notifications {
    () => {
        fn on_cancel(&self, run_id: &str) {
            if let Some(f) = self.vt.on_cancel {
                let run_id = cstr(run_id);
                // SAFETY: valid string for the call.
                unsafe { f(self.vt.user_data, run_id.as_ptr()) };
            }
        }

        fn on_drain(&self, immediate: bool) {
            if let Some(f) = self.vt.on_drain {
                // SAFETY: plain call with the host's pointer.
                unsafe { f(self.vt.user_data, immediate) };
            }
        }
    };
}

impl Handler for AssignmentHandler {
    fn handle(
        &self,
        _ctx: &mut BlazenAssignmentContext,
        run_id: &str,
        workflow_name: &str,
        input_json: &[u8],
    ) -> Result<Value, String> {
        let f = self.vt.handle.ok_or(NO_HANDLE)?;
        let mut c = Call::new(run_id, workflow_name, input_json)?;
        // SAFETY: valid NUL-terminated strings and out-slots for the call.
        let rc = unsafe {
            f(
                self.vt.user_data,
                c.run_id.as_ptr(),
                c.workflow_name.as_ptr(),
                c.input.as_ptr(),
                &mut c.out,
                &mut c.err,
            )
        };
        c.finish(rc)
    }

    notifications!();
}

impl Handler for ContextHandler {
    fn handle(
        &self,
        ctx: &mut BlazenAssignmentContext,
        run_id: &str,
        workflow_name: &str,
        input_json: &[u8],
    ) -> Result<Value, String> {
        let f = self.vt.handle.ok_or(NO_HANDLE)?;
        let mut c = Call::new(run_id, workflow_name, input_json)?;
        // SAFETY: as above; `ctx` outlives the call.
        let rc = unsafe {
            f(
                self.vt.user_data,
                ctx,
                c.run_id.as_ptr(),
                c.workflow_name.as_ptr(),
                c.input.as_ptr(),
                &mut c.out,
                &mut c.err,
            )
        };
        c.finish(rc)
    }

    notifications!();
}

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
