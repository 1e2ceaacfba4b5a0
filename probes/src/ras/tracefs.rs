//! tracefs: where it is mounted, rasprobe's own tracing instance, and its `trace_pipe`.
//!
//! The instance (`instances/telemetrics-rasprobe`) has its own ring buffer and event switches,
//! so enabling the RAS events there never changes what other tracing users (perf, trace-cmd,
//! rasdaemon) see. It is set to print events field by field (`options/fields`, where the
//! kernel has it; else the binary `trace_pipe_raw` pages are read) and to stamp them with
//! `CLOCK_MONOTONIC` (`trace_clock` `mono`), the clock flood control measures with.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RasError;

/// The instance's directory name below `instances/`.
pub const INSTANCE: &str = "telemetrics-rasprobe";

/// Where systemd mounts tracefs.
pub const DEFAULT_TRACEFS: &str = "/sys/kernel/tracing";

/// The tracefs mount to use: `explicit` if given, else `/sys/kernel/tracing`, else a `tracefs`
/// mount listed in `/proc/mounts`, else the old place below debugfs. `None` when there is none.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    let usable = |p: &Path| p.join("instances").is_dir() && p.join("events").is_dir();
    if let Some(p) = explicit {
        return usable(p).then(|| p.to_path_buf());
    }
    let mut candidates = vec![PathBuf::from(DEFAULT_TRACEFS)];
    if let Ok(mounts) = fs::read_to_string("/proc/mounts") {
        candidates.extend(mounts.lines().filter_map(|l| {
            let mut it = l.split(' ');
            let (_, dir, kind) = (it.next()?, it.next()?, it.next()?);
            (kind == "tracefs").then(|| PathBuf::from(unescape_mount(dir)))
        }));
    }
    candidates.push(PathBuf::from("/sys/kernel/debug/tracing"));
    candidates.into_iter().find(|p| usable(p))
}

/// `/proc/mounts` writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a tracefs file whole. One large read: some of these files (`events/header_page`)
/// answer a read at a non-zero offset with end-of-file, so the small probing first read of
/// `fs::read_to_string` would cut them after 32 bytes.
pub fn read_file(path: &Path) -> Result<String, RasError> {
    let mut file = File::open(path).map_err(|e| RasError::io(path, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RasError::io(path, e)),
        }
    }
    buf.truncate(len);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Writes a value to a tracefs control file (never creates one).
fn write_control(path: &Path, value: &str) -> Result<(), RasError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| RasError::io(path, e))
}

/// rasprobe's tracing instance with the RAS events enabled in it. Dropping it disables them
/// and removes the instance.
#[derive(Debug)]
pub struct Instance {
    dir: PathBuf,
    enabled: Vec<PathBuf>,
    removed: bool,
}

impl Instance {
    /// Creates the instance below `tracefs` (removing a stale one a crashed run left), sets it
    /// up and enables `events` ((system, event) pairs) in it.
    pub fn create(tracefs: &Path, events: &[(&str, &str)]) -> Result<Instance, RasError> {
        Instance::create_named(tracefs, INSTANCE, events)
    }

    /// As [`Instance::create`], with another instance name (tests that must not meet a running
    /// rasprobe).
    pub fn create_named(
        tracefs: &Path,
        name: &str,
        events: &[(&str, &str)],
    ) -> Result<Instance, RasError> {
        let dir = tracefs.join("instances").join(name);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {
                tracing::warn!(
                    "removing the tracing instance a previous run left: {}",
                    dir.display()
                );
                remove_dir(&dir, &enable_files(&dir, events))?;
            }
            Ok(_) => return Err(RasError::NotOurs(dir)),
            Err(_) => {}
        }
        fs::create_dir(&dir).map_err(|e| RasError::io(&dir, e))?;
        let mut inst = Instance {
            dir,
            enabled: Vec::new(),
            removed: false,
        };
        // Text field by field where the kernel can (6.8 and later); else the binary pages.
        if inst.has_fields() {
            write_control(&inst.dir.join("options/fields"), "1")?;
        }
        write_control(&inst.dir.join("trace_clock"), "mono")?;
        // Wake readers on every event, not when the buffer is half full.
        if inst.dir.join("buffer_percent").exists() {
            write_control(&inst.dir.join("buffer_percent"), "0")?;
        }
        for path in enable_files(&inst.dir, events) {
            write_control(&path, "1")?;
            inst.enabled.push(path);
        }
        Ok(inst)
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when the kernel prints events field by field (`options/fields`).
    pub fn has_fields(&self) -> bool {
        self.dir.join("options/fields").exists()
    }

