//! The binary ring buffer pages of `per_cpu/cpu<N>/trace_pipe_raw`, for kernels whose tracefs
//! cannot print events field by field (no `options/fields`, before Linux 6.8). Works on every
//! kernel, as libtraceevent does:
//!
//! - A page starts with the header `events/header_page` describes: a `u64` timestamp, then the
//!   commit word (bytes of data; its top bits flag events lost before the page), then the data.
//! - Each event starts with a 32-bit word: `type_len` (5 bits) and `time_delta` (27 bits).
//!   `type_len` 1–28: the event's data is `type_len * 4` bytes; 0: its length is in the next
//!   word (which counts itself); 29: padding (`time_delta` 0: the rest of the page is empty);
//!   30: a time extension (the next word holds bits 27 and up of the delta); 31: an absolute
//!   time stamp.
//! - The event's data is a record laid out as its `format` file says; `common_type` (its first
//!   two bytes) names the format by id.
//!
//! Numbers are in the machine's byte order (the pages come from this machine's kernel).

use std::collections::BTreeMap;

use super::format::{parse_field, Field, Format, Kind};
use super::text::{Event, Value};

/// Why a page or record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawError {
    #[error("header_page: {0}")]
    HeaderPage(String),
    #[error("page of {0} bytes is shorter than its header")]
    ShortPage(usize),
    #[error("event at byte {at}: {what}")]
    Event { at: usize, what: String },
    #[error("{event}: field {field}: {what}")]
    Field {
        event: String,
        field: String,
        what: String,
    },
}

/// The page layout from `events/header_page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    pub commit_offset: usize,
    pub commit_size: usize,
    pub data_offset: usize,
    /// Bytes of a whole page (header and data).
    pub page_size: usize,
}

/// Flags in the commit word: events were lost before this page.
const MISSED_EVENTS: u64 = 1 << 31;
const MISSED_STORED: u64 = 1 << 30;

impl PageLayout {
    /// Parses the text of `events/header_page`.
    pub fn parse(text: &str) -> Result<PageLayout, RawError> {
        let mut fields = BTreeMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("field:"))
        {
            let f = parse_field(line).map_err(RawError::HeaderPage)?;
            fields.entry(f.name.clone()).or_insert(f);
        }
        let get = |n: &str| {
            fields
                .get(n)
                .ok_or_else(|| RawError::HeaderPage(format!("no field {n}")))
        };
        let (ts, commit, data) = (get("timestamp")?, get("commit")?, get("data")?);
        if ts.offset != 0 || ts.size != 8 || !matches!(commit.size, 4 | 8) {
            return Err(RawError::HeaderPage(
                "unexpected timestamp or commit field".into(),
            ));
        }
        Ok(PageLayout {
            commit_offset: commit.offset,
            commit_size: commit.size,
            data_offset: data.offset,
            page_size: data.offset + data.size,
        })
    }
}

/// What one page held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Decoded events of the formats asked for.
    pub events: Vec<Event>,
    /// Events of the page that could not be decoded, with why.
    pub errors: Vec<RawError>,
    /// The kernel dropped events before this page (ring buffer full).
    pub missed: bool,
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_uint(b: &[u8], at: usize, size: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(size)?)?;
    let mut buf = [0u8; 8];
    if cfg!(target_endian = "little") {
        buf[..size].copy_from_slice(bytes);
        Some(u64::from_le_bytes(buf))
    } else {
        buf[8 - size..].copy_from_slice(bytes);
        Some(u64::from_be_bytes(buf))
    }
}

