//! A streaming pass over one metric table of the period, in Rust on arrow-rs rather than as a
//! polars query: the report's per-series statistics over a year of 1,000 VMs (a billion raw
//! points) would otherwise hold a metric's values of the period in memory at once, and each
//! polars query re-read the table.
//!
//! A pass lists the table's Parquet files (`date=` directories outside the period are not
//! opened), orders them by their first timestamp, keeps the row groups whose `ts` and `metric`
//! statistics can hold rows of the period and of the wanted metrics, and reads only the columns
//! it needs, label columns as dictionaries (a label is resolved once per run of rows of one
//! series, not per row). Each batch reaches a [`Visitor`] as series ids, timestamps in ms and
//! the value columns as `f64` (NaN for null). The files are cut into as many contiguous runs as
//! there are CPUs; each run has its own visitor, and the visitors are merged in time order
//! ([`Visitor::merge`]), so memory is the visitors' state plus one batch per CPU.
//!
//! Series ids come from a [`Registry`] shared by every pass over the same table, so results of
//! several passes (the profile, then the percentile refinement) line up by id.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::statistics::Statistics;

use super::ReportError;
use super::data::{Dataset, SeriesKey, TableInfo, label_cols};
use vscope_core::path_value::unescape_path_value;

/// The id of a series that is not read (a metric not asked for).
pub const SKIP: u32 = u32::MAX;

/// Rows per batch handed to a visitor.
const BATCH_ROWS: usize = 65_536;

/// At most this many label columns identify a series besides `metric` (hosts: datacenter,
/// host, nicname).
const MAX_KEYS: usize = 4;

/// The series of a table, numbered in the order passes first meet them.
#[derive(Debug, Default)]
pub struct Registry {
    ids: HashMap<SeriesKey, u32>,
    keys: Vec<SeriesKey>,
}

impl Registry {
    /// The id of a series, given one if it has none yet.
    fn id(&mut self, key: SeriesKey) -> u32 {
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.keys.len() as u32;
        self.ids.insert(key.clone(), id);
        self.keys.push(key);
        id
    }

    /// The series by id.
    pub fn keys(&self) -> &[SeriesKey] {
        &self.keys
    }
}

/// What a pass reads besides the series and `ts`.
pub struct Pass<'a> {
    /// The table.
    pub table: &'a TableInfo,
    /// `[from_ms, to_ms)`.
    pub from_ms: i64,
    /// End of the period (exclusive).
    pub to_ms: i64,
    /// The metrics to read; `None` for all.
    pub metrics: Option<&'a BTreeSet<String>>,
    /// Value columns, handed to the visitor in this order as `f64`.
    pub columns: &'a [&'a str],
    /// Whether the visitor reads the timestamps ([`Rows::ts`] is empty otherwise, and `ts`
    /// is read only where the period cuts a row group).
    pub needs_ts: bool,
}

/// Consecutive rows of one series in a batch, all in the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The series.
    pub id: u32,
    /// First row.
    pub start: usize,
    /// One past the last row.
    pub end: usize,
}

/// One batch of rows as a visitor sees them.
pub struct Rows<'a> {
    /// The runs of wanted rows (rows outside them are outside the period or not wanted).
    pub runs: &'a [Run],
    /// Timestamp per row, epoch ms (empty when the pass does not need them and the batch's
    /// row group lies inside the period).
    pub ts: &'a [i64],
    /// The pass's value columns (NaN for null).
    pub columns: &'a [&'a [f64]],
}

