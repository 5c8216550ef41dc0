//! The merge of a partition's files into one sorted stream, for `compact`.
//!
//! Every file we write is sorted by series (metric, the label columns, the other tags: the
//! string and map columns in schema order) and, within a series, by time; the files of one
//! partition are windows (disjoint times) and, within a window, shards or parts (disjoint
//! series). So the partition in the order a single file would have is a k-way merge of the
//! files' *runs* (the rows of one series in one batch) by (series, file order), where file order
//! is the names' order: the window start first. Only one batch per file is in memory at a time.
//!
//! Files are read through parquet's `ParquetObjectReader` (ranged GETs of the columns' pages,
//! local disk and S3 alike). parquet 60 deprecates it in favour of a reader of one's own
//! (apache/arrow-rs#10308); it still works and is what that replacement wraps, so it is
//! kept until the dependency set moves together.
#![allow(deprecated)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, MapArray, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStream};

use crate::load::Sink;

/// Rows per batch read from each input, at most.
const READ_BATCH_ROWS: usize = 16_384;

/// Rows held in the inputs' batches together, about: a month of 1 h windows is 720 files per
/// folder, and a batch of 16 Ki rows each held 679 MB at the peak for the 50-VM month
/// (`benches/query.sh` data in 1 h windows); each input's batch is this over the number of
/// inputs (never under [`MIN_READ_BATCH_ROWS`]).
const MERGE_ROWS_IN_MEMORY: usize = 1 << 18;

/// Rows per batch of an input, at least (smaller batches cost more decode calls than they
/// save).
const MIN_READ_BATCH_ROWS: usize = 256;

/// Rows per batch of each of `inputs` files: [`MERGE_ROWS_IN_MEMORY`] shared out.
fn read_batch_rows(inputs: usize) -> usize {
    (MERGE_ROWS_IN_MEMORY / inputs.max(1)).clamp(MIN_READ_BATCH_ROWS, READ_BATCH_ROWS)
}

/// One input file being read: its current batch and where its next run starts.
struct Cursor {
    stream: ParquetRecordBatchStream<ParquetObjectReader>,
    batch: RecordBatch,
    /// The key columns of `batch`, as strings or maps.
    keys: Vec<KeyColumn>,
    pos: usize,
}

/// A column that tells series apart.
enum KeyColumn {
    Str(StringArray),
    Map(MapArray),
}

impl KeyColumn {
    fn of(a: &ArrayRef) -> Option<KeyColumn> {
        match a.data_type() {
            DataType::Utf8 => Some(KeyColumn::Str(a.as_string::<i32>().clone())),
            DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8 => {
                let s = arrow::compute::cast(a, &DataType::Utf8).ok()?;
                Some(KeyColumn::Str(s.as_string::<i32>().clone()))
            }
            DataType::Map(..) => Some(KeyColumn::Map(a.as_map().clone())),
            _ => None,
        }
    }

    /// True when rows `a` and `b` have the same value (no allocation: runs are found row by
    /// row).
    fn same(&self, a: usize, b: usize) -> bool {
        match self {
            KeyColumn::Str(s) => {
                s.is_valid(a) == s.is_valid(b) && (s.is_null(a) || s.value(a) == s.value(b))
            }
            KeyColumn::Map(m) => {
                if m.is_valid(a) != m.is_valid(b) {
                    return false;
                }
                let o = m.value_offsets();
                let (ra, rb) = (
                    o[a] as usize..o[a + 1] as usize,
                    o[b] as usize..o[b + 1] as usize,
                );
                if ra.len() != rb.len() {
                    return false;
                }
                let (k, v) = (m.keys().as_string::<i32>(), m.values().as_string::<i32>());
                ra.zip(rb).all(|(x, y)| {
                    k.value(x) == k.value(y)
                        && v.is_valid(x) == v.is_valid(y)
                        && v.value(x) == v.value(y)
                })
            }
        }
    }

    /// Appends the sortable encoding of row `i`: null before any value, strings compared
    /// bytewise, a map as its entries in order.
    fn encode(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            KeyColumn::Str(s) if s.is_valid(i) => {
                out.push(1);
                out.extend_from_slice(s.value(i).as_bytes());
                out.push(0);
            }
            KeyColumn::Map(m) if m.is_valid(i) => {
                out.push(1);
                let entries = m.value(i);
                let (k, v) = (entries.column(0), entries.column(1));
                let (k, v) = (k.as_string::<i32>(), v.as_string::<i32>());
                for e in 0..entries.len() {
                    out.push(1);
                    out.extend_from_slice(k.value(e).as_bytes());
                    out.push(0);
                    if v.is_valid(e) {
                        out.extend_from_slice(v.value(e).as_bytes());
                    }
                    out.push(0);
                }
                out.push(0);
            }
            _ => out.push(0),
        }
    }
}

