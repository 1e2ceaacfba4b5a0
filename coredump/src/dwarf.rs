//! Lazy DWARF lookup for a file with `.debug_aranges`: only the compilation units of the
//! addresses asked for are parsed, and compressed sections are inflated only as far as those
//! units need (libc's separate debug file is 8.5 MB of zlib-compressed DWARF; inflating all of
//! it and indexing every unit, as `addr2line::Context` does, took longer than the whole rest of
//! the probe). `.debug_loclists` and other sections unused for names and lines are never read.
//!
//! Answers are the same as `addr2line` 0.27 gives for the address: the outermost function
//! (`DW_TAG_subprogram` whose ranges hold the address; linkage name, else name, else through
//! `DW_AT_abstract_origin`/`DW_AT_specification`) and the line-table row of the address, the
//! file rendered as addr2line renders it. The unit is chosen by `.debug_aranges` only (as
//! libdw does); addr2line also trusts a unit's `DW_AT_ranges` first, which GCC never makes
//! disagree with its aranges. Errors are reported so that the caller falls back to addr2line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use flate2::{Decompress, FlushDecompress, Status};
use gimli::{
    AttributeValue, DebugInfoOffset, EndianSlice, Reader, RunTimeEndian, SectionId, UnitOffset,
};
use object::read::ReadCache;
use object::{CompressionFormat, Object, ObjectSection};

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// Why the lazy path gave up (the caller then loads the file with addr2line).
#[derive(Debug)]
pub(crate) struct Unsupported(pub(crate) String);

impl From<gimli::Error> for Unsupported {
    fn from(e: gimli::Error) -> Self {
        Unsupported(e.to_string())
    }
}

/// The sections read; everything else is left in the file.
const SECTIONS: [SectionId; 10] = [
    SectionId::DebugAbbrev,
    SectionId::DebugAddr,
    SectionId::DebugAranges,
    SectionId::DebugInfo,
    SectionId::DebugLine,
    SectionId::DebugLineStr,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
    SectionId::DebugRanges,
    SectionId::DebugRngLists,
];

/// Sections read only as far as a unit needs them; the others are inflated whole (small).
fn is_prefix_section(id: SectionId) -> bool {
    matches!(
        id,
        SectionId::DebugInfo | SectionId::DebugLine | SectionId::DebugAbbrev
    )
}

/// Inflate at least this much more at a time (one zlib call per step).
const STEP: usize = 256 * 1024;

/// A section's bytes, a prefix of them while the rest is still compressed.
struct Section {
    data: Vec<u8>,
    inflate: Option<Inflate>,
}

struct Inflate {
    input: Vec<u8>,
    z: Decompress,
    size: usize,
}

impl Section {
    /// Inflates until at least `len` bytes are available (or the section ends).
    fn ensure(&mut self, len: usize) {
        let Some(inf) = &mut self.inflate else {
            return;
        };
        let want = len.max(self.data.len().saturating_add(STEP)).min(inf.size);
        // Bounded: every round makes progress or stops.
        while self.data.len() < want {
            self.data.reserve_exact(want - self.data.len());
            let (in_before, out_before) = (inf.z.total_in(), self.data.len());
            let pos = usize::try_from(inf.z.total_in()).unwrap_or(usize::MAX);
            let input = inf.input.get(pos..).unwrap_or_default();
            let status = inf
                .z
                .decompress_vec(input, &mut self.data, FlushDecompress::None);
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(_) if inf.z.total_in() != in_before || self.data.len() != out_before => {}
                Ok(_) | Err(_) => {
                    tracing::debug!("compressed debug section ends early");
                    break;
                }
            }
        }
        if self.data.len() >= want && self.data.len() < inf.size {
            return;
        }
        self.inflate = None;
    }

    fn complete(&self) -> bool {
        self.inflate.is_none()
    }
}

/// What one address resolves to in a unit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) function: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// A line-table row: address, file index, line (0: none).
type Row = (u64, u64, u32);

/// A parsed unit, kept for the next address in it: its line table and function ranges.
struct UnitInfo {
    lang: Option<gimli::DwLang>,
    files: Vec<String>,
    /// Sequences (start, end, rows), sorted by start.
    sequences: Vec<(u64, u64, Vec<Row>)>,
    /// (begin, end, DIE offset) of every `DW_TAG_subprogram` range, sorted by begin.
    functions: Vec<(u64, u64, usize)>,
    names: HashMap<usize, Option<String>>,
}

