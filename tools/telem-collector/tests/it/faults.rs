//! Fault injection: statuses with Retry-After, delays, dropped connections, FIFO order.

use std::time::{Duration, Instant};

use telem_collector::{Collector, Fault, Options};

use crate::common::{post, request, v4_headers};

fn start() -> Collector {
    Collector::start("127.0.0.1:0", Options::default()).unwrap()
}

fn status(code: u16, retry_after: Option<u64>, message: Option<&str>) -> Fault {
    Fault::Status {
        code,
        retry_after,
        message: message.map(str::to_string),
    }
}

#[test]
fn faults_are_consumed_in_order_then_normal_service() {
    let c = start();
    c.push_fault(status(503, Some(2), None), 2);
    c.push_fault(status(429, Some(7), None), 1);
    c.push_fault(status(400, None, Some("go away")), 1);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let r = post(c.addr(), "/v2/collector", &v4_headers(), "p");
        seen.push((r.status, r.header("retry-after").map(str::to_string)));
        if r.status == 400 {
            assert_eq!(r.message(), "go away");
        }
    }
    let two = Some("2".to_string());
    assert_eq!(
        seen,
        vec![
            (503, two.clone()),
            (503, two),
            (429, Some("7".into())),
            (400, None),
            (201, None)
        ]
    );
    assert_eq!(c.records().len(), 1, "faulted requests store nothing");
    let logged: Vec<_> = c.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        logged,
        vec![Some(503), Some(503), Some(429), Some(400), Some(201)]
    );
}

#[test]
fn delay_then_normal_handling() {
    let c = start();
    c.push_fault(Fault::Delay(Duration::from_millis(1500)), 1);
    let t0 = Instant::now();
    let r = post(c.addr(), "/v2/collector", &v4_headers(), "slow");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.status, 201);
    assert_eq!(c.records().len(), 1);
    let t1 = Instant::now();
    assert_eq!(
        post(c.addr(), "/v2/collector", &v4_headers(), "fast").status,
        201
    );
    assert!(
        t1.elapsed() < Duration::from_millis(1500),
        "delay applied twice"
    );
}

#[test]
fn reset_closes_without_any_response() {
    let c = start();
    c.push_fault(Fault::Reset, 2);
    // Raw socket: not one byte of response comes back.
    assert!(request(c.addr(), "POST", "/v2/collector", &v4_headers(), b"p").is_none());
    // A real HTTP client sees a transport error, not a status.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.post(c.url("/v2/collector"));
    for (k, v) in v4_headers() {
        req = req.header(k, v);
    }
    let res = req.send("p");
    assert!(
        res.is_err(),
        "expected a transport error, got {:?}",
        res.map(|r| r.status())
    );
    // Then normal service.
    assert_eq!(
        post(c.addr(), "/v2/collector", &v4_headers(), "p").status,
        201
    );
    let logged: Vec<_> = c.requests().iter().map(|r| r.status).collect();
    assert_eq!(logged, vec![None, None, Some(201)]);
    assert_eq!(c.records().len(), 1);
}

#[test]
fn clear_faults_restores_service_and_zero_times_is_ignored() {
    let c = start();
    c.push_fault(status(500, None, None), 0);
    c.push_fault(status(503, None, None), 5);
    assert_eq!(post(c.addr(), "/", &v4_headers(), "p").status, 503);
    c.clear_faults();
    assert_eq!(post(c.addr(), "/", &v4_headers(), "p").status, 201);
}

#[test]
fn request_log_times_are_monotonic() {
    let c = start();
    c.push_fault(status(503, Some(1), None), 1);
    post(c.addr(), "/v2/collector", &v4_headers(), "a");
    post(c.addr(), "/v2/collector", &v4_headers(), "b");
    let reqs = c.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].instant >= reqs[0].instant);
    assert!(reqs[1].at >= reqs[0].at && reqs[0].at > 1.7e9);
}

#[test]
fn delayed_request_is_logged_on_arrival() {
    use std::io::Write;
    let c = start();
    c.push_fault(Fault::Delay(Duration::from_secs(5)), 1);
    let mut s = std::net::TcpStream::connect(c.addr()).unwrap();
    s.write_all(
        b"POST /v2/collector HTTP/1.1\r\nHost: x\r\nEvent-Id: 00ff\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.requests().is_empty() {
        assert!(Instant::now() < deadline, "request never logged");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = &c.requests()[0];
    assert_eq!((r.status, r.event_id.as_deref()), (None, Some("00ff")));
}

/// A raw POST on `s` with the v4 headers; returns everything the server wrote until it closed
/// (or 5 s passed), and whether it closed.
fn raw_exchange(s: &mut std::net::TcpStream, body: &str) -> (Vec<u8>, bool) {
    use std::io::{Read, Write};
    let mut req = String::from("POST /v2/collector HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in v4_headers() {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            // A read timeout: the connection stays open.
            Err(_) if !got.is_empty() => return (got, false),
            Err(_) => {}
        }
    }
    (got, false)
}

#[test]
fn close_after_answer_answers_201_keeps_alive_in_words_then_closes() {
    let c = start();
    c.push_fault(
        Fault::CloseAfterAnswer {
            linger: Duration::ZERO,
        },
        1,
    );
    let mut s = std::net::TcpStream::connect(c.addr()).unwrap();
    let (got, closed) = raw_exchange(&mut s, "p");
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 201"), "{text}");
    assert!(!text.contains("connection: close"), "{text}");
    assert!(closed, "the connection stayed open");
    assert_eq!(c.records().len(), 1);
    // Without the fault a connection stays open after its answer.
    let mut s = std::net::TcpStream::connect(c.addr()).unwrap();
    assert!(!raw_exchange(&mut s, "q").1);
}

#[test]
fn close_after_answer_with_linger_resets_a_reused_connection() {
    let c = start();
    c.push_fault(
        Fault::CloseAfterAnswer {
            linger: Duration::from_secs(2),
        },
        1,
    );
    let mut s = std::net::TcpStream::connect(c.addr()).unwrap();
    let (first, closed) = raw_exchange(&mut s, "p");
    assert!(first.starts_with(b"HTTP/1.1 201"));
    assert!(!closed, "closed before the linger");
    // The next request on it gets no answer at all, and is not handled.
    let (second, closed) = raw_exchange(&mut s, "q");
    assert!(second.is_empty() && closed, "{second:?} {closed}");
    assert_eq!(c.records().len(), 1);
    assert_eq!(c.requests().len(), 1);
}

#[test]
fn store_then_status_stores_and_answers_the_status() {
    let c = start();
    c.push_fault(Fault::StoreThenStatus(500), 1);
    assert_eq!(
        post(c.addr(), "/v2/collector", &v4_headers(), "p").status,
        500
    );
    assert_eq!(c.records().len(), 1);
    assert_eq!(c.requests()[0].status, Some(500));
}

#[test]
fn reset_mid_answer_writes_part_of_the_status_line_then_closes() {
    let c = start();
    c.push_fault(Fault::ResetMidAnswer { bytes: 12 }, 1);
    let mut s = std::net::TcpStream::connect(c.addr()).unwrap();
    let (got, closed) = raw_exchange(&mut s, "p");
    assert_eq!(got, b"HTTP/1.1 201");
    assert!(closed);
    assert_eq!(
        c.records().len(),
        1,
        "the record was stored before the answer broke"
    );
}
