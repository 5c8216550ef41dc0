//! A data file's column statistics in the form a Delta `add` carries them (`stats`: JSON with
//! `numRecords`, `minValues`, `maxValues`, `nullCount`), from the statistics the Parquet writer
//! already computed for the file's footer, so that readers skip files by `ts`, `metric` or a
//! label without opening them.

use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

/// A column's bounds across row groups.
#[derive(Default)]
struct Bounds {
    min: Option<Value>,
    max: Option<Value>,
    nulls: u64,
    /// A row group had no statistics, or inexact (truncated) ones: no bounds for the file.
    unknown: bool,
}

fn less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x < y,
        _ => a.as_f64().zip(b.as_f64()).is_some_and(|(x, y)| x < y),
    }
}

/// A Delta timestamp statistic: ISO 8601 UTC with milliseconds.
fn timestamp_ms(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms).map_or(Value::Null, |t| {
        Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    })
}

/// The min and max of one row group's column, as Delta writes them; `None` when absent or
/// inexact.
fn min_max(s: &Statistics, timestamp: bool) -> Option<(Value, Value)> {
    match s {
        Statistics::Int64(v) if v.min_is_exact() && v.max_is_exact() => {
            let (min, max) = (*v.min_opt()?, *v.max_opt()?);
            Some(if timestamp {
                (timestamp_ms(min), timestamp_ms(max))
            } else {
                (json!(min), json!(max))
            })
        }
        Statistics::Int32(v) if v.min_is_exact() && v.max_is_exact() => {
            Some((json!(*v.min_opt()?), json!(*v.max_opt()?)))
        }
        Statistics::Double(v) if v.min_is_exact() && v.max_is_exact() => {
            let (min, max) = (*v.min_opt()?, *v.max_opt()?);
            (min.is_finite() && max.is_finite()).then(|| (json!(min), json!(max)))
        }
        Statistics::ByteArray(v) if v.min_is_exact() && v.max_is_exact() => {
            let min = std::str::from_utf8(v.min_opt()?.data()).ok()?;
            let max = std::str::from_utf8(v.max_opt()?.data()).ok()?;
            Some((json!(min), json!(max)))
        }
        _ => None,
    }
}

/// The `stats` of a file whose footer is `meta`: top-level columns only (not the `tags` map),
/// `timestamps` naming the columns written as milliseconds since the epoch.
pub fn file_stats(meta: &ParquetMetaData, timestamps: &[&str]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut bounds: std::collections::HashMap<String, Bounds> = Default::default();
    let mut rows = 0i64;
    for rg in meta.row_groups() {
        rows += rg.num_rows();
        for c in rg.columns() {
            let parts = c.column_path().parts();
            if parts.len() != 1 {
                continue;
            }
            let name = parts[0].clone();
            if !bounds.contains_key(&name) {
                order.push(name.clone());
            }
            let b = bounds.entry(name.clone()).or_default();
            let Some(s) = c.statistics() else {
                b.unknown = true;
                continue;
            };
            b.nulls += s.null_count_opt().unwrap_or(0);
            match min_max(s, timestamps.contains(&name.as_str())) {
                Some((min, max)) => {
                    if b.min.as_ref().is_none_or(|m| less(&min, m)) {
                        b.min = Some(min);
                    }
                    if b.max.as_ref().is_none_or(|m| less(m, &max)) {
                        b.max = Some(max);
                    }
                }
                // A column that is null in the whole row group has no bounds; any other
                // missing bound makes the file's unknown.
                None if s.null_count_opt() == Some(rg.num_rows() as u64) => {}
                None => b.unknown = true,
            }
        }
    }
    let (mut mins, mut maxs, mut nulls) = (Map::new(), Map::new(), Map::new());
    for name in order {
        let b = &bounds[&name];
        nulls.insert(name.clone(), json!(b.nulls));
        if b.unknown {
            continue;
        }
        if let (Some(min), Some(max)) = (&b.min, &b.max) {
            mins.insert(name.clone(), min.clone());
            maxs.insert(name, max.clone());
        }
    }
    json!({
        "numRecords": rows,
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    #[test]
    fn bounds_and_null_counts_span_the_row_groups() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("vm", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
        ]));
        let batch = |ts: Vec<i64>, vm: Vec<Option<&str>>, v: Vec<Option<f64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                    Arc::new(StringArray::from(vm)),
                    Arc::new(Float64Array::from(v)),
                ],
            )
            .unwrap()
        };
        let mut buf = Vec::new();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).unwrap();
        w.write(&batch(
            vec![1_000, 2_500, 3_000, 4_000],
            vec![Some("vm-2"), None, Some("vm-1"), Some("vm-3")],
            vec![Some(1.5), Some(-2.0), None, Some(9.25)],
        ))
        .unwrap();
        let meta = w.close().unwrap();
        assert_eq!(meta.num_row_groups(), 2);
        let stats: Value = serde_json::from_str(&file_stats(&meta, &["ts"])).unwrap();
        assert_eq!(
            stats,
            json!({
                "numRecords": 4,
                "minValues": {"ts": "1970-01-01T00:00:01.000Z", "vm": "vm-1", "value": -2.0},
                "maxValues": {"ts": "1970-01-01T00:00:04.000Z", "vm": "vm-3", "value": 9.25},
                "nullCount": {"ts": 0, "vm": 1, "value": 1},
            })
        );
    }
}
