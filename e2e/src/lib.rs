//! End-to-end tests live in `tests/`; they run the binaries the workspace build leaves in
//! `target/<profile>/` (scripts/test.sh builds the workspace before testing).
