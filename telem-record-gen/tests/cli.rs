//! telem-record-gen as a user runs it: messages, exit codes, printing, payload sources, and a
//! real send to a Unix-socket listener run by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        for (rel, content) in [
            ("sys/class/dmi/id/sys_vendor", "ACME\n"),
            ("sys/class/dmi/id/product_name", "Model T\n"),
            ("sys/class/dmi/id/product_version", "1\n"),
            ("proc/cpuinfo", "model name\t: Fake CPU\n"),
            ("etc/os-release", "ID=testos\nVERSION_ID=7\n"),
        ] {
            let p = sys.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("root/etc/telemetrics")).unwrap();
        Env { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn opt_in(&self) {
        std::fs::write(self.root().join("etc/telemetrics/opt-in"), "").unwrap();
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("telem.sock")
    }

    fn config(&self) -> PathBuf {
        let p = self.dir.path().join("t.conf");
        std::fs::write(
            &p,
            format!("[settings]\nsocket_path={}\n", self.socket().display()),
        )
        .unwrap();
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("telem-record-gen").unwrap();
        c.env("TELEM_ROOT", self.root())
            .env("TELEM_SYSINFO_ROOT", self.dir.path().join("sys"))
            .env_remove("TELEM_CONFIG")
            .timeout(Duration::from_secs(30));
        c
    }
}

fn fails_with(args: &[&str], message: &str) {
    let env = Env::new();
    env.cmd()
        .args(args)
        .write_stdin("")
        .assert()
        .code(1)
        .stdout("")
        .stderr(contains(message));
}

#[test]
fn each_validation_error_has_its_message_and_status_1() {
    let long_part = format!("{}/b/c", "x".repeat(41));
    let long_class = "a".repeat(123);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-p", "x"], "Classification required"),
        (
            vec!["-c", "", "-p", "x"],
            "Valid size for classification is 1-122 chars",
        ),
        (
            vec!["-c", &long_class, "-p", "x"],
            "Valid size for classification is 1-122 chars",
        ),
        (
            vec!["-c", "ä/b/c", "-p", "x"],
            "Classification must be ASCII",
        ),
        (vec!["-c", &long_part, "-p", "x"], "at most 40 chars"),
        (vec!["-c", "a/b", "-p", "x"], "exactly 2 '/' required"),
        (vec!["-c", "a/b/c/d", "-p", "x"], "exactly 2 '/' required"),
        (vec!["-c", "a//c", "-p", "x"], "empty part"),
        (vec!["-c", "a b/c/d", "-p", "x"], "not allowed"),
        (
            vec!["-c", "a/b/c", "-s", "x", "-p", "x"],
            "Invalid severity number. Must be an integer",
        ),
        (
            vec!["-c", "a/b/c", "-s", "5", "-p", "x"],
            "Error: Valid range for severity is 1-4",
        ),
        (
            vec!["-c", "a/b/c", "-s", "0", "-p", "x"],
            "Error: Valid range for severity is 1-4",
        ),
        (
            vec!["-c", "a/b/c", "-R", "v2", "-p", "x"],
            "Invalid record version number",
        ),
        (
            vec!["-c", "a/b/c", "-e", "abc", "-p", "x"],
            "Error: event_id length 3 it should have 32 characters",
        ),
        (
            vec![
                "-c",
                "a/b/c",
                "-e",
                "0123456789abcdef0123456789abcdeF",
                "-p",
                "x",
            ],
            "invalid character 'F' at position 31, valid characters are 0123456789abcdef",
        ),
        (
            vec!["-c", "a/b/c", "-P", "/nonexistent/file"],
            "file /nonexistent/file could not be opened for reading",
        ),
        (
            vec!["-c", "a/b/c", "-f", "relative.conf", "-p", "x"],
            "Configuration file path not valid: relative.conf is not an absolute path",
        ),
        (
            vec!["-c", "a/b/c", "-f", "/", "-p", "x"],
            "Configuration file path not valid: / is not a regular file",
        ),
        (
            vec![
                "-c",
                "a/b/c",
                "-f",
                "/nonexistent/telemetrics.conf",
                "-p",
                "x",
            ],
            "Configuration file path not valid: /nonexistent/telemetrics.conf does not exist",
        ),
        (vec!["-c", "a/b/c", "-p", "bell\u{7}"], "control character"),
        (vec!["--bogus"], "unexpected argument"),
    ];
    for (args, message) in cases {
        fails_with(&args, message);
    }
}

