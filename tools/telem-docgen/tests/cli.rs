//! The binary as scripts/install.sh runs it: files on disk, and the bash completions working in
//! a real bash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use telem_docgen::BINARIES;

fn docgen(args: &[&str], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_telem-docgen"))
        .args(args)
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1714953600")
        .output()
        .unwrap()
}

/// Sources the bash completion of `bin` and completes the command line `words` (the last word
/// being the one under the cursor), as bash does on TAB.
fn bash_complete(script: &Path, bin: &str, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'\n\
         f=$(complete -p {bin} | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\n\
         COMP_WORDS=({bin} {words})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         \"$f\" {bin} \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words = quoted.join(" "),
        cword = words.len(),
    );
    let o = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(prog)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{bin}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn man_writes_a_page_per_binary_into_man1() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new/man");
    let o = docgen(&["man"], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for bin in BINARIES {
        let page = fs::read_to_string(out.join(format!("man1/{bin}.1"))).unwrap();
        assert!(
            page.starts_with(&format!(".TH {bin} 1 2024-05-06 ")),
            "{page}"
        );
        assert!(page.contains("\\-\\-config\\-file"), "{bin}");
    }
    assert!(out.join("man1/telemctl-journal.1").is_file());
    assert_eq!(fs::read_dir(out.join("man1")).unwrap().count(), 21);
    assert_eq!(fs::read_dir(out.join("man3")).unwrap().count(), 8);
    assert!(out.join("man3/telemetry.3").is_file());
    assert!(out.join("man5/telemetrics.conf.5").is_file());
}

#[test]
fn completions_complete_options_in_bash() {
    let dir = tempfile::tempdir().unwrap();
    let o = docgen(&["completions"], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for bin in BINARIES {
        assert!(dir
            .path()
            .join(format!("zsh/site-functions/_{bin}"))
            .is_file());
        assert!(dir
            .path()
            .join(format!("fish/vendor_completions.d/{bin}.fish"))
            .is_file());
        let bash = dir
            .path()
            .join(format!("bash-completion/completions/{bin}"));
        let got = bash_complete(&bash, bin, &["--config-f"]);
        assert_eq!(got, ["--config-file"], "{bin}");
    }
    let bash = dir.path().join("bash-completion/completions/telemctl");
    assert_eq!(bash_complete(&bash, "telemctl", &["jo"]), ["journal"]);
    assert_eq!(
        bash_complete(&bash, "telemctl", &["journal", "--record"]),
        ["--record_id", "--record-id"]
    );
    let crash = dir.path().join("bash-completion/completions/crashprobe");
    assert_eq!(
        bash_complete(&crash, "crashprobe", &["--process-"]),
        ["--process-name", "--process-path"]
    );
}

#[test]
fn a_usage_error_fails() {
    let dir = tempfile::tempdir().unwrap();
    let o = docgen(&["manual"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
