//! The C library as a C program sees it: the committed header, the relinked `libtelemetry.so.4`
//! with the original symbol versions, and a real gcc-compiled program that calls all seven
//! functions against a Unix-socket listener run by this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use telemetry::frame::{self, Frame};
use telemetry::record::Header;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace() -> PathBuf {
    manifest().parent().unwrap().to_path_buf()
}

/// target/<profile>/, where cargo puts `libtelemetry.a` before running these tests.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Relinks the static archive into `libtelemetry.so.4` once per test run.
fn clib() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clib");
        let archive = profile_dir().join("libtelemetry.a");
        assert!(archive.exists(), "{} missing", archive.display());
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

fn compile(name: &str, extra: &[&str]) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let src = manifest().join("tests/c/send_record.c");
    let mut cmd = Command::new("gcc");
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-I")
        .arg(workspace().join("include"))
        .args(extra);
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn shared_program() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let lib = clib();
        compile(
            "send_record_shared",
            &[
                &format!("-L{}", lib.display()),
                "-ltelemetry",
                &format!("-Wl,-rpath,{}", lib.display()),
            ],
        )
    })
}

#[test]
fn header_is_current() {
    let config = cbindgen::Config::from_file(manifest().join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(manifest().join("src/lib.rs"))
        .generate()
        .expect("cbindgen");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let committed_path = workspace().join("include/telemetry.h");
    if std::env::var_os("TELEM_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
    }
    let committed = std::fs::read(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/telemetry.h is stale; regenerate with: TELEM_BLESS=1 cargo test -p libtelemetry --test c_api header_is_current"
    );
}

#[test]
fn exports_exactly_the_original_symbols_and_soname() {
    let so = clib().join("libtelemetry.so.4");
    let out = Command::new("readelf")
        .args(["--dyn-syms", "-W"])
        .arg(&so)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut funcs = Vec::new();
    let mut nodes = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[4] != "GLOBAL" || f[6] == "UND" {
            continue;
        }
        match f[3] {
            "FUNC" => funcs.push(f[7].to_string()),
            "OBJECT" if f[6] == "ABS" => nodes.push(f[7].to_string()),
            other => panic!("unexpected exported {other}: {line}"),
        }
    }
    funcs.sort();
    nodes.sort();
    assert_eq!(
        funcs,
        [
            "tm_create_record@@TM_3_0_0",
            "tm_free_record@@TM_2_0_0",
            "tm_is_opted_in@@TM_4_1_0",
            "tm_send_record@@TM_3_0_0",
            "tm_set_config_file@@TM_1_0_0",
            "tm_set_event_id@@TM_4_0_0",
            "tm_set_payload@@TM_3_0_0",
        ]
    );
    assert_eq!(
        nodes,
        ["TM_1_0_0", "TM_2_0_0", "TM_3_0_0", "TM_4_0_0", "TM_4_1_0"]
    );

    let dynamic = Command::new("readelf").arg("-d").arg(&so).output().unwrap();
    let dynamic = String::from_utf8(dynamic.stdout).unwrap();
    assert!(
        dynamic.contains("Library soname: [libtelemetry.so.4]"),
        "{dynamic}"
    );

    // The version definitions chain like the original's: each node inherits the previous one.
    let v = Command::new("readelf").arg("-V").arg(&so).output().unwrap();
    let v = String::from_utf8(v.stdout).unwrap();
    for (node, parent) in [
        ("TM_2_0_0", "TM_1_0_0"),
        ("TM_3_0_0", "TM_2_0_0"),
        ("TM_4_0_0", "TM_3_0_0"),
        ("TM_4_1_0", "TM_4_0_0"),
    ] {
        let at = v
            .find(&format!("Name: {node}"))
            .unwrap_or_else(|| panic!("{v}"));
        let next = &v[at..];
        let parent_line = next.lines().nth(1).unwrap_or("");
        assert!(
            parent_line.contains(parent),
            "{node} should inherit {parent}: {v}"
        );
    }
}