enum Step<T> {
    Done(T),
    /// Inflate this section to at least this length and try again.
    Need(SectionId, usize),
}

macro_rules! need {
    ($e:expr) => {
        match $e {
            Step::Done(v) => v,
            Step::Need(id, len) => return Ok(Step::Need(id, len)),
        }
    };
}

pub(crate) struct LazyDwarf {
    endian: RunTimeEndian,
    sections: HashMap<SectionId, Section>,
    /// (begin, end, unit offset) from `.debug_aranges`.
    aranges: Vec<(u64, u64, usize)>,
    units: HashMap<usize, UnitInfo>,
}

impl LazyDwarf {
    /// Opens `path` when it has `.debug_info` and `.debug_aranges`; `Ok(None)` when it has not.
    pub(crate) fn open(path: &Path) -> Result<Option<LazyDwarf>, Unsupported> {
        let file = File::open(path).map_err(|e| Unsupported(e.to_string()))?;
        let cache = ReadCache::new(file);
        let obj = object::File::parse(&cache).map_err(|e| Unsupported(e.to_string()))?;
        if obj.section_by_name(".debug_info").is_none()
            || obj.section_by_name(".debug_aranges").is_none()
        {
            return Ok(None);
        }
        let endian = if obj.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let mut sections = HashMap::new();
        for id in SECTIONS {
            let Some(s) = obj.section_by_name(id.name()) else {
                continue;
            };
            let c = s
                .compressed_data()
                .map_err(|e| Unsupported(e.to_string()))?;
            let mut section = match c.format {
                CompressionFormat::None => Section {
                    data: c.data.to_vec(),
                    inflate: None,
                },
                CompressionFormat::Zlib => Section {
                    data: Vec::new(),
                    inflate: Some(Inflate {
                        input: c.data.to_vec(),
                        z: Decompress::new(true),
                        size: usize::try_from(c.uncompressed_size)
                            .map_err(|_| Unsupported("section size".into()))?,
                    }),
                },
                // zstd and others: whole, by object.
                _ => Section {
                    data: c
                        .decompress()
                        .map_err(|e| Unsupported(e.to_string()))?
                        .into_owned(),
                    inflate: None,
                },
            };
            if !is_prefix_section(id) {
                section.ensure(usize::MAX);
            }
            sections.insert(id, section);
        }
        let mut lazy = LazyDwarf {
            endian,
            sections,
            aranges: Vec::new(),
            units: HashMap::new(),
        };
        lazy.aranges = lazy.read_aranges()?;
        Ok(Some(lazy))
    }

    fn data(&self, id: SectionId) -> &[u8] {
        self.sections.get(&id).map_or(&[], |s| &s.data)
    }

    fn complete(&self, id: SectionId) -> bool {
        self.sections.get(&id).is_none_or(Section::complete)
    }

