//! System facts that go into every record header, read from their real sources: `uname`, the DMI
//! files under `/sys/class/dmi/id`, `/proc/cpuinfo` and os-release. The file root can be moved
//! (`SysInfo::gather(root)`, or `TELEM_SYSINFO_ROOT` for the process-wide copy) so tests run on
//! fixed fake system files.
//!
//! Fallbacks follow the original (`no_<key>_file`, `blank`, `unknown`, build `0`) but values are
//! whole: no 77-character cut, no lost last character, quotes around os-release values removed,
//! and a missing os-release gives `unknown` instead of an empty name.
//!
//! Every value is then made acceptable to the backend ([`SysInfo::gather`] ends with
//! [`SysInfo::backend_safe`]), because the backend rejects, and the sender then deletes, every
//! record of a machine whose DMI strings are long or not ASCII, or whose os-release build holds a
//! `+` or `~`; the original kept such values short only by accident (80-byte buffers).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::env;

/// The eight header values that describe the machine. `Default` is all empty: for a record that
/// is only checked, never shown or sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
/// The backend refuses `Board-Name`, `Cpu-Model` and `Bios-Version` of 200 characters or more.
const MAX_DMI_FIELD: usize = 199;
/// The backend refuses a `Host-Type` of 250 characters or more.
const MAX_HOST_TYPE: usize = 249;
/// The architectures the backend accepts.
const BACKEND_ARCHES: [&str; 10] = [
    "armv7l", "armv6l", "aarch64", "amd64", "sparc64", "ppc64", "i686", "i386", "x86_64", "ppc",
];

/// Printable ASCII only (other whitespace → space, anything else → `?`), trimmed, at most `max`
/// characters.
fn ascii(s: &str, max: usize) -> String {
    // The usual case, already acceptable: no per-character rebuilding (record creation's
    // start-up cost, docs/benchmarks.md).
    if s.len() <= max && s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return s.trim().to_string();
    }
    let mut out: String = s
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            c if c.is_whitespace() => ' ',
            _ => '?',
        })
        .collect();
    out.truncate(max);
    out.trim().to_string()
}

