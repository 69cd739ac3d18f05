//! The error value behind `BlazenError *`: its kinds and constructors.
//! What the control plane's errors map to, and the run error text
//! (`[Kind] message`), are the `error` module's.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_numbered_like_the_constants() {
        for (i, (k, name)) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as u32, i as u32 + 1);
            assert_eq!(ErrorKind::from_name(name), Some(*k));
        }
    }
}
