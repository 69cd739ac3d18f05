//! Project tasks: `cargo xtask <header [--check] | ruby [--check] | gem
//! | test [SUITE...] [--tool gcc|clang|valgrind|asan]... [--surface v0.6]
//!   [--case NAME[,NAME]] [--jobs N] | demo | bench [e2e|http-cost] [--runs N]
//!   [--repeats R] [--perf] | abi | adversarial | consumers
//! | install --prefix DIR [--strip]>`.

mod abi;
mod adversarial;
mod bench;
mod cc;
mod chaos;
mod consumers;
mod demo;
mod gem;
mod header;
mod install;
mod ruby;
mod select;
mod test;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    let invoked_from = std::env::current_dir()?;
    std::env::set_current_dir(&root)?;
    link_protoc(&root)?;
    match args.first().map(String::as_str) {
        Some("header") => header::run(&root, args.iter().any(|a| a == "--check")),
        Some("ruby") => ruby::run(&root, args.iter().any(|a| a == "--check")),
        Some("gem") => gem::build(&root).map(drop),
        Some("test") => test::run(&root, &args[1..]),
        Some("demo") => demo::demo(&root),
        Some("bench") => bench::bench(&root),
        Some("chaos") => chaos::run(&root, &args[1..]),
        Some("abi") => abi::abi_check(&root, surface_arg(&args)?),
        Some("consumers") => consumers::run(&root),
        Some("install") => install::run(&root, &invoked_from, &args[1..]),
        Some("adversarial") => {
            adversarial::generate(&root, surface_arg(&args)?).map(|(path, n)| {
                println!("adversarial: {n} cases in {}", path.display());
            })
        }
        _ => {
            bail!("usage: cargo xtask <header [--check] | ruby [--check] | gem | test [SUITE...] [--tool gcc|clang|valgrind|asan]... [--surface v0.6] [--case NAME[,NAME]] [--jobs N] | demo | bench [e2e|http-cost] [--runs N] [--repeats R] [--perf] | chaos [--minutes N] [--seed S] [--rate R] [--release] | abi | adversarial | consumers | install --prefix DIR [--strip]>")
        }
    }
}

/// `--surface v0.6` (or `v0.5`, the default) from the command line.
pub fn surface_arg(args: &[String]) -> Result<blazen_cabi_codegen::Surface> {
    let Some(i) = args.iter().position(|a| a == "--surface") else {
        return Ok(blazen_cabi_codegen::Surface::V0_5);
    };
    let name = args.get(i + 1).map(String::as_str).unwrap_or_default();
    blazen_cabi_codegen::Surface::parse(name)
        .with_context(|| format!("--surface {name:?}: expected v0.5 or v0.6"))
}

/// The workspace root (the parent of this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Links the protoc shipped by `protoc-bin-vendored` to target/tools/protoc,
/// where `.cargo/config.toml` points `PROTOC`, so the control plane's
/// build script finds it without a system install.
fn link_protoc(root: &Path) -> Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().context("locating vendored protoc")?;
    let dir = root.join("target/tools");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("protoc");
    if std::fs::read_link(&link).ok().as_deref() != Some(protoc.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&protoc, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// Runs a command, failing with its name when it fails.
pub fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// `cargo` with the same toolchain that runs this xtask.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Writes a generated file (`cargo xtask TASK`), or with `check` fails when
/// the committed copy differs from what the generator makes now.
pub fn write_or_check(root: &Path, rel: &str, fresh: &str, check: bool, task: &str) -> Result<()> {
    let path = root.join(rel);
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            bail!("{rel} is stale: run `cargo xtask {task}` and commit it");
        }
        println!("{task}: {rel} is up to date");
    } else {
        std::fs::create_dir_all(path.parent().context("a file has a folder")?)?;
        std::fs::write(&path, fresh)?;
        println!("{task}: wrote {rel}");
    }
    Ok(())
}
