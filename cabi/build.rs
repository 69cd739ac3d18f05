//! Gives the shared library its soname. blazen-cabi follows semver with the
//! 0.x rule that a minor bump may break the ABI, so the soname carries what
//! stays compatible (README, "Install"). The rule is in soname.rs, which
//! `cargo xtask install` includes too; its consumer tests read the name
//! back from the installed library.

#[path = "soname.rs"]
mod soname;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=soname.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let number = |k: &str| {
        var(k)
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{k} is not a number: {e}"))
    };
    let soname = soname::soname(
        number("CARGO_PKG_VERSION_MAJOR"),
        number("CARGO_PKG_VERSION_MINOR"),
    );
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
