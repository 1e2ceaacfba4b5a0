//! The kernel's description of a tracepoint: `events/<system>/<event>/format` under tracefs.
//!
//! Events are decoded by this description (field names, types, sizes, signedness), never by the
//! event's print format, so a kernel that adds or drops fields still decodes.

use std::path::Path;

/// What a malformed `format` file looks like.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// A line the parser does not understand.
    #[error("line {line}: {what}")]
    Line { line: usize, what: String },
    /// The `name:` line is missing.
    #[error("no `name:` line")]
    NoName,
    /// The `ID:` line is missing.
    #[error("no `ID:` line")]
    NoId,
}

/// How a field's bytes are laid out in the event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A plain number of `size` bytes.
    Scalar,
    /// A fixed array of `len` elements (`char comm[16]`, `u32 tlp_header[4]`).
    Array { len: usize },
    /// `__data_loc T[]`: a 4-byte (length << 16 | offset) pointing into the record.
    DataLoc,
    /// `__rel_loc T[]`: as `DataLoc`, the offset relative to the end of the field.
    RelLoc,
}

/// One `field:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The C type as written (`unsigned int`, `__data_loc char[]`, `u64`).
    pub ty: String,
    pub name: String,
    pub kind: Kind,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

impl Field {
    /// True for text: `char` arrays and `__data_loc`/`__rel_loc char[]`.
    pub fn is_string(&self) -> bool {
        let base = self
            .ty
            .trim_start_matches("__data_loc ")
            .trim_start_matches("__rel_loc ")
            .trim_end_matches("[]")
            .trim();
        base == "char" && !matches!(self.kind, Kind::Scalar)
    }

    /// True for the fields every event carries (`common_type`, `common_pid` …).
    pub fn is_common(&self) -> bool {
        self.name.starts_with("common_")
    }
}

/// A parsed `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The event name (`mce_record`).
    pub name: String,
    /// The event id (`common_type` of its records).
    pub id: u32,
    /// All fields in the order of the file, common ones first.
    pub fields: Vec<Field>,
}

impl Format {
    /// Parses the text of a `format` file.
    pub fn parse(text: &str) -> Result<Format, FormatError> {
        let mut name = None;
        let mut id = None;
        let mut fields = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let bad = |what: &str| FormatError::Line {
                line: i + 1,
                what: what.to_string(),
            };
            if let Some(v) = line.strip_prefix("name:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("ID:") {
                id = Some(v.trim().parse().map_err(|_| bad("ID is not a number"))?);
            } else if line.starts_with("field:") {
                fields.push(parse_field(line).map_err(|w| bad(&w))?);
            } else if line.starts_with("print fmt:") {
                // The layout of the default text output: deliberately not used.
                break;
            }
        }
        Ok(Format {
            name: name.ok_or(FormatError::NoName)?,
            id: id.ok_or(FormatError::NoId)?,
            fields,
        })
    }

    /// Reads and parses a `format` file.
    pub fn read(path: &Path) -> Result<Format, crate::ras::RasError> {
        let text = crate::ras::tracefs::read_file(path)?;
        Format::parse(&text).map_err(|e| crate::ras::RasError::Format {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// The event's own fields (the ones the text output prints), in order.
    pub fn own_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| !f.is_common())
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// `field:TYPE NAME;\toffset:N;\tsize:N;\tsigned:N;`
pub(crate) fn parse_field(line: &str) -> Result<Field, String> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, None);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}` has no `:`"))?;
        let num = || {
            value
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("{key} `{value}` is not a number"))
        };
        match key.trim() {
            "field" => decl = Some(value.trim()),
            "offset" => offset = Some(num()?),
            "size" => size = Some(num()?),
            "signed" => signed = Some(num()? != 0),
            // Attributes later kernels may add are not needed to decode.
            _ => {}
        }
    }
    let decl = decl.ok_or("no field declaration")?;
    let (ty, name) = decl
        .rsplit_once(' ')
        .ok_or_else(|| format!("`{decl}` has no type"))?;
    let ty = ty.trim().to_string();
    let (name, kind) = match name.split_once('[') {
        Some((n, rest)) => {
            let len = rest.trim_end_matches(']');
            // A length the kernel prints as an expression (`[TASK_COMM_LEN]`) or as
            // nothing: the size says how many bytes it is.
            (
                n.to_string(),
                Kind::Array {
                    len: len.parse().unwrap_or(0),
                },
            )
        }
        None if ty.starts_with("__data_loc") => (name.to_string(), Kind::DataLoc),
        None if ty.starts_with("__rel_loc") => (name.to_string(), Kind::RelLoc),
        None => (name.to_string(), Kind::Scalar),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("bad field name `{name}`"));
    }
    Ok(Field {
        ty,
        name,
        kind,
        offset: offset.ok_or("no offset")?,
        size: size.ok_or("no size")?,
        signed: signed.ok_or("no signed")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MC_EVENT: &str = "name: mc_event\nID: 2206\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:unsigned int error_type;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:__data_loc char[] msg;\toffset:12;\tsize:4;\tsigned:0;\n\
\tfield:s8 top_layer;\toffset:23;\tsize:1;\tsigned:1;\n\
\tfield:char comm[16];\toffset:24;\tsize:16;\tsigned:1;\n\
\tfield:u32 tlp_header[4];\toffset:40;\tsize:16;\tsigned:0;\n\n\
print fmt: \"%d\", REC->error_type\n";

    #[test]
    fn parses_fields_kinds_and_ids() {
        let f = Format::parse(MC_EVENT).unwrap();
        assert_eq!(f.name, "mc_event");
        assert_eq!(f.id, 2206);
        let names: Vec<_> = f.own_fields().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["error_type", "msg", "top_layer", "comm", "tlp_header"]
        );
        let msg = f.field("msg").unwrap();
        assert_eq!(
            (msg.kind.clone(), msg.offset, msg.size),
            (Kind::DataLoc, 12, 4)
        );
        assert!(msg.is_string());
        assert!(f.field("top_layer").unwrap().signed);
        assert_eq!(f.field("comm").unwrap().kind, Kind::Array { len: 16 });
        assert!(f.field("comm").unwrap().is_string());
        assert!(!f.field("tlp_header").unwrap().is_string());
        assert!(!f.field("error_type").unwrap().is_string());
    }

    #[test]
    fn broken_files_are_clear_errors() {
        assert_eq!(Format::parse("ID: 3\n"), Err(FormatError::NoName));
        assert_eq!(Format::parse("name: x\n"), Err(FormatError::NoId));
        let e = Format::parse("name: x\nID: 1\n\tfield:u8 a;\toffset:zz;\tsize:1;\tsigned:0;\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "line 3: offset `zz` is not a number");
        let e = Format::parse("name: x\nID: 1\n\tfield:u8 a;\tsize:1;\tsigned:0;\n").unwrap_err();
        assert!(e.to_string().contains("no offset"), "{e}");
        let e = Format::parse("name: x\nID: 1\n\tfield:u8 a-b;\toffset:1;\tsize:1;\tsigned:0;\n")
            .unwrap_err();
        assert!(e.to_string().contains("bad field name"), "{e}");
    }
}
