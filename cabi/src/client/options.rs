//! The options objects of `connect_with_options` and
//! `submit_workflow_with_options`; unknown keys are refused.

use serde::Deserialize;

use super::BLAZEN_MAX_CONNECTIONS;
use crate::rt::arg::CheckOptions;

/// Keys of `connect_with_options`; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectOptions {
    pub(super) bearer_token: Option<String>,
    pub(super) cert_path: Option<String>,
    pub(super) key_path: Option<String>,
    pub(super) ca_path: Option<String>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) connections: Option<u64>,
}

impl CheckOptions for ConnectOptions {
    fn check(&self) -> std::result::Result<(), String> {
        crate::tls::pem_triple(&self.cert_path, &self.key_path, &self.ca_path)?;
        match self.connections {
            Some(n) if n == 0 || n > BLAZEN_MAX_CONNECTIONS as u64 => Err(format!(
                "`connections` must be from 1 to {BLAZEN_MAX_CONNECTIONS}, not {n}"
            )),
            _ => Ok(()),
        }
    }
}

impl CheckOptions for SubmitOptions {}

/// Keys of `submit_workflow_with_options`; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitOptions {
    pub(super) workflow_version: Option<u32>,
    pub(super) idempotency_key: Option<String>,
    pub(super) deadline_ms: Option<u64>,
    pub(super) resource_hint: Option<HintOptions>,
}

/// `resource_hint` of [`SubmitOptions`].
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with any of vram_mb, cpu_cores, expected_seconds"
)]
pub struct HintOptions {
    pub(super) vram_mb: Option<u64>,
    pub(super) cpu_cores: Option<f32>,
    pub(super) expected_seconds: Option<u32>,
}
