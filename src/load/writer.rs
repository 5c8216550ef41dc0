//! One Parquet file of one (table, partition, window), written through an object store.
//!
//! The file becomes visible whole or not at all: small files are a single PUT, large ones a
//! multipart upload completed at the end (local disk: a staging file renamed into place), and a
//! failure aborts the upload. Encodings follow what was measured fastest and smallest
//! (`reference/performance.md`): ZSTD, delta-encoded `ts`, byte-stream-split doubles,
//! dictionary-encoded strings. Columns are encoded on several threads (see [`PartWriter`]);
//! the series-constant string columns are encoded from their runs ([`super::runs`]).

use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::buffered::BufWriter;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use tokio::io::AsyncWriteExt;

use super::runs::{LeafKind, RunChunk, RunColumnWriter, is_run_input};
use super::store::Sink;
use crate::config::PageCompression;
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
    /// The window's publication failed and could not be completed: every file of the window was
    /// removed (its ledger entry too), so the window is not there and the next run fetches it.
    #[error(
        "publishing the window failed ({0}); its files were removed and the next run fetches it again"
    )]
    Unpublished(String),
    /// `compact` could not read or merge a partition's files.
    #[error("compacting: {0}")]
    Compact(String),
    /// A shard's window could not be handed to the other shards (its mark not written, or the
    /// pipeline lease for that step not obtained): the shard's staged files were removed.
    #[error(
        "{0}; this shard's files of the window were removed and its next run fetches them again"
    )]
    NotStaged(String),
    /// A file an earlier run wrote for this window, and this run did not write again, could not
    /// be listed or removed (left, it would double or resurrect rows: the window is not
    /// committed, so the next run tries again).
    #[error("removing a file an earlier run left for this window: {0}")]
    Cleanup(super::store::StoreError),
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
    /// Its column statistics as a Delta `add` carries them ([`crate::load::delta::stats`]),
    /// from the footer the writer computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// What goes into every file's key-value metadata and how it is encoded.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// Pipeline name (recorded in the file).
    pub pipeline: String,
    /// The data pages' codec.
    pub compression: crate::config::PageCompression,
    /// Rows per row group at most.
    pub row_group_rows: usize,
    /// Uncompressed bytes of a data page of a double column at most
    /// ([`crate::config::SinkSpec::value_page_bytes`], by the partitioning).
    pub value_page_bytes: usize,
}

impl FileSettings {
    /// The settings a pipeline's sink asks for (metric files, inventory snapshots and
    /// compaction alike).
    pub fn of(pipeline: &crate::config::Pipeline) -> Self {
        FileSettings {
            pipeline: pipeline.name.clone(),
            compression: pipeline.sink.compression,
            row_group_rows: pipeline.sink.row_group_rows,
            value_page_bytes: pipeline.sink.value_page_bytes(),
        }
    }
}

/// Writer properties for a table schema: the configured codec (zstd by default), page statistics, rows sorted by the key columns,
/// DELTA_BINARY_PACKED for `ts`, PLAIN doubles, dictionaries for strings.
pub fn writer_properties(
    schema: &SchemaRef,
    settings: &FileSettings,
    table: &str,
    window: (i64, i64),
) -> WriterProperties {
    let compression = match settings.compression {
        PageCompression::Zstd(level) => {
            Compression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default())
        }
        PageCompression::Snappy => Compression::SNAPPY,
        PageCompression::Lz4 => Compression::LZ4_RAW,
    };
    let mut b = WriterProperties::builder()
        .set_compression(compression)
        // Pages cut by size only (the 1 MiB default), not every 20,000 rows: DuckDB pays per
        // page, and a month-wide metric query over the 500-VM month ran 16-18 % faster with
        // them; with zstd level 2 the files are smaller too (916 against 952 MB; issue 21,
        // docs/performance.md "For the reader").
        .set_data_page_row_count_limit(usize::MAX)
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
            // PLAIN, not BYTE_STREAM_SPLIT: on both the simulator's month and the bench
            // answers, zstd finds more in the doubles' plain bytes (3.1-3.3 bytes a value against
            // 4.8-5.4 split: the values are short decimals whose mantissas repeat), and fewer
            // bytes are what a reader scanning a metric's values waits for (issue 21,
            // docs/performance.md "For the reader").
            DataType::Float64 => {
                b = b
                    .set_column_data_page_size_limit(path.clone(), settings.value_page_bytes)
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::PLAIN);
            }
            // No reader prunes on map entries, and min/max of every row's key and value is
            // a string comparison per row per leaf: the `tags` leaves go without statistics.
            DataType::Map(..) => {
                for leaf in ["key", "value"] {
                    let path = ColumnPath::new(vec![
                        f.name().to_string(),
                        "key_value".to_string(),
                        leaf.to_string(),
                    ]);
                    b = b.set_column_statistics_enabled(path, EnabledStatistics::None);
                }
            }
            _ => {}
        }
    }
    b.build()
}

