//! System facts that go into every record header, read from their real sources: `uname`, the DMI
//! files under `/sys/class/dmi/id`, `/proc/cpuinfo` and os-release. The file root can be moved
//! (`SysInfo::gather(root)`, or `TELEM_SYSINFO_ROOT` for the process-wide copy) so tests run on
//! fixed fake system files.
//!
//! Fallbacks follow the original (`no_<key>_file`, `blank`, `unknown`, build `0`) but values are
//! whole: no 77-character cut, no lost last character, quotes around os-release values removed,
//! and a missing os-release gives `unknown` instead of an empty name.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::env;

/// The eight header values that describe the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysInfo {
    pub arch: String,
    pub host_type: String,
    pub build: String,
    pub kernel_version: String,
    pub system_name: String,
    pub board_name: String,
    pub cpu_model: String,
    pub bios_version: String,
}

/// Longest value kept from a system file; longer text is cut at a character boundary. Values this
/// long do not occur in practice; the cap keeps a hostile file from bloating every record.
const MAX_VALUE: usize = 256;

impl SysInfo {
    /// Reads every source below `root` (`/` on a real system).
    pub fn gather(root: &Path) -> SysInfo {
        let dmi = |file: &str, key: &str| dmi_value(root, file, key);
        let uts = rustix::system::uname();
        let arch = lossy(uts.machine().to_bytes(), "unknown");
        let kernel_version = lossy(uts.release().to_bytes(), "unknown");
        let os = OsRelease::read(root);
        SysInfo {
            arch,
            host_type: format!(
                "{}|{}|{}",
                dmi("sys_vendor", "sv"),
                dmi("product_name", "pn"),
                dmi("product_version", "pvr")
            ),
            build: os.version_id.unwrap_or_else(|| "0".to_string()),
            kernel_version,
            system_name: match (os.id, os.variant_id) {
                (Some(id), Some(v)) => format!("{id}_{v}"),
                (Some(id), None) => id,
                (None, _) => "unknown".to_string(),
            },
            board_name: format!("{}|{}", dmi("board_name", "bn"), dmi("board_vendor", "bv")),
            cpu_model: cpu_model(root),
            bios_version: dmi("bios_version", "bios"),
        }
    }

    /// The process-wide copy, gathered once (below `TELEM_SYSINFO_ROOT` if set, else `/`). System
    /// facts do not change while a process runs, and reading them once keeps record creation fast.
    pub fn cached() -> &'static SysInfo {
        static CACHE: OnceLock<SysInfo> = OnceLock::new();
        CACHE.get_or_init(|| {
            let root = std::env::var_os(env::SYSINFO_ROOT)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            SysInfo::gather(&root)
        })
    }
}

fn lossy(b: &[u8], fallback: &str) -> String {
    let s = clean(&String::from_utf8_lossy(b));
    if s.is_empty() {
        fallback.to_string()
    } else {
        s
    }
}

/// Keeps one line, without surrounding whitespace, control characters or excess length.
fn clean(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_VALUE {
        let mut cut = MAX_VALUE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn dmi_value(root: &Path, file: &str, key: &str) -> String {
    match fs::read(under(root, &format!("/sys/class/dmi/id/{file}"))) {
        Err(_) => format!("no_{key}_file"),
        Ok(bytes) => lossy(&bytes, "blank"),
    }
}

fn cpu_model(root: &Path) -> String {
    use std::io::BufRead;
    // Read only up to the first "model name" line: the kernel generates /proc/cpuinfo per CPU,
    // and on large machines reading all of it costs milliseconds.
    let Ok(file) = fs::File::open(under(root, "/proc/cpuinfo")) else {
        return "blank".to_string();
    };
    let mut reader = std::io::BufReader::with_capacity(4096, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return "blank".to_string(),
            Ok(_) => {}
        }
        if line.starts_with(b"model name") {
            let text = String::from_utf8_lossy(&line);
            return text
                .split_once(':')
                .map(|(_, v)| clean(v))
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "blank".to_string());
        }
    }
}

#[derive(Default)]
struct OsRelease {
    id: Option<String>,
    variant_id: Option<String>,
    version_id: Option<String>,
}

impl OsRelease {
    fn read(root: &Path) -> OsRelease {
        let text = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| fs::read(under(root, p)).ok());
        let mut os = OsRelease::default();
        let Some(text) = text else { return os };
        for line in String::from_utf8_lossy(&text).lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let slot = match k.trim() {
                "ID" => &mut os.id,
                "VARIANT_ID" => &mut os.variant_id,
                "VERSION_ID" => &mut os.version_id,
                _ => continue,
            };
            let v = clean(unquote(v.trim()));
            if slot.is_none() && !v.is_empty() {
                *slot = Some(v);
            }
        }
        os
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = under(root, rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn reads_fake_system_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "/sys/class/dmi/id/sys_vendor", "QEMU\n");
        write(
            r,
            "/sys/class/dmi/id/product_name",
            "Standard PC (Q35 + ICH9, 2009)\n",
        );
        // No trailing newline: the original lost the last character here.
        write(r, "/sys/class/dmi/id/product_version", "pc-q35-7.2");
        write(r, "/sys/class/dmi/id/board_name", "   \n");
        write(
            r,
            "/sys/class/dmi/id/bios_version",
            &format!("{}\n", "b".repeat(100)),
        );
        write(
            r,
            "/proc/cpuinfo",
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz\n",
        );
        write(
            r,
            "/etc/os-release",
            "NAME=\"Clear\"\nID=clear-linux-os\nVARIANT_ID=\"desktop\"\nVERSION_ID=\"22.04\"\nID=other\n",
        );
        let s = SysInfo::gather(r);
        assert_eq!(
            s.host_type,
            "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2"
        );
        assert_eq!(s.board_name, "blank|no_bv_file");
        assert_eq!(s.bios_version, "b".repeat(100));
        assert_eq!(s.cpu_model, "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz");
        assert_eq!(s.system_name, "clear-linux-os_desktop");
        assert_eq!(s.build, "22.04");
        assert!(!s.arch.is_empty() && !s.kernel_version.is_empty());
    }

    #[test]
    fn fallbacks_when_nothing_exists() {
        let d = tempfile::tempdir().unwrap();
        let s = SysInfo::gather(d.path());
        assert_eq!(s.host_type, "no_sv_file|no_pn_file|no_pvr_file");
        assert_eq!(s.board_name, "no_bn_file|no_bv_file");
        assert_eq!(s.bios_version, "no_bios_file");
        assert_eq!(s.cpu_model, "blank");
        assert_eq!(s.system_name, "unknown");
        assert_eq!(s.build, "0");
    }

    #[test]
    fn usr_lib_os_release_is_the_fallback() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "/usr/lib/os-release",
            "ID=debian\nVERSION_ID=12\n",
        );
        let s = SysInfo::gather(d.path());
        assert_eq!((s.system_name.as_str(), s.build.as_str()), ("debian", "12"));
    }
}
