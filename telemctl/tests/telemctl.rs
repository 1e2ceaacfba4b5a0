//! telemctl against a temporary root (TELEM_ROOT) and a recording stand-in for systemctl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use telemetry::journal::{Entry, Outcome};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(env.root()).unwrap();
        let script = env.dir.path().join("systemctl");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n[ \"$1\" = is-active ] && echo active\nexit 0\n",
                env.calls_file().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn p(&self, abs: &str) -> PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    fn calls_file(&self) -> PathBuf {
        self.dir.path().join("systemctl.calls")
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.calls_file())
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("telemctl").unwrap();
        c.env("TELEM_ROOT", self.root())
            .env("TELEM_SYSTEMCTL", self.dir.path().join("systemctl"))
            .env_remove("TELEM_CONFIG")
            .timeout(Duration::from_secs(30));
        c
    }

    fn write(&self, abs: &str, content: &str) -> PathBuf {
        let p = self.p(abs);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }
}

#[test]
fn opt_in_creates_the_file_and_starts_the_triggers() {
    let env = Env::new();
    env.cmd()
        .arg("opt-in")
        .assert()
        .success()
        .stdout(contains("Opted in to telemetry: created"))
        .stdout(contains("start telemprobd.socket: ok"));
    assert!(env.p("/etc/telemetrics/opt-in").is_file());
    assert_eq!(
        env.calls(),
        [
            "start hprobe.timer",
            "start telemprobd.socket",
            "start telempostd.path",
            "start klogscanner.service",
            "start journal-probe-tail.service",
            "start rasprobe.service"
        ]
    );
    env.cmd()
        .arg("opt-in")
        .assert()
        .success()
        .stdout(contains("Already opted in"));
    assert_eq!(env.calls().len(), 6, "nothing started the second time");
}

#[test]
fn start_needs_opt_in() {
    let env = Env::new();
    env.cmd()
        .arg("start")
        .assert()
        .code(1)
        .stderr(contains("Opt in to telemetry first"));
    assert!(env.calls().is_empty());
}

#[test]
fn opt_out_stops_and_purges_only_our_files_without_following_symlinks() {
    let env = Env::new();
    env.write("/etc/telemetrics/opt-in", "");
    let spooled = env.write(
        "/var/spool/telemetry/00000000000000000001-00000001",
        "record",
    );
    env.write("/var/spool/telemetry/.tmp-file", "partial");
    env.write("/var/log/telemetry/records/abc", "body");
    env.write("/var/cache/telemetry/pstore/dump", "x");
    env.write("/var/lib/telemetry/machine_id", "0123");
    let journal = env.write("/var/log/telemetry/journal", "kept\n");
    // Things outside our directories, reachable through symlinks planted inside them.
    let outside = env.dir.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("precious"), "keep me").unwrap();
    fs::write(outside.join("dir/also"), "keep me too").unwrap();
    std::os::unix::fs::symlink(outside.join("precious"), env.p("/var/spool/telemetry/link"))
        .unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), env.p("/var/cache/telemetry/linkdir")).unwrap();

    env.cmd()
        .arg("opt-out")
        .assert()
        .success()
        .stdout(contains("Opted out of telemetry"))
        .stdout(contains(
            "Deleted 1 queued record and 6 other collected files",
        ));
    assert!(!env.p("/etc/telemetrics/opt-in").exists());
    assert!(!spooled.exists());
    assert_eq!(
        fs::read_dir(env.p("/var/spool/telemetry")).unwrap().count(),
        0
    );
    assert_eq!(
        fs::read_dir(env.p("/var/cache/telemetry")).unwrap().count(),
        0
    );
    assert!(!env.p("/var/lib/telemetry/machine_id").exists());
    assert!(journal.exists(), "the journal is kept");
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );
    assert_eq!(
        fs::read_to_string(outside.join("dir/also")).unwrap(),
        "keep me too"
    );
    let calls = env.calls();
    assert!(calls.contains(&"stop telemprobd.socket".to_string()));
    assert!(calls.contains(&"stop telempostd.service".to_string()));

    env.cmd()
        .arg("opt-out")
        .assert()
        .success()
        .stdout(contains("Already opted out"));
}

