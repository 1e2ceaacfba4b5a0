//! Builds the C test program and gets real cores from it.
//!
//! Cores come from the kernel when `/proc/sys/kernel/core_pattern` is a plain file name (as on
//! this project's machines: `core`), else from gdb (`run` until the fatal signal, then
//! `gcore`), as on machines where the pattern pipes to apport or systemd-coredump. The system
//! pattern is never changed. `COREDUMP_TEST_CORE_METHOD=gdb|kernel` forces one method.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// Relative to the workspace so probes/tests/crashprobe.rs can share this file.
pub const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../coredump/tests/c/crash.c");

/// A compiled copy of `tests/c/crash.c` in its own temporary directory.
pub struct Program {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
}

/// `gcc -g -O0 -pthread` the test program (plus `extra` flags) into a fresh directory.
pub fn compile(extra: &[&str]) -> Program {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("crashme");
    recompile(&bin, extra);
    Program { dir, bin }
}

pub fn recompile(bin: &Path, extra: &[&str]) {
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-pthread", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(bin)
        .arg(SOURCE)
        .args(extra)
        .output()
        .expect("gcc must be installed to build the test program");
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Line number of the line holding `/* MARKER */` in the C source.
pub fn line_of(marker: &str) -> u32 {
    let src = fs::read_to_string(SOURCE).unwrap();
    let tag = format!("/* {marker} */");
    let i = src
        .lines()
        .position(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no {tag}"));
    u32::try_from(i + 1).unwrap()
}

fn wait_deadline(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn method() -> &'static str {
    if let Ok(m) = std::env::var("COREDUMP_TEST_CORE_METHOD") {
        return if m == "gdb" { "gdb" } else { "kernel" };
    }
    let pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let pattern = pattern.trim();
    if pattern.is_empty() || pattern.starts_with('|') || pattern.contains('/') {
        "gdb"
    } else {
        "kernel"
    }
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs `bin args` until it dies and returns the path of its core (inside `dir`).
pub fn make_core(bin: &Path, args: &[&str], dir: &Path) -> PathBuf {
    let run = dir.join(format!("run-{}", RUNS.fetch_add(1, Ordering::SeqCst)));
    fs::create_dir(&run).unwrap();
    if method() == "kernel" {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -c unlimited && exec \"$0\" \"$@\"")
            .arg(bin)
            .args(args)
            .current_dir(&run)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status = wait_deadline(&mut child, Duration::from_secs(60));
        assert!(!status.success(), "the test program did not crash");
        // The kernel writes the core before the parent sees the exit; any file here is it.
        if let Some(core) = fs::read_dir(&run)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .next()
        {
            return core;
        }
        eprintln!(
            "no core in {} from the kernel; falling back to gdb",
            run.display()
        );
    }
    gdb_core(bin, args, &run)
}

fn gdb_core(bin: &Path, args: &[&str], run: &Path) -> PathBuf {
    let core = run.join("gdb.core");
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch", "-ex", "set pagination off"]);
    if args.contains(&"handler") {
        // Let the program's own SIGSEGV handler run; stop at its abort().
        cmd.args(["-ex", "handle SIGSEGV nostop noprint pass"]);
    }
    cmd.args(["-ex", "run", "-ex"])
        .arg(format!("gcore {}", core.display()))
        .arg("--args")
        .arg(bin)
        .args(args)
        .current_dir(run)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .expect("gdb must be installed when core_pattern is not a file");
    wait_deadline(&mut child, Duration::from_secs(120));
    assert!(core.is_file(), "gdb wrote no core to {}", core.display());
    core
}
