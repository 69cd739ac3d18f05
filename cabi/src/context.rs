//! The assignment context: what a handler of
//! `blazen_controlplane_worker_new_with_options` can ask about its run and
//! do on it while its `handle` call lasts.

use blazen_cabi_macros::export;

use crate::rt::arg::Json;
use crate::rt::callbacks::BlazenAssignmentContext;
use crate::rt::Result;

/// The id of the run `ctx` (borrowed) belongs to.
#[export]
fn blazen_assignment_context_run_id(ctx: &BlazenAssignmentContext) -> String {
    ctx.inner.run_id().to_string()
}

/// Which attempt at the run this assignment is: 0 for its first run, and
/// from the embedded control plane one more for each time the run lost its
/// worker (or was recovered after a restart) before this one; 0 for NULL.
/// `ctx` is borrowed.
#[export]
fn blazen_assignment_context_attempt(ctx: &BlazenAssignmentContext) -> u32 {
    ctx.attempt
}

/// True once the run has been cancelled (by the orchestrator, a drain or
/// the worker's shutdown): the handler should stop and return.
#[export]
fn blazen_assignment_context_is_cancelled(ctx: &BlazenAssignmentContext) -> bool {
    ctx.inner.is_cancelled()
}

/// Emits the event `event_type` with `data_json` (both borrowed; a JSON
/// value) on the run of `ctx` (borrowed), to its subscribers.
#[export(status)]
async fn blazen_assignment_context_emit_event(
    ctx: &BlazenAssignmentContext,
    event_type: String,
    data_json: Json,
) -> Result<()> {
    Ok(ctx.inner.emit_event(&event_type, data_json.0).await?)
}

/// Asks the orchestrator for input: emits `input.request` `{request_id,
/// prompt, metadata}` on the run of `ctx` (borrowed) and waits for
/// `blazen_controlplane_client_respond_to_input`, the run's cancellation,
/// or `timeout_ms` (0: no limit). `prompt` and `metadata_json` (a JSON
/// value) are borrowed; the answer is stored in `*out_json`. A limit
/// reached fails with TIMEOUT.
#[export(status, blocking)]
async fn blazen_assignment_context_request_input(
    ctx: &BlazenAssignmentContext,
    prompt: String,
    metadata_json: Json,
    timeout_ms: u64,
) -> Result<String> {
    let limit = (timeout_ms > 0).then_some(timeout_ms);
    let answer = ctx
        .inner
        .request_input(&prompt, metadata_json.0, limit)
        .await
        .map_err(|e| {
            let e = crate::rt::BlazenError::from(e);
            // The crate reports the handler's own limit as a transport
            // error; it is a TIMEOUT of this request.
            if limit.is_some() && e.message.contains("timed out awaiting input") {
                let mut t = crate::rt::BlazenError::new(
                    crate::rt::ErrorKind::Timeout,
                    format!(
                        "the input request {prompt:?} timed out: no answer within its \
                         timeout_ms ({timeout_ms} ms); an orchestrator answers with \
                         blazen_controlplane_client_respond_to_input"
                    ),
                );
                t.elapsed_ms = Some(timeout_ms);
                t
            } else {
                e
            }
        })?;
    Ok(answer.to_string())
}