/// Decodes one page read from `trace_pipe_raw` (possibly shorter than a whole page: the
/// kernel hands out what has been committed). `cpu` is the CPU of the file it came from.
pub fn decode_page(
    page: &[u8],
    layout: &PageLayout,
    formats: &[Format],
    cpu: u32,
) -> Result<Page, RawError> {
    if page.len() < layout.data_offset {
        return Err(RawError::ShortPage(page.len()));
    }
    let mut ts = read_uint(page, 0, 8).ok_or(RawError::ShortPage(page.len()))?;
    let commit = read_uint(page, layout.commit_offset, layout.commit_size)
        .ok_or(RawError::ShortPage(page.len()))?;
    let mut out = Page {
        missed: commit & MISSED_EVENTS != 0,
        ..Page::default()
    };
    let size = (commit & !(MISSED_EVENTS | MISSED_STORED)) as usize;
    let data = &page[layout.data_offset..];
    let data = &data[..size.min(data.len())];
    let mut at = 0;
    while at + 4 <= data.len() {
        let bad = |what: &str| RawError::Event {
            at,
            what: what.to_string(),
        };
        let word = read_u32(data, at).ok_or_else(|| bad("truncated header"))?;
        let type_len = word & 0x1f;
        let delta = u64::from(word >> 5);
        match type_len {
            29 => {
                if delta == 0 {
                    break; // the rest of the page is empty
                }
                let len = read_u32(data, at + 4).ok_or_else(|| bad("truncated padding"))?;
                at = at
                    .checked_add(4 + len as usize)
                    .ok_or_else(|| bad("padding length"))?;
            }
            30 => {
                let ext = read_u32(data, at + 4).ok_or_else(|| bad("truncated time extend"))?;
                ts = ts.wrapping_add((u64::from(ext) << 27) | delta);
                at += 8;
            }
            31 => {
                let ext = read_u32(data, at + 4).ok_or_else(|| bad("truncated time stamp"))?;
                ts = (u64::from(ext) << 27) | delta;
                at += 8;
            }
            _ => {
                let (start, len) = if type_len == 0 {
                    let len = read_u32(data, at + 4).ok_or_else(|| bad("truncated length"))?;
                    let len = (len as usize)
                        .checked_sub(4)
                        .ok_or_else(|| bad("length below 4"))?;
                    (at + 8, len)
                } else {
                    (at + 4, type_len as usize * 4)
                };
                let end = start.checked_add(len).ok_or_else(|| bad("length"))?;
                let record = data
                    .get(start..end)
                    .ok_or_else(|| bad("runs past the page"))?;
                ts = ts.wrapping_add(delta);
                match decode_record(record, formats, cpu, ts) {
                    Ok(Some(e)) => out.events.push(e),
                    Ok(None) => {}
                    Err(e) => out.errors.push(e),
                }
                // Records are padded to 4 bytes.
                at = end.checked_add(3).ok_or_else(|| bad("length"))? & !3;
            }
        }
    }
    Ok(out)
}

/// One record by its format; `None` for an event of another format.
pub fn decode_record(
    record: &[u8],
    formats: &[Format],
    cpu: u32,
    timestamp_ns: u64,
) -> Result<Option<Event>, RawError> {
    let Some(id) = read_uint(record, 0, 2) else {
        return Ok(None);
    };
    let Some(format) = formats.iter().find(|f| u64::from(f.id) == id) else {
        return Ok(None);
    };
    let mut fields = BTreeMap::new();
    for field in format.own_fields() {
        let err = |what: &str| RawError::Field {
            event: format.name.clone(),
            field: field.name.clone(),
            what: what.to_string(),
        };
        fields.insert(
            field.name.clone(),
            field_value(record, field).map_err(|w| err(&w))?,
        );
    }
    Ok(Some(Event {
        name: format.name.clone(),
        cpu,
        timestamp_ns,
        fields,
    }))
}

