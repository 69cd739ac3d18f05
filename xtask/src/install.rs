//! `cargo xtask install --prefix DIR [--strip]`: a release build installed
//! the way C libraries are, into `$DESTDIR$PREFIX`:
//!
//! ```text
//! include/blazen.h
//! lib/libblazen_cabi.so.X.Y.Z            the shared library (soname below)
//! lib/libblazen_cabi.so.0.Y -> .so.X.Y.Z  (libblazen_cabi.so.X from 1.0 on)
//! lib/libblazen_cabi.so     -> .so.0.Y    for `-lblazen_cabi`
//! lib/libblazen_cabi.a
//! lib/pkgconfig/blazen-cabi.pc
//! lib/cmake/BlazenCabi/BlazenCabiConfig.cmake, BlazenCabiConfigVersion.cmake
//! ```
//!
//! `DESTDIR` stages the files (packaging): they land under it, but every
//! path written into them names the final `PREFIX`. The libraries a static
//! link needs besides the archive are asked from rustc at install time
//! (`--print native-static-libs`), not written down here.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use blazen_cabi_codegen::Surface;

use crate::header::{crate_version, version_numbers};

/// What an install produced.
pub struct Installed {
    /// Where the files are now (`$DESTDIR$PREFIX`).
    pub root: PathBuf,
    /// The shared library's soname.
    pub soname: String,
    /// Every file and link installed, relative to `root`.
    pub files: Vec<PathBuf>,
    /// `-l` flags a static link needs after the archive.
    pub native_static_libs: Vec<String>,
}

// The rule cabi/build.rs links into the library, from the same file.
#[path = "../../cabi/soname.rs"]
mod soname_rule;

/// The soname of version `version` (see cabi/soname.rs); the consumer
/// tests check the installed library carries it.
pub fn soname(version: &str) -> Result<String> {
    let (major, minor, _) = version_numbers(version)?;
    Ok(soname_rule::soname(major, minor))
}

/// Links `dir/<soname>` to `dir/libblazen_cabi.so`, so programs linked
/// against a library in target/ (which record the soname) find it at run
/// time through their rpath.
pub fn link_soname_in_target(root: &Path, dir: &Path) -> Result<()> {
    let name = soname(&crate_version(root)?)?;
    let link = dir.join(&name);
    if std::fs::read_link(&link).ok().as_deref() != Some(Path::new("libblazen_cabi.so")) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("libblazen_cabi.so", &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// `cargo xtask install` from the command line; relative paths are taken
/// from the directory cargo was run in.
pub fn run(root: &Path, invoked_from: &Path, args: &[String]) -> Result<()> {
    let mut prefix = None;
    let mut strip = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--prefix" => prefix = it.next().cloned(),
            "--strip" => strip = true,
            "--surface" => {
                it.next();
            }
            s if s.starts_with("--prefix=") => prefix = Some(s["--prefix=".len()..].to_string()),
            other => {
                bail!("install: unknown argument `{other}` (usage: install --prefix DIR [--strip] [--surface v0.6])")
            }
        }
    }
    let Some(prefix) = prefix else {
        bail!("usage: cargo xtask install --prefix DIR [--strip] (DESTDIR=... stages the files)");
    };
    let prefix = invoked_from.join(prefix);
    let destdir = std::env::var_os("DESTDIR")
        .filter(|d| !d.is_empty())
        .map(|d| invoked_from.join(d));
    let surface = crate::surface_arg(args)?;
    let done = install(root, &prefix, destdir.as_deref(), strip, surface)?;
    for f in &done.files {
        let path = done.root.join(f);
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            println!(
                "  {} -> {}",
                path.display(),
                std::fs::read_link(&path)?.display()
            );
        } else {
            println!("  {} ({} bytes)", path.display(), meta.len());
        }
    }
    println!(
        "install: soname {}; static link also needs: {}",
        done.soname,
        done.native_static_libs.join(" ")
    );
    Ok(())
}