/// The bytes the Parquet encoder produced and the uploader has not taken yet.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

/// A complete file, waiting under its staging key (if it has one) to be made visible.
#[derive(Debug)]
pub struct StagedFile {
    /// Where it is now; `None` when it was written straight to its key (already visible).
    pub staging: Option<String>,
    /// The file, under the key it is published at.
    pub file: WrittenFile,
}

impl StagedFile {
    /// Moves the file to its key (a rename on local disk, a server-side copy on S3): it is
    /// visible when this returns Ok. On error the staged copy is removed.
    pub async fn publish(self, sink: &Sink) -> Result<WrittenFile, WriteError> {
        if let Some(staging) = &self.staging
            && let Err(e) = sink.publish(staging, &self.file.path).await
        {
            let _ = sink.delete_if_exists(staging).await;
            return Err(WriteError::Publish(e));
        }
        Ok(self.file)
    }

    /// Removes the staged copy (the window it belongs to was abandoned).
    pub async fn discard(self, sink: &Sink) {
        if let Some(staging) = &self.staging
            && let Err(e) = sink.delete_if_exists(staging).await
        {
            tracing::warn!(path = %staging, error = %e, "removing an abandoned staged file failed");
        }
    }
}

/// How one leaf column of a row group is encoded.
#[expect(
    clippy::large_enum_variant,
    reason = "one per leaf column of a row group, a handful: size does not matter"
)]
enum LeafWriter {
    /// Row by row, by the Arrow writer.
    Arrow(ArrowColumnWriter),
    /// From runs of identical rows: the dictionary-encoded string columns.
    Runs(RunColumnWriter),
}

/// A closed leaf column chunk, to be appended to its row group.
enum LeafChunk {
    Arrow(ArrowColumnChunk),
    Runs(RunChunk),
}

/// One leaf's share of a batch.
enum EncodeJob<'a> {
    Arrow(&'a mut ArrowColumnWriter, ArrowLeafColumn),
    /// The whole column (a map feeds both its leaves).
    Runs(&'a mut RunColumnWriter, &'a dyn Array),
}

/// An open Parquet file being written.
///
/// Batches go straight to one writer per leaf column: a [`RunColumnWriter`] for the
/// dictionary-encoded string columns the batch builders produce (`metric`, labels, `tags`),
/// an [`ArrowColumnWriter`] for the others. The leaves of a batch are encoded on up to
/// [`encode_threads`] threads at once (each column by one thread, in order, so the bytes do
/// not depend on the scheduling). A row group is closed every
/// `row_group_rows` rows, its column chunks appended in schema order, and its bytes handed to
/// the object store upload, so memory holds one row group's encoded pages, not the file.
pub struct PartWriter {
    relative: String,
    /// Where the bytes go until `finish` publishes them (local sinks), else `None`.
    staging: Option<String>,
    sink: Sink,
    table: String,
    declared: SchemaRef,
    out: BufWriter,
    /// Whether the upload's shutdown (the final PUT, or the multipart completion) began:
    /// `BufWriter::abort` panics after that ("Already shut down"), and a failed shutdown has
    /// already aborted its multipart upload or never created the object, so there is nothing
    /// left to abort. Found by the disk-full and multipart fault tests (`tests/e2e/faults.rs`).
    shut_down: bool,
    file: SerializedFileWriter<SharedBuf>,
    factory: ArrowRowGroupWriterFactory,
    buf: SharedBuf,
    /// The leaf columns of each top-level column, in schema order.
    field_leaves: Vec<Range<usize>>,
    /// Column writers of the row group in progress (created on its first row), one per leaf.
    columns: Option<Vec<LeafWriter>>,
    group_rows: usize,
    row_group_rows: usize,
    row_groups: usize,
    /// The declared `metric` column, where row groups are aligned (none in inventory tables).
    metric_column: Option<usize>,
    /// The metric of the last row written, to see a change at the next batch's first row.
    last_metric: Option<String>,
    rows: u64,
    bytes: u64,
}

