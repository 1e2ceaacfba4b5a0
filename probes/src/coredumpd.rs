//! `crashprobe --journal`: crashes that systemd-coredump recorded in the journal, for systems
//! where systemd-coredump owns `core_pattern`. Each entry (`MESSAGE_ID` [`MESSAGE_ID`]) names
//! the executable, signal and the core: a file in `/var/lib/systemd/coredump/` (zstd-, lz4- or
//! xz-compressed, or not) or the core itself inline in the `COREDUMP` field. Entries are read
//! with `journalctl -o json` (no libsystemd), after a cursor stored in `state_dir`, as
//! journalprobe does; each becomes the same record as the pipe mode's. See docs/crashprobe.md.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use crate::crash::{self, Flood, Origin, Verdict};
use crate::journal::{self, Boot, Position};
use crate::send::{Outcome, SendError, Sender};
use crate::state;

/// systemd's `SD_MESSAGE_COREDUMP`: the entry systemd-coredump writes per crash.
pub const MESSAGE_ID: &str = "fc2e22bc6ee647b6b90729ab34a250b1";
/// Name of the cursor file in `state_dir` (not journalprobe's: the two probes are independent).
pub const CURSOR_FILE: &str = "crashprobe-journal.cursor";
/// Where systemd-coredump stores cores (`Storage=external`); core files elsewhere are refused.
pub const COREDUMP_DIR: &str = "/var/lib/systemd/coredump";
/// Longest `journalctl` output line read (an inline core is ~4 bytes of JSON per byte, so
/// inline cores up to ~16 MiB); longer entries are skipped with a warning.
pub const MAX_LINE: usize = 64 << 20;

/// The fields asked from journalctl (`__CURSOR` always comes).
const FIELDS: &str = "COREDUMP_EXE,COREDUMP_COMM,COREDUMP_PID,COREDUMP_SIGNAL,COREDUMP_TIMESTAMP,\
                      COREDUMP_FILENAME,COREDUMP";

/// Arguments for `journalctl`: JSON with all fields shown whole (`--all`: without it fields over
/// 4096 bytes, such as an inline core, print as `null`), only the crash entries. `boot` limits
/// a first run without a stored cursor to the current boot; with a cursor (`None`) the entries
/// after it are read across reboots, so a crash just before a reboot is not lost.
pub fn journalctl_args(position: &Position<'_>, boot: Option<&Boot>) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-o", "json", "--no-pager", "-q", "--all"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(format!("--output-fields={FIELDS}").into());
    match position {
        Position::From(c) => args.push(format!("--cursor={c}").into()),
        Position::Start => {}
        Position::Last => args.extend(["-n", "1"].iter().map(OsString::from)),
    }
    args.push(format!("MESSAGE_ID={MESSAGE_ID}").into());
    if let Some(boot) = boot {
        boot.add_to(&mut args);
    }
    args
}

/// One crash entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crash {
    /// `__CURSOR`.
    pub cursor: Option<String>,
    /// `COREDUMP_EXE`: the executable's path.
    pub exe: Option<String>,
    /// `COREDUMP_COMM`: the process name.
    pub comm: Option<String>,
    /// `COREDUMP_PID`.
    pub pid: Option<i32>,
    /// `COREDUMP_SIGNAL`.
    pub signal: Option<i32>,
    /// `COREDUMP_TIMESTAMP`: crash time, µs since the epoch.
    pub timestamp_us: Option<u64>,
    /// `COREDUMP_FILENAME`: the stored core.
    pub filename: Option<PathBuf>,
    /// `COREDUMP`: the core itself (`Storage=journal`).
    pub core: Option<Vec<u8>>,
}

impl Crash {
    /// The process as the payload names it: the executable, else the process name.
    pub fn process(&self) -> String {
        self.exe
            .clone()
            .or_else(|| self.comm.clone())
            .unwrap_or_else(|| "???".to_string())
    }

    /// Crash time in seconds since the epoch, when the entry has it.
    pub fn time(&self) -> Option<u64> {
        self.timestamp_us.map(|us| us / 1_000_000)
    }
}