/// Builds the release library for `surface` and installs it (with that
/// surface's header) for `prefix` (absolute) under `destdir` when given.
pub fn install(
    root: &Path,
    prefix: &Path,
    destdir: Option<&Path>,
    strip: bool,
    surface: Surface,
) -> Result<Installed> {
    if !prefix.is_absolute() {
        bail!(
            "install: the prefix must be an absolute path ({})",
            prefix.display()
        );
    }
    let version = crate_version(root)?;
    let soname = soname(&version)?;
    let native_static_libs = build(root, surface)?;
    let dest = match destdir {
        // DESTDIR is prepended as text: /stage + /usr/local = /stage/usr/local.
        Some(d) => d.join(prefix.strip_prefix("/").unwrap_or(prefix)),
        None => prefix.to_path_buf(),
    };
    let release = crate::cc::target_dir(root, surface).join("release");
    let mut files = Vec::new();
    let mut put = |rel: &str, bytes: &[u8], mode: u32| -> Result<()> {
        let path = dest.join(rel);
        std::fs::create_dir_all(path.parent().unwrap())?;
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        files.push(PathBuf::from(rel));
        Ok(())
    };
    let read = |p: PathBuf| std::fs::read(&p).with_context(|| format!("reading {}", p.display()));

    put(
        "include/blazen.h",
        &read(root.join(crate::header::header_path(surface)))?,
        0o644,
    )?;
    let real = format!("libblazen_cabi.so.{version}");
    put(
        &format!("lib/{real}"),
        &read(release.join("libblazen_cabi.so"))?,
        0o755,
    )?;
    put(
        "lib/libblazen_cabi.a",
        &read(release.join("libblazen_cabi.a"))?,
        0o644,
    )?;
    let pc = pkg_config(prefix, &version, &native_static_libs);
    put("lib/pkgconfig/blazen-cabi.pc", pc.as_bytes(), 0o644)?;
    let (config, config_version) = cmake(&version, &real, &soname, &native_static_libs)?;
    put(
        "lib/cmake/BlazenCabi/BlazenCabiConfig.cmake",
        config.as_bytes(),
        0o644,
    )?;
    put(
        "lib/cmake/BlazenCabi/BlazenCabiConfigVersion.cmake",
        config_version.as_bytes(),
        0o644,
    )?;

    // The usual links: soname -> real file, linker name -> soname.
    for (link, target) in [
        (soname.as_str(), real.as_str()),
        ("libblazen_cabi.so", soname.as_str()),
    ] {
        if link == target {
            continue;
        }
        let path = dest.join("lib").join(link);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path)
            .with_context(|| format!("linking {}", path.display()))?;
        files.push(PathBuf::from("lib").join(link));
    }

    if strip {
        for (file, how) in [
            (format!("lib/{real}"), "--strip-unneeded"),
            ("lib/libblazen_cabi.a".into(), "--strip-debug"),
        ] {
            crate::sh(Command::new("strip").arg(how).arg(dest.join(file)))?;
        }
    }
    files.sort();
    Ok(Installed {
        root: dest,
        soname,
        files,
        native_static_libs,
    })
}

/// The release build of both library kinds for `surface`; returns the
/// `-l` flags rustc says a static link needs. `cargo xtask gem` builds
/// through here too: one invocation, so neither rebuilds what the other
/// just built (a plain `cargo build --release` has other flags, and cargo
/// would rebuild the library for it).
pub(crate) fn build(root: &Path, surface: Surface) -> Result<Vec<String>> {
    println!(
        "install: release build of blazen-cabi (cdylib + staticlib), surface {}",
        surface.name()
    );
    let mut cmd = crate::cargo();
    cmd.env("CARGO_TARGET_DIR", crate::cc::target_dir(root, surface));
    let mut args = vec![
        "rustc",
        "-p",
        "blazen-cabi",
        "--release",
        "--lib",
        "--crate-type",
        "cdylib,staticlib",
    ];
    if let Some(feature) = surface.feature() {
        args.extend(["--features", feature]);
    }
    let out = cmd
        .args(args)
        .args(["--", "--print", "native-static-libs"])
        .current_dir(root)
        .output()
        .context("running cargo rustc")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprint!("{stderr}");
        bail!("the release build failed ({})", out.status);
    }
    let line = stderr
        .lines()
        .find_map(|l| {
            l.split_once("native-static-libs:")
                .map(|(_, libs)| libs.trim().to_string())
        })
        .with_context(|| format!("rustc printed no native-static-libs line:\n{stderr}"))?;
    Ok(line.split_whitespace().map(str::to_string).collect())
}

fn pkg_config(prefix: &Path, version: &str, native: &[String]) -> String {
    format!(
        "# blazen-cabi: written by `cargo xtask install`.\n\
         prefix={prefix}\n\
         exec_prefix=${{prefix}}\n\
         libdir=${{exec_prefix}}/lib\n\
         includedir=${{prefix}}/include\n\
         \n\
         Name: blazen-cabi\n\
         Description: C ABI of the Blazen distributed control plane\n\
         Version: {version}\n\
         Cflags: -I${{includedir}}\n\
         Libs: -L${{libdir}} -lblazen_cabi\n\
         Libs.private: {libs}\n",
        prefix = prefix.display(),
        libs = native.join(" "),
    )
}

