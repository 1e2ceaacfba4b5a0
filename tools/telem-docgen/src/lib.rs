//! Man pages and shell completions for every telemetrics binary, rendered from the clap
//! definitions the binaries themselves parse with, so the documentation cannot drift from the
//! options; plus the C library's pages ([`capi`], section 3) and `telemetrics.conf(5)`
//! ([`conf`]).
//!
//! Where each definition comes from:
//! - telemprobd, telempostd and the probes expose theirs from their libraries
//!   (`telemprobd::cli::Cli`, `telempostd::cli::Cli`, `probes::args::*`);
//! - telemctl (and telem_journal, whose `JournalCli` lives beside telemctl's) and
//!   telem-record-gen: their `src/cli.rs` (clap, std and libtelemetry's version text) is
//!   compiled into this crate with `#[path]`.
//!
//! Rendering ([`man_pages`], [`completions`]) is pure and returns files relative to an output
//! directory laid out as below `$DATADIR`; [`write_all`] puts them on disk.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;

pub mod capi;
pub mod conf;
pub mod sections;

#[path = "../../../telemctl/src/cli.rs"]
pub mod telemctl_cli;

#[path = "../../../telem-record-gen/src/cli.rs"]
pub mod record_gen_cli;

/// Every installed binary, in the order `scripts/install.sh` lists them.
pub const BINARIES: [&str; 12] = [
    "telemprobd",
    "telempostd",
    "telemctl",
    "telem_journal",
    "telem-record-gen",
    "crashprobe",
    "klogscanner",
    "journalprobe",
    "pstoreprobe",
    "pstoreclean",
    "hprobe",
    "rasprobe",
];

/// The shells a completion script is generated for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// The clap command of one binary, `None` for a name not in [`BINARIES`].
pub fn command(bin: &str) -> Option<Command> {
    let cmd = match bin {
        "telemprobd" => telemprobd::cli::Cli::command(),
        "telempostd" => telempostd::cli::Cli::command(),
        "telemctl" => telemctl_cli::Cli::command(),
        "telem_journal" => telemctl_cli::JournalCli::command(),
        "telem-record-gen" => record_gen_cli::Cli::command(),
        "crashprobe" => probes::args::CrashprobeArgs::command(),
        "klogscanner" => probes::args::KlogscannerArgs::command(),
        "journalprobe" => probes::args::JournalprobeArgs::command(),
        "pstoreprobe" => probes::args::PstoreprobeArgs::command(),
        "pstoreclean" => probes::args::PstorecleanArgs::command(),
        "hprobe" => probes::args::HprobeArgs::command(),
        "rasprobe" => probes::args::RasprobeArgs::command(),
        _ => return None,
    };
    Some(cmd)
}

/// The commands of all [`BINARIES`], in that order.
pub fn commands() -> Vec<Command> {
    BINARIES.iter().filter_map(|b| command(b)).collect()
}

/// One generated file: its path relative to the output directory, and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

/// `man1/<bin>.1` for every binary, plus `man1/telemctl-<subcommand>.1` for each subcommand
/// (as git does), so `man telemctl-journal` documents the journal filters; `man3/telemetry.3`
/// and `man3/<function>.3` for the C library; `man5/telemetrics.conf.5`. `date` goes in the
/// page footer (see [`man_date`]).
pub fn man_pages(date: &str) -> io::Result<Vec<Generated>> {
    let mut out = Vec::new();
    let source = format!("telemetrics {}", env!("CARGO_PKG_VERSION"));
    out.push(Generated {
        path: PathBuf::from("man3/telemetry.3"),
        contents: capi::overview_page(date, &source).into_bytes(),
    });
    for f in &capi::FUNCTIONS {
        out.push(Generated {
            path: PathBuf::from(format!("man3/{}.3", f.name)),
            contents: capi::function_page(f, date, &source).into_bytes(),
        });
    }
    out.push(Generated {
        path: PathBuf::from("man5/telemetrics.conf.5"),
        contents: conf::page(date, &source).into_bytes(),
    });
    for mut cmd in commands() {
        // The `help` subcommand is clap's, not ours: no page for it. Building sets the
        // subcommands' display names (`telemctl-journal`), which name their pages.
        cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        // Subcommands have no version of their own: their pages name the binary's. The
        // version's second line (the original release we replace) stays in VERSION.
        let version = cmd.get_version().unwrap_or_default();
        let source = format!(
            "{} {}",
            cmd.get_name(),
            version.lines().next().unwrap_or_default()
        );
        man_tree(&cmd, date, &source, &mut out)?;
    }
    Ok(out)
}