/// Parses one line of `journalctl -o json`. Binary fields come as arrays of byte values (read
/// straight into bytes, never as a `serde_json::Value` per byte), repeated fields as arrays of
/// values (the first is used), fields too large to show as `null`.
pub fn parse_entry(line: &str) -> Result<Crash, serde_json::Error> {
    let raw: Raw = serde_json::from_str(line)?;
    let number = |f: Field| f.text().and_then(|t| t.trim().parse().ok());
    Ok(Crash {
        cursor: raw.cursor.text(),
        exe: raw.exe.text(),
        comm: raw.comm.text(),
        pid: number(raw.pid),
        signal: number(raw.signal),
        timestamp_us: raw.timestamp.text().and_then(|t| t.trim().parse().ok()),
        filename: raw.filename.text().map(PathBuf::from),
        core: raw.core.bytes(),
    })
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "__CURSOR", default)]
    cursor: Field,
    #[serde(rename = "COREDUMP_EXE", default)]
    exe: Field,
    #[serde(rename = "COREDUMP_COMM", default)]
    comm: Field,
    #[serde(rename = "COREDUMP_PID", default)]
    pid: Field,
    #[serde(rename = "COREDUMP_SIGNAL", default)]
    signal: Field,
    #[serde(rename = "COREDUMP_TIMESTAMP", default)]
    timestamp: Field,
    #[serde(rename = "COREDUMP_FILENAME", default)]
    filename: Field,
    #[serde(rename = "COREDUMP", default)]
    core: Field,
}

/// A journal field as journalctl's JSON shows it.
#[derive(Debug, Default)]
enum Field {
    #[default]
    Absent,
    Text(String),
    Bytes(Vec<u8>),
}

