//! rasprobe run for real: replaying recorded events (dry run, sent, opt-in), the flood control
//! on 100,000 corrected errors, and, as root, the live probe's tracing instance on this
//! machine's tracefs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const EXE: &str = env!("CARGO_BIN_EXE_rasprobe");

fn data(rel: &str) -> String {
    format!("{}/tests/data/ras/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn replay(env: &TestEnv, kernel: &str, extra: &[&str]) -> Command {
    let mut c = env.cmd(EXE);
    c.args(["--replay", &data(&format!("{kernel}/events.txt"))])
        .args(["--format-dir", &data(kernel)])
        .args(extra);
    c
}

#[test]
fn replay_dry_run_prints_a_record_per_error() {
    let env = TestEnv::new();
    let out = run(&mut replay(&env, "kernel-6.18", &["-n"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let records = dry_run_records(&stdout(&out));
    let got: Vec<(String, String)> = records
        .iter()
        .map(|(h, _)| {
            (
                header(h, "classification").to_string(),
                header(h, "severity").to_string(),
            )
        })
        .collect();
    // Uncorrected at once, in order; corrected ones when their window ends (here: the end of
    // the recording), one per source.
    let want = [
        ("org.clearlinux/mce/SRAR", "4"),
        ("org.clearlinux/mce/SRAO", "4"),
        ("org.clearlinux/mce/UCNA", "3"),
        ("org.clearlinux/pcie/fatal", "4"),
        ("org.clearlinux/mce/corrected", "2"),
        ("org.clearlinux/memory/corrected", "2"),
        ("org.clearlinux/pcie/corrected", "2"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect();
    assert_eq!(got, want);
    let corrected = &records[4].1;
    assert!(
        corrected.contains("\nSTATUS 9c00000000010091 MCGSTATUS 5\n"),
        "{corrected}"
    );
    assert!(corrected.contains(
        "\nCOUNT 1 errors of this kind on socket 0 bank 7 within 60 s (first at 5120.446218, last at 5120.446218)\n"
    ));
    let memory = &records[5].1;
    assert!(memory.contains("\nDIMM CPU_SrcID#0_MC#0_Chan#1_DIMM#0\nERROR_COUNT 3\n"));
    assert!(memory.contains("\nCOUNT 3 errors"), "{memory}");
    assert!(
        stderr(&out).contains("17 events lost on CPU 1"),
        "{}",
        stderr(&out)
    );
    // The older kernel's recording with its own format files.
    let out = run(&mut replay(&env, "kernel-6.8", &["-n"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dry_run_records(&stdout(&out)).len(), 3);
}

#[test]
fn replay_sends_when_opted_in_and_nothing_otherwise() {
    let env = TestEnv::new();
    let daemon = env.daemon();
    let out = run(&mut replay(&env, "kernel-6.8", &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Not opted in to telemetry"),
        "{}",
        stderr(&out)
    );
    assert!(daemon.records().is_empty());
    env.opt_in();
    let out = run(&mut replay(&env, "kernel-6.8", &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut classes = daemon.classifications();
    classes.sort();
    assert_eq!(
        classes,
        [
            "org.clearlinux/mce/corrected",
            "org.clearlinux/memory/uncorrected",
            "org.clearlinux/pcie/nonfatal"
        ]
    );
}

#[test]
fn replay_errors_are_clear() {
    let env = TestEnv::new();
    // Format files of the other kernel: every machine check line fails to decode, said once
    // per line (up to a limit) and counted.
    let mut c = env.cmd(EXE);
    c.args(["-n", "--replay", &data("kernel-6.18/events.txt")])
        .args(["--format-dir", &data("kernel-6.8")]);
    let out = run(&mut c);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("events.txt:1: cannot decode: field tsc"),
        "{err}"
    );
    assert!(
        err.contains("rasprobe: 5 lines could not be decoded"),
        "{err}"
    );
    // No format files at all.
    let mut c = env.cmd(EXE);
    c.args(["-n", "--replay", &data("kernel-6.18/events.txt")])
        .args(["--format-dir", env.root().to_str().unwrap()]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has a format file there"),
        "{}",
        stderr(&out)
    );
    // Bad limits are usage errors.
    let out = run(replay(&env, "kernel-6.8", &["-n", "--storm-window", "0"]).stdout(Stdio::null()));
    assert_eq!(out.status.code(), Some(1));
}

/// 100,000 corrected errors at 1,000 a second on two banks and one DIMM (100 s of event time),
/// replayed with a 10 s window (set in the configuration): each source gets one record per window, carrying the count of
/// its events in that window, and the counts add up to every error.
#[test]
fn a_storm_of_corrected_errors_becomes_one_record_per_source_and_window() {
    let env = TestEnv::new();
    let recorded = std::fs::read_to_string(data("kernel-6.18/events.txt")).unwrap();
    let mut lines = recorded.lines();
    let mce = lines.next().unwrap(); // corrected, socket 0 bank 7, at 5120.446218
    let mc = lines.nth(5).unwrap(); // corrected EDAC event, error_count 3
    assert!(mc.contains("mc_event:"));
    let mut text = String::with_capacity(100_000 * 700);
    let (mut bank7, mut bank9, mut dimm) = (0u64, 0u64, 0u64);
    for i in 0..100_000u64 {
        let ts = format!("{}.{:06}: ", 1000 + i / 1000, (i % 1000) * 1000);
        let (line, stamp) = match i % 4 {
            0 | 1 => {
                bank7 += 1;
                (mce.to_string(), "5120.446218: ")
            }
            2 => {
                bank9 += 1;
                (mce.replace("bank=(7)", "bank=(9)"), "5120.446218: ")
            }
            _ => {
                dimm += 3;
                (mc.to_string(), "5130.551230: ")
            }
        };
        text.push_str(&line.replacen(stamp, &ts, 1));
        text.push('\n');
    }
    let file = env.path("storm.txt");
    std::fs::write(&file, text).unwrap();
    // The window comes from the configuration (ras_storm_window); --storm-window would win.
    std::fs::write(
        env.path("etc/telemetrics/telemetrics.conf"),
        "[settings]\nras_storm_window=10\n",
    )
    .unwrap();
    let mut c = env.cmd(EXE);
    c.args(["-n", "--replay", file.to_str().unwrap()])
        .args(["--format-dir", &data("kernel-6.18")]);
    let out = run(&mut c);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = dry_run_records(&stdout(&out));
    // source -> counts of its records, in order
    let mut by_source: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (h, payload) in &records {
        let count_line = payload
            .lines()
            .find(|l| l.starts_with("COUNT "))
            .unwrap_or_else(|| panic!("no COUNT line in {payload}"));
        let count: u64 = count_line.split(' ').nth(1).unwrap().parse().unwrap();
        let source = count_line
            .split(" on ")
            .nth(1)
            .unwrap()
            .split(" within ")
            .next()
            .unwrap()
            .to_string();
        assert_eq!(header(h, "severity"), "2");
        by_source.entry(source).or_default().push(count);
    }
    assert_eq!(by_source.len(), 3, "{:?}", by_source.keys());
    // 100 s of events, windows of 10 s from each source's first event: 10 windows each.
    let b7 = &by_source["socket 0 bank 7"];
    let b9 = &by_source["socket 0 bank 9"];
    let d = &by_source["DIMM CPU_SrcID#0_MC#0_Chan#1_DIMM#0"];
    assert_eq!((b7.len(), b9.len(), d.len()), (10, 10, 10));
    assert!(b7.iter().all(|c| *c == 5_000), "{b7:?}");
    assert!(b9.iter().all(|c| *c == 2_500), "{b9:?}");
    assert!(d.iter().all(|c| *c == 7_500), "{d:?}");
    assert_eq!(b7.iter().sum::<u64>(), bank7);
    assert_eq!(b9.iter().sum::<u64>(), bank9);
    assert_eq!(d.iter().sum::<u64>(), dimm);
}

#[test]
fn live_without_tracefs_or_opt_in_exits_cleanly() {
    let env = TestEnv::new();
    let missing = env.path("no-tracefs");
    let out = run(env
        .cmd(EXE)
        .args(["-n", "--tracefs", missing.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no tracefs at") && err.contains("Nothing to do."),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    // Not opted in: not started at all.
    let out = run(env.cmd(EXE).args(["--tracefs", missing.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Not opted in"), "{}", stderr(&out));
    assert!(stderr(&out).contains("rasprobe: not started."));
}

/// A tracefs mounted for this test (root only), unmounted at the end.
struct Tracefs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tracefs {
    fn mount() -> Option<Tracefs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED live rasprobe test: needs root to mount tracefs");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("tracing");
        std::fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED live rasprobe test: cannot mount tracefs here");
            return None;
        }
        Some(Tracefs { mnt, _dir: dir })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// On this machine as root: the probe creates its instance with the RAS events enabled there
/// only, and on SIGTERM disables them and removes the instance; a stale instance left by a
/// crash is replaced. Both runs in one test: they share the instance name.
#[test]
fn live_instance_is_created_and_removed_cleanly() {
    let Some(tfs) = Tracefs::mount() else {
        return;
    };
    let root = tfs.mnt.clone();
    let present: Vec<&str> = ["mce/mce_record", "ras/mc_event", "ras/aer_event"]
        .into_iter()
        .filter(|e| root.join("events").join(e).join("format").exists())
        .collect();
    let instance = root.join("instances/telemetrics-rasprobe");
    if present.is_empty() {
        eprintln!("SKIPPED live rasprobe test: no RAS tracepoints in this kernel");
        return;
    }
    let global_before: Vec<String> = present
        .iter()
        .map(|e| read(&root.join("events").join(e).join("enable")))
        .collect();
    let env = TestEnv::new();
    // Text field by field, after a crash, and the binary pages of older kernels.
    for (stale, raw) in [(false, false), (true, false), (false, true)] {
        if stale {
            // What a crashed run leaves: the directory, with an event still enabled.
            std::fs::create_dir(&instance).unwrap();
            std::fs::write(instance.join("events").join(present[0]).join("enable"), "1").unwrap();
        }
        let mut child = env
            .cmd(EXE)
            .args(["-n", "--tracefs", root.to_str().unwrap()])
            .args(if raw { &["--raw"][..] } else { &[] })
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the instance with its events enabled", || {
            present
                .iter()
                .all(|e| read(&instance.join("events").join(e).join("enable")) == "1")
                && read(&instance.join("options/fields")) == "1"
        });
        assert!(read(&instance.join("trace_clock")).contains("[mono]"));
        // Enabled in our instance only: the top-level buffer is unchanged.
        for (e, before) in present.iter().zip(&global_before) {
            assert_eq!(
                &read(&root.join("events").join(e).join("enable")),
                before,
                "{e}"
            );
        }
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "rasprobe did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(status.success(), "{err}");
        assert!(!instance.exists(), "instance left behind: {err}");
        if stale {
            assert!(
                err.contains("removing the tracing instance a previous run left"),
                "{err}"
            );
        }
        assert!(err.contains("stopped"), "{err}");
        let how = if raw {
            "(trace_pipe_raw pages)"
        } else {
            "(trace_pipe, field by field)"
        };
        assert!(err.contains(how), "{err}");
    }
    for (e, before) in present.iter().zip(&global_before) {
        assert_eq!(
            &read(&root.join("events").join(e).join("enable")),
            before,
            "{e}"
        );
    }
}

/// The decoder against this machine's kernel, as root: an instance set up as rasprobe sets up
/// its own, with `sched/sched_process_exec` enabled (any event does: decoding goes by the
/// format file), and a program run from a path with spaces and `=` in it. The line the kernel
/// prints must decode to exactly that path and the child's pid.
#[test]
fn real_kernel_lines_decode_by_their_format() {
    use probes::ras::format::Format;
    use probes::ras::text::{parse_line, Line};
    use probes::ras::tracefs::Instance;
    let Some(tfs) = Tracefs::mount() else {
        return;
    };
    let root = tfs.mnt.clone();
    let format_file = root.join("events/sched/sched_process_exec/format");
    if !format_file.exists() || !root.join("options/fields").exists() {
        eprintln!("SKIPPED: no sched_process_exec event or no options/fields in this kernel");
        return;
    }
    let format = Format::read(&format_file).unwrap();
    let instance = Instance::create_named(
        &root,
        "telemetrics-rasprobe-selftest",
        &[("sched", "sched_process_exec")],
    )
    .unwrap();
    let mut pipe = instance.pipe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a b=c x=0x1 (2)");
    std::fs::create_dir(&odd).unwrap();
    let exe = odd.join("true prog");
    std::fs::copy("/bin/true", &exe).unwrap();
    let child = Command::new(&exe).spawn().unwrap();
    let pid = child.id();
    let mut child = child;
    child.wait().unwrap();
    let want = exe.to_str().unwrap().to_string();
    let end = Instant::now() + Duration::from_secs(30);
    let found = loop {
        assert!(Instant::now() < end, "the exec event did not arrive");
        let lines = pipe.read_lines(Duration::from_millis(200)).unwrap();
        let hit = lines
            .iter()
            .find_map(|l| match parse_line(l, std::slice::from_ref(&format)) {
                Ok(Line::Event(e)) if e.str("filename") == Some(want.as_str()) => Some(e),
                Ok(_) => None,
                Err(err) => panic!("{l}: {err}"),
            });
        if let Some(e) = hit {
            break e;
        }
    };
    assert_eq!(found.i64("pid"), Some(i64::from(pid)));
    assert_eq!(found.i64("old_pid"), Some(i64::from(pid)));
    assert!(found.timestamp_ns > 0);
    drop(pipe);
    instance.remove().unwrap();
    assert!(!root
        .join("instances/telemetrics-rasprobe-selftest")
        .exists());
}

/// The binary page decoder against this machine's kernel, as root: as above, read from every
/// CPU's `trace_pipe_raw` and decoded by `events/header_page` and the event's format file.
#[test]
fn real_kernel_pages_decode_by_their_format() {
    use probes::ras::format::Format;
    use probes::ras::raw::{decode_page, PageLayout};
    use probes::ras::tracefs::{self, Instance};
    let Some(tfs) = Tracefs::mount() else {
        return;
    };
    let root = tfs.mnt.clone();
    let format_file = root.join("events/sched/sched_process_exec/format");
    if !format_file.exists() {
        eprintln!("SKIPPED: no sched_process_exec event in this kernel");
        return;
    }
    let format = Format::read(&format_file).unwrap();
    let layout =
        PageLayout::parse(&tracefs::read_file(&root.join("events/header_page")).unwrap()).unwrap();
    let instance = Instance::create_named(
        &root,
        "telemetrics-rasprobe-selftest-raw",
        &[("sched", "sched_process_exec")],
    )
    .unwrap();
    assert!(read(&instance.dir().join("trace_clock")).contains("[mono]"));
    let mut pipes = instance.raw_pipes(layout.page_size).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("raw prog=1");
    std::fs::copy("/bin/true", &exe).unwrap();
    let mut child = Command::new(&exe).spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let want = exe.to_str().unwrap().to_string();
    let mono_now = nix_now();
    let end = Instant::now() + Duration::from_secs(30);
    let found = loop {
        assert!(Instant::now() < end, "the exec event did not arrive");
        let mut hit = None;
        for (cpu, page) in pipes.read_pages(Duration::from_millis(200)).unwrap() {
            let decoded = decode_page(&page, &layout, std::slice::from_ref(&format), cpu).unwrap();
            assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
            hit = hit.or(decoded
                .events
                .into_iter()
                .find(|e| e.str("filename") == Some(want.as_str())));
        }
        if let Some(e) = hit {
            break e;
        }
    };
    assert_eq!(found.i64("pid"), Some(i64::from(pid)));
    // Stamped with CLOCK_MONOTONIC: before the moment we looked, and not long before.
    assert!(
        found.timestamp_ns <= mono_now,
        "{} > {mono_now}",
        found.timestamp_ns
    );
    assert!(mono_now - found.timestamp_ns < 60_000_000_000);
    drop(pipes);
    instance.remove().unwrap();
}

/// CLOCK_MONOTONIC now, in nanoseconds (what `trace_clock` `mono` stamps).
fn nix_now() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
