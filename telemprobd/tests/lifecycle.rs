//! Signals, reload, quota, rate limiting, idle exit, status file, command line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rustix::process::Signal;
use telemetry::{client, Error};

/// Sends until `want` (Ok = None, Err = Some(errno)) comes back, bounded; for waiting on a reload.
fn send_until(d: &Daemon, want: Option<i32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = match client::send(&record("waiting for reload"), &d.config()) {
            Ok(()) => None,
            Err(e) => Some(e.errno()),
        };
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got:?}, wanted {want:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_exits_zero_and_removes_the_socket() {
    let mut d = Daemon::start("", &[]);
    client::send(&record("before stop"), &d.config()).unwrap();
    d.signal(Signal::TERM);
    let st = d.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!d.socket().exists(), "socket file removed");
    assert_eq!(d.spool_files().len(), 1);
    // The final status file counts what happened.
    let status = telemetry::status::read(&telemetry::status::path(&d.config(), "telemprobd"))
        .unwrap()
        .unwrap();
    assert_eq!(status.counters["received"], 1);
    assert_eq!(status.counters["stored"], 1);
    // The quota's count is the stored file's size in whole quota blocks.
    let size = std::fs::metadata(&d.spool_files()[0]).unwrap().len();
    assert_eq!(
        status.counters["quota_used_bytes"],
        telemetry::spool::quota_cost(size)
    );
}

#[test]
fn sigint_exits_zero_too_and_a_stale_socket_is_replaced() {
    let mut d = Daemon::start("", &[]);
    d.signal(Signal::INT);
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    // A stale socket file (daemon killed) does not stop the next start.
    let sock = d.socket();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let log = std::fs::File::create(d.root.path().join("daemon2.log")).unwrap();
    d.child = Command::new(env!("CARGO_BIN_EXE_telemprobd"))
        .arg("--config_file")
        .arg(&d.config_file)
        .env("TELEM_ROOT", d.root.path())
        .stderr(log)
        .spawn()
        .unwrap();
    send_until(&d, None);
}

#[test]
fn quota_full_answers_enospc_and_sighup_raises_it() {
    // 8 KiB holds two records: each counts as a whole 4 KiB block.
    let d = Daemon::start("spool_max_size=8\n", &[]);
    let c = d.config();
    let mut stored = 0;
    let err = loop {
        match client::send(&record("fill"), &c) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 10, "quota not enforced");
    };
    assert!(matches!(err, Error::Refused(28)), "{err:?}");
    assert!(stored >= 1);
    assert_eq!(d.spool_files().len(), stored);
    let used: u64 = d
        .spool_files()
        .iter()
        .map(|f| telemetry::spool::quota_cost(std::fs::metadata(f).unwrap().len()))
        .sum();
    assert!(used <= 8 * 1024);
    // Still full for the next one; nothing written.
    assert_eq!(
        raw_send(&d.socket(), &frame_of(&record("x"))),
        Some(-ENOSPC)
    );
    assert_eq!(d.spool_files().len(), stored);

    d.write_config("spool_max_size=100\n");
    d.signal(Signal::HUP);
    send_until(&d, None);
    assert_eq!(d.spool_files().len(), stored + 1);
}

