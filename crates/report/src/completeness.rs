//! Completeness of every series over the period: its step (the median gap between points),
//! the points present and the gaps, from the table's streaming profile ([`super::profile`]),
//! memory one small count per distinct gap of a series.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::ReportError;
use super::data::{
    Dataset, Kind, SeriesKey, TableInfo, collect, floats, ints, keys_for, label_cols,
};

/// Completeness of one series over the period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completeness {
    /// The series' step: the median gap between consecutive points, ms.
    pub step_ms: Option<f64>,
    /// Points present (non-null values).
    pub present: i64,
    /// Gaps between consecutive points longer than 1.5 steps.
    pub gaps: i64,
    /// First point, ms.
    pub first_ms: i64,
    /// Last point, ms.
    pub last_ms: i64,
}

/// Per-series step, point count and gaps of every series in `t` over the period, from the
/// table's profile (one streaming pass; the median step is exact from the count of each
/// distinct gap). A metric with a series whose rows are not in time order across its files
/// (files overlapping in time) is computed again here with a polars query over that metric,
/// which sorts its timestamps.
pub fn completeness(
    ds: &Dataset,
    t: &TableInfo,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<SeriesKey, Completeness>, ReportError> {
    let profile = ds.profile(t, from_ms, to_ms)?;
    let mut out = BTreeMap::new();
    let mut unsorted = std::collections::BTreeSet::new();
    for (_, k, s) in profile.all() {
        if s.unsorted() {
            unsorted.insert(k.0.clone());
        } else if let Some(c) = s.completeness() {
            out.insert(k.clone(), c);
        }
    }
    for m in unsorted {
        tracing::debug!(table = %t.name, metric = %m, "rows out of time order: completeness by a sorting query");
        out.retain(|k, _| k.0 != m);
        out.append(&mut completeness_of(ds, t, &m, from_ms, to_ms)?);
    }
    Ok(out)
}

fn completeness_of(
    ds: &Dataset,
    t: &TableInfo,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<SeriesKey, Completeness>, ReportError> {
    let labels = label_cols(t);
    // One metric per query: it is not a group key (a string per row less in memory).
    let mut by: Vec<Expr> = Vec::new();
    by.extend(labels.iter().map(|l| col(*l)));
    let present = if t.kind == Kind::Raw {
        col("value")
    } else {
        col("count")
    };
    let sorted = col("t").sort(SortOptions::default());
    let d = (sorted.clone() - sorted.shift(lit(1))).cast(DataType::Float64);
    let lf = ds
        .period_scan(t, &[metric], from_ms, to_ms)?
        .filter(present.is_not_null())
        .select({
            let mut s = by.clone();
            s.push(col("ts").cast(DataType::Int64).alias("t"));
            s
        })
        .group_by(by)
        .agg([
            len().cast(DataType::Int64).alias("present"),
            d.clone().median().alias("step"),
            d.clone()
                .gt(d.median() * lit(1.5))
                .cast(DataType::Int64)
                .sum()
                .alias("gaps"),
            col("t").min().alias("first"),
            col("t").max().alias("last"),
        ]);
    let df = collect(lf, &t.name)?;
    let keys = keys_for(&df, &labels, metric)?;
    let (present, step, gaps, first, last) = (
        ints(&df, "present")?,
        floats(&df, "step")?,
        ints(&df, "gaps")?,
        ints(&df, "first")?,
        ints(&df, "last")?,
    );
    Ok(keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k,
                Completeness {
                    step_ms: step[i],
                    present: present[i].unwrap_or(0),
                    gaps: gaps[i].unwrap_or(0),
                    first_ms: first[i].unwrap_or(0),
                    last_ms: last[i].unwrap_or(0),
                },
            )
        })
        .collect())
}
