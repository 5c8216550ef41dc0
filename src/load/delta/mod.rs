//! Delta Lake tables (`sink.table_format = "delta"`): a transaction log per table directory
//! (`<table>/_delta_log/`), written by us, read by Spark, DuckDB (`delta_scan`), polars and
//! delta-rs, so that a reader sees one atomic snapshot per commit instead of whatever files a
//! glob finds.
//!
//! Why a writer of our own rather than the `deltalake` crate: the protocol subset a batch
//! writer of Parquet files needs is small (reader version 1, writer version 2: `protocol`,
//! `metaData`, `add`, `remove`, `txn`, `commitInfo`, Parquet checkpoints), while `deltalake`
//! pulls delta_kernel and its own arrow/parquet/object_store versions: measured for
//! `delta_kernel` 0.30 alone, 296 packages and 5 min 47 s of cold release build on 2 cores, on top
//! of ours. The files are the same Parquet the `parquet` format writes; only the log is new.
//! Two readers we did not write check every table in the tests (`tests/e2e/delta.rs`).
//!
//! One commit per table per published window ([`crate::load::publish`] carries it out after the
//! window's files are in place, before the ledger): its `add`s (partition values, size, row
//! count), the `remove`s of the cut it replaces, and a `txn` (application id
//! `vscope-etl/<pipeline>`, version + 1 per publication), so that a publication completed again
//! after a crash is recognised as done and never applied twice. A window, not a run, because a
//! window is what the ledger and the journal make atomic: a run of a thousand windows that
//! stops half-way leaves every finished window readable. Commits are created with a
//! conditional put of the next log entry (`If-None-Match: *` on S3, a no-clobber rename on
//! disk): exactly one writer wins a version; the loser reads the new commits and retries unless
//! one of them removed a file it removes too.
//!
//! A removed file's bytes stay (readers of older versions still open them, and file names are
//! unique per run in this format, so no file's bytes ever change under a reader) until
//! `vscope-etl vacuum`. A checkpoint every [`checkpoint::CHECKPOINT_INTERVAL`] commits.

pub mod actions;
pub mod checkpoint;
pub mod schema;
pub mod stats;
pub mod vacuum;

use std::collections::BTreeMap;

use super::store::{Sink, StoreError};
use actions::{Action, Add, Format, Metadata, Protocol, Remove, Txn};

/// A Delta log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A log entry or checkpoint does not parse.
    #[error("the Delta log of table {table} is not readable at {path}: {message}")]
    Corrupt {
        /// The table directory.
        table: String,
        /// The entry.
        path: String,
        /// Why.
        message: String,
    },
    /// Another writer removed a file this commit removes too (a compaction and a rewrite of the
    /// same window at once): the commit is not applied.
    #[error(
        "table {table}: version {version} was committed by another writer and removed {path}, \
         which this commit replaces too; run again: the next run starts from the new version"
    )]
    Conflict {
        /// The table directory.
        table: String,
        /// The version that conflicts.
        version: i64,
        /// A file both remove.
        path: String,
    },
}

/// The state of a table at a version: what a reader of that version sees.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The table directory (relative to the sink).
    pub table: String,
    /// The version, −1 when the table has no commit yet.
    pub version: i64,
    /// Its protocol.
    pub protocol: Option<Protocol>,
    /// Its metadata.
    pub metadata: Option<Metadata>,
    /// Its files, by path.
    pub files: BTreeMap<String, Add>,
    /// The last transaction version of each application.
    pub txns: BTreeMap<String, i64>,
}

/// The key of a log entry.
fn log_key(table: &str, name: &str) -> String {
    format!("{table}/_delta_log/{name}")
}

fn commit_name(version: i64) -> String {
    format!("{version:020}.json")
}