/// Parts of one file uploaded at once. object_store's default is 8: on a link slower than the
/// encoder, a file would hold up to 8 parts (80 MiB at the default `sink.s3.part_size`) beside
/// the one filling, for each file open; 2 keep an upload going while the next part fills, and
/// bound a file to three parts (issue 18, docs/operations.md "Sizing a pod").
const PARTS_IN_FLIGHT: usize = 2;

/// A row group that holds at least `row_group_rows / METRIC_ALIGNED_SHARE` rows is closed where
/// the metric changes, so that most row groups hold one metric and a reader filtering on
/// `metric` (every metric-wide query: top VMs by CPU, one metric over a day) skips the others by
/// their statistics. Rows are sorted by metric, so this costs a row group per metric at most;
/// below the share, small metrics (a few hosts' NICs) share a row group rather than each make a
/// tiny one, which readers pay for in per-row-group overhead. Measured with DuckDB on a month
/// of 50 VMs (benches/query.sh, docs/performance.md "For the reader"): the top-10 query read
/// 7.3 % of the month's bytes instead of 16 %, the single-VM query 30 % instead of 72 %.
const METRIC_ALIGNED_SHARE: usize = 8;

/// The one value of a one-row slice of the `metric` column (plain or dictionary-encoded).
fn metric_text(one: &dyn Array) -> Result<String, arrow::error::ArrowError> {
    let text = arrow::compute::cast(one, &DataType::Utf8)?;
    Ok(text.as_string::<i32>().value(0).to_string())
}

