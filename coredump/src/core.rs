//! Reads an x86_64 ELF core in one forward pass and keeps only what unwinding needs.
//!
//! Kept: the notes (threads, registers, mappings), the stack bytes near each thread's stack
//! pointer, and the first page of every file mapping at offset 0 (its ELF header, for the
//! build-id). Everything else (heap, most of the stacks) is skipped, so memory stays bounded
//! whatever the core's size.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::notes::{self, reg, Mapping, PrStatus};
use crate::source::{Seekable, Source, Stream};

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ET_CORE: u16 = 4;
const EM_X86_64: u16 = 62;
const PAGE: u64 = 4096;
/// Upper bound for all note segments together (the kernel's default limit is 4 MiB per note).
const MAX_NOTES: u64 = 64 << 20;
/// Upper bound for the vDSO image kept.
const VDSO_MAX: u64 = 64 << 10;

/// How much of the core to keep.
#[derive(Clone, Debug)]
pub struct ReadLimits {
    /// Stack bytes kept above each thread's stack pointer (clipped to its mapping).
    pub stack_window: u64,
    /// Upper bound for all kept stack bytes together; the per-thread window shrinks to fit.
    pub total_stack: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            stack_window: 8 << 20,
            total_stack: 64 << 20,
        }
    }
}

/// The parts of a core needed for a backtrace.
#[derive(Debug)]
pub struct Core {
    /// Process id (NT_PRPSINFO), else the first thread's id.
    pub pid: i32,
    /// Command name (NT_PRPSINFO `pr_fname`, at most 15 bytes).
    pub process_name: String,
    /// Signal that killed the process (NT_SIGINFO, else the signalled thread's `pr_cursig`).
    pub signal: Option<i32>,
    /// Threads in note order, the signalled thread moved first.
    pub(crate) threads: Vec<PrStatus>,
    /// File-backed mappings (NT_FILE).
    pub mappings: Vec<Mapping>,
    /// Kept memory.
    pub(crate) memory: Memory,
    /// Address of the vDSO (NT_AUXV), whose image the core holds (it is not a file).
    pub(crate) vdso: Option<u64>,
}

impl Core {
    /// Reads a core from a one-pass stream (a pipe), draining it to EOF.
    pub fn from_reader(reader: impl Read, limits: &ReadLimits) -> Result<Core> {
        read_stream(reader, limits)
    }

    /// Reads a core file, seeking to what is needed.
    pub fn from_path(path: &Path, limits: &ReadLimits) -> Result<Core> {
        Core::from_file(File::open(path)?, limits)
    }

    /// Reads an open core file, seeking to what is needed.
    pub fn from_file(file: File, limits: &ReadLimits) -> Result<Core> {
        let mut src = Seekable::new(file);
        let headers = read_headers(&mut src)?;
        read_body(&mut src, &headers, limits)
    }

    /// Bytes of process memory kept from the core (stacks near SP, ELF header pages).
    pub fn kept_bytes(&self) -> usize {
        self.memory.len()
    }

