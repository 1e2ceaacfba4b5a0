//! The crashed process's ELF modules: where each is mapped, its load bias, its build-id check
//! and its call-frame information (`.eh_frame`) read from the file on disk.

use std::fs::File;
use std::path::{Path, PathBuf};

use object::read::ReadCache;
use object::{Object, ObjectSection, ObjectSegment};

use crate::memory::Memory;
use crate::notes::{self, Mapping};

const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;

/// Call-frame information of one module, copied out of the file (`.eh_frame` of libc is
/// ~180 KiB; the rest of the file is never read).
pub(crate) struct Cfi {
    pub(crate) eh_frame: Vec<u8>,
    pub(crate) eh_frame_svma: u64,
    pub(crate) eh_frame_hdr: Option<(Vec<u8>, u64)>,
    pub(crate) text_svma: u64,
    pub(crate) got_svma: u64,
}

/// Whether the file on disk is the one that was mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// Build-ids in core memory and on disk are equal.
    Verified,
    /// The core has no copy of the ELF header page (or no build-id): trusted, unverified.
    Unverified,
    /// Different build-ids (rebuilt or upgraded since): its CFI and symbols would lie.
    Mismatch,
    /// No usable ELF file on disk (deleted, unreadable, not ELF).
    Missing,
}

pub(crate) struct Module {
    /// Path as the crashed process saw it (printed in frames).
    pub(crate) path: String,
    /// File on disk, when it can be used.
    pub(crate) disk: Option<PathBuf>,
    /// Runtime address minus the file's link-time address.
    pub(crate) bias: u64,
    pub(crate) identity: Identity,
    pub(crate) build_id: Option<Vec<u8>>,
    pub(crate) cfi: Option<Cfi>,
    /// Symbols (address, name) sorted by address, for a module with no file (the vDSO).
    pub(crate) symbols: Vec<(u64, String)>,
}

/// All modules plus an address index.
pub(crate) struct Modules {
    pub(crate) list: Vec<Module>,
    /// (start, end, index into `list`), sorted by start.
    ranges: Vec<(u64, u64, usize)>,
}

impl Modules {
    pub(crate) fn new(mappings: &[Mapping], memory: &Memory, vdso: Option<u64>) -> Modules {
        let mut list: Vec<Module> = Vec::new();
        let mut ranges = Vec::new();
        for m in mappings {
            let idx = match list.iter().position(|x| x.path == m.path) {
                Some(i) => i,
                None => {
                    list.push(load(m, mappings, memory));
                    list.len() - 1
                }
            };
            ranges.push((m.start, m.end, idx));
        }
        if let Some((base, (module, len))) = vdso.and_then(|b| Some((b, load_vdso(b, memory)?))) {
            let end = base.saturating_add(len);
            // Only when no file mapping claims the range (it never does on Linux).
            if !ranges.iter().any(|r| r.0 < end && base < r.1) {
                list.push(module);
                ranges.push((base, end, list.len() - 1));
            }
        }
        ranges.sort_unstable();
        Modules { list, ranges }
    }

    /// The module mapped at `addr`.
    pub(crate) fn find(&self, addr: u64) -> Option<usize> {
        let i = self
            .ranges
            .partition_point(|r| r.0 <= addr)
            .checked_sub(1)?;
        let (start, end, idx) = self.ranges[i];
        (start <= addr && addr < end).then_some(idx)
    }
}

fn load(first: &Mapping, all: &[Mapping], memory: &Memory) -> Module {
    let mut module = Module {
        path: first.path.clone(),
        disk: None,
        bias: 0,
        identity: Identity::Missing,
        build_id: None,
        cfi: None,
        symbols: Vec::new(),
    };
    if first.path.ends_with(" (deleted)") || !first.path.starts_with('/') {
        return module;
    }
    // Regular files only: a crafted core must not make us open a FIFO (blocks) or a device.
    if !std::fs::metadata(&first.path).is_ok_and(|m| m.is_file()) {
        return module;
    }
    let Ok(file) = File::open(&first.path) else {
        tracing::debug!(path = %first.path, "module not readable");
        return module;
    };
    let cache = ReadCache::new(file);
    let Ok(obj) = object::File::parse(&cache) else {
        return module; // not ELF (locale archive, font, ...)
    };
    // The mapping of file offset 0 (the ELF header page) fixes the bias; any mapping would do.
    let header_map = all
        .iter()
        .find(|m| m.path == first.path && m.file_offset == 0);
    let anchor = header_map.unwrap_or(first);
    let Some(bias) = bias_for(&obj, anchor) else {
        tracing::debug!(path = %first.path, "no PT_LOAD covers the mapped offset");
        return module;
    };
    module.bias = bias;
    module.disk = Some(PathBuf::from(&first.path));
    let disk_id = obj.build_id().ok().flatten().map(<[u8]>::to_vec);
    let core_id = header_map.and_then(|m| core_build_id(memory, m.start));
    module.identity = match (&core_id, &disk_id) {
        (Some(c), Some(d)) if c == d => Identity::Verified,
        (Some(_), _) => Identity::Mismatch,
        (None, _) => Identity::Unverified,
    };
    module.build_id = core_id.or(disk_id);
    if module.identity == Identity::Mismatch {
        tracing::warn!(path = %first.path, "build-id differs between core and disk: no symbols for it");
        module.disk = None;
        return module;
    }
    module.cfi = read_cfi(&obj);
    module
}

