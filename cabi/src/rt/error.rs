//! The error value behind `BlazenError *`: its kinds and constructors.
//! What the control plane's errors map to, and the run error text
//! (`[Kind] message`), are the `error` module's.

use blazen_embedded_cp::Subkind;

/// Result of every stub: the error side becomes a `BlazenError *`.
pub type Result<T> = std::result::Result<T, BlazenError>;

/// Error kinds (`blazen_error_kind`, `BLAZEN_ERROR_KIND_*`); the names are
/// those `blazen_error_from_json` reads and a failed run's `[Kind]` tag
/// carries.
#[blazen_cabi_macros::vocabulary(constants = "BLAZEN_ERROR_KIND_", ruby = "ERROR_KINDS")]
pub enum ErrorKind {
    /// Credentials were missing or refused.
    Auth = 1,
    /// Too many requests; `blazen_error_retry_after_ms` may say when to retry.
    RateLimit = 2,
    /// A time limit passed; `blazen_error_elapsed_ms` says after how long.
    Timeout = 3,
    /// An argument or a value was invalid.
    Validation = 4,
    /// Refused by a content policy.
    ContentPolicy = 5,
    /// Not supported here.
    Unsupported = 6,
    /// A computation failed.
    Compute = 7,
    /// A media input could not be used.
    Media = 8,
    /// An upstream provider failed (`status`, `endpoint`, `provider`, `request_id`, `detail`).
    Provider = 9,
    /// A workflow (a run) failed.
    Workflow = 10,
    /// A tool failed.
    Tool = 11,
    /// The control plane or the way to it failed; `blazen_error_subkind` says which part.
    Peer = 12,
    /// Persisting state failed.
    Persist = 13,
    /// A prompt could not be built.
    Prompt = 14,
    /// A memory store failed.
    Memory = 15,
    /// A cache failed.
    Cache = 16,
    /// The operation was cancelled.
    Cancelled = 17,
    /// A bug or an unexpected state of the library.
    Internal = 18,
    /// A host callback raised (`blazen_error_name`, `blazen_error_properties_json`).
    #[constant = "CALLER"]
    CallerError = 19,
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
    pub fn peer(subkind: Subkind, message: impl Into<String>) -> Self {
        Self {
            subkind: Some(subkind.to_string()),
            ..Self::new(ErrorKind::Peer, message)
        }
    }

    /// Whether the error's subkind is `subkind`.
    pub fn has_subkind(&self, subkind: Subkind) -> bool {
        self.subkind.as_deref() == Some(subkind.text())
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
    fn kinds_are_numbered_from_one_in_order() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.code(), i as u32 + 1);
            assert_eq!(ErrorKind::from_code(k.code()), Some(*k));
            assert_eq!(ErrorKind::from_text(k.text()), Some(*k));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(20), None);
    }
}
