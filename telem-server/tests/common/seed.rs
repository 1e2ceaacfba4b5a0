//! Realistic seed data for the browser tests (and benchmarks): records made by the project's
//! own probe code from real inputs, posted to a running server through the collector endpoint,
//! with reception times spread over the past weeks.
//!
//! - crashes: `crashers.c` (a small image viewer) compiled with gcc and crashed five ways; each
//!   core goes through the crash probe's unwinder and payload formatter (`coredump`);
//! - kernel oopses: the samples in probes/tests/data/oops through klogscanner's oops parser;
//! - machine checks, memory and PCIe errors: rasprobe's recorded `trace_pipe` events in
//!   probes/tests/data/ras decoded by rasprobe's code, through its flood control; thermal
//!   events from its throttle-counter code;
//! - heartbeats (hprobe's payload) from twelve machines over fourteen days, upgrading builds;
//! - hostile records: HTML and script in every field a machine controls.
//!
//! The server stamps reception time itself, so old records are posted in time order and then
//! moved back in the SQLite file (`backdate_sqlite`): everything else about them is what the
//! real ingest path stored.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../coredump/tests/it/fixture.rs"]
mod fixture;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use probes::ras::storm::{Limits, Storm};

pub const DAY: i64 = 86_400;
pub const CRASH_CLASS: &str = "org.clearlinux/crash/clr";
pub const HEARTBEAT: &str = probes::hello::HEARTBEAT;
/// Where the crashing program is "installed" in the payloads (it runs from a temporary
/// directory; frames in it are shown under this path, as on a real machine).
pub const IMGVIEW: &str = "/usr/bin/imgview";

/// What a payload sets when a browser ran it: must stay undefined.
pub const XSS_FLAG: &str = "__xss";

/// One record to post: its headers (the collector's headers form), payload, and the
/// reception time it should end up with.
#[derive(Clone, Debug)]
pub struct SeedRecord {
    pub headers: Vec<(String, String)>,
    pub payload: String,
    pub received: i64,
}

impl SeedRecord {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A machine of the seed fleet.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: String,
    pub host_type: &'static str,
    pub board: &'static str,
    pub cpu: &'static str,
    pub bios: &'static str,
    pub kernel: &'static str,
}

const HARDWARE: [(&str, &str, &str, &str); 4] = [
    (
        "Dell Inc.|XPS 13 9310|",
        "Dell Inc.|0GG9PT",
        "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz",
        "3.16.0",
    ),
    (
        "LENOVO|20XW0055GE|ThinkPad X1 Carbon Gen 9",
        "LENOVO|20XW0055GE",
        "11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz",
        "N32ET86W (1.62 )",
    ),
    (
        "Intel(R) Client Systems|NUC11PAHi7|M15513-304",
        "Intel Corporation|NUC11PABi7",
        "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz",
        "PATGL357.0047.2023.0310.1531",
    ),
    (
        "Supermicro|SYS-1029P-WTR|0123456789",
        "Supermicro|X11DDW-L",
        "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz",
        "3.4",
    ),
];

/// The twelve machines: three of each kind.
pub fn machines() -> Vec<Machine> {
    (0..12)
        .map(|i| {
            let (host_type, board, cpu, bios) = HARDWARE[i % 4];
            Machine {
                // Machine ids are random 128-bit values.
                id: {
                    let mut r = Rng(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i as u64 + 1));
                    // xorshift's first outputs from near seeds look alike.
                    for _ in 0..16 {
                        r.next();
                    }
                    format!("{:016x}{:016x}", r.next(), r.next())
                },
                host_type,
                board,
                cpu,
                bios,
                kernel: if i % 4 == 3 {
                    "6.6.58-1465.ltscurrent"
                } else {
                    "6.11.5-1475.native"
                },
            }
        })
        .collect()
}

/// The build machine `m` runs `days_ago` days back: builds 41200, 41210 (from about nine days
/// ago) and 41220 (from about three days ago); every fourth machine never updates.
pub fn build_of(m: usize, days_ago: i64) -> &'static str {
    if m % 4 == 3 {
        return "41200";
    }
    let to_41210 = 9 - (m % 3) as i64;
    let to_41220 = 3 - (m % 2) as i64;
    if days_ago < to_41220 {
        "41220"
    } else if days_ago < to_41210 {
        "41210"
    } else {
        "41200"
    }
}

