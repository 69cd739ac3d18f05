//! What a worker is made from: every `worker_new_*` turns its arguments
//! into [`WorkerOptions`], and [`build`] alone makes the control plane's
//! `WorkerConfig` from them (one admission mapping, one capability check).

use std::collections::BTreeMap;
use std::time::Duration;

use blazen_controlplane::worker::{RetryPolicy, WorkerConfig};
use blazen_core::distributed::{AdmissionMode, WorkerCapability};

use super::route::Route;
use crate::rt::arg::{Capabilities, CheckOptions, StringMap};
use crate::rt::{BlazenError, Result};

/// Keys of `worker_new_with_options`; unknown keys are refused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerOptions {
    capabilities: Vec<CapabilityOption>,
    tags: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    admission: Option<AdmissionOption>,
    bearer_token: Option<String>,
    cert_path: Option<String>,
    key_path: Option<String>,
    ca_path: Option<String>,
    heartbeat_ms: Option<u64>,
    retry: Option<RetryOption>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object {\"kind\": \"workflow:NAME\", \"version\": integer (optional)}"
)]
struct CapabilityOption {
    kind: String,
    #[serde(default)]
    version: u32,
}

#[derive(Debug, serde::Deserialize)]
#[serde(
    tag = "mode",
    deny_unknown_fields,
    expecting = "an object {\"mode\": \"Fixed\", \"max_in_flight\": n} | {\"mode\": \"VramBudget\", \"max_vram_mb\": n} | {\"mode\": \"Reactive\"}"
)]
enum AdmissionOption {
    Fixed { max_in_flight: u32 },
    VramBudget { max_vram_mb: u64 },
    // A struct variant, not a unit one: serde lets a unit variant of an
    // internally tagged enum ignore unknown keys.
    Reactive {},
}

#[derive(Debug, serde::Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with any of max_attempts, initial_backoff_ms, max_backoff_ms"
)]
struct RetryOption {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

impl AdmissionOption {
    /// `admission_mode`/`admission_param` of `worker_new`: 0 Fixed
    /// (param = max in flight), 1 VramBudget (MiB), 2 Reactive.
    fn from_mode(mode: u32, param: u64) -> Result<Self> {
        use crate::vocabulary::AdmissionModeCode as M;
        Ok(match M::from_code(mode) {
            Some(M::Fixed) => Self::Fixed {
                max_in_flight: u32::try_from(param).unwrap_or(u32::MAX),
            },
            Some(M::VramBudget) => Self::VramBudget { max_vram_mb: param },
            Some(M::Reactive) => Self::Reactive {},
            None => {
                let known = M::ALL.map(|m| format!("{} ({m})", m.code()));
                return Err(BlazenError::invalid(
                    "admission_mode",
                    format!("is {mode}; expected one of {}", known.join(", ")),
                ));
            }
        })
    }

    /// The control plane's admission; a Fixed cap of 0 (only `worker_new`'s
    /// `admission_param` can give one; options refuse it) means 1.
    fn into_mode(self) -> AdmissionMode {
        match self {
            Self::Fixed { max_in_flight } => AdmissionMode::Fixed {
                max_in_flight: max_in_flight.max(1),
            },
            Self::VramBudget { max_vram_mb } => AdmissionMode::VramBudget { max_vram_mb },
            Self::Reactive {} => AdmissionMode::Reactive,
        }
    }
}

impl CheckOptions for WorkerOptions {
    fn check(&self) -> std::result::Result<(), String> {
        if let Some(AdmissionOption::Fixed { max_in_flight: 0 }) = self.admission {
            return Err("`admission.max_in_flight` must be at least 1, not 0".to_string());
        }
        crate::tls::pem_triple(&self.cert_path, &self.key_path, &self.ca_path).map(drop)
    }
}

impl WorkerOptions {
    /// The arguments of `worker_new` as options.
    pub(super) fn from_args(
        capabilities: Capabilities,
        tags: StringMap,
        admission_mode: u32,
        admission_param: u64,
    ) -> Result<Self> {
        Ok(Self {
            capabilities: capabilities
                .0
                .into_iter()
                .map(|(kind, version)| CapabilityOption { kind, version })
                .collect(),
            tags: tags.0.into_iter().collect(),
            admission: Some(AdmissionOption::from_mode(admission_mode, admission_param)?),
            ..Self::default()
        })
    }

    /// Adds a bearer token (the 0.6.x surface's `bearer_token` argument;
    /// NULL there leaves the worker without one).
    pub(super) fn with_token(self, bearer_token: Option<String>) -> Self {
        Self {
            bearer_token,
            ..self
        }
    }

    /// Adds mutual TLS from PEM files (read when the worker is built).
    pub(super) fn with_pem_files(self, cert: String, key: String, ca: String) -> Self {
        Self {
            cert_path: Some(cert),
            key_path: Some(key),
            ca_path: Some(ca),
            ..self
        }
    }

