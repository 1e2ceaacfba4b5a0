//! Backtraces of real cores: call chains, lines, threads, signal frames, stripped and rebuilt
//! binaries, separate debug files, the frame limit.

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;

use coredump::{Backtrace, Frame, Options, Thread};

use crate::fixture::{compile, line_of, make_core, recompile};

fn stream(core: &Path, opts: &Options) -> Backtrace {
    // A `File` used through `Read` only: the same one-pass path as a pipe.
    coredump::from_reader(File::open(core).unwrap(), opts).unwrap()
}

fn names(t: &Thread) -> Vec<&str> {
    t.frames
        .iter()
        .map(|f| f.function.as_deref().unwrap_or("???"))
        .collect()
}

/// The thread whose frames contain `function`.
fn thread_with<'a>(bt: &'a Backtrace, function: &str) -> &'a Thread {
    bt.threads
        .iter()
        .find(|t| names(t).contains(&function))
        .unwrap_or_else(|| panic!("no thread runs {function}:\n{bt}"))
}

/// Asserts that `chain` appears as consecutive frames, each in `module` at the given line,
/// and returns the index of its first frame.
fn assert_chain(t: &Thread, module: &Path, chain: &[(&str, u32)]) -> usize {
    let n = names(t);
    let start = n
        .iter()
        .position(|&f| f == chain[0].0)
        .unwrap_or_else(|| panic!("{n:?}"));
    for (i, (function, line)) in chain.iter().enumerate() {
        let f: &Frame = &t.frames[start + i];
        assert_eq!(
            f.function.as_deref(),
            Some(*function),
            "frame {}: {n:?}",
            start + i
        );
        assert_eq!(f.module.as_deref(), Some(module.to_str().unwrap()));
        assert!(
            f.file.as_deref().unwrap().ends_with("tests/c/crash.c"),
            "{f:?}"
        );
        assert_eq!(f.line, Some(*line), "line of {function}");
    }
    start
}

fn main_chain() -> Vec<(&'static str, u32)> {
    vec![
        ("inner", line_of("CRASH_LINE")),
        ("middle", line_of("MIDDLE_LINE")),
        ("outer", line_of("OUTER_LINE")),
        ("main", line_of("MAIN_LINE")),
    ]
}

#[test]
fn crash_core_names_the_call_chain_with_lines() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &[], p.dir.path());
    let bt = stream(&core, &Options::default());
    assert_eq!(bt.signal, Some(11));
    assert_eq!(bt.process_name, "crashme");
    assert_eq!(bt.threads.len(), 1);
    let t = &bt.threads[0];
    assert_eq!(t.tid, bt.pid);
    assert_eq!(
        assert_chain(t, &p.bin, &main_chain()),
        0,
        "inner is the crashing frame"
    );
    assert!(!t.truncated);
    assert!(t.frames.len() < 12, "the stack ends after _start: {bt}");
    let text = bt.payload("/usr/bin/crashme", Some(11));
    let want = format!(
        "#0 inner() - [{}] - {}:{}\n",
        p.bin.display(),
        t.frames[0].file.as_deref().unwrap(),
        line_of("CRASH_LINE")
    );
    assert!(text.contains(&want), "{text}");
}

#[test]
fn every_thread_is_unwound() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["threads"], p.dir.path());
    let bt = stream(&core, &Options::default());
    assert_eq!(bt.threads.len(), 3, "{bt}");
    let crashed = thread_with(&bt, "inner");
    assert_eq!(
        crashed.tid, bt.threads[0].tid,
        "the signalled thread comes first"
    );
    assert_eq!(bt.signal, Some(11));
    assert_chain(crashed, &p.bin, &main_chain());
    let workers: Vec<&Thread> = bt
        .threads
        .iter()
        .filter(|t| names(t).contains(&"worker"))
        .collect();
    assert_eq!(workers.len(), 2, "{bt}");
    for w in workers {
        assert_ne!(w.tid, crashed.tid);
        let start = assert_chain(
            w,
            &p.bin,
            &[
                ("worker_wait", line_of("WORKER_LINE")),
                ("worker", line_of("WORKER_CALL_LINE")),
            ],
        );
        // Below worker_wait: pause() in libc, above worker: start_thread/clone3 in libc.
        assert!(start >= 1, "{bt}");
        assert!(
            w.frames[0].module.as_deref().unwrap().contains("libc"),
            "{bt}"
        );
        assert!(
            w.frames.len() > start + 2,
            "the caller of worker is in libc: {bt}"
        );
    }
    let mut tids: Vec<i32> = bt.threads.iter().map(|t| t.tid).collect();
    tids.dedup();
    assert_eq!(tids.len(), 3);
}

