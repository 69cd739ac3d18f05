//! Reaching a control plane: endpoint checks, and failures that name the
//! endpoint and their cause.

use blazen_controlplane::client::Client;
use blazen_controlplane::ControlPlaneError;
use blazen_embedded_cp::Subkind;

use crate::rt::{BlazenError, Result};

/// Refuses an endpoint that is not an `http://` or `https://` URI with a
/// host (VALIDATION naming `endpoint`), before anything connects.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<()> {
    let bad = |why: String| BlazenError::invalid("endpoint", why);
    let uri: tonic::transport::Uri = endpoint
        .parse()
        .map_err(|e| bad(format!("{endpoint:?} is not a URI ({e})")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        (None, _) => Err(bad(format!(
            "{endpoint:?} has no scheme; use \"http://{endpoint}\" (or https:// for TLS)"
        ))),
        (Some(scheme @ ("http" | "https")), _) => {
            Err(bad(format!("{endpoint:?} has no host after {scheme}://")))
        }
        (Some(scheme), _) => Err(bad(format!(
            "{endpoint:?} has the scheme {scheme:?}; the control plane speaks http:// or https://"
        ))),
    }
}

/// The newest wire envelope version this library sends (that of
/// blazen-controlplane 0.7.x); control planes refuse newer ones.
pub(crate) const WIRE_VERSION: u32 = blazen_controlplane::protocol::ENVELOPE_VERSION;

/// Which blazen-controlplane releases read envelopes up to version `v`.
fn releases_of(v: u32) -> &'static str {
    match v {
        0 | 1 => "0.5.x to 0.6.2",
        2 => "0.6.4 and 0.6.5",
        3 => "0.6.7 to 0.6.76",
        _ => "0.7.x or later",
    }
}

/// The error for a control plane that cannot read this library's
/// envelopes, when `e` (from any call to it) is its refusal: PEER,
/// `ControlPlaneFailedPrecondition`, naming both versions and what to do.
pub(crate) fn wire_mismatch(e: &BlazenError, endpoint: &str) -> Option<BlazenError> {
    let rest = e.message.split("is newer than supported ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let theirs: u32 = digits.parse().ok()?;
    Some(BlazenError::peer(
        Subkind::ControlPlaneFailedPrecondition,
        format!(
            "the control plane at {endpoint} reads wire envelopes up to version {theirs} \
             (blazen-controlplane {}), and this library sends version {WIRE_VERSION} \
             (blazen-controlplane {}): run a 0.7.x control plane (this library's embedded \
             one, blazen_controlplane_server_start, is one) or a blazen-cabi built on the \
             control plane's release",
            releases_of(theirs),
            releases_of(WIRE_VERSION),
        ),
    ))
}

/// One cheap call (describing a run that cannot exist) that a control
/// plane of an older wire refuses: connecting to one then fails at once,
/// not at some later call. Any other answer (not found, unauthenticated,
/// ...) is left to the calls that follow.
pub(crate) async fn check_wire(client: &Client, endpoint: &str) -> Result<()> {
    use blazen_core::distributed::OrchestratorClient;
    let probe = client.describe_workflow(uuid::Uuid::nil());
    // A control plane answers within milliseconds; a peer that accepts the
    // connection and never answers is left to the calls that follow (they
    // stay pending or time out, as before).
    match tokio::time::timeout(WIRE_PROBE_LIMIT, probe).await {
        Ok(Err(e)) => match wire_mismatch(&BlazenError::from(e), endpoint) {
            Some(mismatch) => Err(mismatch),
            None => Ok(()),
        },
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

/// How long connect waits for the wire check's answer.
const WIRE_PROBE_LIMIT: std::time::Duration = std::time::Duration::from_millis(1000);

/// `Client::connect` with the endpoint checked first and a failure that
/// names the endpoint and its cause.
pub(crate) async fn connect(
    endpoint: String,
    tls: Option<tonic::transport::ClientTlsConfig>,
    token: Option<String>,
) -> Result<Client> {
    check_endpoint(&endpoint)?;
    match Client::connect(endpoint.clone(), tls.clone(), token).await {
        Ok(c) => Ok(c),
        Err(ControlPlaneError::Transport(_)) => Err(reach_failure(&endpoint, tls).await),
        Err(e) => Err(e.into()),
    }
}

/// The error saying why `endpoint` cannot be reached (a diagnosis, made
/// after a connection failed): the crate reports only "transport
/// error" (tonic's error shows its cause only through `source()`, which
/// the crate's string conversion drops), so this connects once more and
/// reads the cause chain. PEER, subkind `ControlPlaneTls` for certificate
/// and handshake problems, `ControlPlaneTransport` otherwise (refused,
/// DNS, timeout).
pub(crate) async fn reach_failure(
    endpoint: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> BlazenError {
    probe(endpoint, tls).await.unwrap_or_else(|| {
        BlazenError::peer(
            Subkind::ControlPlaneTransport,
            format!(
                "cannot reach the control plane at {endpoint}: the connection failed, then \
                 succeeded when retried"
            ),
        )
    })
}

/// A call's failure to reach the control plane, with the endpoint and the
/// cause (a probe's, when it fails too); any other error unchanged.
pub(crate) async fn named(
    e: BlazenError,
    endpoint: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> BlazenError {
    if !e.has_subkind(Subkind::ControlPlaneTransport) || e.message.contains(endpoint) {
        return e;
    }
    match probe(endpoint, tls).await {
        Some(unreachable) => unreachable,
        None => BlazenError {
            message: format!("the control plane at {endpoint}: {}", e.message),
            ..e
        },
    }
}

/// Connects once to `endpoint`; the error naming it and the cause when
/// that fails.
async fn probe(
    endpoint: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Option<BlazenError> {
    let transport = |cause: &str| {
        BlazenError::peer(
            Subkind::ControlPlaneTransport,
            format!("cannot reach the control plane at {endpoint}: {cause}"),
        )
    };
    let Ok(mut probe) = tonic::transport::Endpoint::from_shared(endpoint.to_string()) else {
        return Some(transport("the endpoint is not a valid URI"));
    };
    probe = probe.connect_timeout(std::time::Duration::from_secs(5));
    if let Some(tls) = tls {
        match probe.tls_config(tls) {
            Ok(p) => probe = p,
            Err(e) => return Some(BlazenError::peer(Subkind::ControlPlaneTls, cause_chain(&e))),
        }
    }
    let cause = cause_chain(&probe.connect().await.err()?);
    let lower = cause.to_ascii_lowercase();
    if ["certificate", "tls", "handshake", "alert"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return Some(BlazenError::peer(
            Subkind::ControlPlaneTls,
            format!("TLS with the control plane at {endpoint} failed: {cause}"),
        ));
    }
    Some(transport(&cause))
}

/// An error's causes as one line, `outer: inner: ...`, leaving out tonic's
/// uninformative "transport error" and repeats.
fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text != "transport error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        "transport error (no further detail)".to_string()
    } else {
        parts.join(": ")
    }
}
