//! The man page sections clap does not know about: ENVIRONMENT, FILES, EXIT STATUS and SEE
//! ALSO. Paths come from libtelemetry's built-in defaults and variable names from its `env`
//! module, so the pages name what the programs really use.

use std::path::Path;

use telemetry::config::{ADMIN_CONFIG, VENDOR_CONFIG};
use telemetry::{env, Config};

/// One `.TP` entry: a term in bold and its description.
type Entry = (String, String);

/// The extra sections of one binary's page.
#[derive(Debug, Default)]
pub struct Extra {
    pub environment: Vec<Entry>,
    pub files: Vec<Entry>,
    pub exit_status: Vec<Entry>,
    pub see_also: Vec<String>,
}

fn e(term: impl Into<String>, text: impl Into<String>) -> Entry {
    (term.into(), text.into())
}

/// What is true of `bin` (one of [`crate::BINARIES`]); `None` for another name.
pub fn extra(bin: &str) -> Option<Extra> {
    if !crate::BINARIES.contains(&bin) {
        return None;
    }
    let c = Config::defaults(Path::new("/"));
    let path = |p: &Path| p.display().to_string();
    let probe = matches!(
        bin,
        "crashprobe" | "klogscanner" | "journalprobe" | "pstoreprobe" | "pstoreclean" | "hprobe"
    );
    let daemon = matches!(bin, "telemprobd" | "telempostd");
    let sends = probe && bin != "pstoreclean" || bin == "telem-record-gen";

    let mut environment = vec![
        e(
            env::ROOT,
            "Prefix for every default path below (configuration, opt-in files, socket, spool, \
             state, journal): TELEM_ROOT=/tmp/t makes /etc/telemetrics/opt-in mean \
             /tmp/t/etc/telemetrics/opt-in. Tests and the local demo use it.",
        ),
        e(
            env::CONFIG,
            "A configuration file read on top of the built-in defaults alone, as -f FILE (which \
             wins over it).",
        ),
    ];
    if daemon {
        environment.push(e(
            "RUST_LOG",
            "Log level, or a list of target=level items (e.g. debug, or telempostd=debug,warn); \
             unset, empty or not understood means info. Span and field filters and regular \
             expressions are not read.",
        ));
    } else if probe {
        environment.push(e(
            "RUST_LOG",
            "Log level and filter (tracing's env-filter syntax, e.g. debug); the default logs \
             warnings and errors.",
        ));
    }
    if sends {
        environment.push(e(
            env::SYSINFO_ROOT,
            "Root below which /sys/class/dmi/id, /proc/cpuinfo and os-release are read for the \
             record headers (tests).",
        ));
    }
    match bin {
        "telemctl" => environment.push(e(
            env::SYSTEMCTL,
            "The systemctl program to run (default: systemctl from PATH).",
        )),
        "crashprobe" => {
            environment.push(e(
                env::PROBE_USER,
                "The user to become when started as root, before reading the core (default: \
                 telemetry; the kernel starts the probe with an empty environment). A user \
                 that does not exist leaves the probe running as root, with a warning.",
            ));
            environment.push(e("TELEM_CRASH_DEBUG_DIR", "Default of --debug-dir."));
        }
        _ => {}
    }

    let mut files = vec![
        e(
            ADMIN_CONFIG,
            "The administrator's configuration; each key set here wins over the vendor file.",
        ),
        e(
            VENDOR_CONFIG,
            "The vendor's configuration, every key commented with its default.",
        ),
        e(
            path(&c.opt_in_file),
            "Present when the machine is opted in: nothing is recorded or sent without it.",
        ),
    ];
    let socket = e(
        path(&c.socket_path),
        "telemprobd's socket (socket_path), where records are sent.",
    );
    let spool = e(
        path(&c.spool_dir),
        "The spool (spool_dir): one file per record waiting for delivery.",
    );
    let journal = e(
        path(&c.journal_file),
        "The journal of records that left the spool, and what became of each.",
    );
    let status = e(
        path(&c.state_dir.join("{telemprobd,telempostd}.status")),
        "The daemons' status and counters, read by telemctl status.",
    );
    match bin {
        "telemprobd" => files.extend([
            socket,
            spool,
            e(
                path(&c.machine_id_file),
                "The machine id put in every record.",
            ),
            e(
                path(&c.static_machine_id_file),
                "When present, its content is the machine id instead.",
            ),
            status,
        ]),
        "telempostd" => files.extend([
            spool,
            journal,
            e(
                path(&c.retention_dir),
                "Copies of delivered records when record_retention_enabled is set.",
            ),
            status,
        ]),
        "telemctl" => files.extend([
            spool,
            journal,
            e(
                path(&c.retention_dir),
                "Retained records (telemctl journal -i).",
            ),
            status,
            e(
                path(&c.cache_dir),
                "Probes' caches, deleted by opt-out with the spool and the machine id.",
            ),
        ]),
        "telem_journal" => files.extend([
            journal,
            e(
                path(&c.retention_dir),
                "Retained record bodies, printed by --include-record.",
            ),
        ]),
        "telem-record-gen" => files.push(socket),
        "crashprobe" => files.extend([
            socket,
            e(
                path(&c.cache_dir.join("crashprobe")),
                "Flood control: when each executable last crashed, and how often since.",
            ),
            e(
                path(&c.state_dir),
                "With --journal: the journal position of the last crash reported.",
            ),
        ]),
        "journalprobe" => files.extend([
            socket,
            e(
                path(&c.state_dir.join("journalprobe.cursor")),
                "The journal position of the last entry handled.",
            ),
        ]),
        "pstoreprobe" => files.extend([
            e(
                path(&c.state_dir),
                "Which pstore dumps were already reported (pstoreclean deletes only those).",
            ),
            socket,
        ]),
        "pstoreclean" => files.push(e(
            path(&c.state_dir),
            "Which pstore dumps pstoreprobe already reported: the ones deleted without --all.",
        )),
        "klogscanner" | "hprobe" => files.push(socket),
        _ => {}
    }

    let exit_status = match bin {
        "telemprobd" => vec![
            e(
                "0",
                "Stopped by SIGTERM or SIGINT, or exited after --idle-exit-secs without clients.",
            ),
            e(
                "1",
                "A usage error, or it could not start (configuration, socket).",
            ),
        ],
        "telempostd" => vec![
            e("0", "Stopped by SIGTERM or SIGINT, or exited when idle."),
            e("1", "It could not start (configuration, spool)."),
            e("2", "A usage error."),
        ],
        "telemctl" => vec![
            e("0", "Done."),
            e(
                "1",
                "Failed: not root, not opted in, a unit failed, is-active could not tell a \
                 state, or a configuration file does not parse (status, config and journal \
                 show the error and go on).",
            ),
            e("2", "A usage error."),
        ],
        "telem_journal" => vec![
            e("0", "The journal was printed (or does not exist yet)."),
            e("1", "A usage error, or the journal could not be read."),
        ],
        "telem-record-gen" => vec![
            e(
                "0",
                "The record was created and, unless --no-post, stored by telemprobd.",
            ),
            e(
                "1",
                "Anything else: a usage error, an invalid record, not opted in, or no daemon.",
            ),
        ],
        _ => vec![
            e("0", "Done (also when not opted in: nothing is sent then)."),
            e(
                "1",
                "A usage error, or the run failed (the message says why).",
            ),
        ],
    };

    let see_also = crate::BINARIES
        .iter()
        .filter(|b| **b != bin)
        .map(|b| b.to_string())
        .collect();
    Some(Extra {
        environment,
        files,
        exit_status,
        see_also,
    })
}

