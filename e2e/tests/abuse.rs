//! One hostile local user against the real telemprobd binary while another user sends: the
//! hostile one (uid 61234) holds 5,000 idle connections (reconnecting those the daemon closes),
//! keeps slowloris senders trickling a byte at a time and floods seeded garbage; meanwhile 8
//! well-behaved senders of uid 61235 send 500 records with the library's default timeout. At
//! least 99 % must be acknowledged, every acknowledged one must be in the spool, and the
//! daemon's peak RSS must stay under its documented bound.
//!
//! Needs root (to send as two other uids; no passwd entry needed): it says it skipped
//! otherwise. The two users are this test binary run again with `setuid`, as the ignored
//! `helper_*` tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::bin;
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use telemetry::{client, Config, Record, SysInfo};

const HOSTILE_UID: u32 = 61234;
const SENDER_UID: u32 = 61235;
const IDLE: usize = 5000;
const SLOWLORIS: usize = 200;
const SENDERS: usize = 8;
const RECORDS: usize = 500;
/// telemprobd's peak RSS bound under abuse, as documented in docs/telemprobd.md.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// The garbage flood's seed (printed on failure, so a run can be repeated).
const SEED: u64 = 0x5eed_18ab_u64;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Raises the descriptor limit to the hard limit; the children inherit it.
fn raise_nofile() -> u64 {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    )
    .unwrap();
    l.maximum.unwrap_or(u64::MAX)
}

/// A temporary root with telemprobd running in it, opted in, defaults otherwise.
struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "run",
            "etc/telemetrics",
            "var/spool/telemetry",
            "var/lib/telemetry",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/telemetrics/opt-in"), "").unwrap();
        std::fs::write(
            root.join("etc/telemetrics/telemetrics.conf"),
            "[settings]\ndaemon_recycling_enabled=false\n",
        )
        .unwrap();
        // The other users must reach the socket and read the configuration.
        for d in [root, &root.join("etc"), &root.join("etc/telemetrics")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let log = std::fs::File::create(root.join("telemprobd.log")).unwrap();
        let child = Command::new(bin("telemprobd"))
            .env("TELEM_ROOT", root)
            .env_remove("TELEM_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon { dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.config().socket_path.exists() {
            assert!(Instant::now() < deadline, "no socket:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> Config {
        Config::load_from(self.root(), None).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("telemprobd.log")).unwrap_or_default()
    }

    /// A field of /proc/<pid>/status in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn stored_payloads(&self) -> Vec<String> {
        let dir = self.config().spool_dir;
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| !telemetry::spool::is_temporary(&e.file_name().to_string_lossy()))
            .map(|e| {
                let s = telemetry::spool::decode(&std::fs::read(e.path()).unwrap()).unwrap();
                String::from_utf8(s.record.payload().to_vec()).unwrap()
            })
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child that is killed when the test ends, also when it fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This test binary, run as `uid` to play `helper`.
fn as_user(uid: u32, helper: &str, root: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        helper,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ABUSE_ROOT", root)
    .uid(uid)
    .gid(uid)
    .stdin(Stdio::null());
    c
}

/// The temporary root the helpers work in; `None` when run on their own (nothing to do).
fn helper_root() -> Option<PathBuf> {
    let root = std::env::var_os("ABUSE_ROOT").map(PathBuf::from);
    if root.is_none() {
        eprintln!("nothing to do: run by the abuse test, with ABUSE_ROOT set");
    }
    root
}

