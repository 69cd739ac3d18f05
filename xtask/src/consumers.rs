//! Consumer tests from outside the repository (a step of `cargo xtask
//! test`): install into a temporary prefix, then build programs in
//! temporary directories the way a user of the installed library would,
//! knowing only pkg-config or CMake, and run each against an embedded
//! control plane.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use blazen_cabi_codegen::Surface;

use crate::header::{crate_version, version_numbers};
use crate::install::{install, soname};

/// A scratch directory removed when dropped (kept when `BLAZEN_KEEP_TMP`
/// is set, to look at a failure).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("blazen-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("BLAZEN_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Counts checks and prints each failure.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn check(&mut self, ok: bool, what: &str) -> bool {
        if ok {
            self.passed += 1;
            println!("  ok   {what}");
        } else {
            self.failed += 1;
            println!("  FAIL {what}");
        }
        ok
    }

    /// Runs a step; an error is one failed check.
    fn step(&mut self, what: &str, f: impl FnOnce(&mut Tally) -> Result<()>) {
        println!("== consumer: {what}");
        if let Err(e) = f(self) {
            self.check(false, &format!("{what}: {e:#}"));
        }
    }
}

fn output(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8(output(cmd)?.stdout)?)
}

/// `pkg-config ARGS blazen-cabi` against the prefix only.
fn pkg_config(pc_dir: &Path, args: &[&str]) -> Result<Vec<String>> {
    let out = stdout(
        Command::new("pkg-config")
            .args(args)
            .arg("blazen-cabi")
            .env("PKG_CONFIG_PATH", pc_dir)
            .env_remove("PKG_CONFIG_LIBDIR"),
    )?;
    Ok(out.split_whitespace().map(str::to_string).collect())
}

/// The NEEDED entries and the SONAME of an ELF file.
fn dynamic(file: &Path) -> Result<(Vec<String>, Option<String>)> {
    let text = stdout(Command::new("readelf").arg("-d").arg(file))?;
    let bracketed = |l: &str| {
        l.split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(v, _)| v.to_string())
    };
    let needed = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(bracketed)
        .collect();
    let soname = text
        .lines()
        .find(|l| l.contains("(SONAME)"))
        .and_then(bracketed);
    Ok((needed, soname))
}

/// `ldd` as the program would load at run time: without the
/// LD_LIBRARY_PATH `cargo run` sets (which points into target/).
fn ldd(exe: &Path) -> Result<String> {
    stdout(Command::new("ldd").arg(exe).env_remove("LD_LIBRARY_PATH"))
}

/// Compiles `demo.c` in `work` into `exe` with `flags` (as a user would).
fn build_demo(work: &Path, exe: &Path, flags: &[String]) -> Result<()> {
    output(
        Command::new("cc")
            .current_dir(work)
            .args(["-std=c11", "-Wall", "-Wextra", "-pthread", "demo.c", "-o"])
            .arg(exe)
            .args(flags),
    )
    .map(drop)
}

/// Runs a built program; passes when it exits 0 and prints `expect`.
fn run_program(t: &mut Tally, exe: &Path, expect: &str) -> Result<()> {
    let out = Command::new(exe).env_remove("LD_LIBRARY_PATH").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.success() && text.contains(expect);
    if !ok {
        print!("{text}{}", String::from_utf8_lossy(&out.stderr));
    }
    t.check(ok, &format!("{} runs ({})", exe.display(), out.status));
    Ok(())
}