#[test]
fn echo_no_post_prints_the_record() {
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "-c",
            "org.test/cli/echo",
            "-s",
            "3",
            "-R",
            "7",
            "-p",
            "hello world",
            "-o",
            "-n",
        ])
        .args(["-e", "0123456789abcdef0123456789abcdef"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 16, "{text}");
    let names: Vec<&str> = lines[..15]
        .iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(names, telemetry::record::HEADER_NAMES);
    assert_eq!(lines[0], "record_format_version: 4");
    assert_eq!(lines[1], "classification: org.test/cli/echo");
    assert_eq!(lines[2], "severity: 3");
    assert_eq!(lines[3], "machine_id: FFFFFFFF");
    assert_eq!(lines[6], "host_type: ACME|Model T|1");
    assert_eq!(lines[7], "build: 7");
    assert_eq!(lines[9], "payload_format_version: 7");
    assert_eq!(lines[10], "system_name: testos");
    assert_eq!(lines[12], "cpu_model: Fake CPU");
    assert_eq!(lines[14], "event_id: 0123456789abcdef0123456789abcdef");
    assert_eq!(lines[15], "hello world");
    assert!(text.ends_with("hello world\n"));
}

#[test]
fn no_post_works_while_not_opted_in_and_prints_nothing() {
    let env = Env::new();
    env.cmd()
        .args(["-c", "a/b/c", "-p", "x", "-n"])
        .assert()
        .success()
        .stdout("");
}

#[test]
fn payload_from_stdin_and_from_file() {
    let env = Env::new();
    env.cmd()
        .args(["-c", "a/b/c", "-o", "-n"])
        .write_stdin("from stdin\nline two\n")
        .assert()
        .success()
        .stdout(predicate::str::ends_with("event_id: ").not())
        .stdout(contains("\nfrom stdin\nline two\n\n"));

    let f = env.dir.path().join("payload.txt");
    std::fs::write(&f, "from a file ✓").unwrap();
    env.cmd()
        .args(["-c", "a/b/c", "-o", "-n", "-p", "ignored", "-P"])
        .arg(&f)
        .assert()
        .success()
        .stdout(contains("from a file ✓\n"))
        .stdout(contains("ignored").not());
}

#[test]
fn payload_limit_is_8192_bytes_from_every_source() {
    let env = Env::new();
    let ok = "a".repeat(8192);
    let big = "a".repeat(8193);
    env.cmd()
        .args(["-c", "a/b/c", "-n", "-p", &ok])
        .assert()
        .success();
    env.cmd()
        .args(["-c", "a/b/c", "-n", "-p", &big])
        .assert()
        .code(1)
        .stderr(contains("payload is 8193 bytes; the limit is 8192 bytes"));
    // Every source states the payload's real size, not the one byte over the limit it needed
    // to see that it is too large.
    env.cmd()
        .args(["-c", "a/b/c", "-n"])
        .write_stdin(big.clone())
        .assert()
        .code(1)
        .stderr(contains("payload is 8193 bytes; the limit is 8192 bytes"));
    env.cmd()
        .args(["-c", "a/b/c", "-n"])
        .write_stdin("c".repeat(70_000))
        .assert()
        .code(1)
        .stderr(contains("payload is 70000 bytes; the limit is 8192 bytes"));
    let f = env.dir.path().join("big.txt");
    std::fs::write(&f, "b".repeat(100_000)).unwrap();
    env.cmd()
        .args(["-c", "a/b/c", "-n", "-P"])
        .arg(&f)
        .assert()
        .code(1)
        .stderr(contains("payload is 100000 bytes; the limit is 8192 bytes"));
    std::fs::write(&f, &ok).unwrap();
    env.cmd()
        .args(["-c", "a/b/c", "-n", "-P"])
        .arg(&f)
        .assert()
        .success();
}

#[test]
fn help_and_version_exit_0() {
    let env = Env::new();
    env.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("--payload-file"))
        .stdout(contains("Exit status"));
    env.cmd()
        .arg("-V")
        .assert()
        .success()
        .stdout(contains(env!("CARGO_PKG_VERSION")));
}

/// Accepts one frame, answers `status`, returns the decoded frame.
fn listen(sock: &Path, status: i32) -> thread::JoinHandle<telemetry::frame::Frame> {
    let l = UnixListener::bind(sock).unwrap();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let buf = telemetry::frame::read_from(&mut s).unwrap();
        s.write_all(&status.to_le_bytes()).unwrap();
        telemetry::frame::decode(&buf).unwrap()
    })
}

