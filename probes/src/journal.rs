//! journalprobe's logic: which journal entries are reported and how (the original probe's rules, docs/probes.md), and the
//! `journalctl` command line.
//!
//! The original reports every entry of the current boot with `EXIT_CODE=exited` (systemd's
//! "Main process exited, code=exited, status=…" for a failed service); when the privacy filters
//! are lifted, also every entry with `PRIORITY` 0 to 3. Each becomes one record,
//! `org.clearlinux/journal/error`, severity 2, payload `MESSAGE=<message>\n`.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context as _;

use serde_json::Value;

/// Classification of journal records.
pub const CLASSIFICATION: &str = "org.clearlinux/journal/error";
/// Severity of journal records.
pub const SEVERITY: u32 = 2;
/// Name of the cursor file in `state_dir`.
pub const CURSOR_FILE: &str = "journalprobe.cursor";

/// The fields of a journal entry that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `__CURSOR`: the entry's position.
    pub cursor: Option<String>,
    /// `MESSAGE`.
    pub message: Option<String>,
    /// `EXIT_CODE` (`exited`, `killed`, `dumped`).
    pub exit_code: Option<String>,
    /// `PRIORITY` (0 = emergency … 7 = debug).
    pub priority: Option<u8>,
}

/// Parses one line of `journalctl -o json`. A field is a string, an array of bytes (binary or
/// non-UTF-8 data), an array of values (a field given several times: the first is used) or
/// `null` (too large to show).
pub fn parse_entry(line: &str) -> Result<Entry, serde_json::Error> {
    let v: Value = serde_json::from_str(line)?;
    let field = |name: &str| v.get(name).and_then(field_text);
    Ok(Entry {
        cursor: field("__CURSOR"),
        message: field("MESSAGE"),
        exit_code: field("EXIT_CODE"),
        priority: field("PRIORITY").and_then(|p| p.trim().parse().ok()),
    })
}

fn field_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(Value::as_u64)
                .map(|b| u8::try_from(b).unwrap_or(b'?'))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Value::Array(items) => items.first().and_then(field_text),
        _ => None,
    }
}

impl Entry {
    /// Whether the original would report this entry.
    pub fn reportable(&self, privacy_filters_lifted: bool) -> bool {
        self.exit_code.as_deref() == Some("exited")
            || (privacy_filters_lifted && self.priority.is_some_and(|p| p <= 3))
    }

    /// The record payload: the raw `MESSAGE=` field as the original sent it, plus `\n`.
    pub fn payload(&self) -> String {
        format!("MESSAGE={}\n", self.message.as_deref().unwrap_or(""))
    }
}

/// How `journalctl` is asked for entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position<'a> {
    /// From this cursor's entry on (`--cursor=`): the entry itself comes first when it matches
    /// the filter, and the caller drops it ([`same_entry`]); the caller stores the new cursor.
    /// Not `--after-cursor=` or `--cursor-file=`: journalctl before v255 skips the first
    /// *matching* entry after them when the cursor's own entry does not match the filter
    /// (systemd issue #30288), and with `--cursor-file=` exits 1 when nothing matches at all.
    From(&'a str),
    /// From the start of the boot (no stored cursor).
    Start,
    /// Only the last entry of the boot, to learn where the journal ends (`--tail` on a first
    /// run).
    Last,
}

/// Which boot's entries are read ("the current boot").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// The boot `/proc/sys/kernel/random/boot_id` names: `journalctl -b`.
    Current,
    /// A boot named by the journal itself: the match `_BOOT_ID=<id>` (see [`find_boot`]).
    Id(String),
}

impl Boot {
    /// Adds the journalctl argument selecting this boot: `-b` in front, a match at the end
    /// (after the options, whatever the environment says about argument order).
    pub fn add_to(&self, args: &mut Vec<OsString>) {
        match self {
            Boot::Current => args.insert(0, "-b".into()),
            Boot::Id(id) => args.push(format!("_BOOT_ID={id}").into()),
        }
    }
}

