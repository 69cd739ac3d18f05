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

/// C suites that run alone, never beside another suite binary, and why.
/// Every suite binds loopback port 0 (the kernel's pick), so suites running
/// together never ask for the same port, and none uses a fixed port (other
/// than ports 1 and 9, where nothing listens), a fixed file or a shared
/// server. But a port a suite has released can be the kernel's next pick
/// for another suite: the suites that need a released port to stay closed
/// or free for them run alone, and so do the ones that measure.
const RUN_ALONE: [(&str, &str); 7] = [
    (
        "client",
        "expects the port of the control plane it shut down to refuse a connect",
    ),
    (
        "errors",
        "expects the port of a control plane it shut down to refuse its worker",
    ),
    (
        "faults",
        "restarts a control plane on the address of one it shut down",
    ),
    (
        "load",
        "measures throughput and checks resident memory after 10,000 runs",
    ),
    (
        "scale",
        "holds 100,000 pending futures and measures memory per future",
    ),
    (
        "store",
        "starts redis-server on a port it found free and then released, restarts redis and control \
         planes on ports they released, expects a released port to stay closed, and measures throughput",
    ),
    (
        "visible",
        "expects the port of a control plane it freed to refuse a client's call",
    ),
];

/// Why the C suite `name` (`store`) runs alone, if it does.
fn runs_alone(name: &str) -> Option<&'static str> {
    RUN_ALONE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// One C suite binary to build and run with one tool.
struct Unit {
    /// `test_client` (with the surface's tag).
    name: String,
    src: PathBuf,
    tool: Tool,
    /// Runs with no other unit beside it ([`RUN_ALONE`]).
    alone: bool,
    /// The unit whose build this one runs (valgrind runs the gcc build).
    after: Option<usize>,
}

/// What running a unit gave.
struct Outcome {
    /// The unit's output (stdout and stderr, in order) when it was
    /// buffered; empty when it went straight to the terminal.
    output: Vec<u8>,
    /// The build or run error, or the failed status.
    failure: Option<String>,
    /// A build error: the run stops.
    build_error: Option<anyhow::Error>,
    secs: f64,
}

/// How a unit is built and run.
struct CRun<'a> {
    root: &'a Path,
    lib: &'a Path,
    bin: &'a Path,
    surface: Surface,
    certs: &'a Path,
    case: Option<&'a str>,
    /// Each unit's output goes to a file and is printed whole at its end.
    buffered: bool,
    /// The gcc build is made by its own unit (valgrind reuses it).
    gcc_selected: bool,
}

