//! Crash grouping: the signature of a record whose payload carries a backtrace is its first frame
//! that is not on the skip list (the machinery every crash passes through: abort, assertion,
//! allocation, the kernel's warning and bug reporting), demangled.
//!
//! Two payload shapes carry frames:
//!
//! - crashprobe (`Process: …` then `Backtrace (TID n):` sections; the first section is the
//!   signalled thread, the only one used): `#0 function() - [/module/path] - file:line`,
//!   `#1 ??? - [/module/path]`, `#2 (no symbols)`;
//! - klogscanner / pstoreprobe (`Crash Report:` … `Backtrace :`): `#1 function - [kernel]`,
//!   where `? function` marks a frame the kernel only guessed from the stack.
//!
//! Unknown functions (`???`, `(no symbols)`) and guessed kernel frames are never blamed.

use serde::Serialize;

/// The group a crash belongs to: the blamed function and its module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Signature {
    pub function: String,
    /// The module as the payload names it (a path for user space, `kernel` for the kernel).
    pub module: String,
}

/// One frame of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// As printed, without the crashprobe's `()` suffix; empty when unknown.
    pub function: &'a str,
    pub module: &'a str,
    /// The kernel marked it `?`: a guess from stack contents, not a real caller.
    pub guessed: bool,
}

/// The frames of `payload` when it has one of the two backtrace shapes, innermost first.
pub fn frames(payload: &str) -> Option<Vec<Frame<'_>>> {
    Some(
        numbered_frames(payload)?
            .into_iter()
            .map(|(_, f)| f)
            .collect(),
    )
}

/// The frames of `payload` with the index of the line each was read from.
fn numbered_frames(payload: &str) -> Option<Vec<(usize, Frame<'_>)>> {
    if payload.starts_with("Crash Report:\n") {
        let mut lines = payload
            .lines()
            .enumerate()
            .skip_while(|(_, l)| *l != "Backtrace :");
        lines.next()?;
        Some(
            lines
                .filter_map(|(n, l)| frame_text(l).map(|t| (n, kernel_frame(t))))
                .collect(),
        )
    } else if payload.starts_with("Process: ") {
        let mut lines = payload
            .lines()
            .enumerate()
            .skip_while(|(_, l)| !l.starts_with("Backtrace (TID "));
        lines.next()?;
        Some(
            lines
                .take_while(|(_, l)| !l.is_empty())
                .filter_map(|(n, l)| frame_text(l).map(|t| (n, user_frame(t))))
                .collect(),
        )
    } else {
        None
    }
}

/// The text after `#N `, or `None` for a line that is not a frame.
fn frame_text(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    rest[digits..].strip_prefix(' ')
}

/// `function - [module]` (the module may be followed by ` - file:line`).
fn split_module(text: &str) -> (&str, &str) {
    match text.find(" - [") {
        Some(at) => {
            let after = &text[at + 4..];
            let module = after.find(']').map_or(after, |end| &after[..end]);
            (&text[..at], module)
        }
        None => (text, ""),
    }
}

fn kernel_frame(text: &str) -> Frame<'_> {
    let (function, module) = split_module(text);
    let (function, guessed) = match function.strip_prefix("? ") {
        Some(f) => (f, true),
        None => (function, false),
    };
    Frame {
        function: if function == "???" { "" } else { function },
        module,
        guessed,
    }
}

fn user_frame(text: &str) -> Frame<'_> {
    if text.starts_with("(no symbols)") {
        return Frame {
            function: "",
            module: "",
            guessed: false,
        };
    }
    let (function, module) = split_module(text);
    let function = function.strip_suffix("()").unwrap_or(function);
    Frame {
        function: if function == "???" { "" } else { function },
        module,
        guessed: false,
    }
}

/// C++ (Itanium) and Rust symbol names demangled; other names as they are. crashprobe already
/// demangles, so this matters for payloads from other senders and for names read from
/// `.dynsym` by older probes.
pub fn demangle(name: &str) -> String {
    let rust_legacy = name.starts_with("_ZN") && name.ends_with('E') && name.contains("17h");
    if name.starts_with("_R") || rust_legacy {
        if let Ok(d) = rustc_demangle::try_demangle(name) {
            // `{:#}` leaves out the hash suffix, which changes with every build.
            return format!("{d:#}");
        }
    }
    if name.starts_with("_Z") {
        if let Ok(Ok(d)) = cpp_demangle::Symbol::new(name).map(|s| s.demangle()) {
            return d;
        }
    }
    name.to_string()
}

