//! The lean binaries load no libgcc_s: `static-unwinder` links the unwinder into
//! telem-record-gen (a fifth of its start-up) and both daemons (idle RSS). Whenever the C
//! compiler can name libgcc_eh.a, as on every machine that builds the workspace with GCC, a
//! binary that still needs libgcc_s.so.1 means the build helper stopped working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use object::elf::{FileHeader64, DT_NEEDED};
use object::read::elf::FileHeader;
use object::Endianness;

/// The shared libraries `path` names in its dynamic section.
fn needed(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let header = FileHeader64::<Endianness>::parse(&*data).unwrap();
    let endian = header.endian().unwrap();
    let sections = header.sections(endian, &*data).unwrap();
    let table = sections.dynamic_table(endian, &*data).unwrap();
    table
        .iter()
        .filter(|d| d.tag == DT_NEEDED)
        .map(|d| String::from_utf8_lossy(table.string(d).unwrap()).into_owned())
        .collect()
}

#[test]
fn the_lean_binaries_link_the_unwinder_in() {
    let Some(archive) = static_unwinder::gcc_eh() else {
        eprintln!("skipped: the C compiler names no libgcc_eh.a, so libgcc_s stays dynamic");
        return;
    };
    for name in ["telem-record-gen", "telemprobd", "telempostd"] {
        let libs = needed(&e2e::bin(name));
        assert!(
            libs.iter().any(|l| l.starts_with("libc.so")),
            "{name}: {libs:?}"
        );
        assert!(
            !libs.iter().any(|l| l.starts_with("libgcc_s")),
            "{name} needs {libs:?} although {} exists",
            archive.display()
        );
    }
}

#[test]
fn a_binary_without_the_helper_is_told_apart() {
    // telemctl has no build script: it loads libgcc_s like any Rust program on linux-gnu, so
    // `needed` reads the entry the test above looks for.
    let libs = needed(&e2e::bin("telemctl"));
    assert!(libs.iter().any(|l| l.starts_with("libgcc_s")), "{libs:?}");
}
