//! `cargo xtask test`: every suite, in the order a failure is cheapest to
//! find: Rust tests, header checks, the C suites (gcc, clang, valgrind,
//! ASan+LSan), abi-check, then the Ruby suites through the installed gem.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};
use blazen_cabi_codegen::Surface;

use crate::cc::{build_library, build_surface, compile_for, need, suites, C_COMPILERS};
use crate::{cargo, sh};

/// The header of `surface` on its own compiles warning-free as C99 and
/// C++11.
fn header_compiles(root: &Path, lib: &Path, bin: &Path, surface: Surface) -> Result<()> {
    let strict = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];
    let tag = tag(surface);
    for cc in C_COMPILERS {
        let out = bin.join(format!("header_c99_{cc}{tag}"));
        compile_for(
            root,
            surface,
            cc,
            &root.join("tests/c/header_c99.c"),
            lib,
            &out,
            &strict,
        )?;
        sh(&mut Command::new(&out))?;
    }
    let out = bin.join(format!("header_cpp{tag}"));
    compile_for(
        root,
        surface,
        "g++",
        &root.join("tests/cpp/header_cpp.cpp"),
        lib,
        &out,
        &["-std=c++11", "-Wall", "-Wextra", "-Werror"],
    )?;
    println!("== C++ consumer (g++ -std=c++11)");
    sh(&mut Command::new(&out))?;
    println!(
        "header ({}): compiles cleanly with gcc and clang (C99, pedantic) and g++ (C++11)",
        surface.name()
    );
    Ok(())
}

/// The suffix of a binary built for `surface` ("" for the default).
fn tag(surface: Surface) -> String {
    match surface.feature() {
        None => String::new(),
        Some(_) => format!("_{}", surface.name()),
    }
}

/// A C suite written for every surface (it says so in its text, and
/// spells the calls whose shape differs with harness.h's `T_TOKEN`) runs
/// on every build; the others on the default build only.
fn runs_on(src: &Path, surface: Surface) -> bool {
    surface == Surface::V0_5
        || std::fs::read_to_string(src).is_ok_and(|t| t.contains("runs on every surface"))
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

fn c_suites(root: &Path, lib: &Path, bin: &Path, surface: Surface) -> Result<()> {
    let certs = make_certs(root)?;
    let (cases, n) = crate::adversarial::generate(root, surface)?;
    println!(
        "adversarial: {n} cases generated from the stub table into {}",
        cases.display()
    );
    let flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"];
    let mut failed = Vec::new();
    let sources = suites(root, "c", "c")?;
    for src in sources.iter().filter(|s| runs_on(s, surface)) {
        let name = format!(
            "{}{}",
            src.file_stem().unwrap().to_string_lossy(),
            tag(surface)
        );
        for cc in C_COMPILERS {
            let out = bin.join(format!("{name}_{cc}"));
            compile_for(root, surface, cc, src, lib, &out, &flags)?;
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
        compile_for(root, surface, "clang", src, lib, &out, &asan)?;
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

pub fn test_all(root: &Path) -> Result<()> {
    sh(Command::new("bash").arg(root.join(".ci/install-deps")))?;
    for tool in [
        "gcc",
        "clang",
        "g++",
        "valgrind",
        "cmake",
        "pkg-config",
        "redis-server",
    ] {
        need(tool)?;
    }
    println!("== cargo test");
    sh(cargo().args(["test", "--workspace"]))?;
    crate::header::run(root, true)?;
    let oldcp = build_old_control_plane(root)?;
    // Inherited by every suite; test_wire runs it.
    std::env::set_var("BLAZEN_OLDCP", &oldcp);
    let lib = build_library(root, false)?;
    let bin = root.join("target/consumers");
    std::fs::create_dir_all(&bin)?;
    header_compiles(root, &lib, &bin, Surface::V0_5)?;
    c_suites(root, &lib, &bin, Surface::V0_5)?;
    println!("== abi-check");
    crate::abi::run_abi_check(root, &lib, Surface::V0_5)?;
    println!("== the 0.6.x surface build (feature surface-v0_6)");
    let lib06 = build_surface(root, false, Surface::V0_6)?;
    header_compiles(root, &lib06, &bin, Surface::V0_6)?;
    c_suites(root, &lib06, &bin, Surface::V0_6)?;
    println!("== abi-check --surface v0.6.74");
    crate::abi::run_abi_check(root, &lib06, Surface::V0_6)?;
    println!("== consumers of the installed library (pkg-config, CMake)");
    crate::consumers::run(root)?;
    crate::ruby::run(root, true)?;
    ruby_suite(root)?;
    println!("xtask test: all suites passed");
    Ok(())
}

/// Builds tests/oldcp, a blazen-controlplane 0.6.76 control plane (an
/// older wire) for test_wire, in a target directory of its own; returns
/// the binary.
fn build_old_control_plane(root: &Path) -> Result<PathBuf> {
    println!("== building the 0.6.76 control plane of tests/oldcp");
    let target = root.join("target/oldcp");
    sh(cargo()
        .args(["build", "--quiet", "--locked"])
        .current_dir(root.join("tests/oldcp"))
        .env("CARGO_TARGET_DIR", &target)
        .env("PROTOC", root.join("target/tools/protoc")))?;
    Ok(target.join("debug/blazen-oldcp"))
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
    // The last two run the 0.6.x build, loaded by the installed gem in
    // place of its own library: the published gems' ownership again, and
    // the gem's own suite (its v0.6.x API runs on either build).
    let lib06 = crate::cc::target_dir(root, Surface::V0_6).join("debug/libblazen_cabi.so");
    let gem_suite = root.join("bindings/ruby/test/test_control_plane.rb");
    let gc_order = root.join("tests/ruby/test_gc_order.rb");
    for (name, script, lib) in [
        ("the gem's suite", &gem_suite, None),
        (
            "consumer suite",
            &root.join("tests/ruby/test_blazen.rb"),
            None,
        ),
        (
            "GC-order suite (the published gems' ownership)",
            &gc_order,
            None,
        ),
        ("GC-order suite on the 0.6.x build", &gc_order, Some(&lib06)),
        (
            "the gem's suite on the 0.6.x build",
            &gem_suite,
            Some(&lib06),
        ),
    ] {
        println!("== Ruby {name} (installed gem, ffi, minitest)");
        let mut cmd = Command::new("ruby");
        cmd.arg(script)
            .env("GEM_HOME", &home)
            .env_remove("BLAZEN_CABI_LIB")
            .env_remove("RUBYLIB")
            .env("BLAZEN_TEST_CERTS", &certs)
            .current_dir(&outside);
        if let Some(lib) = lib {
            cmd.env("BLAZEN_CABI_LIB", lib);
        }
        sh(&mut cmd)?;
    }
    Ok(())
}
