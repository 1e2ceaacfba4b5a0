//! The listening socket: handed over by systemd (`LISTEN_FDS`) or bound by us at `socket_path`.
//!
//! When we bind, a stale socket file from a crashed run is removed first (but a live daemon's
//! socket, or anything that is not a socket, is left alone and is an error), the file gets the
//! configured mode, and it is removed again on clean exit — only if it is still ours. A socket
//! from systemd is never removed: systemd owns it and keeps it across our restarts.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::SocketFlags;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A socket file we created: path and identity, so we remove only our own.
#[derive(Debug)]
struct OwnedSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The listening socket before the runtime starts (the `LISTEN_FDS` environment must be read
/// while the process is still single-threaded).
#[derive(Debug)]
pub struct Bound {
    listener: StdUnixListener,
    owned: Option<OwnedSocket>,
}

impl Bound {
    /// True when systemd handed the socket over.
    pub fn is_activated(&self) -> bool {
        self.owned.is_none()
    }

    /// Moves the socket into the async runtime (call from within it).
    ///
    /// # Errors
    /// The socket cannot be registered with the runtime.
    pub fn into_listener(self) -> io::Result<Listener> {
        self.listener.set_nonblocking(true)?;
        Ok(Listener {
            inner: register(self.listener)?,
            owned: self.owned,
        })
    }
}

/// The listening socket inside the runtime.
///
/// Watched by the runtime's reactor, but connections come out as plain descriptors, not yet
/// registered with it: a connection whose frame is already complete is served without ever
/// being registered (`crate::fast`), which saves two `epoll_ctl` calls per record.
#[derive(Debug)]
pub struct Listener {
    inner: AsyncFd<StdUnixListener>,
    owned: Option<OwnedSocket>,
}

impl Listener {
    /// Wraps a listener bound elsewhere (tests); its file is left alone on exit.
    ///
    /// # Errors
    /// The socket cannot be registered with the runtime.
    pub fn from_tokio(inner: tokio::net::UnixListener) -> io::Result<Listener> {
        let inner = inner.into_std()?;
        inner.set_nonblocking(true)?;
        Ok(Listener {
            inner: register(inner)?,
            owned: None,
        })
    }

    /// Waits for the next client; its descriptor is non-blocking and close-on-exec.
    /// Cancel-safe.
    ///
    /// # Errors
    /// `accept` failed (out of descriptors or memory, ...).
    pub async fn accept(&self) -> io::Result<OwnedFd> {
        loop {
            let mut ready = self.inner.readable().await?;
            let accepted = ready.try_io(|l| {
                rustix::net::accept_with(l.get_ref(), SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
                    .map_err(io::Error::from)
            });
            match accepted {
                Ok(r) => return r,
                // Readiness was stale: try_io cleared it; wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// Whether another client is already waiting to be accepted (one `poll`, no waiting).
    pub fn has_waiting(&self) -> bool {
        let mut fds = [PollFd::new(self.inner.get_ref(), PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
    }

    /// Removes the socket file if we created it and it is still ours. Called on clean exit.
    pub fn remove_socket_file(&mut self) {
        let Some(o) = self.owned.take() else {
            return;
        };
        match std::fs::symlink_metadata(&o.path) {
            Ok(m) if m.dev() == o.dev && m.ino() == o.ino => {
                if let Err(e) = std::fs::remove_file(&o.path) {
                    tracing::warn!(socket = %o.path.display(), error = %e, "cannot remove the socket file");
                }
            }
            _ => {
                tracing::debug!(socket = %o.path.display(), "socket file is no longer ours; left alone")
            }
        }
    }
}

/// Registers the listening socket with the runtime's reactor, for readability only.
///
/// `AsyncFd::with_interest` is deprecated since tokio 1.54 in favour of the `unsafe`
/// `register_with_interest`, whose contract (the descriptor stays open and the same while
/// registered) a `UnixListener` we own and never hand out meets; the safe constructor keeps the
/// workspace's `unsafe_code = deny` intact, as in telempostd's inotify watcher.
fn register(listener: StdUnixListener) -> io::Result<AsyncFd<StdUnixListener>> {
    #[allow(deprecated)]
    AsyncFd::with_interest(listener, Interest::READABLE)
}

/// Takes the socket systemd passed (first fd), else binds `path` with `mode`.
///
/// # Errors
/// systemd passed an fd that is not a listening Unix stream socket; `path` is in use by a
/// running daemon or is not a socket; binding fails.
pub fn activate_or_bind(path: &Path, mode: u32) -> io::Result<Bound> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        let listener = fds.take_unix_listener(0)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "LISTEN_FDS: first fd already taken",
            )
        })?;
        if fds.len() > 1 {
            tracing::warn!(
                count = fds.len(),
                "systemd passed several sockets; using the first"
            );
        }
        tracing::info!("using the socket passed by systemd");
        return Ok(Bound {
            listener,
            owned: None,
        });
    }
    bind(path, mode)
}

/// Binds our own socket at `path`.
///
/// # Errors
/// See [`activate_or_bind`].
pub fn bind(path: &Path, mode: u32) -> io::Result<Bound> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    remove_stale(path)?;
    // Bound and given its mode under a temporary name, then renamed into place: the socket
    // file appears only once it accepts connections and has its final mode (between bind and
    // listen a client would get ECONNREFUSED, and one polling for the file would race it).
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = StdUnixListener::bind(&tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", tmp.display())))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!("placing {}: {e}", path.display()),
        ));
    }
    let m = std::fs::symlink_metadata(path)?;
    tracing::info!(socket = %path.display(), mode = format!("{mode:04o}"), "listening");
    Ok(Bound {
        listener,
        owned: Some(OwnedSocket {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        }),
    })
}

/// Removes a socket file nobody listens on any more.
fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if !m.file_type().is_socket() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            ),
        )),
        Ok(_) => match StdUnixStream::connect(path) {
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another daemon is listening there", path.display()),
            )),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing stale socket file");
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn bind_sets_mode_replaces_stale_and_removes_own_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run/telem-0");
        // A stale socket: bound, then its listener dropped.
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        drop(StdUnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let b = bind(&p, 0o666).unwrap();
        assert!(!b.is_activated());
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o666);
        // A second daemon must not steal a live socket.
        assert_eq!(
            bind(&p, 0o666).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let only: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(only.len(), 1, "no temporary name left");
        // It accepts connections under the final name.
        let _c = StdUnixStream::connect(&p).unwrap();
        let mut l = b.into_listener().unwrap();
        l.remove_socket_file();
        assert!(!p.exists());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tells_whether_a_client_waits_to_be_accepted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("telem-0");
        let l = bind(&p, 0o666).unwrap().into_listener().unwrap();
        assert!(!l.has_waiting(), "nobody connected");
        let _a = StdUnixStream::connect(&p).unwrap();
        let _b = StdUnixStream::connect(&p).unwrap();
        assert!(l.has_waiting());
        let _first = l.accept().await.unwrap();
        assert!(l.has_waiting(), "the second still waits");
        let _second = l.accept().await.unwrap();
        assert!(!l.has_waiting(), "both accepted");
    }

    #[test]
    fn refuses_to_remove_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("telem-0");
        std::fs::write(&p, "keep me").unwrap();
        assert!(bind(&p, 0o666).is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "keep me");
    }
}
