//! Who is at the other end of a connection (`SO_PEERCRED`): logged at debug level with each
//! record, and it decides whether a `CFG:` path is honoured.
//!
//! Read with `getsockopt` through `libc` rather than rustix: rustix's `UCred` holds the pid as
//! a non-zero type, but the kernel reports pid 0 for a peer outside our pid namespace (a
//! daemon started with systemd's `PrivatePIDs=`, a client in another container), which that
//! type cannot represent.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Credentials of the process that connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// User id of the sending process.
    pub uid: u32,
    /// Group id of the sending process.
    pub gid: u32,
    /// Process id, when the kernel can tell it in our pid namespace.
    pub pid: Option<i32>,
}

impl From<tokio::net::unix::UCred> for Peer {
    fn from(c: tokio::net::unix::UCred) -> Peer {
        Peer {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid().filter(|&p| p > 0),
        }
    }
}

impl Peer {
    /// The credentials of the peer of the Unix socket `fd`.
    ///
    /// # Errors
    /// `fd` is not a connected Unix socket.
    pub fn of(fd: impl AsFd) -> io::Result<Peer> {
        let c = peercred(fd.as_fd().as_raw_fd())?;
        Ok(Peer {
            uid: c.uid,
            gid: c.gid,
            pid: (c.pid > 0).then_some(c.pid),
        })
    }
}

#[allow(unsafe_code)]
fn peercred(fd: libc::c_int) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a plain struct of three integers, valid for any bit pattern, and
    // `len` is its size: the kernel writes at most that many bytes into it.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other("SO_PEERCRED: short answer"));
    }
    Ok(cred)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_socket_pair_reports_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = Peer::of(&a).unwrap();
        assert_eq!(p.uid, rustix::process::getuid().as_raw());
        assert_eq!(p.gid, rustix::process::getgid().as_raw());
        assert_eq!(p.pid, Some(std::process::id() as i32));
    }

    #[test]
    fn a_file_is_an_error() {
        let f = tempfile::tempfile().unwrap();
        assert!(Peer::of(&f).is_err());
    }
}
