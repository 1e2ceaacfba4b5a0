//! journalprobe run for real on canned `journalctl -o json` output (`--input`) and through a
//! stand-in journalctl script (`--journalctl`).

use std::path::{Path, PathBuf};

use crate::common::*;

const EXE: &str = env!("CARGO_BIN_EXE_journalprobe");

fn entry(cursor: &str, message: &str, exit_code: Option<&str>, priority: u8) -> String {
    let mut v = serde_json::json!({
        "__CURSOR": cursor,
        "MESSAGE": message,
        "PRIORITY": priority.to_string(),
        "_BOOT_ID": "0123456789abcdef0123456789abcdef",
    });
    if let Some(c) = exit_code {
        v["EXIT_CODE"] = serde_json::json!(c);
    }
    format!("{v}\n")
}

fn failed(cursor: &str, unit: &str) -> String {
    entry(
        cursor,
        &format!("{unit}: Main process exited, code=exited, status=1/FAILURE"),
        Some("exited"),
        5,
    )
}

fn input(env: &TestEnv, lines: &[String]) -> PathBuf {
    let p = env.path("journal.json");
    std::fs::write(&p, lines.concat()).unwrap();
    p
}

fn probe(env: &TestEnv, input: &Path, extra: &[&str]) -> std::process::Output {
    run(env.cmd(EXE).arg("--input").arg(input).args(extra))
}