#[test]
fn file_and_stream_give_the_same_backtrace() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["threads"], p.dir.path());
    let opts = Options::default();
    assert_eq!(
        coredump::from_path(&core, &opts).unwrap(),
        stream(&core, &opts)
    );
}

#[test]
fn signal_handler_frame_is_crossed() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["handler"], p.dir.path());
    let bt = stream(&core, &Options::default());
    assert_eq!(bt.signal, Some(6), "abort() in the handler: {bt}");
    let t = &bt.threads[0];
    let n = names(t);
    let h = assert_chain(t, &p.bin, &[("on_segv", line_of("HANDLER_LINE"))]);
    // The trampoline frame, then the interrupted code with its exact PC (line of the store).
    assert!(
        t.frames[h + 1].module.as_deref().unwrap().contains("libc"),
        "{bt}"
    );
    assert_eq!(assert_chain(t, &p.bin, &main_chain()), h + 2, "{n:?}");
}

#[test]
fn call_through_null_recovers_the_callers() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["nullcall"], p.dir.path());
    let bt = stream(&core, &Options::default());
    let t = &bt.threads[0];
    assert_eq!(
        t.frames[0],
        Frame {
            function: None,
            module: None,
            file: None,
            line: None
        }
    );
    let mut chain = main_chain();
    chain[0].1 = line_of("NULLCALL_LINE");
    assert_eq!(assert_chain(t, &p.bin, &chain), 1, "{bt}");
    assert!(bt.payload("x", None).contains("#0 (no symbols)\n"));
}

#[test]
fn deep_stack_stops_at_the_frame_limit() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["recurse", "100"], p.dir.path());
    let bt = stream(&core, &Options::default());
    let t = &bt.threads[0];
    assert!(t.truncated);
    assert_eq!(t.frames.len(), coredump::FRAMES_MAX);
    assert_chain(
        t,
        &p.bin,
        &[
            ("inner", line_of("CRASH_LINE")),
            ("middle", line_of("MIDDLE_LINE")),
        ],
    );
    assert!(names(t)[10..].iter().all(|&f| f == "recurse"));
    assert!(bt
        .payload("x", None)
        .contains("\nToo many frames. Backtrace truncated.\n"));
}

#[test]
fn stripped_binary_gives_frames_without_names() {
    let p = compile(&[]);
    let status = Command::new("strip").arg(&p.bin).status().unwrap();
    assert!(status.success());
    let core = make_core(&p.bin, &[], p.dir.path());
    let bt = stream(&core, &Options::default());
    let t = &bt.threads[0];
    let ours: Vec<&Frame> = t
        .frames
        .iter()
        .filter(|f| f.module.as_deref() == Some(p.bin.to_str().unwrap()))
        .collect();
    // inner, middle, outer, main, _start: still unwound through CFI, but nameless.
    assert!(ours.len() >= 4, "{bt}");
    assert!(
        ours.iter()
            .all(|f| f.function.is_none() && f.line.is_none()),
        "{bt}"
    );
    assert!(bt
        .payload("x", None)
        .contains(&format!("#0 ??? - [{}]\n", p.bin.display())));
}

#[test]
fn separate_debug_file_is_found_by_build_id() {
    let p = compile(&["-Wl,--build-id=sha1"]);
    let debug = p.dir.path().join("crashme.debug");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success());
    ok(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&p.bin)
        .arg(&debug));
    ok(Command::new("strip").arg(&p.bin));
    let out = Command::new("readelf")
        .arg("-n")
        .arg(&p.bin)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let id = text
        .split("Build ID: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let root = p.dir.path().join("debug");
    fs::create_dir_all(root.join(".build-id").join(&id[..2])).unwrap();
    fs::copy(
        &debug,
        root.join(".build-id")
            .join(&id[..2])
            .join(format!("{}.debug", &id[2..])),
    )
    .unwrap();
    let core = make_core(&p.bin, &[], p.dir.path());

    let opts = Options {
        debug_root: Some(root),
        ..Options::default()
    };
    assert_chain(&stream(&core, &opts).threads[0], &p.bin, &main_chain());
    let without = Options {
        debug_root: None,
        ..Options::default()
    };
    let bt = stream(&core, &without);
    assert_eq!(bt.threads[0].frames[0].function, None, "{bt}");
}

