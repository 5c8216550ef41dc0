//! The dataset as the report reads it: which tables a sink holds (raw, rollup, inventory, told
//! apart by their columns), lazy polars scans of their Hive-partitioned Parquet with the period
//! pushed down (date partitions pruned, `ts` filtered in the scan) and only the needed columns
//! read, and the per-series statistics the sections are built from (computed by the streaming
//! passes of [`super::profile`]; the table's profile is cached here for the report's period).
//!
//! An S3 sink is read through the `object_store` client the caller opens for it (vscope-etl's
//! own, already built for the pipeline's sink, with the sink's settings): only the objects of
//! the needed tables whose `date=` partition overlaps the period are copied to a private local
//! directory, then scanned like a local sink. This avoids polars' `cloud`/`aws` features and
//! their build cost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;

use polars::prelude::*;

use super::ReportError;
use super::profile::TableProfile;
use vscope_core::schema::INVENTORY_TABLES;
use vscope_core::semantics::time::{DAY_MS, date_string};

/// Which object a table describes: its metric label column is the object's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// ESXi hosts (`host` label).
    Host,
    /// Virtual machines (`vm` label).
    Vm,
    /// Datastores (`datastore` label).
    Filer,
}

impl Component {
    /// The label columns that identify one series of this component, besides `metric`.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Component::Host => &["datacenter", "host", "nicname"],
            Component::Vm => &["datacenter", "vm"],
            Component::Filer => &["datacenter", "datastore"],
        }
    }
}

/// What kind of table a directory holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Raw datapoints (`ts`, `metric`, labels, `value`).
    Raw,
    /// A rollup with at least `avg`, `max`, `p95` and `count` per bucket of `bucket_ms`.
    Rollup {
        /// Bucket width, inferred from the bucket starts.
        bucket_ms: i64,
    },
    /// An inventory snapshot table (`snapshot_ts`).
    Inventory,
}

/// One table of the dataset.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Directory name below the sink.
    pub name: String,
    /// Raw, rollup or inventory.
    pub kind: Kind,
    /// The object it describes.
    pub component: Component,
    /// The polars schema (file columns plus Hive partition columns).
    pub schema: SchemaRef,
}

/// A readable dataset: a local directory (the sink, or a copy of the needed part of an S3 sink).
pub struct Dataset {
    /// Local root holding `<table>/.../*.parquet`.
    pub root: PathBuf,
    /// The tables found, by name.
    pub tables: BTreeMap<String, TableInfo>,
    /// How the data was reached, for the report's parameters.
    pub origin: String,
    /// A private download directory removed on drop (S3 sinks).
    scratch: Option<PathBuf>,
    /// Profiles computed so far, by table and period ([`super::profile`]).
    profiles: std::sync::Mutex<BTreeMap<(String, i64, i64), Arc<TableProfile>>>,
}

