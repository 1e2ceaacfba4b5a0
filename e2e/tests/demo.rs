//! README's run command (`scripts/demo.sh`) works, ends by itself, and leaves nothing running
//! and nothing behind. It runs the debug build the workspace build left (TELEM_DEMO_PROFILE).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Processes whose command line or environment mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        for file in ["cmdline", "environ"] {
            if let Ok(bytes) = std::fs::read(entry.path().join(file)) {
                if String::from_utf8_lossy(&bytes).contains(needle) {
                    found.push(format!("{name}: {}", String::from_utf8_lossy(&bytes)));
                    break;
                }
            }
        }
    }
    found
}

#[test]
fn demo_runs_ends_by_itself_and_leaves_nothing_running() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(workspace.join("scripts/demo.sh"))
        .env("TELEM_DEMO_PROFILE", "debug")
        .env("TMPDIR", tmp.path())
        .env_remove("TELEM_ROOT")
        .env_remove("TELEM_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(start.elapsed() < Duration::from_secs(120));
    for needle in [
        "org.example/demo/hello",
        "org.example/demo/stdin",
        "org.clearlinux/hello/world",
        "org.example/c-example/hello",
        "delivered 4",
        "last error:  none",
        "== stopping",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing in:\n{stdout}");
    }
    // Everything it started is gone, and so is its directory.
    let tmp_path = tmp.path().to_string_lossy().into_owned();
    let left = processes_mentioning(&tmp_path);
    assert!(left.is_empty(), "still running: {left:?}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
