//! What std's runtime does before and after `main` that this program needs, done by hand.
//!
//! The program enters through a C `main` (`#![no_main]`) because std's set-up spends about a fifth
//! of the process's instructions, and a read of `/proc/self/maps`, finding the main thread's
//! stack guard for its stack-overflow handler. What that skips and why it does not matter here:
//! - the stack-overflow handler: an overflow is a plain SIGSEGV instead of a message first (this
//!   program does not recurse);
//! - the main thread's name: a panic message says `<unnamed>` instead of `main`;
//! - the panic catch and flushing stdout at exit: done by `main` and [`finish`].
//!
//! Kept, because they matter: the standard descriptors are opened on `/dev/null` when closed
//! (else the socket to telemprobd could become descriptor 2 and receive error messages), and
//! SIGPIPE is ignored, so printing into a closed pipe is an error this program handles instead of
//! a signal that kills it.

use std::ffi::{c_char, c_int, CStr, OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

/// Runs before anything else: the standard descriptors and SIGPIPE, as std's runtime sets them.
pub fn prepare() {
    #[allow(unsafe_code)]
    // SAFETY: plain system calls on descriptors 0-2 and the SIGPIPE disposition; nothing else in
    // the process runs yet (single thread, before any Rust object uses these descriptors).
    unsafe {
        for fd in 0..3 {
            if libc::fcntl(fd, libc::F_GETFD) == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != fd
            {
                // As std: a process that cannot even get /dev/null stops here.
                libc::abort();
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The arguments from `main`'s own `argc` and `argv`: `std::env::args_os` depends on the C
/// library handing them to std's initialiser too, which glibc does and others need not.
///
/// # Safety
/// `argv` holds `argc` pointers to NUL-terminated strings (or is null), as `main` receives them.
#[allow(unsafe_code)]
pub unsafe fn args(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            // SAFETY: i < argc, and each of the first argc entries is a valid C string.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsStr::from_bytes(arg.to_bytes()).to_os_string()
        })
        .collect()
}

/// Runs after the program: what std's runtime does at exit (standard output's buffer flushed).
pub fn finish() {
    let _ = std::io::stdout().flush();
}
