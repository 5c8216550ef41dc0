//! Column chunks of the series-constant string columns, written from their runs.
//!
//! `metric`, the label columns and the `tags` map hold one value per series, repeated on each
//! of its thousands of rows. The Arrow writer sees them row by row: every row's string is
//! hashed into the chunk's dictionary and compared for the page's min and max, which was about
//! 40 % of a raw run's CPU (`reference/performance.md`, profile in docs/performance.md). The rows come
//! sorted by series, so a page of such a column is a handful of runs: this module finds the
//! runs (an integer compare per row on the batch's dictionary keys), looks each run's value up
//! once, and writes the chunk Parquet readers expect from a dictionary-encoded column: a PLAIN
//! dictionary page, then data pages of RLE levels and RLE dictionary indices, with chunk
//! statistics, column index (page min/max) and offset index, appended to the row group as an
//! already-encoded chunk. The bytes follow the layout the Arrow writer produces for the same
//! column (data page v1, `RLE_DICTIONARY`, one run per value change), so DuckDB, Spark and
//! pyarrow read them as they read the rest; the tests compare every row and every statistic
//! with the Arrow writer's output.
//!
//! Only the settings our tables use are handled (format v1 pages, ZSTD or no compression,
//! dictionary on, no bloom filter); for any other, [`RunColumnWriter::try_new`] says no and
//! the column goes through the Arrow writer as before.

use std::ops::Range;

use arrow::array::{Array, AsArray, Int32Array, StringArray};
use arrow::datatypes::{DataType, Int32Type};
use bytes::Bytes;
use parquet::basic::{
    BoundaryOrder, Compression, Encoding, EncodingMask, PageType, Type as PhysicalType,
};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use crate::transform::StringDictionary;

/// Which part of a row a leaf column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// A top-level string column (`metric`, a label): one value per row.
    Column,
    /// The keys of a `map<string, string>` column: one per entry, never null.
    MapKey,
    /// The values of a `map<string, string>` column: one per entry, null allowed.
    MapValue,
}

/// The definition levels a leaf's rows take (repetition levels are 0 for a row's first entry,
/// 1 for the others).
#[derive(Debug, Clone, Copy)]
struct Levels {
    max_def: i16,
    max_rep: i16,
    /// A present value.
    present: i16,
    /// A null value (None: the leaf is required).
    null_value: Option<i16>,
    /// A map with no entries (map leaves only).
    empty: Option<i16>,
    /// A null map (None: the map is required).
    null_map: Option<i16>,
}

impl Levels {
    /// The levels of `kind` in a column described by `descr`, or None when the column is not
    /// shaped as `kind` expects (then the Arrow writer takes it).
    fn of(descr: &ColumnDescPtr, kind: LeafKind) -> Option<Levels> {
        let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
        let levels = match kind {
            LeafKind::Column if max_rep == 0 && max_def <= 1 => Levels {
                max_def,
                max_rep,
                present: max_def,
                null_value: (max_def == 1).then_some(0),
                empty: None,
                null_map: None,
            },
            // required or optional group (MAP) > repeated group key_value > required key
            LeafKind::MapKey if max_rep == 1 && (1..=2).contains(&max_def) => Levels {
                max_def,
                max_rep,
                present: max_def,
                null_value: None,
                empty: Some(max_def - 1),
                null_map: (max_def == 2).then_some(0),
            },
            // … > optional value
            LeafKind::MapValue if max_rep == 1 && (2..=3).contains(&max_def) => Levels {
                max_def,
                max_rep,
                present: max_def,
                null_value: Some(max_def - 1),
                empty: Some(max_def - 2),
                null_map: (max_def == 3).then_some(0),
            },
            _ => return None,
        };
        Some(levels)
    }
}

/// Consecutive rows with the same entries.
#[derive(Debug, Clone, PartialEq)]
struct RowRun {
    rows: usize,
    /// Range of `LeafRuns::entries`; None for a null map.
    entries: Option<Range<usize>>,
}

/// One leaf of one batch as runs of identical rows; entries are keys into `values`.
#[derive(Debug)]
struct LeafRuns<'a> {
    values: &'a StringArray,
    runs: Vec<RowRun>,
    /// Each entry's key into `values`; None for a null.
    entries: Vec<Option<u32>>,
}

/// Why a batch column cannot be read as runs (a bug: the writer chose runs for this column from
/// an earlier batch of the same file).
fn not_runs(what: &str, data_type: &DataType) -> ParquetError {
    ParquetError::General(format!(
        "{what}: expected a dictionary-encoded string column, got {data_type}"
    ))
}

/// The keys and values of a `Dictionary(Int32, Utf8)` array.
fn dictionary_parts(array: &dyn Array) -> Result<(&Int32Array, &StringArray), ParquetError> {
    let dict = array
        .as_dictionary_opt::<Int32Type>()
        .ok_or_else(|| not_runs("dictionary column", array.data_type()))?;
    let values = dict
        .values()
        .as_string_opt::<i32>()
        .ok_or_else(|| not_runs("dictionary values", dict.values().data_type()))?;
    Ok((dict.keys(), values))
}

/// Whether `array` is a column [`RunColumnWriter`] reads for `kind`.
pub fn is_run_input(array: &dyn Array, kind: LeafKind) -> bool {
    let dict_utf8 = |t: &DataType| {
        matches!(t, DataType::Dictionary(k, v)
            if k.as_ref() == &DataType::Int32 && v.as_ref() == &DataType::Utf8)
    };
    match kind {
        LeafKind::Column => dict_utf8(array.data_type()),
        LeafKind::MapKey | LeafKind::MapValue => match array.as_map_opt() {
            Some(map) => {
                let i = usize::from(kind == LeafKind::MapValue);
                map.entries().num_columns() == 2 && dict_utf8(map.entries().column(i).data_type())
            }
            None => false,
        },
    }
}

