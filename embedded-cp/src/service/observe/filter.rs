//! A page of the run listing: which runs, how many, from where; from the
//! C API's JSON filter or the HTTP API's query parameters.

use blazen_core::distributed::RunStatus;
use serde_json::Value;

use super::status_text;

/// The status a text names (any case), if any.
fn status_from_text(t: &str) -> Option<RunStatus> {
    [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ]
    .into_iter()
    .find(|s| status_text(*s).eq_ignore_ascii_case(t))
}

/// A page of the run listing, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// At most this many (1..=[`RunFilter::MAX_LIMIT`]).
    pub limit: usize,
    /// Only runs older than this cursor (`next_cursor` of the page before).
    pub before: Option<u64>,
}

impl RunFilter {
    /// The most runs one page holds.
    pub const MAX_LIMIT: usize = 1000;
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: usize = 50;

    /// The filter a JSON object gives: `status` (`"pending"`, `"running"`,
    /// `"completed"`, `"failed"` or `"cancelled"`, any case), `workflow`
    /// (a string), `limit` (1 to 1,000; default 50) and `before` (a
    /// cursor); `null` is the default filter. Anything else is refused,
    /// with why.
    pub fn from_json(v: &Value) -> Result<RunFilter, String> {
        let mut f = RunFilter {
            limit: Self::DEFAULT_LIMIT,
            ..RunFilter::default()
        };
        let obj = match v {
            Value::Null => return Ok(f),
            Value::Object(o) => o,
            _ => return Err("must be null or a JSON object".into()),
        };
        for (k, val) in obj {
            match (k.as_str(), val) {
                (_, Value::Null) => {}
                ("status", Value::String(s)) => f.status = Some(Self::status(s)?),
                ("workflow", Value::String(s)) => f.workflow = Some(s.clone()),
                ("limit", v) => f.limit = Self::limit(&v.to_string())?,
                ("before", v) => f.before = Some(Self::cursor(&v.to_string())?),
                ("status" | "workflow", _) => return Err(format!("`{k}` must be a string")),
                _ => {
                    return Err(format!(
                        "unknown key `{k}` (expected `status`, `workflow`, `limit` or `before`)"
                    ))
                }
            }
        }
        Ok(f)
    }

    pub(crate) fn status(s: &str) -> Result<RunStatus, String> {
        status_from_text(s).ok_or_else(|| {
            format!(
                "`status` must be pending, running, completed, failed or cancelled, got {:?}",
                s.chars().take(64).collect::<String>()
            )
        })
    }

    pub(crate) fn limit(s: &str) -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(n) if (1..=Self::MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "`limit` must be an integer from 1 to {}, got {}",
                Self::MAX_LIMIT,
                s.chars().take(64).collect::<String>()
            )),
        }
    }

    pub(crate) fn cursor(s: &str) -> Result<u64, String> {
        s.parse::<u64>().map_err(|_| {
            format!(
                "`before` must be a cursor (a non-negative integer), got {}",
                s.chars().take(64).collect::<String>()
            )
        })
    }
}
