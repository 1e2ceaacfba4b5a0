//! crashprobe end to end: real cores of `coredump/tests/c/crash.c` piped into the binary,
//! records printed (`--dry-run`) or received on a real Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../coredump/tests/it/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

#[path = "support/crash_root.rs"]
mod crash_root;

use crash_root::{daemon, stdout, Root};
use fixture::{compile, line_of, make_core, Program};

/// A TELEM_ROOT with opted-in configuration.
struct Env {
    root: Root,
}

impl Env {
    fn new() -> Env {
        Env { root: Root::new() }
    }

    fn lift_privacy_filters(&self) {
        self.root.lift_privacy_filters();
    }

    fn flood_dir(&self) -> PathBuf {
        self.root.path().join("var/cache/telemetry/crashprobe")
    }

    /// Runs crashprobe with `stdin_bytes` on a real pipe.
    fn run(&self, args: &[&str], stdin_bytes: &[u8]) -> Output {
        let mut child = self
            .root
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let bytes = stdin_bytes.to_vec();
        // Write from a thread: crashprobe may stop reading early (filtered crash).
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }
}

fn escaped(p: &Path) -> String {
    p.to_str().unwrap().replace('/', "!")
}

fn threaded_core() -> (Program, Vec<u8>) {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["threads"], p.dir.path());
    let bytes = fs::read(core).unwrap();
    (p, bytes)
}

#[test]
fn piped_core_gives_every_thread_with_functions_and_lines() {
    let (p, core) = threaded_core();
    let env = Env::new();
    env.lift_privacy_filters();
    let out = env.run(
        &["-p", "crashme", "-E", &escaped(&p.bin), "-s", "11", "-n"],
        &core,
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("classification: org.clearlinux/crash/clr\nseverity: 3\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Process: {}\nPID: ", p.bin.display())),
        "{text}"
    );
    assert!(text.contains("\nSignal: 11\n\nBacktrace (TID "), "{text}");
    let bin = p.bin.display();
    // DWARF names the source as gcc was given it.
    let file = Path::new(fixture::SOURCE);
    let crashed = [
        format!(
            "#0 inner() - [{bin}] - {}:{}\n",
            file.display(),
            line_of("CRASH_LINE")
        ),
        format!(
            "#1 middle() - [{bin}] - {}:{}\n",
            file.display(),
            line_of("MIDDLE_LINE")
        ),
        format!(
            "#2 outer() - [{bin}] - {}:{}\n",
            file.display(),
            line_of("OUTER_LINE")
        ),
        format!(
            "#3 main() - [{bin}] - {}:{}\n",
            file.display(),
            line_of("MAIN_LINE")
        ),
    ]
    .concat();
    assert!(text.contains(&crashed), "{text}");
    assert_eq!(text.matches("Backtrace (TID ").count(), 3, "{text}");
    let worker = format!(
        "worker_wait() - [{bin}] - {}:{}\n",
        file.display(),
        line_of("WORKER_LINE")
    );
    assert_eq!(text.matches(&worker).count(), 2, "{text}");
}

#[test]
fn third_party_and_build_root_crashes_are_filtered() {
    let (p, core) = threaded_core();
    let env = Env::new();
    let out = env.run(&["-p", "crashme", "-E", &escaped(&p.bin), "-n"], &core);
    let text = stdout(&out);
    assert!(out.status.success());
    assert!(
        text.contains("classification: org.clearlinux/crash/unknown\nseverity: 2\n"),
        "{text}"
    );
    assert!(text.ends_with("\nCrash from third party\n\n"), "{text}");
    assert!(!text.contains("Backtrace"));

    let out = env.run(
        &[
            "-p",
            "x",
            "-E",
            "!builddir!build!BUILD!pkg!x",
            "-n",
            "--flood-window",
            "0",
        ],
        b"",
    );
    let text = stdout(&out);
    assert!(
        text.contains("classification: org.clearlinux/crash/clr-build\nseverity: 2\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\nCrash from Clear package build\n\n"),
        "{text}"
    );
}

#[test]
fn repeated_crashes_are_counted_and_reported_later() {
    let (p, core) = threaded_core();
    let env = Env::new();
    env.lift_privacy_filters();
    let args = ["-p", "crashme", "-E", &escaped(&p.bin), "-s", "11", "-n"];
    let first = env.run(&args, &core);
    assert!(stdout(&first).contains("crash/clr"));
    assert!(!stdout(&first).contains("Repeated"));
    for _ in 0..2 {
        let again = env.run(&args, &core);
        assert!(again.status.success());
        assert_eq!(stdout(&again), "", "suppressed within the window");
    }
    // Age the window's start instead of waiting a minute.
    let files: Vec<PathBuf> = fs::read_dir(env.flood_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        fs::read_to_string(&files[0])
            .unwrap()
            .split_whitespace()
            .nth(1),
        Some("2")
    );
    fs::write(&files[0], "1000 2\n").unwrap();
    let later = env.run(&args, &core);
    let text = stdout(&later);
    assert!(
        text.contains("\nSignal: 11\nRepeated crashes suppressed: 2\n\nBacktrace (TID "),
        "{text}"
    );
}

