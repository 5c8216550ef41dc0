//! Transform: decoded series into Arrow record batches of the declared table schemas.
//!
//! Rows come out sorted by (`metric`, labels, `ts`) because series are appended in sorted order
//! and each series is already sorted and de-duplicated by the decoder; no sort kernel runs over
//! the rows. Rollups are computed here, client-side, from the raw points (see
//! [`crate::semantics::rollup`]).

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Float64Builder, Int64Array, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMillisecondArray,
};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::catalogue::Component;
use crate::extract::SeriesData;
use crate::schema::{UTC, raw_schema, raw_table_decl, rollup_schema};
use crate::semantics::rollup::{Rollup, RollupColumn, RollupOutput};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// Orders series the way rows are sorted in files: by metric, then the table's label columns
/// (a missing label sorts first, as null), then the remaining tags.
pub fn sort_series(series: &mut [SeriesData], label_columns: &[&str]) {
    series.sort_by(|a, b| compare_series(a, b, label_columns));
}

/// The order of [`sort_series`], for sorting other things that carry a series.
pub fn compare_series(a: &SeriesData, b: &SeriesData, label_columns: &[&str]) -> Ordering {
    a.metric
        .cmp(&b.metric)
        .then_with(|| {
            label_columns
                .iter()
                .map(|l| a.tags.get(*l).cmp(&b.tags.get(*l)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| {
            let extra = |s: &'_ SeriesData| {
                s.tags
                    .iter()
                    .filter(|(k, _)| !label_columns.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            };
            extra(a).cmp(&extra(b))
        })
}

/// Splits sorted timestamps into runs of the same UTC day: `(day start ms, index range)`.
pub fn day_runs(ts: &[i64]) -> Vec<(i64, Range<usize>)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < ts.len() {
        let day = ts[i].div_euclid(DAY_MS) * DAY_MS;
        let end = i + ts[i..].partition_point(|&t| t < day + DAY_MS);
        runs.push((day, i..end));
        i = end;
    }
    runs
}

/// The columns every table shares: `metric`, the label columns and `tags`.
struct KeyColumns {
    labels: Vec<String>,
    metric: StringBuilder,
    label_builders: Vec<StringBuilder>,
    tags: MapBuilder<StringBuilder, StringBuilder>,
}

impl KeyColumns {
    fn new(component: Component) -> KeyColumns {
        let labels: Vec<String> = raw_table_decl(component)
            .label_columns()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let names = MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        };
        KeyColumns {
            label_builders: labels.iter().map(|_| StringBuilder::new()).collect(),
            labels,
            metric: StringBuilder::new(),
            tags: MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new()),
        }
    }

    /// Appends the key of `series` `n` times.
    fn append_n(&mut self, series: &SeriesData, n: usize) {
        let label_values: Vec<Option<&str>> = self
            .labels
            .iter()
            .map(|l| series.tags.get(l).map(String::as_str))
            .collect();
        let extra: Vec<(&str, &str)> = series
            .tags
            .iter()
            .filter(|(k, _)| !self.labels.iter().any(|l| l == *k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for _ in 0..n {
            self.metric.append_value(&series.metric);
            for (b, v) in self.label_builders.iter_mut().zip(&label_values) {
                b.append_option(*v);
            }
            for (k, v) in &extra {
                self.tags.keys().append_value(k);
                self.tags.values().append_value(v);
            }
            self.tags
                .append(true)
                .expect("keys and values appended in pairs");
        }
    }

    /// `metric`, label columns, in order; and the `tags` column separately (it goes last).
    fn finish(&mut self) -> (Vec<ArrayRef>, ArrayRef) {
        let mut cols: Vec<ArrayRef> = vec![Arc::new(self.metric.finish())];
        cols.extend(
            self.label_builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        (cols, Arc::new(self.tags.finish()))
    }
}

fn ts_array(ts: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(ts).with_timezone(UTC))
}

/// Accumulates rows of a raw table (`ts, metric, labels…, value, tags`).
pub struct RawBatchBuilder {
    schema: SchemaRef,
    ts: Vec<i64>,
    values: Float64Builder,
    keys: KeyColumns,
}

impl RawBatchBuilder {
    /// An empty builder for the raw table of `component`.
    pub fn new(component: Component) -> RawBatchBuilder {
        RawBatchBuilder {
            schema: raw_schema(component),
            ts: Vec::new(),
            values: Float64Builder::new(),
            keys: KeyColumns::new(component),
        }
    }

    /// Appends the points `range` of `series`.
    pub fn append(&mut self, series: &SeriesData, range: Range<usize>) {
        self.ts.extend_from_slice(&series.ts[range.clone()]);
        for v in &series.values[range.clone()] {
            self.values.append_option(*v);
        }
        self.keys.append_n(series, range.len());
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The buffered rows as a batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let (key_cols, tags) = self.keys.finish();
        let mut cols = vec![ts_array(std::mem::take(&mut self.ts))];
        cols.extend(key_cols);
        cols.push(Arc::new(self.values.finish()));
        cols.push(tags);
        RecordBatch::try_new(self.schema.clone(), cols)
    }
}

/// Accumulates rows of a rollup table (`ts, metric, labels…, <aggregates>, tags`).
pub struct RollupBatchBuilder {
    schema: SchemaRef,
    rollup: Rollup,
    out: RollupOutput,
    keys: KeyColumns,
}

impl RollupBatchBuilder {
    /// An empty builder for a rollup of `component`'s metrics.
    pub fn new(component: Component, rollup: Rollup) -> RollupBatchBuilder {
        RollupBatchBuilder {
            schema: rollup_schema(component, &rollup.aggregates),
            out: rollup.output(),
            rollup,
            keys: KeyColumns::new(component),
        }
    }

    /// Appends rows `range` of `rows`, a rollup of `series` computed with the same [`Rollup`].
    pub fn append_rows(&mut self, series: &SeriesData, rows: &RollupOutput, range: Range<usize>) {
        self.out
            .bucket_ts
            .extend_from_slice(&rows.bucket_ts[range.clone()]);
        for (dst, src) in self.out.columns.iter_mut().zip(&rows.columns) {
            match (dst, src) {
                (RollupColumn::Int(d), RollupColumn::Int(s)) => {
                    d.extend_from_slice(&s[range.clone()])
                }
                (RollupColumn::Float(d), RollupColumn::Float(s)) => {
                    d.extend_from_slice(&s[range.clone()])
                }
                _ => unreachable!("columns come from the same Rollup"),
            }
        }
        self.keys.append_n(series, range.len());
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.out.bucket_ts.len()
    }

    /// True when no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.out.bucket_ts.is_empty()
    }

    /// The buffered rows as a batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let out = std::mem::replace(&mut self.out, self.rollup.output());
        let (key_cols, tags) = self.keys.finish();
        let mut cols = vec![ts_array(out.bucket_ts)];
        cols.extend(key_cols);
        for c in out.columns {
            cols.push(match c {
                RollupColumn::Int(v) => Arc::new(Int64Array::from(v)) as ArrayRef,
                RollupColumn::Float(v) => Arc::new(Float64Array::from(v)) as ArrayRef,
            });
        }
        cols.push(tags);
        RecordBatch::try_new(self.schema.clone(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::aggregator::Aggregator;
    use arrow::array::{Array, AsArray};
    use std::collections::BTreeMap;

    fn series(
        metric: &str,
        vm: Option<&str>,
        ts: Vec<i64>,
        values: Vec<Option<f64>>,
    ) -> SeriesData {
        let mut tags = BTreeMap::new();
        tags.insert("datacenter".to_string(), "dc1".to_string());
        tags.insert("env".to_string(), "prod".to_string());
        if let Some(vm) = vm {
            tags.insert("vm".to_string(), vm.to_string());
        }
        SeriesData {
            metric: metric.into(),
            tags,
            ts,
            values,
        }
    }

    #[test]
    fn sorts_by_metric_then_labels_with_missing_first() {
        let mut s = vec![
            series("b", Some("vm-1"), vec![], vec![]),
            series("a", Some("vm-2"), vec![], vec![]),
            series("a", None, vec![], vec![]),
            series("a", Some("vm-1"), vec![], vec![]),
        ];
        sort_series(&mut s, &["datacenter", "vm"]);
        let keys: Vec<(&str, Option<&str>)> = s
            .iter()
            .map(|s| (s.metric.as_str(), s.tags.get("vm").map(String::as_str)))
            .collect();
        assert_eq!(
            keys,
            [
                ("a", None),
                ("a", Some("vm-1")),
                ("a", Some("vm-2")),
                ("b", Some("vm-1"))
            ]
        );
    }

    #[test]
    fn day_runs_split_on_utc_midnight() {
        let ts = [DAY_MS - 1, DAY_MS, DAY_MS + 5, 3 * DAY_MS];
        let runs = day_runs(&ts);
        assert_eq!(runs, [(0, 0..1), (DAY_MS, 1..3), (3 * DAY_MS, 3..4)]);
        assert!(day_runs(&[]).is_empty());
        assert_eq!(day_runs(&[-1]), [(-DAY_MS, 0..1)]);
    }

    #[test]
    fn raw_batch_has_declared_schema_and_tags_map() {
        let s = series(
            "vscope.vm.cpu.usage.perc",
            Some("vm-1"),
            vec![1000, 2000, 3000],
            vec![Some(1.0), None, Some(3.0)],
        );
        let mut b = RawBatchBuilder::new(Component::Vm);
        b.append(&s, 0..3);
        assert_eq!(b.len(), 3);
        let batch = b.finish().unwrap();
        assert_eq!(batch.schema(), raw_schema(Component::Vm));
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.column(4).null_count(), 1);
        let tags = batch.column(5).as_map();
        let keys = tags.keys().as_string::<i32>();
        assert_eq!(tags.value_length(0), 1);
        assert_eq!(keys.value(0), "env");
        assert!(b.is_empty());
    }

    #[test]
    fn rollup_batch_rows_follow_the_rollup() {
        let rollup = Rollup::new(3_600_000, vec![Aggregator::Avg, Aggregator::Count]).unwrap();
        let s = series(
            "vscope.vm.cpu.usage.perc",
            Some("vm-1"),
            vec![0, 1_800_000, 3_600_000, 7_200_000],
            vec![Some(1.0), Some(3.0), None, Some(5.0)],
        );
        let mut rows = rollup.output();
        rollup.apply_into(&s.ts, &s.values, &mut rows);
        let mut b = RollupBatchBuilder::new(Component::Vm, rollup);
        b.append_rows(&s, &rows, 0..rows.bucket_ts.len());
        let batch = b.finish().unwrap();
        // The 3_600_000 bucket holds only a null point: no row.
        assert_eq!(batch.num_rows(), 2);
        let avg = batch
            .column(4)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(avg.value(0), 2.0);
        let count = batch
            .column(5)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(count.values().to_vec(), [2, 1]);
    }
}