#[test]
fn opt_out_leaves_a_symlinked_spool_dir_alone() {
    let env = Env::new();
    env.write("/etc/telemetrics/opt-in", "");
    let outside = env.dir.path().join("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("important"), "data").unwrap();
    fs::create_dir_all(env.p("/var/spool")).unwrap();
    std::os::unix::fs::symlink(&outside, env.p("/var/spool/telemetry")).unwrap();
    env.cmd()
        .arg("opt-out")
        .assert()
        .code(1)
        .stderr(contains("not a directory (a symlink?); left alone"));
    assert_eq!(
        fs::read_to_string(outside.join("important")).unwrap(),
        "data"
    );
}

#[test]
fn non_root_is_refused_clearly() {
    let env = Env::new();
    // Run as "nobody" when we are root; otherwise as ourselves. TELEM_ROOT is "/" (owned by
    // root, not by the caller), so the command must refuse before touching anything.
    let make = || {
        let mut c = if rustix::process::geteuid().is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(assert_cmd::cargo::cargo_bin("telemctl"));
            c
        } else {
            Command::cargo_bin("telemctl").unwrap()
        };
        c.env("TELEM_ROOT", "/")
            .env("TELEM_SYSTEMCTL", env.dir.path().join("systemctl"))
            .timeout(Duration::from_secs(30));
        c
    };
    for sub in ["opt-in", "opt-out", "start", "stop"] {
        make()
            .arg(sub)
            .assert()
            .code(1)
            .stderr(contains("Must be root"));
    }
    assert!(env.calls().is_empty());
}

fn journal_fixture(env: &Env) {
    let mut text = String::new();
    let mk = |class: &str, event: &str, boot: &str, outcome: Outcome, detail: &str, rid: &str| {
        let mut e = Entry::new(class, event, outcome, detail).unwrap();
        e.boot_id = boot.to_string();
        e.record_id = rid.to_string();
        e.timestamp = 1_700_000_000;
        e.to_line()
    };
    let ev1 = "11111111111111111111111111111111";
    let ev2 = "22222222222222222222222222222222";
    for i in 0..20 {
        text.push_str(&mk(
            "org.x/hello/world",
            &format!("{i:032x}"),
            "boot-a",
            Outcome::Delivered,
            "",
            &format!("r{i}"),
        ));
    }
    text.push_str(&mk(
        "a/b/c",
        ev1,
        "boot-b",
        Outcome::Delivered,
        "201",
        "rid-c",
    ));
    text.push_str(&mk(
        "a/b/d",
        ev1,
        "boot-b",
        Outcome::Rejected,
        "400 Classification value is invalid",
        "rid-d",
    ));
    text.push_str(&mk(
        "a/x/y",
        ev2,
        "boot-b",
        Outcome::Expired,
        "older than 1200 min",
        "rid-y",
    ));
    // A line written by the original daemon: five fields.
    text.push_str("0123456789abcdef0123456789abcdef\u{1e}1520054957\u{1e}t/t/t\u{1e}3bc17766547776eb7fc478eb0eb43e43\u{1e}boot-old\n");
    env.write("/var/log/telemetry/journal", &text);
    env.write("/var/log/telemetry/records/rid-c", "retained body of c\n");
}

fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn journal_filters() {
    let env = Env::new();
    journal_fixture(&env);
    let run = |args: &[&str]| -> Vec<String> {
        let o = env.cmd().arg("journal").args(args).assert().success();
        lines(&o.get_output().stdout)
    };
    assert_eq!(run(&[]).len(), 24);
    assert_eq!(run(&["-c", "a/b/c"]).len(), 1);
    assert_eq!(run(&["-c", "a/b/*"]).len(), 2);
    assert_eq!(run(&["-c", "a/*"]).len(), 3);
    assert_eq!(run(&["-e", "11111111111111111111111111111111"]).len(), 2);
    assert_eq!(run(&["-r", "rid-y"]).len(), 1);
    assert_eq!(run(&["-b", "boot-b"]).len(), 3);
    assert_eq!(
        run(&[
            "-b",
            "boot-b",
            "-c",
            "a/b/*",
            "-e",
            "11111111111111111111111111111111"
        ])
        .len(),
        2
    );
    assert_eq!(run(&["-c", "none/such/thing"]).len(), 0);
    let rejected = run(&["-r", "rid-d"]);
    assert!(
        rejected[0].contains("rejected (400 Classification value is invalid)"),
        "{rejected:?}"
    );
    assert!(rejected[0].starts_with("a/b/d "));
    assert!(rejected[0].contains("2023-11-14 22:13:20 UTC"));
    let old = run(&["-c", "t/t/t"]);
    assert_eq!(old.len(), 1);
    assert!(old[0].contains("boot-old"));
    let with_body = run(&["-r", "rid-c", "-i"]);
    assert_eq!(with_body[1], "retained body of c");
    let verbose = run(&["-V", "-c", "a/b/*"]);
    assert!(verbose[0].starts_with("Classification"));
    assert_eq!(verbose.last().unwrap(), "Total records: 2");
}

#[test]
fn journal_considers_the_newest_100_entries() {
    let env = Env::new();
    let mut text = String::new();
    for i in 0..130 {
        let mut e = Entry::new("a/b/c", &format!("{i:032x}"), Outcome::Delivered, "").unwrap();
        e.record_id = format!("r{i}");
        text.push_str(&e.to_line());
    }
    env.write("/var/log/telemetry/journal", &text);
    let o = env.cmd().arg("journal").assert().success();
    let l = lines(&o.get_output().stdout);
    assert_eq!(l.len(), 100);
    assert!(l[0].contains(" r30 "), "{}", l[0]);
}

#[test]
fn journal_without_a_journal_says_so_and_succeeds() {
    let env = Env::new();
    env.cmd()
        .arg("journal")
        .assert()
        .success()
        .stdout("")
        .stderr(contains("No journal yet").and(contains(
            env.p("/var/log/telemetry/journal").display().to_string(),
        )));
}

/// A collector's error message is stored in the journal as it came; printed, its control
/// characters are escaped so no terminal escape sequence reaches the terminal.
#[test]
fn journal_escapes_control_characters_from_the_collector() {
    let env = Env::new();
    let mut e = Entry::new(
        "a/b/c",
        "11111111111111111111111111111111",
        Outcome::Rejected,
        "400 \u{1b}]0;pwned\u{7}\u{1b}[2Jbad\u{8}\u{9b}31m",
    )
    .unwrap();
    e.boot_id = "boot\u{1b}[1m".to_string();
    env.write("/var/log/telemetry/journal", &e.to_line());
    for args in [&["-V"][..], &[][..]] {
        let o = env.cmd().arg("journal").args(args).assert().success();
        let out = String::from_utf8(o.get_output().stdout.clone()).unwrap();
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "control characters reach the terminal: {out:?}"
        );
        assert!(
            out.contains("rejected (400 \\x1b]0;pwned\\x07\\x1b[2Jbad\\x08\\u{9b}31m)"),
            "{out}"
        );
        assert!(out.contains("boot\\x1b[1m"), "{out}");
    }
}

