//! The opted-in `TELEM_ROOT` that both crashprobe test binaries (`crashprobe.rs`,
//! `crashprobe_journal.rs`) run the real binary in.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

pub const EXE: &str = env!("CARGO_BIN_EXE_crashprobe");

/// A temporary root with `etc/telemetrics/opt-in`.
pub struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc/telemetrics")).unwrap();
        fs::write(dir.path().join("etc/telemetrics/opt-in"), "").unwrap();
        Root { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Treat every binary as "ours": tests build theirs under /tmp (third party otherwise).
    pub fn lift_privacy_filters(&self) {
        fs::write(
            self.path()
                .join("etc/telemetrics/opt-in-no-privacy-filters"),
            "",
        )
        .unwrap();
    }

    /// crashprobe with this root, no configuration from the test's environment, and the
    /// test's own user to drop to (see [`own_user`]).
    pub fn command(&self) -> Command {
        let mut c = Command::new(EXE);
        c.env("TELEM_ROOT", self.path())
            .env_remove("TELEM_CONFIG")
            .env("TELEM_PROBE_USER", own_user());
        c
    }
}

/// The user running the test. Run as root, crashprobe drops to `telemetry` if the host has that
/// user, who cannot enter the test's 0700 temporary directory; naming our own user keeps the
/// test independent of the host's users.
pub fn own_user() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fake telemprobd on `<root>/run/telem-0`: accepts `n` records, answering status 0.
pub fn daemon(root: &Root, n: usize) -> std::thread::JoinHandle<Vec<telemetry::record::Record>> {
    use std::io::Write;
    fs::create_dir_all(root.path().join("run")).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(root.path().join("run/telem-0")).unwrap();
    std::thread::spawn(move || {
        let mut records = Vec::new();
        for _ in 0..n {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let frame = telemetry::frame::read_from(&mut conn).unwrap();
            conn.write_all(&0i32.to_le_bytes()).unwrap();
            records.push(telemetry::frame::decode(&frame).unwrap().record);
        }
        records
    })
}
