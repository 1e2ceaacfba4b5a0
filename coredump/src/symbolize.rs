//! Function names and source lines: the separate debug file found by build-id first, then the
//! module file itself (DWARF if present, else `.symtab`, else `.dynsym`).
//!
//! A file with `.debug_aranges` goes through [`LazyDwarf`] (only the units of the frames'
//! addresses are inflated and parsed); any other file, or one the lazy reader fails on, through
//! `addr2line::Loader`, which indexes all of its DWARF.

use std::fs::File;
use std::path::{Path, PathBuf};

use addr2line::Loader;
use object::read::{ReadCache, SymbolMap, SymbolMapEntry};
use object::Object;

use crate::dwarf::LazyDwarf;
use crate::modules::{debug_file, Identity, Module};

/// What symbolization found for one address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub(crate) function: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// Symbol sources for one module, opened on first use.
pub(crate) struct Symbolizer {
    sources: Vec<Source>,
    /// The module's own symbol list (the vDSO, which has no file).
    symbols: Vec<(u64, String)>,
}

impl Symbolizer {
    pub(crate) fn open(module: &Module, debug_root: Option<&Path>) -> Symbolizer {
        let mut sources = Vec::new();
        let symbols = module.symbols.clone();
        if module.identity == Identity::Mismatch {
            return Symbolizer { sources, symbols };
        }
        let debug = debug_root
            .zip(module.build_id.as_deref())
            .and_then(|(r, id)| debug_file(r, id));
        for path in debug.iter().chain(module.disk.iter()) {
            sources.extend(Source::open(path, true));
        }
        Symbolizer { sources, symbols }
    }

    /// Symbolizes a link-time address. One physical frame gives one answer: the name of the
    /// outermost (real, not inlined) function, like the symbol table would, and the source line
    /// of the address itself (innermost), like the original's `dwfl_module_getsrc`.
    pub(crate) fn lookup(&mut self, svma: u64) -> Symbol {
        let mut sym = Symbol::default();
        for source in &mut self.sources {
            let found = source.lookup(svma);
            if sym.line.is_none() && found.line.is_some() {
                sym.file = found.file;
                sym.line = found.line;
            }
            if found.function.is_some() {
                sym.function = found.function;
                break;
            }
        }
        if sym.function.is_none() {
            let i = self.symbols.partition_point(|s| s.0 <= svma);
            sym.function = i.checked_sub(1).map(|i| self.symbols[i].1.clone());
        }
        sym
    }
}

/// One file's DWARF and symbol table.
pub(crate) struct Source {
    path: PathBuf,
    kind: Kind,
}

enum Kind {
    /// Symbols are read from the file when DWARF does not name a function.
    Lazy(Box<LazyDwarf>, Option<SymbolMap<Named>>),
    Full(Box<Loader>),
}

/// An owned symbol-map entry (object's borrows the file).
struct Named {
    address: u64,
    size: u64,
    name: String,
}

impl SymbolMapEntry for Named {
    fn address(&self) -> u64 {
        self.address
    }
    fn size(&self) -> u64 {
        self.size
    }
}

impl Source {
    /// Opens a file for lookups; `lazy: false` always indexes all of its DWARF (tests).
    pub(crate) fn open(path: &Path, lazy: bool) -> Option<Source> {
        let lazy = if lazy {
            match LazyDwarf::open(path) {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(path = %path.display(), "lazy DWARF: {}", e.0);
                    None
                }
            }
        } else {
            None
        };
        let kind = match lazy {
            Some(l) => Kind::Lazy(Box::new(l), None),
            None => Kind::Full(Box::new(load(path)?)),
        };
        Some(Source {
            path: path.to_owned(),
            kind,
        })
    }

    pub(crate) fn lookup(&mut self, svma: u64) -> Symbol {
        if let Kind::Lazy(dwarf, symbols) = &mut self.kind {
            match dwarf.lookup(svma) {
                Ok(found) => {
                    let found = found.unwrap_or_default();
                    let mut sym = Symbol {
                        function: found.function,
                        file: found.file,
                        line: found.line,
                    };
                    if sym.function.is_none() {
                        let map = symbols.get_or_insert_with(|| symbol_map(&self.path));
                        sym.function = map.containing(svma).map(|s| demangle(&s.name));
                    }
                    return sym;
                }
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), "lazy DWARF failed, indexing all: {}", e.0);
                    match load(&self.path) {
                        Some(l) => self.kind = Kind::Full(Box::new(l)),
                        None => return Symbol::default(),
                    }
                }
            }
        }
        let Kind::Full(loader) = &self.kind else {
            return Symbol::default();
        };
        let mut sym = Symbol::default();
        if let Ok(mut frames) = loader.find_frames(svma) {
            let mut first = true;
            // Bounded: inline chains are short; a corrupt DWARF tree must not loop.
            for _ in 0..128 {
                let Ok(Some(frame)) = frames.next() else {
                    break;
                };
                if first {
                    if let Some(loc) = &frame.location {
                        if loc.line.is_some() {
                            sym.file = loc.file.map(str::to_owned);
                            sym.line = loc.line;
                        }
                    }
                    first = false;
                }
                if let Some(name) = frame.function.as_ref().and_then(|f| f.demangle().ok()) {
                    sym.function = Some(name.into_owned());
                }
            }
        }
        if sym.function.is_none() {
            sym.function = loader.find_symbol(svma).map(demangle);
        }
        sym
    }
}

