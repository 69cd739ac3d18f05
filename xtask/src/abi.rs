//! `cargo xtask abi`: the reference-surface check from ../shared.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::sh;

/// Runs the reference-surface check from ../shared.
pub fn abi_check(root: &Path) -> Result<()> {
    let lib = crate::cc::build_library(root, false)?;
    run_abi_check(root, &lib)
}

pub fn run_abi_check(root: &Path, lib: &Path) -> Result<()> {
    let tool = root.join("../shared/tools/abi-check");
    if !tool.exists() {
        bail!("{} not found", tool.display());
    }
    sh(Command::new("python3")
        .arg(&tool)
        .arg(root.join("include/blazen.h"))
        .arg(lib.join("libblazen_cabi.so")))
}
