//! The Delta Lake log actions we write and read (Delta transaction protocol, reader version 1,
//! writer version 2: no deletion vectors, no column mapping, nothing a plain Parquet reader of
//! our files would need to know).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `protocol`: the reader and writer versions a client must support.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// 1: plain Parquet data files, partition values in the log.
    pub min_reader_version: i32,
    /// 2: no writer feature beyond invariants.
    pub min_writer_version: i32,
}

/// `metaData.format`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Format {
    /// Always `parquet`.
    pub provider: String,
    /// None.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `metaData`: the table's id, schema and partition columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// A UUID, fixed at creation.
    pub id: String,
    /// The table's name.
    #[serde(default)]
    pub name: Option<String>,
    /// What it holds.
    #[serde(default)]
    pub description: Option<String>,
    /// The data file format.
    pub format: Format,
    /// The schema as Delta's JSON (`schema.rs`).
    pub schema_string: String,
    /// The partition columns (not stored in the data files).
    pub partition_columns: Vec<String>,
    /// Table properties.
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    /// Creation time, ms.
    #[serde(default)]
    pub created_time: Option<i64>,
}

/// `add`: a data file of the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table directory, URI-encoded.
    pub path: String,
    /// The file's partition values, as strings (`date` as `YYYY-MM-DD`).
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Bytes.
    pub size: i64,
    /// When it was written, ms.
    pub modification_time: i64,
    /// False for a compaction's rewrite (same rows).
    pub data_change: bool,
    /// Column statistics as JSON (`numRecords`, `minValues`, `maxValues`, `nullCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// `remove`: a file no longer part of the table (its bytes stay until `vacuum`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    /// As in its `add`.
    pub path: String,
    /// When it was removed, ms.
    #[serde(default)]
    pub deletion_timestamp: Option<i64>,
    /// False for a compaction's rewrite.
    pub data_change: bool,
}

/// `txn`: the last version of an application's transactions, so that a commit retried after a
/// crash is recognised as done (the application id is per pipeline).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Txn {
    /// `vscope-etl/<pipeline>`.
    pub app_id: String,
    /// Increases by one per publication of the pipeline in this table.
    pub version: i64,
    /// When, ms.
    #[serde(default)]
    pub last_updated: Option<i64>,
}

/// One line of a commit file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Protocol versions.
    Protocol(Protocol),
    /// Table metadata.
    MetaData(Metadata),
    /// A file added.
    Add(Add),
    /// A file removed.
    Remove(Remove),
    /// An application transaction.
    Txn(Txn),
    /// Free-form provenance (operation, pipeline, run).
    CommitInfo(serde_json::Value),
}

impl Action {
    /// Parses one line of a commit; `None` for an action of a kind we do not use (another
    /// writer's `cdc`, `domainMetadata`, …), which this table never needs.
    pub fn parse_line(line: &str) -> Result<Option<Action>, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let known = value.as_object().is_some_and(|o| {
            o.keys().any(|k| {
                matches!(
                    k.as_str(),
                    "protocol" | "metaData" | "add" | "remove" | "txn" | "commitInfo"
                )
            })
        });
        if !known {
            return Ok(None);
        }
        serde_json::from_value(value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_in_the_protocols_json() {
        let add = Action::Add(Add {
            path: "date=2026-11-01/part-x.parquet".into(),
            partition_values: BTreeMap::from([("date".into(), Some("2026-11-01".into()))]),
            size: 10,
            modification_time: 5,
            data_change: true,
            stats: Some(r#"{"numRecords":3}"#.into()),
        });
        let line = serde_json::to_string(&add).unwrap();
        assert_eq!(
            line,
            r#"{"add":{"path":"date=2026-11-01/part-x.parquet","partitionValues":{"date":"2026-11-01"},"size":10,"modificationTime":5,"dataChange":true,"stats":"{\"numRecords\":3}"}}"#
        );
        assert_eq!(Action::parse_line(&line).unwrap(), Some(add));
        let meta = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":["date"],"configuration":{},"createdTime":1}}"#;
        assert!(matches!(
            Action::parse_line(meta).unwrap(),
            Some(Action::MetaData(m)) if m.partition_columns == ["date"]
        ));
        assert_eq!(Action::parse_line(r#"{"cdc":{"path":"x"}}"#).unwrap(), None);
        assert!(Action::parse_line("{").is_err());
    }
}