fn load(path: &Path) -> Option<Loader> {
    Loader::new(path)
        .map_err(|e| tracing::debug!(path = %path.display(), "cannot load symbols: {e}"))
        .ok()
}

fn demangle(name: &str) -> String {
    addr2line::demangle_auto(name.into(), None).into_owned()
}

/// `.symtab`, else `.dynsym`, as addr2line's loader reads them.
fn symbol_map(path: &Path) -> SymbolMap<Named> {
    let Ok(file) = File::open(path) else {
        return SymbolMap::new(Vec::new());
    };
    let cache = ReadCache::new(file);
    let Ok(obj) = object::File::parse(&cache) else {
        return SymbolMap::new(Vec::new());
    };
    let list = obj
        .symbol_map()
        .symbols()
        .iter()
        .map(|s| Named {
            address: s.address(),
            size: s.size(),
            name: s.name().to_owned(),
        })
        .collect();
    SymbolMap::new(list)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;
    use std::process::Command;

    use object::{Object, ObjectSection};

    use super::Source;
    use crate::modules::debug_file;

    /// The lazy reader answers as addr2line does for every `step`-th address of `.text`;
    /// returns how many addresses had a line.
    fn same_as_addr2line(path: &Path, step: usize) -> usize {
        let data = std::fs::read(path).unwrap();
        let obj = object::File::parse(&*data).unwrap();
        let text = obj.section_by_name(".text").unwrap();
        let mut lazy = Source::open(path, true).unwrap();
        assert!(
            matches!(lazy.kind, super::Kind::Lazy(..)),
            "{} has .debug_aranges",
            path.display()
        );
        let mut full = Source::open(path, false).unwrap();
        let mut lines = 0;
        for svma in (text.address()..text.address() + text.size()).step_by(step) {
            let a = lazy.lookup(svma);
            assert_eq!(a, full.lookup(svma), "{} at {svma:#x}", path.display());
            assert!(
                matches!(lazy.kind, super::Kind::Lazy(..)),
                "fell back at {svma:#x}"
            );
            lines += usize::from(a.line.is_some());
        }
        lines
    }

    #[test]
    fn lazy_dwarf_matches_addr2line_on_the_test_program() {
        let dir = tempfile::tempdir().unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/crash.c");
        // -O2 gives inlined calls and split (.cold) functions; -gz compressed sections,
        // inflated a step at a time.
        for (name, flags) in [("o0", &["-O0"][..]), ("o2z", &["-O2", "-gz=zlib"][..])] {
            let bin = dir.path().join(name);
            let out = Command::new("gcc")
                .args(["-g", "-pthread", "-o"])
                .arg(&bin)
                .arg(src)
                .args(flags)
                .output()
                .expect("gcc must be installed");
            assert!(out.status.success(), "{out:?}");
            assert!(same_as_addr2line(&bin, 1) > 100, "{name}: lines found");
        }
    }

    /// Only where libc's separate debug info is installed (libc6-dbg); skipped elsewhere.
    #[test]
    fn lazy_dwarf_matches_addr2line_on_libc_debug_info() {
        let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let Some(debug) = std::fs::read(libc).ok().and_then(|data| {
            let id = object::File::parse(&*data).ok()?.build_id().ok()??.to_vec();
            debug_file(Path::new("/usr/lib/debug"), &id)
        }) else {
            eprintln!("no libc debug info installed: skipped");
            return;
        };
        assert!(same_as_addr2line(&debug, 257) > 1000);
    }
}
