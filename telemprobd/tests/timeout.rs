//! What a sender's -ETIMEDOUT means: the daemon was slow (stopped here; a disk stalled in
//! `fsync` looks the same to the sender), the frame may already be in, and the record may be
//! stored once the daemon goes on. The default wait outlasts a stall of seconds, and a retry of
//! the same record after a timeout is answered 0 without storing it twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rustix::process::Signal;
use telemetry::client;
use telemetry::error::Error;

/// The daemon's config as a sender sees it, with the library's default acknowledgement wait.
fn default_wait(d: &Daemon) -> telemetry::Config {
    let mut c = d.config();
    c.send_timeout_ms = telemetry::Config::defaults(Path::new("/")).send_timeout_ms;
    c
}

fn wait_for_files(d: &Daemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.spool_files().len() < n {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            d.spool_files(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_daemon_stalled_for_two_seconds_still_acknowledges_within_the_default_wait() {
    let d = Daemon::start("", &[]);
    let c = default_wait(&d);
    // Warm: the first record opens the spool's files.
    client::send(&record("warm"), &c).unwrap();
    d.signal(Signal::STOP);
    let sender = std::thread::spawn(move || client::send(&record("stalled"), &c));
    std::thread::sleep(Duration::from_secs(2));
    d.signal(Signal::CONT);
    let r = sender.join().unwrap();
    assert!(r.is_ok(), "{r:?}\n{}", d.log());
    assert_eq!(d.spool_files().len(), 2);
}

#[test]
fn a_retry_after_a_timeout_is_answered_0_and_stored_once() {
    let d = Daemon::start("", &[]);
    let mut c = d.config();
    client::send(&record("warm"), &c).unwrap();
    c.send_timeout_ms = 300;
    let r = record("sent while the daemon was stopped");
    d.signal(Signal::STOP);
    let e = client::send(&r, &c).unwrap_err();
    assert!(matches!(e, Error::AckTimeout), "{e}");
    assert_eq!(e.errno(), ETIMEDOUT);
    d.signal(Signal::CONT);
    // The frame was in the socket: the record is stored after all.
    wait_for_files(&d, 2);
    // The caller could not know, and tries again: the same record is not stored twice.
    client::send(&r, &default_wait(&d)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.spool_files().len(), 2, "{}", d.log());
}