/// Finds which boot "the current boot" is for `journalctl`, run once per process.
///
/// Normally `journalctl -b`, the boot id in `/proc`. But in a service sandboxed with
/// `ProtectKernelTunables=`/`ProtectControlGroups=` inside a container (`systemd-nspawn`), the
/// service's `/proc` loses the container's boot id that nspawn mounts over the kernel's, and
/// shows the host's (systemd issues #28059, #40135): `-b` then matches nothing, ever, and a
/// probe would report nothing and say nothing. So when `-b` finds no entry at all, the boot
/// of the journal's newest entry is used instead (journald writes in the running boot all the
/// time, so that is the container's) and a warning says so. When the journal shows nothing at
/// all, the user most likely cannot read it: warned too, and `-b` is kept.
pub fn find_boot(program: &Path) -> anyhow::Result<Boot> {
    let newest = |boot_only: bool| -> anyhow::Result<Option<Value>> {
        let mut args: Vec<OsString> = ["-o", "json", "--no-pager", "-q", "-n", "1"]
            .iter()
            .map(OsString::from)
            .collect();
        if boot_only {
            Boot::Current.add_to(&mut args);
        }
        let mut found = None;
        for_each_line(program, &args, 1 << 20, |line| {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                found = Some(v);
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    };
    if newest(true)?.is_some() {
        return Ok(Boot::Current);
    }
    let id = newest(false)?.and_then(|v| v.get("_BOOT_ID").and_then(field_text));
    match id {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            tracing::warn!(
                "the journal has no entry of this boot as /proc names it (a sandboxed service \
                 in a container sees the host's boot id); reading the boot of its newest \
                 entry, {id}"
            );
            Ok(Boot::Id(id))
        }
        _ => {
            tracing::warn!(
                "{} shows no journal entry at all: the journal is empty or this user cannot \
                 read it (members of the systemd-journal group can)",
                program.display()
            );
            Ok(Boot::Current)
        }
    }
}

/// Arguments for `journalctl`: the given boot, JSON, no pager, no informational messages; with
/// the privacy filters on, only `EXIT_CODE=exited` entries (with them lifted, everything is
/// read and filtered here, since the match is an OR across two fields).
pub fn journalctl_args(
    position: &Position<'_>,
    boot: &Boot,
    privacy_filters_lifted: bool,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-o", "json", "--no-pager", "-q"]
        .iter()
        .map(OsString::from)
        .collect();
    match position {
        Position::From(c) => args.push(format!("--cursor={c}").into()),
        Position::Start => {}
        Position::Last => args.extend(["-n", "1"].iter().map(OsString::from)),
    }
    if !privacy_filters_lifted && !matches!(position, Position::Last) {
        args.push("EXIT_CODE=exited".into());
    }
    boot.add_to(&mut args);
    args
}

/// Whether two cursors name the same entry. The same string does; otherwise the entry's boot,
/// monotonic time and hash (`b=`, `m=`, `x=`) must all be there and agree: an entry copied
/// into another file (the runtime journal flushed to `/var`) keeps those and gets a new
/// sequence number (`s=`, `i=`).
pub fn same_entry(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let field = |c: &str, key: &str| -> Option<String> {
        c.split(';')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    };
    ["b", "m", "x"]
        .iter()
        .all(|k| match (field(a, k), field(b, k)) {
            (Some(x), Some(y)) => !x.is_empty() && x == y,
            _ => false,
        })
}

/// The cursor a pass starts from: the one this process last handled (`in_memory`; a dry run
/// keeps it only there), else the one in `file`, trimmed; `None` when neither has one.
///
/// # Errors
/// The file exists and cannot be read.
pub fn stored_cursor(in_memory: Option<&str>, file: &Path) -> anyhow::Result<Option<String>> {
    if let Some(c) = in_memory {
        return Ok(Some(c.to_string()));
    }
    Ok(crate::state::read(file)
        .with_context(|| format!("reading {}", file.display()))?
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty()))
}

