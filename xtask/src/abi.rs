//! `cargo xtask abi`: the reference-surface check from ../shared.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};
use blazen_cabi_codegen::Surface;

use crate::sh;

/// Runs the reference-surface check from ../shared on `surface`'s build.
pub fn abi_check(root: &Path, surface: Surface) -> Result<()> {
    let lib = crate::cc::build_surface(root, false, surface)?;
    run_abi_check(root, &lib, surface)
}

/// The reference each surface is checked against (`abi-check --surface`).
fn reference(surface: Surface) -> Option<&'static str> {
    match surface {
        Surface::V0_5 => None,
        Surface::V0_6 => Some("v0.6.74"),
    }
}

pub fn run_abi_check(root: &Path, lib: &Path, surface: Surface) -> Result<()> {
    let tool = root.join("../shared/tools/abi-check");
    if !tool.exists() {
        bail!("{} not found", tool.display());
    }
    let mut cmd = Command::new("python3");
    cmd.arg(&tool);
    if let Some(r) = reference(surface) {
        cmd.args(["--surface", r]);
    }
    sh(cmd
        .arg(root.join(crate::header::header_path(surface)))
        .arg(lib.join("libblazen_cabi.so")))
}