    fn dwarf(&self) -> gimli::Dwarf<R<'_>> {
        let load = |id: SectionId| -> Result<R<'_>, ()> {
            Ok(EndianSlice::new(self.data(id), self.endian))
        };
        gimli::Dwarf::load(load).unwrap_or_default()
    }

    fn read_aranges(&self) -> Result<Vec<(u64, u64, usize)>, Unsupported> {
        let dwarf = self.dwarf();
        let mut out = Vec::new();
        let mut headers = dwarf.debug_aranges.headers();
        while let Some(header) = headers.next()? {
            let unit = header.debug_info_offset().0;
            let mut entries = header.entries();
            // Entries with address overflow are skipped, as addr2line does.
            while let Some(entry) = entries.next().transpose() {
                if let Ok(e) = entry {
                    if e.length() != 0 {
                        let r = e.range();
                        out.push((r.begin, r.end, unit));
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Function, file and line of a link-time address; `None` when no unit covers it.
    pub(crate) fn lookup(&mut self, probe: u64) -> Result<Option<Found>, Unsupported> {
        let mut units: Vec<usize> = self
            .aranges
            .iter()
            .filter(|r| r.0 <= probe && probe < r.1)
            .map(|r| r.2)
            .collect();
        units.dedup();
        for unit in units {
            // Bounded: every round inflates more of a finite section, or stops.
            let mut found = None;
            for _ in 0..64 {
                match self.try_unit(unit, probe)? {
                    Step::Done(f) => {
                        found = Some(f);
                        break;
                    }
                    Step::Need(id, len) => {
                        let before = self.data(id).len();
                        if let Some(s) = self.sections.get_mut(&id) {
                            s.ensure(len);
                        }
                        if self.data(id).len() == before {
                            return Err(Unsupported(format!("{} ends early", id.name())));
                        }
                    }
                }
            }
            match found {
                Some(f) if f.function.is_some() || f.line.is_some() || f.file.is_some() => {
                    return Ok(Some(f))
                }
                Some(_) => {}
                None => return Err(Unsupported("too many inflate rounds".into())),
            }
        }
        Ok(None)
    }

    /// Looks `probe` up in the unit at `unit`, parsing (and caching) the unit first.
    fn try_unit(&mut self, unit: usize, probe: u64) -> Result<Step<Found>, Unsupported> {
        if !self.units.contains_key(&unit) {
            let info = need!(self.parse_unit(unit)?);
            self.units.insert(unit, info);
        }
        let Some(info) = self.units.get(&unit) else {
            return Err(Unsupported("unit cache".into()));
        };
        let mut found = Found::default();
        if let Some((file, line)) = info.location(probe) {
            found.file = file;
            found.line = Some(line);
        }
        // The same search as addr2line's `Functions::find_address` (ranges assumed disjoint).
        let function = info
            .functions
            .binary_search_by(|f| {
                if probe < f.0 {
                    std::cmp::Ordering::Greater
                } else if probe >= f.1 {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .ok()
            .map(|i| info.functions[i].2);
        let Some(die) = function else {
            return Ok(Step::Done(found));
        };
        let name = match info.names.get(&die) {
            Some(n) => n.clone(),
            None => {
                let lang = info.lang;
                let n = need!(self.function_name(unit, die)?)
                    .map(|n| addr2line::demangle_auto(Cow::Owned(n), lang).into_owned());
                if let Some(info) = self.units.get_mut(&unit) {
                    info.names.insert(die, n.clone());
                }
                n
            }
        };
        found.function = name;
        Ok(Step::Done(found))
    }

    /// Makes sure the unit at `offset` and its line program are inflated, then parses it.
    fn load_unit<'a>(
        &'a self,
        dwarf: &gimli::Dwarf<R<'a>>,
        offset: usize,
    ) -> Result<Step<gimli::Unit<R<'a>>>, Unsupported> {
        let end = need!(self.extent(SectionId::DebugInfo, offset)?);
        if end > self.data(SectionId::DebugInfo).len() {
            return Err(Unsupported("unit beyond .debug_info".into()));
        }
        let header = dwarf
            .debug_info
            .header_from_offset(DebugInfoOffset(offset))?;
        need!(self.abbrev_table_end(header.debug_abbrev_offset().0));
        let abbrevs = header.abbreviations(&dwarf.debug_abbrev)?;
        // The root DIE's DW_AT_stmt_list: gimli parses the line program header with the unit.
        let mut entries = header.entries_raw(&abbrevs, None)?;
        if let Some(abbrev) = entries.read_abbreviation()? {
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec)?;
                if let AttributeValue::DebugLineRef(line) = attr.value() {
                    need!(self.extent(SectionId::DebugLine, line.0)?);
                }
            }
        }
        let abbrevs = std::sync::Arc::new(abbrevs);
        Ok(Step::Done(gimli::Unit::new_with_abbreviations(
            dwarf, header, abbrevs,
        )?))
    }

    /// Makes sure the abbreviation table at `offset` is inflated up to its terminating 0 code
    /// (gimli takes the end of the data for the end of the table).
    fn abbrev_table_end(&self, offset: usize) -> Step<()> {
        let id = SectionId::DebugAbbrev;
        if self.complete(id) {
            return Step::Done(());
        }
        let data = self.data(id);
        let more = Step::Need(id, data.len().saturating_add(STEP));
        let mut r = EndianSlice::new(data.get(offset..).unwrap_or_default(), self.endian);
        // Bounded by the data: every read consumes at least one byte or fails.
        loop {
            let Ok(code) = r.read_uleb128() else {
                return more;
            };
            if code == 0 {
                return Step::Done(());
            }
            if r.read_uleb128().is_err() || r.read_u8().is_err() {
                return more;
            }
            loop {
                let (Ok(name), Ok(form)) = (r.read_uleb128(), r.read_uleb128()) else {
                    return more;
                };
                if form == u64::from(gimli::DW_FORM_implicit_const.0) && r.read_sleb128().is_err() {
                    return more;
                }
                if name == 0 && form == 0 {
                    break;
                }
            }
        }
    }

    /// End of the length-prefixed entry at `offset` of a prefix section, once inflated.
    fn extent(&self, id: SectionId, offset: usize) -> Result<Step<usize>, Unsupported> {
        let data = self.data(id);
        let complete = self.complete(id);
        let head = offset.saturating_add(12);
        if data.len() < head && !complete {
            return Ok(Step::Need(id, head));
        }
        let mut r = EndianSlice::new(data.get(offset..).unwrap_or_default(), self.endian);
        let (len, format) = r.read_initial_length()?;
        let end = offset
            .saturating_add(format.initial_length_size().into())
            .saturating_add(len);
        if data.len() < end && !complete {
            return Ok(Step::Need(id, end));
        }
        Ok(Step::Done(end))
    }

    fn parse_unit(&self, offset: usize) -> Result<Step<UnitInfo>, Unsupported> {
        let dwarf = self.dwarf();
        let unit = need!(self.load_unit(&dwarf, offset)?);
        let unit = gimli::UnitRef::new(&dwarf, &unit);
        let mut info = UnitInfo {
            lang: None,
            files: Vec::new(),
            sequences: Vec::new(),
            functions: Vec::new(),
            names: HashMap::new(),
        };
        if let Some(program) = unit.line_program.clone() {
            info.read_lines(unit, program)?;
        }
        let mut entries = unit.entries_raw(None)?;
        let mut root = true;
        while !entries.is_empty() {
            let die = entries.next_offset().0;
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            let is_function = abbrev.tag() == gimli::DW_TAG_subprogram;
            if !is_function && !root {
                entries.skip_attributes(abbrev.attributes())?;
                continue;
            }
            let (mut low, mut high, mut size, mut ranges) = (None, None, None, None);
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec)?;
                match (attr.name(), attr.value()) {
                    (gimli::DW_AT_language, AttributeValue::Language(l)) if root => {
                        info.lang = Some(l);
                    }
                    (gimli::DW_AT_low_pc, AttributeValue::Addr(v)) => low = Some(v),
                    (gimli::DW_AT_low_pc, AttributeValue::DebugAddrIndex(i)) => {
                        low = Some(unit.address(i)?);
                    }
                    (gimli::DW_AT_high_pc, AttributeValue::Addr(v)) => high = Some(v),
                    (gimli::DW_AT_high_pc, AttributeValue::DebugAddrIndex(i)) => {
                        high = Some(unit.address(i)?);
                    }
                    (gimli::DW_AT_high_pc, AttributeValue::Udata(v)) => size = Some(v),
                    (gimli::DW_AT_ranges, v) => ranges = unit.attr_ranges_offset(v)?,
                    _ => {}
                }
            }
            if root {
                root = false;
                if !is_function {
                    continue;
                }
            }
            // As addr2line's RangeAttributes::for_each_range.
            if let Some(r) = ranges {
                let mut iter = unit.ranges(r)?;
                while let Some(r) = iter.next()? {
                    if r.begin < r.end {
                        info.functions.push((r.begin, r.end, die));
                    }
                }
            } else if let (Some(begin), Some(end)) =
                (low, high.or(low.zip(size).map(|(l, s)| l.wrapping_add(s))))
            {
                if begin < end {
                    info.functions.push((begin, end, die));
                }
            }
        }
        info.functions.sort_unstable_by_key(|f| f.0);
        Ok(Step::Done(info))
    }

    /// The name of the function DIE at `die` of unit `unit`, following abstract origins and
    /// specifications (also into other units) at most 16 deep, as addr2line.
    fn function_name(&self, unit: usize, die: usize) -> Result<Step<Option<String>>, Unsupported> {
        let dwarf = self.dwarf();
        let mut at = (unit, die);
        for _ in 0..16 {
            let u = need!(self.load_unit(&dwarf, at.0)?);
            let u = gimli::UnitRef::new(&dwarf, &u);
            let mut entries = u.entries_raw(Some(UnitOffset(at.1)))?;
            let Some(abbrev) = entries.read_abbreviation()? else {
                return Ok(Step::Done(None));
            };
            let (mut linkage, mut name, mut next) = (None, None, None);
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec)?;
                match attr.name() {
                    gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                        if let Ok(s) = u.attr_string(attr.value()) {
                            linkage.get_or_insert(s);
                        }
                    }
                    gimli::DW_AT_name => {
                        if let Ok(s) = u.attr_string(attr.value()) {
                            name = Some(s);
                        }
                    }
                    gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                        next = Some(attr.value());
                    }
                    _ => {}
                }
            }
            if let Some(s) = linkage.or(name) {
                return Ok(Step::Done(Some(s.to_string_lossy().into_owned())));
            }
            at = match next {
                Some(AttributeValue::UnitRef(o)) => (at.0, o.0),
                Some(AttributeValue::DebugInfoRef(o)) => need!(self.unit_containing(o.0)?),
                _ => return Ok(Step::Done(None)),
            };
        }
        Ok(Step::Done(None))
    }

    /// (unit offset, offset in it) of a `.debug_info` offset, walking the unit headers.
    fn unit_containing(&self, target: usize) -> Result<Step<(usize, usize)>, Unsupported> {
        let mut offset = 0;
        // Bounded by the section: every unit is at least its length field.
        while offset <= target {
            let end = need!(self.extent(SectionId::DebugInfo, offset)?);
            if end <= offset {
                break;
            }
            if target < end {
                return Ok(Step::Done((offset, target - offset)));
            }
            offset = end;
        }
        Err(Unsupported("reference outside .debug_info".into()))
    }
}

