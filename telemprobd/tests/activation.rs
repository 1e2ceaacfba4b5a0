//! systemd integration without systemd: a socket passed as fd 3 with LISTEN_FDS, and READY=1
//! sent to NOTIFY_SOCKET.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rustix::process::Signal;
use telemetry::client;

#[test]
fn socket_activation_and_readiness_notification() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("telemetrics.conf");
    write_config(&conf, "");
    let config = telemetry::Config::load_from(root.path(), Some(&conf)).unwrap();
    opt_in(&config);
    std::fs::create_dir_all(config.socket_path.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&config.socket_path).unwrap();
    let notify_path = root.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    // The listening socket goes in as stdin; the shell moves it to fd 3 and execs the daemon
    // under its own pid, as systemd would hand it over.
    let log = std::fs::File::create(root.path().join("daemon.log")).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" -f "$1""#)
        .arg(env!("CARGO_BIN_EXE_telemprobd"))
        .arg(&conf)
        .env("TELEM_ROOT", root.path())
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stderr(log)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(root.path().join("daemon.log")).unwrap_or_default();

    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification ({e}):\n{}", log()));
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    client::send(&record("through the passed socket"), &config).unwrap();
    assert_eq!(spool_files(&config.spool_dir).len(), 1);
    assert!(
        log().contains("using the socket passed by systemd"),
        "{}",
        log()
    );

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::TERM).unwrap();
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "{}", log());
    assert!(
        config.socket_path.exists(),
        "systemd's socket file is not ours to remove"
    );
}
