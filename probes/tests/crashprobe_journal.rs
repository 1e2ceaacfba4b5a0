//! `crashprobe --journal` end to end: real cores of `coredump/tests/c/crash.c`, stored as
//! systemd-coredump stores them (zstd file, or inline in the entry), named by canned
//! `journalctl -o json` lines (`--input`) or by a fake `journalctl` script; records printed
//! (`--dry-run`) or received on a real Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../coredump/tests/it/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "support/crash_root.rs"]
mod crash_root;

use crash_root::{daemon, stdout, Root};
use fixture::{compile, line_of, make_core, Program};

const MESSAGE_ID: &str = "fc2e22bc6ee647b6b90729ab34a250b1";

/// A TELEM_ROOT with opted-in configuration and a coredump directory.
struct Env {
    root: Root,
}

impl Env {
    fn new() -> Env {
        let root = Root::new();
        fs::create_dir_all(root.path().join("coredump")).unwrap();
        Env { root }
    }

    /// [`Env::new`], with every binary treated as "ours" (the tests build theirs under /tmp).
    fn unfiltered() -> Env {
        let env = Env::new();
        env.root.lift_privacy_filters();
        env
    }

    fn coredump_dir(&self) -> PathBuf {
        self.root.path().join("coredump")
    }

    /// Writes `bytes` as systemd-coredump names a core of PID 4242: `core.crash.…<suffix>`.
    fn core_file(&self, suffix: &str, bytes: &[u8]) -> PathBuf {
        let p = self.coredump_dir().join(format!(
            "core.crash.1000.b00t.4242.1700000000000000{suffix}"
        ));
        fs::write(&p, bytes).unwrap();
        p
    }

    fn cursor_file(&self) -> PathBuf {
        self.root
            .path()
            .join("var/lib/telemetry/crashprobe-journal.cursor")
    }

