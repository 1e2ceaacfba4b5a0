//! pstore dumps: file names, reassembly of multi-part dumps, and the list of dumps already
//! handled (the original probe's rules, docs/probes.md).
//!
//! The kernel writes a dump in parts, newest text first: `Part1` holds the end of the log, the
//! highest part the oldest text. So a dump is the parts' text from the highest part number down
//! to 1. Each file starts with a header line such as `Oops#1 Part1`.
//!
//! - EFI: `dmesg-efi-<id>`, id = (timestamp × 100 + part) × 1000 + count; the parts of one dump
//!   share the count.
//! - ramoops: `dmesg-ramoops-<n>`, each file a dump of its own (count n + 1, part 1).
//!
//! Fixed from the original: single-part dumps work (it asserted more than one part), a last
//! line without `\n` is read (it looped forever), and an oops still open at the end of a dump is
//! reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory where the kernel's pstore file system is mounted by default.
pub const PSTORE_DIR: &str = "/sys/fs/pstore";

/// The list of handled dumps, below `cache_dir` (the directory the pstore-probe unit may
/// write; pstoreclean only reads it).
pub const PROCESSED_FILE: &str = "pstore/processed";

/// Where the list of handled dumps is kept for this configuration.
pub fn processed_path(config: &telemetry::Config) -> PathBuf {
    config.cache_dir.join(PROCESSED_FILE)
}

/// Backend that wrote a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// UEFI variables (`dmesg-efi-…`).
    Efi,
    /// Reserved RAM (`dmesg-ramoops-…`).
    Ramoops,
}

/// What a dump file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpName {
    pub backend: Backend,
    /// Dump counter: the parts of one dump share it.
    pub count: u64,
    /// Part number, 1 = newest text.
    pub part: u64,
    /// Seconds since the epoch when the part was written (EFI only; 0 for ramoops).
    pub timestamp: u64,
}

/// Parses a pstore file name; `None` for anything that is not a dmesg dump.
pub fn parse_name(name: &str) -> Option<DumpName> {
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if let Some(id) = name.strip_prefix("dmesg-efi-").and_then(digits) {
        return Some(DumpName {
            backend: Backend::Efi,
            count: id % 1000,
            part: (id / 1000) % 100,
            timestamp: id / 100_000,
        });
    }
    let n = name.strip_prefix("dmesg-ramoops-").and_then(digits)?;
    Some(DumpName {
        backend: Backend::Ramoops,
        count: n.checked_add(1)?,
        part: 1,
        timestamp: 0,
    })
}

/// Removes the pstore header line (`Oops#1 Part1`, `Panic#2 Part3` …) if the text starts with
/// one; other text is left whole.
pub fn strip_header(text: &str) -> &str {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let is_header = first.split_once('#').is_some_and(|(why, tail)| {
        !why.is_empty()
            && !why.contains(char::is_whitespace)
            && tail.split_once(" Part").is_some_and(|(n, p)| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
            })
    });
    if is_header {
        rest
    } else {
        text
    }
}

/// One file of a dump, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// File name in the pstore directory.
    pub file: String,
    /// What the name says.
    pub name: DumpName,
    /// The text after the header line.
    pub text: String,
}

/// A dump put together from its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// The files it was made from.
    pub files: Vec<String>,
    /// The whole text, oldest first; `None` when a part is missing or empty (then nothing is
    /// reported, as in the original).
    pub text: Option<String>,
}

/// Groups parts into dumps and puts each together, in a stable order (backend, count).
/// Parts are grouped by count; if one count holds the same part number twice (dumps of two
/// boots that were never cleaned), that count is grouped by timestamp as well.
pub fn assemble(parts: Vec<Part>) -> Vec<Dump> {
    let mut by_count: BTreeMap<(Backend, u64), Vec<Part>> = BTreeMap::new();
    for p in parts {
        by_count
            .entry((p.name.backend, p.name.count))
            .or_default()
            .push(p);
    }
    let mut dumps = Vec::new();
    for (_, group) in by_count {
        let numbers: BTreeSet<u64> = group.iter().map(|p| p.name.part).collect();
        if numbers.len() == group.len() {
            dumps.push(join(group));
            continue;
        }
        let mut by_time: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
        for p in group {
            by_time.entry(p.name.timestamp).or_default().push(p);
        }
        dumps.extend(by_time.into_values().map(join));
    }
    dumps
}