#[test]
fn status_reports_daemons_spool_and_counters() {
    let env = Env::new();
    env.write("/etc/telemetrics/opt-in", "");
    let me = std::process::id();
    env.write(
        "/var/lib/telemetry/telemprobd.status",
        &format!("pid={me}\nstarted=1700000000\nupdated=1700000100\ncounter.received=12\ncounter.stored=11\ncounter.rejected=1\ncounter.rate_limited=0\ncounter.quota_used_bytes=448\ncounter.refused_not_opted_in=0\ncounter.spool_full=0\ncounter.timed_out=0\n"),
    );
    env.write(
        "/var/lib/telemetry/telempostd.status",
        "pid=999999999\nstarted=1700000000\nupdated=1700000200\nlast_delivery=1700000150\nlast_error=collector answered 503\nlast_error_at=1700000100\ncounter.delivered=9\n",
    );
    env.write("/var/spool/telemetry/00000000000000000001-00000001", "abc");
    env.write(
        "/var/spool/telemetry/00000000000000000002-00000002",
        "defgh",
    );
    env.write("/var/spool/telemetry/.partial.tmp", "zzzzzzzzzz");
    env.cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(contains("opt-in:      opted in"))
        .stdout(contains(format!("telemprobd:  running (pid {me}")))
        .stdout(contains(
            "quota used bytes 448, received 12, rejected 1, stored 11\n",
        ))
        .stdout(contains("rate limited").not())
        .stdout(contains("timed out").not())
        .stdout(contains("telempostd:  not running (last pid 999999999"))
        .stdout(contains("delivered 9"))
        .stdout(contains("spool:       2 records, 8 bytes, oldest"))
        .stdout(contains("last delivery: 2023-11-14 22:15:50 UTC"))
        .stdout(contains(
            "last error:  telempostd: collector answered 503 (2023-11-14 22:15:00 UTC, ",
        ));
}

#[test]
fn status_with_nothing_running() {
    let env = Env::new();
    env.cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(contains("not opted in"))
        .stdout(contains("telemprobd:  not running (no status yet)"))
        .stdout(contains("last delivery: never"));
}

#[test]
fn config_shows_values_and_sources() {
    let env = Env::new();
    let admin = env.write(
        "/etc/telemetrics/telemetrics.conf",
        "[settings]\nserver=http://admin.example/v2/collector\n",
    );
    env.write(
        "/usr/share/defaults/telemetrics/telemetrics.conf",
        "[settings]\nrecord_expiry=60\nserver=http://vendor\n",
    );
    env.cmd()
        .arg("config")
        .assert()
        .success()
        .stdout(contains(format!(
            "server=http://admin.example/v2/collector    # {}:2",
            admin.display()
        )))
        .stdout(contains("record_expiry=60    # "))
        .stdout(contains("spool_process_time=120    # built-in default"))
        .stdout(contains(format!(
            "socket_path={}    # built-in default",
            env.p("/run/telem-0").display()
        )));
}

/// `config` shows what the programs will use and every problem; `--check` fails on anything
/// questionable, for packagers and CI.
#[test]
fn config_check_is_strict_and_config_shows_every_problem() {
    let env = Env::new();
    let clean = env.write("/clean.conf", "[settings]\nrecord_expiry=60\n");
    env.cmd()
        .args(["-f", clean.to_str().unwrap(), "config", "--check"])
        .assert()
        .success()
        .stdout(contains("record_expiry=60    # "))
        .stdout(contains("# warning").not());

    // What the original accepted: it works, with a warning; the strict check fails.
    let old = env.write(
        "/old.conf",
        "[settings]\nrecord_expiry=1200 # minutes\nrate_limit_strategy=later\n",
    );
    env.cmd()
        .args(["-f", old.to_str().unwrap(), "config"])
        .assert()
        .success()
        .stdout(contains(format!(
            "# warning: {}:2: record_expiry: \"1200 # minutes\" read as 1200",
            old.display()
        )))
        .stdout(contains(format!(
            "# warning: {}:3: rate_limit_strategy",
            old.display()
        )))
        .stdout(contains("record_expiry=1200    # "));
    env.cmd()
        .args(["-f", old.to_str().unwrap(), "config", "--check"])
        .assert()
        .code(1)
        .stderr(contains("0 error(s), 2 warning(s)"));

    // An error: the daemons refuse to start, so plain `config` fails too, and still shows the
    // file's other keys and every problem.
    let bad = env.write(
        "/bad.conf",
        "[settings]\nrate_limit_enabled=maybe\nsocket_path=/custom/sock\nserver=nowhere\n",
    );
    env.cmd()
        .args(["-f", bad.to_str().unwrap(), "config"])
        .assert()
        .code(1)
        .stdout(contains(format!(
            "# error: {}:2: rate_limit_enabled",
            bad.display()
        )))
        .stdout(contains(format!("# error: {}:4: server", bad.display())))
        .stdout(contains("socket_path=/custom/sock    # "))
        .stderr(contains("2 error(s), 0 warning(s)"));

    env.cmd()
        .args(["-f", env.p("/missing.conf").to_str().unwrap(), "config"])
        .assert()
        .code(1)
        .stderr(contains("missing.conf does not exist"));
}