/// A small deterministic generator (xorshift), so every run seeds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn headers(
    m: &Machine,
    class: &str,
    severity: u32,
    build: &str,
    received: i64,
    event: u64,
) -> Vec<(String, String)> {
    [
        ("X-Telemetry-TID", telem_server::config::DEFAULT_TID),
        ("Record-Format-Version", "4"),
        ("Classification", class),
        ("Severity", &severity.to_string()),
        ("Machine-Id", &m.id),
        // Records wait a little in the client's spool before delivery.
        ("Creation-Timestamp", &(received - 37).to_string()),
        ("Arch", "x86_64"),
        ("Host-Type", m.host_type),
        ("Build", build),
        ("Kernel-Version", m.kernel),
        ("Payload-Format-Version", "1"),
        ("System-Name", "clear-linux-os"),
        ("Board-Name", m.board),
        ("Cpu-Model", m.cpu),
        ("Bios-Version", m.bios),
        (
            "Event-Id",
            &format!("{:032x}", (0xe7e7_u128 << 64) | u128::from(event)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The five crash modes of crashers.c and the program's own innermost function in each, which
/// the default skip list should blame. In `doublefree` the frame above it is glibc's free, named
/// `free` by libc's dynamic symbols but `__GI___libc_free` by its debug information when that
/// is installed.
pub const CRASHES: [(&str, &str); 5] = [
    ("assert", "parse_config"),
    ("segv", "render_row"),
    ("oom", "xmalloc"),
    ("fpe", "average"),
    ("doublefree", "release_buffer"),
];

/// The crash probe's payload for each mode of crashers.c, from a real core of a real crash.
pub fn crash_payloads() -> Vec<(&'static str, String)> {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("usr/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let src = dir.path().join("imgview.c");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/crashers.c"),
        &src,
    )
    .unwrap();
    let bin = bin_dir.join("imgview");
    // Debug info names the source as a distribution's debug package would.
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-Wall", "-Wextra", "-Werror"])
        .arg(format!(
            "-fdebug-prefix-map={}=/usr/src/debug/imgview-1.4",
            dir.path().display()
        ))
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc must be installed to build the crashing program");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().to_str().unwrap().to_string();
    CRASHES
        .iter()
        .map(|(mode, _)| {
            let core = fixture::make_core(&bin, &[mode], dir.path());
            let mut bt = coredump::from_path(&core, &coredump::Options::default())
                .unwrap_or_else(|e| panic!("unwinding the {mode} core: {e}"));
            for f in bt.threads.iter_mut().flat_map(|t| t.frames.iter_mut()) {
                if let Some(m) = f.module.as_mut() {
                    if let Some(rest) = m.strip_prefix(&root) {
                        *m = rest.to_string();
                    }
                }
            }
            let signal = bt.signal;
            (*mode, bt.payload(IMGVIEW, signal))
        })
        .collect()
}

/// `(classification, severity, payload)` of the one oops in each sample file.
pub fn oopses() -> Vec<(String, u32, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../probes/tests/data/oops");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            probes::oops::scan_text(&text)
                .into_iter()
                .map(|o| {
                    (
                        o.classification().to_string(),
                        o.severity(),
                        o.payload(false),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// rasprobe's records for its recorded events of both kernel generations (decoded with that
/// kernel's format files, through a 60 s flood-control window as a replay would).
pub fn machine_checks() -> Vec<(String, u32, String)> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../probes/tests/data/ras");
    let mut out = Vec::new();
    for kernel in ["kernel-6.18", "kernel-6.8"] {
        let formats = probes::ras::load_formats(&data.join(kernel)).unwrap();
        let events = std::fs::read_to_string(data.join(kernel).join("events.txt")).unwrap();
        let mut storm = Storm::new(Limits {
            window_ns: 60_000_000_000,
            uncorrected_limit: 10,
        });
        let mut sent = Vec::new();
        for line in events.lines() {
            if let Ok(probes::ras::text::Line::Event(ev)) =
                probes::ras::text::parse_line(line, &formats)
            {
                if let Some(report) = probes::ras::report(&ev) {
                    sent.extend(storm.push(report, ev.timestamp_ns));
                }
            }
        }
        sent.extend(storm.flush());
        out.extend(
            sent.into_iter()
                .map(|o| (o.classification.to_string(), o.severity, o.payload)),
        );
    }
    assert!(out.len() >= 4, "too few RAS records: {out:?}");
    out
}

/// rasprobe's thermal records for two throttle-counter readings.
pub fn thermal(step: u64) -> Vec<(String, u32, String)> {
    let old: probes::ras::thermal::Counters = [
        ("cpu0 core".to_string(), 10),
        ("cpu2 core".to_string(), 4),
        ("package 0".to_string(), 3),
    ]
    .into_iter()
    .collect();
    let mut new = old.clone();
    *new.get_mut("cpu0 core").unwrap() += step;
    *new.get_mut("package 0").unwrap() += 1;
    probes::ras::thermal::changes(&old, &new)
        .into_iter()
        .map(|r| (r.classification.to_string(), r.severity, r.text))
        .collect()
}

/// HTML that runs script if a page ever inserts it as markup.
pub const XSS: [&str; 4] = [
    "<script>window.__xss=1;alert(1)</script>",
    "\"><img src=x onerror=window.__xss=1;alert(1)>",
    "</pre><script>window.__xss=1</script>",
    "'><svg onload=window.__xss=1>",
];

/// Records with HTML and script in every field a machine controls (within what the collector
/// accepts: a classification has exactly three `/`-separated parts, a Clear Linux build is
/// digits, a machine id at most 32 characters).
pub fn hostile(now: i64, first_event: u64) -> Vec<SeedRecord> {
    let m = Machine {
        id: "<svg onload=window.__xss=1>".into(),
        host_type: "\"><img src=x onerror=window.__xss=1;alert(1)>|<b>Evil</b> Corp|1",
        board: "<script>window.__xss=1;alert(1)</script>",
        cpu: "</pre><script>window.__xss=1</script>",
        bios: "'><svg onload=window.__xss=1>",
        kernel: "6.1.<img src=x onerror=window.__xss=1>",
    };
    let crash_payload = "Process: /usr/bin/<img src=x onerror=window.__xss=1>\nPID: 4242\n\
         Signal: 11\n\nBacktrace (TID 4242):\n\
         #0 <script>window.__xss=1;alert(1)</script>() - [/usr/lib64/\"><img src=x onerror=window.__xss=1>.so] - </pre><script>window.__xss=1</script>.c:1\n\
         #1 main() - [/usr/bin/evil] - evil.c:9\n";
    let payload = format!(
        "hostile payload\n{}\n{}\n{}\n{}\n",
        XSS[0], XSS[1], XSS[2], XSS[3]
    );
    let mk = |class: &str, sev: u32, payload: &str, system: &str, n: u64, ago: i64| {
        let mut h = headers(&m, class, sev, "41220", now - ago, first_event + n);
        h.retain(|(k, _)| k != "System-Name" && k != "Build");
        h.push(("System-Name".into(), system.into()));
        h.push((
            "Build".into(),
            if system == "clear-linux-os" {
                "41220".into()
            } else {
                "41220-evil.1".into()
            },
        ));
        SeedRecord {
            headers: h,
            payload: payload.into(),
            received: now - ago,
        }
    };
    vec![
        mk(
            "org.clearlinux/<img src=x onerror=window.__xss=1;alert(1)>/\"><svg onload=window.__xss=1>",
            2,
            &payload,
            "<b>evil-os</b><script>window.__xss=1</script>",
            0,
            3600,
        ),
        mk(CRASH_CLASS, 3, crash_payload, "clear-linux-os", 1, 3000),
        mk(
            "org.clearlinux/hello/world",
            1,
            &payload,
            "clear-linux-os",
            2,
            2400,
        ),
    ]
}

/// Every seed record, oldest first, for a server whose clock reads `now`.
pub fn build(now: i64) -> Vec<SeedRecord> {
    let ms = machines();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut event = 0_u64;
    let mut out = Vec::new();
    let mut add = |m: usize, class: &str, sev: u32, payload: &str, received: i64| {
        event += 1;
        let days_ago = (now - received) / DAY;
        out.push(SeedRecord {
            headers: headers(&ms[m], class, sev, build_of(m, days_ago), received, event),
            payload: payload.to_string(),
            received,
        });
    };
    // Heartbeats: one a day per machine, a few missed; machines 10 and 11 went quiet five
    // days ago.
    for day in 0..14_i64 {
        for m in 0..ms.len() {
            if (m >= 10 && day < 5) || rng.below(10) == 0 {
                continue;
            }
            let at = now - day * DAY - 600 - rng.below(20 * 3600) as i64;
            let uptime = 3600 + rng.below(5 * DAY as u64);
            let payload = probes::hello::payload(Some("en_US.UTF-8"), Some(uptime), None);
            add(m, HEARTBEAT, 1, &payload, at);
        }
    }
    // Crashes: parse_config steady; release_buffer falling; render_row new in build 41220;
    // xmalloc a few a day; average rare.
    let crashes: std::collections::BTreeMap<&str, String> = crash_payloads().into_iter().collect();
    for day in 0..21_i64 {
        let per_mode = [
            ("assert", 2),
            ("doublefree", if day >= 8 { 3 } else { i64::from(day == 2) }),
            ("segv", if day < 3 { 4 } else { 0 }),
            ("oom", i64::from(day % 2 == 0)),
            ("fpe", i64::from(day == 5 || day == 9 || day == 12)),
        ];
        for (mode, n) in per_mode {
            for _ in 0..n {
                // render_row crashes only where 41220 runs.
                let m = if mode == "segv" {
                    [0, 2, 4, 6, 8][rng.below(5) as usize]
                } else {
                    rng.below(12) as usize
                };
                let at = now - day * DAY - 900 - rng.below(20 * 3600) as i64;
                add(m, CRASH_CLASS, 3, &crashes[mode], at);
            }
        }
    }
    // Kernel oopses: each sample twice, on different machines and days.
    for (i, (class, sev, payload)) in oopses().iter().enumerate() {
        for k in 0..2_i64 {
            let m = (i * 5 + k as usize * 3) % 12;
            let at = now - (i as i64 * 2 + k * 5) * DAY - 1800 - rng.below(3600) as i64;
            add(m, class, *sev, payload, at);
        }
    }
    // Machine checks: the recorded events, on three machines over four weeks.
    let mces = machine_checks();
    for (round, m) in [3_usize, 6, 9].into_iter().enumerate() {
        for (i, (class, sev, payload)) in mces.iter().enumerate() {
            let at = now - (round as i64 * 9 + i as i64) * DAY - 7200 - rng.below(3600) as i64;
            add(m, class, *sev, payload, at);
        }
    }
    for week in 0..4_i64 {
        for (class, sev, payload) in thermal(1 + week as u64) {
            let at = now - week * 7 * DAY - 3 * DAY - rng.below(DAY as u64) as i64;
            add(7, &class, sev, &payload, at);
        }
    }
    // A few hello records.
    for m in [1_usize, 5, 9] {
        let payload = probes::hello::payload(Some("en_US.UTF-8"), Some(120), None);
        add(
            m,
            "org.clearlinux/hello/world",
            1,
            &payload,
            now - 3 * DAY - 60,
        );
    }
    out.extend(hostile(now, 100_000));
    out.sort_by_key(|r| r.received);
    out
}

/// Posts every record to the collector endpoint at `base` (`http://host:port`); their ids.
pub fn post(base: &str, records: &[SeedRecord]) -> Vec<i64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    records
        .iter()
        .map(|r| {
            let mut req = agent.post(format!("{base}/v2/collector"));
            for (k, v) in &r.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let mut resp = req
                .header("Content-Type", "application/text")
                .send(r.payload.as_bytes())
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().unwrap();
            assert_eq!(status, 201, "posting {:?}: {body}", r.headers);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["id"].as_i64().unwrap()
        })
        .collect()
}

/// Sets the reception time of each `(id, time)` in the SQLite database at `db` (the server
/// may keep running: a short write transaction next to its own).
pub fn backdate_sqlite(db: &Path, times: &[(i64, i64)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .busy_timeout(Duration::from_secs(30))
            .connect()
            .await
            .unwrap();
        let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
        for (id, ts) in times {
            sqlx::query("UPDATE records SET ts_reception = ?1 WHERE id = ?2")
                .bind(ts)
                .bind(id)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    });
}

/// Seeds the server at `base` whose SQLite file is `db`; the records and their ids.
pub fn seed_sqlite(base: &str, db: &Path, now: i64) -> Vec<(i64, SeedRecord)> {
    let records = build(now);
    let ids = post(base, &records);
    let times: Vec<(i64, i64)> = ids
        .iter()
        .zip(&records)
        .map(|(id, r)| (*id, r.received))
        .collect();
    backdate_sqlite(db, &times);
    ids.into_iter().zip(records).collect()
}
