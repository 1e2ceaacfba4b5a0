//! Test environment: a temporary root (`TELEM_ROOT`) with the default paths below it, a fake
//! telemprobd on a real Unix socket, and helpers to run the probe binaries.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use telemetry::record::{Header, Record};

/// A temporary root with the telemetry paths below it.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

/// What [`TestEnv::elsewhere`] made.
pub struct Elsewhere {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub conf: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["etc/telemetrics", "run", "var/lib/telemetry"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        TestEnv { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The default socket below the root.
    pub fn socket(&self) -> PathBuf {
        self.path("run/telem-0")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("var/lib/telemetry")
    }

    /// A config file outside the root (for the `-f` tests): it moves the socket and the opt-in
    /// file (created: opted in) to `<root>/elsewhere`, and each key in `dirs` (e.g. `state_dir`)
    /// to `<root>/elsewhere/<key>`.
    pub fn elsewhere(&self, dirs: &[&str]) -> Elsewhere {
        let dir = self.path("elsewhere");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (sock, optin) = (dir.join("sock"), dir.join("optin"));
        std::fs::write(&optin, "").expect("opt in");
        let mut text = format!(
            "[settings]\nsocket_path={}\nopt_in_file={}\n",
            sock.display(),
            optin.display()
        );
        for key in dirs {
            text.push_str(&format!("{key}={}\n", dir.join(key).display()));
        }
        let conf = dir.join("probe.conf");
        std::fs::write(&conf, text).expect("config");
        Elsewhere { dir, sock, conf }
    }

    pub fn opt_in(&self) {
        std::fs::write(self.path("etc/telemetrics/opt-in"), "").expect("opt in");
    }

    pub fn lift_privacy_filters(&self) {
        std::fs::write(self.path("etc/telemetrics/opt-in-no-privacy-filters"), "").expect("write");
    }

    /// A fake daemon on the default socket.
    pub fn daemon(&self) -> FakeDaemon {
        FakeDaemon::start(&self.socket())
    }

    /// A probe binary with this root and no inherited config override.
    pub fn cmd(&self, exe: &str) -> Command {
        let mut c = Command::new(exe);
        c.env("TELEM_ROOT", self.root())
            .env_remove("TELEM_CONFIG")
            .env_remove("container")
            .env("RUST_LOG", "warn");
        // crashprobe run as root drops to this user: ours, not a `telemetry` user of the host
        // (who could not enter our 0700 temporary directory).
        let uid = nix::unistd::geteuid();
        if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
            c.env("TELEM_PROBE_USER", user.name);
        }
        c
    }
}

/// Runs a command with a time limit (every probe here ends on its own).
pub fn run(cmd: &mut Command) -> Output {
    use std::process::Stdio;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("output"),
        Err(_) => panic!("command did not finish within 60 s: {cmd:?}"),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A stand-in for telemprobd: accepts frames on a Unix socket, decodes them with libtelemetry,
/// keeps the records, answers status 0.
pub struct FakeDaemon {
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    pub fn start(path: &Path) -> FakeDaemon {
        let listener = UnixListener::bind(path).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (records.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &r),
                    // Polling the non-blocking listener until the test is done.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeDaemon {
            records,
            stop,
            thread: Some(thread),
        }
    }

    /// The records received so far (each answered before the sender returned).
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().expect("lock").clone()
    }

    pub fn payloads(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
            .collect()
    }

    pub fn classifications(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r.get(Header::Classification).to_string())
            .collect()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one frame, keeps its record, then answers 0. Kept first: a test that looks right
/// after the sender returned must find it (answering first lost that race under load).
fn serve(mut stream: UnixStream, records: &Mutex<Vec<Record>>) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .is_err()
    {
        return;
    }
    let Ok(frame) = telemetry::frame::read_from(&mut stream) else {
        return;
    };
    let decoded = telemetry::frame::decode(&frame).expect("valid frame");
    decoded.record.validate().expect("valid record");
    records.lock().expect("lock").push(decoded.record);
    let _ = stream.write_all(&0i32.to_le_bytes());
}

/// Records printed by `--dry-run`: each is 15 header lines, the payload, one empty line.
/// Returns (headers, payload) pairs.
pub fn dry_run_records(out: &str) -> Vec<(Vec<String>, String)> {
    let mut records = Vec::new();
    let lines: Vec<&str> = out.split_inclusive('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        assert!(
            lines[i].starts_with("record_format_version: "),
            "record must start with the headers, got {:?}",
            lines[i]
        );
        let headers: Vec<String> = lines[i..i + 15]
            .iter()
            .map(|l| l.trim_end_matches('\n').to_string())
            .collect();
        i += 15;
        let mut payload = String::new();
        // The empty line that ends a record is followed by the next record or the end.
        while i < lines.len()
            && !(lines[i] == "\n"
                && lines
                    .get(i + 1)
                    .is_none_or(|l| l.starts_with("record_format_version: ")))
        {
            payload.push_str(lines[i]);
            i += 1;
        }
        i += 1;
        records.push((headers, payload));
    }
    records
}

/// The value of a header in dry-run output.
pub fn header<'a>(headers: &'a [String], name: &str) -> &'a str {
    headers
        .iter()
        .find_map(|h| h.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no header {name}"))
}
