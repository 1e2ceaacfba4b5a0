//! The command lines a service manager starts a daemon with: none, or `-f FILE`.
//!
//! telemprobd and telempostd read these two shapes here and give every other command line to
//! clap: building clap's parser touches about 0.2 MiB of code that then stays mapped for the
//! daemon's whole life (docs/benchmarks.md, "Idle cost"). This is a fast path, not a second
//! grammar: each daemon checks with [`fast_path_agrees`] that clap gives the same result for
//! every command line taken here.

use std::ffi::OsString;
use std::path::PathBuf;

/// The spellings of the config-file option every daemon accepts.
const CONFIG_FILE_FLAGS: [&str; 3] = ["-f", "--config-file", "--config_file"];

/// `args` as `std::env::args_os` gives them (program name first): `Some(None)` for no
/// arguments, `Some(Some(FILE))` for `-f FILE` under any of its spellings as two words (FILE
/// not empty and not starting with `-`), `None` for anything else (clap's to read).
pub fn config_file_only(args: &[OsString]) -> Option<Option<PathBuf>> {
    match args.get(1..)? {
        [] => Some(None),
        [flag, file] => {
            let is_f = CONFIG_FILE_FLAGS.contains(&flag.to_str()?);
            let plain = !file.is_empty() && !file.as_encoded_bytes().starts_with(b"-");
            (is_f && plain).then(|| Some(PathBuf::from(file)))
        }
        _ => None,
    }
}

/// Every command line of up to three words from `vocabulary`, after `program`.
#[cfg(any(test, feature = "test-support"))]
pub fn command_lines(program: &str, vocabulary: &[&str]) -> Vec<Vec<OsString>> {
    let mut all = vec![vec![]];
    let mut last: Vec<Vec<&str>> = vec![vec![]];
    for _ in 0..3 {
        last = last
            .iter()
            .flat_map(|l| vocabulary.iter().map(move |w| [&l[..], &[*w]].concat()))
            .collect();
        all.extend(last.iter().cloned());
    }
    all.into_iter()
        .map(|l| {
            std::iter::once(program)
                .chain(l)
                .map(OsString::from)
                .collect()
        })
        .collect()
}

/// Checks a daemon's fast path against its full parser over every [`command_lines`] of
/// `vocabulary`: wherever `fast` gives an answer, `full` must give the same. Returns how many
/// command lines the fast path took, or the first disagreement.
#[cfg(any(test, feature = "test-support"))]
pub fn fast_path_agrees<T: PartialEq + std::fmt::Debug>(
    program: &str,
    vocabulary: &[&str],
    fast: impl Fn(&[OsString]) -> Option<T>,
    full: impl Fn(&[OsString]) -> Option<T>,
) -> Result<usize, String> {
    let mut taken = 0;
    for args in command_lines(program, vocabulary) {
        if let Some(quick) = fast(&args) {
            taken += 1;
            let slow = full(&args);
            if slow.as_ref() != Some(&quick) {
                return Err(format!(
                    "{args:?}: fast path {quick:?}, full parser {slow:?}"
                ));
            }
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn takes_no_arguments_and_a_plain_config_file() {
        assert_eq!(config_file_only(&args(&["d"])), Some(None));
        for flag in CONFIG_FILE_FLAGS {
            assert_eq!(
                config_file_only(&args(&["d", flag, "/x.conf"])),
                Some(Some(PathBuf::from("/x.conf")))
            );
        }
        for other in [
            &["d", "-f"][..],
            &["d", "-f", ""],
            &["d", "-f", "-"],
            &["d", "-f", "--help"],
            &["d", "--config-file=/x.conf"],
            &["d", "-g", "/x.conf"],
            &["d", "-f", "/x.conf", "-f"],
            &[],
        ] {
            assert_eq!(config_file_only(&args(other)), None, "{other:?}");
        }
    }

    #[test]
    fn command_lines_are_every_sequence_of_up_to_three_words() {
        let lines = command_lines("d", &["a", "b"]);
        // 1 + 2 + 4 + 8 sequences, each after the program name.
        assert_eq!(lines.len(), 15);
        assert!(lines.contains(&args(&["d"])));
        assert!(lines.contains(&args(&["d", "b", "a", "b"])));
        assert!(lines.iter().all(|l| l[0] == "d" && l.len() <= 4));
    }

    #[test]
    fn a_disagreement_is_reported() {
        let fast = |a: &[OsString]| config_file_only(a);
        assert_eq!(fast_path_agrees("d", &["-f", "/x"], fast, fast), Ok(2));
        let wrong = |a: &[OsString]| config_file_only(a).map(|_| None);
        let err = fast_path_agrees("d", &["-f", "/x"], fast, wrong).unwrap_err();
        assert!(err.contains("\"/x\""), "{err}");
    }
}
