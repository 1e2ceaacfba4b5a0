//! README's run command (`scripts/demo.sh`) works, says what each step does and what came
//! out, ends by itself, and leaves nothing running and nothing behind. It runs the debug build
//! the workspace build left (TELEM_DEMO_PROFILE).

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
    // Each step, numbered, in order.
    let mut at = 0;
    for step in [
        "== 1/9 build",
        "== 2/9 telem-server",
        "== 3/9 opt in",
        "== 4/9 daemons",
        "== 5/9 sending four records",
        "== 6/9 at telem-server",
        "== 7/9 telemctl status",
        "== 8/9 telemctl journal -V",
        "== 9/9 the web pages",
        "== stopping",
    ] {
        let found = stdout[at..].find(step);
        assert!(
            found.is_some(),
            "{step:?} missing or out of order in:\n{stdout}"
        );
        at += found.unwrap();
    }
    // Each record: who sent it, and that telem-server stored it (read back through its query
    // API) from that sender.
    for (sender, class) in [
        ("telem-record-gen -p", "org.example/demo/hello"),
        (
            "telem-record-gen, payload on standard input",
            "org.example/demo/stdin",
        ),
        ("hprobe", "org.clearlinux/hello/world"),
        ("examples/send_record.c", "org.example/c-example/hello"),
    ] {
        let sent = stdout
            .lines()
            .any(|l| l.trim_start().starts_with(sender) && l.ends_with(&format!("sent {class}")));
        assert!(sent, "no line saying {sender} sent {class} in:\n{stdout}");
        let from = sender.split([' ', ',']).next().unwrap();
        let from = from.strip_prefix("examples/").unwrap_or(from);
        let arrived = stdout
            .lines()
            .any(|l| l.trim_start().starts_with(class) && l.contains(&format!("from {from}")));
        assert!(
            arrived,
            "{class} from {from} not shown by telem-server's query API in:\n{stdout}"
        );
    }
    // The demo ends with the URL of the crash page, which answered while the server ran.
    let page = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("the crash page: "))
        .unwrap_or_else(|| panic!("no crash page URL in:\n{stdout}"));
    assert!(
        page.contains("/crashes/group?function=parse_config&module=%2Fusr%2Fbin%2Fdemo-app"),
        "{page}"
    );
    assert!(
        stdout.contains(&format!("GET {page}: 200,")),
        "the crash page did not answer 200 in:\n{stdout}"
    );
    for needle in [
        "4 records received (GET /api/v1/records",
        "GET /api/v1/counts/classification",
        "delivered 4",
        "last error:  none",
        "Classification",
        "Outcome",
        "Total records: 4",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing in:\n{stdout}");
    }
    // Status reads at a glance; nothing tells the user to do what the demo does next.
    for line in stdout.lines().filter(|l| l.starts_with("                ")) {
        assert!(line.len() <= 84, "status line too long: {line:?}");
    }
    assert!(!stdout.contains("yourself"), "{stdout}");
    // Everything it started is gone, and so is its directory.
    let tmp_path = tmp.path().to_string_lossy().into_owned();
    let left = processes_mentioning(&tmp_path);
    assert!(left.is_empty(), "still running: {left:?}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
