//! Accepted connections have TCP_NODELAY: without it a response written in more than one piece
//! waits for the client's delayed ACK (Nagle), up to 40 ms per request on Linux.
//!
//! The server runs in this process, so the test finds the accepted socket among its own file
//! descriptors (a duplicate through `pidfd_getfd`, no unsafe code) and reads the option.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;

use common::TestServer;
use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};

/// The socket of this process whose local address is `local` and peer `peer`.
fn socket(local: SocketAddr, peer: SocketAddr) -> Option<OwnedFd> {
    let me = pidfd_open(getpid(), PidfdFlags::empty()).unwrap();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(n) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(fd) = pidfd_getfd(&me, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let here = rustix::net::getsockname(&fd)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok());
        let there = rustix::net::getpeername(&fd)
            .ok()
            .flatten()
            .and_then(|a| SocketAddr::try_from(a).ok());
        if here == Some(local) && there == Some(peer) {
            return Some(fd);
        }
    }
    None
}

#[test]
fn accepted_connections_have_tcp_nodelay() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(common::sqlite_config(dir.path()));
    let mut client = TcpStream::connect(s.addr).unwrap();
    // One answered request: the server has accepted the connection and holds it (kept alive).
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = client.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let accepted = socket(s.addr, client.local_addr().unwrap()).expect("the accepted socket");
    assert!(
        rustix::net::sockopt::tcp_nodelay(&accepted).unwrap(),
        "TCP_NODELAY is off on the accepted connection"
    );
    drop(client);
    s.stop();
}
