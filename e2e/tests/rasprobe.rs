//! rasprobe through the whole pipeline: recorded RAS events replayed into a real telemprobd,
//! delivered by a real telempostd to the test collector, class, severity and payload checked
//! where they arrive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::bin;
use telem_collector::{Collector, Options, StoredRecord};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("probes/tests/data/ras")
        .join(rel)
}

struct Daemons {
    children: Vec<Child>,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(c),
                rustix::process::Signal::TERM,
            );
        }
        for c in &mut self.children {
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn cmd(root: &Path, name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env("TELEM_ROOT", root)
        .env_remove("TELEM_CONFIG")
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null());
    c
}

fn class<'a>(records: &'a [StoredRecord], c: &str) -> &'a StoredRecord {
    records
        .iter()
        .find(|r| r.headers.get("classification").map(String::as_str) == Some(c))
        .unwrap_or_else(|| panic!("no record {c} in {records:?}"))
}

#[test]
fn replayed_ras_events_arrive_at_the_collector_classified() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in [
        "run",
        "etc/telemetrics",
        "var/spool/telemetry",
        "var/lib/telemetry",
        "var/log/telemetry/records",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let collector = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    fs::write(root.join("etc/telemetrics/opt-in"), "").unwrap();
    fs::write(
        root.join("etc/telemetrics/telemetrics.conf"),
        format!(
            "[settings]\nserver={}\nrate_limit_enabled=false\ndaemon_recycling_enabled=false\nsend_timeout_ms=15000\n",
            collector.url("/v2/collector")
        ),
    )
    .unwrap();
    let log = |n: &str| fs::File::create(dir.path().join(format!("{n}.log"))).unwrap();
    let mut daemons = Daemons {
        children: Vec::new(),
    };
    daemons.children.push(
        cmd(&root, "telemprobd")
            .stderr(log("telemprobd"))
            .spawn()
            .unwrap(),
    );
    let sock = root.join("run/telem-0");
    let end = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < end, "telemprobd's socket did not appear");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemons.children.push(
        cmd(&root, "telempostd")
            .args(["--scan-interval-ms", "500", "--retry-base-ms", "100"])
            .stderr(log("telempostd"))
            .spawn()
            .unwrap(),
    );

    let out = cmd(&root, "rasprobe")
        .arg("--replay")
        .arg(data("kernel-6.18/events.txt"))
        .arg("--format-dir")
        .arg(data("kernel-6.18"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = || {
        ["telemprobd", "telempostd"]
            .iter()
            .map(|n| fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        collector.wait_for_records(7, Duration::from_secs(60)),
        "only {} records arrived\n{}",
        collector.records().len(),
        logs()
    );
    let records = collector.records();
    assert_eq!(records.len(), 7);
    for (c, sev) in [
        ("org.clearlinux/mce/corrected", "2"),
        ("org.clearlinux/mce/UCNA", "3"),
        ("org.clearlinux/mce/SRAO", "4"),
        ("org.clearlinux/mce/SRAR", "4"),
        ("org.clearlinux/memory/corrected", "2"),
        ("org.clearlinux/pcie/corrected", "2"),
        ("org.clearlinux/pcie/fatal", "4"),
    ] {
        let r = class(&records, c);
        assert_eq!(r.headers["severity"], sev, "{c}");
        assert!(
            r.payload
                .starts_with("Hardware event. This is not a software error.\n"),
            "{c}: {}",
            r.payload
        );
    }
    // The token sequence the original's MCE dashboard matched, and the decoded bits.
    let srar = &class(&records, "org.clearlinux/mce/SRAR").payload;
    assert!(
        srar.contains("\nSTATUS bd80000000100134 MCGSTATUS 5\n"),
        "{srar}"
    );
    assert!(srar.contains("\n  AR (action required)\n"));
    assert!(srar.contains("\nCPU 5 BANK 1\n"));
    let corrected = &class(&records, "org.clearlinux/mce/corrected").payload;
    assert!(corrected.contains("\nSTATUS 9c00000000010091 MCGSTATUS 5\n"));
    assert!(corrected.contains("\nCOUNT 1 errors of this kind on socket 0 bank 7 within 60 s"));
    let memory = &class(&records, "org.clearlinux/memory/corrected").payload;
    assert!(
        memory.contains("\nDIMM CPU_SrcID#0_MC#0_Chan#1_DIMM#0\nERROR_COUNT 3\n"),
        "{memory}"
    );
    let aer = &class(&records, "org.clearlinux/pcie/fatal").payload;
    assert!(
        aer.contains("\nDEVICE 0000:3a:00.0\nSTATUS 40000\n"),
        "{aer}"
    );
}
