//! Calling a worker's C handler table: the C strings of one `handle` call,
//! and taking ownership of what it stored in its out-slots. What the
//! answer means for the run is the `worker` module's.

use std::ffi::{c_char, CStr, CString};
use std::sync::Arc;

use super::arg::Callbacks;
use super::callbacks::{
    cstr, AssignmentHandler, AssignmentHandlerV06, BlazenAssignmentContext,
    BlazenAssignmentHandlerV06VTable, BlazenAssignmentHandlerVTable, BlazenContextHandlerVTable,
    ContextHandler,
};
use super::strings::take_string;
use super::BlazenError;

/// What one `handle` call returned and stored, now owned by the library
/// (both out-slots are taken whatever the status).
pub struct Answer {
    /// The status `handle` returned.
    pub status: i32,
    /// The string it stored in `*out_json` (`None` for NULL), as bytes.
    pub output: Option<Vec<u8>>,
    /// The error it stored in `*out_err`.
    pub error: Option<BlazenError>,
}

/// A worker's C handler table, whichever layout it has.
pub trait HandlerTable: Send + Sync {
    /// Calls `handle` with the run's context and strings (`run_id` and
    /// `workflow_name` lose any NUL byte); `None` when the table has no
    /// `handle` function.
    fn handle(
        &self,
        ctx: &mut BlazenAssignmentContext,
        run_id: &str,
        workflow_name: &str,
        input_json: &CStr,
    ) -> Option<Answer>;
    /// Calls `on_cancel` if set.
    fn on_cancel(&self, run_id: &str);
    /// Calls `on_drain` if set.
    fn on_drain(&self, immediate: bool);
    /// Whether the table has a `handle` function (a worker needs one).
    fn has_handle(&self) -> bool;
}

/// The C strings and out-slots of one `handle` call.
struct Call<'a> {
    run_id: CString,
    workflow_name: CString,
    input: &'a CStr,
    out: *mut c_char,
    err: *mut BlazenError,
}

impl<'a> Call<'a> {
    fn new(run_id: &str, workflow_name: &str, input: &'a CStr) -> Self {
        Self {
            run_id: cstr(run_id),
            workflow_name: cstr(workflow_name),
            input,
            out: std::ptr::null_mut(),
            err: std::ptr::null_mut(),
        }
    }

    /// Takes what the handler stored, with the status it returned.
    fn answer(self, status: i32) -> Answer {
        // SAFETY: the contract: `out` is NULL or made by blazen_string_alloc.
        let output = unsafe { take_string(self.out) };
        // SAFETY: `err` is NULL or a BlazenError made by this library.
        let error = (!self.err.is_null()).then(|| *unsafe { Box::from_raw(self.err) });
        Answer {
            status,
            output,
            error,
        }
    }
}

/// Every handler table, whatever its layout, is owned as one
/// `Arc<dyn HandlerTable>`, so one stub serves the surfaces' different
/// tables.
macro_rules! handler_table {
    ($($vtable:ident => $owner:ident),*) => {$(
        impl Callbacks for $vtable {
            type Owner = Arc<dyn HandlerTable>;
            fn own(self) -> Arc<dyn HandlerTable> {
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

/// A `HandlerTable` impl for one table layout: `$call` calls `handle`
/// (`$f`) with `$ud`, the context `$ctx` and the strings and out-slots of
/// `$c`, in that layout's order.
macro_rules! handler {
    ($owner:ident, |$f:ident, $ud:ident, $ctx:ident, $c:ident| $call:expr) => {
        impl HandlerTable for $owner {
            fn handle(
                &self,
                $ctx: &mut BlazenAssignmentContext,
                run_id: &str,
                workflow_name: &str,
                input_json: &CStr,
            ) -> Option<Answer> {
                let $f = self.vt.handle?;
                let $ud = self.vt.user_data;
                let mut $c = Call::new(run_id, workflow_name, input_json);
                // SAFETY: valid NUL-terminated strings and out-slots for the
                // call; the context outlives it.
                let status = unsafe { $call };
                Some($c.answer(status))
            }

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
