//! Section 3 pages of the C library: `telemetry(3)` and one page per function. The table below
//! is the one place the pages' text comes from; the tests check it against the ffi doc comments
//! (every errno a function's comment names is in its RETURN VALUE) and against `telemetry.h`
//! (every prototype as declared).

use crate::sections::{self, esc};

/// One function of `libtelemetry.so.4`.
#[derive(Debug)]
pub struct Function {
    pub name: &'static str,
    /// The declaration as `telemetry.h` writes it.
    pub prototype: &'static str,
    /// The version node the symbol is exported at.
    pub since: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// Each value the function can return, with its meaning; empty for `void`.
    pub returns: &'static [(&'static str, &'static str)],
}

pub const FUNCTIONS: [Function; 7] = [
    Function {
        name: "tm_set_config_file",
        prototype: "int tm_set_config_file(const char *c_file);",
        since: "TM_1_0_0",
        summary: "use a configuration file of your own",
        description: "Makes c_file the configuration of this process, read on top of the \
            built-in defaults alone (not the layered files), and sends its path with every \
            record, so that telemprobd and telempostd use its settings for those records. It \
            must be an absolute path to a regular file, valid UTF-8 of at most 4096 bytes \
            without control characters. The file is read when first needed; call this before \
            the first tm_send_record(). On failure the configuration in use is unchanged.",
        returns: &[
            ("0", "The file is used from now on."),
            (
                "-EINVAL",
                "c_file is NULL, not absolute, longer than 4096 bytes, not UTF-8, has a control \
                 character (a newline, a tab), or is not a regular file.",
            ),
            (
                "-errno",
                "stat(2) of c_file failed with errno, for example -ENOENT (no such file) or \
                 -EACCES (a directory on the path cannot be searched).",
            ),
        ],
    },
    Function {
        name: "tm_create_record",
        prototype: "int tm_create_record(struct telem_ref **t_ref, uint32_t severity, \
                    char *classification, uint32_t payload_version);",
        since: "TM_3_0_0",
        summary: "create a telemetry record",
        description: "Creates a record with the 15 headers of record format 4 (machine facts, \
            a new event id, the time) and an empty payload, and stores its handle in *t_ref. \
            severity is clamped to 1 (lowest) to 4 (highest). classification is three parts \
            separated by '/', each 1 to 40 printable ASCII characters, at most 122 in all, e.g. \
            org.example/backup/failed. payload_version is the format version of the payload \
            you will set (1 unless you define another). Creating a record does not need \
            opt-in; sending it does.",
        returns: &[
            (
                "0",
                "*t_ref holds the new handle; free it with tm_free_record().",
            ),
            (
                "-EINVAL",
                "t_ref or classification is NULL or the classification is not valid; *t_ref is \
                 unchanged.",
            ),
            (
                "-errno",
                "Another failure (an errno of the system, or -EIO after an internal error); \
                 *t_ref is unchanged.",
            ),
        ],
    },
    Function {
        name: "tm_set_event_id",
        prototype: "int tm_set_event_id(struct telem_ref *t_ref, char *event_id);",
        since: "TM_4_0_0",
        summary: "give a record the event id of an earlier one",
        description: "Replaces the record's event id (random by default) with event_id, 32 \
            lowercase hexadecimal digits, so that records of one event share it.",
        returns: &[
            ("0", "The record carries event_id."),
            (
                "-EINVAL",
                "t_ref or event_id is NULL, or event_id is not 32 lowercase hexadecimal digits \
                 (the original returned -1); the old id is kept.",
            ),
        ],
    },
    Function {
        name: "tm_set_payload",
        prototype: "int tm_set_payload(struct telem_ref *t_ref, char *payload);",
        since: "TM_3_0_0",
        summary: "set the payload of a record",
        description: "Sets the record's payload to a copy of payload: UTF-8 text of at most \
            8192 bytes without control characters other than whitespace. Calling it again \
            replaces the payload.",
        returns: &[
            ("0", "The payload is set."),
            (
                "-EINVAL",
                "t_ref or payload is NULL, or payload is not such text; the payload is \
                 unchanged.",
            ),
            (
                "-EMSGSIZE",
                "payload is longer than 8192 bytes; it is never cut (the original cut it \
                 silently).",
            ),
        ],
    },
    Function {
        name: "tm_send_record",
        prototype: "int tm_send_record(struct telem_ref *t_ref);",
        since: "TM_3_0_0",
        summary: "send a record to telemprobd",
        description: "Sends the record to telemprobd over its socket (socket_path) and waits \
            for its answer, at most send_timeout_ms (5000 by default) to connect and as long \
            again for the answer. The record is not freed and may be sent again: telemprobd \
            answers a repeat of a record it stored recently with 0 and keeps one copy, so \
            retrying after an error never makes a duplicate. Writes use MSG_NOSIGNAL: a daemon \
            that hangs up never raises SIGPIPE in the caller.",
        returns: &[
            (
                "0",
                "telemprobd stored the record durably (or an older daemon took it without \
                 answering).",
            ),
            (
                "-ECONNREFUSED",
                "The machine is not opted in (nothing is sent), or no daemon listens on the \
                 socket.",
            ),
            (
                "-errno",
                "The socket could not be reached, for example -ENOENT (no socket: telemprobd \
                 is not installed or its socket unit is not started) or -EACCES.",
            ),
            ("-EINVAL", "telemprobd refused the record as invalid."),
            ("-EMSGSIZE", "telemprobd refused the record as too large."),
            (
                "-ENOSPC",
                "telemprobd could not store it: the spool is full (spool_max_size) or the disk \
                 is.",
            ),
            (
                "-EBUSY",
                "telemprobd refused it: the sender is over a rate limit.",
            ),
            (
                "-ETIMEDOUT",
                "No connection or no answer within send_timeout_ms. The record is not known \
                 to be lost: the daemon may store it later; sending it again is safe.",
            ),
            (
                "-EIO",
                "An internal error in the library (it never unwinds into the caller).",
            ),
        ],
    },
    Function {
        name: "tm_is_opted_in",
        prototype: "int tm_is_opted_in(void);",
        since: "TM_4_1_0",
        summary: "tell whether the machine is opted in to telemetry",
        description: "Looks for the opt-in file (opt_in_file, /etc/telemetrics/opt-in by \
            default). Nothing is sent without it; telemctl opt-in creates it.",
        returns: &[("1", "The opt-in file exists."), ("0", "It does not.")],
    },
    Function {
        name: "tm_free_record",
        prototype: "void tm_free_record(struct telem_ref *t_ref);",
        since: "TM_2_0_0",
        summary: "free a record",
        description: "Frees the handle and everything the record owns; t_ref is dangling \
            afterwards. NULL is allowed and does nothing.",
        returns: &[],
    },
];

