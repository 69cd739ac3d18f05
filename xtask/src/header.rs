//! `cargo xtask header [--check]`: writes include/blazen.h with cbindgen.
//!
//! cbindgen reads Rust source, not macro output, so the stubs annotated with
//! `#[export]`/`#[handle]` are first turned into plain signature items by the
//! same codegen the proc macro uses, and cbindgen reads those beside the
//! crate's own sources. Works on stable Rust.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use blazen_cabi_codegen::{annotated, Annotated, Surface};

/// Where the header of `surface` is committed: `include/blazen.h` for the
/// default surface, `include/v0.6/blazen.h` for the other.
pub fn header_path(surface: Surface) -> String {
    match surface {
        Surface::V0_5 => "include/blazen.h".into(),
        other => format!("include/{}/blazen.h", other.name()),
    }
}

/// Every `.rs` file under `dir`, sorted for a stable header.
pub fn sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The signature stubs of every macro-generated function in the crate, as
/// `surface` has them, and the C names of the callback tables that
/// surface swaps in (Rust name -> C name).
pub fn stubs(root: &Path, surface: Surface) -> Result<(String, Vec<(String, String)>)> {
    let mut tokens = proc_macro2::TokenStream::new();
    let mut renames = Vec::new();
    for file in sources(&root.join("cabi/src"))? {
        let text = std::fs::read_to_string(&file)?;
        let parsed =
            syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        tokens.extend(
            blazen_cabi_codegen::header_stubs(&parsed, surface)
                .with_context(|| format!("expanding stubs of {}", file.display()))?,
        );
        for a in annotated(&parsed)? {
            if let Annotated::Export(e) = a {
                renames.extend(e.renames(surface));
            }
        }
    }
    renames.sort();
    renames.dedup();
    Ok((format!("use std::ffi::c_char;\n{tokens}\n"), renames))
}

/// The library crate's version as cargo resolves it (`version.workspace`
/// included), e.g. "0.7.0".
pub fn crate_version(root: &Path) -> Result<String> {
    let out = crate::cargo()
        .args(["pkgid", "-p", "blazen-cabi"])
        .current_dir(root)
        .output()
        .context("running cargo pkgid")?;
    if !out.status.success() {
        bail!(
            "cargo pkgid -p blazen-cabi failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // path+file:///.../cabi#blazen-cabi@0.7.0 (or ...#0.7.0)
    let id = String::from_utf8(out.stdout)?;
    let version = id
        .trim()
        .rsplit(['@', '#'])
        .next()
        .unwrap_or_default()
        .to_string();
    if version.split('.').count() < 3 {
        bail!("cannot read a version from cargo pkgid output {id:?}");
    }
    Ok(version)
}

/// `MAJOR.MINOR.PATCH[-pre][+build]` as its three numbers.
pub fn version_numbers(version: &str) -> Result<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let nums: Vec<u64> = core
        .split('.')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("version {version:?} is not MAJOR.MINOR.PATCH"))?;
    match nums[..] {
        [major, minor, patch] => Ok((major, minor, patch)),
        _ => bail!("version {version:?} is not MAJOR.MINOR.PATCH"),
    }
}

/// The version and surface macros placed after the includes.
fn version_macros(version: &str, surface: Surface) -> Result<String> {
    let (major, minor, patch) = version_numbers(version)?;
    Ok(format!(
        "/* The version of blazen-cabi this header belongs to; `blazen_version()`\n \
         * returns BLAZEN_VERSION_STRING of the library actually loaded. */\n\
         #define BLAZEN_VERSION_MAJOR {major}\n\
         #define BLAZEN_VERSION_MINOR {minor}\n\
         #define BLAZEN_VERSION_PATCH {patch}\n\
         #define BLAZEN_VERSION_STRING \"{version}\"\n\
         \n\
         /* The reference surface this header declares ({name}: BLAZEN_SURFACE_V0_{n});\n \
         * `blazen_surface()` returns the one the loaded library was built for. */\n\
         #define BLAZEN_SURFACE {n}",
        name = surface.name(),
        n = surface.number(),
    ))
}

