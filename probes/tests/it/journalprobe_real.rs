//! journalprobe against the real `journalctl` reading real journal files. The files are made by
//! `systemd-journal-remote` from entries in the Journal Export Format, in a directory of the
//! test's own; journalprobe runs a wrapper that is `journalctl --directory=<that directory>`.
//! So journalctl's own boot matching, field match and `--cursor-file` handling are exercised.
//! Skipped (with a note) where journalctl or systemd-journal-remote is not installed
//! (`scripts/install-deps.sh` installs both).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;

const EXE: &str = env!("CARGO_BIN_EXE_journalprobe");

/// The real tools, or `None` (the test is then skipped).
struct Tools {
    journalctl: PathBuf,
    remote: PathBuf,
}

fn tools(test: &str) -> Option<Tools> {
    let journalctl = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("journalctl"))
            .find(|p| p.is_file())
    });
    let remote = [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    match (journalctl, remote) {
        (Some(journalctl), Some(remote)) => Some(Tools { journalctl, remote }),
        _ => {
            eprintln!(
                "SKIPPED {test}: needs journalctl and systemd-journal-remote \
                 (scripts/install-deps.sh installs them)"
            );
            None
        }
    }
}

/// The current boot id as the journal writes it (32 hex digits): journalprobe passes `-b`.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .replace('-', "")
}

/// A directory of journal files and the entries' clock.
struct Journal<'a> {
    tools: &'a Tools,
    dir: PathBuf,
    files: usize,
    /// Microseconds, advanced per entry so that every entry is later than the one before (in
    /// both clocks, which journalctl uses to seek a cursor across files).
    realtime: u128,
    monotonic: u64,
}

/// One entry to write: the fields after the timestamps.
struct Entry<'s> {
    boot: &'s str,
    fields: Vec<(&'s str, String)>,
}

fn failed<'s>(boot: &'s str, unit: &str) -> Entry<'s> {
    Entry {
        boot,
        fields: vec![
            (
                "MESSAGE",
                format!("{unit}: Main process exited, code=exited, status=1/FAILURE"),
            ),
            ("EXIT_CODE", "exited".into()),
            ("EXIT_STATUS", "1".into()),
            ("PRIORITY", "5".into()),
            ("SYSLOG_IDENTIFIER", "systemd".into()),
            ("UNIT", unit.into()),
        ],
    }
}

fn other<'s>(boot: &'s str, message: &str, priority: u8, exit_code: Option<&str>) -> Entry<'s> {
    let mut fields = vec![
        ("MESSAGE", message.to_string()),
        ("PRIORITY", priority.to_string()),
        ("SYSLOG_IDENTIFIER", "test".into()),
    ];
    if let Some(c) = exit_code {
        fields.push(("EXIT_CODE", c.into()));
    }
    Entry { boot, fields }
}

