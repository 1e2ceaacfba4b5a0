//! A private PostgreSQL cluster for the tests of one test binary: `initdb` in a temporary
//! directory, run as `nobody` when the tests run as root (PostgreSQL refuses root), on a free
//! loopback port, stopped by the kernel (parent-death signal) when the test process ends.
//! Each test gets a database of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub struct Pg {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    next: AtomicUsize,
}

static PG: OnceLock<Option<Pg>> = OnceLock::new();

/// Whether the cluster flushes its WAL on commit (the benchmarks); the tests run without.
static DURABLE: AtomicBool = AtomicBool::new(false);

/// Like [`cluster`], but with `fsync` and full-page writes on, as a production cluster: for
/// benchmarks whose figures depend on durable commits. Call it before anything starts the
/// cluster.
pub fn durable_cluster() -> Option<&'static Pg> {
    DURABLE.store(true, Ordering::Relaxed);
    cluster()
}

/// The cluster, started on first use; None (with a note on stderr) when this machine has no
/// PostgreSQL or cannot run it. Under CI a missing PostgreSQL is a failure, not a skip.
pub fn cluster() -> Option<&'static Pg> {
    PG.get_or_init(|| match start() {
        Ok(pg) => Some(pg),
        Err(why) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL is required under CI: {why}");
            }
            eprintln!("note: skipping the PostgreSQL half of this test: {why}");
            None
        }
    })
    .as_ref()
}

impl Pg {
    /// A new empty database; its URL.
    pub fn database(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{n}");
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "CREATE DATABASE: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn find_bin() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let v: u32 = match e.file_name().to_str().and_then(|s| s.parse().ok()) {
            Some(v) => v,
            None => continue,
        };
        let bin = e.path().join("bin");
        if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, bin));
        }
    }
    best.map(|(_, b)| b)
}

/// Removes the directories of earlier runs whose process is gone.
fn remove_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name
            .strip_prefix("telem-server-pg-")
            .and_then(|r| r.split('-').next())
        {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// `setpriv` arguments that run a program as `nobody` (as root) and stop it when its parent
/// thread ends.
fn runner(root: bool) -> Vec<String> {
    let mut v = vec!["setpriv".to_string()];
    if root {
        v.extend(
            ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    v.push("--pdeathsig=TERM".to_string());
    v.push("--".to_string());
    v
}

fn command(prefix: &[String], program: &Path) -> Command {
    let mut c = Command::new(&prefix[0]);
    c.args(&prefix[1..]).arg(program);
    c
}

fn start() -> Result<Pg, String> {
    let bin = find_bin().ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
    if Command::new("setpriv").arg("--version").output().is_err() {
        return Err("setpriv (util-linux) is not installed".into());
    }
    let root = rustix::process::geteuid().is_root();
    let tmp = std::env::temp_dir();
    remove_stale(&tmp);
    let dir = tmp.join(format!(
        "telem-server-pg-{}-{}",
        std::process::id(),
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace([':', '/'], "_")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if root {
        let nobody = Command::new("id")
            .args(["-u", "nobody"])
            .output()
            .map_err(|e| e.to_string())?;
        let uid: u32 = String::from_utf8_lossy(&nobody.stdout)
            .trim()
            .parse()
            .map_err(|_| "no user nobody".to_string())?;
        std::os::unix::fs::chown(&dir, Some(uid), None).map_err(|e| e.to_string())?;
    }
    let prefix = runner(root);
    let data = dir.join("data");
    let out = command(&prefix, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // The parent-death signal follows the thread that started the server: a thread that
    // lives as long as the test process starts it and then waits forever.
    let (tx, rx) = mpsc::channel::<Result<(), String>>();
    let (fsync, full_page_writes) = if DURABLE.load(Ordering::Relaxed) {
        ("fsync=on", "full_page_writes=on")
    } else {
        ("fsync=off", "full_page_writes=off")
    };
    let (p, b, d, dd) = (prefix.clone(), bin.clone(), dir.clone(), data.clone());
    std::thread::Builder::new()
        .name("postgres-keeper".into())
        .spawn(move || {
            let log = match std::fs::File::create(d.join("log")) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let log2 = log.try_clone().ok();
            let child = command(&p, &b.join("postgres"))
                .arg("-D")
                .arg(&dd)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&d)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", fsync])
                .args(["-c", full_page_writes, "-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2.map_or(Stdio::null(), Stdio::from))
                .spawn();
            match child {
                Ok(_child) => {
                    let _ = tx.send(Ok(()));
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("starting postgres: {e}")));
                }
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())??;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!("postgres did not become ready: {log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Pg {
        bin,
        port,
        dir,
        next: AtomicUsize::new(0),
    })
}