    /// Writes canned journalctl output.
    fn journal(&self, lines: &[String]) -> PathBuf {
        let p = self.root.path().join("journal.json");
        fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    /// Runs `crashprobe --journal --coredump-dir <dir> ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let dir = self.coredump_dir();
        let child = self
            .root
            .command()
            .arg("--journal")
            .arg("--coredump-dir")
            .arg(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `--input <journal> ARGS`
    fn run_input(&self, journal: &Path, args: &[&str]) -> Output {
        let mut all = vec!["--input", journal.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run(&all)
    }
}

fn ok(o: &Output) -> String {
    let text = stdout(o);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// One systemd-coredump entry; `core` is `"COREDUMP_FILENAME":"..."` or `"COREDUMP":[...]`.
fn entry(cursor: &str, exe: &Path, time_s: u64, core: &str) -> String {
    let exe = exe.to_str().unwrap();
    format!(
        r#"{{"__CURSOR":"{cursor}","__REALTIME_TIMESTAMP":"{time_s}000000","MESSAGE_ID":"{MESSAGE_ID}","COREDUMP_EXE":"{exe}","COREDUMP_COMM":"crash","COREDUMP_PID":"4242","COREDUMP_SIGNAL":"11","COREDUMP_TIMESTAMP":"{time_s}000000",{core}}}"#
    )
}

fn file_field(p: &Path) -> String {
    format!(r#""COREDUMP_FILENAME":"{}""#, p.to_str().unwrap())
}

fn inline_field(core: &[u8]) -> String {
    let bytes: Vec<String> = core.iter().map(u8::to_string).collect();
    format!(r#""COREDUMP":[{}]"#, bytes.join(","))
}

/// A core of the single-threaded crash and its program.
fn core() -> (Program, Vec<u8>) {
    let p = compile(&[]);
    let core = make_core(&p.bin, &[], p.dir.path());
    let bytes = fs::read(core).unwrap();
    (p, bytes)
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

/// The crashed thread's frames, as the pipe mode prints them.
fn crashed_frames(bin: &Path) -> String {
    let bin = bin.display();
    let file = Path::new(fixture::SOURCE).display();
    [
        format!("#0 inner() - [{bin}] - {file}:{}\n", line_of("CRASH_LINE")),
        format!(
            "#1 middle() - [{bin}] - {file}:{}\n",
            line_of("MIDDLE_LINE")
        ),
        format!("#2 outer() - [{bin}] - {file}:{}\n", line_of("OUTER_LINE")),
    ]
    .concat()
}

#[test]
fn zstd_file_and_inline_core_give_backtraces_and_nothing_twice() {
    let (p, core) = core();
    let env = Env::unfiltered();
    let zst = env.core_file(".zst", &zstd(&core));
    let journal = env.journal(&[
        entry("c1", &p.bin, 1_700_000_000, &file_field(&zst)),
        entry("c2", &p.bin, 1_700_000_100, &inline_field(&core)),
    ]);
    let text = ok(&env.run_input(&journal, &["-n"]));
    assert_eq!(
        text.matches("classification: org.clearlinux/crash/clr\nseverity: 3\n")
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches(&format!("Process: {}\nPID: ", p.bin.display()))
            .count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches("\nSignal: 11\n\nBacktrace (TID ").count(), 2);
    assert_eq!(text.matches(&crashed_frames(&p.bin)).count(), 2, "{text}");
    // A dry run stores no cursor: the same entries again.
    assert!(!env.cursor_file().exists());
    let again = ok(&env.run_input(&journal, &["-n"]));
    assert_eq!(again.matches(&crashed_frames(&p.bin)).count(), 2, "{again}");
}

#[test]
fn zstd_cli_output_is_read_too() {
    // Real zstd frames (checksum, content size) when the CLI is installed; skipped otherwise.
    if Command::new("zstd").arg("--version").output().is_err() {
        eprintln!("zstd CLI not installed: skipped");
        return;
    }
    let (p, core) = core();
    let env = Env::unfiltered();
    let plain = env.core_file("", &core);
    let st = Command::new("zstd")
        .args(["-q", "-19", "--rm"])
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    let zst = plain.with_extension("1700000000000000.zst");
    assert!(zst.exists());
    let journal = env.journal(&[entry("c1", &p.bin, 1_700_000_000, &file_field(&zst))]);
    let text = ok(&env.run_input(&journal, &["-n"]));
    assert!(text.contains(&crashed_frames(&p.bin)), "{text}");
}

#[test]
fn lz4_core_file_is_read() {
    let (p, core) = core();
    let env = Env::unfiltered();
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    enc.write_all(&core).unwrap();
    let lz4 = env.core_file(".lz4", &enc.finish().unwrap());
    let mut lines = vec![entry("c1", &p.bin, 1_700_000_000, &file_field(&lz4))];
    // The lz4 CLI with linked blocks (-BD, as liblz4's default frame preferences), when
    // installed.
    if Command::new("lz4").arg("--version").output().is_ok() {
        let cli = env
            .coredump_dir()
            .join("core.crash.1000.b00t.4243.1700000000000000.lz4");
        let mut child = Command::new("lz4")
            .args(["-q", "-BD", "-"])
            .arg(&cli)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&core).unwrap();
        assert!(child.wait().unwrap().success());
        lines.push(entry("c2", &p.bin, 1_700_000_100, &file_field(&cli)));
    }
    let journal = env.journal(&lines);
    let text = ok(&env.run_input(&journal, &["-n"]));
    assert_eq!(
        text.matches(&crashed_frames(&p.bin)).count(),
        lines.len(),
        "{text}"
    );
}

#[test]
fn xz_core_files_are_read() {
    // Compressed by the xz CLI (liblzma, as systemd-coredump before v246 and with
    // `Compress=xz` builds): CRC64 as systemd writes, and SHA-256 for another check type.
    let (p, core) = core();
    let env = Env::unfiltered();
    let mut lines = Vec::new();
    for (i, check) in ["crc64", "sha256"].into_iter().enumerate() {
        let path = env
            .coredump_dir()
            .join(format!("core.crash.1000.b00t.{i}.1700000000000000.xz"));
        let mut child = Command::new("xz")
            .args(["-q", "-c", "-T1", &format!("--check={check}")])
            .stdin(Stdio::piped())
            .stdout(fs::File::create(&path).unwrap())
            .spawn()
            .expect("the xz CLI (apt-get install xz-utils)");
        child.stdin.take().unwrap().write_all(&core).unwrap();
        assert!(child.wait().unwrap().success());
        lines.push(entry(
            &format!("c{i}"),
            &p.bin,
            1_700_000_000 + i as u64 * 100,
            &file_field(&path),
        ));
    }
    let journal = env.journal(&lines);
    let text = ok(&env.run_input(&journal, &["-n"]));
    assert_eq!(text.matches(&crashed_frames(&p.bin)).count(), 2, "{text}");
}

#[test]
fn uncompressed_core_file_is_read() {
    let (p, core) = core();
    let env = Env::unfiltered();
    let plain = env.core_file("", &core);
    let journal = env.journal(&[entry("c1", &p.bin, 1_700_000_000, &file_field(&plain))]);
    let text = ok(&env.run_input(&journal, &["-n"]));
    assert!(text.contains(&crashed_frames(&p.bin)), "{text}");
}

#[test]
fn missing_unsupported_and_outside_cores_are_error_records() {
    let env = Env::unfiltered();
    let exe = Path::new("/usr/bin/crashy");
    let dir = env.coredump_dir();
    let missing = dir.join("core.crash.1000.b00t.1.1700000000000000.zst");
    let lz4 = dir.join("core.crash.1000.b00t.2.1700000000000000.lz4");
    fs::write(&lz4, b"\x04\x22\x4d\x18whatever").unwrap();
    let xz = dir.join("core.crash.1000.b00t.7.1700000000000000.xz");
    fs::write(&xz, b"\xfd7zXZ\0 not really").unwrap();
    let gz = dir.join("core.crash.1000.b00t.3.1700000000000000.gz");
    fs::write(&gz, b"x").unwrap();
    let journal = env.journal(&[
        entry("c1", exe, 1_700_000_000, &file_field(&missing)),
        entry("c2", exe, 1_700_000_100, &file_field(&lz4)),
        entry("c3", exe, 1_700_000_200, &file_field(&gz)),
        entry(
            "c4",
            exe,
            1_700_000_300,
            &file_field(Path::new("/etc/passwd")),
        ),
        entry("c5", exe, 1_700_000_400, r#""COREDUMP_FILENAME":null"#),
        entry("c6", exe, 1_700_000_500, &inline_field(b"\x7fELF garbage")),
        entry("c7", exe, 1_700_000_600, &file_field(&xz)),
    ]);
    let text = ok(&env.run_input(&journal, &["-n"]));
    assert_eq!(
        text.matches("classification: org.clearlinux/crash/error\nseverity: 4\n")
            .count(),
        7,
        "{text}"
    );
    assert_eq!(
        text.matches("Process: /usr/bin/crashy\nSignal: 11\nError: ")
            .count(),
        7,
        "{text}"
    );
    for msg in [
        format!("Error: cannot open core file {}: ", missing.display()),
        format!("Error: core file {} (lz4): ", lz4.display()),
        format!("Error: core file {} (xz): ", xz.display()),
        format!(
            "Error: core file {}: unknown (.gz) compression is not supported",
            gz.display()
        ),
        "Error: core file /etc/passwd is not in ".to_string(),
        "Error: the journal entry has no core".to_string(),
    ] {
        assert!(text.contains(&msg), "{msg}\n{text}");
    }
}

#[test]
fn privacy_filters_and_flood_control_apply() {
    let env = Env::new();
    // Privacy filters on: /opt is third party, the core is not even looked at.
    let journal = env.journal(&[
        entry("c1", Path::new("/opt/x/app"), 1_700_000_000, "\"X\":\"1\""),
        entry("c2", Path::new("/opt/x/app"), 1_700_000_010, "\"X\":\"1\""),
        entry("c3", Path::new("/opt/x/app"), 1_700_000_100, "\"X\":\"1\""),
    ]);
    let text = ok(&env.run_input(&journal, &["-n"]));
    assert_eq!(
        text.matches("classification: org.clearlinux/crash/unknown\nseverity: 2\n")
            .count(),
        2,
        "{text}"
    );
    // By crash time: c2 is 10 s after c1 (suppressed), c3 100 s after (reported, with c2
    // counted).
    assert!(text.contains("Crash from third party\n"), "{text}");
}

#[test]
fn sent_once_then_the_cursor_prevents_a_second_report() {
    let (p, core) = core();
    let env = Env::unfiltered();
    let zst = env.core_file(".zst", &zstd(&core));
    let journal = env.journal(&[entry("c1", &p.bin, 1_700_000_000, &file_field(&zst))]);
    let server = daemon(&env.root, 1);
    let start = Instant::now();
    ok(&env.run_input(&journal, &[]));
    let records = server.join().unwrap();
    let payload = String::from_utf8(records[0].payload().to_vec()).unwrap();
    assert!(payload.contains(&crashed_frames(&p.bin)), "{payload}");
    assert_eq!(fs::read_to_string(env.cursor_file()).unwrap(), "c1\n");
    // Second run, no daemon listening any more: a send attempt would fail the run.
    fs::remove_file(env.root.path().join("run/telem-0")).unwrap();
    let out = env.run_input(&journal, &["--flood-window", "0"]);
    assert_eq!(ok(&out), "");
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn opted_out_entries_are_skipped_for_good() {
    let env = Env::unfiltered();
    fs::remove_file(env.root.path().join("etc/telemetrics/opt-in")).unwrap();
    let journal = env.journal(&[entry("c1", Path::new("/usr/bin/a"), 1, "\"X\":\"1\"")]);
    let out = env.run_input(&journal, &[]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 crash of the opt-out period"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(env.cursor_file()).unwrap(), "c1\n");
    // Opted in again: nothing from the opt-out period (no daemon: a send would fail).
    fs::write(env.root.path().join("etc/telemetrics/opt-in"), "").unwrap();
    assert_eq!(ok(&env.run_input(&journal, &[])), "");
}

#[test]
fn journalctl_is_run_from_the_stored_cursor() {
    // A fake journalctl: logs its arguments, prints one entry.
    let env = Env::new();
    // Opted out: the entry is read and skipped, so no daemon is needed.
    fs::remove_file(env.root.path().join("etc/telemetrics/opt-in")).unwrap();
    let log = env.root.path().join("args.log");
    let script = env.root.path().join("journalctl");
    let line = entry("c9", Path::new("/opt/a"), 1, "\"X\":\"1\"");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\ncat <<'EOF'\n{line}\nEOF\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out = env.run(&["--journalctl", script.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 crash of the opt-out period"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = fs::read_to_string(&log).unwrap();
    assert!(args.contains("\n--all\n"), "{args}");
    assert!(args.starts_with("-b\n"), "{args}");
    assert!(!args.contains("--cursor"), "{args}");
    assert!(
        args.ends_with(&format!("\nMESSAGE_ID={MESSAGE_ID}\n")),
        "{args}"
    );
    let cursor = env.cursor_file();
    assert_eq!(fs::read_to_string(&cursor).unwrap(), "c9\n");
    // With a cursor stored: from that entry on (`--cursor=`, the entry itself is dropped), no
    // -b (entries after it, across reboots). The stand-in shows the stored entry again.
    for dry_run in [false, true] {
        let mut args = vec!["--journalctl", script.to_str().unwrap()];
        if dry_run {
            args.push("-n");
        }
        let out = env.run(&args);
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("opt-out period will"), "handled again: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        let args = fs::read_to_string(&log).unwrap();
        assert!(!args.contains("\n-b\n"), "{args}");
        assert!(args.contains("\n--cursor=c9\n"), "{args}");
        assert_eq!(fs::read_to_string(&cursor).unwrap(), "c9\n");
    }
}

#[test]
fn journal_mode_rejects_pipe_mode_options() {
    let env = Env::new();
    let out = env.run(&["-p", "x"]);
    assert!(!out.status.success());
    let out = env
        .root
        .command()
        .args(["--input", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
