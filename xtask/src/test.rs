//! `cargo xtask test`: every suite, in the order a failure is cheapest to
//! find: Rust tests, header checks, the C suites (gcc, clang, valgrind,
//! ASan+LSan), abi-check, then the Ruby suites through the installed gem.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};
use blazen_cabi_codegen::Surface;

use crate::cc::{build_library, build_surface, compile_for, need, suites, C_COMPILERS};
use crate::select::{Selection, Tool};
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

fn c_suites(root: &Path, lib: &Path, bin: &Path, surface: Surface, sel: &Selection) -> Result<()> {
    let certs = make_certs(root)?;
    let (cases, n) = crate::adversarial::generate(root, surface)?;
    println!(
        "adversarial: {n} cases generated from the stub table into {}",
        cases.display()
    );
    let flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"];
    let asan = [
        &flags[..],
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
    ]
    .concat();
    let mut failed = Vec::new();
    let sources = suites(root, "c", "c")?;
    for src in sources
        .iter()
        .filter(|s| runs_on(s, surface) && sel.has_c(s))
    {
        let name = format!(
            "{}{}",
            src.file_stem().unwrap().to_string_lossy(),
            tag(surface)
        );
        for tool in &sel.tools {
            // valgrind runs the gcc build.
            let (cc, out, args): (&str, PathBuf, &[&str]) = match tool {
                Tool::Gcc | Tool::Valgrind => ("gcc", bin.join(format!("{name}_gcc")), &flags),
                Tool::Clang => ("clang", bin.join(format!("{name}_clang")), &flags),
                Tool::Asan => ("clang", bin.join(format!("{name}_asan")), &asan),
            };
            let label = match tool {
                Tool::Gcc | Tool::Clang => format!("({cc})"),
                Tool::Valgrind => "(gcc) under valgrind memcheck".to_string(),
                Tool::Asan => "(clang, AddressSanitizer + LeakSanitizer)".to_string(),
            };
            let fresh = *tool != Tool::Valgrind || !sel.tools.contains(&Tool::Gcc);
            if fresh {
                compile_for(root, surface, cc, src, lib, &out, args)?;
            }
            println!("== C suite {name} {label}");
            let mut cmd = if *tool == Tool::Valgrind {
                let mut v = Command::new("valgrind");
                v.args(MEMCHECK).arg(&out);
                v
            } else {
                Command::new(&out)
            };
            cmd.env("BLAZEN_TEST_CERTS", &certs).current_dir(root);
            match tool {
                Tool::Valgrind => cmd.env("BLAZEN_UNDER_TOOL", "valgrind"),
                Tool::Asan => cmd
                    .env("BLAZEN_UNDER_TOOL", "asan")
                    .env("ASAN_OPTIONS", "detect_leaks=1"),
                Tool::Gcc | Tool::Clang => &mut cmd,
            };
            let status = cmd.status()?;
            if !status.success() {
                failed.push(format!("{name} ({}, {status})", tool.name()));
            }
        }
    }
    if !failed.is_empty() {
        bail!("C suites failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo xtask test [SUITE...] [--tool TOOL]... [--surface v0.6]`: every
/// suite without arguments; otherwise the named ones (C suites by name,
/// e.g. `client` for tests/c/test_client.c, and `rust`, `header`, `abi`,
/// `consumers`, `ruby`), the C ones with the named tools only (all four
/// by default), on the named surface's build.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let started = std::time::Instant::now();
    let result = if args.is_empty() {
        test_all(root)
    } else {
        test_selected(root, &Selection::parse(root, args)?)
    };
    println!("xtask test: {:.0} s", started.elapsed().as_secs_f64());
    result
}

fn test_selected(root: &Path, sel: &Selection) -> Result<()> {
    let surface = sel.surface;
    if sel.has("rust") {
        println!("== cargo test");
        sh(cargo().args(["test", "--workspace"]))?;
    }
    if sel.has("wire") {
        std::env::set_var("BLAZEN_OLDCP", build_old_control_plane(root)?);
    }
    let lib = build_surface(root, false, surface)?;
    let bin = root.join("target/consumers");
    std::fs::create_dir_all(&bin)?;
    if sel.has("header") {
        crate::header::run(root, true)?;
        header_compiles(root, &lib, &bin, surface)?;
    }
    if sel.any_c() {
        c_suites(root, &lib, &bin, surface, sel)?;
    }
    if sel.has("abi") {
        crate::abi::run_abi_check(root, &lib, surface)?;
    }
    if sel.has("consumers") {
        crate::consumers::run(root)?;
    }
    if sel.has("ruby") {
        build_surface(root, false, Surface::V0_6)?;
        crate::ruby::run(root, true)?;
        ruby_suite(root)?;
    }
    println!("xtask test: the selected suites passed");
    Ok(())
}

fn test_all(root: &Path) -> Result<()> {
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
    let every = |surface| Selection::parse(root, &["--surface".into(), surface]);
    c_suites(root, &lib, &bin, Surface::V0_5, &every("v0.5".into())?)?;
    println!("== abi-check");
    crate::abi::run_abi_check(root, &lib, Surface::V0_5)?;
    println!("== the 0.6.x surface build (feature surface-v0_6)");
    let lib06 = build_surface(root, false, Surface::V0_6)?;
    header_compiles(root, &lib06, &bin, Surface::V0_6)?;
    c_suites(root, &lib06, &bin, Surface::V0_6, &every("v0.6".into())?)?;
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
