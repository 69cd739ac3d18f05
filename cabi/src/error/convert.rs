//! What the errors of the crates under the library become: the control
//! plane's client errors (their gRPC status read back out of its text),
//! workflow errors, and the embedded control plane's own.

use blazen_controlplane::ControlPlaneError;
use blazen_core::error::WorkflowError;
use blazen_embedded_cp::{Subkind, STORE_STATUS_PREFIX};

use super::grpc_text::{grpc_code_in, status_message, subkind_for_code};
use crate::rt::BlazenError;

impl From<blazen_embedded_cp::Error> for BlazenError {
    fn from(e: blazen_embedded_cp::Error) -> Self {
        use blazen_embedded_cp::Error as E;
        match e {
            E::Invalid { param, problem } => BlazenError::invalid(param, problem),
            E::Peer { subkind, message } => BlazenError::peer(subkind, message),
            E::Internal(message) => BlazenError::internal(message),
        }
    }
}

impl From<WorkflowError> for BlazenError {
    fn from(e: WorkflowError) -> Self {
        from_workflow_text(e.to_string())
    }
}

impl From<ControlPlaneError> for BlazenError {
    fn from(e: ControlPlaneError) -> Self {
        let text = e.to_string();
        let subkind = match &e {
            ControlPlaneError::Tls(_) => Subkind::ControlPlaneTls,
            ControlPlaneError::Unauthenticated(_) => Subkind::ControlPlaneUnauthenticated,
            ControlPlaneError::UnknownRun(_) | ControlPlaneError::UnknownWorker(_) => {
                Subkind::ControlPlaneNotFound
            }
            ControlPlaneError::NoMatchingWorker { .. } => Subkind::ControlPlaneFailedPrecondition,
            ControlPlaneError::Workflow(w) => return from_workflow_text(w.to_string()),
            ControlPlaneError::Transport(t) if store_error(t).is_some() => {
                return store_error(t).unwrap_or_else(|| BlazenError::internal(t.clone()))
            }
            ControlPlaneError::Transport(t) => match (grpc_code_in(t), status_message(t)) {
                // A gRPC status: its code and the server's text, without
                // tonic's rendering of the error source (a Rust debug dump).
                (Some(code), Some(message)) => {
                    return BlazenError::peer(subkind_for_code(&code), format!("{code}: {message}"))
                }
                (Some(code), None) => subkind_for_code(&code),
                _ => Subkind::ControlPlaneTransport,
            },
            _ => Subkind::ControlPlane,
        };
        BlazenError::peer(subkind, text)
    }
}

/// An UNAVAILABLE status the embedded control plane's durable store
/// caused, as PEER / `ControlPlaneStore` with the server's text.
fn store_error(text: &str) -> Option<BlazenError> {
    if grpc_code_in(text).as_deref() != Some("Unavailable") {
        return None;
    }
    let at = text.find(STORE_STATUS_PREFIX)?;
    let message = status_message(text).unwrap_or_else(|| text[at..].to_string());
    Some(BlazenError::peer(Subkind::ControlPlaneStore, message))
}

/// A workflow error's text as an error: PEER, with the gRPC status it
/// carries (or the store's failure) when it has one.
fn from_workflow_text(text: String) -> BlazenError {
    if let Some(e) = store_error(&text) {
        return e;
    }
    match grpc_code_in(&text) {
        // One format for every call's gRPC status, `Code: message`
        // (the crate's client words some as "control-plane RPC failed
        // (code=Code): message").
        Some(code) => {
            let crate_words = format!("control-plane RPC failed (code={code}): ");
            let message = text.strip_prefix(&crate_words).map(str::to_string);
            let message = message.or_else(|| status_message(&text));
            let shown = message.map_or(text, |m| format!("{code}: {m}"));
            BlazenError::peer(subkind_for_code(&code), shown)
        }
        None => BlazenError::peer(Subkind::ControlPlane, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_codes_from_both_renderings() {
        assert_eq!(
            grpc_code_in("control-plane RPC failed (code=FailedPrecondition): no worker")
                .as_deref(),
            Some("FailedPrecondition")
        );
        assert_eq!(
            grpc_code_in("tonic transport error: status: NotFound, message: \"x\"").as_deref(),
            Some("NotFound")
        );
        assert_eq!(
            grpc_code_in("tonic transport error: code: 'Some requested entity was not found', message: \"x\"")
                .as_deref(),
            Some("NotFound")
        );
        assert_eq!(grpc_code_in("connect: transport error"), None);
    }

    #[test]
    fn status_renderings_lose_their_debug_dump() {
        let t = "code: 'Some requested entity was not found', message: \"no worker \\\"x\\\"\", source: Some(hyper::Error(Io, Custom { kind: BrokenPipe }))";
        assert_eq!(status_message(t).as_deref(), Some("no worker \"x\""));
        let e = BlazenError::from(ControlPlaneError::Transport(t.to_string()));
        assert_eq!(e.subkind.as_deref(), Some("ControlPlaneNotFound"));
        assert_eq!(e.message, "NotFound: no worker \"x\"");
        assert_eq!(status_message("connect: transport error"), None);
    }
}
