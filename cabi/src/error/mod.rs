//! `BlazenError`: accessors, construction from JSON, and freeing; and
//! what errors become one:
//!
//! - [`convert`]: the errors of the control plane's crates and of the
//!   embedded control plane, read with [`grpc_text`];
//! - [`run_text`]: a failed run's error text, `[Kind] message`.
//!
//! The value itself (`BlazenError`, `ErrorKind`) is defined in `rt`, which
//! hands it to C.

mod convert;
mod grpc_text;
mod run_text;

use blazen_cabi_macros::export;
use serde_json::Value;

use crate::rt::arg::Bytes;
use crate::rt::{BlazenError, ErrorKind};

/// The fields of an error that only some kinds carry.
#[derive(Clone, Copy)]
enum Field {
    Subkind,
    RetryAfterMs,
    ElapsedMs,
    /// `status`, `provider`, `endpoint`, `request_id`, `detail`.
    ProviderDetails,
    /// `name`, `properties_json`.
    CallerDetails,
}

/// True when `field` applies to errors of `kind` (the contract's table).
fn applies(kind: ErrorKind, field: Field) -> bool {
    use ErrorKind::*;
    match field {
        Field::Subkind => matches!(kind, Peer | Provider | Prompt | Memory | Cache),
        Field::RetryAfterMs => matches!(kind, RateLimit | Provider),
        Field::ElapsedMs => kind == Timeout,
        Field::ProviderDetails => kind == Provider,
        Field::CallerDetails => kind == CallerError,
    }
}

/// `v` when `field` applies to `err`'s kind.
fn carried<T: Clone>(err: &BlazenError, field: Field, v: &Option<T>) -> Option<T> {
    applies(err.kind, field).then(|| v.clone()).flatten()
}

/// The error's kind, one of the `BLAZEN_ERROR_KIND_*` constants; 0 when
/// `err` is NULL. `err` is borrowed.
#[export]
fn blazen_error_kind(err: &BlazenError) -> u32 {
    err.kind.code()
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
    carried(err, Field::Subkind, &err.subkind)
}

/// Milliseconds to wait before retrying (RateLimit/Provider), -1 when absent
/// or `err` is NULL. `err` is borrowed.
#[export]
fn blazen_error_retry_after_ms(err: &BlazenError) -> i64 {
    carried(err, Field::RetryAfterMs, &err.retry_after_ms).unwrap_or(-1)
}

/// Elapsed milliseconds of a Timeout error; 0 otherwise. `err` is borrowed.
#[export]
fn blazen_error_elapsed_ms(err: &BlazenError) -> u64 {
    carried(err, Field::ElapsedMs, &err.elapsed_ms).unwrap_or(0)
}

/// The HTTP status of a Provider error; -1 when absent. `err` is borrowed.
#[export]
fn blazen_error_status(err: &BlazenError) -> i32 {
    carried(err, Field::ProviderDetails, &err.status).unwrap_or(-1)
}

/// The provider of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_provider(err: &BlazenError) -> Option<String> {
    carried(err, Field::ProviderDetails, &err.provider)
}

/// The endpoint of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_endpoint(err: &BlazenError) -> Option<String> {
    carried(err, Field::ProviderDetails, &err.endpoint)
}

/// The request id of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_request_id(err: &BlazenError) -> Option<String> {
    carried(err, Field::ProviderDetails, &err.request_id)
}

/// The detail text of a Provider error. `err` is borrowed.
#[export]
fn blazen_error_detail(err: &BlazenError) -> Option<String> {
    carried(err, Field::ProviderDetails, &err.detail)
}

/// The host exception's class name of a CallerError. `err` is borrowed.
#[export]
fn blazen_error_name(err: &BlazenError) -> Option<String> {
    carried(err, Field::CallerDetails, &err.name)
}

/// The host exception's attributes (JSON) of a CallerError. `err` is borrowed.
#[export]
fn blazen_error_properties_json(err: &BlazenError) -> Option<String> {
    carried(err, Field::CallerDetails, &err.properties_json)
}

/// Builds an error from `{"kind": K, "message": M, ...}` (`json` borrowed),
/// e.g. to return from a callback. The result is caller-owned (or owned by
/// the library once handed back through an `out_err`). Malformed input
/// still yields an INTERNAL error saying why; only NULL yields NULL.
#[export]
fn blazen_error_from_json(json: Option<Bytes>) -> Option<BlazenError> {
    json.map(|Bytes(raw)| {
        parse_error(&raw)
            .unwrap_or_else(|why| BlazenError::internal(format!("blazen_error_from_json: {why}")))
    })
}

fn parse_error(raw: &[u8]) -> Result<BlazenError, String> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("invalid JSON ({e})"))?;
    let o = v.as_object().ok_or("expected a JSON object")?;
    let kind_name = o
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("missing string `kind`")?;
    let kind =
        ErrorKind::from_text(kind_name).ok_or_else(|| format!("unknown kind `{kind_name}`"))?;
    let message = o
        .get("message")
        .and_then(Value::as_str)
        .ok_or("missing string `message`")?;
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(BlazenError {
        subkind: text("subkind"),
        retry_after_ms: o.get("retry_after_ms").and_then(Value::as_i64),
        elapsed_ms: o.get("elapsed_ms").and_then(Value::as_u64),
        status: o
            .get("status")
            .and_then(Value::as_i64)
            .and_then(|s| i32::try_from(s).ok()),
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
    fn provider_details_belong_to_provider_errors() {
        let endpoint = Some("https://api.example".to_string());
        let provider = BlazenError {
            endpoint: endpoint.clone(),
            ..BlazenError::new(ErrorKind::Provider, "m")
        };
        let peer = BlazenError {
            kind: ErrorKind::Peer,
            ..provider.clone()
        };
        assert_eq!(
            carried(&provider, Field::ProviderDetails, &provider.endpoint),
            endpoint
        );
        assert_eq!(carried(&peer, Field::ProviderDetails, &peer.endpoint), None);
    }

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