/// Threads that encode the columns of one batch: the machine's parallelism, at most 8.
pub fn encode_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
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
        PartWriter::create_at(sink, relative, staging, table, declared, props)
    }

    /// Like [`PartWriter::create`], but the file is always written under a staging key, on S3
    /// too, so that it can be completed now ([`PartWriter::finish_staged`]) and made visible
    /// later ([`StagedFile::publish`]): the parts of a split answer are completed one by one,
    /// freeing their memory, and published with the rest of their window.
    pub fn create_staged(
        sink: &Sink,
        relative: String,
        table: &str,
        declared: SchemaRef,
        props: WriterProperties,
    ) -> Result<PartWriter, WriteError> {
        let staging = Some(sink.staging_key_always(&relative));
        PartWriter::create_at(sink, relative, staging, table, declared, props)
    }

    fn create_at(
        sink: &Sink,
        relative: String,
        staging: Option<String>,
        table: &str,
        declared: SchemaRef,
        props: WriterProperties,
    ) -> Result<PartWriter, WriteError> {
        let target = staging.as_deref().unwrap_or(&relative);
        let out = BufWriter::with_capacity(sink.store.clone(), sink.key(target), sink.part_size)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        let row_group_rows = props.max_row_group_row_count().unwrap_or(1 << 20).max(1);
        let buf = SharedBuf::default();
        let parquet_err = |source| WriteError::Parquet {
            path: relative.clone(),
            source,
        };
        // ArrowWriter embeds the declared Arrow schema and the properties; then its lower-level
        // parts take over so columns can be encoded in parallel.
        let (file, factory) = ArrowWriter::try_new(buf.clone(), declared.clone(), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(parquet_err)?;
        let schema = file.schema_descr();
        let mut field_leaves: Vec<Option<Range<usize>>> = vec![None; declared.fields().len()];
        for leaf in 0..schema.num_columns() {
            if let Some(range) = field_leaves.get_mut(schema.get_column_root_idx(leaf)) {
                let start = range.as_ref().map_or(leaf, |r| r.start);
                *range = Some(start..leaf + 1);
            }
        }
        let field_leaves = field_leaves
            .into_iter()
            .map(|r| r.unwrap_or(0..0))
            .collect();
        let metric_column = declared.index_of("metric").ok();
        Ok(PartWriter {
            relative,
            staging,
            sink: sink.clone(),
            table: table.to_string(),
            declared,
            out,
            shut_down: false,
            file,
            factory,
            buf,
            field_leaves,
            columns: None,
            group_rows: 0,
            row_group_rows,
            row_groups: 0,
            metric_column,
            last_metric: None,
            rows: 0,
            bytes: 0,
        })
    }

    fn parquet_err(&self, source: ParquetError) -> WriteError {
        WriteError::Parquet {
            path: self.relative.clone(),
            source,
        }
    }

    /// Appends a batch; its logical schema (dictionaries read as their values) must match the
    /// declared schema exactly.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        check_conforms(
            &self.table,
            &self.declared,
            &crate::transform::logical_schema(&batch.schema()),
        )?;
        let mut metric_starts = self.metric_starts(batch)?.into_iter().peekable();
        let mut offset = 0;
        while offset < batch.num_rows() {
            if metric_starts.next_if_eq(&offset).is_some()
                && self.group_rows >= self.row_group_rows / METRIC_ALIGNED_SHARE
            {
                self.close_row_group().await?;
            }
            let next_metric = metric_starts.peek().copied().unwrap_or(batch.num_rows());
            let n = (self.row_group_rows - self.group_rows).min(next_metric - offset);
            self.encode(&batch.slice(offset, n))?;
            offset += n;
            self.group_rows += n;
            if self.group_rows >= self.row_group_rows {
                self.close_row_group().await?;
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// The rows of `batch` where another metric begins than on the row before (the previous
    /// batch's last row for the first): where [`PartWriter::write`] may start a row group.
    /// Empty for a table without a `metric` column (the inventory tables).
    fn metric_starts(&mut self, batch: &RecordBatch) -> Result<Vec<usize>, WriteError> {
        let Some(column) = self.metric_column.map(|i| batch.column(i)) else {
            return Ok(Vec::new());
        };
        if column.is_empty() {
            return Ok(Vec::new());
        }
        let arrow_err = |e: arrow::error::ArrowError| self.parquet_err(e.into());
        // The batch builders give the metric as a dictionary: a change of key is where a run
        // may start (a dictionary with a value twice would cut a row group early, never miss
        // a change), found without reading a string per row.
        let keys =
            (column.as_any_dictionary_opt()).and_then(|d| d.keys().as_primitive_opt::<Int32Type>());
        let mut starts: Vec<usize> = match keys {
            Some(keys) => {
                let keys = keys.values();
                (1..keys.len())
                    .filter(|&i| keys[i] != keys[i - 1])
                    .collect()
            }
            None => {
                let runs =
                    arrow::compute::partition(std::slice::from_ref(column)).map_err(arrow_err)?;
                runs.ranges().iter().map(|r| r.start).skip(1).collect()
            }
        };
        let first = metric_text(&column.slice(0, 1)).map_err(arrow_err)?;
        if self.last_metric.as_ref().is_some_and(|last| *last != first) {
            starts.insert(0, 0);
        }
        self.last_metric =
            Some(metric_text(&column.slice(column.len() - 1, 1)).map_err(arrow_err)?);
        Ok(starts)
    }

    /// The writers of a new row group: runs for the leaves of the dictionary-encoded string
    /// columns of `batch` (its first batch), the Arrow writer for the others.
    fn create_column_writers(&self, batch: &RecordBatch) -> Result<Vec<LeafWriter>, ParquetError> {
        let mut writers: Vec<LeafWriter> = self
            .factory
            .create_column_writers(self.row_groups)?
            .into_iter()
            .map(LeafWriter::Arrow)
            .collect();
        let schema = self.file.schema_descr();
        let props = self.file.properties();
        for (field, col, leaves) in columns_and_leaves(&self.declared, batch, &self.field_leaves) {
            let kinds: &[LeafKind] = match field.data_type() {
                DataType::Utf8 => &[LeafKind::Column],
                DataType::Map(..) => &[LeafKind::MapKey, LeafKind::MapValue],
                _ => continue,
            };
            if leaves.len() != kinds.len() || !kinds.iter().all(|&k| is_run_input(col, k)) {
                continue;
            }
            let mut runs = Vec::new();
            for (leaf, &kind) in leaves.clone().zip(kinds) {
                runs.extend(RunColumnWriter::try_new(schema.column(leaf), props, kind)?);
            }
            // All the leaves of a column or none: the Arrow writer takes a column whole.
            if runs.len() == kinds.len() {
                for (leaf, w) in leaves.clone().zip(runs) {
                    writers[leaf] = LeafWriter::Runs(w);
                }
            }
        }
        Ok(writers)
    }

    /// Encodes `batch` into the row group in progress, columns spread over threads.
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        if self.columns.is_none() {
            let writers = self
                .create_column_writers(batch)
                .map_err(|e| self.parquet_err(e))?;
            self.columns = Some(writers);
        }
        let writers = self.columns.as_mut().expect("created above");
        let mut writers = writers.iter_mut();
        let mut jobs = Vec::new();
        for (field, col, leaves) in columns_and_leaves(&self.declared, batch, &self.field_leaves) {
            let column: Vec<&mut LeafWriter> = writers.by_ref().take(leaves.len()).collect();
            // The Arrow writer's leaves of this column, one per leaf, when it takes any.
            let mut arrow_leaves = Vec::new().into_iter();
            if column.iter().any(|w| matches!(w, LeafWriter::Arrow(_))) {
                arrow_leaves = compute_leaves(field, col)
                    .map_err(|e| WriteError::Parquet {
                        path: self.relative.clone(),
                        source: e,
                    })?
                    .into_iter();
            }
            for w in column {
                let leaf = arrow_leaves.next();
                match (w, leaf) {
                    (LeafWriter::Runs(w), _) => jobs.push(EncodeJob::Runs(w, col.as_ref())),
                    (LeafWriter::Arrow(w), Some(leaf)) => jobs.push(EncodeJob::Arrow(w, leaf)),
                    (LeafWriter::Arrow(_), None) => {
                        return Err(WriteError::Parquet {
                            path: self.relative.clone(),
                            source: ParquetError::General(format!(
                                "column {}: fewer leaves than the file schema has",
                                field.name()
                            )),
                        });
                    }
                }
            }
        }
        let r = run_parallel(jobs, |job| match job {
            EncodeJob::Arrow(w, leaf) => w.write(&leaf),
            EncodeJob::Runs(w, col) => w.write(col),
        });
        r.map_err(|e| WriteError::Parquet {
            path: self.relative.clone(),
            source: e,
        })
    }

    /// Closes the row group in progress (if any) and uploads its bytes.
    async fn close_row_group(&mut self) -> Result<(), WriteError> {
        let Some(writers) = self.columns.take() else {
            return Ok(());
        };
        let chunks = close_parallel(writers).map_err(|e| self.parquet_err(e))?;
        let appended = (|| {
            let mut rg = self.file.next_row_group()?;
            for chunk in chunks {
                match chunk {
                    LeafChunk::Arrow(chunk) => chunk.append_to_row_group(&mut rg)?,
                    LeafChunk::Runs(chunk) => rg.append_column(&chunk.data, chunk.close)?,
                }
            }
            rg.close()?;
            Ok::<_, ParquetError>(())
        })();
        appended.map_err(|e| self.parquet_err(e))?;
        self.row_groups += 1;
        self.group_rows = 0;
        self.upload().await
    }

    /// Hands the encoded bytes to the object store upload.
    async fn upload(&mut self) -> Result<(), WriteError> {
        let bytes = self.buf.take();
        if bytes.is_empty() {
            return Ok(());
        }
        self.bytes += bytes.len() as u64;
        self.out
            .put(Bytes::from(bytes))
            .await
            .map_err(|e| self.parquet_err(ParquetError::External(Box::new(e))))
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the footer and completes the upload: the file is visible when this returns Ok.
    /// On error the upload is aborted, so nothing partial stays behind.
    pub async fn finish(self) -> Result<WrittenFile, WriteError> {
        let sink = self.sink.clone();
        self.finish_staged().await?.publish(&sink).await
    }

    /// Writes the footer and completes the upload, under the staging key if the file has one
    /// (then it is not visible until [`StagedFile::publish`]). On error the upload is aborted.
    pub async fn finish_staged(mut self) -> Result<StagedFile, WriteError> {
        match self.finish_inner().await {
            Ok(stats) => Ok(StagedFile {
                staging: self.staging,
                file: WrittenFile {
                    bytes: self.bytes,
                    path: self.relative,
                    table: self.table,
                    rows: self.rows,
                    stats,
                },
            }),
            Err(e) => {
                if !self.shut_down
                    && let Err(abort) = self.out.abort().await
                {
                    tracing::warn!(path = %self.relative, error = %abort, "aborting a failed upload failed too");
                }
                Err(e)
            }
        }
    }

    async fn finish_inner(&mut self) -> Result<Option<String>, WriteError> {
        self.close_row_group().await?;
        let meta = self.file.finish().map_err(|e| self.parquet_err(e))?;
        let timestamps: Vec<&str> = self
            .declared
            .fields()
            .iter()
            .filter(|f| matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..)))
            .map(|f| f.name().as_str())
            .collect();
        let stats = crate::load::delta::stats::file_stats(&meta, &timestamps);
        self.upload().await?;
        let done = async {
            self.out.flush().await?;
            self.shut_down = true;
            self.out.shutdown().await
        };
        done.await
            .map(|()| Some(stats))
            .map_err(|e| self.parquet_err(ParquetError::External(Box::new(e))))
    }

    /// Abandons the file: the upload is aborted and no object appears.
    pub async fn abort(mut self) {
        if self.shut_down {
            return;
        }
        if let Err(e) = self.out.abort().await {
            tracing::warn!(path = %self.relative, error = %e, "aborting an upload failed");
        }
    }
}

