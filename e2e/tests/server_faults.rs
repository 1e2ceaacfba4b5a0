//! The delivery fault suite against telem-server instead of the test collector, once on SQLite
//! and once on PostgreSQL: the real telemprobd and telempostd below a temporary TELEM_ROOT,
//! senders in threads (the library's `client::send`, so each verdict is known), a fault proxy in
//! front of the server for what the server never does by itself (an answer replaced by a 500
//! after the commit, a close after the answer, an answer cut short, a request dropped unread,
//! slow answers), and `kill -9` of telem-server itself followed by a restart.
//!
//! The end state is read back from the database through the server's own export: every record
//! acknowledged with 0 is stored exactly once (one row per event id, one per identity), and the
//! spool is empty. Random choices come from a seeded generator (`FAULTS_SEED` replays; the seed
//! is printed); every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The private PostgreSQL cluster of telem-server's tests, shared rather than copied.
#[path = "../../telem-server/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{bin, free_port, wait_until, Rng};
use telemetry::record::{Header, Record};
use telemetry::sysinfo::SysInfo;
use telemetry::Config;

// ---- the fault proxy -------------------------------------------------------------------------

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Forward it; answer 500 instead of the server's answer (the record is committed).
    CommitThen500,
    /// Forward it, pass the answer on, then close the connection without `Connection: close`.
    CloseAfterAnswer,
    /// Forward it, pass on only the first bytes of the answer, then close.
    CutAnswer,
    /// Close the connection without forwarding the request.
    DropRequest,
    /// Forward it and hold the answer back for a while (under telempostd's timeout).
    Slow,
}