impl Snapshot {
    /// The latest version of the table at `table` (an empty snapshot when it has no log yet):
    /// from the last checkpoint and the commits after it.
    pub async fn load(sink: &Sink, table: &str) -> Result<Snapshot, DeltaError> {
        let mut snap = Snapshot {
            table: table.to_string(),
            version: -1,
            ..Snapshot::default()
        };
        if let Some(bytes) = sink.get_opt(&log_key(table, "_last_checkpoint")).await? {
            let last: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| snap.corrupt("_last_checkpoint", e))?;
            if let Some(v) = last["version"].as_i64() {
                snap.read_checkpoint(sink, v).await?;
            }
        }
        snap.advance(sink).await?;
        Ok(snap)
    }

    fn corrupt(&self, path: &str, e: impl std::fmt::Display) -> DeltaError {
        DeltaError::Corrupt {
            table: self.table.clone(),
            path: path.to_string(),
            message: e.to_string(),
        }
    }

    async fn read_checkpoint(&mut self, sink: &Sink, version: i64) -> Result<(), DeltaError> {
        let name = format!("{version:020}.checkpoint.parquet");
        let Some(bytes) = sink.get_opt(&log_key(&self.table, &name)).await? else {
            return Err(self.corrupt(&name, "named by _last_checkpoint but missing"));
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| self.corrupt(&name, e))?;
        let batches: Vec<_> = reader
            .collect::<Result<_, _>>()
            .map_err(|e| self.corrupt(&name, e))?;
        for a in checkpoint::from_batches(&batches).map_err(|e| self.corrupt(&name, e))? {
            self.apply(a);
        }
        self.version = version;
        Ok(())
    }

    /// Applies the commits after this snapshot's version, as long as there are.
    pub async fn advance(&mut self, sink: &Sink) -> Result<(), DeltaError> {
        loop {
            let name = commit_name(self.version + 1);
            let Some(bytes) = sink.get_opt(&log_key(&self.table, &name)).await? else {
                return Ok(());
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Some(a) = Action::parse_line(line).map_err(|e| self.corrupt(&name, e))? {
                    self.apply(a);
                }
            }
            self.version += 1;
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Protocol(p) => self.protocol = Some(p),
            Action::MetaData(m) => self.metadata = Some(m),
            Action::Add(a) => {
                self.files.insert(a.path.clone(), a);
            }
            Action::Remove(r) => {
                self.files.remove(&r.path);
            }
            Action::Txn(t) => {
                self.txns.insert(t.app_id, t.version);
            }
            Action::CommitInfo(_) => {}
        }
    }

    /// The state as actions, for a checkpoint.
    fn state(&self) -> Vec<Action> {
        self.protocol
            .iter()
            .cloned()
            .map(Action::Protocol)
            .chain(self.metadata.iter().cloned().map(Action::MetaData))
            .chain(self.txns.iter().map(|(app, v)| {
                Action::Txn(Txn {
                    app_id: app.clone(),
                    version: *v,
                    last_updated: None,
                })
            }))
            .chain(self.files.values().cloned().map(Action::Add))
            .collect()
    }
}

/// The application id of a pipeline's transactions.
pub fn app_id(pipeline: &str) -> String {
    format!("vscope-etl/{pipeline}")
}

