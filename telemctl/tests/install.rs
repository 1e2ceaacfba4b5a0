//! The installation: `scripts/install.sh` into a DESTDIR tree, every file in place with its
//! mode, a C program built with `pkg-config --cflags --libs libtelemetry` that runs, and
//! `systemd-analyze verify` plus the security exposure of the daemons' units.
//!
//! Uses the binaries `cargo build --workspace` (scripts/test.sh) left in target/<profile>/.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn install(prefix: &str, destdir: &Path) {
    let out = Command::new("bash")
        .arg(workspace().join("scripts/install.sh"))
        .arg("--no-build")
        .arg("--profile-dir")
        .arg(profile_dir())
        .env("PREFIX", prefix)
        .env("DESTDIR", destdir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh failed (build the workspace first: cargo build --workspace):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One DESTDIR install shared by the tests of this file.
fn destdir() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install-destdir");
        let _ = fs::remove_dir_all(&d);
        install("/usr", &d);
        d
    })
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn every_file_in_place_with_its_mode() {
    let d = destdir();
    for b in [
        "telemprobd",
        "telempostd",
        "telemctl",
        "telem-record-gen",
        "crashprobe",
        "klogscanner",
        "journalprobe",
        "pstoreprobe",
        "pstoreclean",
        "hprobe",
    ] {
        assert_eq!(mode(&d.join("usr/bin").join(b)), 0o755, "{b}");
    }
    let lib = d.join("usr/lib");
    assert_eq!(mode(&lib.join("libtelemetry.so.4.1.0")), 0o755);
    assert_eq!(
        fs::read_link(lib.join("libtelemetry.so.4")).unwrap(),
        Path::new("libtelemetry.so.4.1.0")
    );
    assert_eq!(
        fs::read_link(lib.join("libtelemetry.so")).unwrap(),
        Path::new("libtelemetry.so.4")
    );
    for (f, m) in [
        ("usr/lib/libtelemetry.a", 0o644),
        ("usr/lib/pkgconfig/libtelemetry.pc", 0o644),
        ("usr/include/telemetry.h", 0o644),
        ("usr/lib/tmpfiles.d/telemetrics-dirs.conf", 0o644),
        ("usr/lib/sysusers.d/telemetrics.conf", 0o644),
        ("usr/lib/sysctl.d/40-crash-probe.conf", 0o644),
        ("usr/lib/systemd/system.conf.d/40-core-ulimit.conf", 0o644),
        ("usr/share/defaults/telemetrics/telemetrics.conf", 0o644),
    ] {
        assert_eq!(mode(&d.join(f)), m, "{f}");
    }
    for u in [
        "telemprobd.socket",
        "telemprobd.service",
        "telempostd.path",
        "telempostd.service",
        "hprobe.service",
        "hprobe.timer",
        "klogscanner.service",
        "pstore-probe.service",
        "pstore-clean.service",
        "journal-probe.service",
        "journal-probe-tail.service",
    ] {
        let p = d.join("usr/lib/systemd/system").join(u);
        assert_eq!(mode(&p), 0o644, "{u}");
        let text = fs::read_to_string(&p).unwrap();
        for var in ["@bindir@", "@sysconfdir@"] {
            assert!(!text.contains(var), "{u} has an unsubstituted {var}");
        }
    }
    let sysctl = fs::read_to_string(d.join("usr/lib/sysctl.d/40-crash-probe.conf")).unwrap();
    assert!(sysctl.contains("kernel.core_pattern=|/usr/bin/crashprobe -p %e -E %E -s %s"));
    // Nothing installed outside the prefix and /etc-free: config under /etc is the admin's.
    let top: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["usr"]);
}

#[test]
fn default_config_lists_every_key_commented_with_its_default() {
    let text =
        fs::read_to_string(destdir().join("usr/share/defaults/telemetrics/telemetrics.conf"))
            .unwrap();
    let defaults = telemetry::Config::defaults(Path::new("/"));
    for key in telemetry::config::key_names() {
        let value = defaults.value_of(key).unwrap();
        let value = value.replace(' ', "\\s");
        let line = format!("#{key}={value}");
        assert!(
            text.lines()
                .any(|l| l == line || (key == "cainfo" && l == "#cainfo=")),
            "missing {line:?}"
        );
    }
    // Read as a config file it changes nothing (everything is commented).
    let mut c = telemetry::Config::defaults(Path::new("/"));
    c.apply_bytes(text.as_bytes(), Path::new("telemetrics.conf"))
        .unwrap();
    assert!(c
        .sources
        .values()
        .all(|s| *s == telemetry::config::Source::Default));
}

#[test]
fn pkg_config_builds_a_c_program_that_runs() {
    let d = destdir();
    let pc = |args: &[&str]| -> String {
        let o = Command::new("pkg-config")
            .args(args)
            .arg("libtelemetry")
            .env("PKG_CONFIG_PATH", d.join("usr/lib/pkgconfig"))
            .env("PKG_CONFIG_SYSROOT_DIR", d)
            .output()
            .expect("pkg-config (apt-get install pkg-config)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let flags = pc(&["--cflags", "--libs"]);
    assert!(flags.contains("-ltelemetry"), "{flags}");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hello.c");
    fs::write(
        &src,
        "#include <stdio.h>\n#include <telemetry.h>\nint main(void) {\n  struct telem_ref *r = NULL;\n  char c[] = \"org.example/install/test\";\n  char p[] = \"hi\";\n  if (tm_create_record(&r, 2, c, 1) != 0 || tm_set_payload(r, p) != 0) return 1;\n  printf(\"%s\", r->record->headers[1]);\n  tm_free_record(r);\n  return 0;\n}\n",
    )
    .unwrap();
    let exe = dir.path().join("hello");
    let mut cc = Command::new("sh");
    cc.arg("-c").arg(format!(
        "gcc -Wall -Werror -o '{}' '{}' {flags}",
        exe.display(),
        src.display()
    ));
    let o = cc.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(&exe)
        .env("LD_LIBRARY_PATH", d.join("usr/lib"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "classification: org.example/install/test\n"
    );
}

/// systemd-analyze checks that ExecStart= binaries exist, so this install uses a real prefix
/// inside a temporary directory (no DESTDIR): the units then name binaries that are there.
#[test]
fn units_verify_and_daemons_are_sandboxed() {
    let base = tempfile::tempdir().unwrap();
    let prefix = base.path().join("usr");
    install(prefix.to_str().unwrap(), Path::new(""));
    let units = prefix.join("lib/systemd/system");
    let mut files: Vec<PathBuf> = fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 11);
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for (unit, max) in [("telemprobd.service", 2.0), ("telempostd.service", 2.0)] {
        let o = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(units.join(unit))
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
        assert!(score <= max, "{unit}: exposure {score} > {max}");
    }
}