#[test]
fn one_user_abusing_the_socket_does_not_stop_another_users_records() {
    if !is_root() {
        eprintln!("skipped: needs root to act as two other uids");
        return;
    }
    let limit = raise_nofile();
    assert!(
        limit > (IDLE + SLOWLORIS + 200) as u64,
        "RLIMIT_NOFILE hard limit {limit} is too low for {IDLE} connections"
    );
    let d = Daemon::start();

    let mut hostile = Killed(
        as_user(HOSTILE_UID, "helper_hostile_user", d.root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // Wait until the 5,000 connections were made (at most 60 s).
    let mut lines = BufReader::new(hostile.0.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("holding ").map(|(_, n)| n.to_string()))
        .unwrap_or_default();
    assert!(
        !ready.is_empty(),
        "the hostile user did not start\n{}",
        d.log()
    );
    eprintln!("hostile user holding {ready}");
    // Keep its stdout open (a closed pipe would end it at its next line).
    std::thread::spawn(move || lines.for_each(drop));

    let mut peak_rss = 0;
    let sent = as_user(SENDER_UID, "helper_well_behaved_senders", d.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = sent.id();
    let out = {
        let out = std::thread::spawn(move || sent.wait_with_output().unwrap());
        while !out.is_finished() {
            peak_rss = peak_rss.max(d.status_kib("VmRSS:"));
            std::thread::sleep(Duration::from_millis(50));
        }
        out.join().unwrap()
    };
    drop(hostile);
    let text = String::from_utf8_lossy(&out.stdout);
    let acked: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("acked "))
        .collect();
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("failed ")).collect();
    eprintln!(
        "senders (pid {pid}): {} acknowledged, {} failed {:?}; daemon peak RSS {} KiB",
        acked.len(),
        failed.len(),
        &failed[..failed.len().min(5)],
        d.status_kib("VmHWM:")
    );
    assert_eq!(acked.len() + failed.len(), RECORDS, "{text}");
    assert!(
        acked.len() * 100 >= RECORDS * 99,
        "only {} of {RECORDS} acknowledged (seed {SEED:#x}): {failed:?}\n{}",
        acked.len(),
        d.log()
    );
    let stored = d.stored_payloads();
    for p in &acked {
        assert!(
            stored.iter().any(|s| s == p),
            "{p} acknowledged but not in the spool"
        );
    }
    assert!(
        !stored.iter().any(|s| !s.starts_with("well-behaved ")),
        "nothing of the hostile user's is stored"
    );
    let hwm = d.status_kib("VmHWM:");
    assert!(
        hwm < RSS_BOUND_KIB && peak_rss < RSS_BOUND_KIB,
        "daemon peak RSS {hwm} KiB over {RSS_BOUND_KIB} KiB"
    );
}

/// Not a test: the 8 senders of [`one_user_abusing_the_socket_does_not_stop_another_users_records`],
/// run as uid 61235. Prints `acked <payload>` or `failed <payload>: <error>` per record.
#[test]
#[ignore = "a helper the abuse test runs as another uid"]
fn helper_well_behaved_senders() {
    let Some(root) = helper_root() else {
        return;
    };
    let mut config = Config::load_from(&root, None).unwrap();
    // The library's default acknowledgement timeout, whatever the file says.
    config.send_timeout_ms = Config::defaults(&root).send_timeout_ms;
    let config = Arc::new(config);
    let threads: Vec<_> = (0..SENDERS)
        .map(|t| {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                for i in (t..RECORDS).step_by(SENDERS) {
                    let payload = format!("well-behaved {i:03}");
                    let mut r =
                        Record::new(2, "org.test/abuse/sender", 1, SysInfo::cached()).unwrap();
                    r.set_payload(payload.as_bytes()).unwrap();
                    match client::send(&r, &config) {
                        Ok(()) => lines.push(format!("acked {payload}")),
                        Err(e) => lines.push(format!("failed {payload}: {e}")),
                    }
                    // Probes send now and then, not back to back.
                    std::thread::sleep(Duration::from_millis(5));
                }
                lines
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for t in threads {
        for l in t.join().unwrap() {
            writeln!(out, "\n{l}").unwrap();
        }
    }
}

/// A connection to the socket whose `connect` gives up after `timeout` (a full backlog).
fn connect(sock: &Path, timeout: Duration) -> Option<UnixStream> {
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .ok()?;
    set_socket_timeout(&fd, Timeout::Send, Some(timeout)).ok()?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(sock).ok()?).ok()?;
    Some(UnixStream::from(fd))
}

/// Whether the daemon closed (or answered) the connection.
fn closed_by_daemon(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 8];
    match rustix::net::recv(&*s, &mut b, rustix::net::RecvFlags::DONTWAIT) {
        Ok(_) => true,
        Err(e) => e != rustix::io::Errno::AGAIN,
    }
}

/// xorshift64*: the garbage flood's bytes, repeatable from [`SEED`].
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Not a test: the hostile user, run as uid 61234 until killed (at most two minutes). Prints
/// `holding N` once its idle connections are made.
#[test]
#[ignore = "a helper the abuse test runs as another uid"]
fn helper_hostile_user() {
    let Some(root) = helper_root() else {
        return;
    };
    let sock = Config::load_from(&root, None).unwrap().socket_path;
    let end = Instant::now() + Duration::from_secs(120);
    let short = Duration::from_millis(100);

    // Slowloris: start a frame that declares the largest size, then a byte every 200 ms.
    let s = sock.clone();
    std::thread::spawn(move || {
        let mut conns: Vec<Option<UnixStream>> = (0..SLOWLORIS).map(|_| None).collect();
        while Instant::now() < end {
            for c in &mut conns {
                if c.as_mut().is_none_or(closed_by_daemon) {
                    *c = connect(&s, short).map(|mut c| {
                        let size = telemetry::frame::MAX_FRAME as u32;
                        let _ = c.write_all(&size.to_le_bytes());
                        c
                    });
                }
                if let Some(c) = c {
                    let _ = rustix::net::send(&*c, b"x", rustix::net::SendFlags::DONTWAIT);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });

    // Garbage: random sizes and bytes on fresh connections, as fast as answers come.
    let s = sock.clone();
    std::thread::spawn(move || {
        let mut rng = Rng(SEED);
        while Instant::now() < end {
            let Some(mut c) = connect(&s, short) else {
                continue;
            };
            let len = (rng.next() % 300) as usize + 1;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if rng.next() % 2 == 0 && len >= 4 {
                // Half of them with a plausible size word, so they get past the first check.
                bytes[..4].copy_from_slice(&(len as u32).to_le_bytes());
            }
            let _ = c.write_all(&bytes);
            let _ = c.set_read_timeout(Some(short));
            let _ = c.read(&mut [0u8; 4]);
        }
    });

    // Idle: 5,000 connections that never send, each reopened when the daemon closes it.
    let mut idle: Vec<Option<UnixStream>> = Vec::with_capacity(IDLE);
    while idle.len() < IDLE && Instant::now() < end {
        idle.push(connect(&sock, short));
    }
    println!(
        "holding {} of {IDLE} connections",
        idle.iter().flatten().count()
    );
    let _ = std::io::stdout().flush();
    while Instant::now() < end {
        for c in &mut idle {
            if c.as_mut().is_none_or(closed_by_daemon) {
                *c = connect(&sock, short);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