impl Cursor {
    fn key(&self, i: usize) -> Vec<u8> {
        let mut k = Vec::with_capacity(64);
        for c in &self.keys {
            c.encode(i, &mut k);
        }
        k
    }

    /// The end of the run that starts at `pos` (rows of the same series).
    fn run_end(&self) -> usize {
        let mut end = self.pos + 1;
        while end < self.batch.num_rows() && self.keys.iter().all(|c| c.same(self.pos, end)) {
            end += 1;
        }
        end
    }

    /// Loads the next batch when this one is used up; false at the end of the file.
    async fn refill(&mut self) -> Result<bool, parquet::errors::ParquetError> {
        while self.pos >= self.batch.num_rows() {
            match self.stream.next().await {
                None => return Ok(false),
                Some(b) => {
                    self.batch = b?;
                    self.keys = key_columns(&self.batch);
                    self.pos = 0;
                }
            }
        }
        Ok(true)
    }
}

fn key_columns(batch: &RecordBatch) -> Vec<KeyColumn> {
    batch.columns().iter().filter_map(KeyColumn::of).collect()
}

/// The merge of sorted files: [`Merger::next_batch`] gives the merged rows in order.
pub struct Merger {
    cursors: Vec<Cursor>,
    /// Each file's next run: (series key, file order).
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    /// Rows of all inputs (from their footers).
    pub input_rows: u64,
    /// Bytes of all inputs.
    pub input_bytes: u64,
}

impl Merger {
    /// Opens the files `paths` (sorted files of one partition, in window order).
    pub async fn open(sink: &Sink, paths: &[String]) -> Result<Merger, MergeError> {
        let mut cursors = Vec::with_capacity(paths.len());
        let (mut input_rows, mut input_bytes) = (0u64, 0u64);
        let batch_rows = read_batch_rows(paths.len());
        for p in paths {
            let size = sink.size_of(p).await.map_err(|e| {
                MergeError::Read(parquet::errors::ParquetError::External(Box::new(e)))
            })?;
            input_bytes += size;
            let reader =
                ParquetObjectReader::new(Arc::clone(&sink.store), sink.key(p)).with_file_size(size);
            let builder = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(MergeError::Read)?;
            input_rows += builder.metadata().file_metadata().num_rows().max(0) as u64;
            let stream = builder
                .with_batch_size(batch_rows)
                .build()
                .map_err(MergeError::Read)?;
            let schema = stream.schema().clone();
            cursors.push(Cursor {
                stream,
                batch: RecordBatch::new_empty(schema),
                keys: Vec::new(),
                pos: 0,
            });
        }
        let mut heap = BinaryHeap::new();
        for (i, c) in cursors.iter_mut().enumerate() {
            if c.refill().await.map_err(MergeError::Read)? {
                heap.push(Reverse((c.key(c.pos), i)));
            }
        }
        Ok(Merger {
            cursors,
            heap,
            input_rows,
            input_bytes,
        })
    }

    /// The next merged rows, about `batch_rows` of them (whole runs); `None` at the end.
    pub async fn next_batch(
        &mut self,
        batch_rows: usize,
    ) -> Result<Option<RecordBatch>, MergeError> {
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut rows = 0;
        while rows < batch_rows {
            let Some(Reverse((_, i))) = self.heap.pop() else {
                break;
            };
            let c = &mut self.cursors[i];
            let end = c.run_end();
            pending.push(c.batch.slice(c.pos, end - c.pos));
            rows += end - c.pos;
            c.pos = end;
            if c.refill().await.map_err(MergeError::Read)? {
                self.heap.push(Reverse((c.key(c.pos), i)));
            }
        }
        if pending.is_empty() {
            return Ok(None);
        }
        arrow::compute::concat_batches(&pending[0].schema(), &pending)
            .map(Some)
            .map_err(MergeError::Arrow)
    }
}

/// A merge failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// An input could not be read.
    #[error("reading a file to compact: {0}")]
    Read(parquet::errors::ParquetError),
    /// Batches could not be joined.
    #[error("joining batches: {0}")]
    Arrow(arrow::error::ArrowError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many inputs share the rows held in memory; few keep whole batches.
    #[test]
    fn inputs_share_the_rows_held_in_memory() {
        assert_eq!(read_batch_rows(1), READ_BATCH_ROWS);
        assert_eq!(read_batch_rows(30), 8_738);
        assert_eq!(read_batch_rows(720), 364);
        assert_eq!(read_batch_rows(100_000), MIN_READ_BATCH_ROWS);
        assert!((1..5_000).all(|n| read_batch_rows(n) * n <= MERGE_ROWS_IN_MEMORY.max(n * 256)));
    }
}