/// What a pass computes: state per series, fed batch by batch, mergeable in time order.
pub trait Visitor: Send + Sized {
    /// Takes one batch.
    fn rows(&mut self, rows: &Rows<'_>);
    /// Adds the state of `later`, which saw the rows of later files (every file of `later`
    /// starts at or after the first timestamp of every file of `self`).
    fn merge(&mut self, later: Self);
}

/// One Parquet file of a pass, with its footer and what its path says.
struct PartFile {
    path: PathBuf,
    meta: ArrowReaderMetadata,
    /// Hive `key=value` segments of its path below the table directory.
    hive: HashMap<String, String>,
    /// The row groups that can hold wanted rows.
    row_groups: Vec<usize>,
    rows: u64,
    first_ms: i64,
}

/// The table's Parquet files of the period, in time order, with their footers: `date=`
/// directories outside the period are skipped, row groups pruned by statistics.
fn files(ds: &Dataset, pass: &Pass<'_>) -> Result<Vec<PartFile>, ReportError> {
    let dir = ds.root.join(&pass.table.name);
    let (first, last) = super::data::date_bounds(pass.from_ms, pass.to_ms);
    let mut paths = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| ReportError::Io {
            path: d.display().to_string(),
            source: e,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if let Some(date) = name.strip_prefix("date=")
                    && (date < first.as_str() || date > last.as_str())
                {
                    continue;
                }
                stack.push(p);
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                paths.push(p);
            }
        }
    }
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let hive = hive_segments(&dir, &path);
        if let Some(m) = hive.get("metric")
            && pass.metrics.is_some_and(|w| !w.contains(m))
        {
            continue;
        }
        let meta = footer(&path)?;
        let (row_groups, rows, first_ms) = keep_row_groups(&meta, pass, &path)?;
        if !row_groups.is_empty() {
            out.push(PartFile {
                path,
                meta,
                hive,
                row_groups,
                rows,
                first_ms,
            });
        }
    }
    out.sort_by(|a, b| a.first_ms.cmp(&b.first_ms).then(a.path.cmp(&b.path)));
    Ok(out)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ReportError + '_ {
    move |e| ReportError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

fn parquet_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> ReportError + '_ {
    move |e| ReportError::Query {
        what: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A file's footer, with every string column read as a dictionary (labels and metric are
/// dictionary-encoded in the files: their keys come without building a string per row).
fn footer(path: &Path) -> Result<ArrowReaderMetadata, ReportError> {
    let file = File::open(path).map_err(io_err(path))?;
    let meta =
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(parquet_err(path))?;
    let dict = |dt: &DataType| match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            Some(DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8),
            ))
        }
        _ => None,
    };
    if !meta
        .schema()
        .fields()
        .iter()
        .any(|f| dict(f.data_type()).is_some())
    {
        return Ok(meta);
    }
    let fields: Vec<Field> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| match dict(f.data_type()) {
            Some(dt) => f.as_ref().clone().with_data_type(dt),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        meta.schema().metadata().clone(),
    ));
    // A file whose strings cannot be read as dictionaries is read as it is (and cast).
    Ok(ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        ArrowReaderOptions::new().with_schema(schema),
    )
    .unwrap_or(meta))
}

/// The `key=value` directories between the table directory and a file (values decoded as the
/// writer escapes them).
fn hive_segments(table_dir: &Path, file: &Path) -> HashMap<String, String> {
    let rel = file.strip_prefix(table_dir).unwrap_or(file);
    rel.parent()
        .into_iter()
        .flat_map(|p| p.components())
        .filter_map(|c| {
            let s = c.as_os_str().to_string_lossy();
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), unescape_path_value(v)))
        })
        .collect()
}

/// The index of a file's leaf column by name (top-level columns: `ts`, labels, values).
fn leaf_index(descr: &parquet::schema::types::SchemaDescriptor, name: &str) -> Option<usize> {
    (0..descr.num_columns()).find(|i| descr.column(*i).name() == name)
}

