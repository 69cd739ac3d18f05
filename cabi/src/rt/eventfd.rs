//! The eventfd behind every completion descriptor (a future's, a
//! completion queue's): made non-blocking, signalled, cleared.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{BlazenError, Result};

/// A fresh, unreadable, non-blocking eventfd.
pub(super) fn new() -> Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(BlazenError::internal(format!(
            "eventfd failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Makes `fd` readable.
pub(super) fn signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Makes `fd` unreadable again (a read of an unreadable non-blocking one
/// just fails).
pub(super) fn clear(fd: &OwnedFd) {
    let mut n: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64 from an eventfd we own.
    unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
}