#[test]
fn unreadable_core_sends_an_error_record() {
    let (_p, core) = threaded_core();
    let env = Env::new();
    env.lift_privacy_filters();
    let out = env.run(
        &["-p", "crashme", "-s", "11", "-n", "--flood-window", "0"],
        &core[..3000],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("classification: org.clearlinux/crash/error\nseverity: 4\n"),
        "{text}"
    );
    assert!(
        text.contains("Process: crashme\nSignal: 11\nError: core truncated"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("core truncated"));

    let out = env.run(
        &["-p", "crashme", "-n", "--flood-window", "0"],
        b"not a core at all, just some words for the pipe",
    );
    assert!(
        stdout(&out).contains("Error: not an x86_64 ELF core: bad ELF magic"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn core_file_option_reads_a_file_and_refuses_symlinks() {
    let (p, core) = threaded_core();
    let env = Env::new();
    env.lift_privacy_filters();
    let path = p.dir.path().join("the.core");
    fs::write(&path, &core).unwrap();
    let out = env.run(
        &[
            "-p",
            "crashme",
            "-c",
            path.to_str().unwrap(),
            "-v",
            "--flood-window",
            "0",
        ],
        b"",
    );
    // Not -n: sent for real, but no daemon listens, so the send fails after printing (-v).
    assert!(stdout(&out).contains("#0 inner() - ["), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Failed to send record to daemon"));

    let link = p.dir.path().join("link.core");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let out = env.run(
        &[
            "-p",
            "crashme",
            "-c",
            link.to_str().unwrap(),
            "-n",
            "--flood-window",
            "0",
        ],
        b"",
    );
    assert!(stdout(&out).contains("crash/error"), "{}", stdout(&out));
}

#[test]
fn record_reaches_the_daemon_socket() {
    let (p, core) = threaded_core();
    let env = Env::new();
    env.lift_privacy_filters();
    let server = daemon(&env.root, 1);
    let start = Instant::now();
    let out = env.run(
        &["-p", "crashme", "-E", &escaped(&p.bin), "-s", "11"],
        &core,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = server.join().unwrap();
    let record = &records[0];
    assert_eq!(
        record.get(telemetry::record::Header::Classification),
        "org.clearlinux/crash/clr"
    );
    assert_eq!(record.get(telemetry::record::Header::Severity), "3");
    let payload = String::from_utf8(record.payload().to_vec()).unwrap();
    assert!(
        payload.starts_with(&format!("Process: {}\n", p.bin.display())),
        "{payload}"
    );
    assert!(payload.contains("#0 inner() - ["), "{payload}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn missing_process_name_is_a_usage_error() {
    let env = Env::new();
    let out = env.run(&["-n"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Missing required -p option. See --help output"));
    let out = env.run(&["-p", "x", "-s", "eleven"], b"");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn stdin_redirected_from_a_file_is_read() {
    let (p, core) = threaded_core();
    let env = Env::new();
    env.lift_privacy_filters();
    let path = p.dir.path().join("stdin.core");
    fs::write(&path, &core).unwrap();
    let out = env
        .root
        .command()
        .args(["-p", "crashme", "-n", "--flood-window", "0"])
        .stdin(fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("#0 inner() - ["), "{}", stdout(&out));
    assert_eq!(stdout(&out).matches("Backtrace (TID ").count(), 3);
}

#[test]
fn long_backtrace_is_cut_at_a_line_boundary() {
    let p = compile(&[]);
    // A long module path makes 64 frames overflow 8192 bytes.
    let dir = p.dir.path().join("x".repeat(120));
    fs::create_dir(&dir).unwrap();
    let bin = dir.join("crashme");
    fs::copy(&p.bin, &bin).unwrap();
    let core = fs::read(make_core(&bin, &["recurse", "200"], p.dir.path())).unwrap();
    let env = Env::new();
    env.lift_privacy_filters();
    let out = env.run(&["-p", "crashme", "-n", "-v"], &core);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    // -v prints the whole payload first; the record then carries the cut one.
    let full_len = text.find("record_format_version:").unwrap();
    assert!(
        full_len > 8192,
        "the payload must be long enough to need a cut"
    );
    assert!(text[..full_len].contains("Too many frames. Backtrace truncated.\n"));
    let record = &text[full_len..];
    // The record ends with the payload and one empty line.
    let payload = &record[record.find("Process: ").unwrap()..record.len() - 1];
    assert!(payload.len() <= 8192, "{}", payload.len());
    let note = probes::send::TRUNCATION_NOTE;
    assert!(payload.ends_with(note), "{payload}");
    let kept = &payload[..payload.len() - note.len()];
    assert!(
        text[..full_len].starts_with(kept),
        "whole lines of the full payload are kept"
    );
    assert!(kept.lines().last().unwrap().starts_with('#'));
}

/// Started by root, crashprobe becomes the user `TELEM_PROBE_USER` names before it opens the
/// core, so a core only root may read is refused; naming root itself leaves it root.
#[test]
fn as_root_it_drops_to_the_user_the_environment_names() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    if !matches!(nix::unistd::User::from_name("nobody"), Ok(Some(_))) {
        eprintln!("skipped: no user 'nobody'");
        return;
    }
    let (_p, core) = threaded_core();
    let env = Env::new();
    env.lift_privacy_filters();
    // The configuration is readable by anyone; the core is not.
    fs::set_permissions(env.root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let private = tempfile::tempdir().unwrap();
    fs::set_permissions(private.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let path = private.path().join("the.core");
    fs::write(&path, &core).unwrap();
    let args = [
        "-p",
        "crashme",
        "-c",
        path.to_str().unwrap(),
        "-n",
        "--flood-window",
        "0",
    ];

    let as_nobody = env
        .root
        .command()
        .env("TELEM_PROBE_USER", "nobody")
        .args(args)
        .output()
        .unwrap();
    let text = stdout(&as_nobody);
    assert!(text.contains("org.clearlinux/crash/error"), "{text}");
    assert!(text.contains("Permission denied"), "{text}");

    let as_root = env.root.command().args(args).output().unwrap();
    assert_eq!(crash_root::own_user(), "root");
    assert!(
        stdout(&as_root).contains("#0 inner() - ["),
        "{}",
        stdout(&as_root)
    );
}