/// Frames never blamed. An entry is `function` (any module) or `function [module]`; `*`
/// matches any text in either part; the module is compared with the last part of the frame's
/// module path (`libc.so.6`, `kernel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipList {
    entries: Vec<(String, Option<String>)>,
}

/// The default skip list: the frames a crash passes through on its way to the report.
pub const DEFAULT_SKIP: &[&str] = &[
    // Signals, abort and assertions (glibc).
    "raise",
    "__GI_raise",
    "abort",
    "__GI_abort",
    "pthread_kill",
    "__pthread_kill",
    "__pthread_kill_implementation",
    "__pthread_kill_internal",
    "__restore_rt",
    "__assert_fail",
    "__assert_fail_base",
    "__GI___assert_fail",
    "__assert_perror_fail",
    "__libc_message",
    "__libc_fatal",
    "__fortify_fail",
    "__chk_fail",
    "__stack_chk_fail",
    "malloc_printerr",
    // Allocation (glibc, C++, GLib, Rust).
    "malloc",
    "calloc",
    "realloc",
    "free",
    "cfree",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_free",
    // glibc's internal name for free in its debug information (a double free aborts in it).
    "__GI___libc_free",
    "_int_malloc",
    "_int_realloc",
    "_int_free",
    "_int_free_*",
    "tcache_*",
    "operator new*",
    "operator delete*",
    "g_malloc*",
    "g_realloc*",
    "g_free",
    "__rust_alloc*",
    "__rust_dealloc",
    "__rust_realloc",
    "alloc::alloc::*",
    // Termination and assertion helpers (C++, GLib, Rust).
    "std::terminate*",
    "__cxxabiv1::__terminate*",
    "__gnu_cxx::__verbose_terminate_handler*",
    "__cxa_throw",
    "__cxa_rethrow",
    "_Unwind_*",
    "g_assertion_message*",
    "g_assert_warning",
    "g_log*",
    "g_logv",
    "g_error",
    "rust_panic",
    "__rust_start_panic",
    "core::panicking::*",
    "std::panicking::*",
    "std::sys::*::abort_internal",
    "std::process::abort",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    // Kernel: stack dumps, warnings, bugs, page faults, allocation.
    "dump_stack [kernel]",
    "dump_stack_lvl [kernel]",
    "show_stack [kernel]",
    "show_trace_log_lvl [kernel]",
    "__warn [kernel]",
    "warn_slowpath_* [kernel]",
    "report_bug [kernel]",
    "handle_bug [kernel]",
    "exc_invalid_op [kernel]",
    "asm_exc_invalid_op [kernel]",
    "do_error_trap [kernel]",
    "do_invalid_op [kernel]",
    "invalid_op [kernel]",
    "panic [kernel]",
    "oops_end [kernel]",
    "die [kernel]",
    "no_context [kernel]",
    "__bad_area_nosemaphore [kernel]",
    "bad_area* [kernel]",
    "page_fault [kernel]",
    "do_page_fault [kernel]",
    "__do_page_fault [kernel]",
    "exc_page_fault [kernel]",
    "asm_exc_page_fault [kernel]",
    "page_fault_oops [kernel]",
    "kernelmode_fixup_or_oops [kernel]",
    "__might_sleep [kernel]",
    "___might_sleep [kernel]",
    "__might_resched [kernel]",
    "__schedule_bug [kernel]",
    "warn_alloc [kernel]",
    "__alloc_pages* [kernel]",
    "alloc_pages* [kernel]",
    "__kmalloc* [kernel]",
    "kmalloc* [kernel]",
    "kmem_cache_alloc* [kernel]",
    "kfree [kernel]",
];

impl Default for SkipList {
    fn default() -> Self {
        SkipList::new(DEFAULT_SKIP.iter().copied())
    }
}

