//! A raw HTTP/1.1 client (full control over header names, sees dropped connections) and
//! record fixtures.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const TID: &str = "6907c830-eed9-4ce9-81ae-76daf8d88f0f";

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap().to_string()
    }
}

/// Sends one request on a fresh connection. `None`: the server closed the connection
/// without sending a single byte of response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading reply: {e}"),
    }
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("complete response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_string(),
    })
}

pub fn post(addr: SocketAddr, path: &str, headers: &[(String, String)], body: &str) -> Reply {
    request(addr, "POST", path, headers, body.as_bytes()).expect("a response")
}

/// A valid record format version 4 header set, hyphenated as current clients send.
pub fn v4_headers() -> Vec<(String, String)> {
    [
        ("X-Telemetry-TID", TID),
        ("Record-Format-Version", "4"),
        ("Classification", "org.clearlinux/hello/world"),
        ("Severity", "1"),
        ("Machine-Id", "0123456789abcdef0123456789abcdef"),
        ("Creation-Timestamp", "1700000000"),
        ("Arch", "x86_64"),
        ("Host-Type", "QEMU|Standard PC (Q35 + ICH9, 2009)"),
        ("Build", "40000"),
        ("Kernel-Version", "6.1.0-13-amd64"),
        ("Payload-Format-Version", "1"),
        ("System-Name", "clear-linux-os"),
        ("Board-Name", "no_bn_file|no_bv_file"),
        ("Cpu-Model", "Intel(R) Core(TM) i7"),
        ("Bios-Version", "1.16.0-debian-1.16.0-5"),
        ("Event-Id", "3a2d799826edc6266d72824d2aac6763"),
        ("Content-Type", "application/text"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `base` with `name` (case-insensitive) set to `value`, or removed when `value` is None.
pub fn set(base: &[(String, String)], name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<_> = base
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    if let Some(v) = value {
        out.push((name.to_string(), v.to_string()));
    }
    out
}
