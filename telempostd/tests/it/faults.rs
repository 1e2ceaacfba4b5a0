//! Contract §3 against a misbehaving collector: retry with backoff, Retry-After, permanent
//! rejections, timeouts, resets, a collector that is down and comes back.

use std::time::Duration;

use telem_collector::{Collector, Fault, Options, RequestLog};
use telemetry::journal::Outcome;

use crate::common::*;

const T: Duration = Duration::from_secs(15);

fn status(code: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        code,
        retry_after,
        message: Some(format!("fault {code}")),
    }
}

/// Gaps between consecutive requests.
fn gaps(reqs: &[RequestLog]) -> Vec<Duration> {
    reqs.windows(2)
        .map(|w| w[1].instant - w[0].instant)
        .collect()
}

#[test]
fn server_errors_are_retried_with_backoff_and_retry_after_is_honoured() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    c.push_fault(status(500, None), 2);
    c.push_fault(status(503, Some(2)), 1);
    c.push_fault(status(429, None), 1);
    c.push_fault(status(408, None), 1);
    let recs: Vec<_> = (0..3).map(|i| record(&format!("r{i}"))).collect();
    for r in &recs {
        env.spool(r, None);
    }
    let d = env.start(FAST);
    assert!(c.wait_for_records(3, T), "{}", d.log_text());
    assert!(wait_until(T, || env.spool_files().is_empty()));
    assert!(d.stop().success());

    let reqs = c.requests();
    let codes: Vec<Option<u16>> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(
        codes,
        [500, 500, 503, 429, 408, 201, 201, 201].map(Some),
        "no extra requests while backing off"
    );
    // The whole queue waits after each failure (the gaps below); the oldest record is tried
    // three times, then goes behind the others; from then on one failure puts a record behind,
    // and the records take turns, fewest failures first.
    let ids: Vec<String> = reqs.iter().map(|r| r.event_id.clone().unwrap()).collect();
    let (r0, r1, r2) = (event_id(&recs[0]), event_id(&recs[1]), event_id(&recs[2]));
    assert_eq!(
        ids,
        [&r0, &r0, &r0, &r1, &r2, &r1, &r2, &r0].map(String::as_str)
    );
    assert_eq!(stored_ids(&c), [r1, r2, r0]);
    let g = gaps(&reqs);
    // Never faster than the 200 ms floor after a failure; never slower than the 1 s cap
    // (plus scheduling slack); Retry-After: 2 honoured.
    for (i, gap) in g[..5].iter().enumerate() {
        assert!(*gap >= Duration::from_millis(190), "gap {i}: {gap:?}");
        if i != 2 {
            assert!(*gap <= Duration::from_millis(1500), "gap {i}: {gap:?}");
        }
    }
    assert!(
        g[2] >= Duration::from_millis(1990),
        "Retry-After: {:?}",
        g[2]
    );
    // First retry after exactly the base (full jitter above a 200 ms floor starts at the floor).
    assert!(g[0] < Duration::from_millis(600), "{:?}", g[0]);
    assert_eq!(env.counter("failed_attempts"), 5);
    assert_eq!(env.counter("retried"), 5);
    assert_eq!(env.counter("delivered"), 3);
    assert!(env.status().unwrap().last_error.unwrap().contains("408"));
}

