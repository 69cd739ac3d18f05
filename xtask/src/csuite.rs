//! `cargo xtask test` and `cargo xtask demo`: build the library, then
//! compile and run the C, C++ (and Ruby) consumers against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, sh};

/// Compilers every C consumer is built with.
const C_COMPILERS: [&str; 2] = ["gcc", "clang"];

fn need(tool: &str) -> Result<()> {
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
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" }))
}

/// Compiles one consumer program against include/ and the cdylib in `lib`.
fn compile(
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
fn suites(root: &Path, dir: &str, ext: &str) -> Result<Vec<PathBuf>> {
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

/// The header on its own compiles warning-free as C99 and C++11.
fn header_compiles(root: &Path, lib: &Path, bin: &Path) -> Result<()> {
    let strict = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];
    for cc in C_COMPILERS {
        let out = bin.join(format!("header_c99_{cc}"));
        compile(
            root,
            cc,
            &root.join("tests/c/header_c99.c"),
            lib,
            &out,
            &strict,
        )?;
        sh(&mut Command::new(&out))?;
    }
    let out = bin.join("header_cpp");
    compile(
        root,
        "g++",
        &root.join("tests/cpp/header_cpp.cpp"),
        lib,
        &out,
        &["-std=c++11", "-Wall", "-Wextra", "-Werror"],
    )?;
    println!("== C++ consumer (g++ -std=c++11)");
    sh(&mut Command::new(&out))?;
    println!("header: compiles cleanly with gcc and clang (C99, pedantic) and g++ (C++11)");
    Ok(())
}

/// Valgrind's memcheck: any memory error, or memory definitely or
/// indirectly lost, fails the run.
const MEMCHECK: [&str; 5] = [
    "--error-exitcode=3",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite,indirect",
    "--show-leak-kinds=definite,indirect",
    "--quiet",
];

/// Fresh throw-away certificates for the mutual-TLS tests.
fn make_certs(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/test-certs");
    sh(Command::new("bash")
        .arg(root.join("tests/tls/make-certs.sh"))
        .arg(&dir))?;
    Ok(dir)
}

fn c_suites(root: &Path, lib: &Path, bin: &Path) -> Result<()> {
    let certs = make_certs(root)?;
    let (cases, n) = crate::adversarial::generate(root)?;
    println!(
        "adversarial: {n} cases generated from the stub table into {}",
        cases.display()
    );
    let flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"];
    let mut failed = Vec::new();
    for src in suites(root, "c", "c")? {
        let name = src.file_stem().unwrap().to_string_lossy().to_string();
        for cc in C_COMPILERS {
            let out = bin.join(format!("{name}_{cc}"));
            compile(root, cc, &src, lib, &out, &flags)?;
            println!("== C suite {name} ({cc})");
            let status = Command::new(&out)
                .env("BLAZEN_TEST_CERTS", &certs)
                .current_dir(root)
                .status()?;
            if !status.success() {
                failed.push(format!("{name} ({cc})"));
            }
        }
        println!("== C suite {name} (gcc) under valgrind memcheck");
        let status = Command::new("valgrind")
            .args(MEMCHECK)
            .arg(bin.join(format!("{name}_gcc")))
            .env("BLAZEN_TEST_CERTS", &certs)
            .env("BLAZEN_UNDER_TOOL", "valgrind")
            .current_dir(root)
            .status()?;
        if !status.success() {
            failed.push(format!("{name} (valgrind, exit {status})"));
        }
        println!("== C suite {name} (clang, AddressSanitizer + LeakSanitizer)");
        let out = bin.join(format!("{name}_asan"));
        let asan = [
            &flags[..],
            &["-fsanitize=address", "-fno-omit-frame-pointer"],
        ]
        .concat();
        compile(root, "clang", &src, lib, &out, &asan)?;
        let status = Command::new(&out)
            .env("ASAN_OPTIONS", "detect_leaks=1")
            .env("BLAZEN_TEST_CERTS", &certs)
            .env("BLAZEN_UNDER_TOOL", "asan")
            .current_dir(root)
            .status()?;
        if !status.success() {
            failed.push(format!("{name} (ASan/LSan, exit {status})"));
        }
    }
    if !failed.is_empty() {
        bail!("C suites failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs the reference-surface check from ../shared.
pub fn abi_check(root: &Path) -> Result<()> {
    let lib = build_library(root, false)?;
    run_abi_check(root, &lib)
}

fn run_abi_check(root: &Path, lib: &Path) -> Result<()> {
    let tool = root.join("../shared/tools/abi-check");
    if !tool.exists() {
        bail!("{} not found", tool.display());
    }
    sh(Command::new("python3")
        .arg(&tool)
        .arg(root.join("include/blazen.h"))
        .arg(lib.join("libblazen_cabi.so")))
}

pub fn test_all(root: &Path) -> Result<()> {
    sh(Command::new("bash").arg(root.join(".ci/install-deps")))?;
    for tool in ["gcc", "clang", "g++", "valgrind"] {
        need(tool)?;
    }
    println!("== cargo test");
    sh(cargo().args(["test", "--workspace"]))?;
    crate::header::run(root, true)?;
    let lib = build_library(root, false)?;
    let bin = root.join("target/consumers");
    std::fs::create_dir_all(&bin)?;
    header_compiles(root, &lib, &bin)?;
    c_suites(root, &lib, &bin)?;
    println!("== abi-check");
    run_abi_check(root, &lib)?;
    crate::ruby::run(root, true)?;
    ruby_suite(root)?;
    println!("xtask test: all suites passed");
    Ok(())
}

/// The Ruby suites, through the gem as a user installs it: `cargo xtask
/// gem`, installed into an empty GEM_HOME, then the gem's own minitest
/// suite and the consumer suite (tests/ruby) run from outside the
/// repository against it. Outside CI a machine without Ruby skips them
/// with a note; under CI a missing Ruby or ffi gem is a failure.
fn ruby_suite(root: &Path) -> Result<()> {
    let has_ffi = Command::new("ruby")
        .args(["-e", "require 'ffi'; require 'minitest'"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_ffi {
        if std::env::var_os("CI").is_some() {
            bail!("ruby with the ffi and minitest gems is required under CI");
        }
        println!("== Ruby suites SKIPPED: ruby, ruby-ffi or ruby-minitest is not installed");
        return Ok(());
    }
    let gem = crate::gem::build(root)?;
    let home = root.join("target/gem-home");
    crate::gem::install(&gem, &home)?;
    let outside = std::env::temp_dir().join("blazen-gem-consumer");
    std::fs::create_dir_all(&outside)?;
    let certs = root.join("target/test-certs");
    for (name, script) in [
        (
            "the gem's suite",
            root.join("bindings/ruby/test/test_control_plane.rb"),
        ),
        ("consumer suite", root.join("tests/ruby/test_blazen.rb")),
    ] {
        println!("== Ruby {name} (installed gem, ffi, minitest)");
        sh(Command::new("ruby")
            .arg(&script)
            .env("GEM_HOME", &home)
            .env_remove("BLAZEN_CABI_LIB")
            .env_remove("RUBYLIB")
            .env("BLAZEN_TEST_CERTS", &certs)
            .current_dir(&outside))?;
    }
    Ok(())
}

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

/// `cargo xtask bench`: release builds, the C driver at -O2, then the
/// side-by-side run (see bench/src/main.rs).
pub fn bench(root: &Path) -> Result<()> {
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
        .arg(dir.join("report.json")))
}
