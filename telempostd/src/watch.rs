//! inotify on the spool directory: a record appears when it is renamed into place
//! (`IN_MOVED_TO`, our telemprobd) or closed after writing (`IN_CLOSE_WRITE`, the original).
//!
//! Events only wake the loop and name candidates; the periodic scan stays the source of truth,
//! so a lost event or a queue overflow delays a record, never loses it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use tokio::io::unix::AsyncFd;

/// What reading the pending events produced.
#[derive(Debug, Default)]
pub struct Events {
    /// Names that were moved or written into the directory.
    pub names: Vec<String>,
    /// The kernel dropped events, or the watch went away: rescan.
    pub rescan: bool,
}

/// The inotify instance, registered with the tokio reactor.
#[derive(Debug)]
pub struct Watcher {
    fd: AsyncFd<OwnedFd>,
    wd: Option<i32>,
}

impl Watcher {
    /// A new inotify instance (must be called inside a tokio runtime with I/O enabled).
    pub fn new() -> io::Result<Watcher> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        // `AsyncFd::new` is deprecated because a wrapped type could change or close its fd while
        // registered; an `OwnedFd` we never hand out cannot, and its replacement `register` is
        // `unsafe`, which this workspace denies.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Watcher { fd, wd: None })
    }

    /// Watches `dir` (replacing any previous watch).
    pub fn watch(&mut self, dir: &Path) -> io::Result<()> {
        if let Some(wd) = self.wd.take() {
            let _ = inotify::remove_watch(self.fd.get_ref(), wd);
        }
        let wd = inotify::add_watch(
            self.fd.get_ref(),
            dir,
            WatchFlags::MOVED_TO | WatchFlags::CLOSE_WRITE | WatchFlags::ONLYDIR,
        )?;
        self.wd = Some(wd);
        Ok(())
    }

    /// Waits until events may be pending. Call [`Watcher::drain`] afterwards.
    pub async fn ready(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        // Cleared before draining: an event arriving after the drain sets readiness again.
        guard.clear_ready();
        Ok(())
    }

    /// Reads every pending event without blocking.
    pub fn drain(&self) -> Events {
        let mut out = Events::default();
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(self.fd.get_ref(), &mut buf);
        loop {
            match reader.next() {
                Ok(ev) => {
                    let flags = ev.events();
                    if flags.intersects(ReadFlags::QUEUE_OVERFLOW | ReadFlags::IGNORED) {
                        out.rescan = true;
                    }
                    if flags.contains(ReadFlags::ISDIR) {
                        continue;
                    }
                    if let Some(name) = ev.file_name().and_then(|n| n.to_str().ok()) {
                        if !name.is_empty() {
                            out.names.push(name.to_string());
                        }
                    }
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => break,
                Err(_) => {
                    out.rescan = true;
                    break;
                }
            }
        }
        out
    }
}