#[test]
fn pkg_config_file_names_the_library() {
    let pc = std::fs::read_to_string(clib().join("libtelemetry.pc")).unwrap();
    assert!(pc.contains("Libs: -L${libdir} -ltelemetry"));
    assert!(pc.contains("Libs.private: -lgcc_s"));
    assert!(pc.contains("Version: 4.1.0"));
}

/// A fake system whose files fill the headers with known values.
fn fake_sysroot(dir: &Path) -> PathBuf {
    let root = dir.join("sys");
    let files = [
        ("sys/class/dmi/id/sys_vendor", "ACME\n"),
        ("sys/class/dmi/id/product_name", "Road Runner 3000\n"),
        ("sys/class/dmi/id/product_version", "v2"),
        ("sys/class/dmi/id/board_name", "Board X\n"),
        ("sys/class/dmi/id/board_vendor", "ACME Boards\n"),
        ("sys/class/dmi/id/bios_version", "1.16.0-1\n"),
        (
            "proc/cpuinfo",
            "processor\t: 0\nmodel name\t: Fake CPU @ 1.00GHz\n",
        ),
        ("etc/os-release", "ID=testos\nVERSION_ID=\"42\"\n"),
    ];
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    root
}

struct Run {
    out: BTreeMap<String, String>,
    frame: Option<Frame>,
}