/// Escapes text for a roff text line: backslashes, hyphens (as `\-`, so they stay hyphens and
/// can be searched for), and a leading `.` or `'` that would read as a request.
pub(crate) fn esc(s: &str) -> String {
    let mut out = s.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

fn entries(out: &mut String, title: &str, list: &[Entry]) {
    if list.is_empty() {
        return;
    }
    out.push_str(&format!(".SH \"{title}\"\n"));
    for (term, text) in list {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", esc(term), esc(text)));
    }
}

/// The sections as roff, in the conventional order.
pub fn roff(extra: &Extra) -> String {
    let mut out = String::new();
    entries(&mut out, "EXIT STATUS", &extra.exit_status);
    entries(&mut out, "ENVIRONMENT", &extra.environment);
    entries(&mut out, "FILES", &extra.files);
    // Every program reads the configuration, whose page is in section 5.
    let mut pages: Vec<(String, u8)> = extra.see_also.iter().map(|p| (p.clone(), 1)).collect();
    pages.push(("telemetrics.conf".to_string(), 5));
    see_also(&mut out, &pages);
    out
}

/// A SEE ALSO section naming `pages`, each with its section.
pub fn see_also(out: &mut String, pages: &[(String, u8)]) {
    if pages.is_empty() {
        return;
    }
    out.push_str(".SH \"SEE ALSO\"\n");
    let refs: Vec<String> = pages
        .iter()
        .map(|(p, section)| format!("\\fB{}\\fR({section})", esc(p)))
        .collect();
    out.push_str(&refs.join(",\n"));
    out.push('\n');
}

/// Puts `sections` before the page's VERSION section (clap's last ones), or at its end.
pub fn insert(page: &str, sections: &str) -> String {
    match page.find(".SH VERSION") {
        Some(i) => format!("{}{sections}{}", &page[..i], &page[i..]),
        None => format!("{page}{sections}"),
    }
}