#[test]
fn rate_limit_drop_answers_ebusy_and_reload_switches_to_spool() {
    let limits = "rate_limit_enabled=true\nrecord_burst_limit=2\nrecord_window_length=5\n";
    let d = Daemon::start(&format!("{limits}rate_limit_strategy=drop\n"), &[]);
    let c = d.config();
    client::send(&record("1"), &c).unwrap();
    client::send(&record("2"), &c).unwrap();
    let err = client::send(&record("3"), &c).unwrap_err();
    assert_eq!(err.errno(), EBUSY, "{err:?}");
    assert_eq!(d.spool_files().len(), 2, "dropped record not stored");

    // strategy spool: over the limit, stored anyway (telempostd paces delivery).
    d.write_config(&format!("{limits}rate_limit_strategy=spool\n"));
    d.signal(Signal::HUP);
    send_until(&d, None);
    client::send(&record("5"), &c).unwrap();
    assert_eq!(d.spool_files().len(), 4);
    let status = telemetry::status::path(&c, "telemprobd");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = telemetry::status::read(&status).unwrap().unwrap();
        if st.counters["rate_limited"] >= 3 && st.counters["stored"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "status not updated: {st:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn byte_limit_counts_payload_bytes() {
    let d = Daemon::start(
        "rate_limit_enabled=true\nrate_limit_strategy=drop\nbyte_burst_limit=100\nbyte_window_length=5\n",
        &[],
    );
    let c = d.config();
    client::send(&record(&"a".repeat(60)), &c).unwrap();
    assert_eq!(
        client::send(&record(&"b".repeat(41)), &c)
            .unwrap_err()
            .errno(),
        EBUSY
    );
    client::send(&record(&"c".repeat(40)), &c).unwrap();
    assert_eq!(d.spool_files().len(), 2);
}

#[test]
fn idle_daemon_exits_when_recycling_is_enabled() {
    let mut d = Daemon::start(
        "daemon_recycling_enabled=true\n",
        &["--idle-exit-secs", "1"],
    );
    client::send(&record("one"), &d.config()).unwrap();
    let st = d.wait_exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!d.socket().exists());
    assert_eq!(d.spool_files().len(), 1);
}

#[test]
fn status_file_is_written_while_running() {
    let d = Daemon::start("", &[]);
    let c = d.config();
    client::send(&record("counted"), &c).unwrap();
    let _ = raw_send(&d.socket(), &3u32.to_le_bytes());
    let path = telemetry::status::path(&c, "telemprobd");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(st)) = telemetry::status::read(&path) {
            if st.counters.get("stored") == Some(&1) && st.counters.get("rejected") == Some(&1) {
                assert_eq!(st.pid, d.child.id());
                break;
            }
        }
        assert!(Instant::now() < deadline, "status file not updated");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn command_line() {
    let bin = env!("CARGO_BIN_EXE_telemprobd");
    let v = Command::new(bin).arg("-V").output().unwrap();
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    let h = Command::new(bin).arg("-h").output().unwrap();
    assert!(h.status.success());
    assert!(String::from_utf8_lossy(&h.stdout).contains("--config-file"));
    assert_eq!(
        Command::new(bin)
            .arg("--nope")
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .arg("-f")
        .arg(d.path().join("missing.conf"))
        .env("TELEM_ROOT", d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.conf"));
    let bad = d.path().join("bad.conf");
    std::fs::write(&bad, "[settings]\nrate_limit_enabled=lots\n").unwrap();
    let out = Command::new(bin)
        .arg("-f")
        .arg(&bad)
        .env("TELEM_ROOT", d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.conf:2"));
}

/// Threads and voluntary + involuntary context switches of a process, over all its threads.
fn threads_and_switches(pid: u32) -> (usize, u64) {
    let mut threads = 0;
    let mut switches = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        threads += 1;
        for l in s.lines() {
            if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap();
            }
        }
    }
    (threads, switches)
}

#[test]
fn after_a_burst_the_daemon_is_one_thread_that_no_timer_wakes() {
    let d = Daemon::start("", &[]);
    let c = d.config();
    // Eight senders at once: the writer and its sync threads have work.
    std::thread::scope(|s| {
        for t in 0..8 {
            let c = &c;
            s.spawn(move || {
                for i in 0..5 {
                    client::send(&record(&format!("burst {t} {i}")), c).unwrap();
                }
            });
        }
    });
    assert_eq!(d.spool_files().len(), 40);
    let pid = d.child.id();
    // The helper threads end after their keep-alive (10 s); the bound is generous.
    let deadline = Instant::now() + Duration::from_secs(90);
    while threads_and_switches(pid).0 > 1 {
        assert!(
            Instant::now() < deadline,
            "still {} threads:\n{}",
            threads_and_switches(pid).0,
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Idle, nothing wakes it: a timer every second would show 5 here.
    let (_, before) = threads_and_switches(pid);
    std::thread::sleep(Duration::from_secs(5));
    let (threads, after) = threads_and_switches(pid);
    assert_eq!(threads, 1);
    assert!(after - before <= 2, "{} wake-ups in 5 s", after - before);
    // And it still serves.
    client::send(&record("after the pause"), &c).unwrap();
    assert_eq!(d.spool_files().len(), 41);
}
