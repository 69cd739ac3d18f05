//! TLS from PEM files for clients and workers, and the options that name
//! them (the embedded server loads its own, in blazen-embedded-cp).

use blazen_embedded_cp::Subkind;
use std::path::{Path, PathBuf};

use tonic::transport::ClientTlsConfig;

use crate::rt::{BlazenError, Result};

/// A certificate problem: PEER, subkind `ControlPlaneTls`.
fn error(e: impl std::fmt::Display) -> BlazenError {
    BlazenError::peer(Subkind::ControlPlaneTls, e.to_string())
}

/// The TLS settings of options that name PEM files: all three or none
/// (checked when the options are decoded, see `CheckOptions`).
pub(crate) fn pem_triple(
    cert: &Option<String>,
    key: &Option<String>,
    ca: &Option<String>,
) -> std::result::Result<Option<[PathBuf; 3]>, String> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(c), Some(k), Some(a)) => Ok(Some([c.into(), k.into(), a.into()])),
        _ => Err("`cert_path`, `key_path` and `ca_path` must be given together".into()),
    }
}

/// [`pem_triple`] for option structs already checked: an error names
/// `options_json`.
pub(crate) fn pem_paths(
    cert: &Option<String>,
    key: &Option<String>,
    ca: &Option<String>,
) -> Result<Option<[PathBuf; 3]>> {
    pem_triple(cert, key, ca).map_err(|e| BlazenError::invalid("options_json", e))
}

/// A client's mutual-TLS settings from its certificate, key and CA files.
pub(crate) fn client(cert: &Path, key: &Path, ca: &Path) -> Result<ClientTlsConfig> {
    blazen_controlplane::tls::load_client_tls(cert, key, ca).map_err(error)
}

/// [`client`] from an options object's three paths, if it names them.
pub(crate) fn client_from_options(
    cert: &Option<String>,
    key: &Option<String>,
    ca: &Option<String>,
) -> Result<Option<ClientTlsConfig>> {
    pem_paths(cert, key, ca)?
        .map(|[c, k, a]| client(&c, &k, &a))
        .transpose()
}