impl Field {
    fn text(self) -> Option<String> {
        match self {
            Field::Absent => None,
            Field::Text(s) => Some(s),
            Field::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    fn bytes(self) -> Option<Vec<u8>> {
        match self {
            Field::Absent => None,
            Field::Text(s) => Some(s.into_bytes()),
            Field::Bytes(b) => Some(b),
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of bytes, an array of values or null")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Text(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Field, E> {
        Ok(Field::Text(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Absent)
    }

    fn visit_none<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Absent)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        // Bytes, or several values of a repeated field (keep the first, skip the rest).
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        match seq.next_element::<Element>()? {
            None => return Ok(Field::Bytes(bytes)),
            Some(Element::Value(first)) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(first);
            }
            Some(Element::Byte(b)) => bytes.push(b),
        }
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Ok(Field::Bytes(bytes))
    }
}

/// The first element of an array field.
enum Element {
    Byte(u8),
    Value(Field),
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte or a field value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Element, E> {
                u8::try_from(v)
                    .map(Element::Byte)
                    .map_err(|_| E::custom(format!("byte value {v} out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Element, E> {
                FieldVisitor.visit_str(v).map(Element::Value)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
                Ok(Element::Value(Field::Absent))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
                FieldVisitor.visit_seq(seq).map(Element::Value)
            }
        }
        d.deserialize_any(V)
    }
}

/// How a stored core is compressed, from its file name's suffix (systemd-coredump names cores
/// `core.<comm>.<uid>.<boot id>.<pid>.<µs>[.zst|.lz4|.xz]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compression {
    /// No suffix (`Compress=no`): the name ends in the numeric timestamp.
    None,
    /// `.zst`.
    Zstd,
    /// `.lz4`.
    Lz4,
    /// `.xz`.
    Xz,
    /// Any other suffix.
    Unknown(String),
}

impl Compression {
    /// The compression of a core file by its name.
    pub fn of(path: &Path) -> Compression {
        let Some(ext) = path.extension().map(|e| e.to_string_lossy()) else {
            return Compression::None;
        };
        match ext.as_ref() {
            "zst" => Compression::Zstd,
            "lz4" => Compression::Lz4,
            "xz" => Compression::Xz,
            e if e.bytes().all(|b| b.is_ascii_digit()) => Compression::None,
            e => Compression::Unknown(e.to_string()),
        }
    }
}

/// Why an entry's core could not be read. The message goes into the error record.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Neither `COREDUMP_FILENAME` nor `COREDUMP` (`Storage=none`, core over the size limits,
    /// or inline core over [`MAX_LINE`]).
    #[error("the journal entry has no core (no COREDUMP_FILENAME or COREDUMP field)")]
    NoCore,
    /// A core file outside the coredump directory (journal entries can be forged by any user).
    #[error("core file {0} is not in {1}: refused")]
    OutsideDir(PathBuf, PathBuf),
    /// Opening the core file failed (removed by systemd-tmpfiles or coredumpctl vacuum, ...).
    #[error("cannot open core file {0}: {1}")]
    Open(PathBuf, io::Error),
    /// Not a regular file.
    #[error("core file {0} is not a regular file")]
    NotAFile(PathBuf),
    /// A compression we do not decode.
    #[error(
        "core file {0}: {1} compression is not supported (only zstd, lz4, xz and uncompressed)"
    )]
    Unsupported(PathBuf, String),
    /// Not a valid zstd frame.
    #[error("core file {0}: not a zstd stream: {1}")]
    Zstd(PathBuf, String),
    /// Reading a compressed core (the decompressor's error surfaces as the core reader's I/O
    /// error, hence the compression named here).
    #[error("core file {0} ({1}): {2}")]
    Compressed(PathBuf, &'static str, coredump::Error),
    /// The core itself.
    #[error("{0}")]
    Core(#[from] coredump::Error),
}

/// Reads the core of a crash entry: the inline `COREDUMP` field, else `COREDUMP_FILENAME`,
/// which must be a regular file directly or indirectly under `coredump_dir` (opened without
/// following a final symlink). zstd and lz4 are decompressed while the core is read (one pass, bounded
/// memory as for a pipe); an uncompressed file is read by seeking.
pub fn read_core(
    crash: &Crash,
    coredump_dir: &Path,
    limits: &coredump::ReadLimits,
) -> Result<coredump::Core, CoreError> {
    if let Some(bytes) = &crash.core {
        return Ok(coredump::Core::from_reader(&bytes[..], limits)?);
    }
    let Some(path) = &crash.filename else {
        return Err(CoreError::NoCore);
    };
    if !path.is_absolute()
        || !path.starts_with(coredump_dir)
        || path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(CoreError::OutsideDir(
            path.clone(),
            coredump_dir.to_path_buf(),
        ));
    }
    let compression = Compression::of(path);
    if let Compression::Unknown(ext) = &compression {
        return Err(CoreError::Unsupported(
            path.clone(),
            format!("unknown (.{ext})"),
        ));
    }
    let file = open_regular(path)?;
    let compressed = |kind| move |e| CoreError::Compressed(path.clone(), kind, e);
    match compression {
        Compression::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(BufReader::new(file))
                .map_err(|e| CoreError::Zstd(path.clone(), e.to_string()))?;
            coredump::Core::from_reader(decoder, limits).map_err(compressed("zstd"))
        }
        // systemd writes the LZ4 frame format (LZ4F), not raw blocks.
        Compression::Lz4 => {
            let decoder = lz4_flex::frame::FrameDecoder::new(BufReader::new(file));
            coredump::Core::from_reader(decoder, limits).map_err(compressed("lz4"))
        }
        // systemd's default before v246: one xz stream (CRC64); concatenated streams are
        // read as one, as `xz -d` does.
        Compression::Xz => {
            let decoder = lzma_rust2::XzReader::new(BufReader::new(file), true);
            coredump::Core::from_reader(decoder, limits).map_err(compressed("xz"))
        }
        _ => Ok(coredump::Core::from_file(file, limits)?),
    }
}

/// Opens a regular file for reading: no final symlink, and non-blocking so that a FIFO put in
/// its place cannot hang the probe before the type check.
fn open_regular(path: &Path) -> Result<File, CoreError> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| CoreError::Open(path.to_path_buf(), e.into()))?;
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| CoreError::Open(path.to_path_buf(), e))?;
    if !meta.is_file() {
        return Err(CoreError::NotAFile(path.to_path_buf()));
    }
    Ok(file)
}

