//! Decoding of the core's ELF notes (x86_64 Linux layouts, little-endian).
//!
//! `object` has no structs for these, so the fixed offsets of the kernel's `elf_prstatus`,
//! `elf_prpsinfo`, `siginfo_t` and the NT_FILE table are decoded here, every read bounds-checked.

use crate::error::{Error, Result};

pub(crate) const NT_PRSTATUS: u32 = 1;
pub(crate) const NT_PRPSINFO: u32 = 3;
pub(crate) const NT_AUXV: u32 = 6;
/// Auxiliary vector entry holding the vDSO's address.
const AT_SYSINFO_EHDR: u64 = 33;
pub(crate) const NT_SIGINFO: u32 = 0x5349_4749;
pub(crate) const NT_FILE: u32 = 0x4649_4c45;

/// Number of registers in `user_regs_struct`.
pub(crate) const USER_REGS: usize = 27;
/// Indexes into `user_regs_struct` (r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx,
/// rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ...).
pub(crate) mod reg {
    pub(crate) const R15: usize = 0;
    pub(crate) const R14: usize = 1;
    pub(crate) const R13: usize = 2;
    pub(crate) const R12: usize = 3;
    pub(crate) const RBP: usize = 4;
    pub(crate) const RBX: usize = 5;
    pub(crate) const R11: usize = 6;
    pub(crate) const R10: usize = 7;
    pub(crate) const R9: usize = 8;
    pub(crate) const R8: usize = 9;
    pub(crate) const RAX: usize = 10;
    pub(crate) const RCX: usize = 11;
    pub(crate) const RDX: usize = 12;
    pub(crate) const RSI: usize = 13;
    pub(crate) const RDI: usize = 14;
    pub(crate) const RIP: usize = 16;
    pub(crate) const RSP: usize = 19;
}

/// One note: type, owner name and descriptor.
pub(crate) struct Note<'a> {
    pub(crate) n_type: u32,
    pub(crate) name: &'a [u8],
    pub(crate) desc: &'a [u8],
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// Splits a PT_NOTE segment into notes (4-byte aligned, as Linux and gdb write them).
pub(crate) fn parse_notes(data: &[u8]) -> Result<Vec<Note<'_>>> {
    let bad = |what: &str| Error::Malformed(format!("note segment: {what}"));
    let mut notes = Vec::new();
    let mut off = 0usize;
    while off + 12 <= data.len() {
        let namesz = u32_at(data, off).ok_or_else(|| bad("header"))? as usize;
        let descsz = u32_at(data, off + 4).ok_or_else(|| bad("header"))? as usize;
        let n_type = u32_at(data, off + 8).ok_or_else(|| bad("header"))?;
        let name_start = off + 12;
        let name_end = name_start
            .checked_add(namesz)
            .ok_or_else(|| bad("name size"))?;
        let desc_start = align4(name_end).ok_or_else(|| bad("name size"))?;
        let desc_end = desc_start
            .checked_add(descsz)
            .ok_or_else(|| bad("desc size"))?;
        if desc_end > data.len() {
            return Err(bad("a note runs past the end of its segment"));
        }
        let mut name = &data[name_start..name_end];
        while let [rest @ .., 0] = name {
            name = rest;
        }
        notes.push(Note {
            n_type,
            name,
            desc: &data[desc_start..desc_end],
        });
        off = align4(desc_end).ok_or_else(|| bad("desc size"))?;
    }
    Ok(notes)
}

/// Registers and ids of one thread (NT_PRSTATUS).
#[derive(Clone, Debug)]
pub(crate) struct PrStatus {
    pub(crate) tid: i32,
    pub(crate) cursig: u16,
    pub(crate) regs: [u64; USER_REGS],
}

pub(crate) fn parse_prstatus(desc: &[u8]) -> Result<PrStatus> {
    let bad = || {
        Error::Malformed(format!(
            "NT_PRSTATUS of {} bytes (expected 336)",
            desc.len()
        ))
    };
    let cursig = u16_at(desc, 12).ok_or_else(bad)?;
    let tid = u32_at(desc, 32).ok_or_else(bad)? as i32;
    let mut regs = [0u64; USER_REGS];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = u64_at(desc, 112 + 8 * i).ok_or_else(bad)?;
    }
    Ok(PrStatus { tid, cursig, regs })
}

/// Process id and command name (NT_PRPSINFO).
pub(crate) fn parse_prpsinfo(desc: &[u8]) -> Result<(i32, String)> {
    let bad = || {
        Error::Malformed(format!(
            "NT_PRPSINFO of {} bytes (expected 136)",
            desc.len()
        ))
    };
    let pid = u32_at(desc, 24).ok_or_else(bad)? as i32;
    let fname = desc.get(40..56).ok_or_else(bad)?;
    let end = fname.iter().position(|&b| b == 0).unwrap_or(fname.len());
    Ok((pid, String::from_utf8_lossy(&fname[..end]).into_owned()))
}

/// Signal number from NT_SIGINFO.
pub(crate) fn parse_siginfo(desc: &[u8]) -> Option<i32> {
    u32_at(desc, 0).map(|v| v as i32)
}

/// One file-backed mapping from NT_FILE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`, in bytes.
    pub file_offset: u64,
    /// Path as the crashed process saw it.
    pub path: String,
}

pub(crate) fn parse_nt_file(desc: &[u8]) -> Result<Vec<Mapping>> {
    let bad = |what: &str| Error::Malformed(format!("NT_FILE: {what}"));
    let count = u64_at(desc, 0).ok_or_else(|| bad("too short"))?;
    let page_size = u64_at(desc, 8).ok_or_else(|| bad("too short"))?;
    let count = usize::try_from(count).map_err(|_| bad("count"))?;
    let table_end = count
        .checked_mul(24)
        .and_then(|n| n.checked_add(16))
        .filter(|&n| n <= desc.len())
        .ok_or_else(|| bad("count larger than the note"))?;
    let mut names = desc[table_end..].split(|&b| b == 0);
    let mut maps = Vec::with_capacity(count);
    for i in 0..count {
        let at = 16 + 24 * i;
        let (Some(start), Some(end), Some(pgoff)) = (
            u64_at(desc, at),
            u64_at(desc, at + 8),
            u64_at(desc, at + 16),
        ) else {
            return Err(bad("table"));
        };
        let name = names
            .next()
            .ok_or_else(|| bad("fewer names than mappings"))?;
        maps.push(Mapping {
            start,
            end,
            file_offset: pgoff.wrapping_mul(page_size),
            path: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(maps)
}

/// The vDSO's load address from NT_AUXV (pairs of u64 type, value; 0 ends).
pub(crate) fn vdso_base(desc: &[u8]) -> Option<u64> {
    desc.chunks_exact(16)
        .map(|e| (u64_at(e, 0), u64_at(e, 8)))
        .take_while(|(t, _)| *t != Some(0))
        .find_map(|(t, v)| (t == Some(AT_SYSINFO_EHDR)).then_some(v).flatten())
        .filter(|&v| v != 0)
}
