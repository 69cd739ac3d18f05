//! The error value behind `BlazenError *` and its conversions.

use blazen_controlplane::ControlPlaneError;
use blazen_core::error::WorkflowError;

use blazen_embedded_cp::{STORE_STATUS_PREFIX, STORE_SUBKIND};

use super::grpc_text::{grpc_code_in, status_message, subkind_for_code};

/// Result of every stub: the error side becomes a `BlazenError *`.
pub type Result<T> = std::result::Result<T, BlazenError>;

/// Error kinds, numbered as the `BLAZEN_ERROR_KIND_*` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorKind {
    Auth = 1,
    RateLimit,
    Timeout,
    Validation,
    ContentPolicy,
    Unsupported,
    Compute,
    Media,
    Provider,
    Workflow,
    Tool,
    Peer,
    Persist,
    Prompt,
    Memory,
    Cache,
    Cancelled,
    Internal,
    CallerError,
}

impl ErrorKind {
    /// Every kind in constant order, with the name used by `blazen_error_from_json`.
    pub const ALL: [(ErrorKind, &'static str); 19] = [
        (ErrorKind::Auth, "Auth"),
        (ErrorKind::RateLimit, "RateLimit"),
        (ErrorKind::Timeout, "Timeout"),
        (ErrorKind::Validation, "Validation"),
        (ErrorKind::ContentPolicy, "ContentPolicy"),
        (ErrorKind::Unsupported, "Unsupported"),
        (ErrorKind::Compute, "Compute"),
        (ErrorKind::Media, "Media"),
        (ErrorKind::Provider, "Provider"),
        (ErrorKind::Workflow, "Workflow"),
        (ErrorKind::Tool, "Tool"),
        (ErrorKind::Peer, "Peer"),
        (ErrorKind::Persist, "Persist"),
        (ErrorKind::Prompt, "Prompt"),
        (ErrorKind::Memory, "Memory"),
        (ErrorKind::Cache, "Cache"),
        (ErrorKind::Cancelled, "Cancelled"),
        (ErrorKind::Internal, "Internal"),
        (ErrorKind::CallerError, "CallerError"),
    ];

    /// The kind called `name` in `blazen_error_from_json`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }

    /// The kind's name, as `blazen_error_from_json` spells it.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("Internal", |(_, n)| n)
    }

    /// A failed run's error text as the library records it: the kind in
    /// brackets, then the message (`[Timeout] ...`).
    pub fn tag(self, message: &str) -> String {
        format!("[{}] {message}", self.name())
    }

    /// Splits a run's recorded error text into its kind and message; text
    /// without a known `[Kind] ` tag has no kind.
    pub fn untag(text: &str) -> (Option<Self>, &str) {
        let tagged = text.strip_prefix('[').and_then(|rest| {
            let (name, message) = rest.split_once("] ")?;
            Some((Self::from_name(name)?, message))
        });
        match tagged {
            Some((kind, message)) => (Some(kind), message),
            None => (None, text),
        }
    }
}

/// The library's error value. Fields that do not apply to a kind stay empty.
#[blazen_cabi_macros::handle(free = "blazen_error_free")]
#[derive(Clone, Debug, PartialEq)]
pub struct BlazenError {
    pub kind: ErrorKind,
    pub message: String,
    pub subkind: Option<String>,
    pub retry_after_ms: Option<i64>,
    pub elapsed_ms: Option<u64>,
    pub status: Option<i32>,
    pub provider: Option<String>,
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
    pub name: Option<String>,
    pub properties_json: Option<String>,
}

impl BlazenError {
    /// An error of `kind` with `message` and nothing else.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            subkind: None,
            retry_after_ms: None,
            elapsed_ms: None,
            status: None,
            provider: None,
            endpoint: None,
            request_id: None,
            detail: None,
            name: None,
            properties_json: None,
        }
    }

    /// A VALIDATION error about the C parameter `param`.
    pub fn invalid(param: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!("invalid argument `{param}`: {problem}"),
        )
    }

    /// An INTERNAL error (a bug, a caught panic, a misuse of a future).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The CANCELLED error.
    pub fn cancelled(what: &str) -> Self {
        Self::new(ErrorKind::Cancelled, format!("{what} was cancelled"))
    }

    /// A PEER error from the control plane with its subkind.
    pub fn peer(subkind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            subkind: Some(subkind.into()),
            ..Self::new(ErrorKind::Peer, message)
        }
    }

    /// The same error with `note` added to its message, after a `; `.
    pub fn context(mut self, note: &str) -> Self {
        self.message = format!("{}; {note}", self.message);
        self
    }
}

impl std::fmt::Display for BlazenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

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
        BlazenError::from_workflow_text(e.to_string())
    }
}

impl From<ControlPlaneError> for BlazenError {
    fn from(e: ControlPlaneError) -> Self {
        let text = e.to_string();
        let subkind = match &e {
            ControlPlaneError::Tls(_) => "ControlPlaneTls".to_string(),
            ControlPlaneError::Unauthenticated(_) => "ControlPlaneUnauthenticated".to_string(),
            ControlPlaneError::UnknownRun(_) | ControlPlaneError::UnknownWorker(_) => {
                "ControlPlaneNotFound".to_string()
            }
            ControlPlaneError::NoMatchingWorker { .. } => {
                "ControlPlaneFailedPrecondition".to_string()
            }
            ControlPlaneError::Workflow(w) => {
                return BlazenError::from_workflow_text(w.to_string())
            }
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
                _ => "ControlPlaneTransport".to_string(),
            },
            _ => "ControlPlane".to_string(),
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
    Some(BlazenError::peer(STORE_SUBKIND, message))
}

impl BlazenError {
    fn from_workflow_text(text: String) -> Self {
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
            None => BlazenError::peer("ControlPlane", text),
        }
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

    #[test]
    fn run_errors_carry_their_kind() {
        let text = ErrorKind::Timeout.tag("too slow");
        assert_eq!(text, "[Timeout] too slow");
        assert_eq!(
            ErrorKind::untag(&text),
            (Some(ErrorKind::Timeout), "too slow")
        );
        assert_eq!(ErrorKind::untag("[Nope] x"), (None, "[Nope] x"));
        assert_eq!(ErrorKind::untag("plain"), (None, "plain"));
    }

    #[test]
    fn the_embedded_control_planes_run_error_tags_are_error_kinds() {
        for k in blazen_embedded_cp::RunErrorKind::ALL {
            let text = k.tag("the message");
            let (kind, message) = ErrorKind::untag(&text);
            assert_eq!(kind.map(ErrorKind::name), Some(k.name()), "{text}");
            assert_eq!(message, "the message");
        }
    }

    #[test]
    fn kinds_are_numbered_like_the_constants() {
        for (i, (k, name)) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as u32, i as u32 + 1);
            assert_eq!(ErrorKind::from_name(name), Some(*k));
        }
    }
}