/// Settings of the journal mode.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The journalctl program.
    pub journalctl: PathBuf,
    /// Canned `journalctl -o json` output instead of running journalctl (tests).
    pub input: Option<PathBuf>,
    /// Where core files must be.
    pub coredump_dir: PathBuf,
    /// Flood-control window in seconds (0: off).
    pub flood_window: u64,
    /// Unwinding options (debug root, read limits).
    pub options: coredump::Options,
    /// Print each payload to stdout.
    pub verbose: bool,
}

/// The journal mode's state across passes.
#[derive(Debug)]
pub struct JournalMode {
    settings: Settings,
    sender: Sender,
    cursor_file: PathBuf,
    /// The cursor of the last entry handled in this process (a dry run keeps it only here).
    cursor: Option<String>,
    /// Which boot is "the current boot" for journalctl, found when first needed.
    boot: Option<Boot>,
}

impl JournalMode {
    /// The journal mode with its cursor in `<state_dir>/crashprobe-journal.cursor`.
    pub fn new(settings: Settings, sender: Sender) -> JournalMode {
        let cursor_file = sender.config().state_dir.join(CURSOR_FILE);
        JournalMode {
            settings,
            sender,
            cursor_file,
            cursor: None,
            boot: None,
        }
    }

    /// Reads the crash entries after the cursor, reports them, moves the cursor. While opted
    /// out, entries are read (the cursor moves past them) and not reported. A failed send ends
    /// the pass with the cursor before that entry; an unreadable core is an error record, not
    /// a failure of the pass.
    pub fn pass(&mut self) -> anyhow::Result<()> {
        let dry_run = self.sender.dry_run();
        let stored = journal::stored_cursor(self.cursor.as_deref(), &self.cursor_file)?;
        // From the stored entry on (`--cursor=`, that entry dropped below), as journalprobe
        // does: see `journal::Position::From`.
        let position = match &stored {
            Some(c) => Position::From(c),
            None => Position::Start,
        };
        let report = dry_run || self.sender.opted_in();
        let input = self.settings.input.clone();
        let program = self.settings.journalctl.clone();
        // A first run reads only the current boot: which one that is, is found once.
        let boot = match (&stored, &self.boot, &input) {
            (Some(_), _, _) | (_, _, Some(_)) => None,
            (None, Some(b), None) => Some(b.clone()),
            (None, None, None) => {
                let b = journal::find_boot(&program)?;
                self.boot = Some(b.clone());
                Some(b)
            }
        };
        let mut last_done: Option<String> = None;
        let mut skipped = 0usize;
        let mut failure: Option<SendError> = None;
        let mut handle = |crash: Crash| {
            if !report {
                skipped += 1;
            } else if let Err(e) = self.report(&crash) {
                failure = Some(e);
                return ControlFlow::Break(());
            }
            if crash.cursor.is_some() {
                last_done = crash.cursor;
            }
            ControlFlow::Continue(())
        };
        match input {
            Some(file) => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let all: Vec<Crash> = text.lines().filter_map(parse_line).collect();
                // No journalctl seeks here: skip up to the stored cursor when it is present.
                let start = stored
                    .as_deref()
                    .and_then(|c| all.iter().position(|e| e.cursor.as_deref() == Some(c)))
                    .map_or(0, |i| i + 1);
                for crash in all.into_iter().skip(start) {
                    if handle(crash).is_break() {
                        break;
                    }
                }
            }
            None => {
                let args = journalctl_args(&position, boot.as_ref());
                journal::for_each_line(&program, &args, MAX_LINE, |line| match parse_line(line) {
                    // The stored entry itself, which `--cursor=` shows first: handled before.
                    Some(c) if journal::is_stored(c.cursor.as_deref(), stored.as_deref()) => {
                        ControlFlow::Continue(())
                    }
                    Some(crash) => handle(crash),
                    None => ControlFlow::Continue(()),
                })?;
            }
        }