impl Drop for Dataset {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn polars_err(what: &str) -> impl Fn(PolarsError) -> ReportError + '_ {
    move |e| ReportError::Query {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// The `date=` partition values `[first, last]` that can hold points of `[from_ms, to_ms)`.
pub fn date_bounds(from_ms: i64, to_ms: i64) -> (String, String) {
    let day = |ms: i64| date_string(ms.div_euclid(DAY_MS) * DAY_MS);
    (day(from_ms), day(to_ms - 1))
}

/// Whether an object key's `date=YYYY-MM-DD` segment lies in `[first, last]`; keys without one
/// (inventory tables partitioned otherwise) are kept.
fn key_in_dates(key: &str, bounds: Option<&(String, String)>) -> bool {
    let Some((first, last)) = bounds else {
        return true;
    };
    match key.split('/').find_map(|s| s.strip_prefix("date=")) {
        Some(d) => d >= first.as_str() && d <= last.as_str(),
        None => true,
    }
}

/// Table directories that are never data (ledger, manifests, staging).
fn is_data_dir(name: &str) -> bool {
    !(name.starts_with('_') || name.starts_with('.'))
}

/// Where a dataset is.
pub enum Location {
    /// A local directory: a path or a `file://` URL.
    Local(String),
    /// An object store (an S3 sink), opened by the caller with the sink's settings.
    Store {
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// The sink's key prefix in the store (empty for its root).
        prefix: object_store::path::Path,
        /// The sink as the user wrote it (`s3://bucket/prefix`), for messages.
        url: String,
    },
}

impl Dataset {
    /// Opens a local sink directory, or copies from an object store the objects whose date
    /// partition overlaps `dates` (all when `None`).
    pub async fn open(
        location: Location,
        dates: Option<(String, String)>,
    ) -> Result<Dataset, ReportError> {
        let url = match location {
            Location::Local(url) => url,
            Location::Store { store, prefix, url } => {
                return Dataset::download(store.as_ref(), prefix, &url, dates).await;
            }
        };
        let url = url.as_str();
        let root = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
        if !root.is_dir() {
            return Err(ReportError::NoDataset(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let mut ds = Dataset {
            root,
            tables: BTreeMap::new(),
            origin: url.to_string(),
            scratch: None,
            profiles: Default::default(),
        };
        ds.discover()?;
        Ok(ds)
    }

    async fn download(
        store: &dyn ObjectStore,
        prefix: object_store::path::Path,
        url: &str,
        dates: Option<(String, String)>,
    ) -> Result<Dataset, ReportError> {
        use futures::StreamExt;
        use object_store::ObjectStoreExt;
        let scratch = std::env::temp_dir().join(format!(
            "vscope-report-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let mut ds = Dataset {
            root: scratch.clone(),
            tables: BTreeMap::new(),
            origin: url.to_string(),
            scratch: Some(scratch.clone()),
            profiles: Default::default(),
        };
        std::fs::create_dir_all(&scratch).map_err(|e| ReportError::Io {
            path: scratch.display().to_string(),
            source: e,
        })?;
        let strip = |key: &str| -> String {
            let p = prefix.as_ref();
            if p.is_empty() {
                key.to_string()
            } else {
                key.strip_prefix(p)
                    .map(|k| k.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| key.to_string())
            }
        };
        let list_prefix = if prefix.as_ref().is_empty() {
            None
        } else {
            Some(&prefix)
        };
        let mut listing = store.list(list_prefix);
        let mut copied = 0usize;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| ReportError::Store(format!("list {url}: {e}")))?;
            let rel = strip(meta.location.as_ref());
            let table = rel.split('/').next().unwrap_or_default();
            // Inventory snapshots are small and the latest one may predate the period: all kept.
            let inventory = INVENTORY_TABLES.contains(&table);
            if !is_data_dir(table)
                || !rel.ends_with(".parquet")
                || (!inventory && !key_in_dates(&rel, dates.as_ref()))
            {
                continue;
            }
            let target = scratch.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| ReportError::Io {
                    path: parent.display().to_string(),
                    source: e,
                })?;
            }
            // Stream each object to disk chunk by chunk: memory stays one chunk.
            let mut body = store
                .get(&meta.location)
                .await
                .map_err(|e| ReportError::Store(format!("get {}: {e}", meta.location)))?
                .into_stream();
            let mut file = std::fs::File::create(&target).map_err(|e| ReportError::Io {
                path: target.display().to_string(),
                source: e,
            })?;
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| ReportError::Store(format!("get {}: {e}", meta.location)))?;
                std::io::Write::write_all(&mut file, &chunk).map_err(|e| ReportError::Io {
                    path: target.display().to_string(),
                    source: e,
                })?;
            }
            copied += 1;
        }
        tracing::info!(copied, "copied the S3 objects of the period");
        ds.origin = format!("{url} ({copied} objects of the period copied locally)");
        ds.discover()?;
        Ok(ds)
    }

    /// The glob of a table's Parquet files.
    fn glob(&self, table: &str) -> String {
        format!("{}/{table}/**/*.parquet", self.root.display())
    }

    /// A lazy scan of a table with Hive partition columns (`date`, `metric`) parsed.
    pub fn scan(&self, table: &str) -> Result<LazyFrame, ReportError> {
        let args = ScanArgsParquet {
            hive_options: HiveOptions::new_enabled(),
            ..Default::default()
        };
        LazyFrame::scan_parquet(PlRefPath::new(self.glob(table)), args).map_err(polars_err(table))
    }

