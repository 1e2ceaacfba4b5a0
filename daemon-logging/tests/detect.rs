//! When the daemons log to the journal: `started_by_systemd()` decided in a child process (this
//! test binary run again) with the environment and stderr systemd, a terminal or a plain
//! command line would give it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

const CHILD: &str = "DAEMON_LOGGING_TEST_CHILD";

/// Not a test of its own: the child's side, which prints the decision.
#[test]
fn child() {
    if std::env::var_os(CHILD).is_some() {
        println!("decision={}", daemon_logging::started_by_systemd());
    }
}

fn command() -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD, "1")
        .env_remove("INVOCATION_ID")
        .env_remove("JOURNAL_STREAM");
    c
}

fn decision(out: &std::process::Output) -> bool {
    let text = String::from_utf8_lossy(&out.stdout);
    match text
        .lines()
        .find_map(|l| l.trim().strip_prefix("decision="))
    {
        Some("true") => true,
        Some("false") => false,
        _ => panic!("no decision in {text:?}"),
    }
}

/// An environment variable's value, given the metadata of the child's stderr file.
type Value<'a> = &'a dyn Fn(&std::fs::Metadata) -> String;

/// The decision with stderr going to a file (as a service's or a pipe's would).
fn with_stderr_file(env: &[(&str, Value<'_>)]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let mut c = command();
    for (k, v) in env {
        c.env(k, v(&meta));
    }
    decision(&c.stderr(file).output().unwrap())
}

#[test]
fn a_plain_command_line_logs_to_stderr() {
    assert!(!with_stderr_file(&[]));
}

#[test]
fn a_service_whose_stderr_is_the_journal_stream_logs_to_the_journal() {
    let stream = |m: &std::fs::Metadata| format!("{}:{}", m.dev(), m.ino());
    assert!(with_stderr_file(&[("JOURNAL_STREAM", &stream)]));
    // Another stream (stderr redirected elsewhere by the service itself): not by that alone.
    let other = |m: &std::fs::Metadata| format!("{}:{}", m.dev(), m.ino() + 1);
    assert!(!with_stderr_file(&[("JOURNAL_STREAM", &other)]));
}

#[test]
fn a_service_with_an_invocation_id_logs_to_the_journal() {
    let id = |_: &std::fs::Metadata| "5e1d8d2c3f0a4b6e9c7d1a2b3c4d5e6f".to_string();
    assert!(with_stderr_file(&[("INVOCATION_ID", &id)]));
}

/// A shell in a terminal emulator that runs as a user service inherits `INVOCATION_ID` (and a
/// `JOURNAL_STREAM` naming the emulator's own output): a person there reads stderr.
#[test]
fn a_terminal_that_inherited_a_services_variables_gets_stderr() {
    let Ok(script) = which("script") else {
        eprintln!("SKIPPED: needs script(1) from util-linux for a terminal");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(script)
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "'{}' --exact child --nocapture --test-threads=1 -q",
            exe.display()
        ))
        .arg("/dev/null")
        .env(CHILD, "1")
        .env("INVOCATION_ID", "5e1d8d2c3f0a4b6e9c7d1a2b3c4d5e6f")
        .env("JOURNAL_STREAM", "8:12345")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!decision(&out), "{}", String::from_utf8_lossy(&out.stdout));
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let paths = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
