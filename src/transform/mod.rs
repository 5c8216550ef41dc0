//! Transform: decoded series into Arrow record batches of the declared table schemas.
//!
//! Rows come out sorted by (`metric`, labels, `ts`) because series are appended in sorted order
//! and each series is already sorted and de-duplicated by the decoder; no sort kernel runs over
//! the rows. Rollups are computed here, client-side, from the raw points (see
//! [`crate::semantics::rollup`]).

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

use std::collections::HashMap;

use arrow::array::{
    ArrayRef, BooleanBufferBuilder, DictionaryArray, Float64Array, Float64Builder, Int32Array,
    Int64Array, MapArray, StringArray, StructArray, TimestampMillisecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::catalogue::Component;
use crate::extract::{SeriesData, value_of};
use crate::schema::{UTC, raw_schema, raw_table_decl, rollup_schema};
use crate::semantics::rollup::{Rollup, RollupColumn, RollupOutput};

pub use crate::semantics::time::DAY_MS;

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

/// The Arrow type the series-constant string columns are built with: a dictionary of the
/// batch's distinct values, keys repeated per row. The Parquet writer reads it as the declared
/// `Utf8` (the file schema stays the declared one); building it costs a hash lookup per series,
/// not per row.
pub fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `schema` as the builders produce it: `Utf8` columns and the `tags` map's key and value as
/// [`dict_type`]; everything else (names, nullability, order) unchanged.
pub fn physical_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(physical_type(f.data_type()))
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn physical_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8 => dict_type(),
        DataType::Map(entries, sorted) => {
            let DataType::Struct(children) = entries.data_type() else {
                return t.clone();
            };
            let children: Fields = children
                .iter()
                .map(|c| {
                    c.as_ref()
                        .clone()
                        .with_data_type(physical_type(c.data_type()))
                })
                .collect();
            DataType::Map(
                Arc::new(
                    entries
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Struct(children)),
                ),
                *sorted,
            )
        }
        other => other.clone(),
    }
}

/// `schema` with dictionaries replaced by their value type: what a physical batch means.
pub fn logical_schema(schema: &Schema) -> Schema {
    fn logical(t: &DataType) -> DataType {
        match t {
            DataType::Dictionary(_, v) => logical(v),
            DataType::Map(entries, sorted) => match entries.data_type() {
                DataType::Struct(children) => DataType::Map(
                    Arc::new(
                        entries.as_ref().clone().with_data_type(DataType::Struct(
                            children
                                .iter()
                                .map(|c| c.as_ref().clone().with_data_type(logical(c.data_type())))
                                .collect(),
                        )),
                    ),
                    *sorted,
                ),
                _ => t.clone(),
            },
            other => other.clone(),
        }
    }
    Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(logical(f.data_type())))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

/// Distinct strings numbered in order of first use: the values of a dictionary column (one
/// batch's here, one Parquet column chunk's in [`crate::load::runs`]). Each distinct value is
/// hashed when first seen and looked up once per series or run, never per row.
#[derive(Debug, Default)]
pub struct StringDictionary {
    values: Vec<String>,
    index: HashMap<String, u32>,
}

impl StringDictionary {
    /// The number of `v`, given it if new.
    pub fn id(&mut self, v: &str) -> u32 {
        if let Some(&i) = self.index.get(v) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(v.to_string());
        self.index.insert(v.to_string(), i);
        i
    }

    /// The value numbered `id` (which [`Self::id`] gave).
    pub fn get(&self, id: u32) -> &str {
        &self.values[id as usize]
    }

    /// The values, in number order.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// The values as an Arrow array (dictionary keys index it); the dictionary is empty after.
    fn finish(&mut self) -> ArrayRef {
        self.index.clear();
        Arc::new(StringArray::from_iter_values(std::mem::take(
            &mut self.values,
        )))
    }
}

/// The dictionary keys of one series: metric, each label (None when the tag is missing) and
/// the (key, value) pairs of its other tags.
struct SeriesKeys {
    metric: i32,
    labels: Vec<Option<i32>>,
    extra: Vec<(i32, i32)>,
}

/// The columns every table shares: `metric`, the label columns and `tags`, kept as runs of
/// one series and turned into dictionary arrays at `finish`.
struct KeyColumns {
    labels: Vec<String>,
    metric: StringDictionary,
    label_dicts: Vec<StringDictionary>,
    tag_keys: StringDictionary,
    tag_values: StringDictionary,
    series: Vec<SeriesKeys>,
    /// (index into `series`, rows)
    runs: Vec<(usize, usize)>,
}