/// Whether an entry (its cursor) is the stored one, which a pass from [`Position::From`] is
/// shown again first and has handled before.
pub fn is_stored(entry: Option<&str>, stored: Option<&str>) -> bool {
    matches!((entry, stored), (Some(e), Some(s)) if same_entry(e, s))
}

/// Entries of `lines` that come after `cursor` (all of them when the cursor is `None` or not
/// among them). Used for `--input`, where no `journalctl` does the seeking.
pub fn after_cursor(entries: Vec<Entry>, cursor: Option<&str>) -> Vec<Entry> {
    let Some(c) = cursor else {
        return entries;
    };
    match entries.iter().position(|e| e.cursor.as_deref() == Some(c)) {
        Some(i) => entries.into_iter().skip(i + 1).collect(),
        None => entries,
    }
}

/// Runs `program` (journalctl) with `args` and calls `each` with every line of its output, in
/// order, until it breaks; the child is then killed (it is ours, and its output is not needed).
/// A line longer than `max_line` bytes is dropped unread with a warning, so one huge field
/// cannot make the caller hold it in memory. A non-zero exit status is an error unless `each`
/// stopped early. Shared by journalprobe-like callers (crashprobe `--journal`).
pub fn for_each_line(
    program: &Path,
    args: &[OsString],
    max_line: usize,
    mut each: impl FnMut(&str) -> ControlFlow<()>,
) -> anyhow::Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {}", program.display()))?;
    let Some(stdout) = child.stdout.take() else {
        anyhow::bail!("no output pipe from {}", program.display());
    };
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut stopped = false;
    loop {
        match read_bounded_line(&mut reader, &mut line, max_line)
            .with_context(|| format!("reading {}'s output", program.display()))?
        {
            None => break,
            Some(false) => {
                tracing::warn!(
                    "{}: an entry longer than {max_line} bytes was skipped",
                    program.display()
                );
            }
            Some(true) => {
                if each(&String::from_utf8_lossy(&line)).is_break() {
                    stopped = true;
                    break;
                }
            }
        }
    }
    if stopped {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", program.display()))?;
    if !stopped && !status.success() {
        anyhow::bail!("{} failed ({status})", program.display());
    }
    Ok(())
}

