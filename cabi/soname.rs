//! The shared library's soname rule, in one place: cabi/build.rs links the
//! name into the library and `cargo xtask install` (xtask/src/install.rs)
//! names the installed files and links after it; both include this file.

/// The soname of version `major.minor.*`: `libblazen_cabi.so.0.MINOR` for
/// 0.x (a 0.x minor release may break the ABI), `libblazen_cabi.so.MAJOR`
/// from 1.0 on.
pub fn soname(major: u64, minor: u64) -> String {
    if major == 0 {
        format!("libblazen_cabi.so.0.{minor}")
    } else {
        format!("libblazen_cabi.so.{major}")
    }
}