fn man_tree(cmd: &Command, date: &str, source: &str, out: &mut Vec<Generated>) -> io::Result<()> {
    // Every .TH field is set: clap_mangen writes an empty one as nothing, which shifts the
    // fields after it (the version would land in the date's place).
    let man = clap_mangen::Man::new(cmd.clone())
        .date(date)
        .source(source)
        .manual("Telemetrics Manual");
    let mut page = Vec::new();
    man.render(&mut page)?;
    let page = String::from_utf8_lossy(&title_first(&page)).into_owned();
    // A binary's page gets EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO; a telemctl
    // subcommand's page points back at telemctl.
    let extra = match sections::extra(cmd.get_name()) {
        Some(extra) => sections::roff(&extra),
        None => {
            let mut s = String::new();
            let parent = source.split(' ').next().unwrap_or_default().to_string();
            sections::see_also(&mut s, &[(parent, 1)]);
            s
        }
    };
    out.push(Generated {
        path: Path::new("man1").join(man.get_filename()),
        contents: sections::insert(&page, &extra).into_bytes(),
    });
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_tree(sub, date, source, out)?;
    }
    Ok(())
}

/// Moves the `.TH` line to the top. clap_mangen begins with the definition of the `Aq` string
/// (an apostrophe that works in groff and other troffs); a page conventionally opens with its
/// title, which is what tools that peek at the first line (`file`, lexgrog) expect. `Aq` is only
/// used in the body, so defining it after the title changes nothing in the rendering.
fn title_first(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if let Some(i) = lines.iter().position(|l| l.starts_with(".TH ")) {
        let title = lines.remove(i);
        lines.insert(0, title);
    }
    lines.concat().into_bytes()
}

/// The footer date of the pages, `YYYY-MM-DD`: from `SOURCE_DATE_EPOCH` when set (reproducible
/// builds), else today (UTC).
pub fn man_date(source_date_epoch: Option<&str>, now: std::time::SystemTime) -> String {
    let secs = source_date_epoch
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            now.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        });
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // m is 1..=12 and d 1..=31 by construction: the casts cannot truncate.
    (y, m as u32, d as u32)
}

/// Where a shell looks for the completions of `bin`, relative to `$DATADIR` (the
/// bash-completion, zsh and fish packages' own vendor directories).
pub fn completion_path(shell: Shell, bin: &str) -> PathBuf {
    match shell {
        Shell::Zsh => PathBuf::from(format!("zsh/site-functions/_{bin}")),
        Shell::Fish => PathBuf::from(format!("fish/vendor_completions.d/{bin}.fish")),
        _ => PathBuf::from(format!("bash-completion/completions/{bin}")),
    }
}

/// The bash, zsh and fish completion scripts of every binary.
pub fn completions() -> Vec<Generated> {
    let mut out = Vec::new();
    for bin in BINARIES {
        for shell in SHELLS {
            let Some(mut cmd) = command(bin) else {
                continue;
            };
            let mut contents = Vec::new();
            clap_complete::generate(shell, &mut cmd, bin, &mut contents);
            out.push(Generated {
                path: completion_path(shell, bin),
                contents,
            });
        }
    }
    out
}