/// Reads one `\n`-terminated line into `line` (without the `\n`). `None` at the end of input,
/// `Some(false)` when the line was longer than `max` bytes (the rest of it is consumed and
/// dropped, `line` is left empty), `Some(true)` otherwise.
fn read_bounded_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    line.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1),
            None => (buf, buf.len()),
        };
        let end = chunk.len() < done;
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                *line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(done);
        if end {
            return Ok(Some(!too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_fields() {
        let e = parse_entry(
            r#"{"__CURSOR":"s=1;i=2","MESSAGE":"foo.service: Main process exited, code=exited, status=1/FAILURE","EXIT_CODE":"exited","PRIORITY":"5"}"#,
        )
        .unwrap();
        assert_eq!(e.cursor.as_deref(), Some("s=1;i=2"));
        assert_eq!(e.exit_code.as_deref(), Some("exited"));
        assert_eq!(e.priority, Some(5));
        assert!(e.reportable(false));
        assert_eq!(
            e.payload(),
            "MESSAGE=foo.service: Main process exited, code=exited, status=1/FAILURE\n"
        );
    }

    #[test]
    fn binary_and_repeated_fields() {
        let e = parse_entry(r#"{"MESSAGE":[104,105,255],"PRIORITY":["2","3"]}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some("hi\u{fffd}"));
        assert_eq!(e.priority, Some(2));
        let e = parse_entry(r#"{"MESSAGE":null}"#).unwrap();
        assert_eq!(e.message, None);
        assert_eq!(e.payload(), "MESSAGE=\n");
        assert!(parse_entry("not json").is_err());
    }

    #[test]
    fn what_is_reported() {
        let e = |code: Option<&str>, prio: Option<u8>| Entry {
            exit_code: code.map(str::to_string),
            priority: prio,
            ..Entry::default()
        };
        assert!(e(Some("exited"), None).reportable(false));
        assert!(!e(Some("killed"), Some(5)).reportable(false));
        assert!(!e(None, Some(3)).reportable(false));
        assert!(e(None, Some(3)).reportable(true));
        assert!(e(None, Some(0)).reportable(true));
        assert!(!e(None, Some(4)).reportable(true));
    }

    #[test]
    fn command_lines() {
        let args = journalctl_args(&Position::From("s=1;i=2"), &Boot::Current, false);
        assert_eq!(
            args,
            [
                "-b",
                "-o",
                "json",
                "--no-pager",
                "-q",
                "--cursor=s=1;i=2",
                "EXIT_CODE=exited"
            ]
            .map(OsString::from)
        );
        let args = journalctl_args(&Position::From("c1"), &Boot::Current, true);
        assert_eq!(args.last(), Some(&OsString::from("--cursor=c1")));
        let args = journalctl_args(&Position::Last, &Boot::Current, false);
        assert!(args.ends_with(&["-n".into(), "1".into()]));
        let boot = Boot::Id("0123abcd".into());
        let args = journalctl_args(&Position::Last, &boot, false);
        assert_eq!(args.last(), Some(&OsString::from("_BOOT_ID=0123abcd")));
        assert!(!args.contains(&OsString::from("-b")));
    }

    #[test]
    fn long_lines_are_dropped_whole() {
        let mut r = io::BufReader::with_capacity(4, &b"abc\nabcdefgh\n\nxy"[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        while let Some(ok) = read_bounded_line(&mut r, &mut line, 5).unwrap() {
            got.push((ok, String::from_utf8(line.clone()).unwrap()));
        }
        let want = [(true, "abc"), (false, ""), (true, ""), (true, "xy")];
        assert_eq!(got, want.map(|(o, s)| (o, s.to_string())));
    }

    #[test]
    fn lines_of_a_program() {
        let mut lines = Vec::new();
        let args = ["-c", "printf 'a\\nb\\nc\\n'"].map(OsString::from);
        for_each_line(Path::new("sh"), &args, 100, |l| {
            lines.push(l.to_string());
            if l == "b" {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(lines, ["a", "b"]);
        let args = ["-c", "exit 3"].map(OsString::from);
        assert!(for_each_line(Path::new("sh"), &args, 100, |_| ControlFlow::Continue(())).is_err());
    }

    #[test]
    fn same_entries() {
        let a = "s=1a;i=46;b=bb;m=72ed;t=661a;x=dd1f";
        assert!(same_entry(a, a));
        assert!(same_entry(a, "s=2c;i=9;b=bb;m=72ed;t=661a;x=dd1f"));
        assert!(!same_entry(a, "s=1a;i=47;b=bb;m=72ee;t=661b;x=3e51"));
        assert!(!same_entry(a, "s=1a;i=46;b=bb;m=72ed;t=661a"));
        assert!(!same_entry("c1", "c2"));
        assert!(!same_entry("s=1;b=;m=;x=", "s=2;b=;m=;x="));
    }

    #[test]
    fn cursor_skipping() {
        let e = |c: &str| Entry {
            cursor: Some(c.to_string()),
            ..Entry::default()
        };
        let all = vec![e("a"), e("b"), e("c")];
        let cur =
            |v: Vec<Entry>| -> Vec<String> { v.into_iter().filter_map(|e| e.cursor).collect() };
        assert_eq!(cur(after_cursor(all.clone(), None)), ["a", "b", "c"]);
        assert_eq!(cur(after_cursor(all.clone(), Some("b"))), ["c"]);
        assert_eq!(
            cur(after_cursor(all.clone(), Some("c"))),
            Vec::<String>::new()
        );
        assert_eq!(cur(after_cursor(all, Some("zz"))), ["a", "b", "c"]);
    }
}
