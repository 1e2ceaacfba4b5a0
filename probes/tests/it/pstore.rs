//! pstoreprobe and pstoreclean run for real on fixture dumps (tests/data/pstore): EFI
//! multi-part, ramoops single-part ending without a newline, a dump with a missing part.

use std::path::{Path, PathBuf};

use crate::common::*;

const PROBE: &str = env!("CARGO_BIN_EXE_pstoreprobe");
const CLEAN: &str = env!("CARGO_BIN_EXE_pstoreclean");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pstore")
        .join(name)
}

/// A pstore directory in the test root holding copies of the given fixture sets.
fn pstore_dir(env: &TestEnv, sets: &[&str]) -> PathBuf {
    let dir = env.path("pstore");
    std::fs::create_dir_all(&dir).unwrap();
    for set in sets {
        for e in std::fs::read_dir(fixture(set)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    dir
}

fn oops_text(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/oops")
            .join(name),
    )
    .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn efi_multi_part_dump_is_reassembled_in_order() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let dir = pstore_dir(&env, &["efi"]);
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    // Part 3 (oldest) + part 2 + part 1 is the original log: the same record as from the log.
    let expected = probes::oops::scan_text(&oops_text("kernel_null_pointer.txt"));
    assert_eq!(daemon.payloads(), [expected[0].payload(false)]);
    assert_eq!(daemon.classifications(), ["org.clearlinux/kernel/bug"]);
    assert_eq!(
        daemon.records()[0].get(telemetry::record::Header::Severity),
        "4"
    );

    // Handled dumps are not reported again.
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 1);

    // pstoreclean deletes them; the next pstoreprobe run forgets them.
    assert_eq!(names(&dir).len(), 3);
    let list = env.path("var/cache/telemetry/pstore/processed");
    assert_eq!(std::fs::read_to_string(&list).unwrap().lines().count(), 3);
    let out = run(env.cmd(CLEAN).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(names(&dir).is_empty());
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&list).unwrap(), "");
}

#[test]
fn ramoops_single_part_without_final_newline() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let dir = pstore_dir(&env, &["ramoops"]);
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        daemon.classifications(),
        [
            "org.clearlinux/kernel/warning",
            "org.clearlinux/kernel/panic"
        ]
    );
    let payloads = daemon.payloads();
    assert!(payloads[0].starts_with(
        "Crash Report:\nReason: WARNING: CPU: 1 PID: 796 at kernel/sched/core.c:2342"
    ));
    assert!(payloads[0].contains("#13 ? entry_SYSCALL_64_fastpath - [kernel]\n"));
    // The panic is the last line but one, and the dump ends without a newline.
    assert_eq!(
        payloads[1],
        "Crash Report:\nReason: Kernel panic - not syncing: Fatal exception in interrupt\n"
    );
}

#[test]
fn dump_with_a_missing_part_is_skipped_but_marked_handled() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let dir = pstore_dir(&env, &["missing", "ramoops"]);
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("incomplete pstore dump"),
        "{}",
        stderr(&out)
    );
    // Only the ramoops dump is reported.
    assert_eq!(daemon.records().len(), 2);
    let out = run(env.cmd(CLEAN).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success());
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
}