impl CRun<'_> {
    fn run(&self, unit: &Unit) -> Outcome {
        let started = std::time::Instant::now();
        let mut outcome = Outcome {
            output: Vec::new(),
            failure: None,
            build_error: None,
            secs: 0.0,
        };
        let flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"];
        let asan = [
            &flags[..],
            &["-fsanitize=address", "-fno-omit-frame-pointer"],
        ]
        .concat();
        let name = &unit.name;
        let tool = unit.tool;
        // valgrind runs the gcc build.
        let (cc, out, args): (&str, PathBuf, &[&str]) = match tool {
            Tool::Gcc | Tool::Valgrind => ("gcc", self.bin.join(format!("{name}_gcc")), &flags),
            Tool::Clang => ("clang", self.bin.join(format!("{name}_clang")), &flags),
            Tool::Asan => ("clang", self.bin.join(format!("{name}_asan")), &asan),
        };
        let label = match tool {
            Tool::Gcc | Tool::Clang => format!("({cc})"),
            Tool::Valgrind => "(gcc) under valgrind memcheck".to_string(),
            Tool::Asan => "(clang, AddressSanitizer + LeakSanitizer)".to_string(),
        };
        let fresh = tool != Tool::Valgrind || !self.gcc_selected;
        if fresh {
            if let Err(e) =
                compile_for(self.root, self.surface, cc, &unit.src, self.lib, &out, args)
            {
                outcome.failure = Some(format!("{name} ({}, build)", tool.name()));
                outcome.build_error = Some(e);
                return outcome;
            }
        }
        let header = format!("== C suite {name} {label}");
        let mut cmd = if tool == Tool::Valgrind {
            let mut v = Command::new("valgrind");
            v.args(MEMCHECK).arg(&out);
            v
        } else {
            Command::new(&out)
        };
        cmd.env("BLAZEN_TEST_CERTS", self.certs)
            .current_dir(self.root);
        match self.case {
            Some(case) => cmd.env("BLAZEN_TEST_CASE", case),
            None => cmd.env_remove("BLAZEN_TEST_CASE"),
        };
        match tool {
            Tool::Valgrind => cmd.env("BLAZEN_UNDER_TOOL", "valgrind"),
            Tool::Asan => cmd
                .env("BLAZEN_UNDER_TOOL", "asan")
                .env("ASAN_OPTIONS", "detect_leaks=1"),
            Tool::Gcc | Tool::Clang => &mut cmd,
        };
        // A file of this run's own: another `cargo xtask test` may be
        // running the same suite in this tree.
        let log = std::env::temp_dir().join(format!(
            "blazen-xtask-{}-{name}_{}.log",
            std::process::id(),
            tool.name()
        ));
        let status = if self.buffered {
            // stdout and stderr into one file, in the order written.
            let file = std::fs::File::create(&log);
            let status = file.and_then(|file| {
                cmd.stdout(file.try_clone()?).stderr(file);
                cmd.status()
            });
            let secs = started.elapsed().as_secs_f64();
            outcome.output = format!("{header} [{secs:.1} s]\n").into_bytes();
            outcome
                .output
                .extend(std::fs::read(&log).unwrap_or_default());
            let _ = std::fs::remove_file(&log);
            status
        } else {
            println!("{header}");
            cmd.status()
        };
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => outcome.failure = Some(format!("{name} ({}, {s})", tool.name())),
            Err(e) => outcome.failure = Some(format!("{name} ({}, {e})", tool.name())),
        }
        outcome.secs = started.elapsed().as_secs_f64();
        outcome
    }
}

/// The order units start in when several run at once: [`RUN_ALONE`] ones
/// last, each alone; the others longest first by their last run's time
/// (target/consumers/durations), so that a long suite does not start
/// last and run on its own at the end.
fn start_order(units: &[Unit], durations: &std::collections::HashMap<String, f64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..units.len()).collect();
    let key = |u: &Unit| format!("{} {}", u.name, u.tool.name());
    order.sort_by(|&a, &b| {
        let (ua, ub) = (&units[a], &units[b]);
        let (da, db) = (
            durations.get(&key(ua)).copied().unwrap_or(0.0),
            durations.get(&key(ub)).copied().unwrap_or(0.0),
        );
        ua.alone
            .cmp(&ub.alone)
            .then(db.total_cmp(&da))
            .then(a.cmp(&b))
    });
    order
}