/// Each column of `batch` with its declared field and the range of its leaf columns.
fn columns_and_leaves<'a>(
    declared: &'a SchemaRef,
    batch: &'a RecordBatch,
    field_leaves: &'a [Range<usize>],
) -> impl Iterator<
    Item = (
        &'a arrow::datatypes::FieldRef,
        &'a arrow::array::ArrayRef,
        &'a Range<usize>,
    ),
> {
    declared
        .fields()
        .iter()
        .zip(batch.columns())
        .zip(field_leaves)
        .map(|((field, col), leaves)| (field, col, leaves))
}

/// Runs `f` on every job, on up to [`encode_threads`] threads (the caller's included), each
/// thread taking the next job when it is free; the first error is returned.
fn run_parallel<J: Send>(
    jobs: Vec<J>,
    f: impl Fn(J) -> Result<(), ParquetError> + Sync,
) -> Result<(), ParquetError> {
    crate::cpu::off_async(|| run_jobs(jobs, f))
}

/// [`run_parallel`]'s body, on the calling thread and its helpers.
fn run_jobs<J: Send>(
    jobs: Vec<J>,
    f: impl Fn(J) -> Result<(), ParquetError> + Sync,
) -> Result<(), ParquetError> {
    let threads = encode_threads().min(jobs.len());
    if threads <= 1 {
        return jobs.into_iter().try_for_each(f);
    }
    let queue = Mutex::new(jobs.into_iter());
    let work = || -> Result<(), ParquetError> {
        loop {
            let job = queue.lock().expect("not poisoned").next();
            match job {
                Some(j) => f(j)?,
                None => return Ok(()),
            }
        }
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut result = work();
        for h in helpers {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            result = result.and(r);
        }
        result
    })
}

