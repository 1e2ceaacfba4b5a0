//! The one error type of the core. Every variant maps to a positive errno (`Error::errno`), which
//! the C library negates and telemprobd sends back as its status word, so a C caller sees the
//! daemon's verdict unchanged.

use std::io;
use std::path::PathBuf;

/// Result alias for the core.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record field failed validation (classification, event id, payload text, header line).
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },

    /// The payload is larger than [`crate::record::MAX_PAYLOAD`].
    #[error("payload is {len} bytes; the limit is {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },

    /// A socket frame could not be decoded.
    #[error("malformed frame: {0}")]
    Frame(#[from] crate::frame::FrameError),

    /// A spool file could not be parsed.
    #[error("malformed spool file: {0}")]
    Spool(String),

    /// A configuration file has a bad line or value.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// The opt-in file does not exist.
    #[error("not opted in to telemetry (no {})", .0.display())]
    NotOptedIn(PathBuf),

    /// telemprobd answered with a negative status.
    #[error("telemprobd refused the record: {}", describe_errno(*.0))]
    Refused(i32),

    /// No status arrived within the configured time.
    #[error("telemprobd did not acknowledge the record in time")]
    AckTimeout,

    /// An operating-system error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Shorthand for a validation failure.
    pub fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            why: why.into(),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The positive errno this error stands for.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Invalid { .. } | Error::Spool(_) | Error::Config(_) => libc_errno::EINVAL,
            Error::Frame(e) => e.errno(),
            Error::PayloadTooLarge { .. } => libc_errno::EMSGSIZE,
            Error::NotOptedIn(_) => libc_errno::ECONNREFUSED,
            Error::Refused(e) => *e,
            Error::AckTimeout => libc_errno::ETIMEDOUT,
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc_errno::EIO),
        }
    }
}

/// Errno values used by the protocol. They are Linux's numbers, fixed by the kernel ABI, and the
/// same on every architecture this project targets; spelled out so the core needs no libc crate.
pub mod libc_errno {
    pub const EIO: i32 = 5;
    pub const ENOMEM: i32 = 12;
    pub const EBUSY: i32 = 16;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EMSGSIZE: i32 = 90;
    pub const ECONNREFUSED: i32 = 111;
    pub const ETIMEDOUT: i32 = 110;
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
}

/// A short English description of an errno, for messages a person reads.
pub fn describe_errno(errno: i32) -> String {
    let e = errno.abs();
    let text = match e {
        libc_errno::EINVAL => "invalid record (EINVAL)",
        libc_errno::EMSGSIZE => "record too large (EMSGSIZE)",
        libc_errno::ENOSPC => "spool is full (ENOSPC)",
        libc_errno::EBUSY => "rate limited (EBUSY)",
        libc_errno::ECONNREFUSED => "not opted in (ECONNREFUSED)",
        libc_errno::ETIMEDOUT => "timed out (ETIMEDOUT)",
        _ => return io::Error::from_raw_os_error(e).to_string(),
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table_is_pinned() {
        assert_eq!(Error::invalid("x", "y").errno(), 22);
        assert_eq!(Error::PayloadTooLarge { len: 1, max: 0 }.errno(), 90);
        assert_eq!(Error::NotOptedIn(PathBuf::from("/x")).errno(), 111);
        assert_eq!(Error::Refused(28).errno(), 28);
        assert_eq!(Error::AckTimeout.errno(), 110);
        assert_eq!(
            Error::io("c", io::Error::from_raw_os_error(2)).errno(),
            libc_errno::ENOENT
        );
        assert_eq!(Error::io("c", io::Error::other("x")).errno(), 5);
        assert_eq!(Error::Spool("x".into()).errno(), 22);
    }

    #[test]
    fn errno_constants_match_the_os() {
        for (n, kind) in [
            (libc_errno::ENOENT, io::ErrorKind::NotFound),
            (libc_errno::ECONNREFUSED, io::ErrorKind::ConnectionRefused),
            (libc_errno::ETIMEDOUT, io::ErrorKind::TimedOut),
        ] {
            assert_eq!(io::Error::from_raw_os_error(n).kind(), kind);
        }
    }
}