    /// Thread ids in note order.
    pub fn thread_ids(&self) -> Vec<i32> {
        self.threads.iter().map(|t| t.tid).collect()
    }
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn parse_ehdr(h: &[u8]) -> Result<(u64, u16, u16)> {
    if h.get(0..4) != Some(b"\x7fELF".as_slice()) {
        return Err(Error::NotACore("bad ELF magic"));
    }
    if h.get(4) != Some(&2) {
        return Err(Error::NotACore("not a 64-bit ELF file"));
    }
    if h.get(5) != Some(&1) {
        return Err(Error::NotACore("not little-endian"));
    }
    if h.len() < 64 {
        return Err(Error::Truncated {
            offset: 0,
            needed: 64,
        });
    }
    let short = || Error::NotACore("ELF header too short");
    if notes::u16_at(h, 16).ok_or_else(short)? != ET_CORE {
        return Err(Error::NotACore("ELF file is not a core (e_type)"));
    }
    if notes::u16_at(h, 18).ok_or_else(short)? != EM_X86_64 {
        return Err(Error::NotACore("core is not for x86_64"));
    }
    let phoff = notes::u64_at(h, 32).ok_or_else(short)?;
    let phentsize = notes::u16_at(h, 54).ok_or_else(short)?;
    let phnum = notes::u16_at(h, 56).ok_or_else(short)?;
    if phnum == 0xffff {
        return Err(Error::Unsupported(
            "more than 65534 program headers (PN_XNUM)",
        ));
    }
    if phnum > 0 && phentsize < 56 {
        return Err(Error::Malformed(format!("program header size {phentsize}")));
    }
    if phoff < 64 {
        return Err(Error::Malformed(format!(
            "program headers at offset {phoff}"
        )));
    }
    Ok((phoff, phentsize, phnum))
}

/// The ELF header and program header table, as read.
struct Headers {
    ehdr: Vec<u8>,
    phoff: u64,
    table: Vec<u8>,
    /// Segments sorted by file offset.
    segments: Vec<Segment>,
}

impl Headers {
    /// gdb's gcore writes the notes after the memory; a stream then cannot be read in one pass.
    fn notes_after_memory(&self) -> bool {
        let first = |t| {
            self.segments
                .iter()
                .find(|s| s.p_type == t && s.filesz > 0)
                .map(|s| s.offset)
        };
        matches!((first(PT_NOTE), first(PT_LOAD)), (Some(n), Some(l)) if n > l)
    }
}

fn read_headers(src: &mut impl Source) -> Result<Headers> {
    let ehdr = src.read_upto(0, 64)?;
    let (phoff, phentsize, phnum) = parse_ehdr(&ehdr)?;
    let table = src.read_at(phoff, u64::from(phentsize) * u64::from(phnum))?;
    let mut segments: Vec<Segment> = table
        .chunks_exact(usize::from(phentsize).max(1))
        .filter_map(|p| {
            Some(Segment {
                p_type: notes::u32_at(p, 0)?,
                offset: notes::u64_at(p, 8)?,
                vaddr: notes::u64_at(p, 16)?,
                filesz: notes::u64_at(p, 32)?,
            })
        })
        .collect();
    segments.sort_by_key(|s| s.offset);
    Ok(Headers {
        ehdr,
        phoff,
        table,
        segments,
    })
}

fn read_stream(reader: impl Read, limits: &ReadLimits) -> Result<Core> {
    let mut stream = Stream::new(reader);
    let headers = read_headers(&mut stream)?;
    if !headers.notes_after_memory() {
        return read_body(&mut stream, &headers, limits);
    }
    // Rare (a gcore file piped in; the kernel writes notes first): spool the rest to an
    // unlinked temporary file, so memory stays bounded, and read that instead.
    tracing::debug!("notes follow the memory: spooling the core to a temporary file");
    let mut file = tempfile::tempfile()?;
    file.write_all(&headers.ehdr)?;
    file.seek(SeekFrom::Start(headers.phoff))?;
    file.write_all(&headers.table)?;
    file.seek(SeekFrom::Start(stream.position()))?;
    io::copy(stream.inner_mut(), &mut file)?;
    read_body(&mut Seekable::new(file), &headers, limits)
}

fn read_body(src: &mut impl Source, headers: &Headers, limits: &ReadLimits) -> Result<Core> {
    let segments = &headers.segments;
    // Notes first (kernel and gdb both write them right after the headers).
    let mut note_bytes = Vec::new();
    let mut total = 0u64;
    for s in segments.iter().filter(|s| s.p_type == PT_NOTE) {
        total = total.saturating_add(s.filesz);
        if total > MAX_NOTES {
            return Err(Error::Malformed(format!(
                "note segments larger than {MAX_NOTES} bytes"
            )));
        }
        note_bytes.push((s.offset, src.read_at(s.offset, s.filesz)?));
    }
    let mut pid = None;
    let mut process_name = String::new();
    let mut siginfo = None;
    let mut threads = Vec::new();
    let mut mappings = Vec::new();
    let mut vdso = None;
    for (_, data) in &note_bytes {
        for note in notes::parse_notes(data)? {
            if note.name != b"CORE" {
                continue;
            }
            match note.n_type {
                notes::NT_PRSTATUS => threads.push(notes::parse_prstatus(note.desc)?),
                notes::NT_PRPSINFO => {
                    let (p, name) = notes::parse_prpsinfo(note.desc)?;
                    pid = Some(p);
                    process_name = name;
                }
                // The kernel writes one (the signalled thread's); gdb one per thread.
                notes::NT_SIGINFO if siginfo.is_none() => siginfo = notes::parse_siginfo(note.desc),
                notes::NT_FILE => mappings = notes::parse_nt_file(note.desc)?,
                notes::NT_AUXV => vdso = notes::vdso_base(note.desc),
                _ => {}
            }
        }
    }
    drop(note_bytes);
    // The kernel writes the signalled thread first; gdb's gcore writes them in its own order.
    // Put the first thread with a pending signal in front (not SIGSTOP, which gdb uses to
    // stop the other threads), the others keep their order.
    const SIGSTOP: u16 = 19;
    if let Some(i) = threads
        .iter()
        .position(|t| t.cursig != 0 && t.cursig != SIGSTOP)
    {
        let t = threads.remove(i);
        threads.insert(0, t);
    }
    let first = threads
        .first()
        .ok_or(Error::Malformed("no NT_PRSTATUS note".into()))?;
    let pid = pid.unwrap_or(first.tid);
    let signal = siginfo.or(Some(i32::from(first.cursig)).filter(|&s| s != 0));
    if mappings.is_empty() {
        tracing::warn!("core has no NT_FILE note: frames will have no module names");
    }

    // Address ranges to keep: each thread's stack from just below SP upwards, within the one
    // segment (the stack mapping) holding SP; and the ELF header page of each mapped file.
    let per_thread = (limits.total_stack / threads.len() as u64)
        .clamp(64 << 10, limits.stack_window.max(64 << 10));
    let loads: Vec<&Segment> = segments
        .iter()
        .filter(|s| s.p_type == PT_LOAD && s.filesz > 0)
        .collect();
    let containing = |addr: u64| {
        loads
            .iter()
            .find(|s| s.vaddr <= addr && addr - s.vaddr < s.filesz)
            .map(|s| (s.vaddr, s.vaddr.saturating_add(s.filesz)))
    };
    let mut windows: Vec<(u64, u64)> = threads
        .iter()
        .filter_map(|t| {
            let sp = t.regs[reg::RSP];
            let (seg_start, seg_end) = containing(sp)?;
            let page = sp & !(PAGE - 1);
            let lo = page.saturating_sub(PAGE).max(seg_start);
            Some((lo, page.saturating_add(per_thread).min(seg_end)))
        })
        .collect();
    windows.extend(
        mappings
            .iter()
            .filter(|m| m.file_offset == 0)
            .map(|m| (m.start, m.start.saturating_add(PAGE).min(m.end))),
    );
    // The vDSO image (two pages today), for its unwind tables and symbols.
    if let Some((start, end)) = vdso.and_then(containing) {
        windows.push((start, end.min(start.saturating_add(VDSO_MAX))));
    }
    windows.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(windows.len());
    for (a, b) in windows {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }

    // Clip the ranges to the PT_LOAD contents and read them in file order.
    let mut reads: Vec<(u64, u64, u64)> = Vec::new(); // (file offset, vaddr, len)
    for s in &loads {
        let seg_end = s.vaddr.saturating_add(s.filesz);
        for &(a, b) in &merged {
            let lo = a.max(s.vaddr);
            let hi = b.min(seg_end);
            if lo < hi {
                reads.push((s.offset.saturating_add(lo - s.vaddr), lo, hi - lo));
            }
        }
    }
    reads.sort_unstable();
    let mut memory = Memory::default();
    for (offset, vaddr, len) in reads {
        memory.insert(vaddr, src.read_at(offset, len)?);
    }
    // The input must hold every segment and the section header table (gdb writes one last).
    let sections_end = match (
        notes::u64_at(&headers.ehdr, 40),
        notes::u16_at(&headers.ehdr, 58),
        notes::u16_at(&headers.ehdr, 60),
    ) {
        (Some(off), Some(size), Some(num)) if off > 0 => {
            off.saturating_add(u64::from(size) * u64::from(num))
        }
        _ => 0,
    };
    let end = segments
        .iter()
        .map(|s| s.offset.saturating_add(s.filesz))
        .max()
        .unwrap_or(0)
        .max(sections_end);
    src.finish(end)?;
    memory.finish();
    Ok(Core {
        pid,
        process_name,
        signal,
        threads,
        mappings,
        memory,
        vdso,
    })
}
