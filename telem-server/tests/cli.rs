//! The binary: `--help`, `check-config` (on the shipped default file too), and a real serve
//! that stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_telem-server");

fn run(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("TELEM_SERVER_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn help_names_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["check-config", "serve", "regroup", "purge", "--config"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}

#[test]
fn the_shipped_config_is_the_defaults_and_passes() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("telem-server.toml");
    let out = run(&["check-config"], &shipped);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = telem_server::Config::load(&shipped).unwrap();
    let def = telem_server::Config::default();
    assert_eq!(format!("{cfg:?}"), format!("{def:?}"));
}

#[test]
fn check_config_refuses_an_open_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "listen = \"0.0.0.0:8080\"\n").unwrap();
    let out = run(&["check-config"], &f);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("query_token"));
    let out = run(&["check-config"], &dir.path().join("missing.toml"));
    assert!(!out.status.success());
}

#[test]
fn serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[storage]\npath = \"{}\"\n",
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::get(&format!("{base}/healthz"), &[]).status == 200;
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = common::post(
        &format!("{base}/v2/collector"),
        &common::v4_headers(common::EVENT),
        b"p",
    );
    assert_eq!(r.status, 201);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
}

#[test]
fn the_unit_verifies_and_is_sandboxed() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: no systemd-analyze; unit check skipped");
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/telem-server.service");
    let text = std::fs::read_to_string(unit).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("telem-server.service");
    std::fs::write(&copy, text.replace("/usr/bin/telem-server", BIN)).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
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
    assert!(score <= 2.0, "exposure {score} > 2.0");
}

fn stored(cfg: &telem_server::Config) -> Vec<telem_server::store::StoredRecord> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = telem_server::store::Store::open(cfg).await.unwrap();
        let out = s
            .list(&telem_server::store::Filter::default(), 1000)
            .await
            .unwrap();
        s.close().await;
        out
    })
}

#[test]
fn regroup_and_purge_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let f = dir.path().join("c.toml");
    let write_cfg = |extra: &str| {
        std::fs::write(
            &f,
            format!("[storage]\npath = \"{}\"\n{extra}", db.display()),
        )
        .unwrap();
    };
    write_cfg("");
    let cfg = telem_server::Config::load(&f).unwrap();
    let crash = "Process: /usr/bin/app\nPID: 1\n\nBacktrace (TID 1):\n\
        #0 abort() - [/usr/lib64/libc.so.6]\n#1 die_loudly() - [/usr/bin/app]\n\
        #2 main() - [/usr/bin/app]\n";
    let now = telem_server::store::schema::unix_now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = telem_server::store::Store::open(&cfg).await.unwrap();
        let mut recs = Vec::new();
        for (n, class, age_days, payload) in [
            (1u32, "org.clearlinux/crash/clr", 0, crash),
            (2, "org.clearlinux/hello/world", 3, "hello\n"),
            (3, "org.clearlinux/hello/world", 0, "hello\n"),
        ] {
            recs.push(telem_server::store::NewRecord {
                identity: format!("{n:064x}"),
                form: "headers".into(),
                external: false,
                machine_id: "m".into(),
                classification: class.into(),
                severity: 1,
                build: "1".into(),
                kernel_version: "6.1.0".into(),
                arch: "x86_64".into(),
                host_type: "h".into(),
                board_name: "b".into(),
                cpu_model: "c".into(),
                bios_version: "1".into(),
                system_name: "s".into(),
                event_id: "e".into(),
                payload_version: 1,
                record_version: 4,
                ts_capture: now,
                ts_reception: now - age_days * 86_400,
                payload: payload.into(),
                // As an older server stored it: no signature yet.
                crash: None,
            });
        }
        s.insert_batch(&recs).await.unwrap();
        s.close().await;
    });

    // Regroup fills in signatures of records stored without one.
    let out = run(&["regroup"], &f);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "regrouped: 1 records with a backtrace, 1 changed\n"
    );
    let crash_sig = |cfg: &telem_server::Config| {
        stored(cfg)
            .into_iter()
            .find_map(|r| r.record.crash)
            .map(|c| c.function)
    };
    assert_eq!(crash_sig(&cfg).as_deref(), Some("die_loudly"));
    // An edited skip list, then regroup: the group follows.
    write_cfg("[crash]\nskip_extra = [\"die_loudly [app]\"]\n");
    let out = run(&["regroup"], &f);
    assert!(String::from_utf8_lossy(&out.stdout).contains(", 1 changed"));
    assert_eq!(crash_sig(&cfg).as_deref(), Some("main"));

    // Purge without retention deletes nothing; with it, the old hello record goes.
    let out = run(&["check-config"], &f);
    assert!(String::from_utf8_lossy(&out.stdout).contains("retention: records kept forever"));
    let out = run(&["purge"], &f);
    assert!(out.status.success());
    assert_eq!(stored(&cfg).len(), 3);
    write_cfg("[retention.classification]\n\"org.clearlinux/hello/*\" = 1\n");
    let out = run(&["check-config"], &f);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("retention: org.clearlinux/hello/*: 1 days")
    );
    let out = run(&["purge"], &f);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "purged 1 records of org.clearlinux/hello/* older than 1 days\n"
    );
    let left: Vec<String> = stored(&cfg)
        .into_iter()
        .map(|r| r.record.identity)
        .collect();
    assert_eq!(left, vec![format!("{:064x}", 3), format!("{:064x}", 1)]);
}