/// An HTTP/1.1 proxy that forwards each request on its own connection to the server and applies
/// the next queued fault, if any.
struct Proxy {
    port: u16,
    /// The seeded schedule, one entry per forwarded request (`None` passes it untouched).
    faults: Arc<Mutex<VecDeque<Option<Fault>>>>,
    applied: Arc<Mutex<Vec<Fault>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16, faults: Vec<Option<Fault>>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            faults: Arc::new(Mutex::new(faults.into())),
            applied: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (faults, applied, stop) = (p.faults.clone(), p.applied.clone(), p.stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (faults, applied) = (faults.clone(), applied.clone());
                std::thread::spawn(move || {
                    let _ = serve_conn(conn, upstream, &faults, &applied);
                });
            }
        });
        p
    }

    fn applied(&self) -> Vec<Fault> {
        self.applied.lock().unwrap().clone()
    }

    fn pending(&self) -> usize {
        self.faults.lock().unwrap().iter().flatten().count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one HTTP message (head and a `Content-Length` body) from `r`, `buf` holding what was
/// read beyond the previous one. None at a clean end of the connection.
fn read_message(r: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + len {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let msg: Vec<u8> = buf.drain(..head_end + len).collect();
    Ok(Some(msg))
}

fn serve_conn(
    mut client: TcpStream,
    upstream: u16,
    faults: &Mutex<VecDeque<Option<Fault>>>,
    applied: &Mutex<Vec<Fault>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(request) = read_message(&mut client, &mut buf)? {
        // The server down (killed): the client sees its connection closed, as with a crash.
        let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
        // Taken only when the server is up, so each fault meets a server that can commit.
        let fault = faults.lock().unwrap().pop_front().flatten();
        if let Some(f) = fault {
            applied.lock().unwrap().push(f);
        }
        if fault == Some(Fault::DropRequest) {
            return client.shutdown(Shutdown::Both);
        }
        server.set_read_timeout(Some(Duration::from_secs(30)))?;
        server.write_all(&request)?;
        let mut sbuf = Vec::new();
        let Some(answer) = read_message(&mut server, &mut sbuf)? else {
            return client.shutdown(Shutdown::Both);
        };
        match fault {
            Some(Fault::CommitThen500) => {
                client.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
                )?;
            }
            Some(Fault::CloseAfterAnswer) => {
                client.write_all(&answer)?;
                std::thread::sleep(Duration::from_millis(5));
                return client.shutdown(Shutdown::Both);
            }
            Some(Fault::CutAnswer) => {
                client.write_all(&answer[..answer.len().min(12)])?;
                return client.shutdown(Shutdown::Both);
            }
            Some(Fault::Slow) => {
                std::thread::sleep(Duration::from_millis(1500));
                client.write_all(&answer)?;
            }
            Some(Fault::DropRequest) | None => client.write_all(&answer)?,
        }
    }
    Ok(())
}

// ---- the system ------------------------------------------------------------------------------

struct System {
    dir: tempfile::TempDir,
    server_port: u16,
    proxy: Option<Proxy>,
    server: Option<Child>,
    probd: Option<Child>,
    postd: Option<Child>,
}

impl System {
    /// A temporary root, opted in, delivering to `proxy_port`; the server config for `storage`.
    fn new(storage: &str) -> System {
        let dir = tempfile::tempdir().unwrap();
        let s = System {
            dir,
            server_port: free_port(),
            proxy: None,
            server: None,
            probd: None,
            postd: None,
        };
        for d in [
            "run",
            "etc/telemetrics",
            "var/spool/telemetry",
            "var/lib/telemetry",
        ] {
            fs::create_dir_all(s.root().join(d)).unwrap();
        }
        fs::write(s.root().join("etc/telemetrics/opt-in"), "").unwrap();
        for (rel, content) in [
            ("sys/class/dmi/id/sys_vendor", "ACME\n"),
            ("sys/class/dmi/id/product_name", "Fault Box\n"),
            ("proc/cpuinfo", "model name\t: Fake CPU\n"),
            ("etc/os-release", "ID=testos\nVERSION_ID=7\n"),
        ] {
            let p = s.sysroot().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        fs::write(
            s.server_config(),
            format!("listen = \"127.0.0.1:{}\"\n{storage}\n", s.server_port),
        )
        .unwrap();
        s
    }

    fn deliver_to(&self, port: u16) {
        fs::write(
            self.root().join("etc/telemetrics/telemetrics.conf"),
            format!(
                "[settings]\nserver=http://127.0.0.1:{port}/v2/collector\nrate_limit_enabled=false\n\
                 daemon_recycling_enabled=false\nsend_timeout_ms=10000\nrecord_expiry=100000\n"
            ),
        )
        .unwrap();
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn sysroot(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    fn server_config(&self) -> PathBuf {
        self.dir.path().join("telem-server.toml")
    }

    fn config(&self) -> Config {
        Config::load_from(&self.root(), None).unwrap()
    }

    fn log(&self, name: &str) -> fs::File {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap()
    }

    fn daemon(&self, name: &str, args: &[&str]) -> Child {
        Command::new(bin(name))
            .args(args)
            .env("TELEM_ROOT", self.root())
            .env("TELEM_SYSINFO_ROOT", self.sysroot())
            .env_remove("TELEM_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null())
            .stderr(self.log(name))
            .spawn()
            .unwrap()
    }

    fn start_server(&mut self) {
        let c = Command::new(bin("telem-server"))
            .arg("--config")
            .arg(self.server_config())
            .env_remove("TELEM_SERVER_CONFIG")
            .stdin(Stdio::null())
            .stderr(self.log("telem-server"))
            .spawn()
            .unwrap();
        self.server = Some(c);
        let url = format!("http://127.0.0.1:{}/healthz", self.server_port);
        assert!(
            wait_until(Duration::from_secs(60), || agent()
                .get(&url)
                .call()
                .is_ok_and(|r| r.status() == 200)),
            "telem-server did not come up\n{}",
            self.logs()
        );
    }

    fn start_probd(&mut self) {
        let sock = self.root().join("run/telem-0");
        let _ = fs::remove_file(&sock);
        self.probd = Some(self.daemon("telemprobd", &[]));
        assert!(
            wait_until(Duration::from_secs(20), || sock.exists()),
            "telemprobd did not start:\n{}",
            self.logs()
        );
    }

    fn start_postd(&mut self) {
        let args = [
            "--scan-interval-ms",
            "300",
            "--retry-base-ms",
            "50",
            "--retry-cap-ms",
            "400",
            "--http-timeout-ms",
            "3000",
        ];
        self.postd = Some(self.daemon("telempostd", &args));
    }

    fn kill9(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spool_files(&self) -> Vec<String> {
        telemetry::spool::scan(&self.root().join("var/spool/telemetry"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["telemprobd", "telempostd", "telem-server"] {
            let text =
                fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            s.push_str(&format!("--- {name} (last lines)\n{tail}\n"));
        }
        s
    }

    /// Every stored row as (event id, identity), read from the database by the server's export.
    fn stored(&self) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}/api/v1/export.jsonl", self.server_port);
        let Ok(mut r) = agent().get(&url).call() else {
            return Vec::new();
        };
        let text = r.body_mut().read_to_string().unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["event_id"].as_str().unwrap_or("").to_string(),
                    v["identity"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        System::kill9(&mut self.probd);
        System::kill9(&mut self.postd);
        System::kill9(&mut self.server);
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn record(sys: &SysInfo, tag: &str) -> Record {
    let mut r = Record::new(2, "org.example/faults/server", 1, sys).unwrap();
    r.set_payload(format!("{tag} {}", "x".repeat(300)).as_bytes())
        .unwrap();
    r
}

// ---- the scenario ----------------------------------------------------------------------------

/// Senders, proxy faults and server kills at once; then every acknowledged record is in the
/// database exactly once and the spool is empty.
fn scenario(test: &str, storage: &str) {
    let mut rng = Rng::seeded(test);
    let mut s = System::new(storage);
    s.start_server();
    let mut faults = Vec::new();
    for (f, n) in [
        (Fault::CommitThen500, 5),
        (Fault::CloseAfterAnswer, 5),
        (Fault::CutAnswer, 4),
        (Fault::DropRequest, 4),
        (Fault::Slow, 3),
    ] {
        faults.extend(std::iter::repeat_n(f, n));
    }
    // Seeded order, spread among requests that pass untouched.
    let mut schedule = Vec::new();
    for f in faults {
        for _ in 0..rng.below(4) {
            schedule.push(None);
        }
        schedule.push(Some(f));
    }
    let proxy = Proxy::start(s.server_port, schedule);
    s.deliver_to(proxy.port);
    s.proxy = Some(proxy);
    s.start_probd();
    s.start_postd();

    const SENDERS: usize = 6;
    const PER_SENDER: usize = 30;
    const KILLS: usize = 3;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let made = Arc::new(Mutex::new(BTreeSet::new()));
    let sys = SysInfo::gather(&s.sysroot());
    let config = s.config();
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..SENDERS)
            .map(|t| {
                let (acked, made) = (acked.clone(), made.clone());
                let (sys, config) = (sys.clone(), config.clone());
                scope.spawn(move || {
                    for i in 0..PER_SENDER {
                        let r = record(&sys, &format!("{t}-{i}"));
                        made.lock()
                            .unwrap()
                            .insert(r.get(Header::EventId).to_string());
                        if telemetry::client::send(&r, &config).is_ok() {
                            acked
                                .lock()
                                .unwrap()
                                .insert(r.get(Header::EventId).to_string());
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        // telem-server killed while records arrive, restarted after a seeded pause.
        for _ in 0..KILLS {
            std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
            System::kill9(&mut s.server);
            std::thread::sleep(Duration::from_millis(rng.below(800)));
            s.start_server();
        }
        for h in senders {
            h.join().unwrap();
        }
    });
    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    let made = Arc::try_unwrap(made).unwrap().into_inner().unwrap();
    assert!(
        acked.len() >= SENDERS * PER_SENDER * 9 / 10,
        "only {} of {} sends acknowledged",
        acked.len(),
        SENDERS * PER_SENDER
    );

    let all_there = wait_until(Duration::from_secs(90), || {
        let ids: BTreeSet<String> = s.stored().into_iter().map(|(e, _)| e).collect();
        acked.iter().all(|e| ids.contains(e)) && s.spool_files().is_empty()
    });
    let rows = s.stored();
    let mut by_event: BTreeMap<&str, usize> = BTreeMap::new();
    for (e, _) in &rows {
        *by_event.entry(e.as_str()).or_default() += 1;
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|e| !by_event.contains_key(e.as_str()))
        .collect();
    assert!(
        all_there && lost.is_empty(),
        "{} of {} acknowledged records missing (e.g. {:?}), spool {:?}\n{}",
        lost.len(),
        acked.len(),
        lost.first(),
        s.spool_files(),
        s.logs()
    );
    let twice: Vec<_> = by_event.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let identities: BTreeSet<&str> = rows.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(identities.len(), rows.len(), "an identity stored twice");
    // Nothing but these records: no row that no sender made.
    assert!(rows.iter().all(|(e, _)| made.contains(e)));
    let proxy = s.proxy.as_ref().unwrap();
    let applied = proxy.applied();
    assert_eq!(proxy.pending(), 0, "not every fault was reached");
    for f in [
        Fault::CommitThen500,
        Fault::CloseAfterAnswer,
        Fault::CutAnswer,
        Fault::DropRequest,
        Fault::Slow,
    ] {
        assert!(applied.contains(&f), "{f:?} never applied");
    }
    eprintln!(
        "{test}: {} acknowledged, {} rows, {} faults applied, {KILLS} server kills",
        acked.len(),
        rows.len(),
        applied.len()
    );
}

#[test]
fn telem_server_on_sqlite_keeps_every_acknowledged_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "[storage]\nengine = \"sqlite\"\npath = \"{}\"",
        dir.path().join("records.db").display()
    );
    scenario("server_faults_sqlite", &storage);
}

#[test]
fn telem_server_on_postgres_keeps_every_acknowledged_record_once() {
    let Some(pg) = pg::cluster() else { return };
    let storage = format!(
        "[storage]\nengine = \"postgres\"\nurl = \"{}\"",
        pg.database()
    );
    scenario("server_faults_postgres", &storage);
}