#[test]
fn dry_run_and_file_mode() {
    let env = TestEnv::new();
    let dir = pstore_dir(&env, &["efi", "ramoops"]);
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap(), "-n"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = dry_run_records(&stdout(&out));
    let classes: Vec<&str> = recs
        .iter()
        .map(|(h, _)| header(h, "classification"))
        .collect();
    assert_eq!(
        classes,
        [
            "org.clearlinux/kernel/bug",
            "org.clearlinux/kernel/warning",
            "org.clearlinux/kernel/panic"
        ]
    );
    assert!(
        !env.path("var/cache/telemetry/pstore/processed").exists(),
        "dry run remembers nothing"
    );

    let file = fixture("ramoops").join("dmesg-ramoops-0");
    let out = run(env
        .cmd(PROBE)
        .args(["--file", file.to_str().unwrap(), "-n"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dry_run_records(&stdout(&out)).len(), 2);
}

#[test]
fn opt_out_period_dumps_are_never_reported() {
    let env = TestEnv::new();
    let daemon = env.daemon();
    let dir = pstore_dir(&env, &["efi"]);
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Not opted in to telemetry ("),
        "{}",
        stderr(&out)
    );
    assert!(daemon.records().is_empty());
    env.opt_in();
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(daemon.records().is_empty());
}

#[test]
fn failed_send_keeps_the_dump_for_next_time() {
    let env = TestEnv::new();
    env.opt_in();
    let dir = pstore_dir(&env, &["efi"]);
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach telemprobd"),
        "{}",
        stderr(&out)
    );
    let daemon = env.daemon();
    let out = run(env.cmd(PROBE).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 1);
}

#[test]
fn pstoreclean_touches_only_handled_regular_files() {
    let env = TestEnv::new();
    let dir = pstore_dir(&env, &["ramoops"]);
    let outside = env.path("precious");
    std::fs::write(&outside, "keep").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("dmesg-ramoops-7")).unwrap();
    std::fs::create_dir(dir.join("dmesg-ramoops-8")).unwrap();
    std::fs::write(dir.join("unrelated"), "x").unwrap();
    // Nothing handled yet: nothing removed.
    let out = run(env.cmd(CLEAN).args(["--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        names(&dir),
        [
            "dmesg-ramoops-0",
            "dmesg-ramoops-7",
            "dmesg-ramoops-8",
            "unrelated"
        ]
    );
    // --all -n lists the regular files only.
    let out = run(env
        .cmd(CLEAN)
        .args(["--dir", dir.to_str().unwrap(), "--all", "-n"]));
    let printed = stdout(&out);
    assert!(
        printed.contains("dmesg-ramoops-0") && printed.contains("unrelated"),
        "{printed}"
    );
    assert!(
        !printed.contains("ramoops-7") && !printed.contains("ramoops-8"),
        "{printed}"
    );
    // --all removes regular files; the symlink, its target and the directory stay.
    let out = run(env
        .cmd(CLEAN)
        .args(["--dir", dir.to_str().unwrap(), "--all"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(names(&dir), ["dmesg-ramoops-7", "dmesg-ramoops-8"]);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
}

#[test]
fn config_file_sets_cache_dir_and_socket() {
    let env = TestEnv::new();
    let e = env.elsewhere(&["cache_dir"]);
    let (conf, cache) = (&e.conf, e.dir.join("cache_dir"));
    let daemon = FakeDaemon::start(&e.sock);
    let dir = pstore_dir(&env, &["ramoops"]);
    let out =
        run(env
            .cmd(PROBE)
            .args(["-f", conf.to_str().unwrap(), "--dir", dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 2);
    assert!(cache.join("pstore/processed").exists());
}

#[test]
fn pstoreclean_reads_the_list_named_by_the_config_file() {
    let env = TestEnv::new();
    env.opt_in();
    let _daemon = env.daemon();
    let cache = env.path("elsewhere/cache");
    let conf = env.path("p.conf");
    std::fs::write(
        &conf,
        format!("[settings]\ncache_dir={}\n", cache.display()),
    )
    .unwrap();
    let dir = pstore_dir(&env, &["ramoops"]);
    let d = dir.to_str().unwrap();
    let out = run(env
        .cmd(PROBE)
        .args(["-f", conf.to_str().unwrap(), "--dir", d]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cache.join("pstore/processed").exists());
    // Without -f the default list is empty: nothing to remove.
    let out = run(env.cmd(CLEAN).args(["--dir", d]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(names(&dir), ["dmesg-ramoops-0"]);
    let out = run(env
        .cmd(CLEAN)
        .args(["-f", conf.to_str().unwrap(), "--dir", d]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(names(&dir).is_empty());
}
