//! Truncated, garbage and mutated cores give errors, never panics.

use std::io::Read;

use coredump::{Error, Options};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::fixture::{compile, make_core};

/// A real multi-threaded core and the program it came from (kept so its modules resolve;
/// both go away with the returned `Program`).
fn real_core() -> (crate::fixture::Program, Vec<u8>) {
    let p = compile(&[]);
    let core = make_core(&p.bin, &["threads"], p.dir.path());
    let bytes = std::fs::read(core).unwrap();
    (p, bytes)
}

fn parse(bytes: &[u8]) -> coredump::Result<coredump::Backtrace> {
    coredump::from_reader(bytes, &Options::default())
}

/// Where the notes end (all cores here have the headers and notes before the memory, or
/// after it for gdb cores; either way the first 64 bytes + table are headers).
fn phdr_end(core: &[u8]) -> usize {
    let phoff = u64::from_le_bytes(core[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(core[56..58].try_into().unwrap()) as usize;
    phoff + 56 * phnum
}

#[test]
fn truncated_core_is_a_clear_error() {
    let (_program, core) = real_core();
    let core = &core[..];
    let end = phdr_end(core);
    for cut in [
        0,
        1,
        4,
        20,
        63,
        64,
        end - 1,
        end,
        end + 100,
        core.len() / 2,
        core.len() - 1,
    ] {
        let err = parse(&core[..cut]).map(|_| ()).expect_err(&format!(
            "a core cut at {cut} of {} must not parse",
            core.len()
        ));
        let msg = err.to_string();
        match err {
            Error::Truncated { .. } | Error::NotACore(_) | Error::Malformed(_) => {}
            other => panic!("cut at {cut}: unexpected {other:?}"),
        }
        assert!(!msg.is_empty());
    }
    assert!(matches!(
        parse(&core[..end + 100]),
        Err(Error::Truncated { .. })
    ));
    assert!(parse(core).is_ok());
}

#[test]
fn garbage_is_not_a_core() {
    assert!(matches!(
        parse(b"hello world, not an ELF file at all, just text.............."),
        Err(Error::NotACore(_))
    ));
    let exe = std::fs::read("/bin/sh").unwrap();
    assert!(
        matches!(parse(&exe), Err(Error::NotACore(_))),
        "an executable is not a core"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse(&bytes);
    }
}

/// Real cores with random prefixes, byte flips in the headers and notes, and random cuts.
#[test]
fn mutated_real_core_never_panics() {
    let (_program, core) = real_core();
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };

    let mut runner = TestRunner::new(config.clone());
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..8192), |rest| {
            let mut bytes = core[..64].to_vec();
            bytes.extend_from_slice(&rest);
            let _ = parse(&bytes);
            Ok(())
        })
        .unwrap();

    let head_len = core.len().min(65536);
    let flips = proptest::collection::vec((0..head_len, any::<u8>()), 1..16);
    let mut runner = TestRunner::new(config);
    runner
        .run(&(flips, 0..=core.len() - head_len), |(flips, cut)| {
            let mut head = core[..head_len].to_vec();
            for (at, v) in flips {
                head[at] = v;
            }
            let reader = (&head[..]).chain(&core[head_len..head_len + cut]);
            if let Ok(bt) = coredump::from_reader(reader, &Options::default()) {
                let _ = bt.payload("x", bt.signal);
            }
            Ok(())
        })
        .unwrap();
}
