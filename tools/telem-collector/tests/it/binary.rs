//! The `telem-collector` binary: port file, stdout line, HTTP control, clean SIGTERM exit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{post, request, v4_headers};

const BIN: &str = env!("CARGO_BIN_EXE_telem-collector");

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn control(addr: SocketAddr, method: &str, path: &str, body: &str) -> crate::common::Reply {
    request(addr, method, path, &[], body.as_bytes()).unwrap()
}

#[test]
fn binary_serves_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let store = dir.path().join("store.jsonl");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .arg("--store")
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            break text.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no port file");
        std::thread::sleep(Duration::from_millis(20));
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        line.trim_end(),
        format!("telem-collector listening on http://{addr}")
    );

    assert_eq!(
        post(addr, "/v2/collector", &v4_headers(), "one").status,
        201
    );
    let r = control(
        addr,
        "POST",
        "/_/fault",
        r#"{"status":503,"retry_after":2,"times":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(addr, "/v2/collector", &v4_headers(), "two");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("2")));
    assert_eq!(
        control(addr, "POST", "/_/fault", r#"{"reset":true,"times":2}"#).status,
        200
    );
    assert_eq!(control(addr, "DELETE", "/_/fault", "").status, 200);
    assert_eq!(
        control(addr, "POST", "/_/fault", r#"{"status":503,"reset":true}"#).status,
        400
    );
    assert_eq!(
        control(addr, "POST", "/_/fault", r#"{"delay_ms":10}"#).status,
        200
    );
    assert_eq!(post(addr, "/", &v4_headers(), "three").status, 201);

    let recs = control(addr, "GET", "/_/records", "").json();
    let payloads: Vec<_> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["payload"].clone())
        .collect();
    assert_eq!(payloads, vec!["one", "three"]);
    let reqs = control(addr, "GET", "/_/requests", "").json();
    let statuses: Vec<_> = reqs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, vec![201, 503, 201]);
    assert_eq!(std::fs::read_to_string(&store).unwrap().lines().count(), 2);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    match wait_exit(&mut child, Duration::from_secs(10)) {
        Some(st) => assert!(st.success(), "exit status {st}"),
        None => {
            let _ = child.kill();
            panic!("telem-collector did not exit on SIGTERM");
        }
    }
}

#[test]
fn binary_fails_cleanly_on_bad_listen_address() {
    let out = Command::new(BIN)
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("binding not-an-address"));
}
