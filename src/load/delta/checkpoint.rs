//! Checkpoints: the whole state of a table at a version in one Parquet file
//! (`_delta_log/<version>.checkpoint.parquet`, named by `_last_checkpoint`), so that a reader
//! (and our writer) opens a table of a year of hourly commits from one file and at most
//! [`CHECKPOINT_INTERVAL`] commits, not from thousands of JSON files.
//!
//! The rows are the table's actions (one non-null column per row: `protocol`, `metaData`,
//! `txn`, `add`), built from the same JSON the commits hold through `arrow-json`, with the
//! column types of the protocol's checkpoint schema; removes are not kept (a checkpoint's
//! tombstones only serve other writers' vacuums, and ours reads the table's files itself).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::actions::Action;

/// A checkpoint every this many commits (Delta's default `delta.checkpointInterval`).
pub const CHECKPOINT_INTERVAL: i64 = 10;

fn string_map() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

fn strukt(fields: Vec<Field>) -> DataType {
    DataType::Struct(Fields::from(fields))
}

/// The checkpoint schema (Delta protocol, "Checkpoint Schema") for the actions we keep.
pub fn checkpoint_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let l = |n: &str| Field::new(n, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        Field::new(
            "txn",
            strukt(vec![s("appId"), l("version"), l("lastUpdated")]),
            true,
        ),
        Field::new(
            "add",
            strukt(vec![
                s("path"),
                Field::new("partitionValues", string_map(), true),
                l("size"),
                l("modificationTime"),
                Field::new("dataChange", DataType::Boolean, true),
                s("stats"),
            ]),
            true,
        ),
        Field::new(
            "metaData",
            strukt(vec![
                s("id"),
                s("name"),
                s("description"),
                Field::new(
                    "format",
                    strukt(vec![
                        s("provider"),
                        Field::new("options", string_map(), true),
                    ]),
                    true,
                ),
                s("schemaString"),
                Field::new(
                    "partitionColumns",
                    DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
                    true,
                ),
                Field::new("configuration", string_map(), true),
                l("createdTime"),
            ]),
            true,
        ),
        Field::new(
            "protocol",
            strukt(vec![
                Field::new("minReaderVersion", DataType::Int32, true),
                Field::new("minWriterVersion", DataType::Int32, true),
            ]),
            true,
        ),
    ]))
}

/// The checkpoint of `actions` (the table's state: protocol, metadata, txns, adds) as one
/// record batch.
pub fn to_batch(actions: &[Action]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = checkpoint_schema();
    let rows: Vec<serde_json::Value> = actions
        .iter()
        .filter(|a| !matches!(a, Action::Remove(_) | Action::CommitInfo(_)))
        .map(|a| serde_json::to_value(a).expect("actions serialize"))
        .collect();
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    decoder.serialize(&rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// The actions of a checkpoint's record batches (ours or another writer's: the columns we
/// read are looked up by name, others are ignored).
pub fn from_batches(batches: &[RecordBatch]) -> Result<Vec<Action>, String> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        for b in batches {
            let keep: Vec<usize> = ["txn", "add", "metaData", "protocol"]
                .iter()
                .filter_map(|n| b.schema().index_of(n).ok())
                .collect();
            let b = b.project(&keep).map_err(|e| e.to_string())?;
            w.write(&b).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    let mut actions = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(a) = Action::parse_line(line).map_err(|e| e.to_string())? {
            actions.push(a);
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::super::actions::{Add, Format, Metadata, Protocol, Txn};
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_checkpoint_batch_reads_back_as_the_same_actions() {
        let actions = vec![
            Action::Protocol(Protocol {
                min_reader_version: 1,
                min_writer_version: 2,
            }),
            Action::MetaData(Metadata {
                id: "id".into(),
                name: Some("t".into()),
                description: None,
                format: Format {
                    provider: "parquet".into(),
                    options: BTreeMap::new(),
                },
                schema_string: "{}".into(),
                partition_columns: vec!["date".into()],
                configuration: BTreeMap::new(),
                created_time: Some(7),
            }),
            Action::Txn(Txn {
                app_id: "vscope-etl/p".into(),
                version: 3,
                last_updated: Some(9),
            }),
            Action::Add(Add {
                path: "date=2026-11-01/a.parquet".into(),
                partition_values: BTreeMap::from([("date".into(), Some("2026-11-01".into()))]),
                size: 10,
                modification_time: 5,
                data_change: true,
                stats: Some(r#"{"numRecords":3}"#.into()),
            }),
        ];
        let batch = to_batch(&actions).unwrap();
        assert_eq!(batch.num_rows(), 4);
        assert_eq!(from_batches(&[batch]).unwrap(), actions);
    }
}
