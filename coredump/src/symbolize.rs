//! Function names and source lines with addr2line: the separate debug file found by build-id
//! first, then the module file itself (DWARF if present, else `.symtab`, else `.dynsym`).

use std::path::Path;

use addr2line::Loader;

use crate::modules::{debug_file, Identity, Module};

/// What symbolization found for one address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub(crate) function: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// Loaders for one module, opened on first use.
pub(crate) struct Symbolizer {
    loaders: Vec<Loader>,
    /// The module's own symbol list (the vDSO, which has no file).
    symbols: Vec<(u64, String)>,
}

impl Symbolizer {
    pub(crate) fn open(module: &Module, debug_root: Option<&Path>) -> Symbolizer {
        let mut loaders = Vec::new();
        let symbols = module.symbols.clone();
        if module.identity == Identity::Mismatch {
            return Symbolizer { loaders, symbols };
        }
        let debug = debug_root
            .zip(module.build_id.as_deref())
            .and_then(|(r, id)| debug_file(r, id));
        for path in debug.iter().chain(module.disk.iter()) {
            match Loader::new(path) {
                Ok(l) => loaders.push(l),
                Err(e) => tracing::debug!(path = %path.display(), "cannot load symbols: {e}"),
            }
        }
        Symbolizer { loaders, symbols }
    }

    /// Symbolizes a link-time address. One physical frame gives one answer: the name of the
    /// outermost (real, not inlined) function, like the symbol table would, and the source line
    /// of the address itself (innermost), like the original's `dwfl_module_getsrc`.
    pub(crate) fn lookup(&self, svma: u64) -> Symbol {
        let mut sym = Symbol::default();
        for loader in &self.loaders {
            if let Ok(mut frames) = loader.find_frames(svma) {
                let mut first = true;
                // Bounded: inline chains are short; a corrupt DWARF tree must not loop.
                for _ in 0..128 {
                    let Ok(Some(frame)) = frames.next() else {
                        break;
                    };
                    if first {
                        if let Some(loc) = &frame.location {
                            if sym.line.is_none() && loc.line.is_some() {
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
                sym.function = loader
                    .find_symbol(svma)
                    .map(|n| addr2line::demangle_auto(n.into(), None).into_owned());
            }
            if sym.function.is_some() {
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