#[test]
fn is_active_fails_when_the_state_is_unknown() {
    let env = Env::new();
    // A systemctl that answers nothing (as when the bus cannot be reached).
    let silent = env.dir.path().join("silent-systemctl");
    fs::write(&silent, "#!/bin/sh\nexit 4\n").unwrap();
    fs::set_permissions(&silent, fs::Permissions::from_mode(0o755)).unwrap();
    env.cmd()
        .env("TELEM_SYSTEMCTL", &silent)
        .arg("is-active")
        .assert()
        .code(1)
        .stdout("telemprobd : unknown\ntelempostd : unknown\n");
    // No systemctl at all.
    env.cmd()
        .env("TELEM_SYSTEMCTL", env.dir.path().join("missing"))
        .arg("is-active")
        .assert()
        .code(1)
        .stdout(contains("telemprobd : unknown ("));
}

/// A bad value in the administrator's file: status and config still work and show the problem
/// (and what is in effect: the file's other keys, that key's default) instead of refusing.
#[test]
fn status_and_config_show_a_bad_config_line_instead_of_failing() {
    let env = Env::new();
    let admin = env.write(
        "/etc/telemetrics/telemetrics.conf",
        "[settings]\nserver=http://admin.example/v2/collector\nrate_limit_enabled=maybe\n",
    );
    env.write(
        "/usr/share/defaults/telemetrics/telemetrics.conf",
        "[settings]\nserver=http://vendor.example/v2/collector\n",
    );
    let problem = format!("{}:3: rate_limit_enabled", admin.display());
    env.cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(contains("config:      error:").and(contains(problem.as_str())))
        .stdout(contains("telemprobd:  not running"));
    // Shown whole, then exit 1: the daemons refuse to start with an error in a file.
    env.cmd()
        .arg("config")
        .assert()
        .code(1)
        .stdout(contains(format!("# error: {problem}")))
        .stdout(contains("server=http://admin.example/v2/collector"))
        .stdout(contains("rate_limit_enabled=true"));
    // Commands that act on the configuration still refuse.
    env.cmd()
        .arg("opt-in")
        .assert()
        .code(1)
        .stderr(contains(problem.as_str()));
}

#[test]
fn is_active_asks_systemctl() {
    let env = Env::new();
    env.cmd()
        .arg("is-active")
        .assert()
        .success()
        .stdout("telemprobd : active\ntelempostd : active\n");
}

#[test]
fn without_systemd_start_says_what_to_do() {
    if Path::new("/run/systemd/system").is_dir() {
        // systemd is PID 1 here: the branch under test cannot be reached on this machine.
        return;
    }
    let env = Env::new();
    env.write("/etc/telemetrics/opt-in", "");
    let mut c = env.cmd();
    c.env_remove("TELEM_SYSTEMCTL");
    c.arg("start")
        .assert()
        .code(1)
        .stderr(contains("systemd is not running"))
        .stderr(contains("telemprobd &"));
}

#[test]
fn usage_errors() {
    let env = Env::new();
    env.cmd().assert().code(2).stderr(contains("Usage"));
    env.cmd().arg("frobnicate").assert().code(2);
    env.cmd()
        .args(["-f", "relative.conf", "status"])
        .assert()
        .code(1)
        .stderr(contains("Configuration file path not valid"));
    env.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("opt-out").and(contains("journal")));
}