impl SkipList {
    /// A list from entries as written in the configuration.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> SkipList {
        SkipList {
            entries: entries.into_iter().map(parse_entry).collect(),
        }
    }

    /// Whether `function` in `module` (a path or `kernel`) is never blamed.
    pub fn skips(&self, function: &str, module: &str) -> bool {
        let base = module.rsplit('/').next().unwrap_or(module);
        self.entries.iter().any(|(f, m)| {
            glob(f, function)
                && m.as_deref()
                    .is_none_or(|m| glob(m, base) || glob(m, module))
        })
    }

    /// The signature of `payload`: its first frame that is known, not guessed and not skipped.
    /// `None` for a payload without a backtrace or without such a frame.
    pub fn signature(&self, payload: &str) -> Option<Signature> {
        self.deciding(payload).map(|(_, s)| s)
    }

    /// The index (in `payload.lines()`) of the frame that decided the signature, for showing it.
    pub fn deciding_line(&self, payload: &str) -> Option<usize> {
        self.deciding(payload).map(|(n, _)| n)
    }

    fn deciding(&self, payload: &str) -> Option<(usize, Signature)> {
        numbered_frames(payload)?
            .into_iter()
            .filter(|(_, f)| !f.function.is_empty() && !f.guessed)
            .map(|(n, f)| (n, demangle(f.function), f.module))
            .find(|(_, function, module)| !self.skips(function, module))
            .map(|(n, function, module)| {
                (
                    n,
                    Signature {
                        function,
                        module: module.to_string(),
                    },
                )
            })
    }
}

/// A change to the configured skip list, kept in the database so every instance sharing it
/// applies the same list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkipEdit {
    pub entry: String,
    /// Added to the list (`true`) or removed from it.
    pub added: bool,
}

/// The longest skip-list entry an edit may add.
pub const MAX_SKIP_ENTRY: usize = 512;

/// The list in force: the configured entries without the removed ones, then the added ones
/// that are not configured already.
pub fn effective_entries(configured: &[String], edits: &[SkipEdit]) -> Vec<String> {
    let removed = |e: &str| edits.iter().any(|x| !x.added && x.entry == e);
    let mut out: Vec<String> = configured.iter().filter(|e| !removed(e)).cloned().collect();
    for x in edits.iter().filter(|x| x.added) {
        if !out.contains(&x.entry) {
            out.push(x.entry.clone());
        }
    }
    out
}

/// What a background regroup is doing or did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RegroupStatus {
    /// `idle` (none since start), `running`, `done` or `failed`.
    pub state: &'static str,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub examined: u64,
    pub changed: u64,
    pub error: Option<String>,
}

/// The grouping in force in a running server: the configured skip list with the stored edits
/// applied (replaced whenever the edits are read again), and the state of its regroup job.
#[derive(Debug)]
pub struct Grouping {
    configured: Vec<String>,
    current: std::sync::RwLock<std::sync::Arc<(Vec<String>, SkipList)>>,
    regroup: std::sync::Mutex<RegroupStatus>,
}

impl Grouping {
    /// The configured entries, no edits yet.
    pub fn new(configured: Vec<String>) -> Grouping {
        let list = SkipList::new(configured.iter().map(String::as_str));
        Grouping {
            current: std::sync::RwLock::new(std::sync::Arc::new((configured.clone(), list))),
            configured,
            regroup: std::sync::Mutex::new(RegroupStatus {
                state: "idle",
                ..RegroupStatus::default()
            }),
        }
    }

    /// The entries as configured, before any edit.
    pub fn configured(&self) -> &[String] {
        &self.configured
    }

    /// Applies `edits` (the whole stored set) to the configured entries.
    pub fn set_edits(&self, edits: &[SkipEdit]) {
        let entries = effective_entries(&self.configured, edits);
        let list = SkipList::new(entries.iter().map(String::as_str));
        let next = std::sync::Arc::new((entries, list));
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    fn current(&self) -> std::sync::Arc<(Vec<String>, SkipList)> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The entries in force.
    pub fn entries(&self) -> Vec<String> {
        self.current().0.clone()
    }

    /// The list in force.
    pub fn list(&self) -> SkipList {
        self.current().1.clone()
    }

    /// The signature of `payload` under the list in force.
    pub fn signature(&self, payload: &str) -> Option<Signature> {
        self.current().1.signature(payload)
    }

    /// The regroup job's state.
    pub fn regroup_status(&self) -> RegroupStatus {
        match self.regroup.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Marks a regroup as started unless one runs; whether this call started it.
    pub fn regroup_start(&self, now: i64) -> bool {
        let mut g = match self.regroup.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if g.state == "running" {
            return false;
        }
        *g = RegroupStatus {
            state: "running",
            started_at: Some(now),
            ..RegroupStatus::default()
        };
        true
    }

    /// Records how the running regroup ended.
    pub fn regroup_finish(&self, now: i64, result: Result<(u64, u64), String>) {
        let mut g = match self.regroup.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        g.finished_at = Some(now);
        match result {
            Ok((examined, changed)) => {
                g.state = "done";
                g.examined = examined;
                g.changed = changed;
            }
            Err(e) => {
                g.state = "failed";
                g.error = Some(e);
            }
        }
    }
}

/// `function` or `function [module]`.
fn parse_entry(e: &str) -> (String, Option<String>) {
    let e = e.trim();
    if let Some(head) = e.strip_suffix(']') {
        if let Some(at) = head.rfind(" [") {
            return (
                head[..at].trim().to_string(),
                Some(head[at + 2..].to_string()),
            );
        }
    }
    (e.to_string(), None)
}

/// `pattern` matches all of `text`, `*` standing for any text (possibly empty).
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("abort", "abort"));
        assert!(!glob("abort", "abort2"));
        assert!(glob("g_malloc*", "g_malloc0"));
        assert!(glob(
            "*::abort_internal",
            "std::sys::pal::unix::abort_internal"
        ));
        assert!(glob("a*b*c", "a-b-b-c"));
        assert!(!glob("a*b*c", "a-c"));
        assert!(glob("*", ""));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn entries_with_and_without_module() {
        let s = SkipList::new(["abort", "dump_stack [kernel]", "free [libc.so*]"]);
        assert!(s.skips("abort", "/usr/lib64/libc.so.6"));
        assert!(s.skips("dump_stack", "kernel"));
        assert!(!s.skips("dump_stack", "/usr/bin/x"));
        assert!(s.skips("free", "/usr/lib64/libc.so.6"));
        assert!(!s.skips("free", "/usr/bin/myprog"));
    }