fn safe_build(build: &str, system_name: &str) -> String {
    let unquoted: String = build.chars().filter(|c| !matches!(c, '"' | '\'')).collect();
    let safe: String = if system_name == "clear-linux-os" {
        unquoted.chars().take_while(char::is_ascii_digit).collect()
    } else {
        unquoted
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    if safe.is_empty() {
        "0".to_string()
    } else {
        safe
    }
}

fn safe_arch(arch: &str) -> String {
    let mapped = match arch {
        "arm64" => "aarch64",
        "ppc64le" => "ppc64",
        "i486" | "i586" => "i686",
        a if a.starts_with("armv7") => "armv7l",
        a if a.starts_with("armv6") => "armv6l",
        a => a,
    };
    if BACKEND_ARCHES.contains(&mapped) {
        mapped.to_string()
    } else {
        ascii(arch, MAX_VALUE)
    }
}

/// At least three dot-separated parts, the first two numeric (`6.1.0-13-amd64`); a version
/// with fewer gets `.0` after its numeric `major.minor` (`6.1` → `6.1.0`, `6.1-rc1` → `6.1.0-rc1`),
/// one without a numeric start becomes `0.0.0-<text>`.
fn safe_kernel(k: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = k.splitn(3, '.').collect();
    if parts.len() == 3 && digits(parts[0]) && digits(parts[1]) {
        return k.to_string();
    }
    let major_end = k.find(|c: char| !c.is_ascii_digit()).unwrap_or(k.len());
    let (major, rest) = k.split_at(major_end);
    if let Some(after_dot) = rest.strip_prefix('.') {
        let minor_end = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        let (minor, tail) = after_dot.split_at(minor_end);
        if !major.is_empty() && !minor.is_empty() {
            return format!("{major}.{minor}.0{tail}");
        }
    }
    if !major.is_empty() && rest.is_empty() {
        return format!("{major}.0.0");
    }
    format!("0.0.0-{k}")
}

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
            // The original's key for a missing bios_version file is `bv` (the board vendor's
            // too): `no_bv_file` is what backends and dashboards have seen for years.
            bios_version: dmi("bios_version", "bv"),
        }
        .backend_safe()
    }

    /// The values made acceptable to the backend's checks, changing only what would be refused:
    /// - text is printable ASCII (other whitespace becomes a space, any other character `?`);
    /// - `board_name`, `cpu_model`, `bios_version` are cut to 199 characters, `host_type` to 249;
    /// - `system_name` loses quotes (the backend strips them before comparing);
    /// - `build`: for `clear-linux-os` its leading digits (`0` if none); otherwise quotes
    ///   removed and every character outside `A-Z a-z 0-9 . _ -` replaced by `_`;
    /// - `kernel_version` gets a third part when it has fewer (`6.1-rc1` → `6.1.0-rc1`);
    /// - `arch` spellings of the backend's architectures are mapped to its names (`arm64` →
    ///   `aarch64`, `ppc64le` → `ppc64`, `i586` → `i686`, `armv7*` → `armv7l`). An architecture the
    ///   backend does not list at all (e.g. `riscv64`) is sent as it is: no listed name is true.
    pub fn backend_safe(self) -> SysInfo {
        let system_name = match ascii(&self.system_name, MAX_VALUE).replace(['"', '\'', '`'], "") {
            n if n.trim().is_empty() => "unknown".to_string(),
            n => n,
        };
        let build = safe_build(&self.build, &system_name);
        SysInfo {
            arch: safe_arch(&self.arch),
            host_type: ascii(&self.host_type, MAX_HOST_TYPE),
            build,
            kernel_version: safe_kernel(&ascii(&self.kernel_version, MAX_VALUE)),
            system_name,
            board_name: ascii(&self.board_name, MAX_DMI_FIELD),
            cpu_model: ascii(&self.cpu_model, MAX_DMI_FIELD),
            bios_version: ascii(&self.bios_version, MAX_DMI_FIELD),
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
    // The real root needs no join, which parses both paths: nine of them at every start.
    if root.as_os_str() == "/" {
        PathBuf::from(abs)
    } else {
        root.join(abs.trim_start_matches('/'))
    }
}

fn dmi_value(root: &Path, file: &str, key: &str) -> String {
    match fs::read(under(root, &["/sys/class/dmi/id/", file].concat())) {
        Err(_) => ["no_", key, "_file"].concat(),
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
    fn hostile_system_files_give_values_the_backend_accepts() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let long = "L".repeat(300);
        write(r, "/sys/class/dmi/id/sys_vendor", &long);
        write(r, "/sys/class/dmi/id/product_name", "Größe ™\n");
        write(r, "/sys/class/dmi/id/board_name", &long);
        write(r, "/sys/class/dmi/id/board_vendor", "Vendör");
        write(r, "/sys/class/dmi/id/bios_version", "1.0 ß\n");
        write(
            r,
            "/proc/cpuinfo",
            &format!("model name\t: Intel® {long}\n"),
        );
        write(r, "/etc/os-release", "ID=debian\nVERSION_ID=\"12+deb~1\"\n");
        let s = SysInfo::gather(r);
        let printable = |v: &str| v.chars().all(|c| (' '..='~').contains(&c));
        for v in [&s.board_name, &s.cpu_model, &s.bios_version] {
            assert!(v.chars().count() < 200 && printable(v), "{v:?}");
        }
        assert!(s.host_type.chars().count() < 250 && printable(&s.host_type));
        assert_eq!(s.bios_version, "1.0 ?");
        assert_eq!(s.host_type, format!("{long}|Gr??e ?|no_pvr_file")[..249]);
        assert_eq!(s.build, "12_deb_1");

        write(
            r,
            "/etc/os-release",
            "ID=clear-linux-os\nVERSION_ID=\"40000+dev~1\"\n",
        );
        let s = SysInfo::gather(r);
        assert_eq!(
            (s.system_name.as_str(), s.build.as_str()),
            ("clear-linux-os", "40000")
        );
    }

    #[test]
    fn kernel_and_arch_spellings_the_backend_refuses_are_mapped() {
        for (k, want) in [
            ("6.1.0-13-amd64", "6.1.0-13-amd64"),
            ("6.1", "6.1.0"),
            ("6.1-rc1", "6.1.0-rc1"),
            ("6", "6.0.0"),
            ("weird", "0.0.0-weird"),
        ] {
            assert_eq!(safe_kernel(k), want);
        }
        for (a, want) in [
            ("x86_64", "x86_64"),
            ("arm64", "aarch64"),
            ("armv7hl", "armv7l"),
            ("i586", "i686"),
            ("ppc64le", "ppc64"),
            ("riscv64", "riscv64"),
        ] {
            assert_eq!(safe_arch(a), want);
        }
    }

    #[test]
    fn fallbacks_when_nothing_exists() {
        let d = tempfile::tempdir().unwrap();
        let s = SysInfo::gather(d.path());
        assert_eq!(s.host_type, "no_sv_file|no_pn_file|no_pvr_file");
        assert_eq!(s.board_name, "no_bn_file|no_bv_file");
        assert_eq!(s.bios_version, "no_bv_file");
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
