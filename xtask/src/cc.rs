//! Building the library and compiling C and C++ consumers against it:
//! shared by the test, demo, bench and abi tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, sh};

/// Compilers every C consumer is built with.
pub const C_COMPILERS: [&str; 2] = ["gcc", "clang"];

pub fn need(tool: &str) -> Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        bail!("`{tool}` is not installed (run `.ci/install-deps` or see the README)");
    }
    Ok(())
}

pub fn build_library(root: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "-p", "blazen-cabi"]);
    if release {
        cmd.arg("--release");
    }
    sh(&mut cmd)?;
    let dir = root
        .join("target")
        .join(if release { "release" } else { "debug" });
    // Programs linked here record the soname; give it a file to find.
    crate::install::link_soname_in_target(root, &dir)?;
    Ok(dir)
}

/// Compiles one consumer program against include/ and the cdylib in `lib`.
pub fn compile(
    root: &Path,
    cc: &str,
    src: &Path,
    lib: &Path,
    out: &Path,
    extra: &[&str],
) -> Result<()> {
    let mut cmd = Command::new(cc);
    cmd.args(extra)
        .arg("-I")
        .arg(root.join("include"))
        .arg("-I")
        .arg(root.join("tests/c"))
        .arg("-I")
        .arg(root.join("target/generated"))
        .arg(src)
        .arg("-o")
        .arg(out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-Wl,--disable-new-dtags")
        .args(["-lblazen_cabi", "-lpthread", "-lm", "-ldl"]);
    sh(&mut cmd).with_context(|| format!("compiling {} with {cc}", src.display()))
}

/// `tests/<dir>/test_*.<ext>` in name order.
pub fn suites(root: &Path, dir: &str, ext: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("tests").join(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == ext)
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_"))
        })
        .collect();
    v.sort();
    Ok(v)
}
