//! End-to-end tests live in `tests/`; they run the binaries the workspace build leaves in
//! `target/<profile>/` (scripts/test.sh builds the workspace before testing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// `target/<profile>/`: the directory above the running test binary's `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A binary of the workspace; the build must have happened (scripts/test.sh does it).
pub fn bin(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}