#[test]
fn sends_to_the_daemon_socket() {
    let env = Env::new();
    env.opt_in();
    let conf = env.config();
    let h = listen(&env.socket(), 0);
    env.cmd()
        .args([
            "-c",
            "org.test/cli/send",
            "-s",
            "2",
            "-p",
            "sent by the CLI",
            "-f",
        ])
        .arg(&conf)
        .assert()
        .success()
        .stdout("");
    let f = h.join().unwrap();
    assert_eq!(f.cfg.as_deref(), Some(conf.as_path()));
    assert_eq!(f.record.payload(), b"sent by the CLI");
    assert_eq!(f.record.values()[1], "org.test/cli/send");
    f.record.validate().unwrap();
}

#[test]
fn daemon_refusal_is_explained() {
    let env = Env::new();
    env.opt_in();
    let conf = env.config();
    let h = listen(&env.socket(), -28);
    env.cmd()
        .args(["-c", "a/b/c", "-p", "x", "-f"])
        .arg(&conf)
        .assert()
        .code(1)
        .stderr(contains("spool is full"));
    h.join().unwrap();
}

#[test]
fn not_opted_in_and_not_running_are_told_apart() {
    let env = Env::new();
    let conf = env.config();
    env.cmd()
        .args(["-c", "a/b/c", "-p", "x", "-f"])
        .arg(&conf)
        .assert()
        .code(1)
        .stderr(contains("not opted in"))
        .stderr(contains("telemctl opt-in"));
    env.opt_in();
    env.cmd()
        .args(["-c", "a/b/c", "-p", "x", "-f"])
        .arg(&conf)
        .assert()
        .code(1)
        .stderr(contains("telemprobd is not running"))
        .stderr(contains("not opted in").not());
}

#[test]
fn broken_config_is_a_clear_error() {
    let env = Env::new();
    env.opt_in();
    let conf = env.dir.path().join("bad.conf");
    std::fs::write(&conf, "[settings]\nrate_limit_enabled=maybe\n").unwrap();
    env.cmd()
        .args(["-c", "a/b/c", "-p", "x", "-f"])
        .arg(&conf)
        .assert()
        .code(1)
        .stderr(contains("bad.conf:2: rate_limit_enabled"));
}

/// Values the original read with strtoll or its fallbacks send as before, with a warning.
#[test]
fn a_config_the_original_accepted_sends_with_a_warning() {
    let env = Env::new();
    env.opt_in();
    let conf = env.dir.path().join("old.conf");
    std::fs::write(
        &conf,
        format!(
            "[settings]\nsocket_path={}\nrecord_expiry=1200 # minutes\nrate_limit_strategy=later\n",
            env.socket().display()
        ),
    )
    .unwrap();
    let daemon = listen(&env.socket(), 0);
    env.cmd()
        .args(["-c", "a/b/c", "-p", "x", "-f"])
        .arg(&conf)
        .assert()
        .success()
        .stderr(contains(
            "telem-record-gen: warning: ".to_string()
                + &conf.display().to_string()
                + ":3: record_expiry: \"1200 # minutes\" read as 1200",
        ))
        .stderr(contains("old.conf:4: rate_limit_strategy"));
    assert_eq!(daemon.join().unwrap().record.payload(), b"x");
}

/// Printing into a pipe nobody reads any more is an error the program handles (exit 0, the
/// record was made), not SIGPIPE killing it: the program sets up SIGPIPE by hand (it starts
/// without std's runtime), and this checks it did.
#[test]
fn printing_into_a_closed_pipe_is_not_a_signal() {
    let env = Env::new();
    let bin = assert_cmd::cargo::cargo_bin("telem-record-gen");
    // The reader closes its end and says so before the writer starts: no race.
    let script = r#"
        { while [ ! -e "$D/closed" ]; do sleep 0.01; done
          "$BIN" -o -n -c a/b/c -p x; echo $? > "$D/status"; } | { exec 0<&-; : > "$D/closed"; }
    "#;
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .env("BIN", &bin)
        .env("D", env.dir.path())
        .env("TELEM_SYSINFO_ROOT", env.dir.path().join("sys"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = std::fs::read_to_string(env.dir.path().join("status")).unwrap();
    assert_eq!(status.trim(), "0", "killed by a signal if 141: {out:?}");
}
