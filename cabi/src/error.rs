//! `BlazenError`: accessors, construction from JSON, and freeing.

use blazen_cabi_macros::export;
use serde_json::Value;

use crate::rt::arg::Bytes;
use crate::rt::{BlazenError, ErrorKind};

macro_rules! kind_constants {
    ($($name:ident = $kind:ident),* $(,)?) => {$(
        #[doc = concat!("Error kind `", stringify!($kind), "`.")]
        pub const $name: u32 = ErrorKind::$kind as u32;
    )*};
}

kind_constants! {
    BLAZEN_ERROR_KIND_AUTH = Auth,
    BLAZEN_ERROR_KIND_RATE_LIMIT = RateLimit,
    BLAZEN_ERROR_KIND_TIMEOUT = Timeout,
    BLAZEN_ERROR_KIND_VALIDATION = Validation,
    BLAZEN_ERROR_KIND_CONTENT_POLICY = ContentPolicy,
    BLAZEN_ERROR_KIND_UNSUPPORTED = Unsupported,
    BLAZEN_ERROR_KIND_COMPUTE = Compute,
    BLAZEN_ERROR_KIND_MEDIA = Media,
    BLAZEN_ERROR_KIND_PROVIDER = Provider,
    BLAZEN_ERROR_KIND_WORKFLOW = Workflow,
    BLAZEN_ERROR_KIND_TOOL = Tool,
    BLAZEN_ERROR_KIND_PEER = Peer,
    BLAZEN_ERROR_KIND_PERSIST = Persist,
    BLAZEN_ERROR_KIND_PROMPT = Prompt,
    BLAZEN_ERROR_KIND_MEMORY = Memory,
    BLAZEN_ERROR_KIND_CACHE = Cache,
    BLAZEN_ERROR_KIND_CANCELLED = Cancelled,
    BLAZEN_ERROR_KIND_INTERNAL = Internal,
    BLAZEN_ERROR_KIND_CALLER = CallerError,
}

/// True when `field` applies to errors of `kind` (the contract's table).
fn applies(kind: ErrorKind, field: &str) -> bool {
    use ErrorKind::*;
    match field {
        "subkind" => matches!(kind, Peer | Provider | Prompt | Memory | Cache),
        "retry_after_ms" => matches!(kind, RateLimit | Provider),
        "elapsed_ms" => kind == Timeout,
        "provider" => kind == Provider,
        "name" | "properties_json" => kind == CallerError,
        _ => false,
    }
}

fn field(err: &BlazenError, name: &str, v: &Option<String>) -> Option<String> {
    applies(err.kind, name).then(|| v.clone()).flatten()
}

/// The error's kind, one of the `BLAZEN_ERROR_KIND_*` constants; 0 when
/// `err` is NULL. `err` is borrowed.
#[export]
fn blazen_error_kind(err: &BlazenError) -> u32 {
    err.kind as u32
}

/// The error's message. `err` is borrowed.
#[export]
fn blazen_error_message(err: &BlazenError) -> String {
    err.message.clone()
}

/// The cause within the kind, for Peer/Provider/Prompt/Memory/Cache errors
/// (e.g. `ControlPlaneNotFound`); NULL otherwise. `err` is borrowed.
#[export]
fn blazen_error_subkind(err: &BlazenError) -> Option<String> {
    field(err, "subkind", &err.subkind)
}

/// Milliseconds to wait before retrying (RateLimit/Provider), -1 when absent
/// or `err` is NULL. `err` is borrowed.
#[export]
fn blazen_error_retry_after_ms(err: &BlazenError) -> i64 {
    applies(err.kind, "retry_after_ms")
        .then_some(err.retry_after_ms)
        .flatten()
        .unwrap_or(-1)
}

/// Elapsed milliseconds of a Timeout error; 0 otherwise. `err` is borrowed.
#[export]
fn blazen_error_elapsed_ms(err: &BlazenError) -> u64 {
    applies(err.kind, "elapsed_ms")
        .then_some(err.elapsed_ms)
        .flatten()
        .unwrap_or(0)
}

/// The HTTP status of a Provider error; -1 when absent. `err` is borrowed.
#[export]
fn blazen_error_status(err: &BlazenError) -> i32 {
    (err.kind == ErrorKind::Provider)
        .then_some(err.status)
        .flatten()
        .unwrap_or(-1)
}

/// The provider of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_provider(err: &BlazenError) -> Option<String> {
    field(err, "provider", &err.provider)
}

/// The endpoint of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_endpoint(err: &BlazenError) -> Option<String> {
    field(err, "provider", &err.endpoint)
}

/// The request id of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_request_id(err: &BlazenError) -> Option<String> {
    field(err, "provider", &err.request_id)
}

/// The detail text of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_detail(err: &BlazenError) -> Option<String> {
    field(err, "provider", &err.detail)
}

/// The host exception's class name of a CallerError. `err` is borrowed.
#[export]
fn blazen_error_name(err: &BlazenError) -> Option<String> {
    field(err, "name", &err.name)
}

/// The host exception's attributes (JSON) of a CallerError. `err` is borrowed.
#[export]
fn blazen_error_properties_json(err: &BlazenError) -> Option<String> {
    field(err, "properties_json", &err.properties_json)
}

/// Builds an error from `{"kind": K, "message": M, ...}` (`json` borrowed),
/// e.g. to return from a callback. The result is caller-owned (or owned by
/// the library once handed back through an `out_err`). Malformed input
/// still yields an INTERNAL error saying why; only NULL yields NULL.
#[export]
fn blazen_error_from_json(json: Option<Bytes>) -> Option<BlazenError> {
    json.map(|Bytes(raw)| parse_error(&raw).unwrap_or_else(|why| {
        BlazenError::internal(format!("blazen_error_from_json: {why}"))
    }))
}

fn parse_error(raw: &[u8]) -> Result<BlazenError, String> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("invalid JSON ({e})"))?;
    let o = v.as_object().ok_or("expected a JSON object")?;
    let kind_name = o.get("kind").and_then(Value::as_str).ok_or("missing string `kind`")?;
    let kind = ErrorKind::from_name(kind_name).ok_or_else(|| format!("unknown kind `{kind_name}`"))?;
    let message = o.get("message").and_then(Value::as_str).ok_or("missing string `message`")?;
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(BlazenError {
        subkind: text("subkind"),
        retry_after_ms: o.get("retry_after_ms").and_then(Value::as_i64),
        elapsed_ms: o.get("elapsed_ms").and_then(Value::as_u64),
        status: o.get("status").and_then(Value::as_i64).and_then(|s| i32::try_from(s).ok()),
        provider: text("provider"),
        endpoint: text("endpoint"),
        request_id: text("request_id"),
        detail: text("detail"),
        name: text("name"),
        properties_json: o.get("properties_json").map(|p| match p {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        ..BlazenError::new(kind, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_json_reads_every_field() {
        let e = parse_error(br#"{"kind":"CallerError","message":"boom","name":"KeyError","properties_json":{"a":1}}"#).unwrap();
        assert_eq!(e.kind, ErrorKind::CallerError);
        assert_eq!(e.name.as_deref(), Some("KeyError"));
        assert_eq!(e.properties_json.as_deref(), Some(r#"{"a":1}"#));
        assert!(parse_error(b"[]").is_err());
        assert!(parse_error(br#"{"kind":"Nope","message":"x"}"#).is_err());
    }
}