/// Epoch ms per unit of a timestamp column.
fn ms_scale(dt: &DataType) -> Option<(i64, i64)> {
    // (multiply, divide)
    match dt {
        DataType::Timestamp(TimeUnit::Second, _) => Some((1000, 1)),
        DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Int64 => Some((1, 1)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some((1, 1000)),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some((1, 1_000_000)),
        _ => None,
    }
}

/// The row groups of a file that can hold rows of the period and of the wanted metrics (by
/// their `ts` and `metric` statistics), their rows, and the file's first timestamp in ms.
fn keep_row_groups(
    meta: &ArrowReaderMetadata,
    pass: &Pass<'_>,
    path: &Path,
) -> Result<(Vec<usize>, u64, i64), ReportError> {
    let schema = meta.schema();
    let pq = meta.metadata();
    let descr = pq.file_metadata().schema_descr();
    let leaf = |name: &str| leaf_index(descr, name);
    let ts_idx = leaf("ts")
        .ok_or_else(|| ReportError::NoDataset(format!("{} has no ts column", path.display())))?;
    let ts_type = schema
        .field_with_name("ts")
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Int64);
    let (mul, div) = ms_scale(&ts_type).ok_or_else(|| ReportError::Query {
        what: path.display().to_string(),
        message: format!("ts is {ts_type}, not a timestamp"),
    })?;
    let metric_idx = leaf("metric");
    let mut keep = Vec::new();
    let mut rows = 0u64;
    let mut first = i64::MAX;
    for (i, rg) in pq.row_groups().iter().enumerate() {
        if let Some(Statistics::Int64(s)) = rg.column(ts_idx).statistics()
            && let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt())
        {
            let (lo, hi) = (lo * mul / div, hi * mul / div);
            if hi < pass.from_ms || lo >= pass.to_ms {
                continue;
            }
            first = first.min(lo);
        } else {
            // No statistics: the file may start anywhere.
            first = i64::MIN;
        }
        if let (Some(want), Some(m)) = (pass.metrics, metric_idx)
            && let Some(Statistics::ByteArray(s)) = rg.column(m).statistics()
            && let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt())
            && !want
                .iter()
                .any(|w| w.as_bytes() >= lo.data() && w.as_bytes() <= hi.data())
        {
            continue;
        }
        keep.push(i);
        rows += rg.num_rows() as u64;
    }
    Ok((keep, rows, first))
}

/// How a batch's column gives each row's label: a dictionary, or a constant (of the path, or
/// of a row group whose statistics say the column holds one value).
enum LabelSource {
    Dict(DictionaryArray<Int32Type>),
    Const(Option<String>),
}

impl LabelSource {
    fn key(&self, row: usize) -> i32 {
        match self {
            LabelSource::Dict(d) => {
                if d.is_null(row) {
                    -1
                } else {
                    d.keys().value(row)
                }
            }
            LabelSource::Const(_) => 0,
        }
    }
}

/// A worker's memory of the series it met: label strings interned per key column, and the
/// series id of each tuple of interned labels, so that a batch costs one lookup per distinct
/// label of its dictionaries and one per run, and the shared registry is locked only for a
/// series new to this worker.
#[derive(Default)]
struct SeriesCache {
    /// Per key column: label → local id, and the labels by local id.
    interned: Vec<Interner>,
    ids: foldhash::HashMap<[u32; MAX_KEYS], u32>,
}

/// One key column's labels: label → local id, and the labels by local id.
type Interner = (foldhash::HashMap<Box<str>, u32>, Vec<Box<str>>);

/// The local id of a null label.
const NULL_LABEL: u32 = u32::MAX;

impl SeriesCache {
    fn intern(&mut self, col: usize, label: Option<&str>) -> u32 {
        let Some(label) = label else {
            return NULL_LABEL;
        };
        if self.interned.len() <= col {
            self.interned.resize_with(col + 1, Default::default);
        }
        let (map, names) = &mut self.interned[col];
        if let Some(id) = map.get(label) {
            return *id;
        }
        let id = names.len() as u32;
        names.push(label.into());
        map.insert(label.into(), id);
        id
    }

