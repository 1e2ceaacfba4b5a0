//! hprobe's payload (the original probe's rules, docs/probes.md):
//!
//! ```text
//! hello
//! LC_ALL: <locale>            (-l)
//! uptime: <seconds>           (-u)
//!
//! Bundles (<n>):              (-b)
//! <name>
//! …
//! ```
//!
//! The bundle list is cut to fit the record limit; a cut list ends with `...`.

use std::fs;
use std::io;
use std::path::Path;

use telemetry::record::MAX_PAYLOAD;

/// Classification of the hello record.
pub const HELLO: &str = "org.clearlinux/hello/world";
/// Classification of the heartbeat record (`-H`).
pub const HEARTBEAT: &str = "org.clearlinux/heartbeat/ping";
/// Where Clear Linux lists installed bundles.
pub const BUNDLES_DIR: &str = "/usr/share/clear/bundles";

/// glibc's locale categories in the order of its composite `LC_ALL` name.
const CATEGORIES: [&str; 12] = [
    "LC_CTYPE",
    "LC_NUMERIC",
    "LC_TIME",
    "LC_COLLATE",
    "LC_MONETARY",
    "LC_MESSAGES",
    "LC_PAPER",
    "LC_NAME",
    "LC_ADDRESS",
    "LC_TELEPHONE",
    "LC_MEASUREMENT",
    "LC_IDENTIFICATION",
];

/// What `setlocale(LC_ALL, "")` followed by `setlocale(LC_ALL, NULL)` reports, worked out from
/// the environment as glibc does: per category `LC_ALL`, else `LC_<category>`, else `LANG`,
/// else `C`; one name when all categories agree, else glibc's composite
/// `LC_CTYPE=…;LC_NUMERIC=…;…`. (Unlike glibc, we do not check that the locale is installed.)
pub fn locale_from_env(var: impl Fn(&str) -> Option<String>) -> String {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    let names: Vec<String> = CATEGORIES
        .iter()
        .map(|cat| {
            let n = set("LC_ALL")
                .or_else(|| set(cat))
                .or_else(|| set("LANG"))
                .unwrap_or_else(|| "C".to_string());
            if n == "POSIX" {
                "C".to_string()
            } else {
                n
            }
        })
        .collect();
    if names.iter().all(|n| *n == names[0]) {
        return names[0].clone();
    }
    CATEGORIES
        .iter()
        .zip(&names)
        .map(|(c, n)| format!("{c}={n}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Seconds since boot (the integer part of `/proc/uptime`, as `sysinfo().uptime`).
pub fn uptime_secs() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/uptime")?;
    text.split(['.', ' '])
        .next()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/uptime"))
}

/// Names in the bundles directory, without dot entries, sorted.
pub fn bundle_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Builds the payload.
pub fn payload(locale: Option<&str>, uptime: Option<u64>, bundles: Option<&[String]>) -> String {
    let mut out = String::from("hello\n");
    if let Some(l) = locale {
        out.push_str(&format!("LC_ALL: {l}\n"));
    }
    if let Some(u) = uptime {
        out.push_str(&format!("uptime: {u}\n"));
    }
    if let Some(names) = bundles {
        out.push_str(&format!("\nBundles ({}):\n", names.len()));
        const CUT: &str = "...";
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let need = name.len() + 1 + if last { 0 } else { CUT.len() };
            if out.len() + need > MAX_PAYLOAD {
                out.push_str(CUT);
                break;
            }
            out.push_str(name);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn locale_names() {
        assert_eq!(locale_from_env(env(&[])), "C");
        assert_eq!(
            locale_from_env(env(&[("LANG", "en_US.UTF-8")])),
            "en_US.UTF-8"
        );
        assert_eq!(
            locale_from_env(env(&[("LANG", "de_DE.UTF-8"), ("LC_ALL", "en_US.UTF-8")])),
            "en_US.UTF-8"
        );
        assert_eq!(
            locale_from_env(env(&[("LC_ALL", ""), ("LANG", "POSIX")])),
            "C"
        );
        assert_eq!(
            locale_from_env(env(&[("LANG", "en_US.UTF-8"), ("LC_TIME", "de_DE.UTF-8")])),
            "LC_CTYPE=en_US.UTF-8;LC_NUMERIC=en_US.UTF-8;LC_TIME=de_DE.UTF-8;\
             LC_COLLATE=en_US.UTF-8;LC_MONETARY=en_US.UTF-8;LC_MESSAGES=en_US.UTF-8;\
             LC_PAPER=en_US.UTF-8;LC_NAME=en_US.UTF-8;LC_ADDRESS=en_US.UTF-8;\
             LC_TELEPHONE=en_US.UTF-8;LC_MEASUREMENT=en_US.UTF-8;LC_IDENTIFICATION=en_US.UTF-8"
        );
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(payload(None, None, None), "hello\n");
        let names = vec!["editors".to_string(), "os-core".to_string()];
        assert_eq!(
            payload(Some("C"), Some(42), Some(&names)),
            "hello\nLC_ALL: C\nuptime: 42\n\nBundles (2):\neditors\nos-core\n"
        );
        assert_eq!(payload(None, None, Some(&[])), "hello\n\nBundles (0):\n");
    }

    #[test]
    fn long_bundle_list_is_cut() {
        let names: Vec<String> = (0..2000).map(|i| format!("bundle-{i:05}")).collect();
        let p = payload(None, None, Some(&names));
        assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
        assert!(p.starts_with("hello\n\nBundles (2000):\nbundle-00000\n"));
        assert!(p.ends_with("\n..."));
        // Exactly fitting lists are not cut.
        let fit: Vec<String> = vec!["x".repeat(MAX_PAYLOAD - "hello\n\nBundles (1):\n".len() - 1)];
        let p = payload(None, None, Some(&fit));
        assert_eq!(p.len(), MAX_PAYLOAD);
        assert!(p.ends_with("x\n"));
    }

    #[test]
    fn bundles_dir_listing() {
        let d = tempfile::tempdir().unwrap();
        for n in ["os-core", ".hidden", "editors"] {
            fs::write(d.path().join(n), "").unwrap();
        }
        assert_eq!(bundle_names(d.path()).unwrap(), vec!["editors", "os-core"]);
        assert!(bundle_names(&d.path().join("missing")).is_err());
    }
}