/// The header of `surface` as cbindgen makes it now.
pub fn generate(root: &Path, surface: Surface) -> Result<String> {
    let dir = root.join("target/header").join(surface.name());
    std::fs::create_dir_all(&dir)?;
    let stub_file = dir.join("generated_stubs.rs");
    let (stub_text, renames) = stubs(root, surface)?;
    std::fs::write(&stub_file, stub_text)?;

    let config = cbindgen::Config {
        language: cbindgen::Language::C,
        include_guard: Some("BLAZEN_H".into()),
        cpp_compat: true,
        documentation: true,
        documentation_style: cbindgen::DocumentationStyle::Doxy,
        style: cbindgen::Style::Type,
        sys_includes: vec!["stddef.h".into()],
        header: Some(
            "/* blazen.h: the C ABI of the Blazen distributed control plane.\n \
             * Generated by `cargo xtask header`; do not edit.\n \
             *\n \
             * Threads and signals: the library runs its own threads (an async\n \
             * runtime, the threads that call handlers, one per subscription).\n \
             * The runtime's threads block SIGPIPE; otherwise every library\n \
             * thread inherits the signal mask of the thread that first calls the\n \
             * library (or creates the subscription), so a process-directed\n \
             * SIGINT/SIGTERM may land on any of them. No function here is\n \
             * async-signal-safe: block SIGINT and SIGTERM with pthread_sigmask\n \
             * before the first call, take them with\n \
             * sigwait (or signalfd) on a thread of your own, and call the\n \
             * _shutdown/_free functions from there.\n \
             *\n \
             * Under valgrind use --leak-check=full\n \
             * --errors-for-leak-kinds=definite,indirect: the runtime and its\n \
             * threads live until the process exits (still reachable / possibly\n \
             * lost), which is not a leak.\n \
             *\n \
             * Event types and their data: see BlazenRunEventSinkVTable. */"
                .into(),
        ),
        after_includes: Some(format!(
            "\n{}",
            version_macros(&crate_version(root)?, surface)?
        )),
        usize_is_size_t: false,
        export: cbindgen::ExportConfig {
            rename: renames.into_iter().collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    // cbindgen follows `mod` declarations from lib.rs itself.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("cabi/src/lib.rs"))
        .with_src(&stub_file)
        .generate()
        .context("cbindgen failed")?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    let header = String::from_utf8(out)?;
    check_namespace(&header)?;
    Ok(header)
}

/// Every name the header gives a C program is the library's own: macros
/// `BLAZEN_*`, types `Blazen*`, functions `blazen_*` (a bare
/// `DEFAULT_CONNECTIONS` once slipped in from a `pub const`).
fn check_namespace(header: &str) -> Result<()> {
    let mut foreign = Vec::new();
    for line in header.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let name = match words.as_slice() {
            ["#define", name, ..] => Some((*name, "BLAZEN_")),
            ["typedef", "struct", _, name] => Some((name.trim_end_matches(';'), "Blazen")),
            _ => None,
        };
        if let Some((name, prefix)) = name {
            if name != "BLAZEN_H" && !name.starts_with(prefix) {
                foreign.push(name.to_string());
            }
        }
        if !line.starts_with([' ', '*', '/', '#', '}', '{'])
            && line.contains('(')
            && !line.contains("(*")
        {
            let before = line.split('(').next().unwrap_or_default();
            let func = before.rsplit([' ', '*']).next().unwrap_or_default();
            if !func.is_empty() && !func.starts_with("blazen_") {
                foreign.push(func.to_string());
            }
        }
    }
    if !foreign.is_empty() {
        bail!("names outside the blazen namespace in the header: {foreign:?}");
    }
    Ok(())
}

/// Writes (or checks) the header of every surface.
pub fn run(root: &Path, check: bool) -> Result<()> {
    for surface in Surface::ALL {
        let path = header_path(surface);
        crate::write_or_check(root, &path, &generate(root, surface)?, check, "header")?;
    }
    Ok(())
}
