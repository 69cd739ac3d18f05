//! One `handle` call for a run, and what its answer means for the run: its
//! output, or its failure as the run's error text, tagged with its kind
//! (see [`ErrorKind::tag`]).

use std::ffi::CString;

use serde_json::Value;

use crate::rt::callbacks::BlazenAssignmentContext;
use crate::rt::handler::{Answer, HandlerTable};
use crate::rt::ErrorKind;

/// The largest output a handler may return, in bytes of JSON text: the
/// control plane's 4 MiB message limit less room for the envelope. A larger
/// one fails its run at once with a VALIDATION error naming both sizes (it
/// could not reach the control plane, which would drop the worker's
/// connection and hand the run out again).
pub const BLAZEN_MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// Calls `handle` for one assignment; `Ok` is the run's output, `Err` its
/// error text.
pub(super) fn call(
    vt: &dyn HandlerTable,
    ctx: &mut BlazenAssignmentContext,
    run_id: &str,
    workflow_name: &str,
    input_json: &[u8],
) -> Result<Value, String> {
    let no_handle = || ErrorKind::Validation.tag("the handler vtable has no `handle` function");
    if !vt.has_handle() {
        return Err(no_handle());
    }
    let input = CString::new(input_json.to_vec())
        .map_err(|_| ErrorKind::Validation.tag("assignment input contains a NUL byte"))?;
    match vt.handle(ctx, run_id, workflow_name, &input) {
        Some(answer) => outcome(answer),
        None => Err(no_handle()),
    }
}

/// The run's result from the handler's status and out-slots. An error in
/// `out_err` fails the run even when the status is 0: the error wins and
/// the output is dropped.
fn outcome(answer: Answer) -> Result<Value, String> {
    if let Some(e) = answer.error {
        return Err(e.kind.tag(&e.message));
    }
    if answer.status != 0 {
        return Err(ErrorKind::Workflow.tag(&format!(
            "the handler failed with status {} and gave no error",
            answer.status
        )));
    }
    let invalid = |why: String| ErrorKind::Validation.tag(&why);
    match answer.output {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::BlazenError;

    fn answer(status: i32, output: Option<&str>, error: Option<BlazenError>) -> Answer {
        Answer {
            status,
            output: output.map(|s| s.as_bytes().to_vec()),
            error,
        }
    }

    #[test]
    fn an_error_wins_over_an_output() {
        let e = BlazenError::new(ErrorKind::Timeout, "slow");
        let r = outcome(answer(0, Some("1"), Some(e)));
        assert_eq!(r, Err("[Timeout] slow".to_string()));
    }

    #[test]
    fn outputs_and_failures() {
        assert_eq!(outcome(answer(0, None, None)), Ok(Value::Null));
        assert_eq!(
            outcome(answer(0, Some("[1]"), None)),
            Ok(serde_json::json!([1]))
        );
        let failed = outcome(answer(3, None, None)).unwrap_err();
        assert!(
            failed.starts_with("[Workflow] the handler failed with status 3"),
            "{failed}"
        );
        let not_json = outcome(answer(0, Some("{"), None)).unwrap_err();
        assert!(not_json.starts_with("[Validation] "), "{not_json}");
        let big = "1".repeat(BLAZEN_MAX_OUTPUT_BYTES + 1);
        let too_big = outcome(answer(0, Some(&big), None)).unwrap_err();
        assert!(too_big.contains("over the"), "{too_big}");
    }
}