fn cursor(env: &TestEnv) -> Option<String> {
    std::fs::read_to_string(env.state_dir().join("journalprobe.cursor"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn reports_service_exits_once() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let mut lines = vec![
        failed("c1", "a.service"),
        entry("c2", "disk on fire", None, 2),
        entry(
            "c3",
            "x.service: Main process exited, code=killed, status=9/KILL",
            Some("killed"),
            5,
        ),
        failed("c4", "b.service"),
    ];
    let file = input(&env, &lines);
    let out = probe(&env, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        daemon.payloads(),
        [
            "MESSAGE=a.service: Main process exited, code=exited, status=1/FAILURE\n",
            "MESSAGE=b.service: Main process exited, code=exited, status=1/FAILURE\n"
        ]
    );
    assert_eq!(
        daemon.classifications(),
        ["org.clearlinux/journal/error"; 2]
    );
    assert_eq!(
        daemon.records()[0].get(telemetry::record::Header::Severity),
        "2"
    );
    assert_eq!(cursor(&env).as_deref(), Some("c4"));

    // A restart with the same state does not re-send.
    let out = probe(&env, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 2);

    // New entries are reported.
    lines.push(failed("c5", "c.service"));
    let file = input(&env, &lines);
    let out = probe(&env, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 3);
    assert!(daemon.payloads()[2].contains("c.service"));
    assert_eq!(cursor(&env).as_deref(), Some("c5"));
}

#[test]
fn privacy_filters_lifted_adds_error_priorities() {
    let env = TestEnv::new();
    env.opt_in();
    env.lift_privacy_filters();
    let daemon = env.daemon();
    let file = input(
        &env,
        &[
            entry("c1", "disk on fire", None, 2),
            entry("c2", "just a notice", None, 5),
            failed("c3", "a.service"),
        ],
    );
    let out = probe(&env, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.payloads().len(), 2);
    assert_eq!(daemon.payloads()[0], "MESSAGE=disk on fire\n");
}

#[test]
fn opt_out_period_entries_are_never_reported() {
    let env = TestEnv::new();
    let daemon = env.daemon();
    let mut lines = vec![failed("c1", "a.service"), failed("c2", "b.service")];
    let file = input(&env, &lines);
    let out = probe(&env, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Not opted in to telemetry ("), "{err}");
    assert!(
        err.contains("2 journal entries of the opt-out period will not be reported"),
        "{err}"
    );
    assert!(daemon.records().is_empty());
    // The cursor moved past them while opted out.
    assert_eq!(cursor(&env).as_deref(), Some("c2"));

    env.opt_in();
    let out = probe(&env, &file, &[]);
    assert!(out.status.success());
    assert!(daemon.records().is_empty());
    lines.push(failed("c3", "c.service"));
    let file = input(&env, &lines);
    let out = probe(&env, &file, &[]);
    assert!(out.status.success());
    assert_eq!(daemon.payloads().len(), 1);
    assert!(daemon.payloads()[0].contains("c.service"));
}

#[test]
fn tail_skips_what_is_already_there() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let mut lines = vec![failed("c1", "a.service"), entry("c2", "later", None, 6)];
    let file = input(&env, &lines);
    let out = probe(&env, &file, &["-t"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(daemon.records().is_empty());
    assert_eq!(cursor(&env).as_deref(), Some("c2"));
    lines.push(failed("c3", "b.service"));
    let file = input(&env, &lines);
    let out = probe(&env, &file, &["--tail"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.payloads().len(), 1);
    assert!(daemon.payloads()[0].contains("b.service"));
}

#[test]
fn failed_send_keeps_the_entry_for_next_time() {
    let env = TestEnv::new();
    env.opt_in();
    let file = input(
        &env,
        &[failed("c1", "a.service"), failed("c2", "b.service")],
    );
    let out = probe(&env, &file, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach telemprobd"),
        "{}",
        stderr(&out)
    );
    assert_eq!(cursor(&env), None);
    let daemon = env.daemon();
    let out = probe(&env, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.payloads().len(), 2);
}

#[test]
fn dry_run_moves_no_cursor() {
    let env = TestEnv::new();
    let file = input(
        &env,
        &[failed("c1", "a.service"), entry("c2", "x", None, 6)],
    );
    let out = probe(&env, &file, &["-n"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = dry_run_records(&stdout(&out));
    assert_eq!(recs.len(), 1);
    assert_eq!(
        header(&recs[0].0, "classification"),
        "org.clearlinux/journal/error"
    );
    assert_eq!(
        recs[0].1,
        "MESSAGE=a.service: Main process exited, code=exited, status=1/FAILURE\n"
    );
    assert_eq!(cursor(&env), None);
}

/// A stand-in journalctl: records its arguments and prints the canned JSON lines: only the
/// last with `-n 1`; only those with `"EXIT_CODE":"exited"` given the match `EXIT_CODE=exited`;
/// from the entry of `--cursor=C` on. `--after-cursor=`/`--cursor-file=` are refused: with a
/// match, journalctl before v255 skips a wanted entry after a cursor that does not match
/// (systemd #30288), so journalprobe must not use them.
fn fake_journalctl(env: &TestEnv, json: &str) -> PathBuf {
    let data = env.path("canned.json");
    std::fs::write(&data, json).unwrap();
    let script = env.path("journalctl");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
printf '%s\n' "$@" > '{args}'
c=""; m=""
for a in "$@"; do
  case "$a" in
    --cursor=*) c="${{a#--cursor=}}";;
    --after-cursor=*|--cursor-file=*) echo "journalctl stand-in: $a is not safe" >&2; exit 2;;
    EXIT_CODE=exited) m='"EXIT_CODE":"exited"';;
  esac
done
case "$*" in *"-n 1"*) tail -n 1 '{data}'; exit 0;; esac
awk -v c="$c" -v m="$m" '
  BEGIN {{ on = (c == "") }}
  !on && index($0, "\"__CURSOR\":\"" c "\"") {{ on = 1 }}
  on && (m == "" || index($0, m) || !index($0, "__CURSOR")) {{ print }}' '{data}'
"#,
            args = env.path("args").display(),
            data = data.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
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

/// Replaces a file whole (the running stand-in never sees half of it).
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn tail_follows_the_journal() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let mut json = [failed("c1", "old.service"), entry("c2", "x", None, 6)].concat();
    let script = fake_journalctl(&env, &json);
    let mut child = tail(&env, &script);
    wait_for("the tail position", || {
        cursor(&env).as_deref() == Some("c2")
    });
    json.push_str(&failed("c3", "new.service"));
    replace(&env.path("canned.json"), &json);
    wait_for("the new entry", || !daemon.records().is_empty());
    wait_for("the cursor", || cursor(&env).as_deref() == Some("c3"));
    json.push_str(&failed("c4", "newer.service"));
    replace(&env.path("canned.json"), &json);
    wait_for("the second new entry", || daemon.records().len() == 2);
    // Our own child, which would follow forever.
    child.kill().unwrap();
    child.wait().unwrap();
    let payloads = daemon.payloads();
    assert!(payloads[0].contains("new.service"), "{payloads:?}");
    assert!(payloads[1].contains("newer.service"), "{payloads:?}");
    assert!(!payloads.iter().any(|p| p.contains("old.service")));
}

/// The stand-in journalctl as a sandboxed service inside a container runs it: `/proc` there
/// shows the host's boot id, so `-b` matches nothing; the canned entries' boot (`_BOOT_ID=`)
/// matches them.
fn journalctl_in_a_container(env: &TestEnv, json: &str) -> PathBuf {
    let inner = fake_journalctl(env, json);
    let script = env.path("journalctl-in-container");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
for a in "$@"; do
  case "$a" in
    -b) exit 0;;
    _BOOT_ID=*) [ "$a" = _BOOT_ID=0123456789abcdef0123456789abcdef ] || exit 0;;
  esac
done
exec '{inner}' "$@"
"#,
            inner = inner.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Starts `journalprobe -t` on `script`, its stderr in a file.
fn tail(env: &TestEnv, script: &Path) -> std::process::Child {
    let log = std::fs::File::create(env.path("tail.err")).unwrap();
    env.cmd(EXE)
        .args(["-t", "--interval", "0.05", "--journalctl"])
        .arg(script)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn tail_in_a_container_reads_the_journals_own_boot() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let mut json = [failed("c1", "old.service"), entry("c2", "x", None, 6)].concat();
    let script = journalctl_in_a_container(&env, &json);
    let mut child = tail(&env, &script);
    wait_for("the tail position", || {
        cursor(&env).as_deref() == Some("c2")
    });
    json.push_str(&failed("c3", "new.service"));
    replace(&env.path("canned.json"), &json);
    wait_for("the new entry", || !daemon.records().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let payloads = daemon.payloads();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    assert!(payloads[0].contains("new.service"), "{payloads:?}");
    let args = std::fs::read_to_string(env.path("args")).unwrap();
    assert!(
        args.lines()
            .any(|l| l == "_BOOT_ID=0123456789abcdef0123456789abcdef"),
        "{args}"
    );
    assert!(!args.lines().any(|l| l == "-b"), "{args}");
    let err = std::fs::read_to_string(env.path("tail.err")).unwrap();
    assert!(err.contains("no entry of this boot"), "{err}");
    assert_eq!(err.matches("WARN").count(), 1, "said once: {err}");
}

#[test]
fn tail_on_an_empty_journal_reports_what_comes_later() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let script = fake_journalctl(&env, "");
    let mut child = tail(&env, &script);
    // Several passes over the empty journal (each writes the stand-in's "args"), then the
    // first entries.
    wait_for("a pass", || env.path("args").exists());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let json = [entry("c1", "x", None, 6), failed("c2", "first.service")].concat();
    replace(&env.path("canned.json"), &json);
    wait_for("the entry", || !daemon.records().is_empty());
    wait_for("the cursor", || cursor(&env).as_deref() == Some("c2"));
    child.kill().unwrap();
    child.wait().unwrap();
    let payloads = daemon.payloads();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    assert!(payloads[0].contains("first.service"), "{payloads:?}");
    let err = std::fs::read_to_string(env.path("tail.err")).unwrap();
    assert!(err.contains("no journal entry at all"), "{err}");
}

#[test]
fn runs_journalctl_from_the_stored_cursor() {
    let env = TestEnv::new();
    env.opt_in();
    let daemon = env.daemon();
    let mut json = [
        failed("c1", "a.service"),
        "garbage line\n".to_string(),
        failed("c2", "b.service"),
    ]
    .concat();
    let script = fake_journalctl(&env, &json);
    let out = run(env.cmd(EXE).arg("--journalctl").arg(&script));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.payloads().len(), 2);
    let args = std::fs::read_to_string(env.path("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        ["-b", "-o", "json", "--no-pager", "-q", "EXIT_CODE=exited"]
    );
    assert_eq!(cursor(&env).as_deref(), Some("c2"));

    // The next run starts at the stored entry, which is not reported again.
    json.push_str(&entry("c3", "x", None, 6));
    replace(&env.path("canned.json"), &json);
    let out = run(env.cmd(EXE).arg("--journalctl").arg(&script));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.payloads().len(), 2);
    let args = std::fs::read_to_string(env.path("args")).unwrap();
    assert!(args.lines().any(|l| l == "--cursor=c2"), "{args}");
    assert_eq!(cursor(&env).as_deref(), Some("c2"), "nothing new matched");

    // A dry run continues from the stored cursor without storing one.
    json.push_str(&failed("c4", "c.service"));
    replace(&env.path("canned.json"), &json);
    let out = run(env.cmd(EXE).arg("--journalctl").arg(&script).arg("-n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = dry_run_records(&stdout(&out));
    assert_eq!(recs.len(), 1, "{}", stdout(&out));
    assert!(recs[0].1.contains("c.service"));
    let args = std::fs::read_to_string(env.path("args")).unwrap();
    assert!(args.lines().any(|l| l == "--cursor=c2"), "{args}");
    assert_eq!(cursor(&env).as_deref(), Some("c2"));
}

#[test]
fn journalctl_failure_is_an_error() {
    let env = TestEnv::new();
    env.opt_in();
    let out = run(env.cmd(EXE).arg("--journalctl").arg("/bin/false"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/bin/false failed"),
        "{}",
        stderr(&out)
    );
    let out = run(env.cmd(EXE).arg("--journalctl").arg(env.path("missing")));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn config_file_sets_socket_opt_in_and_state_dir() {
    let env = TestEnv::new();
    let e = env.elsewhere(&["state_dir"]);
    let (conf, state) = (&e.conf, e.dir.join("state_dir"));
    let daemon = FakeDaemon::start(&e.sock);
    let file = input(&env, &[failed("c1", "a.service")]);
    let out = run(env
        .cmd(EXE)
        .args(["--config-file", conf.to_str().unwrap(), "--input"])
        .arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(daemon.records().len(), 1);
    assert_eq!(
        std::fs::read_to_string(state.join("journalprobe.cursor")).unwrap(),
        "c1\n"
    );
    assert_eq!(cursor(&env), None, "the default state dir is untouched");
}
