//! crashprobe: the kernel's core handler (`core_pattern = |/usr/bin/crashprobe -p %e -E %E -s %s`).
//! Reads the core from stdin (or `-c`), unwinds and symbolizes every thread in pure Rust (crate
//! `coredump`) and sends the backtrace as a record (docs/crashprobe.md). With `--journal`,
//! reports the crashes systemd-coredump recorded in the journal instead (`probes::coredumpd`).
//! See docs/crashprobe.md.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use probes::args::CrashprobeArgs as Args;
use probes::crash::{self, Flood, Origin, Verdict};
use probes::send::{load_config, Outcome, Sender};
use probes::{cli, coredumpd};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The unprivileged user crashprobe runs as when the kernel starts it as root, unless
/// `TELEM_PROBE_USER` names another (the kernel starts it with an empty environment).
const TELEMETRY_USER: &str = "telemetry";

fn main() -> ExitCode {
    // Before anything else: no core of our own, stderr usable, no root while reading input.
    harden();
    init_logging();
    let user = std::env::var(telemetry::env::PROBE_USER)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| TELEMETRY_USER.to_string());
    if let Err(e) = drop_privileges(&user) {
        tracing::error!("cannot drop privileges to {user}: {e:#}");
        eprintln!("crashprobe: error: cannot drop privileges: {e:#}");
        return ExitCode::FAILURE;
    }
    // After the drop: the arguments carry the crashed process's name, which its owner chose.
    let args: Args = cli::parse();
    let result = run(args);
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    cli::finish("crashprobe", result)
}

/// Not dumpable, RLIMIT_CORE 0 (a crash of the crash handler must not recurse), and an open
/// fd 2 (the kernel may start us with only stdin).
fn harden() {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let zero = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Core, zero);
    if rustix::io::fcntl_getfd(std::io::stderr().as_fd()).is_err() {
        // open() takes the lowest free numbers: fill 1 and 2 if they are closed.
        for _ in 0..3 {
            let Ok(fd) = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDWR,
                rustix::fs::Mode::empty(),
            ) else {
                break;
            };
            if fd.as_raw_fd() > 2 {
                break; // dropped: closes it
            }
            let _ = fd.into_raw_fd(); // keep it open as fd 0..2
        }
    }
}

/// stderr, plus the journal when it is reachable (under the kernel stderr goes nowhere). As a
/// systemd service (`--journal`) stderr already goes to the journal: the journal only, or
/// every message would be there twice.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let journald = Path::new("/run/systemd/journal/socket")
        .exists()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    let stderr = (journald.is_none() || !daemon_logging::started_by_systemd()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(journald)
        .try_init();
}

