//! Gives the shared library its soname. blazen-cabi follows semver with the
//! 0.x rule that a minor bump may break the ABI, so the soname carries what
//! stays compatible: `libblazen_cabi.so.0.MINOR` for 0.x versions and
//! `libblazen_cabi.so.MAJOR` from 1.0 on (the README's "Install" section;
//! `cargo xtask install` computes the same name and its consumer tests read
//! it back from the installed library).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let (major, minor) = (
        var("CARGO_PKG_VERSION_MAJOR"),
        var("CARGO_PKG_VERSION_MINOR"),
    );
    let soname = if major == "0" {
        format!("libblazen_cabi.so.0.{minor}")
    } else {
        format!("libblazen_cabi.so.{major}")
    };
    // ELF platforms only; Mach-O and PE name their libraries differently.
    let elf = matches!(
        var("CARGO_CFG_TARGET_OS").as_str(),
        "linux"
            | "android"
            | "freebsd"
            | "netbsd"
            | "openbsd"
            | "dragonfly"
            | "illumos"
            | "solaris"
    );
    if elf {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
}
