//! Under systemd the daemons log to the journal, natively (structured fields, their own
//! `SYSLOG_IDENTIFIER`), and not to stderr; when the journal is not there they say so and log to
//! stderr. The journal's socket has a fixed path (`/run/systemd/journal/socket`), so each
//! daemon runs in a private mount namespace (`unshare`) whose `/run` is a directory of the
//! test's, where the test listens on that socket: the real journal is never touched, and no
//! root is needed where unprivileged user namespaces are allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use e2e::bin;

/// One journal entry as the native protocol carries it.
type Entry = HashMap<String, Vec<u8>>;

/// Parses one datagram of the journal's native protocol: `KEY=value\n`, or for values that may
/// hold a newline `KEY\n`, a 64-bit little-endian length, the value, `\n`.
fn parse(mut d: &[u8]) -> Entry {
    let mut e = Entry::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("field without newline");
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            e.insert(
                String::from_utf8(line[..eq].to_vec()).unwrap(),
                line[eq + 1..].to_vec(),
            );
            d = &d[nl + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).unwrap();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            e.insert(key, rest[8..8 + len].to_vec());
            assert_eq!(rest[8 + len], b'\n', "binary field not terminated");
            d = &rest[8 + len + 1..];
        }
    }
    e
}

fn field<'a>(e: &'a Entry, k: &str) -> Option<&'a str> {
    e.get(k).and_then(|v| std::str::from_utf8(v).ok())
}

/// A temporary root for one daemon, and a directory that becomes its `/run`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in [
            "root/run",
            "root/etc/telemetrics",
            "root/var/spool/telemetry",
            "root/var/lib/telemetry",
            "root/var/log/telemetry/records",
            "run",
        ] {
            std::fs::create_dir_all(s.dir.path().join(d)).unwrap();
        }
        std::fs::write(
            s.dir.path().join("root/etc/telemetrics/telemetrics.conf"),
            "[settings]\nserver=http://127.0.0.1:9/v2/collector\ndaemon_recycling_enabled=false\n",
        )
        .unwrap();
        s
    }

    /// Listens where the journal would, inside the daemon's namespace.
    fn journal(&self) -> UnixDatagram {
        let dir = self.dir.path().join("run/systemd/journal");
        std::fs::create_dir_all(&dir).unwrap();
        let sock = UnixDatagram::bind(dir.join("socket")).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Starts `program` as systemd would start a service (`INVOCATION_ID`, `JOURNAL_STREAM`)
    /// with `<dir>/run` mounted on `/run` in a mount namespace of its own. `unshare` and `sh`
    /// `exec`, so the child's pid is the daemon's.
    fn start(&self, program: &Path) -> Child {
        Command::new("unshare")
            .args(["--mount", "--map-root-user", "--propagation", "private"])
            .args(["sh", "-c", r#"mount --bind "$0" /run && exec "$@""#])
            .arg(self.dir.path().join("run"))
            .arg(program)
            .env("TELEM_ROOT", self.dir.path().join("root"))
            .env("INVOCATION_ID", "5e1d8d2c3f0a4b6e9c7d1a2b3c4d5e6f")
            .env("JOURNAL_STREAM", "8:12345")
            .env_remove("TELEM_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.stderr_path()).unwrap())
            .spawn()
            .expect("running unshare (util-linux)")
    }
}

/// Reads journal entries until one satisfies `want`; fails on timeout or if the daemon exits
/// first. Returns every entry read so far.
fn read_until(
    sock: &UnixDatagram,
    child: &mut Child,
    setup: &Setup,
    want: impl Fn(&Entry) -> bool,
    seen: &mut Vec<Entry>,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if seen.iter().any(&want) {
            return;
        }
        match sock.recv(&mut buf) {
            // tracing-journald checks the socket with an empty datagram first.
            Ok(0) => {}
            Ok(n) => seen.push(parse(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the journal socket: {e}"),
        }
        if let Some(st) = child.try_wait().unwrap() {
            // Drain what it sent before exiting.
            while let Ok(n) = sock.recv(&mut buf) {
                if n > 0 {
                    seen.push(parse(&buf[..n]));
                }
            }
            assert!(
                seen.iter().any(&want),
                "exited ({st}) before logging what was expected; journal: {seen:?}; stderr:\n{}",
                setup.stderr()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing expected in the journal after 20 s; journal: {seen:?}; stderr:\n{}",
            setup.stderr()
        );
    }
}

fn message(ident: &'static str, text: &'static str) -> impl Fn(&Entry) -> bool {
    move |e| field(e, "SYSLOG_IDENTIFIER") == Some(ident) && field(e, "MESSAGE") == Some(text)
}

fn terminate(child: &mut Child) -> ExitStatus {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `name` under systemd-like conditions with a journal, checks that `started` and, after
/// SIGTERM, `stopped` arrive there with the right identifier and priority, and that stderr got
/// none of it.
fn logs_to_the_journal(name: &'static str, started: &'static str, stopped: &'static str) {
    let setup = Setup::new();
    let journal = setup.journal();
    let mut child = setup.start(&bin(name));
    let mut seen = Vec::new();
    read_until(
        &journal,
        &mut child,
        &setup,
        message(name, started),
        &mut seen,
    );
    let status = terminate(&mut child);
    read_until(
        &journal,
        &mut child,
        &setup,
        message(name, stopped),
        &mut seen,
    );
    assert!(status.success(), "{name} exited with {status}");

    let entry = seen.iter().find(|e| message(name, started)(e)).unwrap();
    // tracing's INFO is the journal's NOTICE (5); the code location and target come along.
    assert_eq!(field(entry, "PRIORITY"), Some("5"), "{entry:?}");
    assert!(field(entry, "CODE_FILE").is_some(), "{entry:?}");
    assert!(
        field(entry, "TARGET").is_some_and(|t| t.starts_with(name)),
        "{entry:?}"
    );
    let err = setup.stderr();
    assert!(
        !err.contains(started) && !err.contains(stopped),
        "{name} also logged to stderr:\n{err}"
    );
}

#[test]
fn telemprobd_logs_to_the_journal_under_systemd() {
    logs_to_the_journal("telemprobd", "ready", "stopped");
}

#[test]
fn telempostd_logs_to_the_journal_under_systemd() {
    logs_to_the_journal("telempostd", "telempostd started", "telempostd stopped");
}

#[test]
fn without_a_journal_the_daemons_say_so_and_log_to_stderr() {
    for (name, started) in [
        ("telemprobd", "ready"),
        ("telempostd", "telempostd started"),
    ] {
        // No socket in the private /run: systemd's variables are set, the journal is absent.
        let setup = Setup::new();
        let mut child = setup.start(&bin(name));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !setup.stderr().contains(started) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{name} exited:\n{}",
                setup.stderr()
            );
            assert!(
                Instant::now() < deadline,
                "{name}: nothing on stderr:\n{}",
                setup.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(terminate(&mut child).success());
        let err = setup.stderr();
        assert!(
            err.contains(&format!("{name}: journald not reachable")),
            "{name}:\n{err}"
        );
        // A file is not a terminal: no colour escapes in it.
        assert!(!err.contains('\x1b'), "{name}: escape codes in\n{err}");
    }
}
