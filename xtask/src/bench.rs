//! `cargo xtask bench`: the benchmarks (bench/).

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::cc::{build_library, compile, need};
use crate::{cargo, sh};

/// `cargo xtask bench [e2e | http-cost] [--runs N] [--repeats R]`: release
/// builds, the C driver at -O2, then the side-by-side run (see
/// bench/src/main.rs); the arguments after `bench` go to it (`e2e`: only
/// the end-to-end section, merged into the existing report;
/// `--runs`/`--repeats` shrink that section for a smoke run; `http-cost`:
/// only the submit rate with the HTTP side off and on, scraped).
pub fn bench(root: &Path) -> Result<()> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    need("cc")?;
    let lib = build_library(root, true)?;
    sh(cargo().args(["build", "--release", "-p", "blazen-cabi-bench"]))?;
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let driver = dir.join("bench_c");
    compile(
        root,
        "cc",
        &root.join("bench/bench.c"),
        &lib,
        &driver,
        &["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"],
    )?;
    // `cargo run` puts target/debug/deps on LD_LIBRARY_PATH, which would win
    // over the driver's RUNPATH and load the debug library.
    sh(Command::new(lib.join("blazen-cabi-bench"))
        .env_remove("LD_LIBRARY_PATH")
        .arg(&driver)
        .arg(dir.join("report.json"))
        .args(&args))
}
