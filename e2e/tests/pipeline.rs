//! The whole system, as installed pieces would run: telemprobd and telempostd started as real
//! processes below a temporary TELEM_ROOT, records sent by telem-record-gen, hprobe and a
//! gcc-compiled C program linked with the relinked libtelemetry.so.4, delivered to the test
//! collector over HTTP on 127.0.0.1, and telemctl reporting what happened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::{bin, profile_dir};
use telem_collector::{Collector, Options, StoredRecord};
use telemetry::record::HEADER_NAMES;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The C example program, linked against libtelemetry.so.4 relinked from this build's archive.
fn c_program() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-clib");
        let st = Command::new("sh")
            .arg(workspace().join("libtelemetry/build-so.sh"))
            .arg(profile_dir().join("libtelemetry.a"))
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let exe = out.join("send_record");
        let o = Command::new("gcc")
            .args(["-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(workspace().join("examples/send_record.c"))
            .arg("-I")
            .arg(workspace().join("include"))
            .arg(format!("-L{}", out.display()))
            .arg("-ltelemetry")
            .arg(format!("-Wl,-rpath,{}", out.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        exe
    })
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Header values with spaces, pipes and punctuation: they must arrive whole.
const SYS_FILES: &[(&str, &str)] = &[
    ("sys/class/dmi/id/sys_vendor", "ACME Corp\n"),
    (
        "sys/class/dmi/id/product_name",
        "Road Runner 3000 (rev 2)\n",
    ),
    ("sys/class/dmi/id/product_version", "v2 beta"),
    ("sys/class/dmi/id/board_name", "Board X-1\n"),
    ("sys/class/dmi/id/board_vendor", "ACME Boards Ltd.\n"),
    ("sys/class/dmi/id/bios_version", "1.16.0-1 (2024)\n"),
    (
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: Fake CPU Model 9000 @ 3.00GHz\n",
    ),
    (
        "etc/os-release",
        "ID=testos\nVARIANT_ID=server\nVERSION_ID=\"42\"\n",
    ),
];

struct System {
    dir: tempfile::TempDir,
    collector: Collector,
    children: Vec<(String, Child)>,
}

impl System {
    /// A temporary root, opted in, whose admin config points at a fresh collector `path`.
    fn new(path: &str) -> System {
        let dir = tempfile::tempdir().unwrap();
        let collector = Collector::start("127.0.0.1:0", Options::default()).unwrap();
        let s = System {
            dir,
            collector,
            children: Vec::new(),
        };
        for d in [
            "run",
            "etc/telemetrics",
            "var/spool/telemetry",
            "var/lib/telemetry",
            "var/log/telemetry/records",
        ] {
            fs::create_dir_all(s.root().join(d)).unwrap();
        }
        fs::write(s.root().join("etc/telemetrics/opt-in"), "").unwrap();
        fs::write(
            s.root().join("etc/telemetrics/telemetrics.conf"),
            format!(
                "[settings]\nserver={}\nrate_limit_enabled=false\ndaemon_recycling_enabled=false\nsend_timeout_ms=15000\n",
                s.collector.url(path)
            ),
        )
        .unwrap();
        for (rel, content) in SYS_FILES {
            let p = s.sysroot().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        s
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn sysroot(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("TELEM_ROOT", self.root())
            .env("TELEM_SYSINFO_ROOT", self.sysroot())
            .env_remove("TELEM_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null());
        c
    }

    fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = self.cmd(name).args(args).stderr(log).spawn().unwrap();
        self.children.push((name.to_string(), child));
    }

    fn start_probd(&mut self) {
        self.spawn("telemprobd", &[]);
        let sock = self.root().join("run/telem-0");
        wait_until("telemprobd's socket", Duration::from_secs(20), || {
            sock.exists()
        });
    }

    fn start_postd(&mut self) {
        self.spawn(
            "telempostd",
            &["--scan-interval-ms", "500", "--retry-base-ms", "100"],
        );
    }

    fn run_ok(&self, mut c: Command) -> String {
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "{c:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Sends the three kinds of records; returns the event id given to telem-record-gen.
    fn send_three(&self) -> &'static str {
        let id = "0123456789abcdef0123456789abcdef";
        let mut c = self.cmd("telem-record-gen");
        c.args(["-c", "org.example/e2e/cli", "-s", "3", "-R", "2", "-e", id])
            .args(["-p", "payload from the CLI\nwith two lines ✓\n"]);
        self.run_ok(c);
        let mut c = self.cmd("hprobe");
        c.arg("-u");
        assert!(self
            .run_ok(c)
            .contains("Successfully sent record to daemon."));
        let mut c = Command::new(c_program());
        c.arg("e2e")
            .env("TELEM_ROOT", self.root())
            .env("TELEM_SYSINFO_ROOT", self.sysroot())
            .env_remove("TELEM_CONFIG");
        assert!(self.run_ok(c).contains("record stored by telemprobd"));
        id
    }

    fn machine_id(&self) -> String {
        fs::read_to_string(self.root().join("var/lib/telemetry/machine_id"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _) in &self.children {
            s.push_str(&format!(
                "--- {name}\n{}\n",
                fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
            ));
        }
        s
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(c),
                rustix::process::Signal::TERM,
            );
        }
        for (_, c) in &mut self.children {
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn by_class<'a>(records: &'a [StoredRecord], class: &str) -> &'a StoredRecord {
    records
        .iter()
        .find(|r| r.headers.get("classification").map(String::as_str) == Some(class))
        .unwrap_or_else(|| panic!("no record {class} in {records:?}"))
}

fn hyphenated(name: &str) -> String {
    name.replace('_', "-")
}

fn check_delivery(path: &str, format: &str) {
    let mut s = System::new(path);
    s.start_probd();
    s.start_postd();
    let id = s.send_three();
    if !s.collector.wait_for_records(3, Duration::from_secs(30)) {
        panic!(
            "only {} records arrived\n{}",
            s.collector.records().len(),
            s.logs()
        );
    }
    let records = s.collector.records();
    assert_eq!(records.len(), 3);
    let mid = s.machine_id();
    assert_eq!(mid.len(), 32);
    for r in &records {
        assert_eq!(r.format, format);
        // Every header present, the machine id substituted, the system facts whole.
        for name in HEADER_NAMES {
            assert!(
                r.headers.contains_key(&hyphenated(name)),
                "{name} missing in {r:?}"
            );
        }
        let h = |n: &str| r.headers[n].as_str();
        assert_eq!(h("machine-id"), mid);
        assert_eq!(h("host-type"), "ACME Corp|Road Runner 3000 (rev 2)|v2 beta");
        assert_eq!(h("board-name"), "Board X-1|ACME Boards Ltd.");
        assert_eq!(h("bios-version"), "1.16.0-1 (2024)");
        assert_eq!(h("cpu-model"), "Fake CPU Model 9000 @ 3.00GHz");
        assert_eq!(h("system-name"), "testos_server");
        assert_eq!(h("build"), "42");
        assert_eq!(h("record-format-version"), "4");
    }
    let cli = by_class(&records, "org.example/e2e/cli");
    assert_eq!(cli.headers["event-id"], id);
    assert_eq!(cli.headers["severity"], "3");
    assert_eq!(cli.headers["payload-format-version"], "2");
    assert_eq!(cli.payload, "payload from the CLI\nwith two lines ✓\n");
    let hello = by_class(&records, "org.clearlinux/hello/world");
    assert!(
        hello.payload.starts_with("hello\nuptime: "),
        "{:?}",
        hello.payload
    );
    let c = by_class(&records, "org.example/c-example/hello");
    assert_eq!(c.payload, "hello from a C program (e2e)\n");

    // Nothing is left in the spool, and every record is journaled as delivered.
    let spool = s.root().join("var/spool/telemetry");
    wait_until("an empty spool", Duration::from_secs(10), || {
        telemetry::spool::scan(&spool).unwrap().is_empty()
    });
    let journal = telemetry::journal::read(&s.root().join("var/log/telemetry/journal")).unwrap();
    assert_eq!(journal.len(), 3, "{journal:?}");
    assert!(journal
        .iter()
        .all(|e| e.outcome == Some(telemetry::journal::Outcome::Delivered)));
    assert!(journal.iter().any(|e| e.event_id == id));

    // telemctl reports the same figures the daemons produced.
    let mut out = String::new();
    wait_until(
        "telemctl status to show the figures",
        Duration::from_secs(10),
        || {
            let mut c = s.cmd("telemctl");
            c.arg("status");
            out = s.run_ok(c);
            out.contains("received 3") && out.contains("stored 3") && out.contains("delivered 3")
        },
    );
    assert!(out.contains("telemprobd:  running"), "{out}");
    assert!(out.contains("telempostd:  running"), "{out}");
    assert!(out.contains("spool:       0 records"), "{out}");
    assert!(!out.contains("last delivery: never"), "{out}");
    let mut c = s.cmd("telemctl");
    c.args(["journal", "-c", "org.example/*"]);
    let j = s.run_ok(c);
    assert_eq!(j.lines().count(), 2, "{j}");
    assert!(j.lines().all(|l| l.contains("delivered")), "{j}");
}

#[test]
fn records_arrive_whole_in_the_headers_format() {
    check_delivery("/v2/collector", "headers");
}

#[test]
fn records_arrive_whole_in_the_json_format() {
    check_delivery("/v3/collector", "json");
}

#[test]
fn c_api_and_cli_records_are_spooled_by_telemprobd() {
    let mut s = System::new("/v2/collector");
    s.start_probd();
    let id = s.send_three();
    let spool = s.root().join("var/spool/telemetry");
    let entries = telemetry::spool::scan(&spool).unwrap();
    assert_eq!(
        entries.len(),
        3,
        "every acknowledged record is on disk at once"
    );
    let mid = s.machine_id();
    let mut classes = Vec::new();
    for e in entries {
        let bytes = fs::read(spool.join(&e.name)).unwrap();
        let sr = telemetry::spool::decode(&bytes).unwrap();
        sr.record.validate().unwrap();
        assert_eq!(sr.record.values()[3], mid);
        classes.push(sr.record.values()[1].clone());
        if sr.record.values()[14] == id {
            assert_eq!(
                sr.record.payload(),
                "payload from the CLI\nwith two lines ✓\n".as_bytes()
            );
        }
    }
    classes.sort();
    assert_eq!(
        classes,
        [
            "org.clearlinux/hello/world",
            "org.example/c-example/hello",
            "org.example/e2e/cli"
        ]
    );
}

#[test]
fn not_opted_in_nothing_is_accepted_and_the_user_is_told() {
    let mut s = System::new("/v2/collector");
    s.start_probd();
    fs::remove_file(s.root().join("etc/telemetrics/opt-in")).unwrap();
    let o = s
        .cmd("telem-record-gen")
        .args(["-c", "a/b/c", "-p", "x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not opted in"));
    let o = Command::new(c_program())
        .env("TELEM_ROOT", s.root())
        .env_remove("TELEM_CONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Connection refused"));
    assert!(
        telemetry::spool::scan(&s.root().join("var/spool/telemetry"))
            .unwrap()
            .is_empty()
    );
}
