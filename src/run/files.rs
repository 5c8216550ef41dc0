//! Files: one table's files for one window, a file per partition opened on its first row.

use std::collections::BTreeMap;

use super::RunCtx;
use crate::config::{PartitionKey, TableSpec};
use crate::extract::SeriesData;
use crate::extract::server_rollup::SeriesRollup;
use crate::load::partition::{part_file_name, partition_dir};
use crate::load::writer::{PartWriter, StagedFile, WriteError, writer_properties};
use crate::plan::Window;
use crate::semantics::rollup::RollupOutput;
use crate::transform::{DAY_MS, RawBatchBuilder, RollupBatchBuilder, day_runs};

/// Rows buffered per partition before a batch goes to the Parquet writer.
pub(super) const BATCH_ROWS: usize = 65_536;

/// A table's builder and open file for one partition.
pub(super) struct PartitionState {
    pub(super) builder: Builder,
    pub(super) writer: PartWriter,
}

#[allow(clippy::large_enum_variant)] // one per open partition: a handful per window
pub(super) enum Builder {
    Raw(RawBatchBuilder),
    Rollup(RollupBatchBuilder),
}

impl Builder {
    pub(super) fn len(&self) -> usize {
        match self {
            Builder::Raw(b) => b.len(),
            Builder::Rollup(b) => b.len(),
        }
    }

    pub(super) fn finish(
        &mut self,
    ) -> std::result::Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
        match self {
            Builder::Raw(b) => b.finish(),
            Builder::Rollup(b) => b.finish(),
        }
    }
}

/// Writes one table's files for one window, opening a file per partition on its first row (so
/// no empty file is ever written).
pub(super) struct TableWindowWriter<'a> {
    pub(super) spec: &'a TableSpec,
    pub(super) ctx: &'a RunCtx<'a>,
    pub(super) window: Window,
    pub(super) schema: arrow::datatypes::SchemaRef,
    /// Added to the file name: empty for the window's file, `-s<i>of<n>` for a part of a split
    /// answer (then the run's own suffix, [`RunCtx`]'s `file_suffix`).
    pub(super) suffix: String,
    pub(super) partitions: BTreeMap<String, PartitionState>,
}