impl UnitInfo {
    /// As addr2line's `Lines::parse`.
    fn read_lines<'a>(
        &mut self,
        unit: gimli::UnitRef<'_, R<'a>>,
        program: gimli::IncompleteLineProgram<R<'a>>,
    ) -> Result<(), Unsupported> {
        let mut rows = program.rows();
        let mut seq: Vec<Row> = Vec::new();
        while let Some((_, row)) = rows.next_row()? {
            if row.end_sequence() {
                if let Some(start) = seq.first().map(|r| r.0) {
                    let end = row.address();
                    let rows = std::mem::take(&mut seq);
                    if start < end {
                        self.sequences.push((start, end, rows));
                    }
                }
                continue;
            }
            let line =
                u32::try_from(row.line().map_or(0, std::num::NonZeroU64::get)).unwrap_or(u32::MAX);
            let (address, file) = (row.address(), row.file_index());
            if let Some(last) = seq.last_mut() {
                if last.0 == address {
                    *last = (address, file, line);
                    continue;
                }
            }
            seq.push((address, file, line));
        }
        self.sequences.sort_unstable_by_key(|s| s.0);
        let header = rows.header();
        self.files.push(match header.file(0) {
            Some(f) => render_file(unit, f, header)?,
            None => String::new(),
        });
        let mut index = 1;
        while let Some(f) = header.file(index) {
            self.files.push(render_file(unit, f, header)?);
            index += 1;
        }
        Ok(())
    }

    /// (file, line) of the row holding `probe`; `None` without a row or with line 0.
    fn location(&self, probe: u64) -> Option<(Option<String>, u32)> {
        let i = self
            .sequences
            .partition_point(|s| s.0 <= probe)
            .checked_sub(1)?;
        let (_, end, rows) = &self.sequences[i];
        if probe >= *end {
            return None;
        }
        let j = rows.partition_point(|r| r.0 <= probe).checked_sub(1)?;
        let (_, file, line) = rows[j];
        if line == 0 {
            return None;
        }
        let file = usize::try_from(file)
            .ok()
            .and_then(|f| self.files.get(f))
            .cloned();
        Some((file, line))
    }
}

/// As addr2line's `render_file`.
fn render_file<'a>(
    unit: gimli::UnitRef<'_, R<'a>>,
    file: &gimli::FileEntry<R<'a>>,
    header: &gimli::LineProgramHeader<R<'a>>,
) -> Result<String, gimli::Error> {
    let mut path = match unit.comp_dir {
        Some(dir) => dir.to_string_lossy().into_owned(),
        None => String::new(),
    };
    if file.directory_index() != 0 {
        if let Some(dir) = file.directory(header) {
            path_push(&mut path, &unit.attr_string(dir)?.to_string_lossy());
        }
    }
    path_push(
        &mut path,
        &unit.attr_string(file.path_name())?.to_string_lossy(),
    );
    Ok(path)
}

fn path_push(path: &mut String, p: &str) {
    let rooted = |p: &str| p.starts_with('/') || p.get(1..3) == Some(":/");
    let rooted_win = |p: &str| p.starts_with('\\') || p.get(1..3) == Some(":\\");
    if rooted(p) || rooted_win(p) {
        *path = p.to_owned();
    } else {
        let sep = if rooted_win(path) { '\\' } else { '/' };
        if !path.is_empty() && !path.ends_with(sep) {
            path.push(sep);
        }
        path.push_str(p);
    }
}