        // Only when it moved; after a failed send it stays before the entry not delivered.
        if let (Some(c), false) = (&last_done, dry_run) {
            state::write(&self.cursor_file, &format!("{c}\n"))
                .with_context(|| format!("writing {}", self.cursor_file.display()))?;
        }
        self.cursor = last_done.or(stored);
        if !report {
            self.sender.tell_not_opted_in();
            if skipped > 0 {
                eprintln!(
                    "crashprobe: {skipped} crash{} of the opt-out period will not be reported.",
                    if skipped == 1 { "" } else { "es" }
                );
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Flood control, privacy filters, the core, the record: as the pipe mode.
    fn report(&mut self, crash: &Crash) -> Result<(), SendError> {
        let process = crash.process();
        // Crash time, not now: a batch of old entries is judged by when they crashed.
        let when = crash.time().unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        let flood = Flood::new(
            Flood::dir_in(&self.sender.config().cache_dir),
            self.settings.flood_window,
        );
        let suppressed = match flood.check(&process, when) {
            Ok(Verdict::Report { suppressed }) => suppressed,
            Ok(Verdict::Suppress { count }) => {
                tracing::debug!(process, count, "repeated crash within the flood window");
                if self.settings.verbose {
                    println!("Repeated crash of {process} ({count} in the window): not reported.");
                }
                return Ok(());
            }
            Err(e) => {
                tracing::warn!("flood control state: {e}; reporting anyway");
                0
            }
        };
        // No COREDUMP_EXE: `process` is the bare name, which the filters treat as third party.
        if !self.sender.privacy_filters_lifted() {
            if let Some((severity, class, payload)) = Origin::of(&process).filtered_record() {
                return self.submit(severity, class, payload);
            }
        }
        let opts = &self.settings.options;
        match read_core(crash, &self.settings.coredump_dir, &opts.limits) {
            Ok(core) => {
                let bt = coredump::backtrace(&core, opts);
                let signal = crash.signal.filter(|s| *s >= 0).or(bt.signal);
                let payload = crash::crash_payload(&bt, &process, signal, suppressed);
                self.submit(3, crash::CLASS_CRASH, &payload)
            }
            Err(e) => {
                tracing::warn!("cannot read the core of {process}: {e}");
                let payload = crash::error_payload(&process, crash.signal, &e.to_string());
                self.submit(4, crash::CLASS_ERROR, &payload)
            }
        }
    }

    fn submit(&mut self, severity: u32, class: &str, payload: &str) -> Result<(), SendError> {
        if self.settings.verbose {
            print!("{payload}");
        }
        if let Outcome::Sent = self.sender.submit(severity, class, payload)? {
            tracing::debug!(class, "crash record sent");
        }
        Ok(())
    }
}

fn parse_line(line: &str) -> Option<Crash> {
    if line.trim().is_empty() {
        return None;
    }
    match parse_entry(line) {
        Ok(e) => Some(e),
        Err(err) => {
            tracing::debug!("not a journal entry: {err}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_text_binary_repeated_and_null_fields() {
        let c = parse_entry(
            r#"{"__CURSOR":"s=1","COREDUMP_EXE":"/usr/bin/x","COREDUMP_COMM":[120,255],"COREDUMP_PID":"42","COREDUMP_SIGNAL":["11","6"],"COREDUMP_TIMESTAMP":"1700000000123456","COREDUMP":[127,69,76,70],"COREDUMP_FILENAME":null,"OTHER":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(c.cursor.as_deref(), Some("s=1"));
        assert_eq!(c.exe.as_deref(), Some("/usr/bin/x"));
        assert_eq!(c.comm.as_deref(), Some("x\u{fffd}"));
        assert_eq!(c.pid, Some(42));
        assert_eq!(c.signal, Some(11));
        assert_eq!(c.time(), Some(1_700_000_000));
        assert_eq!(c.core.as_deref(), Some(&b"\x7fELF"[..]));
        assert_eq!(c.filename, None);
        assert_eq!(c.process(), "/usr/bin/x");
        let c = parse_entry(r#"{"COREDUMP_COMM":"x","COREDUMP":[]}"#).unwrap();
        assert_eq!(c.process(), "x");
        assert_eq!(c.core.as_deref(), Some(&b""[..]));
        assert!(parse_entry(r#"{"COREDUMP":[1,256]}"#).is_err());
        assert!(parse_entry("nope").is_err());
    }

    #[test]
    fn compression_by_suffix() {
        let c = |p: &str| Compression::of(Path::new(p));
        let base = "/var/lib/systemd/coredump/core.a\\x2eb.1000.0123abcd.77.1700000000000000";
        assert_eq!(c(base), Compression::None);
        assert_eq!(c(&format!("{base}.zst")), Compression::Zstd);
        assert_eq!(c(&format!("{base}.lz4")), Compression::Lz4);
        assert_eq!(c(&format!("{base}.xz")), Compression::Xz);
        assert_eq!(
            c(&format!("{base}.gz")),
            Compression::Unknown("gz".to_string())
        );
        assert_eq!(c("/x/core"), Compression::None);
    }

    #[test]
    fn command_line() {
        let args = journalctl_args(&Position::From("s=1;i=2"), Some(&Boot::Current));
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[1..6], ["-o", "json", "--no-pager", "-q", "--all"]);
        assert!(args[6].starts_with("--output-fields=COREDUMP_EXE,"));
        assert!(args[6].ends_with(",COREDUMP"));
        assert_eq!(
            args[7..],
            [
                "--cursor=s=1;i=2",
                "MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1"
            ]
        );
        assert_eq!(args[0], "-b");
        let boot = Boot::Id("0123abcd".into());
        let args = journalctl_args(&Position::Last, Some(&boot));
        assert_eq!(args.last(), Some(&OsString::from("_BOOT_ID=0123abcd")));
        assert!(!args.contains(&OsString::from("-b")));
        let args = journalctl_args(&Position::From("c1"), None);
        assert!(!args.contains(&OsString::from("-b")));
        assert!(args.contains(&OsString::from("--cursor=c1")));
    }

    #[test]
    fn core_files_outside_the_directory_or_odd_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limits = coredump::ReadLimits::default();
        let crash = |p: PathBuf| Crash {
            filename: Some(p),
            ..Crash::default()
        };
        let err = |c: &Crash| read_core(c, dir.path(), &limits).err().unwrap().to_string();
        assert!(err(&crash(PathBuf::from("/etc/passwd"))).contains("is not in"));
        assert!(err(&crash(dir.path().join("../x"))).contains("is not in"));
        assert!(err(&crash(PathBuf::from("rel/core"))).contains("is not in"));
        assert!(err(&Crash::default()).contains("has no core"));
        assert!(err(&crash(dir.path().join("core.a.1.b.2.3"))).contains("cannot open"));
        std::fs::create_dir(dir.path().join("core.d.1.b.2.3")).unwrap();
        assert!(err(&crash(dir.path().join("core.d.1.b.2.3"))).contains("not a regular file"));
        std::fs::write(dir.path().join("core.z.1.b.2.3.zst"), b"not zstd").unwrap();
        assert!(err(&crash(dir.path().join("core.z.1.b.2.3.zst"))).contains("not a zstd stream"));
        // Garbage inside a valid zstd frame: the core reader's error.
        let z = ruzstd::encoding::compress_to_vec(
            &b"garbage, not a core"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        std::fs::write(dir.path().join("core.g.1.b.2.3.zst"), z).unwrap();
        let e = err(&crash(dir.path().join("core.g.1.b.2.3.zst")));
        assert!(e.contains(".zst (zstd): ") && !e.contains("stream"), "{e}");
        std::fs::write(dir.path().join("core.l.1.b.2.3.lz4"), b"not lz4").unwrap();
        let e = err(&crash(dir.path().join("core.l.1.b.2.3.lz4")));
        assert!(e.contains(".lz4 (lz4): "), "{e}");
        std::fs::write(dir.path().join("core.x.1.b.2.3.xz"), b"not xz").unwrap();
        let e = err(&crash(dir.path().join("core.x.1.b.2.3.xz")));
        assert!(e.contains(".xz (xz): "), "{e}");
        let e = err(&crash(dir.path().join("core.q.1.b.2.3.gz")));
        assert!(
            e.contains("unknown (.gz) compression is not supported"),
            "{e}"
        );
    }
}
