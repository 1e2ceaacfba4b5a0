//! Test environment: a temp root with opt-in file, config and spool; records written the way
//! telemprobd writes them; the real binary started with `-f` and `TELEM_ROOT`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use telemetry::journal::{self, Entry};
use telemetry::record::{Header, Record};
use telemetry::{spool, Config, SysInfo};

pub const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub spool: PathBuf,
    pub conf: PathBuf,
    seq: u64,
}

impl Env {
    /// A root with the opt-in file, an empty spool and a config naming `server` plus `extra`
    /// `[settings]` lines. Rate limiting and recycling are off unless `extra` turns them on.
    pub fn new(server: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("etc/telemetrics")).unwrap();
        fs::write(root.join("etc/telemetrics/opt-in"), "").unwrap();
        let spool = root.join("var/spool/telemetry");
        fs::create_dir_all(&spool).unwrap();
        let conf = root.join("etc/telemetrics/telempostd-test.conf");
        let env = Env {
            _dir: dir,
            root,
            spool,
            conf,
            seq: 0,
        };
        env.write_config(server, extra);
        env
    }

    pub fn write_config(&self, server: &str, extra: &str) {
        let text = format!(
            "[settings]\nserver={server}\nrate_limit_enabled=false\ndaemon_recycling_enabled=false\n{extra}\n"
        );
        fs::write(&self.conf, text).unwrap();
    }

    pub fn config(&self) -> Config {
        Config::load_from(&self.root, Some(&self.conf)).unwrap()
    }

    pub fn journal(&self) -> Vec<Entry> {
        journal::read(&self.config().journal_file).unwrap()
    }

    pub fn status(&self) -> Option<telemetry::status::DaemonStatus> {
        telemetry::status::read(&telemetry::status::path(&self.config(), "telempostd")).unwrap()
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.status()
            .and_then(|s| s.counters.get(name).copied())
            .unwrap_or(0)
    }

    /// Names in the spool, dot-files included.
    pub fn spool_files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Writes a record like telemprobd: a dot-file, then a rename to a name that sorts in
    /// creation order.
    pub fn spool(&mut self, rec: &Record, cfg: Option<&Path>) -> String {
        self.seq += 1;
        let name = spool::file_name(self.seq);
        let tmp = self.spool.join(spool::temp_name(&name));
        fs::write(&tmp, spool::encode(rec, cfg)).unwrap();
        fs::rename(&tmp, self.spool.join(&name)).unwrap();
        name
    }

    /// What one spool file counts against the quota.
    pub fn allocated(&self, name: &str) -> u64 {
        telemetry::spool::quota_cost(fs::metadata(self.spool.join(name)).unwrap().len())
    }

    /// Starts the real binary with `-f <conf>`, `TELEM_ROOT=<root>` and extra arguments.
    pub fn start(&self, args: &[&str]) -> Daemon {
        self.start_env(args, &[])
    }

    /// [`Env::start`] with extra environment variables (set after the proxy variables of the
    /// test's own environment are removed).
    pub fn start_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Daemon {
        let log = self.root.join(format!("telempostd-{}.log", self.seq_log()));
        let child = Command::new(env!("CARGO_BIN_EXE_telempostd"))
            .arg("-f")
            .arg(&self.conf)
            .args(args)
            .env("TELEM_ROOT", &self.root)
            .env("RUST_LOG", "telempostd=debug,info")
            .env_remove("TELEM_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            log,
        }
    }

    fn seq_log(&self) -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }
}

/// A running telempostd; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.wait(Duration::from_secs(15))
            .expect("telempostd did not exit after SIGTERM")
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().unwrap();
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// kill -9.
    pub fn kill9(mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- telempostd log ---\n{}", self.log_text());
        }
    }
}

/// System facts with spaces and an empty value, valid for the collector.
pub fn tricky_sysinfo() -> SysInfo {
    SysInfo {
        arch: "x86_64".into(),
        host_type: "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2".into(),
        build: "40000".into(),
        kernel_version: "6.1.0-13-amd64".into(),
        system_name: "clear-linux-os".into(),
        board_name: String::new(),
        cpu_model: "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz".into(),
        bios_version: "1.16.0-debian 1.16.0-5".into(),
    }
}

/// A record as probes make it, with telemprobd's machine id.
pub fn record_with(sys: &SysInfo, class: &str, payload: &str) -> Record {
    let mut r = Record::new(2, class, 1, sys).unwrap();
    r.set_machine_id(MACHINE_ID).unwrap();
    r.set_payload(payload.as_bytes()).unwrap();
    r
}

pub fn record(payload: &str) -> Record {
    record_with(SysInfo::cached(), "org.clearlinux/test/record", payload)
}

/// The same record with another creation timestamp.
pub fn with_created(r: &Record, ts: u64) -> Record {
    let mut v = r.values().clone();
    v[Header::CreationTimestamp as usize] = ts.to_string();
    Record::from_parts(v, r.payload().to_vec()).unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn event_id(r: &Record) -> String {
    r.get(Header::EventId).to_string()
}

/// Event ids the collector stored, in arrival order.
pub fn stored_ids(c: &telem_collector::Collector) -> Vec<String> {
    c.records()
        .iter()
        .map(|r| r.headers.get("event-id").cloned().unwrap_or_default())
        .collect()
}

/// Fast retries for tests: base 200 ms, cap 1 s, scans every 300 ms, 2 s request timeout.
pub const FAST: &[&str] = &[
    "--retry-base-ms",
    "200",
    "--retry-cap-ms",
    "1000",
    "--scan-interval-ms",
    "300",
    "--http-timeout-ms",
    "2000",
    "--connect-timeout-ms",
    "1000",
];