#[test]
fn rebuilt_binary_gets_no_symbols() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &[], p.dir.path());
    recompile(&p.bin, &["-DREBUILT"]);
    let bt = stream(&core, &Options::default());
    let t = &bt.threads[0];
    let f0 = &t.frames[0];
    assert_eq!(f0.module.as_deref(), Some(p.bin.to_str().unwrap()), "{bt}");
    assert_eq!(
        (f0.function.as_deref(), f0.line),
        (None, None),
        "no symbols from the wrong file"
    );
    // Frames of the rebuilt module are never named, whatever the unwinder recovers.
    assert!(t
        .frames
        .iter()
        .filter(|f| f.module == f0.module)
        .all(|f| f.function.is_none() && f.file.is_none()));
}

#[test]
fn big_core_is_read_in_bounded_memory() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["threads", "heap", "64"], p.dir.path());
    assert!(fs::metadata(&core).unwrap().len() > 64 << 20);
    let parsed =
        coredump::Core::from_reader(File::open(&core).unwrap(), &Default::default()).unwrap();
    // Three stacks near SP plus a few ELF header pages, not the 64 MiB heap.
    assert!(
        parsed.kept_bytes() < 2 << 20,
        "kept {} bytes",
        parsed.kept_bytes()
    );
    assert_eq!(parsed.thread_ids().len(), 3);
    let bt = coredump::backtrace(&parsed, &Options::default());
    assert_chain(thread_with(&bt, "inner"), &p.bin, &main_chain());
}

#[test]
fn optimized_build_unwinds_through_cfi_alone() {
    // -O2 omits frame pointers: only the CFI can step from one frame to the next.
    let p = compile(&["-O2", "-fomit-frame-pointer"]);
    let core = make_core(&p.bin, &["threads", "handler"], p.dir.path());
    let bt = stream(&core, &Options::default());
    let t = thread_with(&bt, "on_segv");
    let n = names(t);
    let h = n.iter().position(|&f| f == "on_segv").unwrap();
    // The trampoline: named from libc's .symtab, so only with libc's debug file installed.
    assert!(matches!(n[h + 1], "__restore_rt" | "???"), "{bt}");
    assert!(
        t.frames[h + 1].module.as_deref().unwrap().contains("libc"),
        "{bt}"
    );
    assert_eq!(
        &n[h + 2..h + 6],
        ["inner", "middle", "outer", "main"],
        "{bt}"
    );
    assert_eq!(t.frames[h + 2].line, Some(line_of("CRASH_LINE")), "{bt}");
    for w in bt.threads.iter().filter(|t| t.tid != bt.threads[0].tid) {
        assert!(
            names(w).windows(2).any(|p| p == ["worker_wait", "worker"]),
            "{bt}"
        );
    }
}

#[test]
fn thread_inside_the_vdso_is_unwound() {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["spin"], p.dir.path());
    let bt = stream(&core, &Options::default());
    let t = thread_with(&bt, "spinner");
    // Wherever the spinner was stopped (vDSO, libc's clock_gettime, spin itself), the chain
    // reaches spin -> spinner; the vDSO, not a file, is named from its image in the core.
    let start = assert_chain(t, &p.bin, &[("spinner", line_of("SPINNER_LINE"))])
        .checked_sub(1)
        .unwrap_or_else(|| panic!("nothing above spinner:\n{bt}"));
    let spin = &t.frames[start];
    assert_eq!(spin.function.as_deref(), Some("spin"), "{bt}");
    assert_eq!(spin.module.as_deref(), Some(p.bin.to_str().unwrap()));
    let call = line_of("SPIN_LINE");
    if start == 0 {
        // Stopped in spin's own code: any line of its loop (the call, or `spins++`).
        assert!(
            spin.line
                .is_some_and(|l| (call - 1..=call + 1).contains(&l)),
            "{spin:?}"
        );
    } else {
        // Called further in: spin's frame is at the call to clock_gettime.
        assert_eq!(spin.line, Some(call), "{bt}");
    }
    let f0 = &t.frames[0];
    if f0.module.as_deref() == Some("linux-vdso.so.1") {
        assert!(
            f0.function.as_deref().unwrap().contains("clock_gettime"),
            "{bt}"
        );
    }
    let vdso_frames = bt
        .threads
        .iter()
        .flat_map(|t| &t.frames)
        .filter(|f| f.module.as_deref() == Some("linux-vdso.so.1"))
        .count();
    eprintln!("frames in the vDSO: {vdso_frames}");
}