/// A table path (relative to the table directory) as a Delta `add.path`: a relative URI, so
/// every byte outside the unreserved set, `/` and `=` is percent-encoded (our Hive escapes
/// `%XX` become `%25XX`: a reader decodes the URI back to the name on disk).
pub fn uri_path(relative: &str) -> String {
    let mut out = String::with_capacity(relative.len());
    for b in relative.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path` (relative to the sink) relative to the directory of `table`, when it is a file of
/// that table: what a commit's `add` and `remove` name.
pub fn in_table<'a>(path: &'a str, table: &str) -> Option<&'a str> {
    path.strip_prefix(table)?.strip_prefix('/')
}

/// The partition values of a file from its folders (`metric=…/date=…`), unescaped.
pub fn partition_values(relative: &str) -> BTreeMap<String, Option<String>> {
    relative
        .split('/')
        .filter_map(|seg| seg.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                Some(crate::load::partition::unescape_path_value(v)),
            )
        })
        .collect()
}

/// One table's part of a publication: what [`commit_table`] records.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct TableCommit {
    /// The table directory.
    pub table: String,
    /// The transaction that makes the commit idempotent.
    pub txn: Txn,
    /// Files added (paths relative to the table directory, as on disk).
    pub adds: Vec<AddedFile>,
    /// Files removed (relative to the table directory, as on disk), when the table has them.
    pub removes: Vec<String>,
    /// False for a compaction (same rows).
    pub data_change: bool,
    /// `WRITE` or `OPTIMIZE`, for `commitInfo`.
    pub operation: String,
    /// The table's schema, for its first commit.
    pub schema_string: String,
    /// Its partition columns, for its first commit.
    pub partition_columns: Vec<String>,
}

impl TableCommit {
    /// The next commit of `pipeline` to the table of `spec` (the transaction version one past
    /// the pipeline's last one there): a run's `WRITE` (`data_change`) or a compaction's
    /// `OPTIMIZE`.
    pub async fn next(
        sink: &Sink,
        pipeline: &crate::config::Pipeline,
        spec: &crate::config::TableSpec,
        adds: Vec<AddedFile>,
        removes: Vec<String>,
        data_change: bool,
    ) -> Result<TableCommit, DeltaError> {
        let snap = Snapshot::load(sink, &spec.name).await?;
        let app = app_id(&pipeline.name);
        let partition_columns = pipeline.sink.partition_names();
        Ok(TableCommit {
            table: spec.name.clone(),
            txn: Txn {
                version: snap.txns.get(&app).copied().unwrap_or(0) + 1,
                app_id: app,
                last_updated: None,
            },
            adds,
            removes,
            data_change,
            operation: if data_change { "WRITE" } else { "OPTIMIZE" }.into(),
            schema_string: schema::schema_string(&spec.file_schema(), &partition_columns),
            partition_columns,
        })
    }
}

/// A file a commit adds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AddedFile {
    /// Relative to the table directory.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
    /// Its column statistics ([`stats::file_stats`]), when the writer gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// What [`commit_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Recorded as this version.
    Version(i64),
    /// The transaction was already in the table (a publication completed again).
    AlreadyThere,
}

/// Records `c` as the next version of its table, creating the table on its first commit; a
/// transaction already recorded is not applied again. Retries on a version another writer took
/// first, unless that commit removed a file `c` removes too ([`DeltaError::Conflict`]). Writes a
/// checkpoint every [`checkpoint::CHECKPOINT_INTERVAL`] versions.
pub async fn commit_table(sink: &Sink, c: &TableCommit) -> Result<Committed, DeltaError> {
    commit_on(sink, Snapshot::load(sink, &c.table).await?, c).await
}

