//! Keeping SIGPIPE away from the host. A write to a socket whose peer has
//! gone raises SIGPIPE in the writing thread, and its default action kills
//! the process; Rust programs ignore it at start-up, C hosts usually do not.
//! Every socket the library uses is written by tasks on the runtime's own
//! threads (client connections and the embedded server's connections are
//! driven by spawned tasks), so the library blocks SIGPIPE on those threads
//! only: the write then fails with EPIPE, which is handled as an error. The
//! process-wide disposition and the host's threads are never touched. The
//! valgrind runs of the C suites, whose timing once exposed the signal, keep
//! this honest.

use std::mem::MaybeUninit;

/// Blocks SIGPIPE for the rest of the calling thread's life (library
/// threads only).
pub fn block_for_this_thread() {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset adds a valid signal;
    // pthread_sigmask reads it and does not need the old mask.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
    }
}