/// Puts one dump's parts together: every part 1..=max present once and not empty, text from
/// the highest part down to part 1.
fn join(mut parts: Vec<Part>) -> Dump {
    parts.sort_by(|a, b| b.name.part.cmp(&a.name.part).then(a.file.cmp(&b.file)));
    let files = parts.iter().map(|p| p.file.clone()).collect();
    let max = parts.first().map_or(0, |p| p.name.part);
    let complete = max >= 1
        && parts.len() as u64 == max
        && parts
            .iter()
            .zip((1..=max).rev())
            .all(|(p, want)| p.name.part == want && !p.text.is_empty());
    let text = complete.then(|| parts.iter().map(|p| p.text.as_str()).collect());
    Dump { files, text }
}

/// Identity of a dump file for the handled list: the kernel reuses names (ramoops-0 every
/// boot), so the modification time and size are part of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileId {
    pub name: String,
    pub mtime: i64,
    pub size: u64,
}

impl FileId {
    /// The identity of a regular file (symlinks are not followed: `None` for anything else).
    pub fn of(path: &Path) -> io::Result<Option<FileId>> {
        let meta = fs::symlink_metadata(path)?;
        if !meta.file_type().is_file() {
            return Ok(None);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Some(FileId {
            name,
            mtime: meta.mtime(),
            size: meta.size(),
        }))
    }

    fn render(&self) -> String {
        format!("{}\t{}\t{}", self.name, self.mtime, self.size)
    }

    fn parse(line: &str) -> Option<FileId> {
        let mut f = line.split('\t');
        let name = f.next()?.to_string();
        let mtime = f.next()?.parse().ok()?;
        let size = f.next()?.parse().ok()?;
        (!name.is_empty()).then_some(FileId { name, mtime, size })
    }
}

/// The dump files already handled (reported, skipped while opted out, or incomplete):
/// pstoreprobe does not report them again and pstoreclean may delete them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed(BTreeSet<FileId>);

impl Processed {
    /// Reads the list (empty when the file does not exist).
    pub fn load(path: &Path) -> io::Result<Processed> {
        let text = crate::state::read(path)?.unwrap_or_default();
        Ok(Processed(text.lines().filter_map(FileId::parse).collect()))
    }

    /// Writes the list.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = String::new();
        for id in &self.0 {
            text.push_str(&id.render());
            text.push('\n');
        }
        crate::state::write(path, &text)
    }

    /// True when this exact file was handled.
    pub fn contains(&self, id: &FileId) -> bool {
        self.0.contains(id)
    }

    /// Marks a file handled.
    pub fn insert(&mut self, id: FileId) {
        self.0.insert(id);
    }

    /// Forgets a file (after it was deleted).
    pub fn remove(&mut self, id: &FileId) {
        self.0.remove(id);
    }

    /// Keeps only entries for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&FileId) -> bool) {
        self.0.retain(keep);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A dump file found in the pstore directory, not yet handled.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub id: FileId,
    pub name: DumpName,
}

/// Lists the regular dmesg dump files in `dir` (sorted by name), skipping those in `done`.
pub fn scan_dir(dir: &Path, done: &Processed) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(parse_name) else {
            continue;
        };
        let path = entry.path();
        let Some(id) = FileId::of(&path)? else {
            continue;
        };
        if !done.contains(&id) {
            found.push(Found { path, id, name });
        }
    }
    found.sort_by(|a, b| a.id.name.cmp(&b.id.name));
    Ok(found)
}