    fn discover(&mut self) -> Result<(), ReportError> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| ReportError::Io {
            path: self.root.display().to_string(),
            source: e,
        })?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_data_dir(n))
            .collect();
        names.sort();
        for name in names {
            // A table directory holds partition directories (`key=value`) down to the files;
            // another sink nested in this one (e.g. out/demo-inventory) is not a table.
            let dir = self.root.join(&name);
            if !is_table_dir(&dir) || !has_parquet(&dir) {
                continue;
            }
            let mut lf = self.scan(&name)?;
            let schema = lf.collect_schema().map_err(polars_err(&name))?;
            let has = |c: &str| schema.contains(c);
            let component = if has("vm") {
                Component::Vm
            } else if has("datastore") {
                Component::Filer
            } else if has("host") {
                Component::Host
            } else {
                continue;
            };
            let kind = if has("snapshot_ts") {
                Kind::Inventory
            } else if has("metric") && has("value") {
                Kind::Raw
            } else if has("metric") && ["avg", "max", "p95", "count"].iter().all(|c| has(c)) {
                Kind::Rollup {
                    bucket_ms: self.bucket_ms(&name)?,
                }
            } else {
                continue;
            };
            self.tables.insert(
                name.clone(),
                TableInfo {
                    name,
                    kind,
                    component,
                    schema,
                },
            );
        }
        if self.tables.is_empty() {
            return Err(ReportError::NoDataset(format!(
                "no vScope tables (raw, rollup or inventory Parquet) under {}",
                self.origin
            )));
        }
        Ok(())
    }

    /// A rollup's bucket: the smallest gap between distinct bucket starts of its first day
    /// (its first `date=` partition when it has them).
    fn bucket_ms(&self, table: &str) -> Result<i64, ReportError> {
        // The first date partition is enough (and a year of timestamps is not read).
        let lf = match dates_in(&self.root.join(table)).first() {
            Some(d) => LazyFrame::scan_parquet(
                PlRefPath::new(format!(
                    "{}/{table}/date={d}/**/*.parquet",
                    self.root.display()
                )),
                ScanArgsParquet::default(),
            )
            .map_err(polars_err(table))?,
            None => self.scan(table)?,
        };
        let df = lf
            .select([col("ts").cast(DataType::Int64).alias("t")])
            .unique(None, UniqueKeepStrategy::Any)
            .sort(["t"], SortMultipleOptions::default())
            .limit(500)
            .collect()
            .map_err(polars_err(table))?;
        let t: Vec<i64> = ints(&df, "t")?.into_iter().flatten().collect();
        Ok(t.windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0)
            .min()
            .unwrap_or(3_600_000))
    }

    /// The table of `kind` (`Raw` or any rollup) for `component`; rollups preferred when
    /// `prefer_rollup`, the one with the smallest bucket first.
    pub fn source(&self, component: Component, prefer_rollup: bool) -> Option<&TableInfo> {
        let raw = self
            .tables
            .values()
            .find(|t| t.component == component && t.kind == Kind::Raw);
        let rollup = self
            .tables
            .values()
            .filter(|t| t.component == component)
            .filter_map(|t| match t.kind {
                Kind::Rollup { bucket_ms } => Some((bucket_ms, t)),
                _ => None,
            })
            .min_by_key(|(b, _)| *b)
            .map(|(_, t)| t);
        if prefer_rollup {
            rollup.or(raw)
        } else {
            raw.or(rollup)
        }
    }

    /// The inventory table of a component (`filers`, `hosts`, `vms`).
    pub fn inventory(&self, component: Component) -> Option<&TableInfo> {
        self.tables
            .values()
            .find(|t| t.component == component && t.kind == Kind::Inventory)
    }

    /// The profile of a table over `[from_ms, to_ms)`: one streaming pass the first time,
    /// shared by every section afterwards.
    pub fn profile(
        &self,
        t: &TableInfo,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Arc<TableProfile>, ReportError> {
        let key = (t.name.clone(), from_ms, to_ms);
        if let Some(p) = self.profiles.lock().expect("profiles lock").get(&key) {
            return Ok(p.clone());
        }
        let p = Arc::new(TableProfile::build(self, t, from_ms, to_ms)?);
        self.profiles
            .lock()
            .expect("profiles lock")
            .insert(key, p.clone());
        Ok(p)
    }

    /// A scan of `table` restricted to `[from_ms, to_ms)` and the given metrics: the `date`
    /// partition predicate prunes directories, the `ts` and `metric` predicates go into the
    /// Parquet reader (row-group statistics; files are sorted by metric).
    pub fn period_scan(
        &self,
        t: &TableInfo,
        metrics: &[&str],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<LazyFrame, ReportError> {
        let mut lf = self.scan(&t.name)?;
        if let Some(dt) = t.schema.get("date") {
            let (first, last) = date_bounds(from_ms, to_ms);
            let (lo, hi) = if *dt == DataType::Date {
                let days = |ms: i64| lit(ms.div_euclid(DAY_MS) as i32).cast(DataType::Date);
                (days(from_ms), days(to_ms - 1))
            } else {
                (lit(first), lit(last))
            };
            lf = lf.filter(col("date").gt_eq(lo).and(col("date").lt_eq(hi)));
        }
        if !t.schema.contains("ts") {
            return Err(ReportError::NoDataset(format!(
                "table {} has no ts column",
                t.name
            )));
        }
        // `ts` is compared as epoch ms: a tz-aware Datetime literal needs polars' `timezones`
        // feature (to print in `explain`, and a cast literal loses the zone), which would cost
        // another polars rebuild. The predicate still runs inside the Parquet scan.
        let ms = col("ts").cast(DataType::Int64);
        lf = lf.filter(ms.clone().gt_eq(lit(from_ms)).and(ms.lt(lit(to_ms))));
        if let Some(pred) = metrics
            .iter()
            .map(|m| col("metric").eq(lit(*m)))
            .reduce(|a, b| a.or(b))
        {
            lf = lf.filter(pred);
        }
        Ok(lf)
    }
}

fn is_table_dir(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .all(|e| e.file_name().to_string_lossy().contains('='))
}

fn has_parquet(dir: &Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                return true;
            }
        }
    }
    false
}