impl<'a> Journal<'a> {
    fn new(tools: &'a Tools, env: &TestEnv) -> Journal<'a> {
        let dir = env.path("journal");
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Journal {
            tools,
            dir,
            files: 0,
            // Start a minute back so every entry of the test is in the past.
            realtime: now.as_micros() - 60_000_000,
            monotonic: 1_000_000,
        }
    }

    /// Writes `entries` into a new journal file of the directory, as a new journal file appears
    /// when journald rotates.
    fn add(&mut self, entries: &[Entry<'_>]) {
        let mut export = String::new();
        for e in entries {
            self.realtime += 1000;
            self.monotonic += 1000;
            export.push_str(&format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={}\n",
                self.realtime, self.monotonic, e.boot
            ));
            for (k, v) in &e.fields {
                assert!(!v.contains('\n'), "export text form takes one-line values");
                export.push_str(&format!("{k}={v}\n"));
            }
            export.push('\n');
        }
        self.files += 1;
        let input = self.dir.with_file_name(format!("export{}.txt", self.files));
        std::fs::write(&input, export).unwrap();
        let output = self.dir.join(format!("part{}.journal", self.files));
        let out = run(std::process::Command::new(&self.tools.remote)
            .arg(format!("--output={}", output.display()))
            .arg(&input));
        assert!(
            out.status.success(),
            "systemd-journal-remote: {}",
            stderr(&out)
        );
        assert!(output.is_file(), "no {}", output.display());
    }

    /// A journalctl that reads only this directory, for `--journalctl`.
    fn wrapper(&self, env: &TestEnv) -> PathBuf {
        let script = env.path("journalctl-wrapper");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec '{}' '--directory={}' \"$@\"\n",
                self.tools.journalctl.display(),
                self.dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }
}

fn probe(env: &TestEnv, wrapper: &Path, extra: &[&str]) -> std::process::Output {
    let out = run(env.cmd(EXE).arg("--journalctl").arg(wrapper).args(extra));
    assert!(out.status.success(), "journalprobe: {}", stderr(&out));
    out
}

fn cursor(env: &TestEnv) -> Option<String> {
    std::fs::read_to_string(env.state_dir().join("journalprobe.cursor"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn failure_payload(unit: &str) -> String {
    format!("MESSAGE={unit}: Main process exited, code=exited, status=1/FAILURE\n")
}

#[test]
fn real_journal_restart_new_entries_and_opt_out() {
    let Some(tools) = tools("real_journal_restart_new_entries_and_opt_out") else {
        return;
    };
    let env = TestEnv::new();
    let boot = boot_id();
    // An earlier boot (older timestamps, as a real one would have).
    let old_boot = "0123456789abcdef0123456789abcdef";
    assert_ne!(boot, old_boot);
    let mut journal = Journal::new(&tools, &env);
    journal.add(&[
        failed(old_boot, "earlier-boot.service"),
        other(&boot, "Started something.", 6, None),
        failed(&boot, "a.service"),
        other(&boot, "disk on fire", 2, None),
        other(
            &boot,
            "k.service: Main process exited, code=killed, status=9/KILL",
            5,
            Some("killed"),
        ),
        failed(&boot, "b.service"),
        other(&boot, "Stopped something.", 6, None),
    ]);
    let wrapper = journal.wrapper(&env);

    // A dry run prints the two failures of this boot and stores nothing.
    let out = probe(&env, &wrapper, &["-n"]);
    let recs = dry_run_records(&stdout(&out));
    assert_eq!(
        recs.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        [failure_payload("a.service"), failure_payload("b.service")],
        "{}",
        stdout(&out)
    );
    for (headers, _) in &recs {
        assert_eq!(
            header(headers, "classification"),
            "org.clearlinux/journal/error"
        );
        assert_eq!(header(headers, "severity"), "2");
    }
    assert_eq!(cursor(&env), None, "a dry run stores no cursor");

    // Opted in: sent to the daemon, the cursor is the real journal cursor of b.service's entry.
    env.opt_in();
    let daemon = env.daemon();
    probe(&env, &wrapper, &[]);
    assert_eq!(
        daemon.payloads(),
        [failure_payload("a.service"), failure_payload("b.service")]
    );
    assert_eq!(
        daemon.classifications(),
        ["org.clearlinux/journal/error"; 2]
    );
    assert_eq!(
        daemon.records()[0].get(telemetry::record::Header::Severity),
        "2"
    );
    let first = cursor(&env).expect("a cursor is stored");
    assert!(
        first.starts_with("s=") && first.contains(&format!(";b={boot};")),
        "{first}"
    );

    // A restart with the same state sends nothing, and a dry run after it prints nothing.
    probe(&env, &wrapper, &[]);
    assert_eq!(daemon.records().len(), 2);
    assert_eq!(cursor(&env).as_deref(), Some(first.as_str()));
    let out = probe(&env, &wrapper, &["-n"]);
    assert_eq!(stdout(&out), "");

    // New entries in a new journal file: only they are reported.
    journal.add(&[
        other(&boot, "Started c.", 6, None),
        failed(&boot, "c.service"),
    ]);
    probe(&env, &wrapper, &[]);
    assert_eq!(daemon.payloads().len(), 3, "{:?}", daemon.payloads());
    assert_eq!(daemon.payloads()[2], failure_payload("c.service"));
    let second = cursor(&env).unwrap();
    assert_ne!(second, first);

    // Opt-out period: nothing is sent, the cursor moves past the entries.
    std::fs::remove_file(env.path("etc/telemetrics/opt-in")).unwrap();
    journal.add(&[
        failed(&boot, "optout-1.service"),
        other(&boot, "noise", 6, None),
        failed(&boot, "optout-2.service"),
    ]);
    let out = probe(&env, &wrapper, &[]);
    let err = stderr(&out);
    assert!(err.contains("Not opted in to telemetry ("), "{err}");
    assert!(
        err.contains("2 journal entries of the opt-out period will not be reported"),
        "{err}"
    );
    assert_eq!(daemon.records().len(), 3);
    let third = cursor(&env).unwrap();
    assert_ne!(third, second, "the cursor moved past the opt-out period");

    // Opted in again: the opt-out period's entries are never sent; what follows is.
    env.opt_in();
    probe(&env, &wrapper, &[]);
    assert_eq!(daemon.records().len(), 3, "{:?}", daemon.payloads());
    journal.add(&[failed(&boot, "d.service")]);
    probe(&env, &wrapper, &[]);
    assert_eq!(daemon.payloads().len(), 4, "{:?}", daemon.payloads());
    assert_eq!(daemon.payloads()[3], failure_payload("d.service"));
    assert!(!daemon
        .payloads()
        .iter()
        .any(|p| p.contains("optout") || p.contains("earlier-boot")));
}

#[test]
fn real_journal_privacy_filters_lifted() {
    let Some(tools) = tools("real_journal_privacy_filters_lifted") else {
        return;
    };
    let env = TestEnv::new();
    env.opt_in();
    env.lift_privacy_filters();
    let daemon = env.daemon();
    let boot = boot_id();
    let mut journal = Journal::new(&tools, &env);
    journal.add(&[
        other(&boot, "disk on fire", 2, None),
        other(&boot, "just a notice", 5, None),
        failed(&boot, "a.service"),
        other(&boot, "last, unreported", 6, None),
    ]);
    let wrapper = journal.wrapper(&env);
    probe(&env, &wrapper, &[]);
    assert_eq!(
        daemon.payloads(),
        [
            "MESSAGE=disk on fire\n".to_string(),
            failure_payload("a.service")
        ]
    );
    // A restart sends nothing; then only the new entry is reported.
    probe(&env, &wrapper, &[]);
    assert_eq!(daemon.records().len(), 2);
    journal.add(&[other(&boot, "out of memory", 3, None)]);
    probe(&env, &wrapper, &[]);
    assert_eq!(daemon.payloads().len(), 3);
    assert_eq!(daemon.payloads()[2], "MESSAGE=out of memory\n");
}

/// `--tail` stores the cursor of the journal's last entry, whatever it is; the next failure
/// after it must be reported. journalctl before v255 (Debian 12 has 252) skipped the first
/// matching entry after `--cursor-file=` when the cursor's entry did not match the filter
/// (systemd #30288): this test fails with `--cursor-file=` there.
#[test]
fn real_journal_tail_reports_the_first_failure_after_the_end() {
    let Some(tools) = tools("real_journal_tail_reports_the_first_failure_after_the_end") else {
        return;
    };
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let boot = boot_id();
    let mut journal = Journal::new(&tools, &env);
    journal.add(&[
        failed(&boot, "before.service"),
        other(&boot, "Stopped something.", 6, None),
    ]);
    let wrapper = journal.wrapper(&env);
    let mut child = env
        .cmd(EXE)
        .args(["-t", "--interval", "0.05", "--journalctl"])
        .arg(&wrapper)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cursor(&env).is_none() {
        assert!(std::time::Instant::now() < deadline, "no tail position");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let end = cursor(&env).unwrap();
    journal.add(&[failed(&boot, "after.service")]);
    // The record is sent first, the cursor stored when the pass ends.
    while (daemon.records().is_empty() || cursor(&env).as_deref() == Some(end.as_str()))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Our own child, which would follow forever.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(daemon.payloads(), [failure_payload("after.service")]);
    assert_ne!(cursor(&env).unwrap(), end);
}

/// crashprobe `--journal` on a real journal with no crash in it (most machines): the pass
/// succeeds. journalctl 252 exits 1 when `--cursor-file=` is given and nothing matches, which
/// made every pass an error until crashprobe seeks with `--cursor=` like journalprobe. Then a
/// crash entry (its core gone) is reported once.
#[test]
fn real_journal_crashprobe_without_crashes_is_not_an_error() {
    let Some(tools) = tools("real_journal_crashprobe_without_crashes_is_not_an_error") else {
        return;
    };
    const CRASHPROBE: &str = env!("CARGO_BIN_EXE_crashprobe");
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let boot = boot_id();
    let mut journal = Journal::new(&tools, &env);
    journal.add(&[other(&boot, "Started something.", 6, None)]);
    let wrapper = journal.wrapper(&env);
    let crashprobe = || {
        let out = run(env
            .cmd(CRASHPROBE)
            .args(["--journal", "--journalctl"])
            .arg(&wrapper));
        assert!(out.status.success(), "crashprobe: {}", stderr(&out));
        assert!(!stderr(&out).contains("failed"), "{}", stderr(&out));
    };
    crashprobe();
    crashprobe();
    assert!(daemon.records().is_empty());
    let crash = Entry {
        boot: &boot,
        fields: vec![
            ("MESSAGE_ID", "fc2e22bc6ee647b6b90729ab34a250b1".into()),
            ("MESSAGE", "Process 42 (gone) of user 0 dumped core.".into()),
            ("COREDUMP_EXE", "/usr/bin/gone".into()),
            ("COREDUMP_COMM", "gone".into()),
            ("COREDUMP_PID", "42".into()),
            ("COREDUMP_SIGNAL", "11".into()),
            (
                "COREDUMP_FILENAME",
                "/var/lib/systemd/coredump/core.gone.0.x.42.1.zst".into(),
            ),
        ],
    };
    journal.add(&[crash]);
    crashprobe();
    crashprobe();
    assert_eq!(daemon.records().len(), 1, "{:?}", daemon.payloads());
}
