//! klogscanner run for real: `--file` on the samples (dry run and sent), `/dev/kmsg`-format
//! input with the resume file, opt-in, `-f`, the container check.

use crate::common::*;

const EXE: &str = env!("CARGO_BIN_EXE_klogscanner");

fn sample(name: &str) -> String {
    format!("{}/tests/data/oops/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn dry_run_prints_each_sample_record() {
    let env = TestEnv::new();
    let cases = [
        ("watchdog.txt", "org.clearlinux/kernel/warning", "2", "WARNING: at net/sched/sch_generic.c:255 dev_watchdog+0x238/0x250"),
        ("warning.txt", "org.clearlinux/kernel/warning", "2", "WARNING: CPU: 1 PID: 796 at kernel/sched/core.c:2342 preempt_notifier_register+0x30/0x70"),
        ("soft_lockup.txt", "org.clearlinux/kernel/bug", "4", "BUG: soft lockup - CPU#8 stuck for 22s! [ceph-osd:12347]"),
        ("kernel_null_pointer.txt", "org.clearlinux/kernel/bug", "4", "BUG: unable to handle kernel NULL pointer dereference at 0000000000000118"),
        ("bug_kernel_handle_new.txt", "org.clearlinux/kernel/bug", "4", "BUG: unable to handle kernel paging request at 0000000000002658"),
        ("loglevel_notimestamp.txt", "org.clearlinux/kernel/warning", "2", "WARNING: CPU: 1 PID: 796 at kernel/sched/core.c:2342 preempt_notifier_register+0x30/0x70"),
    ];
    for (file, class, sev, reason) in cases {
        // Not opted in and no daemon: a dry run needs neither.
        let out = run(env.cmd(EXE).args(["--file", &sample(file), "--dry-run"]));
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let records = dry_run_records(&stdout(&out));
        assert_eq!(records.len(), 1, "{file}");
        let (headers, payload) = &records[0];
        assert_eq!(header(headers, "classification"), class);
        assert_eq!(header(headers, "severity"), sev);
        assert_eq!(header(headers, "payload_format_version"), "1");
        assert_eq!(header(headers, "record_format_version"), "4");
        let expected = probes::oops::scan_text(&std::fs::read_to_string(sample(file)).unwrap())[0]
            .payload(false);
        assert_eq!(payload, &expected, "{file}");
        assert!(payload.starts_with(&format!("Crash Report:\nReason: {reason}\n")));
        assert!(
            !env.state_dir().join("klogscanner.seq").exists(),
            "--file persists nothing"
        );
    }
}

#[test]
fn file_records_are_sent_when_opted_in() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let out = run(env.cmd(EXE).args(["--file", &sample("watchdog.txt")]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(daemon.classifications(), ["org.clearlinux/kernel/warning"]);
    assert!(daemon.payloads()[0].contains("#21 start_secondary - [kernel]\n"));
}

#[test]
fn not_opted_in_sends_nothing_and_says_so() {
    let env = TestEnv::new();
    let daemon = env.daemon();
    let out = run(env.cmd(EXE).args(["--file", &sample("watchdog.txt")]));
    assert!(out.status.success(), "{}", stderr(&out));
    let msg = format!(
        "Not opted in to telemetry ({} missing); nothing sent.",
        env.path("etc/telemetrics/opt-in").display()
    );
    assert!(stderr(&out).contains(&msg), "{}", stderr(&out));
    assert!(daemon.records().is_empty());
}

#[test]
fn daemon_not_running_is_an_error_that_says_so() {
    let env = TestEnv::new();
    env.opt_in();
    let out = run(env.cmd(EXE).args(["--file", &sample("watchdog.txt")]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot reach telemprobd"), "{err}");
    assert!(!err.contains("Not opted in"), "{err}");
}

#[test]
fn config_file_option_is_honoured() {
    let env = TestEnv::new();
    let e = env.elsewhere(&[]);
    let conf = &e.conf;
    let daemon = FakeDaemon::start(&e.sock);
    for flag in ["-f", "--config-file", "--config_file"] {
        let out = run(env.cmd(EXE).args([
            flag,
            conf.to_str().unwrap(),
            "--file",
            &sample("warning.txt"),
        ]));
        assert!(out.status.success(), "{flag}: {}", stderr(&out));
    }
    assert_eq!(daemon.records().len(), 3);
    // A broken config file is an error naming it.
    std::fs::write(conf, "[settings]\nsocket_path=\n").unwrap();
    let out = run(env.cmd(EXE).args([
        "-f",
        conf.to_str().unwrap(),
        "--file",
        &sample("warning.txt"),
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("probe.conf"), "{}", stderr(&out));
}

/// A sample as /dev/kmsg records (`pri,seq,ts,flags;message`), with dictionary lines and a
/// user-space record in between, sequence numbers from `first`.
fn as_kmsg(text: &str, first: u64) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let seq = first + i as u64;
        let msg = probes::oops::normalise(line);
        out.push_str(&format!("4,{seq},{},-;{msg}\n", 1000 + i));
        if i == 2 {
            out.push_str(" SUBSYSTEM=net\n DEVICE=+net:wwan0\n");
        }
    }
    out
}

#[test]
fn kmsg_records_are_reported_once_across_restarts() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let kmsg = env.path("kmsg");
    let watchdog = std::fs::read_to_string(sample("watchdog.txt")).unwrap();
    std::fs::write(&kmsg, as_kmsg(&watchdog, 10)).unwrap();
    let out = run(env.cmd(EXE).args(["--kmsg", kmsg.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 1);
    let seq_file = env.state_dir().join("klogscanner.seq");
    let state = std::fs::read_to_string(&seq_file).unwrap();
    let lines = watchdog.lines().count() as u64;
    assert!(state.ends_with(&format!(" {}\n", 10 + lines)), "{state}");

    // Restart on the same log: nothing new.
    let out = run(env.cmd(EXE).args(["--kmsg", kmsg.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 1);

    // More messages arrive: only the new oops is reported.
    let warning = std::fs::read_to_string(sample("warning.txt")).unwrap();
    let mut log = as_kmsg(&watchdog, 10);
    log.push_str(&as_kmsg(&warning, 10 + lines));
    std::fs::write(&kmsg, log).unwrap();
    let out = run(env.cmd(EXE).args(["--kmsg", kmsg.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    let classes = daemon.classifications();
    assert_eq!(classes.len(), 2);
    assert!(daemon.payloads()[1].starts_with("Crash Report:\nReason: WARNING: CPU: 1 PID: 796"));
    // The dictionary lines did not disturb the payload.
    assert_eq!(
        daemon.payloads()[0],
        probes::oops::scan_text(&watchdog)[0].payload(false)
    );
}

#[test]
fn kmsg_user_space_records_are_ignored() {
    let env = TestEnv::new();
    let kmsg = env.path("kmsg");
    // Facility 3 (daemon): a user-space program wrote this, not the kernel.
    std::fs::write(
        &kmsg,
        "28,1,1,-;WARNING: CPU: 0 PID: 1 at fake\n28,2,1,-;next\n",
    )
    .unwrap();
    let out = run(env.cmd(EXE).args(["--kmsg", kmsg.to_str().unwrap(), "-n"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    std::fs::write(
        &kmsg,
        "4,1,1,-;WARNING: CPU: 0 PID: 1 at real\n4,2,1,-;next\n",
    )
    .unwrap();
    let out = run(env.cmd(EXE).args(["--kmsg", kmsg.to_str().unwrap(), "-n"]));
    assert_eq!(dry_run_records(&stdout(&out)).len(), 1);
    assert!(
        !env.state_dir().join("klogscanner.seq").exists(),
        "dry run persists nothing"
    );
}

#[test]
fn container_check() {
    let env = TestEnv::new();
    let out = run(env.cmd(EXE).env("container", "podman"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("running in a container (environment variable container=podman)"));
    // --file works in a container.
    let out =
        run(env
            .cmd(EXE)
            .env("container", "podman")
            .args(["--file", &sample("warning.txt"), "-n"]));
    assert_eq!(dry_run_records(&stdout(&out)).len(), 1);
}

#[test]
fn usage() {
    let env = TestEnv::new();
    let out = run(env.cmd(EXE).arg("--bogus"));
    assert_eq!(out.status.code(), Some(1));
    let out = run(env.cmd(EXE).arg("-V"));
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("klogscanner "));
    let out = run(env.cmd(EXE).arg("-h"));
    assert!(out.status.success());
    assert!(stdout(&out).contains("--dry-run"));
}

/// Polls `cond` until it holds or 30 s pass.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn restart_mid_oops_collects_it_again_from_its_start() {
    use std::io::Write;
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let warning = std::fs::read_to_string(sample("warning.txt")).unwrap();
    let body: Vec<&str> = warning
        .lines()
        .skip_while(|l| !l.contains("WARNING: CPU"))
        .take_while(|l| !l.contains("[ end trace"))
        .collect();
    let one = body.join("\n");
    // Two back-to-back warnings: the second's first line ends the first.
    let records = as_kmsg(&format!("{one}\n{one}\n"), 1);
    let (first_half, second_start) = (body.len(), body.len() as u64 + 1);

    // A live stream (a FIFO never reaches its end while we hold it open).
    let fifo = env.path("kmsg.fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = env
        .cmd(EXE)
        .args(["--kmsg", fifo.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let lines: Vec<&str> = records.split_inclusive('\n').collect();
    // Everything but the last record of the second warning.
    for l in &lines[..lines.len() - 1] {
        writer.write_all(l.as_bytes()).unwrap();
    }
    writer.flush().unwrap();
    let seq_file = env.state_dir().join("klogscanner.seq");
    wait_for("the first warning", || daemon.records().len() == 1);
    wait_for("the resume file", || {
        std::fs::read_to_string(&seq_file).is_ok_and(|s| s.ends_with(&format!(" {second_start}\n")))
    });
    // Our own child: stopped mid-oops, as by a crash or a reboot of the service.
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    assert!(first_half > 3);

    // The restart reads the whole log again: the first warning is not re-sent, the second is
    // collected from its first line.
    let file = env.path("kmsg.all");
    std::fs::write(&file, format!("{records}4,999,1,-;next\n")).unwrap();
    let out = run(env.cmd(EXE).args(["--kmsg", file.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    let payloads = daemon.payloads();
    assert_eq!(payloads.len(), 2);
    assert_eq!(payloads[0], payloads[1], "both warnings whole");
    assert!(payloads[1].contains("#13 ? entry_SYSCALL_64_fastpath - [kernel]\n"));
}

#[test]
fn oversized_payload_is_cut_at_a_line_boundary_with_a_note() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let mut log = String::from("<4>[ 1.0] WARNING: CPU: 0 PID: 1 at big.c:1 big+0x1/0x2\n");
    log.push_str("<4>[ 1.0] CPU: 0 PID: 1 Comm: x Not tainted 6.1.0 #1\n");
    log.push_str(&format!(
        "<4>[ 1.0] Modules linked in: {}\n",
        "mod_x ".repeat(1000)
    ));
    log.push_str("<4>[ 1.0] Call Trace:\n");
    for i in 0..90 {
        log.push_str(&format!("<4>[ 1.0]  function_number_{i}+0x1/0x2\n"));
    }
    log.push_str("<4>[ 1.0] ---[ end trace 0 ]---\n");
    let file = env.path("big.log");
    std::fs::write(&file, log).unwrap();
    let out = run(env.cmd(EXE).args(["--file", file.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    let p = &daemon.payloads()[0];
    assert!(p.len() <= 8192, "{}", p.len());
    assert!(p.starts_with("Crash Report:\nReason: WARNING: CPU: 0 PID: 1 at big.c:1"));
    assert!(
        p.ends_with(&format!("\n{}", probes::send::TRUNCATION_NOTE)),
        "{p}"
    );
    // Whole lines only: the 6 KB modules line fits, the frames are cut between lines.
    assert!(p.contains("Modules : mod_x "));
    let last_frame = p.lines().rfind(|l| l.starts_with('#')).unwrap();
    assert!(last_frame.ends_with(" - [kernel]"), "{last_frame}");
}

/// Resident memory of a running process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_endless_file_without_line_ends_is_read_in_bounded_memory() {
    let env = TestEnv::new();
    // /dev/zero: one line that never ends. Read whole, it grows until memory runs out.
    let mut child = env
        .cmd(EXE)
        .args(["--file", "/dev/zero", "--dry-run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        peak = peak.max(rss_kib(child.id()));
    }
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(exited.is_none(), "klogscanner stopped reading: {exited:?}");
    assert!(peak > 0, "no RSS read");
    assert!(
        peak < 32 * 1024,
        "klogscanner grew to {peak} KiB on /dev/zero"
    );
}

#[test]
fn a_large_file_is_scanned_as_a_stream_and_its_oops_found() {
    let env = TestEnv::new();
    let big = env.path("big.log");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let noise = format!("[    1.000000] {}\n", "noise ".repeat(20));
        // ~64 MiB of noise, a line far longer than any kernel line, then an oops.
        for _ in 0..(64 << 20) / noise.len() {
            f.write_all(noise.as_bytes()).unwrap();
        }
        f.write_all(&vec![b'x'; 1 << 20]).unwrap();
        f.write_all(b"\n").unwrap();
        f.write_all(&std::fs::read(sample("watchdog.txt")).unwrap())
            .unwrap();
    }
    let child = env
        .cmd(EXE)
        .args(["--file", big.to_str().unwrap(), "--dry-run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p = peak.clone();
    let watcher = std::thread::spawn(move || {
        while std::path::Path::new(&format!("/proc/{pid}/status")).exists() {
            p.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let out = child.wait_with_output().unwrap();
    watcher.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let records = dry_run_records(&stdout(&out));
    assert_eq!(records.len(), 1, "{}", stdout(&out));
    assert_eq!(
        header(&records[0].0, "classification"),
        "org.clearlinux/kernel/warning"
    );
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        peak < 32 * 1024,
        "klogscanner grew to {peak} KiB on a 65 MiB file"
    );
}
