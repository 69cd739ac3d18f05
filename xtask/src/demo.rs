//! `cargo xtask demo`: examples/demo.c on an embedded control plane.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::cc::{build_library, compile, need};
use crate::sh;

pub fn demo(root: &Path) -> Result<()> {
    need("cc")?;
    crate::header::run(root, true)?;
    let lib = build_library(root, false)?;
    let bin = root.join("target/consumers");
    std::fs::create_dir_all(&bin)?;
    let out = bin.join("demo");
    compile(
        root,
        "cc",
        &root.join("examples/demo.c"),
        &lib,
        &out,
        &["-std=c11", "-Wall", "-Wextra", "-pthread"],
    )?;
    sh(&mut Command::new(&out))
}