impl<'a> LeafRuns<'a> {
    /// The runs of a top-level dictionary column.
    fn of_column(array: &'a dyn Array) -> Result<LeafRuns<'a>, ParquetError> {
        let (keys, values) = dictionary_parts(array)?;
        let mut runs: Vec<RowRun> = Vec::new();
        let mut entries: Vec<Option<u32>> = Vec::new();
        let raw = keys.values();
        if keys.null_count() == 0 {
            // No nulls: each run ends where the key changes.
            let mut start = 0;
            while start < raw.len() {
                let key = raw[start];
                let rows = raw[start..]
                    .iter()
                    .position(|&k| k != key)
                    .unwrap_or(raw.len() - start);
                runs.push(RowRun {
                    rows,
                    entries: Some(entries.len()..entries.len() + 1),
                });
                entries.push(Some(key as u32));
                start += rows;
            }
            return Ok(LeafRuns {
                values,
                runs,
                entries,
            });
        }
        let mut i = 0;
        while i < raw.len() {
            let key = keys.is_valid(i).then(|| raw[i] as u32);
            let start = i;
            i += 1;
            match key {
                Some(k) => {
                    while i < raw.len() && raw[i] as u32 == k && keys.is_valid(i) {
                        i += 1;
                    }
                }
                None => {
                    while i < raw.len() && keys.is_null(i) {
                        i += 1;
                    }
                }
            }
            runs.push(RowRun {
                rows: i - start,
                entries: Some(entries.len()..entries.len() + 1),
            });
            entries.push(key);
        }
        Ok(LeafRuns {
            values,
            runs,
            entries,
        })
    }

    /// The runs of the keys (`MapKey`) or values (`MapValue`) of a map column whose entries are
    /// dictionary columns.
    fn of_map(array: &'a dyn Array, kind: LeafKind) -> Result<LeafRuns<'a>, ParquetError> {
        let map = array
            .as_map_opt()
            .ok_or_else(|| not_runs("map column", array.data_type()))?;
        let column = usize::from(kind == LeafKind::MapValue);
        let (keys, values) = dictionary_parts(map.entries().column(column).as_ref())?;
        let offsets = map.value_offsets();
        let key_at = |j: usize| keys.is_valid(j).then(|| keys.values()[j] as u32);
        let mut runs: Vec<RowRun> = Vec::new();
        let mut entries: Vec<Option<u32>> = Vec::new();
        for row in 0..map.len() {
            let range = offsets[row] as usize..offsets[row + 1] as usize;
            let null = map.is_null(row);
            let same = runs.last().is_some_and(|last| match &last.entries {
                None => null,
                Some(prev) => {
                    !null
                        && prev.len() == range.len()
                        && prev
                            .clone()
                            .zip(range.clone())
                            .all(|(p, j)| entries[p] == key_at(j))
                }
            });
            if same {
                runs.last_mut().expect("checked").rows += 1;
                continue;
            }
            let run_entries = (!null).then(|| {
                let start = entries.len();
                entries.extend(range.clone().map(key_at));
                start..entries.len()
            });
            runs.push(RowRun {
                rows: 1,
                entries: run_entries,
            });
        }
        Ok(LeafRuns {
            values,
            runs,
            entries,
        })
    }
}

/// Bits needed to hold `max`.
fn bit_width(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// Appends one RLE run of the RLE/bit-packing hybrid encoding: the ULEB128 header
/// `count << 1`, then `value` in `ceil(bit_width / 8)` little-endian bytes.
fn put_rle_run(out: &mut Vec<u8>, value: u64, count: usize, bit_width: u8) {
    put_varint(out, (count as u64) << 1);
    let bytes = usize::from(bit_width).div_ceil(8);
    out.extend_from_slice(&value.to_le_bytes()[..bytes]);
}

/// A lower bound of `value` at most `limit` bytes long: its longest prefix that ends on a
/// character boundary (as the Arrow writer cuts it); `true` when that is `value` itself.
fn lower_bound(value: &str, limit: Option<usize>) -> (Vec<u8>, bool) {
    match limit.filter(|&l| value.len() > l) {
        Some(l) => match (1..=l).rfind(|&i| value.is_char_boundary(i)) {
            Some(end) => (value.as_bytes()[..end].to_vec(), false),
            None => (value.as_bytes().to_vec(), true),
        },
        None => (value.as_bytes().to_vec(), true),
    }
}

/// An upper bound of `value` at most `limit` bytes long: a prefix with its last character
/// incremented (without growing it to more bytes), as the Arrow writer makes it; `value`
/// itself (`true`) when it is short enough or no such prefix exists.
fn upper_bound(value: &str, limit: Option<usize>) -> (Vec<u8>, bool) {
    let Some(l) = limit.filter(|&l| value.len() > l) else {
        return (value.as_bytes().to_vec(), true);
    };
    let cut = (l.saturating_sub(3)..=l).rfind(|&i| value.is_char_boundary(i));
    let prefix = cut.and_then(|end| value.get(..end)).unwrap_or_default();
    for (at, c) in prefix.char_indices().rev() {
        if let Some(next) = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8()) {
            let mut bound = prefix.as_bytes()[..at + c.len_utf8()].to_vec();
            next.encode_utf8(&mut bound[at..]);
            return (bound, false);
        }
    }
    (value.as_bytes().to_vec(), true)
}

/// Appends `value` as a ULEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Literals are written out once this many are pending (63 groups of 8, as the Arrow writer
/// does): a bound on the buffer, at one header byte per 504 values.
const MAX_LITERALS: usize = 504;

/// The RLE / bit-packing hybrid encoding of levels and dictionary indices, fed runs of equal
/// values: a repeat of 8 or more becomes an RLE run, shorter ones are bit-packed in groups of
/// 8 (a map's levels `0, 1, 1, 0, 1, 1, …`). Memory: the output and fewer than
/// [`MAX_LITERALS`] + 8 pending values.
#[derive(Debug)]
struct HybridEncoder {
    width: u8,
    out: Vec<u8>,
    literals: Vec<u32>,
    repeat: u32,
    repeat_len: usize,
}

impl HybridEncoder {
    fn new(width: u8) -> HybridEncoder {
        HybridEncoder {
            width,
            out: Vec::new(),
            literals: Vec::new(),
            repeat: 0,
            repeat_len: 0,
        }
    }

    /// Appends `count` copies of `value`.
    fn put(&mut self, value: u32, count: usize) {
        if count == 0 {
            return;
        }
        if self.repeat_len > 0 && value == self.repeat {
            self.repeat_len += count;
            return;
        }
        self.end_repeat();
        self.repeat = value;
        self.repeat_len = count;
    }

    /// Writes the current repeat: as an RLE run when long enough (after topping the pending
    /// literals up to a multiple of 8 from it: a bit-packed run holds whole groups), else as
    /// literals.
    fn end_repeat(&mut self) {
        let (value, mut n) = (self.repeat, self.repeat_len);
        self.repeat_len = 0;
        let top_up = (8 - self.literals.len() % 8) % 8;
        if n >= top_up + 8 {
            self.literals.extend(std::iter::repeat_n(value, top_up));
            n -= top_up;
            self.write_literals(self.literals.len());
            put_rle_run(&mut self.out, u64::from(value), n, self.width);
        } else {
            self.literals.extend(std::iter::repeat_n(value, n));
            if self.literals.len() >= MAX_LITERALS {
                self.write_literals(self.literals.len() / 8 * 8);
            }
        }
    }

    /// Writes the first `count` (a multiple of 8) pending literals as one bit-packed run.
    fn write_literals(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        put_varint(&mut self.out, ((count / 8) as u64) << 1 | 1);
        let width = u32::from(self.width);
        let (mut acc, mut bits) = (0u64, 0u32);
        for &v in &self.literals[..count] {
            acc |= u64::from(v) << bits;
            bits += width;
            while bits >= 8 {
                self.out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        self.literals.drain(..count);
    }

    /// The encoded values; the last bit-packed group is padded with zeros (readers stop at
    /// the page's value count).
    fn finish(mut self) -> Vec<u8> {
        self.end_repeat();
        let pad = (8 - self.literals.len() % 8) % 8;
        self.literals.extend(std::iter::repeat_n(0, pad));
        self.write_literals(self.literals.len());
        self.out
    }
}

/// `bounds` (min, max dictionary ids) widened to take in `more`: string comparisons, once per
/// run or page, never per row.
fn widen(
    dictionary: &StringDictionary,
    bounds: Option<(u32, u32)>,
    more: (u32, u32),
) -> (u32, u32) {
    let Some((lo, hi)) = bounds else {
        return more;
    };
    let lo = if dictionary.get(more.0) < dictionary.get(lo) {
        more.0
    } else {
        lo
    };
    let hi = if dictionary.get(more.1) > dictionary.get(hi) {
        more.1
    } else {
        hi
    };
    (lo, hi)
}

/// The PLAIN encoding of a dictionary page: each value as a 4-byte little-endian length and
/// its bytes.
fn plain(values: &[String]) -> Vec<u8> {
    let size: usize = values.iter().map(|v| v.len() + 4).sum();
    let mut out = Vec::with_capacity(size);
    for v in values {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The rows of the data page being filled, as runs, and their statistics.
#[derive(Debug, Default)]
struct PageRuns {
    runs: Vec<RowRun>,
    /// The runs' entries, as chunk dictionary ids (None: a null value).
    entries: Vec<Option<u32>>,
    rows: usize,
    levels: usize,
    /// Levels without a value (null values, empty and null maps).
    nulls: u64,
    /// (min, max) of the page's values, as dictionary ids.
    min_max: Option<(u32, u32)>,
}

/// A finished data page waiting for the dictionary page, which goes first.
struct DataPage {
    page: CompressedPage,
    rows: usize,
    nulls: u64,
    min_max: Option<(u32, u32)>,
}

/// A column chunk encoded from runs, ready to be appended to its row group.
pub struct RunChunk {
    /// The chunk's bytes, the dictionary page first.
    pub data: Bytes,
    /// Its metadata, statistics and page indexes, offsets relative to `data`.
    pub close: ColumnCloseResult,
}

/// Writes one leaf column of one row group from runs of identical rows.
pub struct RunColumnWriter {
    descr: ColumnDescPtr,
    kind: LeafKind,
    levels: Levels,
    codec: Compression,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    page_rows: usize,
    statistics: EnabledStatistics,
    /// Longest min/max kept in the column index and in the chunk statistics (the Arrow
    /// writer's settings, 64 bytes by default): longer bounds are cut, the max incremented.
    column_index_limit: Option<usize>,
    statistics_limit: Option<usize>,
    offset_index_disabled: bool,
    /// The chunk's distinct values, numbered in order of first use.
    dictionary: StringDictionary,
    page: PageRuns,
    pages: Vec<DataPage>,
    rows: u64,
    nulls: u64,
    min_max: Option<(u32, u32)>,
}

impl RunColumnWriter {
    /// A writer for the leaf `descr` holding `kind`, or None when `props` ask for something
    /// this writer does not produce (the Arrow writer then takes the column).
    pub fn try_new(
        descr: ColumnDescPtr,
        props: &WriterProperties,
        kind: LeafKind,
    ) -> Result<Option<RunColumnWriter>, ParquetError> {
        let path = descr.path();
        let levels = Levels::of(&descr, kind);
        let codec = props.compression(path);
        let compressor = match codec {
            Compression::UNCOMPRESSED => None,
            Compression::ZSTD(level) => Some(
                zstd::bulk::Compressor::new(level.compression_level())
                    .map_err(|e| ParquetError::External(Box::new(e)))?,
            ),
            _ => return Ok(None),
        };
        let supported = descr.physical_type() == PhysicalType::BYTE_ARRAY
            && props.writer_version() == WriterVersion::PARQUET_1_0
            && props.dictionary_enabled(path)
            && props.dictionary_page_encoding() == Encoding::PLAIN
            && props.bloom_filter_properties(path).is_none();
        let Some(levels) = levels.filter(|_| supported) else {
            return Ok(None);
        };
        Ok(Some(RunColumnWriter {
            statistics: props.statistics_enabled(path),
            column_index_limit: props.column_index_truncate_length(),
            statistics_limit: props.statistics_truncate_length(),
            offset_index_disabled: props.offset_index_disabled(),
            page_rows: props.data_page_row_count_limit().max(1),
            descr,
            kind,
            levels,
            codec,
            compressor,
            dictionary: StringDictionary::default(),
            page: PageRuns::default(),
            pages: Vec::new(),
            rows: 0,
            nulls: 0,
            min_max: None,
        }))
    }

    /// Appends the rows of `array`: a `Dictionary(Int32, Utf8)` column for
    /// [`LeafKind::Column`], a map of such columns for the map kinds.
    pub fn write(&mut self, array: &dyn Array) -> Result<(), ParquetError> {
        let input = match self.kind {
            LeafKind::Column => LeafRuns::of_column(array)?,
            kind => LeafRuns::of_map(array, kind)?,
        };
        // The batch's dictionary keys, translated to this chunk's ids as first used.
        let mut ids: Vec<Option<u32>> = vec![None; input.values.len()];
        let mut row_ids: Vec<Option<u32>> = Vec::new();
        for run in &input.runs {
            let entries = match &run.entries {
                None => None,
                Some(range) => {
                    row_ids.clear();
                    for entry in &input.entries[range.clone()] {
                        row_ids.push(match *entry {
                            None => None,
                            Some(key) => Some(match ids[key as usize] {
                                Some(id) => id,
                                None => {
                                    let id = self.dictionary.id(input.values.value(key as usize));
                                    ids[key as usize] = Some(id);
                                    id
                                }
                            }),
                        });
                    }
                    Some(row_ids.as_slice())
                }
            };
            let mut left = run.rows;
            while left > 0 {
                let n = left.min(self.page_rows - self.page.rows);
                self.push_rows(n, entries)?;
                left -= n;
                if self.page.rows >= self.page_rows {
                    self.finish_page()?;
                }
            }
        }
        Ok(())
    }

    /// Adds `n` rows with the same `entries` (None: a null map) to the page being filled.
    /// Per run, not per row: the statistics look at each new run's entries once.
    fn push_rows(&mut self, n: usize, entries: Option<&[Option<u32>]>) -> Result<(), ParquetError> {
        let lv = self.levels;
        let missing = match entries {
            None => lv.null_map.is_none().then_some("null map"),
            Some([]) => lv.empty.is_none().then_some("row without a value"),
            Some(e) if lv.null_value.is_none() && e.contains(&None) => Some("null value"),
            Some(_) => None,
        };
        if let Some(what) = missing {
            return Err(ParquetError::General(format!(
                "a {what} in the required column {}",
                self.descr.path()
            )));
        }
        let page = &mut self.page;
        page.rows += n;
        let (levels, nulls) = match entries {
            None | Some([]) => (n, n),
            Some(e) => (n * e.len(), n * e.iter().filter(|v| v.is_none()).count()),
        };
        page.levels += levels;
        page.nulls += nulls as u64;
        if let Some(last) = page.runs.last_mut()
            && match (&last.entries, entries) {
                (None, None) => true,
                (Some(range), Some(e)) => page.entries[range.clone()] == *e,
                _ => false,
            }
        {
            last.rows += n;
            return Ok(());
        }
        let range = entries.map(|e| {
            let start = page.entries.len();
            page.entries.extend_from_slice(e);
            start..page.entries.len()
        });
        for id in entries.unwrap_or_default().iter().flatten().copied() {
            page.min_max = Some(widen(&self.dictionary, page.min_max, (id, id)));
        }
        page.runs.push(RowRun {
            rows: n,
            entries: range,
        });
        Ok(())
    }

    /// The page's levels and dictionary indices, encoded: `(rep, def, ids)`.
    fn encode_page(&self, page: &PageRuns, id_width: u8) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let lv = self.levels;
        let mut rep = HybridEncoder::new(bit_width(lv.max_rep as u64));
        let mut def = HybridEncoder::new(bit_width(lv.max_def as u64));
        let mut ids = HybridEncoder::new(id_width);
        let def_of = |entry: &Option<u32>| match entry {
            Some(_) => lv.present,
            None => lv.null_value.unwrap_or_default(),
        };
        for run in &page.runs {
            let n = run.rows;
            let entries = run.entries.clone().map(|r| &page.entries[r]);
            match entries {
                None | Some([]) => {
                    let level = if entries.is_none() {
                        lv.null_map
                    } else {
                        lv.empty
                    };
                    rep.put(0, n);
                    def.put(level.unwrap_or_default() as u32, n);
                }
                // One entry per row (every top-level column): one repeat per run.
                Some([entry]) => {
                    rep.put(0, n);
                    def.put(def_of(entry) as u32, n);
                    if let Some(id) = entry {
                        ids.put(*id, n);
                    }
                }
                // Several entries: the levels and ids cycle row by row.
                Some(entries) => {
                    for _ in 0..n {
                        for (j, entry) in entries.iter().enumerate() {
                            rep.put(u32::from(j > 0), 1);
                            def.put(def_of(entry) as u32, 1);
                            if let Some(id) = entry {
                                ids.put(*id, 1);
                            }
                        }
                    }
                }
            }
        }
        (rep.finish(), def.finish(), ids.finish())
    }

    fn compress(&mut self, data: Vec<u8>) -> Result<Vec<u8>, ParquetError> {
        match &mut self.compressor {
            None => Ok(data),
            Some(c) => c
                .compress(&data)
                .map_err(|e| ParquetError::External(Box::new(e))),
        }
    }

    /// Encodes the page being filled (if it has rows) and starts a new one.
    fn finish_page(&mut self) -> Result<(), ParquetError> {
        if self.page.levels == 0 {
            return Ok(());
        }
        let page = std::mem::take(&mut self.page);
        // Each data page records the index width of the dictionary as it is when the page is
        // written (later ids need no more bits: they were not used in this page).
        let width = bit_width(self.dictionary.values().len().saturating_sub(1) as u64);
        let (rep, def, ids) = self.encode_page(&page, width);
        let mut buf = Vec::with_capacity(9 + rep.len() + def.len() + ids.len());
        // Data page v1: each level stream prefixed by its 4-byte little-endian length.
        for (levels, max) in [(rep, self.levels.max_rep), (def, self.levels.max_def)] {
            if max > 0 {
                buf.extend_from_slice(&(levels.len() as u32).to_le_bytes());
                buf.extend_from_slice(&levels);
            }
        }
        buf.push(width);
        buf.extend_from_slice(&ids);
        let uncompressed = buf.len();
        let data = self.compress(buf)?;
        let data_page = Page::DataPage {
            buf: Bytes::from(data),
            num_values: page.levels as u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        self.rows += page.rows as u64;
        self.nulls += page.nulls;
        if let Some(bounds) = page.min_max {
            self.min_max = Some(widen(&self.dictionary, self.min_max, bounds));
        }
        self.pages.push(DataPage {
            page: CompressedPage::new(data_page, uncompressed),
            rows: page.rows,
            nulls: page.nulls,
            min_max: page.min_max,
        });
        Ok(())
    }

    /// Finishes the chunk: the dictionary page, then the data pages, with the chunk's metadata,
    /// statistics, column index and offset index.
    pub fn close(mut self) -> Result<RunChunk, ParquetError> {
        self.finish_page()?;
        let plain = plain(self.dictionary.values());
        let uncompressed = plain.len();
        let dictionary_page = Page::DictionaryPage {
            buf: Bytes::from(self.compress(plain)?),
            num_values: self.dictionary.values().len() as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let lower = |id: u32, limit| lower_bound(self.dictionary.get(id), limit);
        let upper = |id: u32, limit| upper_bound(self.dictionary.get(id), limit);
        let page_stats = self.statistics == EnabledStatistics::Page;
        let mut column_index = ColumnIndexBuilder::new(PhysicalType::BYTE_ARRAY);
        let mut offset_index = OffsetIndexBuilder::new();
        let (mut ascending, mut descending) = (true, true);
        let mut last: Option<(u32, u32)> = None;

        let mut out = TrackedWrite::new(Vec::new());
        let mut writer = SerializedPageWriter::new(&mut out);
        let dict = writer.write_page(CompressedPage::new(dictionary_page, uncompressed))?;
        let (mut compressed_size, mut uncompressed_size) =
            (dict.compressed_size as i64, dict.uncompressed_size as i64);
        let mut data_page_offset = None;
        let mut num_values = 0i64;
        let data_pages = self.pages.len() as i32;
        for page in std::mem::take(&mut self.pages) {
            let spec = writer.write_page(page.page)?;
            compressed_size += spec.compressed_size as i64;
            uncompressed_size += spec.uncompressed_size as i64;
            num_values += i64::from(spec.num_values);
            data_page_offset.get_or_insert(spec.offset as i64);
            offset_index.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
            offset_index.append_row_count(page.rows as i64);
            // A page without a value is a "null page" with empty bounds. Without page
            // statistics (the `tags` leaves) there is no column index to fill.
            if !page_stats {
                continue;
            }
            let Some((lo, hi)) = page.min_max else {
                column_index.append(true, Vec::new(), Vec::new(), page.nulls as i64, None);
                continue;
            };
            if let Some((plo, phi)) = last {
                let (lo_s, hi_s) = (self.dictionary.get(lo), self.dictionary.get(hi));
                let (plo_s, phi_s) = (self.dictionary.get(plo), self.dictionary.get(phi));
                ascending &= !(plo_s > lo_s || phi_s > hi_s);
                descending &= !(lo_s > plo_s || hi_s > phi_s);
            }
            last = Some((lo, hi));
            let limit = self.column_index_limit;
            let (min, max) = (lower(lo, limit).0, upper(hi, limit).0);
            column_index.append(false, min, max, page.nulls as i64, None);
        }
        writer.close()?;
        let bytes_written = out.bytes_written() as u64;
        let data = Bytes::from(out.into_inner()?);

        let mut metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.codec)
            .set_encodings_mask(EncodingMask::new_from_encodings(
                [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY].iter(),
            ))
            .set_page_encoding_stats(vec![
                PageEncodingStats {
                    page_type: PageType::DICTIONARY_PAGE,
                    encoding: Encoding::PLAIN,
                    count: 1,
                },
                PageEncodingStats {
                    page_type: PageType::DATA_PAGE,
                    encoding: Encoding::RLE_DICTIONARY,
                    count: data_pages,
                },
            ])
            .set_total_compressed_size(compressed_size)
            .set_total_uncompressed_size(uncompressed_size)
            .set_num_values(num_values)
            .set_data_page_offset(data_page_offset.unwrap_or(compressed_size))
            .set_dictionary_page_offset(Some(dict.offset as i64));
        if self.statistics != EnabledStatistics::None {
            let limit = self.statistics_limit;
            let ((min, min_exact), (max, max_exact)) = match self.min_max {
                Some((lo, hi)) => (lower(lo, limit), upper(hi, limit)),
                None => ((Vec::new(), true), (Vec::new(), true)),
            };
            let some = self.min_max.is_some();
            let statistics = ValueStatistics::new(
                some.then(|| ByteArray::from(min)),
                some.then(|| ByteArray::from(max)),
                None,
                Some(self.nulls),
                false,
            )
            .with_min_is_exact(min_exact)
            .with_max_is_exact(max_exact);
            metadata = metadata.set_statistics(Statistics::ByteArray(statistics));
        }
        column_index.set_boundary_order(match (ascending, descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        });
        Ok(RunChunk {
            data,
            close: ColumnCloseResult {
                bytes_written,
                rows_written: self.rows,
                metadata: metadata.build()?,
                bloom_filter: None,
                column_index: if page_stats {
                    Some(column_index.build()?)
                } else {
                    None
                },
                offset_index: (!self.offset_index_disabled).then(|| offset_index.build()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Component;
    use crate::extract::SeriesData;
    use crate::load::store::Sink;
    use crate::load::writer::PartWriter;
    use crate::schema::raw_schema;
    use crate::transform::{RawBatchBuilder, logical_schema};
    use arrow::array::{ArrayRef, MapBuilder, MapFieldNames, StringDictionaryBuilder};
    use arrow::datatypes::{Field, Schema, SchemaRef};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn props(page_rows: usize, row_group_rows: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(page_rows.min(1024))
            .set_max_row_group_row_count(Some(row_group_rows))
            .build()
    }

    /// The same batches written by `PartWriter` (runs for the dictionary columns) and by the
    /// Arrow writer alone (every column row by row, the batches cast to the declared types),
    /// its row groups closed where ours are (ours also end where the metric changes).
    fn write_both(
        declared: &SchemaRef,
        batches: &[RecordBatch],
        props: WriterProperties,
    ) -> (Bytes, Bytes) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ours = runtime.block_on(async {
            let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
            let mut w = PartWriter::create(
                &sink,
                "f.parquet".into(),
                "t",
                declared.clone(),
                props.clone(),
            )
            .unwrap();
            for b in batches {
                w.write(b).await.unwrap();
            }
            w.finish().await.unwrap();
            Bytes::from(std::fs::read(dir.path().join("f.parquet")).unwrap())
        });
        let mut reference =
            ArrowWriter::try_new(Vec::new(), declared.clone(), Some(props)).unwrap();
        let cast: Vec<RecordBatch> = batches
            .iter()
            .map(|b| {
                let columns: Vec<ArrayRef> = b
                    .columns()
                    .iter()
                    .zip(declared.fields())
                    .map(|(c, f)| arrow::compute::cast(c, f.data_type()).unwrap())
                    .collect();
                RecordBatch::try_new(declared.clone(), columns).unwrap()
            })
            .collect();
        let all = arrow::compute::concat_batches(declared, &cast).unwrap();
        let mut offset = 0;
        for group in read(&ours).1.row_groups() {
            let rows = group.num_rows() as usize;
            reference.write(&all.slice(offset, rows)).unwrap();
            reference.flush().unwrap();
            offset += rows;
        }
        assert_eq!(offset, all.num_rows());
        (ours, Bytes::from(reference.into_inner().unwrap()))
    }

    fn read(file: &Bytes) -> (Vec<RecordBatch>, Arc<ParquetMetaData>) {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new_with_options(file.clone(), options).unwrap();
        let metadata = reader.metadata().clone();
        (
            reader.build().unwrap().map(Result::unwrap).collect(),
            metadata,
        )
    }

    /// Every row of the two files is the same, and so is every chunk statistic; every page of
    /// our top-level string columns has the column-index bounds and null count of its rows.
    fn assert_same_content(declared: &SchemaRef, ours: &Bytes, reference: &Bytes) {
        let (our_rows, our_meta) = read(ours);
        let (ref_rows, ref_meta) = read(reference);
        let concat = |b: &[RecordBatch]| arrow::compute::concat_batches(declared, b).unwrap();
        let all = concat(&our_rows);
        assert_eq!(all, concat(&ref_rows), "rows differ");
        assert_eq!(our_meta.num_row_groups(), ref_meta.num_row_groups());
        for (rg, (ours, reference)) in our_meta
            .row_groups()
            .iter()
            .zip(ref_meta.row_groups())
            .enumerate()
        {
            assert_eq!(ours.num_rows(), reference.num_rows());
            for (c, (a, b)) in ours.columns().iter().zip(reference.columns()).enumerate() {
                let (sa, sb) = (a.statistics(), b.statistics());
                let what = format!("row group {rg}, column {}", a.column_path());
                assert_eq!(
                    sa.map(|s| s.min_bytes_opt()),
                    sb.map(|s| s.min_bytes_opt()),
                    "{what} min"
                );
                assert_eq!(
                    sa.map(|s| s.max_bytes_opt()),
                    sb.map(|s| s.max_bytes_opt()),
                    "{what} max"
                );
                assert_eq!(
                    sa.map(|s| s.null_count_opt()),
                    sb.map(|s| s.null_count_opt()),
                    "{what} nulls"
                );
                assert_eq!(
                    sa.map(|s| (s.min_is_exact(), s.max_is_exact())),
                    sb.map(|s| (s.min_is_exact(), s.max_is_exact())),
                    "{what} exact bounds"
                );
                assert_eq!(a.num_values(), b.num_values(), "{what} values");
                if a.column_descr().physical_type() == PhysicalType::BYTE_ARRAY {
                    // The Arrow writer records this size statistic; ours does not: proof that
                    // the string leaves went through `RunColumnWriter`.
                    assert_eq!(
                        a.unencoded_byte_array_data_bytes(),
                        None,
                        "{what}: not runs"
                    );
                    assert!(b.unencoded_byte_array_data_bytes().is_some());
                }
                // Page bounds against the rows they cover.
                let top_level_string = a.column_descr().max_rep_level() == 0
                    && a.column_descr().physical_type() == PhysicalType::BYTE_ARRAY;
                if !top_level_string {
                    continue;
                }
                let page_index = our_meta.page_index_for_row_group(rg);
                let index = page_index.column_index(c).unwrap();
                let pages = &page_index.offset_index(c).unwrap().page_locations;
                let ColumnIndexMetaData::BYTE_ARRAY(index) = index else {
                    panic!("{what}: no byte-array column index: {index:?}");
                };
                let first_row: usize = our_meta.row_groups()[..rg]
                    .iter()
                    .map(|g| g.num_rows() as usize)
                    .sum();
                let field = declared.index_of(&a.column_path().parts()[0]).unwrap();
                let column = all.column(field).as_string::<i32>();
                for (p, page) in pages.iter().enumerate() {
                    let end = pages
                        .get(p + 1)
                        .map_or(ours.num_rows(), |n| n.first_row_index);
                    let rows = first_row + page.first_row_index as usize..first_row + end as usize;
                    let present: Vec<&str> = rows
                        .clone()
                        .filter(|&r| column.is_valid(r))
                        .map(|r| column.value(r))
                        .collect();
                    assert_eq!(
                        index.null_count(p),
                        Some((rows.len() - present.len()) as i64),
                        "{what} page {p} nulls"
                    );
                    // Bounds longer than 64 bytes are cut: a prefix of the minimum, and
                    // something above the maximum.
                    let (min, max) = (present.iter().min(), present.iter().max());
                    let (index_min, index_max) = (index.min_value(p), index.max_value(p));
                    assert_eq!(index_min.is_some(), min.is_some(), "{what} page {p} min");
                    if let (Some(got), Some(want)) = (index_min, min) {
                        assert!(want.as_bytes().starts_with(got), "{what} page {p} min");
                        assert_eq!(got.len() < want.len(), want.len() > 64, "{what} page {p}");
                    }
                    if let (Some(got), Some(want)) = (index_max, max) {
                        assert!(got >= want.as_bytes() && got.len() <= 64.max(want.len()));
                        assert_eq!(got == want.as_bytes(), want.len() <= 64, "{what} page {p}");
                    }
                }
            }
        }
    }

    fn series(
        metric: usize,
        dc: Option<usize>,
        vm: Option<usize>,
        extra: &[(usize, usize)],
        points: usize,
    ) -> SeriesData {
        let mut tags = BTreeMap::new();
        if let Some(dc) = dc {
            tags.insert("datacenter".to_string(), format!("pcc-{dc}"));
        }
        if let Some(vm) = vm {
            // Past 100, names longer than the 64 bytes statistics keep, in 2-byte characters.
            let name = match vm {
                0..100 => format!("vm-{vm:03}"),
                _ => format!("vm-{}-{vm}", "é".repeat(40)),
            };
            tags.insert("vm".to_string(), name);
        }
        for &(k, v) in extra {
            tags.insert(format!("tag{k}"), format!("value {v}"));
        }
        SeriesData {
            metric: format!("vscope.vm.m{metric}"),
            tags,
            ts: (0..points as i64).map(|t| 20_000 * t).collect(),
            values: (0..points)
                .map(|t| if t % 5 != 3 { t as f64 / 4.0 } else { f64::NAN })
                .collect(),
        }
    }

    type SeriesSpec = (
        usize,
        Option<usize>,
        Option<usize>,
        Vec<(usize, usize)>,
        usize,
    );

    fn check_raw(specs: &[SeriesSpec], batch_rows: usize, page_rows: usize, row_group_rows: usize) {
        let declared = raw_schema(Component::Vm);
        let mut builder = RawBatchBuilder::new(Component::Vm);
        let mut batches = Vec::new();
        for (metric, dc, vm, extra, points) in specs {
            let s = series(*metric, *dc, *vm, extra, *points);
            builder.append(&s, 0..s.ts.len());
            if builder.len() >= batch_rows {
                batches.push(builder.finish().unwrap());
            }
        }
        if !builder.is_empty() {
            batches.push(builder.finish().unwrap());
        }
        let (ours, reference) = write_both(&declared, &batches, props(page_rows, row_group_rows));
        assert_same_content(&declared, &ours, &reference);
    }

    #[test]
    fn raw_table_reads_back_like_the_arrow_writers_file() {
        let specs: Vec<SeriesSpec> = (0..40)
            .map(|i| {
                let extra = match i % 4 {
                    0 => vec![],
                    1 => vec![(0, 1)],
                    _ => vec![(0, i % 3), (1, 7), (2, i)],
                };
                (
                    i % 3,
                    (i % 5 != 0).then_some(i % 2),
                    (i % 7 != 0).then_some(if i > 30 { 100 + i } else { i }),
                    extra,
                    30 + 17 * i,
                )
            })
            .collect();
        // Pages much shorter than a series, row groups cutting through series and pages.
        check_raw(&specs, 2_000, 100, 4_096);
        check_raw(&specs, 500, 20_000, 1 << 20);
    }

    #[test]
    fn a_column_with_only_nulls_and_a_single_value_read_back() {
        let specs: Vec<SeriesSpec> = vec![(0, None, None, vec![], 50), (0, None, None, vec![], 70)];
        check_raw(&specs, 1_000, 30, 4_096);
        let specs: Vec<SeriesSpec> = vec![(1, Some(1), Some(1), vec![(0, 0)], 500)];
        check_raw(&specs, 1_000, 64, 4_096);
    }

    /// A nullable map with null maps, empty maps and null values (the batch builders make
    /// none of these; the writer must still write them as the Arrow writer does).
    #[test]
    fn null_maps_empty_maps_and_null_values_read_back() {
        let names = MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        };
        let mut map = MapBuilder::new(
            Some(names),
            StringDictionaryBuilder::<Int32Type>::new(),
            StringDictionaryBuilder::<Int32Type>::new(),
        )
        .with_values_field(Field::new("value", crate::transform::dict_type(), true));
        let mut label = StringDictionaryBuilder::<Int32Type>::new();
        for row in 0..400 {
            match row / 40 % 5 {
                0 => map.append(false).unwrap(),
                1 => map.append(true).unwrap(),
                2 => {
                    map.keys().append_value("a");
                    map.values().append_null();
                    map.append(true).unwrap();
                }
                3 => {
                    for k in ["a", "b", "c"] {
                        map.keys().append_value(k);
                        map.values().append_value(format!("{k}{}", row / 80));
                    }
                    map.append(true).unwrap();
                }
                _ => {
                    map.keys().append_value("b");
                    map.values().append_value("x");
                    map.keys().append_value("c");
                    map.values().append_null();
                    map.append(true).unwrap();
                }
            }
            if row % 3 == 0 {
                label.append_null();
            } else {
                label.append_value(format!("l{}", row / 50));
            }
        }
        let (label, map): (ArrayRef, ArrayRef) = (Arc::new(label.finish()), Arc::new(map.finish()));
        let physical = Arc::new(Schema::new(vec![
            Field::new("label", label.data_type().clone(), true),
            Field::new("tags", map.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(physical.clone(), vec![label, map]).unwrap();
        let declared = Arc::new(logical_schema(&physical));
        let (ours, reference) = write_both(
            &declared,
            &[batch.slice(0, 170), batch.slice(170, 230)],
            props(25, 300),
        );
        assert_same_content(&declared, &ours, &reference);
    }

    #[test]
    fn settings_this_writer_does_not_produce_go_to_the_arrow_writer() {
        let schema = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&raw_schema(Component::Vm))
            .unwrap();
        let metric = schema.column(1);
        let base = || WriterProperties::builder();
        let supported = |p: WriterProperties| {
            RunColumnWriter::try_new(metric.clone(), &p, LeafKind::Column)
                .unwrap()
                .is_some()
        };
        assert!(supported(base().build()));
        assert!(!supported(
            base().set_compression(Compression::SNAPPY).build()
        ));
        assert!(!supported(base().set_dictionary_enabled(false).build()));
        assert!(!supported(
            base()
                .set_writer_version(WriterVersion::PARQUET_2_0)
                .build()
        ));
        assert!(!supported(base().set_bloom_filter_enabled(true).build()));
        // A map leaf is not a top-level column.
        let key = schema.column(5);
        assert!(
            RunColumnWriter::try_new(key, &base().build(), LeafKind::Column)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn rle_runs_and_levels_are_encoded_as_the_format_says() {
        let mut out = Vec::new();
        put_rle_run(&mut out, 5, 300, 3);
        // 300 << 1 = 600 = 0b100_1011000 → 0xd8 0x04; value in one byte.
        assert_eq!(out, [0xd8, 0x04, 5]);
        out.clear();
        put_rle_run(&mut out, 0x1234, 1, 13);
        assert_eq!(out, [0x02, 0x34, 0x12]);
        out.clear();
        put_rle_run(&mut out, 0, 4, 0);
        assert_eq!(out, [0x08]);
        // Short repeats are bit-packed, the last group padded: 1,1,1,1,1,0 → 0b0001_1111.
        let mut e = HybridEncoder::new(1);
        e.put(1, 3);
        e.put(1, 2);
        e.put(0, 1);
        assert_eq!(e.finish(), [0x03, 0x1f]);
        // A long repeat after literals: they are topped up to 8 from it, then one RLE run.
        let mut e = HybridEncoder::new(1);
        e.put(1, 3);
        e.put(0, 20);
        assert_eq!(e.finish(), [0x03, 0x07, 0x1e, 0x00]);
        assert_eq!(
            (
                bit_width(0),
                bit_width(1),
                bit_width(2),
                bit_width(255),
                bit_width(256)
            ),
            (0, 1, 2, 8, 9)
        );
    }

    /// Decodes `n` values of the RLE / bit-packing hybrid encoding, as the format describes it.
    fn decode_hybrid(bytes: &[u8], width: u8, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = 0;
        let varint = |i: &mut usize| {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = bytes[*i];
                *i += 1;
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    return v;
                }
            }
        };
        while out.len() < n {
            let header = varint(&mut i);
            if header & 1 == 0 {
                let len = usize::from(width).div_ceil(8);
                let mut v = [0u8; 8];
                v[..len].copy_from_slice(&bytes[i..i + len]);
                i += len;
                out.extend(std::iter::repeat_n(
                    u64::from_le_bytes(v) as u32,
                    (header >> 1) as usize,
                ));
            } else {
                let count = (header >> 1) as usize * 8;
                let (mut acc, mut bits) = (0u64, 0u32);
                for _ in 0..count {
                    while bits < u32::from(width) {
                        acc |= u64::from(bytes[i]) << bits;
                        i += 1;
                        bits += 8;
                    }
                    out.push((acc & ((1u64 << width) - 1)) as u32);
                    acc >>= width;
                    bits -= u32::from(width);
                }
            }
        }
        assert_eq!(i, bytes.len(), "no bytes left over");
        out.truncate(n);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn the_hybrid_encoding_decodes_to_its_input(
            width in 0u8..=32,
            runs in proptest::collection::vec((any::<u32>(), 1usize..40), 0..200),
        ) {
            let mask = if width == 32 { u32::MAX } else { (1u32 << width) - 1 };
            let mut e = HybridEncoder::new(width);
            let mut want = Vec::new();
            for (v, n) in runs {
                e.put(v & mask, n);
                want.extend(std::iter::repeat_n(v & mask, n));
            }
            prop_assert_eq!(decode_hybrid(&e.finish(), width, want.len()), want);
        }

        #[test]
        fn any_series_read_back_like_the_arrow_writers_file(
            specs in proptest::collection::vec(
                (0..3usize, proptest::option::of(0..2usize), proptest::option::of(0..6usize),
                 proptest::collection::vec((0..3usize, 0..3usize), 0..3), 1..90usize),
                1..14),
            batch_rows in 1..300usize,
            page_rows in 1..70usize,
        ) {
            // Tags are a map: one value per key.
            let specs: Vec<SeriesSpec> = specs
                .into_iter()
                .map(|(m, dc, vm, extra, n)| {
                    let extra: BTreeMap<usize, usize> = extra.into_iter().collect();
                    (m, dc, vm, extra.into_iter().collect(), n)
                })
                .collect();
            check_raw(&specs, batch_rows, page_rows, 1024);
        }
    }
}