fn field_value(record: &[u8], field: &Field) -> Result<Value, String> {
    let past = || {
        format!(
            "bytes {}..{} past the record's {}",
            field.offset,
            field.offset + field.size,
            record.len()
        )
    };
    let bytes = |start: usize, len: usize| -> Result<&[u8], String> {
        start
            .checked_add(len)
            .and_then(|end| record.get(start..end))
            .ok_or_else(past)
    };
    let text = |b: &[u8]| {
        let b = b.split(|c| *c == 0).next().unwrap_or(b);
        Value::Str(String::from_utf8_lossy(b).into_owned())
    };
    match field.kind {
        Kind::Scalar => {
            if !matches!(field.size, 1 | 2 | 4 | 8) {
                return Ok(Value::Unprintable);
            }
            let v = read_uint(record, field.offset, field.size).ok_or_else(past)?;
            Ok(if field.signed {
                let shift = 64 - 8 * field.size as u32;
                Value::I64(((v << shift) as i64) >> shift)
            } else {
                Value::U64(v)
            })
        }
        Kind::Array { .. } => {
            let b = bytes(field.offset, field.size)?;
            Ok(if field.is_string() {
                text(b)
            } else {
                Value::Bytes(b.to_vec())
            })
        }
        Kind::DataLoc | Kind::RelLoc => {
            let loc = read_uint(record, field.offset, 4).ok_or_else(past)?;
            let mut offset = (loc & 0xffff) as usize;
            let len = (loc >> 16) as usize;
            if field.kind == Kind::RelLoc {
                offset += field.offset + 4;
            }
            let b = bytes(offset, len)?;
            Ok(if field.is_string() {
                text(b)
            } else {
                Value::Bytes(b.to_vec())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEADER_PAGE: &str = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";

    fn fmt() -> Format {
        Format::parse(
            "name: ev\nID: 77\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
\tfield:u64 status;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:__data_loc char[] msg;\toffset:16;\tsize:4;\tsigned:0;\n\
\tfield:s8 layer;\toffset:20;\tsize:1;\tsigned:1;\n",
        )
        .unwrap()
    }

    fn record(status: u64, msg: &str, layer: i8) -> Vec<u8> {
        let mut r = vec![0u8; 24];
        r[0..2].copy_from_slice(&77u16.to_ne_bytes());
        r[8..16].copy_from_slice(&status.to_ne_bytes());
        let loc = ((msg.len() as u32 + 1) << 16) | 24;
        r[16..20].copy_from_slice(&loc.to_ne_bytes());
        r[20] = layer as u8;
        r.extend_from_slice(msg.as_bytes());
        r.push(0);
        while r.len() % 4 != 0 {
            r.push(0);
        }
        r
    }

    fn page(events: &[(u32, Vec<u8>)], flags: u64) -> Vec<u8> {
        let mut data = Vec::new();
        for (delta, rec) in events {
            if rec.len() <= 28 * 4 {
                data.extend_from_slice(&((delta << 5) | (rec.len() as u32 / 4)).to_ne_bytes());
            } else {
                data.extend_from_slice(&(delta << 5).to_ne_bytes());
                data.extend_from_slice(&(rec.len() as u32 + 4).to_ne_bytes());
            }
            data.extend_from_slice(rec);
        }
        // A time extend: 1 << 27 ns more.
        data.extend_from_slice(&((1u32 << 5) | 30).to_ne_bytes());
        data.extend_from_slice(&1u32.to_ne_bytes());
        let mut p = Vec::new();
        p.extend_from_slice(&1_000u64.to_ne_bytes());
        p.extend_from_slice(&(data.len() as u64 | flags).to_ne_bytes());
        p.extend_from_slice(&data);
        p
    }

    #[test]
    fn pages_and_records_decode_by_the_format() {
        let layout = PageLayout::parse(HEADER_PAGE).unwrap();
        assert_eq!(
            layout,
            PageLayout {
                commit_offset: 8,
                commit_size: 8,
                data_offset: 16,
                page_size: 4096
            }
        );
        let long = "x".repeat(200);
        let p = page(
            &[
                (5, record(0x9c00000000010091, "read error", -1)),
                (10, record(1, &long, 3)),
            ],
            MISSED_EVENTS,
        );
        let out = decode_page(&p, &layout, &[fmt()], 3).unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(out.missed);
        assert_eq!(out.events.len(), 2);
        let e = &out.events[0];
        assert_eq!((e.cpu, e.timestamp_ns), (3, 1005));
        assert_eq!(e.u64("status"), Some(0x9c00000000010091));
        assert_eq!(e.str("msg"), Some("read error"));
        assert_eq!(e.i64("layer"), Some(-1));
        assert_eq!(out.events[1].timestamp_ns, 1015);
        assert_eq!(out.events[1].str("msg"), Some(long.as_str()));
    }

    #[test]
    fn hostile_pages_are_errors_not_panics() {
        let layout = PageLayout::parse(HEADER_PAGE).unwrap();
        assert_eq!(
            decode_page(&[0; 10], &layout, &[fmt()], 0),
            Err(RawError::ShortPage(10))
        );
        let good = page(&[(5, record(7, "m", 1))], 0);
        // Every truncation, every byte flipped: errors or fewer events, never a panic.
        for i in 0..good.len() {
            let _ = decode_page(&good[..i], &layout, &[fmt()], 0);
            for x in [0u8, 0xff, 0x1d, 0x1e, 0x1f, 0x80] {
                let mut p = good.clone();
                p[i] = x;
                let _ = decode_page(&p, &layout, &[fmt()], 0);
            }
        }
        // A string that points outside its record.
        let mut rec = record(7, "m", 1);
        rec[16..20].copy_from_slice(&((64u32 << 16) | 24).to_ne_bytes());
        let out = decode_page(&page(&[(1, rec)], 0), &layout, &[fmt()], 0).unwrap();
        assert!(out.events.is_empty());
        assert!(
            out.errors[0].to_string().contains("field msg"),
            "{:?}",
            out.errors
        );
        assert!(
            PageLayout::parse("field: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n")
                .unwrap_err()
                .to_string()
                .contains("no field commit")
        );
    }
}