    /// Per key column, the local id of each dictionary key (or of the constant, at index 0).
    fn locals(&mut self, sources: &[LabelSource]) -> Vec<Vec<u32>> {
        sources
            .iter()
            .enumerate()
            .map(|(col, s)| match s {
                LabelSource::Dict(d) => {
                    let v: &StringArray = d.values().as_string();
                    (0..v.len())
                        .map(|i| self.intern(col, v.is_valid(i).then(|| v.value(i))))
                        .collect()
                }
                LabelSource::Const(c) => vec![self.intern(col, c.as_deref())],
            })
            .collect()
    }

    /// The series id of the row's labels, or [`SKIP`] for a metric not asked for.
    fn id(
        &mut self,
        sources: &[LabelSource],
        locals: &[Vec<u32>],
        row: usize,
        metrics: Option<&BTreeSet<String>>,
        registry: &Mutex<Registry>,
    ) -> u32 {
        let mut k = [NULL_LABEL; MAX_KEYS];
        for (col, (s, l)) in sources.iter().zip(locals).enumerate() {
            k[col] = match s.key(row) {
                -1 => NULL_LABEL,
                key => l[key as usize],
            };
        }
        if let Some(id) = self.ids.get(&k) {
            return *id;
        }
        let name = |col: usize| -> Option<String> {
            let id = k[col];
            (id != NULL_LABEL).then(|| self.interned[col].1[id as usize].to_string())
        };
        let id = match name(0) {
            Some(m) if metrics.is_none_or(|w| w.contains(&m)) => {
                let labels = (1..sources.len()).map(name).collect();
                registry.lock().expect("registry lock").id((m, labels))
            }
            _ => SKIP,
        };
        self.ids.insert(k, id);
        id
    }
}

/// The one value of a string column in a row group, when its exact statistics say so.
fn constant_of(rg: &parquet::file::metadata::RowGroupMetaData, leaf: usize) -> Option<String> {
    let Some(Statistics::ByteArray(s)) = rg.column(leaf).statistics() else {
        return None;
    };
    let (lo, hi) = (s.min_opt()?, s.max_opt()?);
    (lo == hi && s.null_count_opt() == Some(0) && s.min_is_exact() && s.max_is_exact())
        .then(|| std::str::from_utf8(lo.data()).ok().map(str::to_string))
        .flatten()
}

fn as_dictionary(a: &ArrayRef, path: &Path) -> Result<DictionaryArray<Int32Type>, ReportError> {
    let want = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let a = if a.data_type() == &want {
        a.clone()
    } else {
        arrow::compute::cast(a, &want).map_err(|e| ReportError::Query {
            what: path.display().to_string(),
            message: e.to_string(),
        })?
    };
    Ok(a.as_dictionary::<Int32Type>().clone())
}

/// A column as `f64` with NaN for null: the array's own buffer when it is `f64` without nulls.
fn floats_of<'a>(
    a: &'a ArrayRef,
    buf: &'a mut Vec<f64>,
    path: &Path,
) -> Result<&'a [f64], ReportError> {
    if let Some(f) = a.as_primitive_opt::<arrow::datatypes::Float64Type>()
        && f.null_count() == 0
    {
        return Ok(f.values());
    }
    let c = arrow::compute::cast(a, &DataType::Float64).map_err(|e| ReportError::Query {
        what: path.display().to_string(),
        message: e.to_string(),
    })?;
    let f = c.as_primitive::<arrow::datatypes::Float64Type>();
    buf.clear();
    buf.extend((0..f.len()).map(|i| if f.is_valid(i) { f.value(i) } else { f64::NAN }));
    Ok(buf.as_slice())
}

/// Per metric, the smallest and the largest value of a column.
pub type MetricRanges = HashMap<String, (f64, f64)>;