/// Closes the column writers of a row group (flushing and compressing their last pages) in
/// parallel; the chunks come back in column order.
fn close_parallel(writers: Vec<LeafWriter>) -> Result<Vec<LeafChunk>, ParquetError> {
    let slots: Vec<Mutex<Option<LeafChunk>>> = writers.iter().map(|_| Mutex::new(None)).collect();
    let jobs: Vec<(LeafWriter, &Mutex<Option<LeafChunk>>)> =
        writers.into_iter().zip(&slots).collect();
    run_parallel(jobs, |(w, slot)| {
        let chunk = match w {
            LeafWriter::Arrow(w) => LeafChunk::Arrow(w.close()?),
            LeafWriter::Runs(w) => LeafChunk::Runs(w.close()?),
        };
        *slot.lock().expect("not poisoned") = Some(chunk);
        Ok(())
    })?;
    Ok(slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .expect("not poisoned")
                .expect("every writer closed")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Component;
    use crate::extract::SeriesData;
    use crate::schema::raw_schema;
    use crate::transform::RawBatchBuilder;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::collections::BTreeMap;

    fn series(i: usize, n: usize) -> SeriesData {
        let mut tags = BTreeMap::new();
        tags.insert("datacenter".to_string(), format!("dc{}", i % 3));
        if !i.is_multiple_of(4) {
            tags.insert("vm".to_string(), format!("vm-{i:03}"));
        }
        tags.insert("env".to_string(), "prod".to_string());
        SeriesData {
            metric: format!("vscope.vm.m{}", i / 5),
            tags,
            ts: (0..n as i64).map(|t| 1000 * t).collect(),
            values: (0..n)
                .map(|t| {
                    if t % 7 != 0 {
                        i as f64 + t as f64 / 8.0
                    } else {
                        f64::NAN
                    }
                })
                .collect(),
        }
    }

    /// A `PartWriter` of a VM metrics file `name` in `dir`, with row groups of 1,000 rows.
    fn small_writer(dir: &std::path::Path, name: &str) -> PartWriter {
        vm_writer(dir, name, PageCompression::Zstd(1), 1000)
    }

    /// A `vm_metrics` writer of `dir/name` with the production properties for `compression`
    /// and `row_group_rows` (value pages of date partitions).
    fn vm_writer(
        dir: &std::path::Path,
        name: &str,
        compression: PageCompression,
        row_group_rows: usize,
    ) -> PartWriter {
        let value_pages = crate::config::VALUE_PAGE_BYTES;
        vm_writer_with_pages(dir, name, compression, row_group_rows, value_pages)
    }

    /// [`vm_writer`] with value pages of `value_page_bytes`.
    fn vm_writer_with_pages(
        dir: &std::path::Path,
        name: &str,
        compression: PageCompression,
        row_group_rows: usize,
        value_page_bytes: usize,
    ) -> PartWriter {
        let sink = Sink::open(dir.to_str().unwrap()).unwrap();
        let schema = raw_schema(Component::Vm);
        let settings = FileSettings {
            pipeline: "t".into(),
            compression,
            row_group_rows,
            value_page_bytes,
        };
        let props = writer_properties(&schema, &settings, "vm_metrics", (0, 1));
        PartWriter::create(&sink, name.into(), "vm_metrics", schema, props).unwrap()
    }

    /// Writes 10 series through the builder and `PartWriter` with small row groups and
    /// returns the file's bytes.
    async fn write_file(dir: &std::path::Path, name: &str) -> (Vec<u8>, WrittenFile) {
        write_file_with(dir, name, PageCompression::Zstd(1)).await
    }

    /// [`write_file`] with pages compressed by `compression`.
    async fn write_file_with(
        dir: &std::path::Path,
        name: &str,
        compression: PageCompression,
    ) -> (Vec<u8>, WrittenFile) {
        let mut w = vm_writer(dir, name, compression, 1000);
        let mut b = RawBatchBuilder::new(Component::Vm);
        for i in 0..10 {
            let s = series(i, 450);
            b.append(&s, 0..s.ts.len());
            if b.len() >= 700 {
                w.write(&b.finish().unwrap()).await.unwrap();
            }
        }
        w.write(&b.finish().unwrap()).await.unwrap();
        let f = w.finish().await.unwrap();
        (std::fs::read(dir.join(name)).unwrap(), f)
    }

    /// `sink.compression = "snappy"` or `"lz4"`: every column chunk has that codec (LZ4_RAW for
    /// lz4), the rows those of the zstd file, the file larger.
    #[tokio::test]
    async fn snappy_and_lz4_pages_hold_the_same_rows_as_zstd_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (zstd, _) = write_file(dir.path(), "z.parquet").await;
        let read = |bytes: Vec<u8>| {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
            let codecs: std::collections::BTreeSet<String> = (reader.metadata().row_groups())
                .iter()
                .flat_map(|g| g.columns().iter().map(|c| format!("{:?}", c.compression())))
                .collect();
            let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
            (codecs, batches)
        };
        let (codecs, zstd_rows) = read(zstd.clone());
        assert!(codecs.iter().all(|c| c.starts_with("ZSTD")), "{codecs:?}");
        for (codec, name) in [
            (PageCompression::Snappy, "SNAPPY"),
            (PageCompression::Lz4, "LZ4_RAW"),
        ] {
            let (bytes, f) = write_file_with(dir.path(), name, codec).await;
            assert_eq!(f.rows, 4500);
            assert!(
                bytes.len() > zstd.len(),
                "{name}: {} vs {}",
                bytes.len(),
                zstd.len()
            );
            let (codecs, rows) = read(bytes);
            assert_eq!(codecs, [name.to_string()].into());
            assert_eq!(rows, zstd_rows, "{name}");
        }
    }

    #[tokio::test]
    async fn parallel_encoded_file_reads_back_exactly_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, f) = write_file(dir.path(), "a.parquet").await;
        let (again, _) = write_file(dir.path(), "b.parquet").await;
        assert_eq!(bytes, again, "same input, same bytes");
        assert_eq!(f.rows, 4500);
        assert_eq!(f.bytes, bytes.len() as u64);

        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        // Two metrics of 2,250 rows: 1,000, 1,000, then 250 closed where m1 begins, and again.
        let group_rows: Vec<i64> = (reader.metadata().row_groups().iter())
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(group_rows, [1000, 1000, 250, 1000, 1000, 250]);
        assert_eq!(reader.schema().fields(), raw_schema(Component::Vm).fields());
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let mut row = 0;
        for batch in &batches {
            let ts = batch.column(0).as_primitive::<TimestampMillisecondType>();
            let metric = batch.column(1).as_string::<i32>();
            let vm = batch.column(3).as_string::<i32>();
            let value = batch.column(4).as_primitive::<Float64Type>();
            let tags = batch.column(5).as_map();
            for r in 0..batch.num_rows() {
                let (i, t) = (row / 450, row % 450);
                let s = series(i, 450);
                assert_eq!(ts.value(r), s.ts[t]);
                assert_eq!(metric.value(r), s.metric);
                assert_eq!(vm.is_null(r), i % 4 == 0);
                if !vm.is_null(r) {
                    assert_eq!(vm.value(r), s.tags["vm"]);
                }
                assert_eq!(value.is_null(r), s.values[t].is_nan());
                if let Some(v) = crate::extract::value_of(s.values[t]) {
                    assert_eq!(value.value(r), v);
                }
                let entries = tags.value(r);
                assert_eq!(entries.column(0).as_string::<i32>().value(0), "env");
                assert_eq!(entries.column(1).as_string::<i32>().value(0), "prod");
                row += 1;
            }
        }
        assert_eq!(row, 4500);
    }

    /// Row groups start where the metric changes once they hold an eighth of
    /// `row_group_rows`; a smaller metric shares its row group with the next, whether the
    /// change falls inside a batch or between two.
    #[tokio::test]
    async fn row_groups_start_at_a_metric_change_unless_small() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = small_writer(dir.path(), "f.parquet");
        // (metric, rows, write the batch after this series)
        let plan = [
            ("a", 1500, false),
            ("b", 50, true),
            ("c", 700, true),
            ("d", 200, false),
            ("e", 300, true),
        ];
        let mut b = RawBatchBuilder::new(Component::Vm);
        for (i, (metric, rows, flush)) in plan.into_iter().enumerate() {
            let mut s = series(i, rows);
            s.metric = metric.to_string();
            b.append(&s, 0..rows);
            if flush {
                w.write(&b.finish().unwrap()).await.unwrap();
            }
        }
        w.finish().await.unwrap();
        let bytes = bytes::Bytes::from(std::fs::read(dir.path().join("f.parquet")).unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let group_rows: Vec<i64> = (reader.metadata().row_groups().iter())
            .map(|g| g.num_rows())
            .collect();
        // a fills one, then 500 closed at b; b (50 < 125) goes on with c; d starts its own
        // (750 before it) and e its own (200 before it, between two batches).
        assert_eq!(group_rows, [1000, 500, 750, 200, 300]);
    }

    /// Pages are cut by size, not every 20,000 rows: in date partitions (1 MiB value pages) a
    /// 50,000-row chunk of doubles (400 KB) is one page, which DuckDB reads at one page's cost;
    /// in metric partitions (64 KiB value pages) the same chunk is 5-7 pages (the writer checks
    /// the size every 1,024 values), so a reader after one VM stops within the row group, while
    /// `ts` stays one page (issue 21).
    #[tokio::test]
    async fn pages_are_cut_by_size_not_by_row_count() {
        use parquet::arrow::arrow_reader::ArrowReaderOptions;
        use parquet::file::metadata::PageIndexPolicy;
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (crate::config::VALUE_PAGE_BYTES, 1..=1),
            (crate::config::SMALL_VALUE_PAGE_BYTES, 5..=7),
        ];
        for (value_page_bytes, value_pages) in cases {
            let name = format!("p{value_page_bytes}.parquet");
            let mut w = vm_writer_with_pages(
                dir.path(),
                &name,
                PageCompression::Zstd(2),
                1 << 20,
                value_page_bytes,
            );
            let mut b = RawBatchBuilder::new(Component::Vm);
            b.append(&series(1, 50_000), 0..50_000);
            w.write(&b.finish().unwrap()).await.unwrap();
            w.finish().await.unwrap();
            let bytes = bytes::Bytes::from(std::fs::read(dir.path().join(&name)).unwrap());
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
            let reader =
                ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options).unwrap();
            let meta = reader.metadata();
            assert_eq!(meta.num_row_groups(), 1);
            let page_index = meta.page_index_for_row_group(0);
            let columns = meta.file_metadata().schema_descr().columns();
            for (column, expected) in [("ts", 1..=1), ("value", value_pages)] {
                let c = columns.iter().position(|c| c.name() == column).unwrap();
                let pages = page_index.offset_index(c).unwrap().page_locations.len();
                assert!(
                    expected.contains(&pages),
                    "{column} with {value_page_bytes} B pages: {pages} pages"
                );
            }
            let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 50_000);
        }
    }

    #[test]
    fn parallel_runner_runs_every_job_and_reports_errors() {
        let hits = std::sync::atomic::AtomicUsize::new(0);
        run_parallel((0..100).collect(), |_| {
            hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(hits.into_inner(), 100);
        let r = run_parallel((0..10).collect(), |j: i32| {
            if j == 7 {
                Err(ParquetError::General("job 7".into()))
            } else {
                Ok(())
            }
        });
        assert!(r.unwrap_err().to_string().contains("job 7"));
    }
}