fn bias_for<'a, O: Object<'a>>(obj: &O, map: &Mapping) -> Option<u64> {
    obj.segments().find_map(|seg| {
        let (offset, size) = seg.file_range();
        let page_off = offset & !0xfff;
        (size > 0 && page_off <= map.file_offset && map.file_offset < offset.saturating_add(size))
            .then(|| {
                map.start
                    .wrapping_sub(seg.address().wrapping_sub(offset))
                    .wrapping_sub(map.file_offset)
            })
    })
}

fn read_cfi<'a, O: Object<'a>>(obj: &O) -> Option<Cfi> {
    let eh = obj.section_by_name(".eh_frame")?;
    let eh_frame = eh.data().ok()?.to_vec();
    let eh_frame_hdr = obj
        .section_by_name(".eh_frame_hdr")
        .and_then(|s| Some((s.data().ok()?.to_vec(), s.address())));
    let addr = |name: &str| obj.section_by_name(name).map_or(0, |s| s.address());
    Some(Cfi {
        eh_frame,
        eh_frame_svma: eh.address(),
        eh_frame_hdr,
        text_svma: addr(".text"),
        got_svma: addr(".got"),
    })
}

/// The vDSO as a module, parsed from its image in core memory; also returns its length.
fn load_vdso(base: u64, memory: &Memory) -> Option<(Module, u64)> {
    use object::{ObjectSymbol, ObjectSymbolTable};
    let image = memory.slice_from(base)?;
    let obj = object::File::parse(image).ok()?;
    let first_load = obj.segments().next()?;
    let bias = base.wrapping_sub(first_load.address());
    let len = obj
        .segments()
        .map(|s| {
            s.address()
                .wrapping_add(s.size())
                .wrapping_sub(first_load.address())
        })
        .max()
        .unwrap_or(0)
        .min(image.len() as u64)
        .max(1);
    let mut symbols: Vec<(u64, String)> = obj
        .dynamic_symbol_table()
        .map(|t| {
            t.symbols()
                .filter(|s| s.is_definition())
                .filter_map(|s| Some((s.address(), s.name().ok()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    symbols.sort();
    let module = Module {
        // Its soname, as ldd shows it.
        path: "linux-vdso.so.1".to_owned(),
        disk: None,
        bias,
        identity: Identity::Verified,
        build_id: obj.build_id().ok().flatten().map(<[u8]>::to_vec),
        cfi: read_cfi(&obj),
        symbols,
    };
    Some((module, len))
}

/// Reads NT_GNU_BUILD_ID from the ELF header page the core kept for a mapping.
pub(crate) fn core_build_id(memory: &Memory, start: u64) -> Option<Vec<u8>> {
    let page = memory.slice_from(start)?;
    let page = page.get(..page.len().min(4096))?;
    if page.get(0..4)? != b"\x7fELF" || page.get(4) != Some(&2) {
        return None;
    }
    let phoff = usize::try_from(notes::u64_at(page, 32)?).ok()?;
    let phentsize = usize::from(notes::u16_at(page, 54)?);
    let phnum = usize::from(notes::u16_at(page, 56)?);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let Some(ph) = page.get(at..at.checked_add(56)?) else {
            break;
        };
        if notes::u32_at(ph, 0)? != PT_NOTE {
            continue;
        }
        let off = usize::try_from(notes::u64_at(ph, 8)?).ok()?;
        let size = usize::try_from(notes::u64_at(ph, 32)?).ok()?;
        let Some(data) = page.get(off..off.checked_add(size)?) else {
            continue;
        };
        // .note.gnu.property is 8-aligned and may not split at 4; skip segments that fail.
        let Ok(list) = notes::parse_notes(data) else {
            continue;
        };
        if let Some(n) = list
            .iter()
            .find(|n| n.n_type == NT_GNU_BUILD_ID && n.name == b"GNU")
        {
            return Some(n.desc.to_vec());
        }
    }
    None
}

/// `<root>/.build-id/xx/rest.debug`, if that file exists.
pub(crate) fn debug_file(root: &Path, build_id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = build_id.split_first()?;
    let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    let p = root
        .join(".build-id")
        .join(format!("{first:02x}"))
        .join(format!("{hex}.debug"));
    p.is_file().then_some(p)
}