fn read_durations(path: &Path) -> std::collections::HashMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn write_durations(path: &Path, durations: &std::collections::HashMap<String, f64>) {
    let mut lines: Vec<String> = durations
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}"))
        .collect();
    lines.sort();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, lines.join("\n") + "\n").is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn c_suites(root: &Path, lib: &Path, bin: &Path, surface: Surface, sel: &Selection) -> Result<()> {
    let certs = make_certs(root)?;
    let (cases, n) = crate::adversarial::generate(root, surface)?;
    println!(
        "adversarial: {n} cases generated from the stub table into {}",
        cases.display()
    );
    let mut units: Vec<Unit> = Vec::new();
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
        let alone = runs_alone(&crate::select::c_name(src)).is_some();
        let gcc = units.len();
        for tool in &sel.tools {
            let after = (*tool == Tool::Valgrind && sel.tools.contains(&Tool::Gcc)).then_some(gcc);
            units.push(Unit {
                name: name.clone(),
                src: src.clone(),
                tool: *tool,
                alone,
                after,
            });
        }
    }
    let jobs = |tool: Tool| sel.jobs(tool);
    let max_jobs = sel.tools.iter().map(|t| jobs(*t)).max().unwrap_or(1);
    let parallel = units.len() > 1 && max_jobs > 1;
    let run = CRun {
        root,
        lib,
        bin,
        surface,
        certs: &certs,
        case: sel.case.as_deref(),
        buffered: parallel,
        gcc_selected: sel.tools.contains(&Tool::Gcc),
    };
    if parallel {
        let alone: Vec<&str> = RUN_ALONE
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| sel.has(n))
            .collect();
        println!(
            "C suites: {} runs, up to {} at once ({}); {} run alone{}",
            units.len(),
            max_jobs,
            sel.tools
                .iter()
                .map(|t| format!("{} {}", t.name(), jobs(*t)))
                .collect::<Vec<_>>()
                .join(", "),
            alone.len(),
            if alone.is_empty() {
                String::new()
            } else {
                format!(" ({})", alone.join(", "))
            }
        );
    }
    let durations_path = bin.join("durations");
    let mut durations = read_durations(&durations_path);
    let order = if parallel {
        start_order(&units, &durations)
    } else {
        (0..units.len()).collect()
    };

    let mut failed: Vec<(usize, String)> = Vec::new();
    let mut build_error = None;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Outcome)>();
        let mut pending: Vec<usize> = order;
        let mut running: Vec<usize> = Vec::new();
        let mut done = vec![false; units.len()];
        loop {
            // Start what may start now, in order.
            while build_error.is_none() {
                let alone_running = running.iter().any(|&i| units[i].alone);
                let others_pending = parallel && pending.iter().any(|&i| !units[i].alone);
                let next = pending.iter().position(|&i| {
                    let u = &units[i];
                    let ready = u.after.is_none_or(|a| done[a]);
                    let same_tool = running.iter().filter(|&&r| units[r].tool == u.tool).count();
                    ready
                        && !alone_running
                        && if u.alone {
                            // When the others are done (they run first).
                            running.is_empty() && !others_pending
                        } else {
                            running.len() < max_jobs && same_tool < jobs(u.tool)
                        }
                });
                let Some(p) = next else { break };
                let i = pending.remove(p);
                running.push(i);
                let tx = tx.clone();
                let (run, unit) = (&run, &units[i]);
                scope.spawn(move || {
                    let _ = tx.send((i, run.run(unit)));
                });
            }
            if running.is_empty() {
                break;
            }
            let Ok((i, outcome)) = rx.recv() else { break };
            running.retain(|&r| r != i);
            done[i] = true;
            {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&outcome.output);
                let _ = out.flush();
            }
            let u = &units[i];
            if outcome.build_error.is_none() && sel.case.is_none() {
                durations.insert(format!("{} {}", u.name, u.tool.name()), outcome.secs);
            }
            if let Some(f) = outcome.failure {
                failed.push((i, f));
            }
            if let Some(e) = outcome.build_error {
                build_error.get_or_insert(e);
            }
        }
    });
    write_durations(&durations_path, &durations);
    if let Some(e) = build_error {
        return Err(e);
    }
    if !failed.is_empty() {
        failed.sort();
        let names: Vec<String> = failed.into_iter().map(|(_, f)| f).collect();
        bail!("C suites failed: {}", names.join(", "));
    }
    Ok(())
}

/// `cargo xtask test [SUITE...] [--tool TOOL]... [--surface v0.6] [--case
/// NAME[,NAME]] [--jobs N]`: every suite without arguments; otherwise the
/// named ones (C suites by name, e.g. `client` for tests/c/test_client.c,
/// and `rust`, `header`, `abi`, `consumers`, `ruby`), the C ones with the
/// named tools only (all four by default), on the named surface's build,
/// only their cases that `--case` names (BLAZEN_TEST_CASE), `--jobs` of
/// them at once (2 on two or more cores; [`RUN_ALONE`] ones alone).
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
    if sel.has("chaos") {
        crate::chaos::short(root)?;
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
    println!("== chaos (short run, alone: it restarts its control plane and Redis on the ports they had)");
    crate::chaos::short(root)?;
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
            "HTTP side suite (metrics, Prometheus, Chromium)",
            &root.join("tests/ruby/test_http.rb"),
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
