//! `cargo xtask gem`: builds the Ruby gem (`bindings/ruby`) with the
//! release library inside it, and installs it into a GEM_HOME for the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::sh;

const GEM_DIR: &str = "bindings/ruby";

/// Checks the generated attachments, puts the release library (debug info
/// stripped) into the gem and builds it; returns the `.gem` file.
pub fn build(root: &Path) -> Result<PathBuf> {
    crate::ruby::run(root, true)?;
    crate::install::build(root, blazen_cabi_codegen::Surface::V0_5)?;
    let lib = crate::cc::target_dir(root, blazen_cabi_codegen::Surface::V0_5)
        .join("release")
        .join("libblazen_cabi.so");
    let bundled = root
        .join(GEM_DIR)
        .join("lib/blazen/native/libblazen_cabi.so");
    sh(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&lib)
        .arg(&bundled))
    .context("copying the library into the gem")?;
    let out_dir = root.join("target/gem");
    std::fs::create_dir_all(&out_dir)?;
    let gem = out_dir.join("blazen-cabi-0.7.0.gem");
    sh(Command::new("gem")
        .args(["build", "blazen-cabi.gemspec", "--output"])
        .arg(&gem)
        .current_dir(root.join(GEM_DIR)))?;
    println!("gem: built {}", gem.display());
    Ok(gem)
}

/// Installs `gem` into a fresh, empty GEM_HOME at `home` (its one
/// dependency, the ffi gem, comes from the system).
pub fn install(gem: &Path, home: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(home);
    std::fs::create_dir_all(home)?;
    sh(Command::new("gem")
        .args([
            "install",
            "--local",
            "--ignore-dependencies",
            "--no-document",
            "--install-dir",
        ])
        .arg(home)
        .arg(gem))
}
