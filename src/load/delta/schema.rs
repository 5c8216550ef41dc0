//! A table's Arrow schema as Delta's `schemaString`, with the partition columns.
//!
//! Timestamps: Delta's `timestamp` is microseconds since the epoch, UTC. Our files keep
//! `timestamp[ms, UTC]` (the `parquet` format's type, so both formats share their files): both
//! independent readers we test, delta-rs (the `deltalake` package) and DuckDB's `delta`
//! extension (delta-kernel-rs), read a Parquet `TIMESTAMP(MILLIS, UTC)` column of a Delta
//! `timestamp` field and give microsecond values (checked by `tests/e2e/delta.rs`).

use arrow::datatypes::{DataType, Field, Schema};
use serde_json::{Value, json};

/// The Delta type of an Arrow type, `None` for one we never write.
fn delta_type(t: &DataType) -> Option<Value> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => json!("string"),
        DataType::Dictionary(_, v) => return delta_type(v),
        DataType::Float64 => json!("double"),
        DataType::Float32 => json!("float"),
        DataType::Int64 | DataType::UInt64 => json!("long"),
        DataType::Int32 | DataType::UInt32 => json!("integer"),
        DataType::Int16 | DataType::UInt16 => json!("short"),
        DataType::Int8 | DataType::UInt8 => json!("byte"),
        DataType::Boolean => json!("boolean"),
        DataType::Date32 => json!("date"),
        DataType::Timestamp(_, Some(_)) => json!("timestamp"),
        DataType::Timestamp(_, None) => json!("timestamp_ntz"),
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return None;
            };
            json!({
                "type": "map",
                "keyType": delta_type(kv.first()?.data_type())?,
                "valueType": delta_type(kv.get(1)?.data_type())?,
                "valueContainsNull": kv.get(1)?.is_nullable(),
            })
        }
        DataType::List(item) | DataType::LargeList(item) => json!({
            "type": "array",
            "elementType": delta_type(item.data_type())?,
            "containsNull": item.is_nullable(),
        }),
        DataType::Struct(fields) => struct_type(fields.iter().map(|f| f.as_ref()))?,
        _ => return None,
    })
}

fn struct_type<'a>(fields: impl Iterator<Item = &'a Field>) -> Option<Value> {
    let fields: Option<Vec<Value>> = fields
        .map(|f| {
            Some(json!({
                "name": f.name(),
                "type": delta_type(f.data_type())?,
                "nullable": f.is_nullable(),
                "metadata": {},
            }))
        })
        .collect();
    Some(json!({"type": "struct", "fields": fields?}))
}

/// The `schemaString` of a table whose files have `schema` and that is partitioned by
/// `partition_by` (`metric` is a column of the files already; `date` is added, of type `date`,
/// and `month`, `YYYY-MM`, of type `string`). Panics on an Arrow type the writer never produces.
pub fn schema_string(schema: &Schema, partition_by: &[String]) -> String {
    let date = Field::new("date", DataType::Date32, true);
    let month = Field::new("month", DataType::Utf8, true);
    let extra = partition_by
        .iter()
        .filter(|p| schema.field_with_name(p).is_err())
        .map(|p| match p.as_str() {
            "date" => &date,
            "month" => &month,
            other => panic!("partition column {other} is not in the table's schema"),
        });
    let all = schema.fields().iter().map(|f| f.as_ref()).chain(extra);
    struct_type(all)
        .expect("every column type of our tables has a Delta type")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn our_columns_map_to_delta_types_and_date_is_added_for_partitioning() {
        let tags = DataType::Map(
            Arc::new(Field::new(
                "key_value",
                DataType::Struct(
                    vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Utf8, true),
                    ]
                    .into(),
                ),
                false,
            )),
            false,
        );
        let schema = Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("metric", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("count", DataType::UInt32, true),
            Field::new("tags", tags, true),
        ]);
        let s: Value =
            serde_json::from_str(&schema_string(&schema, &["metric".into(), "date".into()]))
                .unwrap();
        let fields = s["fields"].as_array().unwrap();
        let types: Vec<(&str, &Value)> = fields
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), &f["type"]))
            .collect();
        assert_eq!(types[0], ("ts", &json!("timestamp")));
        assert_eq!(types[1], ("metric", &json!("string")));
        assert_eq!(types[2], ("value", &json!("double")));
        assert_eq!(types[3], ("count", &json!("integer")));
        assert_eq!(types[4].1["type"], "map");
        assert_eq!(types[4].1["valueContainsNull"], true);
        assert_eq!(types[5], ("date", &json!("date")));
        assert_eq!(fields.len(), 6, "metric is not added twice");
    }
}
