//! What can go wrong starting or running the embedded control plane, and
//! the text conventions its errors share with blazen-cabi.

use crate::Subkind;

/// The `Result` of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// An error of the embedded control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// An argument is wrong: which one (its C name), and how.
    Invalid {
        param: &'static str,
        problem: String,
    },
    /// A failure of the network, TLS or the store, with the subkind
    /// blazen-cabi's PEER errors carry.
    Peer { subkind: Subkind, message: String },
    /// Something that should not happen.
    Internal(String),
}

impl Error {
    pub(crate) fn peer(subkind: Subkind, message: impl Into<String>) -> Self {
        Error::Peer {
            subkind,
            message: message.into(),
        }
    }

    pub(crate) fn tls(e: impl std::fmt::Display) -> Self {
        Error::peer(Subkind::ControlPlaneTls, e.to_string())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Invalid { param, problem } => write!(f, "invalid argument `{param}`: {problem}"),
            Error::Peer { message, .. } | Error::Internal(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<blazen_controlplane::ControlPlaneError> for Error {
    fn from(e: blazen_controlplane::ControlPlaneError) -> Self {
        Error::peer(Subkind::ControlPlane, e.to_string())
    }
}

/// Start of the message of every gRPC status the store causes; blazen-cabi
/// turns such statuses into PEER / [`Subkind::ControlPlaneStore`].
pub const STORE_STATUS_PREFIX: &str = "control plane store";

/// The kinds of error this control plane records for a failed run, as
/// text tagged with the kind's name (`[Timeout] ...`); blazen-cabi splits
/// the tag off into its error kind of the same name (and tests that each
/// one here is one of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunErrorKind {
    /// A deadline passed.
    Timeout,
    /// The run could not finish (its worker kept dying, or reported no error).
    Workflow,
}

impl RunErrorKind {
    pub const ALL: [RunErrorKind; 2] = [RunErrorKind::Timeout, RunErrorKind::Workflow];

    /// The kind's name, as blazen-cabi's error kinds spell it.
    pub fn name(self) -> &'static str {
        match self {
            RunErrorKind::Timeout => "Timeout",
            RunErrorKind::Workflow => "Workflow",
        }
    }

    /// `message` tagged with the kind: `[Timeout] message`.
    pub fn tag(self, message: &str) -> String {
        format!("[{}] {message}", self.name())
    }
}