/// Reads a string column of a collected frame (nulls kept).
pub fn strings(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, ReportError> {
    let c = df.column(name).map_err(polars_err(name))?;
    let c = c.cast(&DataType::String).map_err(polars_err(name))?;
    let ca = c.str().map_err(polars_err(name))?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).map(str::to_string))
        .collect())
}

/// Reads a numeric column of a collected frame as f64 (nulls kept).
pub fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
    let c = df.column(name).map_err(polars_err(name))?;
    let c = c.cast(&DataType::Float64).map_err(polars_err(name))?;
    let ca = c.f64().map_err(polars_err(name))?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

/// Reads an integer column of a collected frame as i64 (nulls kept).
pub fn ints(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
    let c = df.column(name).map_err(polars_err(name))?;
    let c = c.cast(&DataType::Int64).map_err(polars_err(name))?;
    let ca = c.i64().map_err(polars_err(name))?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

/// Collects a query, naming it in errors.
pub fn collect(lf: LazyFrame, what: &str) -> Result<DataFrame, ReportError> {
    let df = lf.collect().map_err(polars_err(what))?;
    if tracing::enabled!(tracing::Level::DEBUG) {
        // The process's peak RSS so far (Linux), to see which query costs memory.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let peak = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .map(str::trim)
            .unwrap_or("?");
        tracing::debug!(
            table = what,
            rows = df.height(),
            peak_rss = peak,
            "query done"
        );
    }
    Ok(df)
}

/// The label values of one series: `datacenter`, the object, and `nicname` for hosts.
pub type SeriesKey = (String, Vec<Option<String>>);

/// Per-series statistics of one metric over the period.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    /// Time-weighted mean: raw points' mean, or count-weighted mean of bucket averages.
    pub avg: Option<f64>,
    /// The 95th percentile (see [`super::PERCENTILE_DOC`]).
    pub p95: Option<f64>,
    /// The highest value (raw) or the highest bucket `max` (rollup).
    pub peak: Option<f64>,
    /// Raw points (or summed bucket counts) behind the numbers.
    pub points: i64,
}

/// Label columns of a table for `component` that exist in its schema.
pub(crate) fn label_cols(t: &TableInfo) -> Vec<&'static str> {
    t.component
        .labels()
        .iter()
        .copied()
        .filter(|c| t.schema.contains(c))
        .collect()
}

/// The series keys of a per-metric query's result: `metric` and the label columns.
pub(crate) fn keys_for(
    df: &DataFrame,
    labels: &[&str],
    metric: &str,
) -> Result<Vec<SeriesKey>, ReportError> {
    let cols: Vec<Vec<Option<String>>> = labels
        .iter()
        .map(|l| strings(df, l))
        .collect::<Result<_, _>>()?;
    Ok((0..df.height())
        .map(|i| {
            (
                metric.to_string(),
                cols.iter().map(|c| c[i].clone()).collect(),
            )
        })
        .collect())
}

