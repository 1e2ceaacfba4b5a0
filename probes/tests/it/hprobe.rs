//! hprobe run for real: payload shapes, heartbeat, sending, opt-in, `-f`.

use crate::common::*;

const EXE: &str = env!("CARGO_BIN_EXE_hprobe");

#[test]
fn payload_with_locale_uptime_and_bundles() {
    let env = TestEnv::new();
    let bundles = env.path("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    for b in ["os-core", "editors", ".hidden"] {
        std::fs::write(bundles.join(b), "").unwrap();
    }
    let out = run(env
        .cmd(EXE)
        .env_remove("LC_ALL")
        .env("LANG", "en_US.UTF-8")
        .args([
            "-n",
            "-l",
            "-u",
            "-b",
            "--bundles-dir",
            bundles.to_str().unwrap(),
        ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = dry_run_records(&stdout(&out));
    assert_eq!(recs.len(), 1);
    let (headers, payload) = &recs[0];
    assert_eq!(
        header(headers, "classification"),
        "org.clearlinux/hello/world"
    );
    assert_eq!(header(headers, "severity"), "1");
    let lines: Vec<&str> = payload.lines().collect();
    assert_eq!(lines[..2], ["hello", "LC_ALL: en_US.UTF-8"]);
    let uptime = lines[2].strip_prefix("uptime: ").expect("uptime line");
    assert!(uptime.parse::<u64>().is_ok(), "{uptime}");
    assert_eq!(lines[3..], ["", "Bundles (2):", "editors", "os-core"]);
    assert!(payload.ends_with("os-core\n"));
}

#[test]
fn default_bundles_dir_is_below_the_root() {
    let env = TestEnv::new();
    let out = run(env.cmd(EXE).args(["-n", "-b"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "no bundles directory is an error"
    );
    assert!(
        stderr(&out).contains("usr/share/clear/bundles"),
        "{}",
        stderr(&out)
    );
    std::fs::create_dir_all(env.path("usr/share/clear/bundles/os-core")).unwrap();
    let out = run(env.cmd(EXE).args(["-n", "--bundles"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        dry_run_records(&stdout(&out))[0].1,
        "hello\n\nBundles (1):\nos-core\n"
    );
}

#[test]
fn heartbeat_is_sent() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let out = run(env.cmd(EXE).arg("-H"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Successfully sent record to daemon.\n");
    assert_eq!(daemon.classifications(), ["org.clearlinux/heartbeat/ping"]);
    assert_eq!(daemon.payloads(), ["hello\n"]);
    let out = run(env.cmd(EXE).arg("--heartbeat").arg("-l").env("LC_ALL", "C"));
    assert!(out.status.success());
    assert_eq!(daemon.payloads()[1], "hello\nLC_ALL: C\n");
}

#[test]
fn not_opted_in_fails_with_a_clear_message() {
    let env = TestEnv::new();
    let daemon = env.daemon();
    let out = run(&mut env.cmd(EXE));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Not opted in to telemetry ("),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
    assert!(daemon.records().is_empty());
}

#[test]
fn daemon_not_running() {
    let env = TestEnv::new();
    env.opt_in();
    let out = run(&mut env.cmd(EXE));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Failed to send record to daemon"), "{err}");
    // Each part of the message once (it was three times).
    assert_eq!(
        err.matches("cannot reach telemprobd at").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("(is it running?)").count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn no_permission_on_the_socket_is_named_as_such() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = TestEnv::new();
    env.opt_in();
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(env.socket()).unwrap();
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root may connect to any socket: run the probe as nobody then.
    let as_root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut cmd = if as_root {
        let mut c = env.cmd("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", EXE]);
        c
    } else {
        env.cmd(EXE)
    };
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no permission to connect to telemprobd at")
            && err.contains("Permission denied"),
        "{err}"
    );
    assert!(!err.contains("is it running"), "{err}");
}

#[test]
fn a_missing_config_file_is_reported_as_missing() {
    let env = TestEnv::new();
    let missing = env.path("nowhere/telemetrics.conf");
    let out = run(env.cmd(EXE).arg("-f").arg(&missing));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "Configuration file path not valid: {}: does not exist",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn config_file_and_usage() {
    let env = TestEnv::new();
    let e = env.elsewhere(&[]);
    let conf = &e.conf;
    let daemon = FakeDaemon::start(&e.sock);
    let out = run(env.cmd(EXE).args(["--config_file", conf.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 1);
    let out = run(env.cmd(EXE).arg("-x"));
    assert_eq!(out.status.code(), Some(1));
    let out = run(env.cmd(EXE).arg("-h"));
    assert!(out.status.success());
    assert!(stdout(&out).contains("--heartbeat"));
}