#[test]
fn client_errors_are_rejected_and_journaled_with_the_server_message() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    // One refused by a fault (404 + message), one the real validation refuses
    // (architecture), then a good one.
    let refused = record("refused by fault");
    let mut sys = tricky_sysinfo();
    sys.arch = "riscv64".into();
    let bad = record_with(&sys, "org.clearlinux/bad/arch", "x");
    let good = record("good");
    env.spool(&refused, None);
    env.spool(&bad, None);
    env.spool(&good, None);
    c.push_fault(
        Fault::Status {
            code: 404,
            retry_after: None,
            message: Some("no such collector".into()),
        },
        1,
    );
    let d = env.start(FAST);
    assert!(
        wait_until(T, || env.spool_files().is_empty()),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    let j = env.journal();
    assert_eq!(j.len(), 3);
    assert_eq!(j[0].outcome, Some(Outcome::Rejected));
    assert_eq!(j[0].event_id, event_id(&refused));
    assert!(
        j[0].detail.contains("404") && j[0].detail.contains("no such collector"),
        "{}",
        j[0].detail
    );
    assert_eq!(j[1].outcome, Some(Outcome::Rejected));
    assert_eq!(j[1].event_id, event_id(&bad));
    assert!(
        j[1].detail.contains("400") && j[1].detail.contains("architecture is invalid"),
        "{}",
        j[1].detail
    );
    assert_eq!(
        j.iter()
            .filter(|e| e.outcome == Some(Outcome::Delivered))
            .count(),
        1
    );
    assert_eq!(env.counter("rejected"), 2);
    // Rejections are answers, not failures: no backoff.
    assert_eq!(env.counter("failed_attempts"), 0);
}

#[test]
fn slow_answers_time_out_and_are_retried() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    c.push_fault(Fault::Delay(Duration::from_millis(2500)), 1);
    let r = record("slow");
    env.spool(&r, None);
    let mut args: Vec<&str> = FAST.iter().copied().filter(|a| *a != "2000").collect();
    args.retain(|a| *a != "--http-timeout-ms");
    args.extend(["--http-timeout-ms", "500"]);
    let d = env.start(&args);
    assert!(
        wait_until(T, || env.spool_files().is_empty()),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    // Delivered by the retry; the slow first attempt may have been stored as well (a
    // duplicate, at-least-once).
    assert!(stored_ids(&c).contains(&event_id(&r)));
    assert!(env.counter("failed_attempts") >= 1);
    let j = env.journal();
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].outcome, Some(Outcome::Delivered));
}

#[test]
fn connection_resets_are_retried() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    c.push_fault(Fault::Reset, 2);
    let recs: Vec<_> = (0..2).map(|i| record(&format!("reset {i}"))).collect();
    for r in &recs {
        env.spool(r, None);
    }
    let d = env.start(FAST);
    assert!(c.wait_for_records(2, T), "{}", d.log_text());
    assert!(d.stop().success());
    let codes: Vec<Option<u16>> = c.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, [None, None, Some(201), Some(201)]);
    assert_eq!(
        stored_ids(&c),
        recs.iter().map(event_id).collect::<Vec<_>>()
    );
    assert_eq!(env.counter("failed_attempts"), 2);
}

#[test]
fn collector_down_then_up_loses_nothing() {
    let first = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let addr = first.addr();
    let url = first.url("/v2/collector");
    first.stop();
    let mut env = Env::new(&url, "");
    let recs: Vec<_> = (0..5).map(|i| record(&format!("outage {i}"))).collect();
    for r in &recs {
        env.spool(r, None);
    }
    let d = env.start(FAST);
    assert!(
        wait_until(T, || env.counter("failed_attempts") >= 3),
        "{}",
        d.log_text()
    );
    assert_eq!(env.spool_files().len(), 5);
    assert!(env
        .status()
        .unwrap()
        .last_error
        .unwrap()
        .contains("cannot reach collector"));
    let c = Collector::start(&addr.to_string(), Options::default()).unwrap();
    assert!(c.wait_for_records(5, T), "{}", d.log_text());
    assert!(d.stop().success());
    assert_eq!(
        stored_ids(&c),
        recs.iter().map(event_id).collect::<Vec<_>>()
    );
    assert!(env.spool_files().is_empty());
    assert_eq!(env.journal().len(), 5);
}

#[test]
fn missing_cainfo_is_an_error_message_and_records_stay() {
    let mut env = Env::new(
        "https://127.0.0.1:9/v2/collector",
        "cainfo=/nonexistent/ca.pem",
    );
    env.spool(&record("tls"), None);
    let d = env.start(FAST);
    assert!(wait_until(T, || env.counter("failed_attempts") >= 1));
    assert!(d.stop().success());
    assert_eq!(env.spool_files().len(), 1);
    let err = env.status().unwrap().last_error.unwrap();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