/// BlazenCabiConfig.cmake and BlazenCabiConfigVersion.cmake. The config
/// finds the prefix from its own location, so a staged (DESTDIR) or moved
/// tree works as well.
fn cmake(version: &str, real: &str, soname: &str, native: &[String]) -> Result<(String, String)> {
    let (major, minor, _) = version_numbers(version)?;
    let link_libs = native
        .iter()
        .map(|l| l.strip_prefix("-l").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(";");
    let config = format!(
        r#"# BlazenCabiConfig.cmake: written by `cargo xtask install`.
#
#   find_package(BlazenCabi {major}.{minor} REQUIRED)
#   target_link_libraries(app PRIVATE BlazenCabi::blazen_cabi)         # shared
#   target_link_libraries(app PRIVATE BlazenCabi::blazen_cabi_static)  # static
#
# The prefix is found from this file's place (<prefix>/lib/cmake/BlazenCabi).
get_filename_component(_blazen_cabi_prefix "${{CMAKE_CURRENT_LIST_DIR}}/../../.." ABSOLUTE)

set(BlazenCabi_VERSION "{version}")
set(BlazenCabi_INCLUDE_DIR "${{_blazen_cabi_prefix}}/include")

if(NOT TARGET BlazenCabi::blazen_cabi)
  add_library(BlazenCabi::blazen_cabi SHARED IMPORTED)
  set_target_properties(BlazenCabi::blazen_cabi PROPERTIES
    IMPORTED_LOCATION "${{_blazen_cabi_prefix}}/lib/{real}"
    IMPORTED_SONAME "{soname}"
    INTERFACE_INCLUDE_DIRECTORIES "${{_blazen_cabi_prefix}}/include")
endif()

if(NOT TARGET BlazenCabi::blazen_cabi_static)
  add_library(BlazenCabi::blazen_cabi_static STATIC IMPORTED)
  set_target_properties(BlazenCabi::blazen_cabi_static PROPERTIES
    IMPORTED_LOCATION "${{_blazen_cabi_prefix}}/lib/libblazen_cabi.a"
    INTERFACE_INCLUDE_DIRECTORIES "${{_blazen_cabi_prefix}}/include"
    INTERFACE_LINK_LIBRARIES "{link_libs}")
endif()

set(BlazenCabi_LIBRARIES BlazenCabi::blazen_cabi)
unset(_blazen_cabi_prefix)
"#
    );
    let pointer = std::mem::size_of::<usize>();
    let config_version = format!(
        r#"# BlazenCabiConfigVersion.cmake: written by `cargo xtask install`.
# Compatible with a request for the same major version, and for 0.x with the
# same minor version (a 0.x minor release may break the ABI, as the soname
# libblazen_cabi.so.0.MINOR says); never with a newer version than this one.
set(PACKAGE_VERSION "{version}")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
if(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif(PACKAGE_FIND_VERSION_MAJOR EQUAL {major})
  if({major} GREATER 0 OR PACKAGE_FIND_VERSION_MINOR EQUAL {minor})
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
endif()
if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()
# Built for {pointer}-byte pointers.
if(CMAKE_SIZEOF_VOID_P AND NOT CMAKE_SIZEOF_VOID_P EQUAL {pointer})
  set(PACKAGE_VERSION "${{PACKAGE_VERSION}} ({bits}-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
"#,
        bits = pointer * 8,
    );
    Ok((config, config_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soname_rule() {
        assert_eq!(soname("0.7.0").unwrap(), "libblazen_cabi.so.0.7");
        assert_eq!(soname("0.12.3-rc.1").unwrap(), "libblazen_cabi.so.0.12");
        assert_eq!(soname("1.4.2").unwrap(), "libblazen_cabi.so.1");
        assert!(soname("1.2").is_err());
    }

    #[test]
    fn pkg_config_names_the_prefix() {
        let pc = pkg_config(Path::new("/opt/x"), "0.7.0", &["-lm".into(), "-lc".into()]);
        assert!(pc.contains("prefix=/opt/x\n"));
        assert!(pc.contains("Version: 0.7.0\n"));
        assert!(pc.contains("Libs.private: -lm -lc\n"));
    }
}
