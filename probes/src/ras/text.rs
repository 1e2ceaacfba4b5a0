//! One line of a tracing instance's `trace_pipe` with `options/fields` set (kernel 6.8 and
//! later): `<task>-<pid> [<cpu>] <flags> <secs>.<usecs>: <event>: name=value name=value …`.
//!
//! The kernel prints every field of the event's `format` file in its order, each as
//! ` name=value`: numbers of 2, 4 and 8 bytes as `0x<hex> (<decimal>)`, 1-byte numbers as
//! `'<char>'(<decimal>)` or `(<decimal>)`, strings raw (unquoted), other `__data_loc` arrays as
//! comma-separated hex bytes, fields it cannot print as `<INVALID-SIZE>` or `<OVERFLOW>`. Values
//! are taken by the field's size and signedness from the format file, never by position.

use std::collections::BTreeMap;

use super::format::{Format, Kind};

/// A decoded field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    U64(u64),
    I64(i64),
    Str(String),
    Bytes(Vec<u8>),
    /// The kernel could not print it (`<INVALID-SIZE>`, `<OVERFLOW>`).
    Unprintable,
}

/// One decoded tracepoint event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The tracepoint's name (`mce_record`, `mc_event`, `aer_event`).
    pub name: String,
    /// The CPU whose ring buffer held it.
    pub cpu: u32,
    /// Trace clock time in nanoseconds (the instance's `trace_clock`, `local` by default).
    pub timestamp_ns: u64,
    pub fields: BTreeMap<String, Value>,
}

impl Event {
    /// An unsigned field (a signed one is returned as its two's complement bits).
    pub fn u64(&self, name: &str) -> Option<u64> {
        match self.fields.get(name)? {
            Value::U64(v) => Some(*v),
            Value::I64(v) => Some(*v as u64),
            _ => None,
        }
    }