/// As root, become `name` (groups, gid, uid) before touching the core. When the user does not
/// exist (containers, test machines) we go on as root with a warning; the reader is bounded and
/// panic-free, see docs/crashprobe.md. A user that is root itself (a test run as root names
/// its own user) leaves nothing to drop.
fn drop_privileges(name: &str) -> anyhow::Result<()> {
    use nix::unistd;
    if !unistd::geteuid().is_root() {
        return Ok(());
    }
    let Some(user) = unistd::User::from_name(name).context("looking up the user")? else {
        tracing::warn!("user {name} does not exist: running as root");
        return Ok(());
    };
    if user.uid.is_root() {
        return Ok(());
    }
    let name = CString::new(name)?;
    unistd::initgroups(&name, user.gid).context("initgroups")?;
    unistd::setgid(user.gid).context("setgid")?;
    unistd::setuid(user.uid).context("setuid")?;
    std::env::set_current_dir("/").context("chdir /")?;
    if unistd::setuid(unistd::Uid::from_raw(0)).is_ok() {
        anyhow::bail!("could regain root after setuid");
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.journal {
        return run_journal(args);
    }
    let Some(name) = args.process_name.clone() else {
        eprintln!("Missing required -p option. See --help output");
        return Ok(ExitCode::FAILURE);
    };
    let config = load_config(args.config.config_file.as_deref())?;
    let process = args
        .process_path
        .as_deref()
        .map_or(name, crash::unescape_path);
    let mut sender = Sender::new(config, args.dry_run);

    let suppressed = match flood_check(&sender, &args, &process) {
        Some(n) => n,
        None => return Ok(ExitCode::SUCCESS),
    };

    if args.process_path.is_some() && !sender.privacy_filters_lifted() {
        if let Some((severity, class, payload)) = Origin::of(&process).filtered_record() {
            return deliver(&mut sender, &args, severity, class, payload);
        }
    }

    let opts = coredump::Options {
        debug_root: Some(args.debug_dir.clone()),
        ..Default::default()
    };
    let core = match read_core(args.core_file.as_deref(), &opts.limits) {
        Ok(core) => core,
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!("cannot read the core of {process}: {message}");
            let payload = crash::error_payload(&process, args.signal, &message);
            deliver(&mut sender, &args, 4, crash::CLASS_ERROR, &payload)?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut bt = coredump::backtrace(&core, &opts);
    let signal = args.signal.filter(|s| *s >= 0).or(bt.signal);
    if args.retry_delay > 0 && bt.payload(&process, signal).contains("??? - [") {
        tracing::debug!("frames without symbols: retrying in {} s", args.retry_delay);
        std::thread::sleep(Duration::from_secs(args.retry_delay));
        bt = coredump::backtrace(&core, &opts);
    }
    let payload = crash::crash_payload(&bt, &process, signal, suppressed);
    deliver(&mut sender, &args, 3, crash::CLASS_CRASH, &payload)
}

/// `--journal`: the crashes systemd-coredump recorded since the stored cursor; with
/// `--follow`, a pass every `--interval` seconds (as journalprobe).
fn run_journal(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.config_file.as_deref())?;
    let settings = coredumpd::Settings {
        journalctl: args.journalctl.clone(),
        input: args.input.clone(),
        coredump_dir: args.coredump_dir.clone(),
        flood_window: args.flood_window,
        options: coredump::Options {
            debug_root: Some(args.debug_dir.clone()),
            ..Default::default()
        },
        verbose: args.verbose,
    };
    let mut mode = coredumpd::JournalMode::new(settings, Sender::new(config, args.dry_run));
    // Canned input does not grow: one pass is all there is.
    let follow = args.follow && args.input.is_none();
    let interval = Duration::from_secs_f64(args.interval.max(0.01));
    loop {
        let result = mode.pass();
        if !follow {
            return result.map(|()| ExitCode::SUCCESS);
        }
        if let Err(e) = result {
            // Retried on the next pass: the cursor stays before what was not handled.
            tracing::error!("{e:#}");
        }
        std::thread::sleep(interval);
    }
}

/// `Some(suppressed count)` to report, `None` when flood control swallows this crash.
fn flood_check(sender: &Sender, args: &Args, process: &str) -> Option<u64> {
    let flood = Flood::new(Flood::dir_in(&sender.config().cache_dir), args.flood_window);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match flood.check(process, now) {
        Ok(Verdict::Report { suppressed }) => Some(suppressed),
        Ok(Verdict::Suppress { count }) => {
            tracing::debug!(
                process,
                count,
                "repeated crash within the flood window: not reported"
            );
            if args.verbose {
                println!(
                    "Repeated crash of {process} ({count} within {} s): not reported.",
                    args.flood_window
                );
            }
            None
        }
        Err(e) => {
            tracing::warn!(
                "flood control state in {}: {e}; reporting anyway",
                sender.config().cache_dir.display()
            );
            Some(0)
        }
    }
}

fn read_core(path: Option<&Path>, limits: &coredump::ReadLimits) -> anyhow::Result<coredump::Core> {
    use rustix::fs::{Mode, OFlags};
    if let Some(path) = path {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", path.display()))?;
        return Ok(coredump::Core::from_file(File::from(fd), limits)?);
    }
    let stdin = File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("stdin")?,
    );
    let kind = stdin.metadata().context("stdin")?.file_type();
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_file() {
        Ok(coredump::Core::from_file(stdin, limits)?)
    } else if kind.is_fifo() || kind.is_socket() {
        Ok(coredump::Core::from_reader(stdin, limits)?)
    } else {
        anyhow::bail!("stdin is neither a pipe nor a file: pass the core on stdin or with -c");
    }
}

fn deliver(
    sender: &mut Sender,
    args: &Args,
    severity: u32,
    class: &str,
    payload: &str,
) -> anyhow::Result<ExitCode> {
    if args.verbose {
        print!("{payload}");
    }
    match sender
        .submit(severity, class, payload)
        .context("Failed to send record to daemon")?
    {
        Outcome::Sent => tracing::debug!(class, "crash record sent"),
        Outcome::Printed | Outcome::NotOptedIn => {}
    }
    Ok(ExitCode::SUCCESS)
}