/// Writes `files` below `dir`, creating directories as needed and replacing existing files.
pub fn write_all(dir: &Path, files: &[Generated]) -> io::Result<()> {
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &f.contents)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The long options a page must mention.
    fn long_names(cmd: &Command) -> Vec<String> {
        let visible = cmd.get_arguments().filter(|a| !a.is_hide_set());
        visible
            .filter_map(|a| a.get_long())
            .map(str::to_string)
            .collect()
    }

    /// The long options and their visible aliases (`--config_file`), which the completions
    /// offer too (the man page shows only the main spelling).
    fn long_options(cmd: &Command) -> Vec<String> {
        let mut v = long_names(cmd);
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            v.extend(
                a.get_visible_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
        v
    }

    fn find<'a>(files: &'a [Generated], path: &str) -> &'a str {
        let f = files
            .iter()
            .find(|f| f.path == Path::new(path))
            .unwrap_or_else(|| panic!("{path} not generated"));
        std::str::from_utf8(&f.contents).unwrap()
    }

    #[test]
    fn every_binary_has_its_own_valid_command() {
        let cmds = commands();
        assert_eq!(cmds.len(), BINARIES.len());
        for (cmd, bin) in cmds.into_iter().zip(BINARIES) {
            assert_eq!(cmd.get_name(), bin);
            assert!(cmd.get_version().is_some(), "{bin} has no --version");
            cmd.debug_assert();
        }
        assert!(command("telemetryd").is_none());
    }

    #[test]
    fn every_binary_yields_a_man_page_naming_its_options() {
        let pages = man_pages("2024-05-06").unwrap();
        for bin in BINARIES {
            let page = find(&pages, &format!("man1/{bin}.1"));
            let version = env!("CARGO_PKG_VERSION");
            let title =
                format!(".TH {bin} 1 2024-05-06 \"{bin} {version}\" \"Telemetrics Manual\"\n");
            assert!(
                page.starts_with(&title),
                "{bin}.1 does not start with {title:?}:\n{page}"
            );
            assert!(page.contains(".SH NAME"), "{bin}.1");
            assert!(page.contains(".SH SYNOPSIS"), "{bin}.1");
            // The sections clap does not write, before VERSION, in the usual order.
            let at = |s: &str| page.find(s).unwrap_or_else(|| panic!("{bin}.1 lacks {s}"));
            assert!(at(".SH OPTIONS") < at(".SH \"EXIT STATUS\""), "{bin}.1");
            assert!(
                at(".SH \"EXIT STATUS\"") < at(".SH \"ENVIRONMENT\""),
                "{bin}.1"
            );
            assert!(at(".SH \"ENVIRONMENT\"") < at(".SH \"FILES\""), "{bin}.1");
            assert!(at(".SH \"FILES\"") < at(".SH \"SEE ALSO\""), "{bin}.1");
            assert!(at(".SH \"SEE ALSO\"") < at(".SH VERSION"), "{bin}.1");
            assert!(page.contains("\\fBTELEM_ROOT\\fR"), "{bin}.1");
            assert!(
                page.contains("/etc/telemetrics/telemetrics.conf"),
                "{bin}.1"
            );
            assert!(page.contains("\\fBtelemetrics.conf\\fR(5)"), "{bin}.1");
            for other in BINARIES.iter().filter(|b| **b != bin) {
                let other = other.replace('-', "\\-");
                assert!(
                    page.contains(&format!("\\fB{other}\\fR(1)")),
                    "{bin}.1 lacks {other}"
                );
            }
            let cmd = command(bin).unwrap();
            let options = long_names(&cmd);
            assert!(options.iter().any(|o| o == "config-file"), "{bin}");
            for long in options {
                // roff escapes each '-' of an option as "\-".
                let escaped = format!("--{long}").replace('-', "\\-");
                assert!(page.contains(&escaped), "{bin}.1 lacks {escaped}");
            }
            if let Some(about) = cmd.get_about() {
                let about = about.to_string().replace('-', "\\-");
                assert!(page.contains(&about), "{bin}.1 lacks {about:?}");
            }
        }
    }

    #[test]
    fn telemctl_subcommands_get_their_own_pages() {
        let pages = man_pages("2024-05-06").unwrap();
        let journal = find(&pages, "man1/telemctl-journal.1");
        let version = env!("CARGO_PKG_VERSION");
        let title = format!(".TH telemctl-journal 1 2024-05-06 \"telemctl {version}\" ");
        assert!(journal.starts_with(&title), "{journal}");
        assert!(journal.contains("\\-\\-record\\-id"), "{journal}");
        assert!(journal.contains("\\fBtelemctl\\fR(1)"), "{journal}");
        for sub in [
            "opt-in",
            "opt-out",
            "start",
            "stop",
            "restart",
            "is-active",
            "status",
            "config",
        ] {
            find(&pages, &format!("man1/telemctl-{sub}.1"));
        }
        let top = find(&pages, "man1/telemctl.1");
        assert!(top.contains(".SH SUBCOMMANDS"), "{top}");
        assert!(!pages
            .iter()
            .any(|p| p.path.to_string_lossy().contains("help")));
        // Twelve binaries and nine telemctl subcommands in section 1; the C library's overview
        // and seven functions in 3; the configuration file in 5: nothing else.
        let in_section = |dir: &str| pages.iter().filter(|p| p.path.starts_with(dir)).count();
        assert_eq!(in_section("man1"), 21);
        assert_eq!(in_section("man3"), 8);
        assert_eq!(in_section("man5"), 1);
        assert_eq!(pages.len(), 30);
    }

    #[test]
    fn every_binary_yields_bash_zsh_and_fish_completions() {
        let files = completions();
        assert_eq!(files.len(), BINARIES.len() * SHELLS.len());
        for bin in BINARIES {
            let options = long_options(&command(bin).unwrap());
            let bash = find(&files, &format!("bash-completion/completions/{bin}"));
            let registered = bash
                .lines()
                .map(str::trim)
                .any(|l| l.starts_with("complete -F _") && l.ends_with(&format!(" {bin}")));
            assert!(registered, "{bash}");
            let zsh = find(&files, &format!("zsh/site-functions/_{bin}"));
            assert!(zsh.starts_with(&format!("#compdef {bin}\n")), "{zsh}");
            let fish = find(&files, &format!("fish/vendor_completions.d/{bin}.fish"));
            assert!(fish.contains(&format!("complete -c {bin} ")), "{fish}");
            for long in options {
                assert!(bash.contains(&format!("--{long}")), "bash {bin} --{long}");
                assert!(zsh.contains(&format!("--{long}")), "zsh {bin} --{long}");
                assert!(fish.contains(&format!("-l {long}")), "fish {bin} --{long}");
            }
        }
    }

    #[test]
    fn the_date_comes_from_source_date_epoch_else_now() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(man_date(None, now), "2000-02-29");
        assert_eq!(man_date(Some("0"), now), "1970-01-01");
        assert_eq!(man_date(Some("1714953600"), now), "2024-05-06");
        assert_eq!(man_date(Some("1735689599"), now), "2024-12-31");
        assert_eq!(man_date(Some("bogus"), now), "2000-02-29");
    }

    /// The errno names (`-EINVAL`) and `-errno` in the doc comment above `fn <name>` in the ffi.
    fn errnos_in_ffi_doc(name: &str) -> Vec<String> {
        let api = include_str!("../../../libtelemetry/src/ffi/api.rs");
        let at = api
            .find(&format!("extern \"C\" fn {name}("))
            .unwrap_or_else(|| panic!("{name} not in api.rs"));
        let doc: Vec<&str> = api[..at]
            .lines()
            .rev()
            .skip(1)
            .take_while(|l| l.trim_start().starts_with("///") || l.trim_start().starts_with("#["))
            .collect();
        let mut found = Vec::new();
        for line in doc {
            for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
                let is_errno = word == "-errno"
                    || (word.starts_with("-E")
                        && word.len() > 3
                        && word[1..].chars().all(|c| c.is_ascii_uppercase()));
                if is_errno && !found.contains(&word.to_string()) {
                    found.push(word.to_string());
                }
            }
        }
        found
    }

    #[test]
    fn section_3_pages_name_every_return_value_the_ffi_documents() {
        let pages = man_pages("2024-05-06").unwrap();
        let overview = find(&pages, "man3/telemetry.3");
        assert!(
            overview.starts_with(".TH telemetry 3 2024-05-06 "),
            "{overview}"
        );
        for f in &capi::FUNCTIONS {
            let page = find(&pages, &format!("man3/{}.3", f.name));
            assert!(
                page.starts_with(&format!(".TH {} 3 2024-05-06 ", f.name)),
                "{page}"
            );
            assert!(page.contains("\\fB#include <telemetry.h>\\fR"), "{page}");
            assert!(page.contains(f.since), "{}", f.name);
            assert!(
                overview.contains(&format!("\\fB{}\\fR(3)", f.name)),
                "telemetry.3 lacks {}",
                f.name
            );
            let documented = errnos_in_ffi_doc(f.name);
            let returns: Vec<&str> = f.returns.iter().map(|(v, _)| *v).collect();
            for errno in &documented {
                assert!(
                    returns.contains(&errno.as_str()),
                    "{}: the ffi doc names {errno}, the table does not",
                    f.name
                );
            }
            // And each value in the table is on the page, as a .TP term.
            for value in &returns {
                let term = format!(".TP\n\\fB{}\\fR\n", value.replace('-', "\\-"));
                assert!(page.contains(&term), "{}.3 lacks {value}", f.name);
            }
            if f.prototype.starts_with("int ") {
                assert!(
                    returns.contains(&"0") || f.name == "tm_is_opted_in",
                    "{}",
                    f.name
                );
                assert!(!returns.is_empty(), "{}", f.name);
            }
        }
        // The check reads the comments for real: the functions that fail name their errnos.
        assert!(errnos_in_ffi_doc("tm_send_record").contains(&"-ETIMEDOUT".to_string()));
        assert!(errnos_in_ffi_doc("tm_set_payload").contains(&"-EMSGSIZE".to_string()));
        assert!(errnos_in_ffi_doc("tm_free_record").is_empty());
    }

    #[test]
    fn section_3_prototypes_are_the_headers() {
        let header = include_str!("../../../include/telemetry.h");
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let declared = header
            .lines()
            .filter(|l| l.starts_with("int tm_") || l.starts_with("void tm_"))
            .count();
        assert_eq!(declared, capi::FUNCTIONS.len(), "a function without a page");
        let header = squash(header);
        for f in &capi::FUNCTIONS {
            assert!(
                header.contains(&squash(f.prototype)),
                "{} is not declared so in telemetry.h",
                f.prototype
            );
        }
    }

    #[test]
    fn telemetrics_conf_page_lists_every_key_with_its_default() {
        let pages = man_pages("2024-05-06").unwrap();
        let page = find(&pages, "man5/telemetrics.conf.5");
        assert!(
            page.starts_with(".TH telemetrics.conf 5 2024-05-06 "),
            "{page}"
        );
        let defaults = telemetry::Config::defaults(Path::new("/"));
        let mut keys = 0;
        for key in telemetry::config::key_names() {
            keys += 1;
            let value = defaults.value_of(key).unwrap();
            let value = if value.is_empty() {
                "(empty)".to_string()
            } else {
                value.replace(' ', "\\s")
            };
            let term = format!(
                ".TP\n\\fB{}\\fR=\\fI{}\\fR\n",
                sections::esc(key),
                sections::esc(&value)
            );
            let at = page
                .find(&term)
                .unwrap_or_else(|| panic!("telemetrics.conf.5 lacks {term:?}"));
            // Each key is described (its unit is in the description).
            let text = page[at + term.len()..].lines().next().unwrap();
            assert!(text.len() > 10, "{key}: {text:?}");
        }
        assert!(keys > 20, "{keys}");
        assert_eq!(page.matches(".TP\n").count(), keys);
        for rule in [
            "/usr/share/defaults/telemetrics/telemetrics.conf",
            "/etc/telemetrics/telemetrics.conf",
            "later wins",
            "TELEM_CONFIG",
        ] {
            assert!(page.contains(&rule.replace('-', "\\-")), "lacks {rule}");
        }
        assert_eq!(
            conf::description("send_timeout_ms").unwrap(),
            "How long a sender waits for telemprobd's acknowledgement, in milliseconds."
        );
        assert_eq!(
            conf::description("spool_max_size"),
            conf::description("spool_dir")
        );
        assert!(conf::description("no_such_key").is_none());
    }

    #[test]
    fn title_first_moves_only_the_title() {
        let page = b".ie a\n.el b\n.TH x 1 \"d\"\n.SH NAME\n";
        assert_eq!(
            title_first(page),
            b".TH x 1 \"d\"\n.ie a\n.el b\n.SH NAME\n"
        );
    }

    #[test]
    fn write_all_creates_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![Generated {
            path: PathBuf::from("a/b/c"),
            contents: b"x".to_vec(),
        }];
        write_all(dir.path(), &files).unwrap();
        write_all(dir.path(), &files).unwrap();
        assert_eq!(fs::read(dir.path().join("a/b/c")).unwrap(), b"x");
    }
}
