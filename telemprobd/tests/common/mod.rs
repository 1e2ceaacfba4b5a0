//! Starting the real telemprobd binary in a temporary root, and talking to it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use telemetry::{Config, Record, SysInfo};

pub const EINVAL: i32 = 22;
pub const EMSGSIZE: i32 = 90;
pub const ENOSPC: i32 = 28;
pub const EBUSY: i32 = 16;
pub const ECONNREFUSED: i32 = 111;
pub const ETIMEDOUT: i32 = 110;

/// Settings every test wants: no rate limit, no idle exit, and a generous acknowledgement wait
/// for `client::send` (the machine running the tests may be loaded and its disk slow to flush;
/// the default 1 s was seen to expire on the first record while the daemon was still starting).
pub const BASE: &str =
    "rate_limit_enabled=false\ndaemon_recycling_enabled=false\nsend_timeout_ms=15000\n";

pub struct Daemon {
    pub child: Child,
    pub root: tempfile::TempDir,
    pub config_file: PathBuf,
}

impl Daemon {
    /// Starts telemprobd opted in, with `settings` appended to [`BASE`], and waits for its socket.
    pub fn start(settings: &str, args: &[&str]) -> Daemon {
        Self::start_with(settings, args, true)
    }

    pub fn start_with(settings: &str, args: &[&str], opted_in: bool) -> Daemon {
        Self::start_env(settings, args, opted_in, &[])
    }

    /// As [`Daemon::start_with`], with extra environment variables (`RUST_LOG` is otherwise
    /// removed: the daemon logs at its default level).
    pub fn start_env(
        settings: &str,
        args: &[&str],
        opted_in: bool,
        env: &[(&str, &str)],
    ) -> Daemon {
        let root = tempfile::tempdir().unwrap();
        let config_file = root.path().join("telemetrics.conf");
        write_config(&config_file, settings);
        if opted_in {
            opt_in(&Config::load_from(root.path(), Some(&config_file)).unwrap());
        }
        let log = std::fs::File::create(root.path().join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_telemprobd"))
            .arg("-f")
            .arg(&config_file)
            .args(args)
            .env("TELEM_ROOT", root.path())
            .env_remove("TELEM_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            root,
            config_file,
        };
        d.wait_ready();
        d
    }

    pub fn write_config(&self, settings: &str) {
        write_config(&self.config_file, settings);
    }

    pub fn opt_in(&self) {
        opt_in(&self.config());
    }

    /// The configuration as the daemon and the clients see it.
    pub fn config(&self) -> Config {
        Config::load_from(self.root.path(), Some(&self.config_file)).unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.config().socket_path
    }

    pub fn spool(&self) -> PathBuf {
        self.config().spool_dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("daemon.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let sock = self.socket();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("telemprobd exited early ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no socket after 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon still running:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Final (non-dot) spool file names, sorted.
    pub fn spool_files(&self) -> Vec<PathBuf> {
        spool_files(&self.spool())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_config(file: &Path, settings: &str) {
    std::fs::write(file, format!("[settings]\n{BASE}{settings}\n")).unwrap();
}

pub fn opt_in(c: &Config) {
    std::fs::create_dir_all(c.opt_in_file.parent().unwrap()).unwrap();
    std::fs::write(&c.opt_in_file, "").unwrap();
}

pub fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap())
            .filter(|e| !telemetry::spool::is_temporary(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Temporary dot-files that hold data: a record being written or left unfinished. The
/// temporaries the daemon keeps in stock (created ahead of records, empty or holding one block
/// of zeros) are not listed, nor is a file that is gone by the time it is read (the stock is
/// removed when the daemon stops).
pub fn written_temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| telemetry::spool::is_temporary(&e.file_name().to_string_lossy()))
        .filter(|e| match std::fs::read(e.path()) {
            Ok(bytes) => bytes.iter().any(|&b| b != 0),
            Err(err) => err.kind() != std::io::ErrorKind::NotFound,
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn record(payload: &str) -> Record {
    let mut r = Record::new(2, "org.test/probd/record", 1, SysInfo::cached()).unwrap();
    r.set_payload(payload.as_bytes()).unwrap();
    r
}

pub fn frame_of(r: &Record) -> Vec<u8> {
    telemetry::frame::encode(r, None).unwrap()
}

/// Sends raw bytes and returns the status word, or None if the daemon closed without one.
pub fn raw_send(sock: &Path, bytes: &[u8]) -> Option<i32> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    read_status(&mut s)
}

pub fn read_status(s: &mut UnixStream) -> Option<i32> {
    let mut buf = [0u8; 4];
    match s.read_exact(&mut buf) {
        Ok(()) => Some(i32::from_le_bytes(buf)),
        Err(_) => None,
    }
}

/// Where cargo put the workspace's binaries: `<target>/debug` is the parent of the directory
/// holding this test executable (`<target>/debug/deps`).
pub fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join(name)
}
