//! Delivery through an HTTP proxy named by the usual environment variables (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, with `NO_PROXY`): telempostd tunnels with `CONNECT`. The proxy
//! here is a small one the test runs, which logs each request line it gets.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telem_collector::{Collector, Options};
use telemetry::journal::Outcome;

use crate::common::*;

const T: Duration = Duration::from_secs(15);

/// A CONNECT-only proxy on 127.0.0.1: tunnels `CONNECT host:port`, answers anything else 405.
struct Proxy {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || tunnel(client, &log));
            }
        });
        Proxy { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn tunnel(client: TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    // The rest of the request head.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let first = first.trim_end().to_string();
    log.lock().unwrap().push(first.clone());
    let mut client = client;
    let target = match first.split(' ').collect::<Vec<_>>()[..] {
        ["CONNECT", authority, _] => TcpStream::connect(authority).ok(),
        _ => None,
    };
    let Some(upstream) = target else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    // Whatever the client sent after the head is still in `reader`'s buffer: forward it too.
    let pending = reader.buffer().to_vec();
    let mut up_w = upstream.try_clone().unwrap();
    if up_w.write_all(&pending).is_err() {
        return;
    }
    let mut up_r = upstream;
    let mut client_w = client.try_clone().unwrap();
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(std::net::Shutdown::Write);
    });
    let mut client_r = reader.into_inner();
    let _ = std::io::copy(&mut client_r, &mut up_w);
    let _ = up_w.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}

fn authority(c: &Collector) -> String {
    let url = c.url("/");
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

#[test]
fn records_go_through_the_proxy_named_in_the_environment() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    for var in ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"] {
        let proxy = Proxy::start();
        let mut env = Env::new(&c.url("/v2/collector"), "");
        let r = record(&format!("through a proxy named by {var}"));
        env.spool(&r, None);
        let before = c.records().len();
        let d = env.start_env(FAST, &[(var, proxy.url.as_str())]);
        assert!(c.wait_for_records(before + 1, T), "{}", d.log_text());
        assert_eq!(c.records().pop().unwrap().headers["event-id"], event_id(&r));
        assert!(wait_until(T, || env.spool_files().is_empty()));
        assert!(d.stop().success());
        assert_eq!(env.journal()[0].outcome, Some(Outcome::Delivered));
        // One kept-alive tunnel to the collector, opened with CONNECT.
        assert_eq!(
            proxy.seen(),
            vec![format!("CONNECT {} HTTP/1.1", authority(&c))],
            "{var}"
        );
    }
}

#[test]
fn no_proxy_bypasses_the_proxy() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let proxy = Proxy::start();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let r = record("straight to the collector");
    env.spool(&r, None);
    let d = env.start_env(
        FAST,
        &[
            ("HTTPS_PROXY", proxy.url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    assert!(d.stop().success());
    assert_eq!(proxy.seen(), Vec::<String>::new());
}

#[test]
fn a_proxy_that_is_down_is_a_retried_error_and_the_record_stays() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    // A port that was just free: nothing listens there.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let r = record("must wait for the proxy");
    let name = env.spool(&r, None);
    let d = env.start_env(FAST, &[("HTTPS_PROXY", dead.as_str())]);
    assert!(
        wait_until(T, || env.counter("retried") >= 1),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    assert_eq!(env.spool_files(), vec![name]);
    assert!(c.records().is_empty(), "nothing reached the collector");
    assert!(env.journal().is_empty(), "nothing left the spool");
}