pub fn run(root: &Path) -> Result<()> {
    let version = crate_version(root)?;
    let soname = soname(&version)?;
    let scratch = Scratch::new("consumers")?;
    let prefix = scratch.0.join("prefix");
    let mut t = Tally::default();

    t.step("install into a temporary prefix", |t| {
        install(root, &prefix, None, false, Surface::V0_5)?;
        let lib = prefix.join("lib");
        let real = format!("libblazen_cabi.so.{version}");
        for f in [
            "include/blazen.h".to_string(),
            format!("lib/{real}"),
            "lib/libblazen_cabi.a".into(),
            "lib/pkgconfig/blazen-cabi.pc".into(),
            "lib/cmake/BlazenCabi/BlazenCabiConfig.cmake".into(),
            "lib/cmake/BlazenCabi/BlazenCabiConfigVersion.cmake".into(),
        ] {
            t.check(prefix.join(&f).is_file(), &format!("{f} installed"));
        }
        for (link, to) in [
            (soname.as_str(), real.as_str()),
            ("libblazen_cabi.so", soname.as_str()),
        ] {
            let got = std::fs::read_link(lib.join(link)).ok();
            t.check(
                got.as_deref() == Some(Path::new(to)),
                &format!("lib/{link} -> {to} (found {got:?})"),
            );
        }
        let (_, found) = dynamic(&lib.join(&real))?;
        t.check(
            found.as_deref() == Some(soname.as_str()),
            &format!("SONAME of the installed library is {soname} (found {found:?})"),
        );
        Ok(())
    });

    t.step("DESTDIR stages the files for the final prefix", |t| {
        let stage = scratch.0.join("stage");
        let done = install(
            root,
            Path::new("/opt/blazen"),
            Some(&stage),
            false,
            Surface::V0_5,
        )?;
        t.check(
            done.root == stage.join("opt/blazen"),
            "files land under DESTDIR/PREFIX",
        );
        t.check(
            stage
                .join("opt/blazen/lib/pkgconfig/blazen-cabi.pc")
                .is_file()
                && !Path::new("/opt/blazen/lib/pkgconfig/blazen-cabi.pc").exists(),
            "nothing is written outside DESTDIR",
        );
        let pc = std::fs::read_to_string(stage.join("opt/blazen/lib/pkgconfig/blazen-cabi.pc"))?;
        t.check(
            pc.lines().any(|l| l == "prefix=/opt/blazen")
                && !pc.contains(&*stage.to_string_lossy()),
            "the .pc names the final prefix, not the staging directory",
        );
        Ok(())
    });

    let work = scratch.0.join("demo");
    std::fs::create_dir_all(&work)?;
    std::fs::copy(root.join("examples/demo.c"), work.join("demo.c"))?;
    let pc_dir = prefix.join("lib/pkgconfig");

    t.step(
        "demo.c built with `pkg-config --cflags --libs` (shared)",
        |t| {
            let mut flags = pkg_config(&pc_dir, &["--cflags", "--libs"])?;
            let libdir = pkg_config(&pc_dir, &["--variable=libdir"])?.join("");
            let exe = work.join("demo_shared");
            flags.push(format!("-Wl,-rpath,{libdir}"));
            build_demo(&work, &exe, &flags)?;
            let (needed, _) = dynamic(&exe)?;
            t.check(
                needed.contains(&soname),
                &format!("the program needs {soname} (NEEDED {needed:?})"),
            );
            let ldd = ldd(&exe)?;
            let from_prefix = format!("{soname} => {}", prefix.join("lib").join(&soname).display());
            t.check(ldd.contains(&from_prefix), "ldd resolves it in the prefix");
            run_program(t, &exe, "done")
        },
    );

    t.step(
        "demo.c built without an rpath (the README's run-time note)",
        |t| {
            let flags = pkg_config(&pc_dir, &["--cflags", "--libs"])?;
            let exe = work.join("demo_no_rpath");
            build_demo(&work, &exe, &flags)?;
            let alone = Command::new(&exe).env_remove("LD_LIBRARY_PATH").output()?;
            let said = String::from_utf8_lossy(&alone.stderr);
            t.check(
                !alone.status.success()
                    && said.contains("error while loading shared libraries")
                    && said.contains(&soname),
                &format!(
                    "without rpath or LD_LIBRARY_PATH it cannot start: {}",
                    said.trim()
                ),
            );
            let with_path = Command::new(&exe)
                .env("LD_LIBRARY_PATH", prefix.join("lib"))
                .output()?;
            t.check(
                with_path.status.success()
                    && String::from_utf8_lossy(&with_path.stdout).contains("done"),
                &format!("with LD_LIBRARY_PATH={}/lib it runs", prefix.display()),
            );
            Ok(())
        },
    );

    t.step(
        "demo.c built with `pkg-config --static` (static archive)",
        |t| {
            // With both kinds in one directory the linker prefers the shared
            // library; -Bstatic around -lblazen_cabi picks the archive while
            // the system libraries from Libs.private stay shared.
            let mut flags = Vec::new();
            for f in pkg_config(&pc_dir, &["--static", "--cflags", "--libs"])? {
                if f == "-lblazen_cabi" {
                    flags.extend(["-Wl,-Bstatic".to_string(), f, "-Wl,-Bdynamic".to_string()]);
                } else {
                    flags.push(f);
                }
            }
            let exe = work.join("demo_static");
            build_demo(&work, &exe, &flags)?;
            let (needed, _) = dynamic(&exe)?;
            t.check(
                !needed.iter().any(|n| n.starts_with("libblazen_cabi")),
                &format!("the program does not need libblazen_cabi.so (NEEDED {needed:?})"),
            );
            let ldd = ldd(&exe)?;
            t.check(
                !ldd.contains("libblazen_cabi"),
                "ldd lists no libblazen_cabi",
            );
            run_program(t, &exe, "done")
        },
    );

    t.step(
        "C++ project using only CMake find_package(BlazenCabi)",
        |t| {
            let src = scratch.0.join("cmake-src");
            std::fs::create_dir_all(&src)?;
            for f in ["CMakeLists.txt", "main.cpp"] {
                std::fs::copy(root.join("tests/cmake").join(f), src.join(f))?;
            }
            let (major, minor, _) = version_numbers(&version)?;
            let configure = |build: &Path, require: &str| {
                Command::new("cmake")
                    .arg("-S")
                    .arg(&src)
                    .arg("-B")
                    .arg(build)
                    .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
                    .arg(format!("-DBLAZEN_REQUIRE_VERSION={require}"))
                    .output()
            };
            let build = scratch.0.join("cmake-build");
            let out = configure(&build, &format!("{major}.{minor}"))?;
            if !out.status.success() {
                bail!(
                    "cmake configure failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            output(Command::new("cmake").arg("--build").arg(&build).arg("-j2"))?;
            for kind in ["shared", "static"] {
                let exe = build.join(format!("consumer_{kind}"));
                let (needed, _) = dynamic(&exe)?;
                let uses_so = needed.contains(&soname);
                t.check(
                    uses_so == (kind == "shared"),
                    &format!(
                        "BlazenCabi::blazen_cabi{} links the {kind} library (NEEDED {needed:?})",
                        if kind == "static" { "_static" } else { "" }
                    ),
                );
                run_program(t, &exe, "0 failed")?;
            }
            // The version file: a newer request, or for 0.x another minor, is refused.
            let mut refused = vec![format!("{major}.{}", minor + 1)];
            if major == 0 && minor > 0 {
                refused.push(format!("0.{}", minor - 1));
            }
            for v in refused {
                let out = configure(&scratch.0.join(format!("cmake-refuse-{v}")), &v)?;
                t.check(
                    !out.status.success(),
                    &format!("find_package(BlazenCabi {v}) is refused by {version}"),
                );
            }
            Ok(())
        },
    );

    println!("consumers: {} passed, {} failed", t.passed, t.failed);
    if t.failed > 0 {
        bail!("{} consumer checks failed", t.failed);
    }
    Ok(())
}
