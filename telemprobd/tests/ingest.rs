//! Records in, durable spool files out: many clients, the Rust client, telem-record-gen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use telemetry::record::Header;
use telemetry::{client, spool};

#[test]
fn a_thousand_records_from_eight_clients_are_all_spooled_with_the_machine_id() {
    let d = Daemon::start("", &[]);
    let config = d.config();
    let mut sent = BTreeSet::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let config = &config;
                s.spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..125 {
                        let r = record(&format!("client {t} record {i}"));
                        client::send(&r, config).unwrap();
                        ids.push(r.get(Header::EventId).to_string());
                    }
                    ids
                })
            })
            .collect();
        for h in handles {
            sent.extend(h.join().unwrap());
        }
    });
    assert_eq!(sent.len(), 1000);

    let machine_id = std::fs::read_to_string(&config.machine_id_file).unwrap();
    assert_eq!(
        machine_id.len(),
        32,
        "machine id file created by the daemon"
    );
    let files = d.spool_files();
    assert_eq!(files.len(), 1000, "exactly one file per record");
    let written = written_temporaries(&d.spool());
    assert!(written.is_empty(), "no unfinished temporary: {written:?}");
    let mut stored = BTreeSet::new();
    for f in &files {
        let s = spool::decode(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(s.record.get(Header::MachineId), machine_id);
        assert_eq!(
            s.cfg.as_deref(),
            Some(d.config_file.as_path()),
            "same uid: CFG kept"
        );
        s.record.validate().unwrap();
        stored.insert(s.record.get(Header::EventId).to_string());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(f).unwrap().mode() & 0o777, 0o600);
    }
    assert_eq!(stored, sent);

    // Nothing per record at the default level: a thousand records leave the log as it was
    // after start-up (a few lines), not a thousand lines longer.
    let log = d.log();
    assert!(
        log.lines().count() < 20,
        "per-record logging at info:\n{log}"
    );
}

#[test]
fn each_record_is_logged_with_its_senders_credentials_at_debug_level() {
    let d = Daemon::start_env("", &[], true, &[("RUST_LOG", "debug")]);
    let config = d.config();
    let r = record("who sent this");
    client::send(&r, &config).unwrap();
    let event_id = r.get(Header::EventId).to_string();
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let pid = std::process::id();
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("record received") && l.contains(&event_id))
        .unwrap_or_else(|| panic!("no debug line for the record:\n{log}"));
    for field in [
        format!("uid={uid}"),
        format!("gid={gid}"),
        format!("pid={pid}"),
    ] {
        assert!(line.contains(&field), "{field} missing: {line}");
    }
}

#[test]
fn static_machine_id_wins_after_reload() {
    let d = Daemon::start("", &[]);
    let c = d.config();
    std::fs::write(&c.static_machine_id_file, "lab-box-7\nignored").unwrap();
    d.signal(rustix::process::Signal::HUP); // the override is re-read on reload
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        client::send(&record("which machine"), &c).unwrap();
        let files = d.spool_files();
        let last = spool::decode(&std::fs::read(files.last().unwrap()).unwrap()).unwrap();
        if last.record.get(Header::MachineId) == "lab-box-7" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "override never applied:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn telem_record_gen_records_are_accepted() {
    let d = Daemon::start("", &[]);
    let gen = target_bin("telem-record-gen");
    assert!(
        gen.exists(),
        "telem-record-gen not found at {} — build it first (cargo build -p telem-record-gen); \
         this test needs the real binary",
        gen.display()
    );
    let out = Command::new(&gen)
        .arg("-f")
        .arg(&d.config_file)
        .args([
            "-c",
            "org.test/recordgen/hello",
            "-s",
            "3",
            "-p",
            "hello from record-gen",
        ])
        .env("TELEM_ROOT", d.root.path())
        .env_remove("TELEM_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "telem-record-gen failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let files = d.spool_files();
    assert_eq!(files.len(), 1);
    let s = spool::decode(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(
        s.record.get(Header::Classification),
        "org.test/recordgen/hello"
    );
    assert_eq!(s.record.get(Header::Severity), "3");
    assert_eq!(s.record.payload(), b"hello from record-gen");
    let machine_id = std::fs::read_to_string(&d.config().machine_id_file).unwrap();
    assert_eq!(s.record.get(Header::MachineId), machine_id);
}

/// The `CFG:` path of a sender that is neither root nor the daemon's user is dropped. Needs
/// root to run a client under another uid.
#[test]
fn cfg_path_from_another_user_is_dropped() {
    if !rustix::process::getuid().is_root() {
        eprintln!(
            "not root: cannot run a client as another user; only the same-uid case is tested"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = Daemon::start("", &[]);
    // Let the other user reach the socket, config and opt-in file.
    std::fs::set_permissions(d.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let gen = target_bin("telem-record-gen");
    assert!(
        gen.exists(),
        "telem-record-gen not found at {}",
        gen.display()
    );
    let out = Command::new(&gen)
        .arg("-f")
        .arg(&d.config_file)
        .args([
            "-c",
            "org.test/recordgen/nobody",
            "-s",
            "1",
            "-p",
            "from nobody",
        ])
        .env("TELEM_ROOT", d.root.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = d.spool_files();
    assert_eq!(files.len(), 1);
    let s = spool::decode(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(s.cfg, None, "CFG: from uid 65534 must not be kept");
    assert_eq!(s.record.payload(), b"from nobody");
    assert!(
        d.log()
            .contains("CFG: path from an unprivileged sender ignored"),
        "{}",
        d.log()
    );
}