    /// Opens every CPU's `per_cpu/cpu<N>/trace_pipe_raw` of the instance.
    pub fn raw_pipes(&self, page_size: usize) -> Result<RawPipes, RasError> {
        let per_cpu = self.dir.join("per_cpu");
        let entries = fs::read_dir(&per_cpu).map_err(|e| RasError::io(&per_cpu, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| RasError::io(&per_cpu, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let path = entry.path().join("trace_pipe_raw");
            files.push((cpu, open_nonblocking(&path)?));
        }
        files.sort_by_key(|(cpu, _)| *cpu);
        Ok(RawPipes {
            files,
            page_size,
            path: per_cpu,
        })
    }

    /// Opens the instance's `trace_pipe` for reading.
    pub fn pipe(&self) -> Result<Pipe, RasError> {
        Pipe::open(&self.dir.join("trace_pipe"))
    }

    /// Disables the events and removes the instance (open pipes must be closed first).
    pub fn remove(mut self) -> Result<(), RasError> {
        self.removed = true;
        remove_dir(&self.dir, &self.enabled)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = remove_dir(&self.dir, &self.enabled) {
                tracing::error!("{e}");
            }
        }
    }
}

fn enable_files(dir: &Path, events: &[(&str, &str)]) -> Vec<PathBuf> {
    events
        .iter()
        .map(|(s, e)| dir.join("events").join(s).join(e).join("enable"))
        .collect()
}

/// Disables the events (those that exist) and removes the instance directory; retries briefly
/// while a reader still holds it (the kernel refuses with EBUSY).
fn remove_dir(dir: &Path, enabled: &[PathBuf]) -> Result<(), RasError> {
    for path in enabled {
        if path.exists() {
            write_control(path, "0")?;
        }
    }
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(16) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(RasError::io(dir, e)),
        }
    }
}

fn open_nonblocking(path: &Path) -> Result<File, RasError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| RasError::io(path, e))
}

fn poll_timeout(timeout: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    }
}

/// Non-blocking readers of every CPU's `trace_pipe_raw`.
#[derive(Debug)]
pub struct RawPipes {
    files: Vec<(u32, File)>,
    page_size: usize,
    path: PathBuf,
}

impl RawPipes {
    /// Waits up to `timeout` for events, then returns the pages read, with their CPU.
    pub fn read_pages(&mut self, timeout: Duration) -> Result<Vec<(u32, Vec<u8>)>, RasError> {
        use rustix::event::{poll, PollFd, PollFlags};
        let mut fds: Vec<PollFd<'_>> = self
            .files
            .iter()
            .map(|(_, f)| PollFd::new(f, PollFlags::IN))
            .collect();
        match poll(&mut fds, Some(&poll_timeout(timeout))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(RasError::io(&self.path, e.into())),
        }
        drop(fds);
        let mut out = Vec::new();
        for (cpu, file) in &mut self.files {
            // A bounded number of pages per CPU and call, so a storm cannot starve the clock.
            for _ in 0..64 {
                let mut page = vec![0u8; self.page_size];
                match file.read(&mut page) {
                    Ok(0) => break,
                    Ok(n) => {
                        page.truncate(n);
                        out.push((*cpu, page));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(RasError::io(&self.path, e)),
                }
            }
        }
        Ok(out)
    }
}

/// Longest line kept waiting for its newline.
const MAX_LINE: usize = 1 << 20;

/// A non-blocking `trace_pipe` reader that hands out whole lines.
#[derive(Debug)]
pub struct Pipe {
    file: File,
    path: PathBuf,
    partial: Vec<u8>,
}

impl Pipe {
    fn open(path: &Path) -> Result<Pipe, RasError> {
        let file = open_nonblocking(path)?;
        Ok(Pipe {
            file,
            path: path.to_path_buf(),
            partial: Vec::new(),
        })
    }

    /// Waits up to `timeout` for events, then returns the complete lines read.
    pub fn read_lines(&mut self, timeout: Duration) -> Result<Vec<String>, RasError> {
        use rustix::event::{poll, PollFd, PollFlags};
        let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
        match poll(&mut fds, Some(&poll_timeout(timeout))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(RasError::io(&self.path, e.into())),
        }
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RasError::io(&self.path, e)),
            }
            // One poll's worth at a time: a storm must not keep this loop from the flood
            // control's clock and the stop flag.
            if self.partial.len() > MAX_LINE {
                break;
            }
        }
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            // No event line is this long; something is wrong with what we read.
            if self.partial.len() > MAX_LINE {
                tracing::warn!("dropping {} bytes without a newline", self.partial.len());
                self.partial.clear();
            }
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        Ok(String::from_utf8_lossy(&done)
            .lines()
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/a\\04"), "/a\\04");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
