//! One Parquet file of one (table, partition, window), written through an object store.
//!
//! The file becomes visible whole or not at all: small files are a single PUT, large ones a
//! multipart upload completed at the end (local disk: a staging file renamed into place), and a
//! failure aborts the upload. Encodings follow what was measured fastest and smallest
//! (`reference/performance.md`): ZSTD, delta-encoded `ts`, byte-stream-split doubles,
//! dictionary-encoded strings.

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::store::Sink;
use crate::schema::{SchemaMismatch, check_conforms};

/// Writing a Parquet file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The batch does not match the declared schema (a bug: nothing is written).
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
    /// A batch could not be assembled from the buffered rows (a bug).
    #[error("building a record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The finished file could not be moved into place.
    #[error("publishing a written file: {0}")]
    Publish(super::store::StoreError),
    /// Encoding or uploading failed.
    #[error("writing {path}: {source}")]
    Parquet {
        /// The file being written.
        path: String,
        /// The writer's error.
        source: parquet::errors::ParquetError,
    },
}

/// A file that was written and is now visible.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct WrittenFile {
    /// Key relative to the sink.
    pub path: String,
    /// Table it belongs to.
    pub table: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// What goes into every file's key-value metadata and how it is encoded.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// Pipeline name (recorded in the file).
    pub pipeline: String,
    /// ZSTD level.
    pub zstd_level: i32,
    /// Rows per row group at most.
    pub row_group_rows: usize,
}

/// Writer properties for a table schema: ZSTD, page statistics, rows sorted by the key columns,
/// DELTA_BINARY_PACKED for `ts`, BYTE_STREAM_SPLIT for doubles, dictionaries for strings.
pub fn writer_properties(
    schema: &SchemaRef,
    settings: &FileSettings,
    table: &str,
    window: (i64, i64),
) -> WriterProperties {
    let level = ZstdLevel::try_new(settings.zstd_level).unwrap_or_default();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(settings.row_group_rows))
        .set_created_by(concat!("vscope-etl ", env!("CARGO_PKG_VERSION")).to_string())
        .set_key_value_metadata(Some(vec![
            KeyValue::new(
                "vscope_etl.version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            KeyValue::new("vscope_etl.pipeline".to_string(), settings.pipeline.clone()),
            KeyValue::new("vscope_etl.table".to_string(), table.to_string()),
            KeyValue::new(
                "vscope_etl.window".to_string(),
                format!(
                    "{}/{}",
                    crate::semantics::time::format_rfc3339(window.0),
                    crate::semantics::time::format_rfc3339(window.1)
                ),
            ),
        ]));
    // Rows are sorted by metric, then the label columns, then ts (design §3).
    let mut sorting = Vec::new();
    let idx = |name: &str| schema.index_of(name).ok().map(|i| i as i32);
    let labels: Vec<i32> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data_type() == &DataType::Utf8)
        .map(|(i, _)| i as i32)
        .collect();
    for i in labels.into_iter().chain(idx("ts")) {
        sorting.push(SortingColumn {
            column_idx: i,
            descending: false,
            nulls_first: true,
        });
    }
    b = b.set_sorting_columns(Some(sorting));
    for f in schema.fields() {
        let path = ColumnPath::from(f.name().as_str());
        match f.data_type() {
            DataType::Timestamp(..) | DataType::Int64 => {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
            DataType::Float64 => {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
            }
            _ => {}
        }
    }
    b.build()
}

/// object_store's `BufWriter`, remembering whether its shutdown (the final PUT, or the multipart
/// completion) began: `BufWriter::abort` panics after that ("Already shut down"), and a failed
/// shutdown has already aborted its multipart upload or never created the object, so there is
/// nothing left to abort. Found by the disk-full and multipart fault tests (`tests/e2e/faults.rs`).
struct Upload {
    inner: BufWriter,
    shut_down: bool,
}

impl Upload {
    async fn abort(&mut self) -> object_store::Result<()> {
        if self.shut_down {
            Ok(())
        } else {
            self.inner.abort().await
        }
    }
}

impl tokio::io::AsyncWrite for Upload {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.shut_down = true;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An open Parquet file being written.
pub struct PartWriter {
    relative: String,
    /// Where the bytes go until `finish` publishes them (local sinks), else `None`.
    staging: Option<String>,
    sink: Sink,
    table: String,
    declared: SchemaRef,
    writer: AsyncArrowWriter<Upload>,
    rows: u64,
}

impl PartWriter {
    /// Starts a file at `relative` (below the sink) for a table with the `declared` schema.
    pub fn create(
        sink: &Sink,
        relative: String,
        table: &str,
        declared: SchemaRef,
        props: WriterProperties,
    ) -> Result<PartWriter, WriteError> {
        let staging = sink.staging_key(&relative);
        let target = staging.as_deref().unwrap_or(&relative);
        let out = Upload {
            inner: BufWriter::with_capacity(sink.store.clone(), sink.key(target), sink.part_size),
            shut_down: false,
        };
        let writer =
            AsyncArrowWriter::try_new(out, declared.clone(), Some(props)).map_err(|source| {
                WriteError::Parquet {
                    path: relative.clone(),
                    source,
                }
            })?;
        Ok(PartWriter {
            relative,
            staging,
            sink: sink.clone(),
            table: table.to_string(),
            declared,
            writer,
            rows: 0,
        })
    }

    /// Appends a batch; it must match the declared schema exactly.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        check_conforms(&self.table, &self.declared, &batch.schema())?;
        self.writer
            .write(batch)
            .await
            .map_err(|source| WriteError::Parquet {
                path: self.relative.clone(),
                source,
            })?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the footer and completes the upload: the file is visible when this returns Ok.
    /// On error the upload is aborted, so nothing partial stays behind.
    pub async fn finish(mut self) -> Result<WrittenFile, WriteError> {
        match self.writer.finish().await {
            Ok(_) => {
                if let Some(staging) = &self.staging
                    && let Err(e) = self.sink.publish(staging, &self.relative).await
                {
                    let _ = self.sink.delete_if_exists(staging).await;
                    return Err(WriteError::Publish(e));
                }
                Ok(WrittenFile {
                    bytes: self.writer.bytes_written() as u64,
                    path: self.relative,
                    table: self.table,
                    rows: self.rows,
                })
            }
            Err(source) => {
                let mut inner = self.writer.into_inner();
                if let Err(e) = inner.abort().await {
                    tracing::warn!(path = %self.relative, error = %e, "aborting a failed upload failed too");
                }
                Err(WriteError::Parquet {
                    path: self.relative,
                    source,
                })
            }
        }
    }

    /// Abandons the file: the upload is aborted and no object appears.
    pub async fn abort(self) {
        let mut inner = self.writer.into_inner();
        if let Err(e) = inner.abort().await {
            tracing::warn!(path = %self.relative, error = %e, "aborting an upload failed");
        }
    }
}
