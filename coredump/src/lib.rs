//! Symbolized backtraces of every thread from an x86_64 Linux ELF core, in pure Rust.
//!
//! The core is read in one forward pass (it may be a pipe from the kernel) keeping only the
//! notes and the stack bytes near each thread's stack pointer; the unwind tables, code and
//! symbols come from the files on disk named in the core's NT_FILE note. See
//! `docs/crashprobe.md` for the design.
//!
//! ```no_run
//! let bt = coredump::from_reader(std::io::stdin().lock(), &coredump::Options::default())?;
//! print!("{}", bt.payload("/usr/bin/app", bt.signal));
//! # Ok::<(), coredump::Error>(())
//! ```

mod backtrace;
mod core;
mod dwarf;
mod error;
mod memory;
mod modules;
mod notes;
mod source;
mod symbolize;
mod unwind;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use crate::backtrace::{Backtrace, Frame, Thread};
pub use crate::core::{Core, ReadLimits};
pub use crate::error::{Error, Result};
pub use crate::notes::Mapping;

use crate::modules::Modules;
use crate::symbolize::Symbolizer;
use crate::unwind::{Regs, Unwinder};

/// Frames per thread, as the original's `FRAMES_MAX`.
pub const FRAMES_MAX: usize = 64;

/// Where separate debug files live (`<root>/.build-id/xx/rest.debug`).
pub const DEFAULT_DEBUG_ROOT: &str = "/usr/lib/debug";

/// Tuning of a backtrace.
#[derive(Clone, Debug)]
pub struct Options {
    /// Frames per thread before the thread is marked truncated.
    pub max_frames: usize,
    /// Root of the build-id debug tree; `None` disables separate debug files.
    pub debug_root: Option<PathBuf>,
    /// How much of the core is kept.
    pub limits: ReadLimits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_frames: FRAMES_MAX,
            debug_root: Some(PathBuf::from(DEFAULT_DEBUG_ROOT)),
            limits: ReadLimits::default(),
        }
    }
}

/// Reads a core from a one-pass stream (stdin pipe) and unwinds all threads.
///
/// # Errors
/// A truncated, garbage or unsupported core, or a read error.
pub fn from_reader(reader: impl Read, opts: &Options) -> Result<Backtrace> {
    Ok(backtrace(&Core::from_reader(reader, &opts.limits)?, opts))
}

/// Reads a core file and unwinds all threads.
///
/// # Errors
/// As [`from_reader`], plus failing to open `path`.
pub fn from_path(path: &Path, opts: &Options) -> Result<Backtrace> {
    Ok(backtrace(&Core::from_path(path, &opts.limits)?, opts))
}

/// Reads an open core file (e.g. stdin redirected from a file) and unwinds all threads.
///
/// # Errors
/// As [`from_reader`].
pub fn from_file(file: std::fs::File, opts: &Options) -> Result<Backtrace> {
    Ok(backtrace(&Core::from_file(file, &opts.limits)?, opts))
}

/// Unwinds and symbolizes every thread of a parsed core. Never fails: what cannot be resolved
/// is reported as unknown (`???`, `(no symbols)`) or ends that thread's backtrace.
pub fn backtrace(core: &Core, opts: &Options) -> Backtrace {
    let modules = Modules::new(&core.mappings, &core.memory, core.vdso);
    tracing::debug!(
        modules = modules.list.len(),
        kept_bytes = core.memory.len(),
        "core read"
    );
    let mut unwinder = Unwinder::new(&modules, &core.memory);
    let mut symbolizers: Vec<Option<Symbolizer>> = (0..modules.list.len()).map(|_| None).collect();
    let threads = core
        .threads
        .iter()
        .map(|t| {
            let unwound = unwinder.unwind(Regs::from_user(&t.regs), opts.max_frames);
            let frames = unwound
                .frames
                .iter()
                .map(|raw| {
                    let Some(m) = raw.module else {
                        return Frame {
                            function: None,
                            module: None,
                            file: None,
                            line: None,
                        };
                    };
                    let module = &modules.list[m];
                    let sym = symbolizers[m]
                        .get_or_insert_with(|| Symbolizer::open(module, opts.debug_root.as_deref()))
                        .lookup(raw.lookup.wrapping_sub(module.bias));
                    Frame {
                        function: sym.function,
                        module: Some(module.path.clone()),
                        file: sym.file,
                        line: sym.line,
                    }
                })
                .collect();
            Thread {
                tid: t.tid,
                frames,
                truncated: unwound.truncated,
            }
        })
        .collect();
    Backtrace {
        pid: core.pid,
        process_name: core.process_name.clone(),
        signal: core.signal,
        threads,
    }
}
