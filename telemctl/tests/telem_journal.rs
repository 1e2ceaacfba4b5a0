//! telem_journal, the original client's journal viewer: its options (the original's spellings
//! too), its five columns and header, and its exit status, against a journal under TELEM_ROOT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use predicates::str::contains;
use telemetry::journal::{Entry, Outcome};

const EV1: &str = "11111111111111111111111111111111";
const EV2: &str = "22222222222222222222222222222222";
const BOOT: &str = "0a1b2c3d-0000-4000-8000-00000000000b";

fn cmd(root: &Path) -> Command {
    let mut c = Command::cargo_bin("telem_journal").unwrap();
    c.env("TELEM_ROOT", root)
        .env_remove("TELEM_CONFIG")
        .timeout(Duration::from_secs(30));
    c
}

/// Three entries written by our telempostd and one by the original daemon (five fields).
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let log = root.join("var/log/telemetry");
    fs::create_dir_all(log.join("records")).unwrap();
    let mut text = String::new();
    for (class, event, rid, outcome) in [
        ("a/b/c", EV1, "rid-c", Outcome::Delivered),
        ("a/b/d", EV1, "rid-d", Outcome::Rejected),
        ("a/x/y", EV2, "rid-y", Outcome::Expired),
    ] {
        let mut e = Entry::new(class, event, outcome, "detail").unwrap();
        e.record_id = rid.to_string();
        e.boot_id = BOOT.to_string();
        e.timestamp = 1_700_000_000;
        text.push_str(&e.to_line());
    }
    text.push_str("0123456789abcdef0123456789abcdef\u{1e}1520054957\u{1e}t/t/t\u{1e}3bc17766547776eb7fc478eb0eb43e43\u{1e}boot-old\n");
    fs::write(log.join("journal"), text).unwrap();
    fs::write(log.join("records/rid-c"), "retained body of c\n").unwrap();
    (dir, root)
}

fn stdout_lines(c: &mut Command) -> Vec<String> {
    let o = c.assert().success();
    String::from_utf8(o.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// The original's `printf("%-30s %s %s %s %s\n", ...)` with `%a %Y-%m-%d %H:%M:%S %Z`.
fn original_line(class: &str, time: &str, rid: &str, event: &str, boot: &str) -> String {
    format!("{class:<30} {time} {rid} {event} {boot}")
}

#[test]
fn prints_the_original_columns_and_header() {
    let (_dir, root) = fixture();
    let all = stdout_lines(&mut cmd(&root));
    assert_eq!(
        all,
        [
            original_line("a/b/c", "Tue 2023-11-14 22:13:20 UTC", "rid-c", EV1, BOOT),
            original_line("a/b/d", "Tue 2023-11-14 22:13:20 UTC", "rid-d", EV1, BOOT),
            original_line("a/x/y", "Tue 2023-11-14 22:13:20 UTC", "rid-y", EV2, BOOT),
            original_line(
                "t/t/t",
                "Sat 2018-03-03 05:29:17 UTC",
                "0123456789abcdef0123456789abcdef",
                "3bc17766547776eb7fc478eb0eb43e43",
                "boot-old"
            ),
        ]
    );
    // -V/--verbose: the original's title line ("%-30s %-27s %-32s %-32s %-36s") and a total.
    let title = format!(
        "{:<30} {:<27} {:<32} {:<32} {:<36}",
        "Classification", "Time stamp", "Record ID", "Event ID", "Boot ID"
    );
    for flag in ["-V", "--verbose"] {
        let v = stdout_lines(cmd(&root).args([flag, "-c", "a/b/*"]));
        assert_eq!(v.len(), 4, "{v:?}");
        assert_eq!(v[0], title);
        assert_eq!(v[3], "Total records: 2");
    }
}

#[test]
fn accepts_the_original_options() {
    let (_dir, root) = fixture();
    let run = |args: &[&str]| stdout_lines(cmd(&root).args(args));
    for (short, original, value, n) in [
        ("-r", "--record_id", "rid-y", 1),
        ("-e", "--event_id", EV1, 2),
        ("-c", "--classification", "a/b/*", 2),
        ("-c", "--classification", "a/b/c", 1),
        ("-b", "--boot_id", BOOT, 3),
    ] {
        assert_eq!(run(&[short, value]).len(), n, "{short} {value}");
        assert_eq!(run(&[original, value]).len(), n, "{original} {value}");
    }
    // Filters are ANDed.
    assert_eq!(run(&["-b", BOOT, "-e", EV1, "-c", "a/b/d"]).len(), 1);
    for flag in ["-i", "--include_record", "--include-record"] {
        let with_body = run(&[flag, "-r", "rid-c"]);
        assert_eq!(with_body.len(), 2, "{flag}");
        assert_eq!(with_body[1], "retained body of c", "{flag}");
    }
}

#[test]
fn exit_status_is_the_originals() {
    let (dir, root) = fixture();
    // -h/--help: usage on stdout, 0.
    for flag in ["-h", "--help"] {
        cmd(&root)
            .arg(flag)
            .assert()
            .success()
            .stdout(contains("Usage: telem_journal"));
    }
    // An unknown option: usage, 1.
    cmd(&root)
        .arg("--bogus")
        .assert()
        .code(1)
        .stderr(contains("Usage: telem_journal"));
    // A journal that cannot be read: "Unable to open journal", 1.
    let unreadable = dir.path().join("other");
    fs::create_dir_all(unreadable.join("var/log/telemetry/journal")).unwrap();
    cmd(&unreadable)
        .assert()
        .code(1)
        .stderr(contains("Unable to open journal"));
    // No journal yet: nothing to show, 0.
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    cmd(&empty).assert().success().stdout("");
}
