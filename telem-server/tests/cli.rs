//! The binary: `--help`, `check-config` (on the shipped default file too), and a real serve
//! that stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_telem-server");

fn run(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("TELEM_SERVER_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn help_names_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["check-config", "serve", "--config"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}

#[test]
fn the_shipped_config_is_the_defaults_and_passes() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("telem-server.toml");
    let out = run(&["check-config"], &shipped);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = telem_server::Config::load(&shipped).unwrap();
    let def = telem_server::Config::default();
    assert_eq!(format!("{cfg:?}"), format!("{def:?}"));
}

#[test]
fn check_config_refuses_an_open_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "listen = \"0.0.0.0:8080\"\n").unwrap();
    let out = run(&["check-config"], &f);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("query_token"));
    let out = run(&["check-config"], &dir.path().join("missing.toml"));
    assert!(!out.status.success());
}

#[test]
fn serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[storage]\npath = \"{}\"\n",
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::get(&format!("{base}/healthz"), &[]).status == 200;
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = common::post(
        &format!("{base}/v2/collector"),
        &common::v4_headers(common::EVENT),
        b"p",
    );
    assert_eq!(r.status, 201);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
}

#[test]
fn the_unit_verifies_and_is_sandboxed() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: no systemd-analyze; unit check skipped");
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/telem-server.service");
    let text = std::fs::read_to_string(unit).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("telem-server.service");
    std::fs::write(&copy, text.replace("/usr/bin/telem-server", BIN)).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0");
}