    #[test]
    fn demangles_cpp_and_rust() {
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(
            demangle("_ZN4core9panicking5panic17h0123456789abcdefE"),
            "core::panicking::panic"
        );
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("_Znot a symbol"), "_Znot a symbol");
    }

    #[test]
    fn crashprobe_payload_blames_first_frame_past_abort() {
        let p = "Process: /usr/bin/x\nPID: 7\nSignal: 6\n\nBacktrace (TID 7):\n\
                 #0 __pthread_kill_implementation() - [/usr/lib64/libc.so.6] - pthread_kill.c:44\n\
                 #1 raise() - [/usr/lib64/libc.so.6]\n\
                 #2 abort() - [/usr/lib64/libc.so.6]\n\
                 #3 ??? - [/usr/lib64/libfoo.so]\n\
                 #4 _ZN3foo3barEv() - [/usr/bin/x] - foo.cc:3\n\
                 #5 main() - [/usr/bin/x]\n\
                 \nBacktrace (TID 8):\n#0 other() - [/usr/bin/x]\n";
        let s = SkipList::default().signature(p).unwrap();
        assert_eq!(s.function, "foo::bar()");
        assert_eq!(s.module, "/usr/bin/x");
    }

    #[test]
    fn no_backtrace_no_signature() {
        assert_eq!(SkipList::default().signature("hello"), None);
        assert_eq!(
            SkipList::default().signature("Crash Report:\nReason: x\n"),
            None
        );
        let only_abort = "Process: x\nPID: 1\n\nBacktrace (TID 1):\n#0 abort() - [/l/libc.so.6]\n#1 (no symbols)\n";
        assert_eq!(SkipList::default().signature(only_abort), None);
    }

    #[test]
    fn the_deciding_frame_is_the_signature_line() {
        let p = "Process: /usr/bin/x\nPID: 7\n\nBacktrace (TID 7):\n\
                 #0 raise() - [/usr/lib64/libc.so.6]\n\
                 #1 parse() - [/usr/bin/x]\n";
        assert_eq!(SkipList::default().deciding_line(p), Some(5));
        assert_eq!(p.lines().nth(5), Some("#1 parse() - [/usr/bin/x]"));
        assert_eq!(SkipList::default().deciding_line("hello"), None);
    }

    #[test]
    fn edits_change_the_configured_list() {
        let configured = vec!["abort".to_string(), "raise".to_string()];
        let edits = [
            SkipEdit {
                entry: "raise".into(),
                added: false,
            },
            SkipEdit {
                entry: "parse".into(),
                added: true,
            },
            SkipEdit {
                entry: "abort".into(),
                added: true,
            },
        ];
        assert_eq!(
            effective_entries(&configured, &edits),
            vec!["abort".to_string(), "parse".to_string()]
        );
        let g = Grouping::new(configured.clone());
        assert!(g.list().skips("raise", "/l/libc.so.6"));
        g.set_edits(&edits);
        assert!(!g.list().skips("raise", "/l/libc.so.6"));
        assert!(g.list().skips("parse", "/usr/bin/x"));
        g.set_edits(&[]);
        assert_eq!(g.entries(), configured);
    }
}