impl<'a> TableWindowWriter<'a> {
    pub(super) fn new(
        spec: &'a TableSpec,
        ctx: &'a RunCtx<'a>,
        window: &Window,
        suffix: String,
    ) -> TableWindowWriter<'a> {
        let schema = spec.file_schema();
        TableWindowWriter {
            spec,
            ctx,
            window: *window,
            schema,
            suffix,
            partitions: BTreeMap::new(),
        }
    }

    pub(super) fn partition_path(&self, metric: &str, day_ms: i64) -> String {
        let dir = partition_dir(
            &self.spec.name,
            &self.ctx.pipeline.sink.partition_by,
            metric,
            day_ms,
        );
        let name = part_file_name(self.window.start_ms, self.window.end_ms);
        let stem = name.trim_end_matches(".parquet");
        format!(
            "{dir}/{stem}{}{}.parquet",
            self.suffix, self.ctx.file_suffix
        )
    }

    pub(super) fn state(
        &mut self,
        path: String,
    ) -> std::result::Result<&mut PartitionState, WriteError> {
        if !self.partitions.contains_key(&path) {
            let props = writer_properties(
                &self.schema,
                &self.ctx.settings,
                &self.spec.name,
                (self.window.start_ms, self.window.end_ms),
            );
            // Staged on every store: nothing of the window is visible before its
            // publication (crate::load::publish).
            let writer = PartWriter::create_staged(
                self.ctx.sink,
                path.clone(),
                &self.spec.name,
                self.schema.clone(),
                props,
            )?;
            let builder = match &self.spec.rollup {
                None => Builder::Raw(RawBatchBuilder::new(self.spec.component)),
                Some(r) => Builder::Rollup(RollupBatchBuilder::new(self.spec.component, r.clone())),
            };
            self.partitions
                .insert(path.clone(), PartitionState { builder, writer });
        }
        Ok(self.partitions.get_mut(&path).expect("inserted above"))
    }

    /// Appends the (sorted) series of one metric.
    pub(super) async fn append(
        &mut self,
        series: &[SeriesData],
    ) -> std::result::Result<(), WriteError> {
        // Rollups of every series are computed first, on every core (each series alone, so
        // the result does not depend on the split), then appended in order.
        let rolled: Vec<RollupOutput> = match &self.spec.rollup {
            Some(rollup) => crate::cpu::off_async(|| rollup_all(rollup, series)),
            None => Vec::new(),
        };
        self.append_rolled(series, &rolled).await
    }

    /// Appends the (sorted) series of one metric whose rollups are already computed: `rolled`
    /// holds the rollup of each series, in order (empty for a raw table).
    pub(super) async fn append_rolled(
        &mut self,
        series: &[SeriesData],
        rolled: &[RollupOutput],
    ) -> std::result::Result<(), WriteError> {
        let mut rolled = rolled.iter();
        for s in series {
            match &self.spec.rollup {
                None => {
                    for (day, range) in day_runs(&s.ts) {
                        let path = self.partition_path(&s.metric, day);
                        let st = self.state(path)?;
                        if let Builder::Raw(b) = &mut st.builder {
                            b.append(s, range);
                        }
                        flush_if_full(st).await?;
                    }
                }
                Some(_) => {
                    let rows = rolled.next().expect("one rollup per series");
                    self.append_rollup_series(s, rows).await?;
                }
            }
        }
        Ok(())
    }

    /// Appends rollup rows the server computed, series sorted as [`Self::append`] wants them.
    pub(super) async fn append_rollup_rows(
        &mut self,
        rows: &[SeriesRollup],
    ) -> std::result::Result<(), WriteError> {
        for (series, rows) in rows {
            self.append_rollup_series(series, rows).await?;
        }
        Ok(())
    }

    /// Appends one series' rollup rows, each to the partition of its bucket's day.
    pub(super) async fn append_rollup_series(
        &mut self,
        series: &SeriesData,
        rows: &RollupOutput,
    ) -> std::result::Result<(), WriteError> {
        for (day, range) in day_runs(&rows.bucket_ts) {
            let path = self.partition_path(&series.metric, day);
            let st = self.state(path)?;
            if let Builder::Rollup(b) = &mut st.builder {
                b.append_rows(series, rows, range);
            }
            flush_if_full(st).await?;
        }
        Ok(())
    }

    /// The partition folders this window may write in (every day or month it covers; every
    /// metric of the table when partitioned by metric), where files of earlier runs are looked
    /// for.
    pub(super) fn partition_dirs(&self) -> Vec<String> {
        let mut days = Vec::new();
        let mut d = self.window.start_ms.div_euclid(DAY_MS) * DAY_MS;
        while d < self.window.end_ms {
            days.push(d);
            d += DAY_MS;
        }
        let by_metric = self
            .ctx
            .pipeline
            .sink
            .partition_by
            .contains(&PartitionKey::Metric);
        let metrics: Vec<&str> = if by_metric {
            self.spec.metrics.iter().map(String::as_str).collect()
        } else {
            vec![""]
        };
        let partition_by = &self.ctx.pipeline.sink.partition_by;
        let mut out = Vec::new();
        for m in metrics {
            for &day in &days {
                out.push(partition_dir(&self.spec.name, partition_by, m, day));
            }
        }
        // Month folders: every day of a window gives the same one.
        out.dedup();
        out
    }

    /// Completes every file: those with a staging key wait there to be published.
    pub(super) async fn finish(self) -> std::result::Result<Vec<StagedFile>, WriteError> {
        let sink = self.ctx.sink;
        let mut files: Vec<StagedFile> = Vec::new();
        let mut parts = self.partitions.into_iter();
        while let Some((_, mut st)) = parts.next() {
            let r = async {
                if st.builder.len() > 0 {
                    let batch = st.builder.finish()?;
                    st.writer.write(&batch).await?;
                }
                Ok::<_, WriteError>(())
            }
            .await;
            let r = match r {
                Ok(()) => st.writer.finish_staged().await,
                Err(e) => {
                    st.writer.abort().await;
                    Err(e)
                }
            };
            match r {
                Ok(f) => files.push(f),
                Err(e) => {
                    for (_, rest) in parts {
                        rest.writer.abort().await;
                    }
                    for f in files {
                        f.discard(sink).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(files)
    }

    pub(super) async fn abort(self) {
        for (_, st) in self.partitions {
            st.writer.abort().await;
        }
    }
}

/// The rollup of each series, in order, computed on up to
/// [`crate::load::writer::encode_threads`] threads.
pub(super) fn rollup_all(
    rollup: &crate::semantics::rollup::Rollup,
    series: &[SeriesData],
) -> Vec<crate::semantics::rollup::RollupOutput> {
    let one = |s: &SeriesData| rollup.of(s);
    let threads = crate::load::writer::encode_threads().min(series.len());
    if threads <= 1 {
        return series.iter().map(one).collect();
    }
    let chunk = series.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = series
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

pub(super) async fn flush_if_full(st: &mut PartitionState) -> std::result::Result<(), WriteError> {
    if st.builder.len() >= BATCH_ROWS {
        let batch = st.builder.finish()?;
        st.writer.write(&batch).await?;
    }
    Ok(())
}
