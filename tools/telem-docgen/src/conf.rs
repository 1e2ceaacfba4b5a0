//! `telemetrics.conf(5)`: every key with its default, from the same two sources as the vendor
//! file installed in /usr/share/defaults/telemetrics: the defaults from libtelemetry's
//! `Config::defaults`, and the description (with its unit) from the comment above the key in
//! `systemd/telemetrics.conf`, whose test checks it lists every key with its default.

use std::path::Path;

use telemetry::config::{key_names, ADMIN_CONFIG, VENDOR_CONFIG};
use telemetry::Config;

use crate::sections::esc;

/// The vendor configuration as installed, every key commented with its default.
pub const VENDOR_FILE: &str = include_str!("../../../systemd/telemetrics.conf");

/// The comment block above `#key=` in [`VENDOR_FILE`] (shared by the keys of one group), or
/// `None` for a key the file does not show.
pub fn description(key: &str) -> Option<String> {
    let mut comment: Vec<&str> = Vec::new();
    let mut in_block = false;
    let mut in_settings = false;
    for line in VENDOR_FILE.lines() {
        if line.trim() == "[settings]" {
            in_settings = true;
            continue;
        }
        if !in_settings {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            if rest.split_once('=').is_some_and(|(k, _)| k == key) {
                return Some(comment.join(" "));
            }
            if let Some(text) = rest.strip_prefix(' ') {
                if !in_block {
                    comment.clear();
                }
                comment.push(text.trim());
                in_block = true;
                continue;
            }
        }
        in_block = false;
    }
    None
}

/// A value as a reader writes it in the file: a space is `\s`; an empty value shows as such.
fn shown(value: &str) -> String {
    if value.is_empty() {
        "(empty)".to_string()
    } else {
        value.replace(' ', "\\s")
    }
}

/// The page.
pub fn page(date: &str, source: &str) -> String {
    let defaults = Config::defaults(Path::new("/"));
    let mut out = format!(
        ".TH telemetrics.conf 5 {date} \"{source}\" \"Telemetrics Manual\"\n.SH NAME\n\
         telemetrics.conf \\- settings of the telemetrics client\n.SH SYNOPSIS\n{}\n.br\n{}\n",
        esc(ADMIN_CONFIG),
        esc(VENDOR_CONFIG)
    );
    out.push_str(&format!(
        ".SH DESCRIPTION\nThe settings of libtelemetry, telemprobd, telempostd, telemctl and the \
         probes. Each key is found, later wins, in:\n.IP 1. 4\nthe built-in defaults below;\n\
         .IP 2. 4\n{} (the vendor's file, every key commented with its default);\n.IP 3. 4\n\
         {} (the administrator's file).\n.PP\nA key set in a later file wins; keys not set keep \
         the value from before. A missing file is skipped; an unreadable one is skipped with a \
         warning. An explicit file (\\-f FILE of any program, tm_set_config_file(3), or the \
         environment variable TELEM_CONFIG=FILE) is read on top of the built-in defaults alone, \
         instead of the two files. TELEM_ROOT=DIR puts every default path below DIR.\n",
        esc(VENDOR_CONFIG),
        esc(ADMIN_CONFIG)
    ));
    out.push_str(
        ".SH FORMAT\nLines are trimmed; blank lines and lines starting with # or ; are ignored \
         (there are no comments after a value). Only the [settings] section is read. Each \
         setting is key=value, split at the first =; \\es in a value is a space. A duplicate \
         key: the last wins. A value the original client read leniently is read the same way \
         with a warning; telemctl config \\-\\-check shows every warning and error.\n",
    );
    out.push_str(".SH KEYS\n");
    for key in key_names() {
        let value = defaults.value_of(key).unwrap_or_default();
        let text = description(key).unwrap_or_default();
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR=\\fI{}\\fR\n{}\n",
            esc(key),
            esc(&shown(&value)),
            esc(&text)
        ));
    }
    out.push_str(
        ".SH EXAMPLE\n.nf\n[settings]\nserver=https://telemetry.example.com/v3/collector\n\
         record_expiry=2880\n.fi\n",
    );
    out.push_str(
        ".SH \"SEE ALSO\"\n\\fBtelemctl\\fR(1),\n\\fBtelemprobd\\fR(1),\n\\fBtelempostd\\fR(1),\n\
         \\fBtelemetry\\fR(3)\n",
    );
    out
}