impl KeyColumns {
    fn new(component: Component) -> KeyColumns {
        let labels: Vec<String> = raw_table_decl(component)
            .label_columns()
            .iter()
            .map(|s| s.to_string())
            .collect();
        KeyColumns {
            label_dicts: labels.iter().map(|_| StringDictionary::default()).collect(),
            labels,
            metric: StringDictionary::default(),
            tag_keys: StringDictionary::default(),
            tag_values: StringDictionary::default(),
            series: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Appends the key of `series` `n` times.
    fn append_n(&mut self, series: &SeriesData, n: usize) {
        if n == 0 {
            return;
        }
        let keys = SeriesKeys {
            metric: self.metric.id(&series.metric) as i32,
            labels: self
                .labels
                .iter()
                .zip(&mut self.label_dicts)
                .map(|(l, d)| series.tags.get(l).map(|v| d.id(v) as i32))
                .collect(),
            extra: series
                .tags
                .iter()
                .filter(|(k, _)| !self.labels.iter().any(|l| l == *k))
                .map(|(k, v)| (self.tag_keys.id(k) as i32, self.tag_values.id(v) as i32))
                .collect(),
        };
        self.series.push(keys);
        self.runs.push((self.series.len() - 1, n));
    }

    /// `metric`, label columns, in order; and the `tags` column separately (it goes last).
    fn finish(&mut self) -> Result<(Vec<ArrayRef>, ArrayRef), ArrowError> {
        let rows: usize = self.runs.iter().map(|r| r.1).sum();
        let runs = std::mem::take(&mut self.runs);
        let series = std::mem::take(&mut self.series);
        let dict = |keys: Int32Array, values: ArrayRef| -> Result<ArrayRef, ArrowError> {
            Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
                keys, values,
            )?))
        };
        let mut metric_keys = Vec::with_capacity(rows);
        for &(s, n) in &runs {
            metric_keys.extend(std::iter::repeat_n(series[s].metric, n));
        }
        let mut cols = vec![dict(Int32Array::from(metric_keys), self.metric.finish())?];
        for (li, d) in self.label_dicts.iter_mut().enumerate() {
            let mut keys = Vec::with_capacity(rows);
            let mut valid = BooleanBufferBuilder::new(rows);
            let mut nulls = false;
            for &(s, n) in &runs {
                let k = series[s].labels[li];
                nulls |= k.is_none();
                keys.extend(std::iter::repeat_n(k.unwrap_or(0), n));
                valid.append_n(n, k.is_some());
            }
            let nulls = nulls.then(|| NullBuffer::new(valid.finish()));
            cols.push(dict(Int32Array::new(keys.into(), nulls), d.finish())?);
        }
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0i32);
        let mut entry_keys = Vec::new();
        let mut entry_values = Vec::new();
        let mut end = 0i32;
        for &(s, n) in &runs {
            let extra = &series[s].extra;
            let per_row = extra.len() as i32;
            offsets.extend((1..=n as i32).map(|row| end + row * per_row));
            end += n as i32 * per_row;
            if let [(key, value)] = extra[..] {
                // The usual case, one extra tag: a fill, not a loop of pushes.
                entry_keys.extend(std::iter::repeat_n(key, n));
                entry_values.extend(std::iter::repeat_n(value, n));
            } else {
                for _ in 0..n {
                    entry_keys.extend(extra.iter().map(|e| e.0));
                    entry_values.extend(extra.iter().map(|e| e.1));
                }
            }
        }
        let entry_fields = Fields::from(vec![
            Field::new("key", dict_type(), false),
            Field::new("value", dict_type(), true),
        ]);
        let entries = StructArray::try_new(
            entry_fields.clone(),
            vec![
                dict(Int32Array::from(entry_keys), self.tag_keys.finish())?,
                dict(Int32Array::from(entry_values), self.tag_values.finish())?,
            ],
            None,
        )?;
        let tags = MapArray::try_new(
            Arc::new(Field::new(
                "key_value",
                DataType::Struct(entry_fields),
                false,
            )),
            OffsetBuffer::new(offsets.into()),
            entries,
            None,
            false,
        )?;
        Ok((cols, Arc::new(tags)))
    }
}

fn ts_array(ts: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(ts).with_timezone(UTC))
}

/// Accumulates rows of a raw table (`ts, metric, labels…, value, tags`) into batches of its
/// [`physical_schema`].
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
            schema: physical_schema(&raw_schema(component)),
            ts: Vec::new(),
            values: Float64Builder::new(),
            keys: KeyColumns::new(component),
        }
    }

    /// Appends the points `range` of `series`.
    pub fn append(&mut self, series: &SeriesData, range: Range<usize>) {
        self.ts.extend_from_slice(&series.ts[range.clone()]);
        let values = &series.values[range.clone()];
        if values.iter().any(|v| v.is_nan()) {
            for &v in values {
                self.values.append_option(value_of(v));
            }
        } else {
            // The usual run: no missing value, copied whole.
            self.values.append_slice(values);
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
        let (key_cols, tags) = self.keys.finish()?;
        let mut cols = vec![ts_array(std::mem::take(&mut self.ts))];
        cols.extend(key_cols);
        cols.push(Arc::new(self.values.finish()));
        cols.push(tags);
        RecordBatch::try_new(self.schema.clone(), cols)
    }
}

/// Accumulates rows of a rollup table (`ts, metric, labels…, <aggregates>, tags`) into batches
/// of its [`physical_schema`].
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
            schema: physical_schema(&rollup_schema(component, &rollup.aggregates)),
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
        let (key_cols, tags) = self.keys.finish()?;
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
            values: values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
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
        assert_eq!(logical_schema(&batch.schema()), *raw_schema(Component::Vm));
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.column(4).null_count(), 1);
        let tags = batch.column(5).as_map();
        let keys = tags.keys().as_dictionary::<Int32Type>();
        let key_values = keys.values().as_string::<i32>();
        assert_eq!(tags.value_length(0), 1);
        assert_eq!(key_values.value(keys.keys().value(0) as usize), "env");
        let vm = batch.column(3).as_dictionary::<Int32Type>();
        assert_eq!(vm.values().as_string::<i32>().value(0), "vm-1");
        assert!(vm.keys().values().iter().all(|&k| k == 0));
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