fn th(name: &str, section: u8, date: &str, source: &str) -> String {
    format!(".TH {name} {section} {date} \"{source}\" \"Telemetrics Manual\"\n")
}

fn see_also(out: &mut String, pages: &[(&str, u8)]) {
    let pages: Vec<(String, u8)> = pages.iter().map(|(p, s)| (p.to_string(), *s)).collect();
    sections::see_also(out, &pages);
}

fn synopsis(out: &mut String, prototypes: &[&str]) {
    out.push_str(".SH SYNOPSIS\n.nf\n\\fB#include <telemetry.h>\\fR\n.PP\n");
    for p in prototypes {
        out.push_str(&format!("\\fB{}\\fR\n", esc(p)));
    }
    out.push_str(".fi\n.PP\nLink with \\fI\\-ltelemetry\\fR (pkg\\-config: libtelemetry).\n");
}

/// The page of one function.
pub fn function_page(f: &Function, date: &str, source: &str) -> String {
    let mut out = th(f.name, 3, date, source);
    out.push_str(&format!(
        ".SH NAME\n{} \\- {}\n",
        esc(f.name),
        esc(f.summary)
    ));
    synopsis(&mut out, &[f.prototype]);
    out.push_str(&format!(".SH DESCRIPTION\n{}\n", esc(f.description)));
    out.push_str(".SH \"RETURN VALUE\"\n");
    if f.returns.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("A negative value is an errno value negated (\\-EINVAL is \\-22 on Linux).\n");
        for (value, meaning) in f.returns {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", esc(value), esc(meaning)));
        }
    }
    out.push_str(&format!(
        ".SH VERSIONS\nExported from libtelemetry.so.4 at symbol version {}.\n",
        esc(f.since)
    ));
    let mut refs: Vec<(&str, u8)> = vec![("telemetry", 3)];
    refs.extend(
        FUNCTIONS
            .iter()
            .filter(|o| o.name != f.name)
            .map(|o| (o.name, 3)),
    );
    refs.push(("telemetrics.conf", 5));
    see_also(&mut out, &refs);
    out
}

/// `telemetry(3)`: the library as a whole, the functions in the order a probe calls them.
pub fn overview_page(date: &str, source: &str) -> String {
    let mut out = th("telemetry", 3, date, source);
    out.push_str(".SH NAME\ntelemetry \\- create telemetry records and send them to telemprobd\n");
    let prototypes: Vec<&str> = FUNCTIONS.iter().map(|f| f.prototype).collect();
    synopsis(&mut out, &prototypes);
    out.push_str(
        ".SH DESCRIPTION\nA program creates a record with tm_create_record(), sets its payload \
         with tm_set_payload(), sends it to the local daemon telemprobd with tm_send_record() \
         and frees it with tm_free_record(). telemprobd stores it in the spool before it \
         answers; telempostd delivers it to the collector. Nothing is sent unless the machine \
         is opted in (tm_is_opted_in()). A maximum payload is 8192 bytes.\n.PP\nEvery function \
         returns 0 on success or a negative errno value; each page lists the values its \
         function can return. No function ends the calling process, whatever the configuration \
         holds: problems are printed once to standard error and the key keeps its default.\n",
    );
    out.push_str(".SH FUNCTIONS\n");
    for f in &FUNCTIONS {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR(3)\n{}\n",
            esc(f.name),
            esc(f.summary)
        ));
    }
    out.push_str(
        ".SH EXAMPLE\n.nf\nstruct telem_ref *ref = NULL;\nif (tm_create_record(&ref, 2, \
         \"org.example/backup/failed\", 1) == 0) {\n    if (tm_set_payload(ref, \"disk full\") \
         == 0)\n        tm_send_record(ref);\n    tm_free_record(ref);\n}\n.fi\n",
    );
    let mut refs: Vec<(&str, u8)> = FUNCTIONS.iter().map(|f| (f.name, 3)).collect();
    refs.extend([
        ("telemetrics.conf", 5),
        ("telemprobd", 1),
        ("telem-record-gen", 1),
        ("telemctl", 1),
    ]);
    see_also(&mut out, &refs);
    out
}