/// Runs the C program; `answer` is the status a listener sends back (None: no listener).
fn run(program: &Path, opted_in: bool, answer: Option<i32>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/telemetrics")).unwrap();
    if opted_in {
        std::fs::write(root.join("etc/telemetrics/opt-in"), "").unwrap();
    }
    let sock = dir.path().join("telem.sock");
    let conf = dir.path().join("test.conf");
    std::fs::write(
        &conf,
        format!("[settings]\nsocket_path={}\n", sock.display()),
    )
    .unwrap();
    let sysroot = fake_sysroot(dir.path());

    let listener = answer.map(|status| {
        let l = UnixListener::bind(&sock).unwrap();
        thread::spawn(move || {
            let (mut s, _) = l.accept().ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let buf = frame::read_from(&mut s).ok()?;
            s.write_all(&status.to_le_bytes()).ok()?;
            Some(frame::decode(&buf).unwrap())
        })
    });

    let out = Command::new(program)
        .arg(&conf)
        .env("TELEM_ROOT", &root)
        .env("TELEM_SYSINFO_ROOT", &sysroot)
        .env_remove("TELEM_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "C program failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let out: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let frame = listener.and_then(|h| {
        if out["send"] == "-111" {
            // Nothing was sent: unblock the listener so the thread ends.
            let _ = std::os::unix::net::UnixStream::connect(&sock);
        }
        h.join().unwrap()
    });
    Run { out, frame }
}

fn uname(flag: &str) -> String {
    let o = Command::new("uname").arg(flag).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn c_program_sends_a_record_with_all_fifteen_headers() {
    let r = run(shared_program(), true, Some(0));
    let o = &r.out;
    // Error paths, each with its negative errno.
    for (k, v) in [
        ("config_relative", "-22"),
        ("config_missing", "-2"),
        ("config_directory", "-22"),
        ("config_null", "-22"),
        ("config_ok", "0"),
        ("opted_in", "1"),
        ("create_null_ref", "-22"),
        ("create_bad_class", "-22"),
        ("ref_untouched", "1"),
        ("create_null_class", "-22"),
        ("create", "0"),
        ("severity_line", "severity: 4"),
        ("event_bad", "-22"),
        ("event_null", "-22"),
        ("event_unchanged", "1"),
        ("event_ok", "0"),
        ("payload_null", "-22"),
        ("payload_8193", "-90"),
        ("payload_control", "-22"),
        ("payload_8192", "0"),
        ("payload_size_8192", "8192"),
        ("payload", "0"),
        ("send_null", "-22"),
        ("payload_null_ref", "-22"),
        ("send", "0"),
    ] {
        assert_eq!(o.get(k).map(String::as_str), Some(v), "{k} in {o:?}");
    }
    let f = r.frame.expect("the listener received a frame");
    assert_eq!(
        f.cfg.as_deref().map(|p| p.ends_with("test.conf")),
        Some(true)
    );
    let rec = &f.record;
    rec.validate().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts = rec.creation_timestamp().unwrap();
    assert!(ts <= now && now - ts < 120, "timestamp {ts} vs {now}");
    let want = [
        (Header::RecordFormatVersion, "4".to_string()),
        (Header::Classification, "org.test/c/api".into()),
        (Header::Severity, "4".into()),
        (Header::MachineId, "FFFFFFFF".into()),
        (Header::Arch, uname("-m")),
        (Header::HostType, "ACME|Road Runner 3000|v2".into()),
        (Header::Build, "42".into()),
        (Header::KernelVersion, uname("-r")),
        (Header::PayloadFormatVersion, "2000".into()),
        (Header::SystemName, "testos".into()),
        (Header::BoardName, "Board X|ACME Boards".into()),
        (Header::CpuModel, "Fake CPU @ 1.00GHz".into()),
        (Header::BiosVersion, "1.16.0-1".into()),
        (Header::EventId, "aaaaaa00000033333344444466666622".into()),
    ];
    for (h, v) in want {
        assert_eq!(rec.get(h), v, "{}", h.name());
    }
    assert_eq!(rec.payload(), "hello from C\nsecond line ✓\n".as_bytes());
    // The C struct layout: header_size and payload_size as the original library reported them.
    assert_eq!(o["header_size"], rec.header_block_len().to_string());
    assert_eq!(o["payload_size"], rec.payload().len().to_string());
    assert_eq!(o["header0"], "record_format_version: 4");
}

#[test]
fn not_opted_in_sends_nothing() {
    let r = run(shared_program(), false, Some(0));
    assert_eq!(r.out["opted_in"], "0");
    assert_eq!(r.out["send"], "-111");
    assert!(r.frame.is_none(), "nothing may reach the socket");
}

#[test]
fn daemon_status_is_returned_unchanged() {
    let r = run(shared_program(), true, Some(-28));
    assert_eq!(r.out["send"], "-28");
    assert!(r.frame.is_some());
}

#[test]
fn daemon_not_running_is_an_errno() {
    let r = run(shared_program(), true, None);
    assert_eq!(r.out["send"], "-2", "connect to a missing socket: -ENOENT");
}

#[test]
fn static_archive_links_and_runs() {
    let program = compile(
        "send_record_static",
        &[
            profile_dir().join("libtelemetry.a").to_str().unwrap(),
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
        ],
    );
    let r = run(&program, true, Some(0));
    assert_eq!(r.out["send"], "0");
    assert_eq!(
        r.frame.unwrap().record.payload(),
        "hello from C\nsecond line ✓\n".as_bytes()
    );
}

/// A broken config never ends a program that merely links the library (the original called
/// exit(1)); the library says which file, line and key, and that key keeps its default while the
/// file's other keys apply.
#[test]
fn broken_config_is_reported_and_the_program_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/telemetrics")).unwrap();
    std::fs::write(root.join("etc/telemetrics/opt-in"), "").unwrap();
    let conf = dir.path().join("broken.conf");
    std::fs::write(
        &conf,
        "[settings]\nsocket_path=/nowhere/sock\nrate_limit_enabled=maybe\n",
    )
    .unwrap();
    let out = Command::new(shared_program())
        .arg(&conf)
        .env("TELEM_ROOT", &root)
        .env("TELEM_SYSINFO_ROOT", fake_sysroot(dir.path()))
        .env_remove("TELEM_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("config_ok=0"), "{stdout}");
    assert!(
        stderr.contains("broken.conf:3: rate_limit_enabled")
            && stderr.contains("that key keeps its default"),
        "{stderr}"
    );
    // The file's socket_path applies, and nothing listens there.
    assert!(stdout.contains("send=-2"), "{stdout}");
    assert!(stdout.contains("opted_in=1"), "{stdout}");
}