/// Each metric's smallest and largest value of `column` in the pass's row groups, from their
/// statistics, when every such row group holds one metric (exact statistics): a range that
/// holds every series of the metric before a row is read. `None` when a row group mixes
/// metrics or lacks statistics.
pub fn metric_ranges(
    ds: &Dataset,
    pass: &Pass<'_>,
    column: &str,
) -> Result<Option<MetricRanges>, ReportError> {
    let mut out = MetricRanges::new();
    for f in files(ds, pass)? {
        let pq = f.meta.metadata();
        let descr = pq.file_metadata().schema_descr();
        let leaf = |name: &str| leaf_index(descr, name);
        let Some(v) = leaf(column) else {
            return Ok(None);
        };
        for &rg in &f.row_groups {
            let rg = pq.row_group(rg);
            let metric = match leaf("metric") {
                Some(m) => constant_of(rg, m),
                None => f.hive.get("metric").cloned(),
            };
            let range = match rg.column(v).statistics() {
                Some(Statistics::Double(s)) => s.min_opt().zip(s.max_opt()),
                _ => None,
            };
            let (Some(metric), Some((lo, hi))) = (metric, range) else {
                return Ok(None);
            };
            let e = out.entry(metric).or_insert((*lo, *hi));
            e.0 = e.0.min(*lo);
            e.1 = e.1.max(*hi);
        }
    }
    Ok(Some(out))
}

/// What a pass will read, for `report --explain`: files, row groups kept of those in the
/// period's partitions, rows, and the columns read.
pub fn explain(ds: &Dataset, pass: &Pass<'_>) -> Result<String, ReportError> {
    let files = files(ds, pass)?;
    let total: usize = files
        .iter()
        .map(|f| f.meta.metadata().num_row_groups())
        .sum();
    let kept: usize = files.iter().map(|f| f.row_groups.len()).sum();
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    let mut cols = vec!["ts", "metric"];
    cols.extend(label_cols(pass.table));
    cols.extend(pass.columns.iter().copied());
    Ok(format!(
        "pass over {table} [{from}, {to}) metrics={metrics}: {n} files of the period's date= partitions, {kept} of their {total} row groups kept by ts/metric statistics, {rows} rows; columns read: {cols} (labels as dictionaries)",
        table = pass.table.name,
        from = pass.from_ms,
        to = pass.to_ms,
        metrics = pass
            .metrics
            .map(|m| m.iter().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "all".into()),
        n = files.len(),
        cols = cols.join(", "),
    ))
}