/// [`commit_table`] from a snapshot read before (the latest or an older one).
async fn commit_on(
    sink: &Sink,
    mut snap: Snapshot,
    c: &TableCommit,
) -> Result<Committed, DeltaError> {
    let now = chrono::Utc::now().timestamp_millis();
    loop {
        if snap
            .txns
            .get(&c.txn.app_id)
            .is_some_and(|v| *v >= c.txn.version)
        {
            return Ok(Committed::AlreadyThere);
        }
        let mut lines: Vec<Action> = vec![Action::CommitInfo(serde_json::json!({
            "timestamp": now,
            "operation": c.operation,
            "operationParameters": {"mode": "Append"},
            "isBlindAppend": c.removes.is_empty(),
            "engineInfo": concat!("vscope-etl/", env!("CARGO_PKG_VERSION")),
            "txnId": format!("{}-{}", c.txn.app_id, c.txn.version),
        }))];
        if snap.version < 0 {
            lines.push(Action::Protocol(Protocol {
                min_reader_version: 1,
                min_writer_version: 2,
            }));
            lines.push(Action::MetaData(Metadata {
                id: new_table_id(&c.table, now),
                name: Some(c.table.rsplit('/').next().unwrap_or(&c.table).to_string()),
                description: Some("vScope metrics exported by vscope-etl".into()),
                format: Format {
                    provider: "parquet".into(),
                    options: BTreeMap::new(),
                },
                schema_string: c.schema_string.clone(),
                partition_columns: c.partition_columns.clone(),
                configuration: BTreeMap::new(),
                created_time: Some(now),
            }));
        }
        lines.push(Action::Txn(Txn {
            last_updated: Some(now),
            ..c.txn.clone()
        }));
        for r in &c.removes {
            let path = uri_path(r);
            if snap.files.contains_key(&path) {
                lines.push(Action::Remove(Remove {
                    path,
                    deletion_timestamp: Some(now),
                    data_change: c.data_change,
                }));
            }
        }
        for a in &c.adds {
            lines.push(Action::Add(Add {
                path: uri_path(&a.path),
                partition_values: partition_values(&a.path),
                size: a.size as i64,
                modification_time: now,
                data_change: c.data_change,
                // Known for the files a process wrote; a deferred commit's earlier files
                // (rows 0, no stats) go without rather than with wrong ones.
                stats: a
                    .stats
                    .clone()
                    .or_else(|| (a.rows > 0).then(|| format!(r#"{{"numRecords":{}}}"#, a.rows))),
            }));
        }
        let version = snap.version + 1;
        let mut body = Vec::new();
        for l in &lines {
            serde_json::to_writer(&mut body, l).expect("actions serialize");
            body.push(b'\n');
        }
        match sink
            .create(&log_key(&c.table, &commit_name(version)), body)
            .await?
        {
            Some(_) => {
                for a in lines {
                    snap.apply(a);
                }
                snap.version = version;
                if version > 0
                    && version % checkpoint::CHECKPOINT_INTERVAL == 0
                    && let Err(e) = write_checkpoint(sink, &snap).await
                {
                    tracing::warn!(table = %c.table, version, error = %e,
                        "could not write a Delta checkpoint; readers replay the commits");
                }
                return Ok(Committed::Version(version));
            }
            None => {
                // Another writer took the version: read what it did, and retry on top of it
                // unless it removed one of our files.
                let before = snap.files.clone();
                snap.advance(sink).await?;
                if let Some(gone) = c
                    .removes
                    .iter()
                    .map(|r| uri_path(r))
                    .find(|p| before.contains_key(p) && !snap.files.contains_key(p))
                {
                    return Err(DeltaError::Conflict {
                        table: c.table.clone(),
                        version: snap.version,
                        path: gone,
                    });
                }
            }
        }
    }
}

/// A table id: UUID-shaped, from the table and the time (unique enough for a table that is
/// created once; readers only compare it between versions).
fn new_table_id(table: &str, now: i64) -> String {
    let h = vscope_core::hash::StableHasher::new()
        .write(table.as_bytes())
        .write(&now.to_le_bytes())
        .write(&fastrand::u64(..).to_le_bytes())
        .finish();
    let l = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        0x8000 | (l >> 48 & 0x3fff),
        l & 0xffff_ffff_ffff
    )
}

/// Writes the checkpoint of `snap` and points `_last_checkpoint` at it.
async fn write_checkpoint(sink: &Sink, snap: &Snapshot) -> Result<(), String> {
    let batch = checkpoint::to_batch(&snap.state()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    {
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)
            .map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        w.close().map_err(|e| e.to_string())?;
    }
    let name = format!("{:020}.checkpoint.parquet", snap.version);
    sink.put(&log_key(&snap.table, &name), buf)
        .await
        .map_err(|e| e.to_string())?;
    let last = serde_json::json!({"version": snap.version, "size": batch.num_rows()});
    sink.put(
        &log_key(&snap.table, "_last_checkpoint"),
        last.to_string().into_bytes(),
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
