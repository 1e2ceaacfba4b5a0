//! kill -9 in the middle of a delivery: after a restart every record arrives (at least once).
//! Also SIGTERM, SIGHUP, and a configuration that does not load.

use std::time::Duration;

use telem_collector::{Collector, Fault, Options};

use crate::common::*;

#[test]
fn kill_9_mid_delivery_then_restart_delivers_everything() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let recs: Vec<_> = (0..6).map(|i| record(&format!("crash {i}"))).collect();
    for r in &recs {
        env.spool(r, None);
    }
    // Every answer takes 700 ms, so a kill lands while a POST is in flight.
    c.push_fault(Fault::Delay(Duration::from_millis(700)), 100);
    let d = env.start(FAST);
    assert!(
        c.wait_for_records(1, Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    d.kill9();
    let after_kill = c.records().len();
    assert!(after_kill < recs.len(), "killed too late to test anything");
    assert!(!env.spool_files().is_empty());
    c.clear_faults();
    let d = env.start(FAST);
    assert!(
        wait_until(Duration::from_secs(15), || env.spool_files().is_empty()),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    let ids = stored_ids(&c);
    for r in &recs {
        assert!(ids.contains(&event_id(r)), "lost {}", event_id(r));
    }
    // At most the record in flight at the kill can have been delivered twice.
    assert!(ids.len() <= recs.len() + 1, "{ids:?}");
}

#[test]
fn sigterm_finishes_the_post_in_flight_then_exits_0() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let r = record("in flight");
    env.spool(&r, None);
    c.push_fault(Fault::Delay(Duration::from_millis(1500)), 1);
    let d = env.start(FAST);
    // TERM once the POST has reached the collector (which holds its answer for 1.5 s).
    assert!(wait_until(Duration::from_secs(10), || !c
        .requests()
        .is_empty()));
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    // The answer came after the signal, and the record was finished, not abandoned.
    assert_eq!(stored_ids(&c), [event_id(&r)]);
    assert!(env.spool_files().is_empty());
    assert_eq!(env.journal().len(), 1);
}

#[test]
fn sighup_reloads_the_configuration() {
    let a = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let b = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&a.url("/v2/collector"), "");
    env.spool(&record("to a"), None);
    let d = env.start(FAST);
    assert!(a.wait_for_records(1, Duration::from_secs(10)));
    env.write_config(&b.url("/v3/collector"), "");
    d.signal(rustix::process::Signal::HUP);
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("configuration reloaded")));
    env.spool(&record("to b"), None);
    assert!(
        b.wait_for_records(1, Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    assert_eq!(b.records()[0].format, "json");
    assert_eq!(a.records().len(), 1);
    assert!(d.stop().success());
}

#[test]
fn a_bad_configuration_is_reported_once_with_its_line_and_exits_1() {
    let env = Env::new("http://127.0.0.1:9/v2/collector", "rate_limit_enabled=abc");
    let mut d = env.start(&[]);
    let status = d.wait(Duration::from_secs(20)).expect("still running");
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    let line = "telempostd-test.conf:5: rate_limit_enabled: \"abc\" is not a boolean";
    assert_eq!(log.matches(line).count(), 1, "{log}");
}