/// Identities of every regular dmesg dump file in `dir` (handled or not).
pub fn dump_ids(dir: &Path) -> io::Result<Vec<FileId>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().and_then(parse_name).is_none() {
            continue;
        }
        if let Some(id) = FileId::of(&entry.path())? {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Reads one dump file as a part (header line removed, invalid UTF-8 replaced).
pub fn read_part(found: &Found) -> io::Result<Part> {
    let bytes = fs::read(&found.path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(Part {
        file: found.id.name.clone(),
        name: found.name,
        text: strip_header(&text).to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            parse_name("dmesg-efi-143994262108001"),
            Some(DumpName {
                backend: Backend::Efi,
                count: 1,
                part: 8,
                timestamp: 1439942621
            })
        );
        assert_eq!(
            parse_name("dmesg-ramoops-0"),
            Some(DumpName {
                backend: Backend::Ramoops,
                count: 1,
                part: 1,
                timestamp: 0
            })
        );
        assert_eq!(parse_name("dmesg-ramoops-0.enc.z"), None);
        assert_eq!(parse_name("dmesg-efi-"), None);
        assert_eq!(parse_name("console-ramoops-0"), None);
        assert_eq!(parse_name("dmesg-efi-+12"), None);
        assert_eq!(parse_name("dmesg-efi-99999999999999999999999"), None);
    }

    #[test]
    fn header_lines() {
        assert_eq!(strip_header("Oops#1 Part1\nabc\n"), "abc\n");
        assert_eq!(strip_header("Panic#12 Part3\nabc"), "abc");
        assert_eq!(strip_header("Oops#1 Part1"), "");
        assert_eq!(strip_header("<4>[ 1.0] BUG: x\n"), "<4>[ 1.0] BUG: x\n");
        assert_eq!(strip_header("a b#1 Part1\nx"), "a b#1 Part1\nx");
        assert_eq!(strip_header(""), "");
    }

    fn part(file: &str, text: &str) -> Part {
        Part {
            file: file.to_string(),
            name: parse_name(file).unwrap(),
            text: text.to_string(),
        }
    }

    #[test]
    fn parts_are_joined_highest_first() {
        let dumps = assemble(vec![
            part("dmesg-efi-100000001001", "newest\n"),
            part("dmesg-efi-100000003001", "oldest\n"),
            part("dmesg-efi-100000002001", "middle\n"),
        ]);
        assert_eq!(dumps.len(), 1);
        assert_eq!(dumps[0].text.as_deref(), Some("oldest\nmiddle\nnewest\n"));
        assert_eq!(dumps[0].files.len(), 3);
    }

    #[test]
    fn missing_or_empty_part_makes_the_dump_incomplete() {
        let dumps = assemble(vec![
            part("dmesg-efi-100000001001", "a\n"),
            part("dmesg-efi-100000003001", "c\n"),
        ]);
        assert_eq!(dumps[0].text, None);
        let dumps = assemble(vec![
            part("dmesg-efi-100000001001", "a\n"),
            part("dmesg-efi-100000002001", ""),
        ]);
        assert_eq!(dumps[0].text, None);
        let dumps = assemble(vec![part("dmesg-efi-100000000001", "part zero\n")]);
        assert_eq!(dumps[0].text, None);
    }

    #[test]
    fn single_parts_and_separate_counts() {
        let dumps = assemble(vec![
            part("dmesg-ramoops-0", "r0"),
            part("dmesg-ramoops-1", "r1"),
            part("dmesg-efi-100000001001", "e1"),
            part("dmesg-efi-100000001002", "e2"),
        ]);
        let texts: Vec<_> = dumps.iter().map(|d| d.text.as_deref()).collect();
        assert_eq!(texts, vec![Some("e1"), Some("e2"), Some("r0"), Some("r1")]);
    }

    #[test]
    fn same_count_from_two_boots_is_split_by_time() {
        let dumps = assemble(vec![
            part("dmesg-efi-100000001001", "old boot\n"),
            part("dmesg-efi-200000001001", "new boot\n"),
        ]);
        let texts: Vec<_> = dumps.iter().map(|d| d.text.as_deref()).collect();
        assert_eq!(texts, vec![Some("old boot\n"), Some("new boot\n")]);
    }

    #[test]
    fn processed_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("dmesg-ramoops-0");
        fs::write(&f, "x").unwrap();
        let id = FileId::of(&f).unwrap().unwrap();
        let mut p = Processed::default();
        p.insert(id.clone());
        let list = dir.path().join("state/pstore.processed");
        p.save(&list).unwrap();
        let back = Processed::load(&list).unwrap();
        assert!(back.contains(&id));
        assert_eq!(back.len(), 1);
        std::os::unix::fs::symlink(&f, dir.path().join("dmesg-ramoops-1")).unwrap();
        assert_eq!(
            FileId::of(&dir.path().join("dmesg-ramoops-1")).unwrap(),
            None
        );
        let found = scan_dir(dir.path(), &Processed::default()).unwrap();
        assert_eq!(found.len(), 1, "the symlink is not a dump file");
        assert!(scan_dir(dir.path(), &back).unwrap().is_empty());
    }
}
