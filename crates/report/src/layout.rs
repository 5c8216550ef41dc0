//! Cheap facts about a table from its layout rather than from a scan of all its rows: its
//! `date=` partitions, its time range (read from the first and the last partition only) and
//! the metrics it holds (the catalogue's metrics of its component, plus those of its last
//! partition). A scan of a whole column (`ts`, `metric`) of a year of raw points would hold
//! billions of values in memory at once.

use std::collections::BTreeSet;

use polars::prelude::*;

use super::ReportError;
use super::data::{Component, Dataset, TableInfo, collect, dates_in, ints, strings};
use vscope_core::catalogue::{self, Catalogue};

/// The `date=` partition values of a table (top-level `date=YYYY-MM-DD` directories), sorted;
/// empty when the table is laid out otherwise.
pub fn dates(ds: &Dataset, t: &TableInfo) -> Vec<String> {
    dates_in(&ds.root.join(&t.name))
}

/// A scan of the table restricted to one `date=` partition (by its directory: nothing else is
/// listed or opened).
fn partition_scan(ds: &Dataset, t: &TableInfo, date: &str) -> Result<LazyFrame, ReportError> {
    let glob = format!("{}/{}/date={date}/**/*.parquet", ds.root.display(), t.name);
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_enabled(),
        ..Default::default()
    };
    LazyFrame::scan_parquet(PlRefPath::new(glob), args).map_err(|e| ReportError::Query {
        what: t.name.clone(),
        message: e.to_string(),
    })
}

/// The earliest and latest `ts` of a table: from its first and last `date=` partitions when it
/// has them (only their `ts` column is read), else from a scan of the whole column.
pub fn ts_range(ds: &Dataset, t: &TableInfo) -> Result<Option<(i64, i64)>, ReportError> {
    let d = dates(ds, t);
    let (lo_scan, hi_scan) = match (d.first(), d.last()) {
        (Some(a), Some(b)) => (partition_scan(ds, t, a)?, partition_scan(ds, t, b)?),
        _ => (ds.scan(&t.name)?, ds.scan(&t.name)?),
    };
    let one = |lf: LazyFrame, agg: Expr| -> Result<Option<i64>, ReportError> {
        let df = collect(lf.select([agg.alias("v")]), &t.name)?;
        Ok(ints(&df, "v")?.first().copied().flatten())
    };
    let ts = || col("ts").cast(DataType::Int64);
    Ok(
        match (one(lo_scan, ts().min())?, one(hi_scan, ts().max())?) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        },
    )
}

/// The catalogue's component of a report component.
fn catalogue_component(c: Component) -> catalogue::Component {
    match c {
        Component::Host => catalogue::Component::Host,
        Component::Vm => catalogue::Component::Vm,
        Component::Filer => catalogue::Component::Filer,
    }
}

/// The metrics of a table to look at one by one: the vScope catalogue's metrics of its
/// component, plus the distinct metrics of its last `date=` partition (a metric outside the
/// catalogue that stopped before the last day is missed), or of the whole table when it has no
/// date partitions. A query per metric then skips the absent ones at the cost of a footer read.
pub fn metrics(ds: &Dataset, t: &TableInfo) -> Result<Vec<String>, ReportError> {
    let want = catalogue_component(t.component);
    let mut out: BTreeSet<String> = Catalogue::builtin()
        .metrics()
        .iter()
        .filter(|m| m.component == want)
        .map(|m| m.name.clone())
        .collect();
    let lf = match dates(ds, t).last() {
        Some(last) => partition_scan(ds, t, last)?,
        None => ds.scan(&t.name)?,
    };
    let df = collect(
        lf.select([col("metric")])
            .unique(None, UniqueKeepStrategy::Any),
        &t.name,
    )?;
    out.extend(strings(&df, "metric")?.into_iter().flatten());
    Ok(out.into_iter().collect())
}