/// Runs one pass: every wanted row of the period goes to a visitor; returns the merged one.
pub fn run<V: Visitor>(
    ds: &Dataset,
    pass: &Pass<'_>,
    registry: &Mutex<Registry>,
    new_visitor: impl Fn() -> V + Sync,
) -> Result<V, ReportError> {
    let files = files(ds, pass)?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    // Contiguous runs of files of about equal rows, one per CPU, merged in order.
    let total: u64 = files.iter().map(|f| f.rows).sum();
    let per = total.div_ceil(cpus as u64).max(1);
    let mut runs: Vec<&[PartFile]> = Vec::new();
    let (mut start, mut acc) = (0, 0u64);
    for (i, f) in files.iter().enumerate() {
        acc += f.rows;
        if acc >= per && runs.len() + 1 < cpus {
            runs.push(&files[start..=i]);
            start = i + 1;
            acc = 0;
        }
    }
    if start < files.len() || runs.is_empty() {
        runs.push(&files[start..]);
    }
    let labels = label_cols(pass.table);
    let results: Vec<Result<V, ReportError>> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|run| {
                let labels = &labels;
                let new_visitor = &new_visitor;
                s.spawn(move || {
                    let mut v = new_visitor();
                    let mut cache = SeriesCache::default();
                    for f in *run {
                        read_file(f, pass, labels, registry, &mut cache, &mut v)?;
                    }
                    Ok(v)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a report scan thread panicked"))
            .collect()
    });
    let mut merged: Option<V> = None;
    for r in results {
        let v = r?;
        match merged.as_mut() {
            None => merged = Some(v),
            Some(m) => m.merge(v),
        }
    }
    Ok(merged.unwrap_or_else(new_visitor))
}

fn read_file<V: Visitor>(
    f: &PartFile,
    pass: &Pass<'_>,
    labels: &[&str],
    registry: &Mutex<Registry>,
    cache: &mut SeriesCache,
    visitor: &mut V,
) -> Result<(), ReportError> {
    let path = f.path.as_path();
    let schema = f.meta.schema().clone();
    let pq = f.meta.metadata().clone();
    let descr = pq.file_metadata().schema_descr();
    let leaf = |name: &str| leaf_index(descr, name);
    let root = |c: &str| schema.index_of(c).ok();
    let query_err = |e: &dyn std::fmt::Display| ReportError::Query {
        what: path.display().to_string(),
        message: e.to_string(),
    };
    let key_cols: Vec<&str> = std::iter::once("metric")
        .chain(labels.iter().copied())
        .collect();
    let mut value_roots = Vec::new();
    for c in pass.columns {
        value_roots.push(root(c).ok_or_else(|| {
            ReportError::NoDataset(format!("{} has no {c} column", path.display()))
        })?);
    }
    let ts_root = root("ts").ok_or_else(|| query_err(&"no ts column"))?;
    let ts_leaf = leaf("ts");
    let ts_type = schema.field(ts_root).data_type().clone();
    let (mul, div) = ms_scale(&ts_type).unwrap_or((1, 1));
    let file = File::open(path).map_err(io_err(path))?;
    let mut runs: Vec<Run> = Vec::new();
    let mut ts: Vec<i64> = Vec::with_capacity(BATCH_ROWS);
    let mut bufs: Vec<Vec<f64>> = vec![Vec::new(); pass.columns.len()];
    // One reader per row group: a batch never spans two column chunks, whose dictionaries
    // differ (arrow-rs would then rebuild a dictionary from the strings, row by row); and a
    // row group's statistics spare columns: a label with one value is not read, nor `ts` when
    // the pass needs no time and the row group lies inside the period.
    for &rg in &f.row_groups {
        let rg_meta = pq.row_group(rg);
        let consts: Vec<Option<Option<String>>> = key_cols
            .iter()
            .map(|c| match (root(c), leaf(c)) {
                (Some(_), Some(l)) => constant_of(rg_meta, l).map(Some),
                (Some(_), None) => None,
                (None, _) => Some(f.hive.get(*c).cloned()),
            })
            .collect();
        // Inside the period with no null `ts`: every row of the row group is wanted.
        let ts_inside = ts_leaf
            .and_then(|l| match rg_meta.column(l).statistics() {
                Some(Statistics::Int64(s)) if s.null_count_opt() == Some(0) => {
                    Some((s.min_opt()?, s.max_opt()?))
                }
                _ => None,
            })
            .is_some_and(|(lo, hi)| lo * mul / div >= pass.from_ms && hi * mul / div < pass.to_ms);
        let read_ts = pass.needs_ts || !ts_inside;
        let mut roots = value_roots.clone();
        if read_ts {
            roots.push(ts_root);
        }
        for (c, k) in key_cols.iter().zip(&consts) {
            if k.is_none() {
                roots.extend(root(c));
            }
        }
        let mask = ProjectionMask::roots(descr, roots);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            file.try_clone().map_err(io_err(path))?,
            f.meta.clone(),
        )
        .with_projection(mask)
        .with_row_groups(vec![rg])
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(parquet_err(path))?;
        for batch in reader {
            let batch = batch.map_err(|e| query_err(&e))?;
            let sources: Vec<LabelSource> = key_cols
                .iter()
                .zip(&consts)
                .map(|(c, k)| {
                    Ok(match k {
                        Some(v) => LabelSource::Const(v.clone()),
                        None => LabelSource::Dict(as_dictionary(
                            batch.column_by_name(c).expect("projected column"),
                            path,
                        )?),
                    })
                })
                .collect::<Result<_, ReportError>>()?;
            let locals = cache.locals(&sources);
            ts.clear();
            let ts_col = if read_ts {
                let c = arrow::compute::cast(
                    batch.column_by_name("ts").expect("projected column"),
                    &DataType::Int64,
                )
                .map_err(|e| query_err(&e))?;
                let raw = c.as_primitive::<arrow::datatypes::Int64Type>();
                if (mul, div) == (1, 1) {
                    ts.extend_from_slice(raw.values());
                } else {
                    ts.extend(raw.values().iter().map(|t| t * mul / div));
                }
                Some(c)
            } else {
                None
            };
            let valid = |row: usize| ts_col.as_ref().is_none_or(|c| c.is_valid(row));
            runs.clear();
            for (start, end) in key_runs(&sources, batch.num_rows()) {
                let id = cache.id(&sources, &locals, start, pass.metrics, registry);
                if id == SKIP {
                    continue;
                }
                if read_ts {
                    push_in_period(&mut runs, id, start, end, &ts, valid, pass);
                } else {
                    runs.push(Run { id, start, end });
                }
            }
            if runs.is_empty() {
                continue;
            }
            let mut slices: Vec<&[f64]> = Vec::with_capacity(pass.columns.len());
            for (c, buf) in pass.columns.iter().zip(bufs.iter_mut()) {
                let a = batch.column_by_name(c).expect("projected column");
                slices.push(floats_of(a, buf, path)?);
            }
            visitor.rows(&Rows {
                runs: &runs,
                ts: &ts,
                columns: &slices,
            });
        }
    }
    Ok(())
}

