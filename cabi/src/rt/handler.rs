//! Calling a worker's handler table: the C strings of one `handle` call,
//! and turning its status and out-slots into the run's result.

use std::ffi::{c_char, CString};

use serde_json::Value;

use std::sync::Arc;

use super::arg::Callbacks;
use super::callbacks::{
    cstr, AssignmentHandler, AssignmentHandlerV06, BlazenAssignmentContext,
    BlazenAssignmentHandlerV06VTable, BlazenAssignmentHandlerVTable, BlazenContextHandlerVTable,
    ContextHandler,
};
use super::strings::take_string;
use super::{BlazenError, ErrorKind};

/// The largest output a handler may return, in bytes of JSON text: the
/// control plane's 4 MiB message limit less room for the envelope. A larger
/// one fails its run at once with a VALIDATION error naming both sizes (it
/// could not reach the control plane, which would drop the worker's
/// connection and hand the run out again).
pub const BLAZEN_MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

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
    /// Whether the table has a `handle` function (a worker needs one).
    fn has_handle(&self) -> bool;
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
            Some(bytes) if bytes.len() > BLAZEN_MAX_OUTPUT_BYTES => Err(invalid(format!(
                "the handler's output is {} bytes, over the {BLAZEN_MAX_OUTPUT_BYTES}-byte \
                 limit of a run's output (the control plane's 4 MiB message limit less room \
                 for the envelope); keep large data elsewhere and return a reference to it",
                bytes.len()
            ))),
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

/// Every handler table, whatever its layout, is owned as one
/// `Arc<dyn Handler>`, so one stub serves the surfaces' different tables.
macro_rules! handler_table {
    ($($vtable:ident => $owner:ident),*) => {$(
        impl Callbacks for $vtable {
            type Owner = Arc<dyn Handler>;
            fn own(self) -> Arc<dyn Handler> {
                Arc::new($owner { vt: self })
            }
        }
    )*};
}

handler_table!(
    BlazenAssignmentHandlerVTable => AssignmentHandler,
    BlazenContextHandlerVTable => ContextHandler,
    BlazenAssignmentHandlerV06VTable => AssignmentHandlerV06
);

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

/// A `Handler` impl for one table layout: `$call` calls `handle` (`$f`)
/// with `$ud`, the context `$ctx` and the strings and out-slots of `$c`, in
/// that layout's order.
macro_rules! handler {
    ($owner:ident, |$f:ident, $ud:ident, $ctx:ident, $c:ident| $call:expr) => {
        impl Handler for $owner {
            fn handle(
                &self,
                $ctx: &mut BlazenAssignmentContext,
                run_id: &str,
                workflow_name: &str,
                input_json: &[u8],
            ) -> Result<Value, String> {
                let $f = self.vt.handle.ok_or(NO_HANDLE)?;
                let $ud = self.vt.user_data;
                let mut $c = Call::new(run_id, workflow_name, input_json)?;
                // SAFETY: valid NUL-terminated strings and out-slots for the
                // call; the context outlives it.
                let rc = unsafe { $call };
                $c.finish(rc)
            }

            notifications!();

            fn has_handle(&self) -> bool {
                self.vt.handle.is_some()
            }
        }
    };
}

handler!(AssignmentHandler, |f, ud, _ctx, c| f(
    ud,
    c.run_id.as_ptr(),
    c.workflow_name.as_ptr(),
    c.input.as_ptr(),
    &mut c.out,
    &mut c.err
));
handler!(AssignmentHandlerV06, |f, ud, ctx, c| f(
    ud,
    c.run_id.as_ptr(),
    c.workflow_name.as_ptr(),
    c.input.as_ptr(),
    ctx,
    &mut c.out,
    &mut c.err
));
handler!(ContextHandler, |f, ud, ctx, c| f(
    ud,
    ctx,
    c.run_id.as_ptr(),
    c.workflow_name.as_ptr(),
    c.input.as_ptr(),
    &mut c.out,
    &mut c.err
));
