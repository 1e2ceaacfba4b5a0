//! Records arrive whole, in both formats, oldest first; the binary stops cleanly.

use std::time::Duration;

use telem_collector::{Collector, Options};
use telemetry::journal::Outcome;
use telemetry::record::{Header, HEADER_NAMES};

use crate::common::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn headers_format_delivers_every_value_whole_and_oldest_first() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let sys = tricky_sysinfo();
    let recs: Vec<_> = (0..3)
        .map(|i| {
            record_with(
                &sys,
                "org.clearlinux/hello/world",
                &format!("payload {i}\n\twith \"quotes\""),
            )
        })
        .collect();
    for r in &recs {
        env.spool(r, None);
    }
    let d = env.start(FAST);
    assert!(c.wait_for_records(3, T), "{}", d.log_text());
    let got = c.records();
    for (r, s) in recs.iter().zip(&got) {
        assert_eq!(s.format, "headers");
        for (i, name) in HEADER_NAMES.iter().enumerate() {
            let hyph = name.replace('_', "-");
            assert_eq!(
                s.headers.get(&hyph).map(String::as_str),
                Some(r.values()[i].as_str()),
                "{name}"
            );
        }
        assert_eq!(s.payload.as_bytes(), r.payload());
        assert_eq!(s.headers["content-type"], "application/text");
    }
    assert_eq!(
        got[0].headers["host-type"],
        "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2"
    );
    assert_eq!(got[0].headers["board-name"], "");
    // One kept-alive connection, in spool order.
    assert_eq!(
        stored_ids(&c),
        recs.iter().map(event_id).collect::<Vec<_>>()
    );
    assert!(wait_until(T, || env.spool_files().is_empty()));
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    let j = env.journal();
    assert_eq!(j.len(), 3);
    for (e, r) in j.iter().zip(&recs) {
        assert_eq!(e.outcome, Some(Outcome::Delivered));
        assert_eq!(e.event_id, r.get(Header::EventId));
        assert_eq!(e.classification, "org.clearlinux/hello/world");
        assert!(e.detail.contains("201"), "{}", e.detail);
        assert_eq!(e.boot_id, telemetry::journal::boot_id());
    }
    // The status file was written at exit.
    assert_eq!(env.counter("delivered"), 3);
    let last = env.status().unwrap().last_delivery;
    assert!(last.is_some());
    // Started again with nothing to do (as the path unit does after an idle exit): the
    // counters start over, the last delivery is still known.
    let d = env.start(&[]);
    let pid = d.pid() as u32;
    assert!(wait_until(T, || env.status().is_some_and(|s| s.pid == pid)));
    let st = env.status().unwrap();
    assert_eq!(st.last_delivery, last);
    assert_eq!(st.counters["delivered"], 0);
    assert!(d.stop().success());
}

#[test]
fn json_format_delivers_the_original_body() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v3/collector"), "");
    let r = record_with(
        &tricky_sysinfo(),
        "org.clearlinux/hello/json",
        "line one\nline \"two\"\\",
    );
    env.spool(&r, None);
    let d = env.start(FAST);
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    let s = &c.records()[0];
    assert_eq!(s.format, "json");
    assert_eq!(s.payload.as_bytes(), r.payload());
    assert_eq!(
        s.headers["cpu-model"],
        "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz"
    );
    assert_eq!(s.headers["board-name"], "");
    assert_eq!(s.headers["event-id"], event_id(&r));
    assert!(d.stop().success());
}

#[test]
fn explicit_post_format_overrides_the_url() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    // The v3 URL would mean json; post_format=headers wins, and the collector's v3 route
    // (which wants the JSON body) refuses it: proof that the key is honoured.
    let mut env = Env::new(&c.url("/v3/collector"), "post_format=headers");
    let r = record("forced headers");
    env.spool(&r, None);
    let d = env.start(FAST);
    assert!(
        wait_until(T, || env.spool_files().is_empty()),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    let reqs = c.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].status.map(|s| (400..500).contains(&s)), Some(true));
    assert_eq!(env.journal()[0].outcome, Some(Outcome::Rejected));
}

#[test]
fn in_process_run_delivers_and_stops_on_the_shutdown_future() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let r = record("in process");
    env.spool(&r, None);
    let opts = telempostd::Options {
        config: env.config(),
        config_file: Some(env.conf.clone()),
        tuning: telempostd::Tuning {
            scan_interval: Some(Duration::from_millis(200)),
            ..Default::default()
        },
        reload_on_sighup: false,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::spawn(move || {
        rt.block_on(telempostd::run(opts, async move {
            let _ = rx.await;
        }))
    });
    assert!(c.wait_for_records(1, T));
    // A record spooled while it runs is picked up through inotify.
    let r2 = record("second");
    env.spool(&r2, None);
    assert!(c.wait_for_records(2, T));
    assert_eq!(stored_ids(&c), [event_id(&r), event_id(&r2)]);
    tx.send(()).unwrap();
    let exit = handle.join().unwrap().unwrap();
    assert_eq!(exit, telempostd::Exit::Shutdown);
    assert_eq!(env.journal().len(), 2);
}

#[test]
fn records_spooled_later_are_picked_up_by_inotify_not_the_timer() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    // Default scan interval (spool_process_time = 120 s): only inotify can deliver quickly.
    let d = env.start(&[]);
    assert!(wait_until(T, || env.status().is_some()));
    let r = record("late");
    env.spool(&r, None);
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    assert!(d.stop().success());
}

#[test]
fn cli_options() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_telempostd"))
        .arg("-V")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("telempostd"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_telempostd"))
        .arg("-h")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        help.contains("--config-file") && help.contains("--http-timeout-ms"),
        "{help}"
    );
    // A usage error exits 1, as the original.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_telempostd"))
        .arg("--no-such-option")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-option"));
    // --config_file is accepted too; a broken file is an error naming file and line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "[settings]\nrate_limit_enabled=soon\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_telempostd"))
        .arg("--config_file")
        .arg(&bad)
        .env("TELEM_ROOT", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:2"), "{err}");
}