/// The runs of consecutive rows with the same keys (a series' rows are consecutive in the
/// files: sorted by metric, labels, ts), compared on the dictionary key slices.
fn key_runs(sources: &[LabelSource], n: usize) -> Vec<(usize, usize)> {
    let mut change = vec![false; n];
    for s in sources {
        let LabelSource::Dict(d) = s else { continue };
        if d.null_count() > 0 {
            for (r, c) in change.iter_mut().enumerate().skip(1) {
                *c |= s.key(r) != s.key(r - 1);
            }
        } else {
            let keys = d.keys().values();
            for (r, c) in change.iter_mut().enumerate().skip(1) {
                *c |= keys[r] != keys[r - 1];
            }
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    for (r, _) in change.iter().enumerate().skip(1).filter(|(_, c)| **c) {
        out.push((start, r));
        start = r;
    }
    if n > 0 {
        out.push((start, n));
    }
    out
}

/// Adds the rows `[start, end)` of series `id` that lie in the period, as runs.
fn push_in_period(
    runs: &mut Vec<Run>,
    id: u32,
    start: usize,
    end: usize,
    ts: &[i64],
    valid: impl Fn(usize) -> bool,
    pass: &Pass<'_>,
) {
    let inside = |r: usize| valid(r) && ts[r] >= pass.from_ms && ts[r] < pass.to_ms;
    let mut s = None;
    for r in start..end {
        match (inside(r), s) {
            (true, None) => s = Some(r),
            (false, Some(a)) => {
                runs.push(Run {
                    id,
                    start: a,
                    end: r,
                });
                s = None;
            }
            _ => {}
        }
    }
    if let Some(a) = s {
        runs.push(Run { id, start: a, end });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_values_are_percent_decoded() {
        assert_eq!(unescape_path_value("a%2Fb%3Dc"), "a/b=c");
        assert_eq!(unescape_path_value("plain"), "plain");
        assert_eq!(unescape_path_value("bad%zz%"), "bad%zz%");
        let h = hive_segments(
            Path::new("/d/t"),
            Path::new("/d/t/date=2026-01-01/datacenter=dc%201/part.parquet"),
        );
        assert_eq!(h.get("datacenter").map(String::as_str), Some("dc 1"));
        assert_eq!(h.get("date").map(String::as_str), Some("2026-01-01"));
    }
}
