//! Sources and configuration files written for the original client keep working with ours:
//! a C probe that defines `struct telem_record` itself compiles against our header and links
//! against our library, and a config file with values the original accepted (and one it could
//! not use) still sends the record to the file's `socket_path`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use telemetry::frame::{self, Frame};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>/, where cargo puts `libtelemetry.a` before running these tests.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// `libtelemetry.so.4` relinked from the static archive, once per test run.
fn clib() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clib-compat");
        let archive = profile_dir().join("libtelemetry.a");
        let st = Command::new("sh")
            .arg(manifest().join("build-so.sh"))
            .arg(&archive)
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success(), "build-so.sh failed");
        out
    })
}

/// gcc, strict, against `include/` (our header) and our shared library.
fn gcc(source: &str, name: &str, include: &Path) -> Output {
    let lib = clib();
    Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name))
        .arg(manifest().join("tests/c").join(source))
        .arg("-I")
        .arg(include)
        .arg(format!("-L{}", lib.display()))
        .arg("-ltelemetry")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .unwrap()
}

fn own_record_program() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let include = manifest().parent().unwrap().join("include");
        let o = gcc("own_record.c", "own_record", &include);
        assert!(
            o.status.success(),
            "a source defining struct telem_record must compile: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("own_record")
    })
}

struct Run {
    stdout: String,
    stderr: String,
    frame: Option<Frame>,
}

/// Runs the program with `conf_text` (`{sock}` replaced by a socket a listener answers 0 on).
fn run(conf_text: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/telemetrics")).unwrap();
    std::fs::write(root.join("etc/telemetrics/opt-in"), "").unwrap();
    let sock = dir.path().join("custom.sock");
    let conf = dir.path().join("telemetrics.conf");
    std::fs::write(
        &conf,
        conf_text.replace("{sock}", &sock.display().to_string()),
    )
    .unwrap();
    let l = UnixListener::bind(&sock).unwrap();
    let listener = thread::spawn(move || {
        let (mut s, _) = l.accept().ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let buf = frame::read_from(&mut s).ok()?;
        s.write_all(&0i32.to_le_bytes()).ok()?;
        Some(frame::decode(&buf).unwrap())
    });
    let out = Command::new(own_record_program())
        .arg(&conf)
        .env("TELEM_ROOT", &root)
        .env_remove("TELEM_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    if !stdout.contains("send=0") {
        // Nothing reached the listener: unblock it so the thread ends.
        let _ = std::os::unix::net::UnixStream::connect(&sock);
    }
    let frame = listener.join().unwrap();
    Run {
        stdout,
        stderr,
        frame,
    }
}

#[test]
fn a_source_that_defines_struct_telem_record_compiles_links_and_runs() {
    let r = run("[settings]\nsocket_path={sock}\n");
    assert!(r.stdout.contains("config=0\n"), "{}", r.stdout);
    assert!(r.stdout.contains("create=0\n"), "{}", r.stdout);
    // Its own definition reads the library's record.
    assert!(
        r.stdout
            .contains("classification_line=classification: org.test/c/own-record\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("payload_size=22\n"), "{}", r.stdout);
    assert!(r.stdout.contains("send=0\n"), "{}", r.stdout);
    let f = r.frame.expect("the record reached the socket");
    assert_eq!(f.record.payload(), b"defined by the caller\n");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn the_header_alone_declares_struct_telem_record_without_defining_it() {
    // With only the declaration, sizeof is a compile error: proof nothing defines it.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sizeof.c");
    std::fs::write(
        &src,
        "#include <telemetry.h>\nint main(void) { return (int)sizeof(struct telem_record); }\n",
    )
    .unwrap();
    let include = manifest().parent().unwrap().join("include");
    let compile = |defines: &[&str]| {
        Command::new("gcc")
            .args(["-std=c11", "-fsyntax-only"])
            .args(defines)
            .arg("-I")
            .arg(&include)
            .arg(&src)
            .output()
            .unwrap()
    };
    let plain = compile(&[]);
    assert!(!plain.status.success(), "struct telem_record is defined");
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("incomplete type"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    // The opt-in layout, for programs that read the record and do not define it.
    let opted = compile(&["-DTELEMETRY_RECORD_LAYOUT"]);
    assert!(
        opted.status.success(),
        "{}",
        String::from_utf8_lossy(&opted.stderr)
    );
}

/// A file the original ran with: integers with trailing comments, an unknown strategy, a
/// relative path, plus one value neither client can use. The library warns, keeps every other
/// key (the custom socket above all) and the record arrives.
#[test]
fn a_config_the_original_accepted_still_reaches_its_socket() {
    let r = run(
        "[settings]\nsocket_path={sock}\nrecord_expiry=1200 # minutes\nrate_limit_strategy=later\nrate_limit_enabled=maybe\n",
    );
    assert!(r.stdout.contains("send=0\n"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.frame.is_some(), "nothing reached the custom socket");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stderr);
    assert!(
        lines[0].starts_with("libtelemetry: warning: ")
            && lines[0]
                .contains("telemetrics.conf:3: record_expiry: \"1200 # minutes\" read as 1200"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("telemetrics.conf:4: rate_limit_strategy:")
            && lines[1].contains("using 'spool'"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("libtelemetry: error: ")
            && lines[2].contains("telemetrics.conf:5: rate_limit_enabled:")
            && lines[2].ends_with("that key keeps its default"),
        "{}",
        lines[2]
    );
}
