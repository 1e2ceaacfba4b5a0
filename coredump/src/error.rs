//! The one error type of the crate.

use std::io;

/// Why a core could not be read. Unwinding problems inside a readable core are not errors: they
/// end that thread's backtrace early (a frame the unwinder cannot step past is still reported).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the core (pipe or file) failed.
    #[error("cannot read the core: {0}")]
    Io(#[from] io::Error),
    /// The input ended before a part the header promised.
    #[error("core truncated: needed {needed} bytes at offset {offset}, the input ended first")]
    Truncated { offset: u64, needed: u64 },
    /// The input is not an ELF core we can read (bad magic, not 64-bit, not a core, ...).
    #[error("not an x86_64 ELF core: {0}")]
    NotACore(&'static str),
    /// The core is an ELF core, but malformed.
    #[error("malformed core: {0}")]
    Malformed(String),
    /// Valid, but uses something this reader does not implement.
    #[error("unsupported core: {0}")]
    Unsupported(&'static str),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