/// avg / p95 / peak per series of `metrics` in `[from_ms, to_ms)`, from the table's profile
/// (one streaming pass) and exact percentiles (refinement passes over the metrics' row groups):
/// memory holds no series' values.
pub fn series_stats(
    ds: &Dataset,
    t: &TableInfo,
    metrics: &[&str],
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<SeriesKey, Stats>, ReportError> {
    let profile = ds.profile(t, from_ms, to_ms)?;
    let ids: Vec<u32> = profile.of_metrics(metrics).map(|(id, _, _)| id).collect();
    let p95 = profile.p95(ds, t, &ids)?;
    Ok(profile
        .of_metrics(metrics)
        .map(|(id, k, s)| {
            (
                k.clone(),
                Stats {
                    avg: s.avg(),
                    p95: p95.get(&id).copied().flatten(),
                    peak: s.peak(),
                    points: s.points(),
                },
            )
        })
        .collect())
}

/// Hours above `threshold` per series: the number of hours whose average exceeds it (raw: the
/// mean of the points of each UTC hour; rollup: each bucket's `avg`, counted as bucket/1 h).
/// One pass over the metrics' row groups.
pub fn hours_above(
    ds: &Dataset,
    t: &TableInfo,
    metrics: &[&str],
    from_ms: i64,
    to_ms: i64,
    threshold: f64,
) -> Result<BTreeMap<SeriesKey, f64>, ReportError> {
    let h = super::profile::hourly(ds, t, metrics, from_ms, to_ms, Some(threshold))?;
    Ok(match t.kind {
        Kind::Raw => h
            .hours
            .into_iter()
            .filter_map(|(k, hours)| {
                let n = hours
                    .iter()
                    .filter(|(_, sum, n)| sum / *n as f64 > threshold)
                    .count();
                (n > 0).then_some((k, n as f64))
            })
            .collect(),
        Kind::Rollup { bucket_ms } => h
            .above
            .into_iter()
            .map(|(k, n)| (k, n as f64 * bucket_ms as f64 / 3_600_000.0))
            .collect(),
        Kind::Inventory => BTreeMap::new(),
    })
}

/// A series' least-squares sums (x in days since the period start) and its last observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendSums {
    /// Points.
    pub n: u64,
    /// Mean x (days).
    pub mean_x: f64,
    /// Mean y.
    pub mean_y: f64,
    /// Σ(x-x̄)².
    pub sxx: f64,
    /// Σ(x-x̄)(y-ȳ).
    pub sxy: f64,
    /// Σ(y-ȳ)².
    pub syy: f64,
    /// First observed value.
    pub first: Option<f64>,
    /// Last observed value.
    pub last: Option<f64>,
    /// Time of the last observation, ms.
    pub last_ms: i64,
}

/// Centred least-squares sums per series of `metric` (raw `value`, or a rollup's `avg` at the
/// bucket start), for the trend and forecast: from the table's profile.
pub fn trend_sums(
    ds: &Dataset,
    t: &TableInfo,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<SeriesKey, TrendSums>, ReportError> {
    let profile = ds.profile(t, from_ms, to_ms)?;
    Ok(profile
        .of_metrics(&[metric])
        .filter_map(|(_, k, s)| s.trend_sums().map(|ts| (k.clone(), ts)))
        .collect())
}

/// Hourly means per series of `metric`, ascending in time: the points of the time charts (a
/// chart needs no more than one point an hour, and this keeps the result small).
pub fn hourly_means(
    ds: &Dataset,
    t: &TableInfo,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<SeriesKey, Vec<(i64, f64)>>, ReportError> {
    let h = super::profile::hourly(ds, t, &[metric], from_ms, to_ms, None)?;
    Ok(h.hours
        .into_iter()
        .map(|(k, hours)| {
            let v = hours.iter().map(|(h, s, n)| (*h, s / *n as f64)).collect();
            (k, v)
        })
        .collect())
}

/// The `date=` partition values under a table directory, sorted.
pub fn dates_in(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut d: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("date="))
                .map(str::to_string)
        })
        .collect();
    d.sort();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_bounds_cover_the_period_end_exclusive() {
        // 2026-11-01T00:00Z .. 2026-11-03T00:00Z
        let (a, b) = date_bounds(1_793_491_200_000, 1_793_664_000_000);
        assert_eq!((a.as_str(), b.as_str()), ("2026-11-01", "2026-11-02"));
    }

    #[test]
    fn keys_are_pruned_by_date_partition() {
        let b = ("2026-11-01".to_string(), "2026-11-02".to_string());
        assert!(key_in_dates(
            "vm_metrics/date=2026-11-01/part-x.parquet",
            Some(&b)
        ));
        assert!(!key_in_dates(
            "vm_metrics/date=2026-11-03/part-x.parquet",
            Some(&b)
        ));
        assert!(key_in_dates(
            "vm_metrics/metric=a/date=2026-11-02/p.parquet",
            Some(&b)
        ));
        assert!(key_in_dates("anything.parquet", None));
        assert!(!is_data_dir("_state") && is_data_dir("vm_metrics"));
    }
}
