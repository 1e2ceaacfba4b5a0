//! The usual argument shapes read without clap: each option as its own word with its value in
//! the next one (`-c org.example/a/b -p text`), and the flags alone or as `-on`/`-no`. Building
//! clap's parser costs about a fifth of this program's instructions, which a shell script calling
//! it in a loop pays every time.
//!
//! This is a fast path, not a second grammar: whatever it does not recognise (help, version,
//! `--opt=value`, `-cVALUE`, a value starting with `-`, an option given twice, an unknown word,
//! text that is not UTF-8) it leaves to clap, which then parses the whole command line, and for
//! everything it accepts clap gives the same result (the tests below compare both on every short
//! command line built from a set of words).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cli::Cli;

/// The options that take a value, by every name clap knows them under.
#[derive(Clone, Copy)]
enum Valued {
    Class,
    Severity,
    Payload,
    PayloadFile,
    RecordVersion,
    EventId,
    ConfigFile,
}

fn valued(word: &str) -> Option<Valued> {
    Some(match word {
        "-c" | "--class" => Valued::Class,
        "-s" | "--severity" => Valued::Severity,
        "-p" | "--payload" => Valued::Payload,
        "-P" | "--payload-file" => Valued::PayloadFile,
        "-R" | "--record-version" => Valued::RecordVersion,
        "-e" | "--event-id" => Valued::EventId,
        "-f" | "--config-file" | "--config_file" => Valued::ConfigFile,
        _ => return None,
    })
}

/// Sets `slot` once; a second time is clap's to report.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// `args` with the program name first, as `std::env::args_os`. `None`: let clap parse them.
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let mut class = None;
    let mut severity = None;
    let mut payload = None;
    let mut payload_file = None;
    let mut record_version = None;
    let mut event_id = None;
    let mut config_file = None;
    let mut echo = None;
    let mut no_post = None;

    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        let word = word.to_str()?;
        let (mut o, mut n) = (false, false);
        match word {
            "-o" | "--echo" => o = true,
            "-n" | "--no-post" => n = true,
            "-on" | "-no" => (o, n) = (true, true),
            _ => {
                let which = valued(word)?;
                let value = words.next()?.to_str()?;
                // Empty, or possibly an option itself: clap's rules decide.
                if value.is_empty() || value.starts_with('-') {
                    return None;
                }
                let value = value.to_string();
                match which {
                    Valued::Class => once(&mut class, value)?,
                    Valued::Severity => once(&mut severity, value)?,
                    Valued::Payload => once(&mut payload, value)?,
                    Valued::PayloadFile => once(&mut payload_file, PathBuf::from(value))?,
                    Valued::RecordVersion => once(&mut record_version, value)?,
                    Valued::EventId => once(&mut event_id, value)?,
                    Valued::ConfigFile => once(&mut config_file, PathBuf::from(value))?,
                }
                continue;
            }
        }
        if o {
            once(&mut echo, ())?;
        }
        if n {
            once(&mut no_post, ())?;
        }
    }
    Some(Cli {
        class,
        // The defaults declared in cli.rs.
        severity: severity.unwrap_or_else(|| "1".to_string()),
        payload,
        payload_file,
        record_version: record_version.unwrap_or_else(|| "1".to_string()),
        event_id,
        echo: echo.is_some(),
        no_post: no_post.is_some(),
        config_file,
        version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use telemetry::service_args::{command_lines, fast_path_agrees};

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("telem-record-gen")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// Every command line the fast path accepts parses the same with clap.
    fn agrees(words: &[&str]) -> bool {
        let args = argv(words);
        let Some(quick) = parse(&args) else {
            return false;
        };
        match Cli::try_parse_from(&args) {
            Ok(full) => assert_eq!(quick, full, "{words:?}"),
            Err(e) => panic!("{words:?}: the fast path accepted what clap refuses: {e}"),
        }
        true
    }

    #[test]
    fn every_short_command_line_parses_as_clap_parses_it() {
        let vocabulary = [
            "-c",
            "--class",
            "a/b/c",
            "-s",
            "--severity",
            "3",
            "-p",
            "--payload",
            "some text",
            "-P",
            "--payload-file",
            "/tmp/p",
            "-R",
            "--record-version",
            "-e",
            "--event-id",
            "-f",
            "--config-file",
            "--config_file",
            "-o",
            "--echo",
            "-n",
            "--no-post",
            "-on",
            "-no",
            "-",
            "--",
            "-x",
            "-cX",
            "--class=a/b/c",
            "-V",
            "--version",
            "-h",
            "--help",
            "",
            "-onx",
            "-oo",
        ];
        let total = command_lines("telem-record-gen", &vocabulary).len();
        let accepted = fast_path_agrees("telem-record-gen", &vocabulary, parse, |a| {
            Cli::try_parse_from(a).ok()
        })
        .unwrap();
        assert!(accepted > total / 100, "{accepted} of {total}");
    }

    #[test]
    fn the_usual_command_lines_take_the_fast_path() {
        for words in [
            &["-c", "org.example/a/b", "-s", "2", "-p", "text"][..],
            &["-c", "a/b/c", "-n", "-o", "-p", "x"],
            &[
                "-on",
                "--class",
                "a/b/c",
                "-R",
                "7",
                "-e",
                "0123456789abcdef0123456789abcdef",
            ],
            &["-c", "a/b/c", "-P", "/tmp/payload", "-f", "/etc/x.conf"],
            &["-c", "a/b/c"],
            &[],
        ] {
            assert!(agrees(words), "{words:?}");
        }
        let full = parse(&argv(&["-c", "a/b/c", "-o"])).unwrap();
        assert!(full.echo && !full.no_post);
        assert_eq!(
            (full.severity.as_str(), full.record_version.as_str()),
            ("1", "1")
        );
    }

    #[test]
    fn help_version_errors_and_unusual_spellings_go_to_clap() {
        for words in [
            &["--help"][..],
            &["-h"],
            &["-V"],
            &["--version"],
            &["--bogus"],
            &["-c", "a/b/c", "-c", "d/e/f"],
            &["-o", "-o"],
            &["-c"],
            &["-c", ""],
            &["-p", "-x"],
            &["--class=a/b/c"],
            &["-ca/b/c"],
            &["-c", "a/b/c", "stray"],
            &["--", "-c"],
        ] {
            assert!(parse(&argv(words)).is_none(), "{words:?}");
        }
        use std::os::unix::ffi::OsStringExt;
        let mut bad = argv(&["-p"]);
        bad.push(OsString::from_vec(vec![0xff]));
        assert!(parse(&bad).is_none());
    }
}
