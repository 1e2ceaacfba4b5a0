//! For build scripts: link the unwinder (libgcc_eh) into the program instead of loading
//! libgcc_s.so.1 at run time: one shared library fewer to find, map and relocate at every
//! start. For telem-record-gen that measured about a fifth of its start-up, for telemprobd and
//! telempostd 0.1 MiB less idle RSS (docs/benchmarks.md). Everything else stays dynamically
//! linked. Each of them has a `build.rs` calling [`link`].
//!
//! rustc asks for `-lgcc_s` by name on linux-gnu; a linker script of that name, found first,
//! answers with the static archive. When the C compiler cannot name the archive (no GCC
//! installed), nothing changes and the program uses libgcc_s.so.1 as before.

use std::path::PathBuf;
use std::process::Command;

/// Puts a linker script named `libgcc_s.so` that reads libgcc_eh.a first on the link search
/// path of the package being built; a warning, and no change, when the archive is not found.
pub fn link() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    let Some(archive) = gcc_eh() else {
        let name = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
        println!("cargo:warning=libgcc_eh.a not found: {name} loads libgcc_s.so.1");
        return;
    };
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out.join("static-unwinder");
    let script = format!("INPUT({})\n", archive.display());
    if std::fs::create_dir_all(&dir).is_err()
        || std::fs::write(dir.join("libgcc_s.so"), script).is_err()
    {
        return;
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// The absolute path of libgcc_eh.a as the C compiler (`CC`, else `cc`: rustc's linker driver)
/// reports it; `None` when it names none.
pub fn gcc_eh() -> Option<PathBuf> {
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}