    /// A signed field.
    pub fn i64(&self, name: &str) -> Option<i64> {
        match self.fields.get(name)? {
            Value::I64(v) => Some(*v),
            Value::U64(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// A string field.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.fields.get(name)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Why a line could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    #[error("no `<secs>.<usecs>: <event>:` header")]
    NoHeader,
    #[error("bad timestamp `{0}`")]
    Timestamp(String),
    #[error("no `[cpu]` before the timestamp")]
    NoCpu,
    #[error("field {field}: {what}")]
    Field { field: String, what: String },
    #[error("expected ` {0}=` (line truncated or not from this kernel's format)")]
    Missing(String),
}

/// What a `trace_pipe` line is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// An event of one of the known formats.
    Event(Event),
    /// `CPU:<n> [LOST <count> EVENTS]`: the ring buffer overflowed.
    Lost { cpu: u32, count: u64 },
    /// Any other event (not one we decode), or an empty line.
    Other,
}

/// Decodes one line with the formats of the events we read.
pub fn parse_line(line: &str, formats: &[Format]) -> Result<Line, LineError> {
    let line = line.trim_end_matches(['\n', '\r']);
    if let Some(rest) = line.strip_prefix("CPU:") {
        if let Some((cpu, lost)) = rest.split_once(" [LOST ") {
            let count = lost
                .trim_end_matches(" EVENTS]")
                .parse()
                .unwrap_or(u64::MAX);
            return Ok(Line::Lost {
                cpu: cpu.trim().parse().unwrap_or(0),
                count,
            });
        }
    }
    if line.trim().is_empty() {
        return Ok(Line::Other);
    }
    // The event name follows the timestamp's `: `; the task name before it may hold anything,
    // so the earliest `: <known event>:` marks the end of the header.
    let found = formats
        .iter()
        .filter_map(|f| {
            let pat = format!(": {}:", f.name);
            line.find(&pat).map(|at| (at, at + pat.len(), f))
        })
        .min_by_key(|(at, _, _)| *at);
    let Some((at, body_start, format)) = found else {
        return Ok(Line::Other);
    };
    let header = &line[..at];
    let ts_text = header.rsplit(' ').next().unwrap_or("");
    let timestamp_ns = parse_timestamp(ts_text)?;
    let cpu = {
        let open = header.rfind('[').ok_or(LineError::NoCpu)?;
        let close = header[open..].find(']').ok_or(LineError::NoCpu)? + open;
        header[open + 1..close]
            .trim()
            .parse()
            .map_err(|_| LineError::NoCpu)?
    };
    let fields = parse_fields(&line[body_start..], format)?;
    Ok(Line::Event(Event {
        name: format.name.clone(),
        cpu,
        timestamp_ns,
        fields,
    }))
}

/// `12345.678901` (seconds and micro-, milli- or nanoseconds, as the trace clock prints).
fn parse_timestamp(text: &str) -> Result<u64, LineError> {
    let bad = || LineError::Timestamp(text.chars().take(40).collect());
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let frac_ns = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().map_err(|_| bad())? * 10u64.pow(9 - frac.len() as u32)
    };
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(bad)
}

/// The ` name=value` list: exactly the format's own fields, in its order. The format comes from
/// the kernel that printed the line, so a missing, extra or misspelt field means the line is
/// truncated or not from that kernel: an error naming the field.
fn parse_fields(body: &str, format: &Format) -> Result<BTreeMap<String, Value>, LineError> {
    let fields: Vec<_> = format.own_fields().collect();
    let mut out = BTreeMap::new();
    let mut rest = body;
    for (i, field) in fields.iter().enumerate() {
        let anchor = format!(" {}=", field.name);
        rest = rest
            .strip_prefix(anchor.as_str())
            .ok_or_else(|| LineError::Missing(field.name.clone()))?;
        let err = |what: &str| LineError::Field {
            field: field.name.clone(),
            what: what.to_string(),
        };
        // The value ends where the next field's ` name=` starts (strings are printed raw and
        // may hold spaces), or at the end of the line.
        let end = match fields.get(i + 1) {
            Some(next) => rest
                .find(&format!(" {}=", next.name))
                .ok_or_else(|| LineError::Missing(next.name.clone()))?,
            None => rest.len(),
        };
        let text = &rest[..end];
        let value = if text == "<INVALID-SIZE>" || text == "<OVERFLOW>" {
            Value::Unprintable
        } else if field.is_string() {
            Value::Str(text.to_string())
        } else {
            match field.kind {
                Kind::DataLoc | Kind::RelLoc => {
                    Value::Bytes(parse_bytes(text).map_err(|w| err(&w))?)
                }
                Kind::Array { .. } => Value::Unprintable,
                Kind::Scalar => {
                    parse_number(text, field.size, field.signed).map_err(|w| err(&w))?
                }
            }
        };
        out.insert(field.name.clone(), value);
        rest = &rest[end..];
    }
    Ok(out)
}

/// `0x1f (31)` for 2, 4 and 8 bytes; `'A'(65)` or `(7)` for one byte.
fn parse_number(text: &str, size: usize, signed: bool) -> Result<Value, String> {
    let short: String = text.chars().take(40).collect();
    let bits: u64 = match size {
        1 => {
            let t = if text.starts_with('\'') && text.len() >= 3 && text.as_bytes()[2] == b'\'' {
                &text[3..]
            } else {
                text
            };
            let inner = t
                .strip_prefix('(')
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(|| format!("`{short}` is not `(<number>)` (truncated?)"))?;
            let v: i64 = inner
                .parse()
                .map_err(|_| format!("`{short}` is not a number"))?;
            // The kernel prints the byte as unsigned; a signed field's -1 shows as 255.
            u8::try_from(v)
                .map(u64::from)
                .or_else(|_| i8::try_from(v).map(|b| u64::from(b as u8)))
                .map_err(|_| format!("{v} does not fit a 1-byte field"))?
        }
        2 | 4 | 8 => {
            let (hex, dec) = text
                .split_once(' ')
                .ok_or_else(|| format!("`{short}` is not `0x<hex> (<decimal>)` (truncated?)"))?;
            let hex = hex
                .strip_prefix("0x")
                .ok_or_else(|| format!("`{short}` does not start with 0x"))?;
            let decimal = dec.strip_prefix('(').and_then(|d| d.strip_suffix(')'));
            if decimal.is_none_or(|d| d.parse::<i128>().is_err()) {
                return Err(format!("`{short}` lacks its `(<decimal>)` (truncated?)"));
            }
            if hex.is_empty() || hex.len() > size * 2 {
                return Err(format!(
                    "`0x{}` is too large for a {size}-byte field",
                    &hex[..hex.len().min(40)]
                ));
            }
            u64::from_str_radix(hex, 16).map_err(|_| format!("`{short}` is not hexadecimal"))?
        }
        _ => return Ok(Value::Unprintable),
    };
    if signed {
        let shift = 64 - 8 * size as u32;
        Ok(Value::I64(((bits << shift) as i64) >> shift))
    } else {
        Ok(Value::U64(bits))
    }
}

/// `00,1f,a0` (a `__data_loc` array that is not text).
fn parse_bytes(text: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|b| {
            if b.len() == 2 {
                u8::from_str_radix(b, 16).map_err(|_| format!("`{b}` is not a hex byte"))
            } else {
                Err(format!(
                    "`{}` is not a hex byte",
                    b.chars().take(40).collect::<String>()
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fmt() -> Format {
        Format::parse(
            "name: ev\nID: 5\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:u64 status;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:__data_loc char[] msg;\toffset:16;\tsize:4;\tsigned:0;\n\
\tfield:s8 layer;\toffset:20;\tsize:1;\tsigned:1;\n\
\tfield:u16 count;\toffset:22;\tsize:2;\tsigned:0;\n\
\tfield:__data_loc u8[] data;\toffset:24;\tsize:4;\tsigned:0;\n",
        )
        .unwrap()
    }

    #[test]
    fn decodes_every_kind_by_the_format() {
        let l = "  kworker/0:1 [x]-42   [003] d..1. 1234.567890: ev: status=0x9c00000000010091 (-7133701809754865519) msg=a b c=d layer=(255) count=0x2 (2) data=00,ff";
        let Line::Event(e) = parse_line(l, &[fmt()]).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(e.cpu, 3);
        assert_eq!(e.timestamp_ns, 1_234_567_890_000);
        assert_eq!(e.u64("status"), Some(0x9c00000000010091));
        assert_eq!(e.str("msg"), Some("a b c=d"));
        assert_eq!(e.i64("layer"), Some(-1));
        assert_eq!(e.u64("count"), Some(2));
        assert_eq!(e.fields["data"], Value::Bytes(vec![0, 255]));
    }

    #[test]
    fn hostile_lines_are_errors_not_panics() {
        let f = [fmt()];
        let head = "p-1 [000] ..... 1.000000: ev:";
        let good = |status: &str, layer: &str, count: &str, data: &str| {
            format!("{head} status={status} msg=x layer={layer} count={count} data={data}")
        };
        let ok = good(
            "0x9c00000000010091 (-7133701809754865519)",
            "(1)",
            "0x1 (1)",
            "01",
        );
        let cases = [
            (
                format!("{head} status=0x9c00000000010091"),
                "expected ` msg=`",
            ),
            (ok.clone(), ""),
            (
                ok[..ok.find(" layer").unwrap()].to_string(),
                "expected ` layer=`",
            ),
            (
                ok[..ok.find(" count=0x1").unwrap() + 9].to_string(),
                "truncated",
            ),
            (
                good("0x9c0000000001009100 (1)", "(1)", "0x1 (1)", "01"),
                "too large",
            ),
            (good("0x1", "(1)", "0x1 (1)", "01"), "truncated"),
            (good("0x1 (1", "(1)", "0x1 (1)", "01"), "truncated"),
            (good("0xzz (1)", "(1)", "0x1 (1)", "01"), "hexadecimal"),
            (good("0x1 (1)", "(999)", "0x1 (1)", "01"), "does not fit"),
            (good("0x1 (1)", "1", "0x1 (1)", "01"), "truncated"),
            (
                good("0x1 (1)", "(1)", "0xfffff (1048575)", "01"),
                "too large",
            ),
            (good("0x1 (1)", "(1)", "0x1 (1)", "0,zz"), "hex byte"),
            (
                "p-1 [000] ..... 1.0x0: ev: status=0x1 (1)".to_string(),
                "timestamp",
            ),
            ("p-1 000 ..... 1.0: ev: status=0x1 (1)".to_string(), "cpu"),
            (head.to_string(), "expected ` status=`"),
        ];
        for (line, want) in cases {
            if want.is_empty() {
                assert!(
                    matches!(parse_line(&line, &f), Ok(Line::Event(_))),
                    "{line}"
                );
                continue;
            }
            let e = parse_line(&line, &f).unwrap_err().to_string();
            assert!(e.contains(want), "{line:?}: {e}");
        }
        // Every prefix of a good line: an error or an event, never a panic.
        let good = format!("{head} status=0x1 (1) msg=é layer='A'(65) count=0x2 (2) data=01");
        for i in 0..=good.len() {
            if good.is_char_boundary(i) {
                let _ = parse_line(&good[..i], &f);
            }
        }
    }

    #[test]
    fn unknown_and_missing_fields_are_clear_errors() {
        let f = [fmt()];
        let head = "p-1 [002] ..... 5.5: ev:";
        let e = parse_line(&format!("{head} status=0x3 (3) extra=0x1 (1) msg=x"), &f).unwrap_err();
        assert!(e.to_string().contains("status"), "{e}");
        let e = parse_line(&format!("{head} bogus=1 status=0x3 (3)"), &f).unwrap_err();
        assert_eq!(e, LineError::Missing("status".into()));
        let e = parse_line(&format!("{head} status=0x3 (3) msg=x"), &f).unwrap_err();
        assert_eq!(e, LineError::Missing("layer".into()));
        assert_eq!(
            parse_line("CPU:3 [LOST 120 EVENTS]", &f).unwrap(),
            Line::Lost { cpu: 3, count: 120 }
        );
        assert_eq!(
            parse_line("p-1 [0] 1.0: other: a=1", &f).unwrap(),
            Line::Other
        );
    }
}
