//! Building the library and compiling C and C++ consumers against it:
//! shared by the test, demo, bench and abi tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use blazen_cabi_codegen::Surface;

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

/// Where cargo builds the library for `surface`: the workspace's target
/// directory for the default surface, `target/surface-v0.6` for the other.
/// A cdylib built with other features would overwrite the default one in
/// place (its file name has no hash), so each surface has its own.
pub fn target_dir(root: &Path, surface: Surface) -> PathBuf {
    match surface.feature() {
        None => root.join("target"),
        Some(_) => root
            .join("target")
            .join(format!("surface-{}", surface.name())),
    }
}

/// The committed header directory of `surface`.
pub fn include_dir(root: &Path, surface: Surface) -> PathBuf {
    let header = crate::header::header_path(surface);
    root.join(header)
        .parent()
        .expect("a header has a folder")
        .to_path_buf()
}

/// Where the generated C test cases of `surface` go.
pub fn generated_dir(root: &Path, surface: Surface) -> PathBuf {
    target_dir(root, surface).join("generated")
}

/// Builds the default (0.5.x surface) library; returns its directory.
pub fn build_library(root: &Path, release: bool) -> Result<PathBuf> {
    build_surface(root, release, Surface::V0_5)
}

/// Builds the library for `surface`; returns its directory.
pub fn build_surface(root: &Path, release: bool, surface: Surface) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "-p", "blazen-cabi"]);
    if release {
        cmd.arg("--release");
    }
    let target = target_dir(root, surface);
    if let Some(feature) = surface.feature() {
        cmd.args(["--features", feature])
            .env("CARGO_TARGET_DIR", &target);
    }
    sh(&mut cmd)?;
    let dir = target.join(if release { "release" } else { "debug" });
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
    compile_for(root, Surface::V0_5, cc, src, lib, out, extra)
}

/// Compiles one consumer program against the header of `surface` and the
/// cdylib in `lib`.
pub fn compile_for(
    root: &Path,
    surface: Surface,
    cc: &str,
    src: &Path,
    lib: &Path,
    out: &Path,
    extra: &[&str],
) -> Result<()> {
    let mut cmd = Command::new(cc);
    cmd.args(extra)
        .arg("-I")
        .arg(include_dir(root, surface))
        .arg("-I")
        .arg(root.join("tests/c"))
        .arg("-I")
        .arg(generated_dir(root, surface))
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
