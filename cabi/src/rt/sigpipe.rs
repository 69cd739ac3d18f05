//! Keeping SIGPIPE away from the host. A write to a socket whose peer has
//! gone raises SIGPIPE, whose default action kills the process; Rust
//! programs ignore it at start-up, C hosts usually do not. The library never
//! changes the process-wide disposition: it blocks SIGPIPE on its own
//! threads, and on a caller's thread only while that thread drives library
//! I/O, discarding a SIGPIPE raised meanwhile (the write itself reports
//! EPIPE, which the library handles as an error).

use std::mem::MaybeUninit;

fn sigpipe_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset adds a valid signal.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

/// Blocks SIGPIPE for the rest of the calling thread's life (library
/// threads only).
pub fn block_for_this_thread() {
    let set = sigpipe_set();
    // SAFETY: a valid set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Blocks SIGPIPE on the calling thread until dropped.
pub struct Guard {
    old: libc::sigset_t,
    was_blocked: bool,
}

impl Guard {
    pub fn new() -> Self {
        let set = sigpipe_set();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: valid set and out-pointer.
        let old = unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr());
            old.assume_init()
        };
        // SAFETY: `old` was filled in above.
        let was_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
        Self { old, was_blocked }
    }
}

impl Default for Guard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.was_blocked {
            return;
        }
        let set = sigpipe_set();
        let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: valid pointers; a zero timeout never waits.
        unsafe {
            if libc::sigpending(pending.as_mut_ptr()) == 0
                && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
            {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}
