//! What the benchmarks share: the server as a child process, an HTTP agent, the engines.
#![allow(dead_code)]

#[path = "../../tests/common/pg.rs"]
pub mod pg;
pub mod seed;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telem_server::config::{Config, Engine};

pub const BIN: &str = env!("CARGO_BIN_EXE_telem-server");

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// Where a run stores its rows.
#[derive(Clone)]
pub enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Target {
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        match self {
            Target::Sqlite(p) => {
                c.storage.engine = Engine::Sqlite;
                c.storage.path = p.clone();
            }
            Target::Postgres(url) => {
                c.storage.engine = Engine::Postgres;
                c.storage.url = Some(url.clone());
            }
        }
        c
    }

    fn toml(&self, port: u16, extra: &str) -> String {
        let storage = match self {
            Target::Sqlite(p) => format!("engine = \"sqlite\"\npath = \"{}\"", p.display()),
            Target::Postgres(url) => format!("engine = \"postgres\"\nurl = \"{url}\""),
        };
        format!("listen = \"127.0.0.1:{port}\"\n{extra}\n[storage]\n{storage}\n")
    }
}

/// The server as a child process; stopped with SIGTERM on drop.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts a server on `target`; `extra` goes into its configuration file before the
    /// `[storage]` table (top-level keys, or tables of its own).
    pub fn start(target: &Target, dir: &Path, extra: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.join(format!("server-{port}.toml"));
        std::fs::write(&cfg, target.toml(port, extra)).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server { child, port };
        let agent = agent();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !agent
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "telem-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Peak resident set size so far, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