    /// A capability kind must be `workflow:NAME`: the control plane routes
    /// a run of workflow `NAME` only to that kind, so any other kind would
    /// be accepted and never match. An error names `param`.
    pub(super) fn check_kinds(&self, param: &str) -> Result<()> {
        for c in &self.capabilities {
            match c.kind.strip_prefix("workflow:") {
                Some(name) if !name.is_empty() => {}
                _ => {
                    return Err(BlazenError::invalid(
                        param,
                        format!(
                            "capability kind {:?} is not `workflow:NAME` (runs of workflow \
                             NAME are routed to capability `workflow:NAME`)",
                            c.kind
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The control plane's configuration for a worker named `node_id` reaching
/// it by `route` (which takes the token and TLS settings too).
pub(super) fn build(route: &mut Route, node_id: String, o: WorkerOptions) -> Result<WorkerConfig> {
    let admission = o
        .admission
        .unwrap_or(AdmissionOption::Fixed { max_in_flight: 1 })
        .into_mode();
    let mut config =
        WorkerConfig::new(route.access.endpoint.clone(), node_id).with_admission(admission);
    for c in o.capabilities {
        config = config.with_capability(WorkerCapability {
            kind: c.kind,
            version: c.version,
        });
    }
    for (k, v) in o.tags {
        config = config.with_tag(k, v);
    }
    for (k, v) in o.labels {
        config = config.with_label(k, v);
    }
    if let Some(token) = o.bearer_token {
        route.access.token = Some(token.clone());
        config = config.with_bearer_token(token);
    }
    if let Some(ms) = o.heartbeat_ms {
        config = config.with_heartbeat_interval(Duration::from_millis(ms.max(1)));
    }
    route.access.patient = o.retry.is_some();
    if let Some(r) = o.retry {
        let defaults = RetryPolicy::default();
        config = config.with_retry(RetryPolicy {
            initial_backoff: r
                .initial_backoff_ms
                .map_or(defaults.initial_backoff, Duration::from_millis),
            max_backoff: r
                .max_backoff_ms
                .map_or(defaults.max_backoff, Duration::from_millis),
            multiplier: defaults.multiplier,
            max_attempts: r.max_attempts.map(|n| n.max(1)),
        });
    }
    if let Some([c, k, a]) = crate::tls::pem_paths(&o.cert_path, &o.key_path, &o.ca_path)? {
        config = route.mtls(config, &c, &k, &a)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rt::ErrorKind;

    fn refusal(json: &str) -> String {
        let text = std::ffi::CString::new(json).unwrap();
        let r = <crate::rt::arg::Options<WorkerOptions> as crate::rt::arg::FromCStr>::from_c(
            Some(&text),
            "options_json",
        );
        let e = r.expect_err("refused");
        assert_eq!(e.kind, ErrorKind::Validation);
        e.message
    }

    #[test]
    fn option_errors_name_the_key_and_the_expected_shape() {
        let m = refusal(r#"{"heartbeat_ms":"5"}"#);
        assert!(m.contains("`heartbeat_ms`: invalid type: string"), "{m}");
        let m = refusal(r#"{"retry":{"max_attempts":-1}}"#);
        assert!(m.contains("`retry.max_attempts`"), "{m}");
        let m = refusal(r#"{"capabilities":["workflow:a"]}"#);
        assert!(
            m.contains("`capabilities[0]`") && m.contains(r#"{"kind""#),
            "{m}"
        );
        let m = refusal(r#"{"admission":{"mode":"Fixed","max_in_flight":0}}"#);
        assert!(m.contains("at least 1"), "{m}");
        let m = refusal(r#"{"admission":{"mode":"Fixed","max_in_flight":"4"}}"#);
        assert!(m.contains("`admission"), "{m}");
        let m = refusal(r#"{"capabilitys":[]}"#);
        assert!(m.contains("unknown field `capabilitys`"), "{m}");
        // A key Reactive does not take is refused too (it was ignored).
        let m = refusal(r#"{"admission":{"mode":"Reactive","max_in_flight":4}}"#);
        assert!(m.contains("unknown field `max_in_flight`"), "{m}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn admission_modes(mode in any::<u32>(), param in any::<u64>()) {
            let r = AdmissionOption::from_mode(mode, param).map(AdmissionOption::into_mode);
            prop_assert_eq!(r.is_ok(), mode <= 2);
            match r {
                Err(e) => {
                    prop_assert_eq!(e.kind, ErrorKind::Validation);
                    prop_assert!(e.message.contains("`admission_mode`"));
                }
                Ok(AdmissionMode::Fixed { max_in_flight }) => {
                    prop_assert!(max_in_flight >= 1);
                    prop_assert_eq!(u64::from(max_in_flight), param.clamp(1, u64::from(u32::MAX)));
                }
                Ok(AdmissionMode::VramBudget { max_vram_mb }) => prop_assert_eq!(max_vram_mb, param),
                Ok(AdmissionMode::Reactive) => prop_assert_eq!(mode, 2),
            }
        }
    }
}
