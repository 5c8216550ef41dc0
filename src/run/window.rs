//! Window: its units fetched with bounded concurrency and consumed in plan order, each metric
//! written to the table files as it completes; one abort path for every failure.

use std::collections::BTreeMap;

use futures::StreamExt;
use tokio::sync::watch;

use super::budget::{BYTES_PER_POINT_DECODED, BYTES_PER_SERIES, Reservation};
use super::commit::StagedWindow;
use super::files::TableWindowWriter;
use super::parts::{PartsFailed, write_parts};
use super::task::AbortOnDrop;
use super::unit::{UnitAnswer, fetch_unit, unit_request};
use super::{Progress, RunCtx};
use crate::extract::retry::FailureClass;
use crate::extract::server_rollup::SeriesRollup;
use crate::extract::{DecodeStats, FetchError, SeriesData};
use crate::load::Sink;
use crate::load::writer::{StagedFile, WriteError, WrittenFile};
use crate::ovh::inventory::SeenSeries;
use crate::plan::{Unit, Window};
use crate::schema::raw_table_decl;
use crate::semantics::rollup::RollupOutput;
use crate::semantics::time::format_rfc3339;
use crate::transform::{compare_series, sort_series};

pub(super) enum WindowResult {
    /// Every unit succeeded: the window's files are complete under their staging keys.
    Staged(StagedWindow),
    /// The window was published and committed: its files.
    Written(Vec<WrittenFile>),
    /// A shard's part of the window is staged and marked; the last of these shards publishes it.
    Marked(Vec<u32>),
    /// A unit failed; nothing of the window was published.
    Failed,
    /// The token was refused: stop the run.
    AuthRefused(FetchError),
    /// A signal arrived.
    Cancelled,
    /// Writing failed.
    WriteFailed(WriteError),
}

pub(super) struct WindowOutcome {
    pub(super) result: WindowResult,
    pub(super) failures: Vec<(Unit, String)>,
    /// Units whose data was fully fetched and handed to the writers (the manifest's
    /// `units_done`): every part of a split answer written, and the series of the unit's metric
    /// appended to every table. Counted whatever happens to the window afterwards (a later
    /// unit's failure, a write or publish failure), never for a unit that failed, nor for one
    /// fetched but not yet handed over when its window was abandoned.
    pub(super) units_done: usize,
    pub(super) series: u64,
    pub(super) stats: DecodeStats,
    pub(super) seen: SeenSeries,
}

impl WindowOutcome {
    fn new() -> WindowOutcome {
        WindowOutcome {
            result: WindowResult::Failed,
            failures: Vec::new(),
            units_done: 0,
            series: 0,
            stats: DecodeStats::default(),
            seen: SeenSeries::default(),
        }
    }
}

/// Fetches and writes one window: units in plan order, each metric's series handed to the
/// table files as soon as its units are in; every file completed under its staging key for the
/// commit stage. Whatever stops the window (a unit, a write, a signal) goes through one abort:
/// every open file aborted, every staged one removed.
pub(super) async fn process_window(
    ctx: &RunCtx<'_>,
    window: &Window,
    cancel: &mut watch::Receiver<bool>,
) -> WindowOutcome {
    let mut outcome = WindowOutcome::new();
    let mut files = WindowFiles {
        writers: ctx
            .pipeline
            .tables
            .iter()
            .map(|t| TableWindowWriter::new(t, ctx, window, String::new()))
            .collect(),
        staged: Vec::new(),
    };
    outcome.result = match fill_window(ctx, window, cancel, &mut files, &mut outcome).await {
        Ok(()) => match files.finish(ctx.sink).await {
            Ok(staged) => WindowResult::Staged(staged),
            Err(e) => WindowResult::WriteFailed(e),
        },
        Err(stop) => {
            files.abort(ctx.sink).await;
            stop
        }
    };
    outcome
}

/// The files of a window being written: one writer per table, and the complete files of the
/// parts of split answers, waiting under their staging keys.
struct WindowFiles<'a> {
    writers: Vec<TableWindowWriter<'a>>,
    staged: Vec<StagedFile>,
}

impl WindowFiles<'_> {
    /// Completes every table's files under their staging keys; on failure, nothing is left.
    async fn finish(self, sink: &Sink) -> Result<StagedWindow, WriteError> {
        let WindowFiles {
            writers,
            mut staged,
        } = self;
        let mut dirs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut writers = writers.into_iter();
        while let Some(w) = writers.next() {
            dirs.entry(w.spec.name.clone())
                .or_insert_with(|| w.partition_dirs());
            match w.finish().await {
                Ok(files) => staged.extend(files),
                Err(e) => {
                    WindowFiles {
                        writers: writers.collect(),
                        staged,
                    }
                    .abort(sink)
                    .await;
                    return Err(e);
                }
            }
        }
        Ok(StagedWindow::of_run(staged, dirs))
    }

    /// Abandons the window: every open file aborted, every staged one removed.
    async fn abort(self, sink: &Sink) {
        for w in self.writers {
            w.abort().await;
        }
        for f in self.staged {
            f.discard(sink).await;
        }
    }
}

/// The body of [`process_window`]: `Err` says why the window stops (the caller aborts it).
async fn fill_window(
    ctx: &RunCtx<'_>,
    window: &Window,
    cancel: &mut watch::Receiver<bool>,
    files: &mut WindowFiles<'_>,
    outcome: &mut WindowOutcome,
) -> Result<(), WindowResult> {
    let plan = ctx.plan;
    let client = ctx.client;
    // Each fetch (HTTP and decode) is its own task, so answers are decoded on the other cores
    // while this task transforms and writes; `buffered` bounds how many are in flight.
    // Each one first reserves the memory its answer should take (the budget, `budget.rs`):
    // a unit that does not fit waits for earlier ones to be written.
    // A shard of a sharded run fetches only its units of the window (`Shard::owns`).
    let units = plan.units_of(window.start_ms, ctx.shard);
    let mut fetches = futures::stream::iter(units.into_iter().enumerate())
        .map(|(position, unit)| {
            let request = unit_request(ctx, &unit, window);
            let estimate = estimate_bytes(ctx, &unit, window);
            let (budget, estimates) = (ctx.budget.clone(), ctx.estimates.clone());
            let span = window.fetch_end_ms - window.start_ms;
            let metric = request.metric.clone();
            let client = client.clone();
            let task = AbortOnDrop(tokio::spawn(async move {
                let mut reservation = budget.reserve(position as u64, estimate).await;
                let answer = fetch_unit(client, request).await;
                if let Ok(a) = &answer {
                    estimates.record(&metric, a.raw.series.len(), span, a.raw.stats.points);
                    // What waits for the writer: the decoded points, as many as were counted.
                    reservation.resize(held_bytes(a));
                }
                (answer, reservation)
            }));
            async move { (position, unit, task.join().await) }
        })
        .buffered(ctx.pipeline.source.concurrency);
    let mut writer_at = 0u64;
    loop {
        ctx.budget.writer_at(writer_at);
        let next = tokio::select! {
            biased;
            _ = cancel.changed() => None,
            n = fetches.next() => Some(n),
        };
        let Some(next) = next else {
            return Err(WindowResult::Cancelled);
        };
        let Some((position, unit, (result, mut reservation))) = next else {
            return Ok(());
        };
        debug_assert_eq!(position as u64, writer_at);
        writer_at += 1;
        let UnitAnswer {
            raw,
            rollups,
            rolled,
            parts,
        } = match result {
            Ok(answer) => answer,
            Err(e) => return Err(fail_unit(ctx, window, unit, e, outcome)),
        };
        let mut stats = raw.stats;
        for (_, r) in &rollups {
            stats.add(&r.stats);
        }
        (ctx.progress)(&Progress::UnitDone {
            points: stats.points,
        });
        outcome.stats.add(&stats);
        // Series seen: the raw answer's, or (rollup tables only) the first rollup's.
        let from_rollup: Vec<SeriesData>;
        let seen = match rollups.first() {
            // A split answer's series are counted over its parts.
            _ if parts.is_some() => &raw.series,
            Some((_, r)) if raw.series.is_empty() => {
                from_rollup = r.series.iter().map(|(s, _)| s.clone()).collect();
                &from_rollup
            }
            _ => &raw.series,
        };
        outcome.series += seen.len() as u64;
        let metric_plan = &plan.metrics[unit.metric];
        if ctx.track_series {
            let m = metric_plan;
            outcome
                .seen
                .record(&m.metric, m.component, unit.datacenter.as_deref(), seen);
        }
        if let Some(parts) = parts {
            // Too large to take whole: each part goes to its own files as it comes.
            let seen = write_parts(ctx, window, &unit, parts, &mut files.staged, cancel)
                .await
                .map_err(|failed| match failed {
                    PartsFailed::Cancelled => WindowResult::Cancelled,
                    PartsFailed::Write(e) => WindowResult::WriteFailed(e),
                    PartsFailed::Fetch(e) => fail_unit(ctx, window, unit.clone(), e, outcome),
                })?;
            outcome.stats.add(&seen.stats);
            outcome.series += seen.series;
            outcome.seen.merge(seen.seen);
        }
        // The unit's rows go to the files now: units come in the files' sort order (metric,
        // then datacenter, the first label), so a unit sorted on its own follows the one
        // before it, and memory holds one unit's series, not a metric's over every datacenter.
        append_unit(
            files,
            metric_plan,
            raw.series,
            rolled,
            rollups,
            &mut reservation,
        )
        .await?;
        outcome.units_done += 1;
    }
}

/// What a unit's answer should hold while it is read and decoded, from what earlier units of
/// its metric brought per series and millisecond (`budget::Estimates`), capped by what one
/// answer can hold (`source.max_answer_size` of JSON and its decoded points).
fn estimate_bytes(ctx: &RunCtx<'_>, unit: &crate::plan::Unit, window: &Window) -> u64 {
    let m = &ctx.plan.metrics[unit.metric];
    let series = m
        .known_series(unit.datacenter.as_deref())
        .map(|k| k.rows.len())
        .or_else(|| {
            let dcs = m.datacenters.as_ref().map_or(1, |d| d.len().max(1));
            m.series.map(|n| n.div_ceil(dcs))
        })
        .unwrap_or(1);
    let span = window.fetch_end_ms - window.start_ms;
    let points = ctx.estimates.points(&m.metric, series, span);
    let one_answer = 2 * ctx.pipeline.source.max_answer_bytes as u64;
    (points * BYTES_PER_POINT_DECODED + series as u64 * BYTES_PER_SERIES).min(one_answer)
}

/// What a decoded answer holds while it waits for the writer.
fn held_bytes(answer: &UnitAnswer) -> u64 {
    let rollup_rows: u64 = answer
        .rollups
        .iter()
        .map(|(_, r)| r.stats.points)
        .sum::<u64>()
        + answer
            .rolled
            .iter()
            .flat_map(|(_, rows)| rows)
            .map(|r| r.bucket_ts.len() as u64)
            .sum::<u64>();
    answer.raw.stats.points * BYTES_PER_POINT_DECODED
        + answer.raw.series.len() as u64 * BYTES_PER_SERIES
        + rollup_rows * 4 * BYTES_PER_POINT_DECODED
}

/// Series appended to every table of their metric at a time, then freed: what a unit gives
/// back to the memory budget as it is written, so the next units' requests start before the
/// whole unit is written (batches and row groups are cut by rows, not by these chunks, so the
/// files are the same bytes).
const APPEND_CHUNK_SERIES: usize = 256;

/// Appends one unit's series (sorted, with their client-side rollups) and server-side rollup
/// rows to every table of its metric, `APPEND_CHUNK_SERIES` series at a time, each chunk's
/// points given back to `reservation` once every table has them.
async fn append_unit(
    files: &mut WindowFiles<'_>,
    metric_plan: &crate::plan::MetricPlan,
    mut series: Vec<SeriesData>,
    rolled: Vec<(usize, Vec<RollupOutput>)>,
    rollups: Vec<(usize, crate::extract::server_rollup::ServerRollupAnswer)>,
    reservation: &mut Reservation,
) -> Result<(), WindowResult> {
    let labels = raw_table_decl(metric_plan.component).label_columns();
    let mut rolled: BTreeMap<usize, Vec<RollupOutput>> = rolled.into_iter().collect();
    sort_with_rollups(&mut series, &mut rolled, &labels);
    let mut server_rows: BTreeMap<usize, Vec<SeriesRollup>> = rollups
        .into_iter()
        .map(|(t, answer)| (t, answer.series))
        .collect();
    for rows in server_rows.values_mut() {
        rows.sort_by(|a, b| compare_series(&a.0, &b.0, &labels));
    }
    for &t in &metric_plan.tables {
        if let Some(rows) = server_rows.get(&t) {
            let writer = &mut files.writers[t];
            writer
                .append_rollup_rows(rows)
                .await
                .map_err(WindowResult::WriteFailed)?;
        }
    }
    let mut held = reservation.bytes();
    let mut start = 0;
    let mut rest = series.into_iter();
    loop {
        let chunk: Vec<SeriesData> = rest.by_ref().take(APPEND_CHUNK_SERIES).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        let range = start..start + chunk.len();
        start = range.end;
        for &t in metric_plan
            .tables
            .iter()
            .filter(|t| !server_rows.contains_key(t))
        {
            let writer = &mut files.writers[t];
            let appended = match rolled.get(&t) {
                Some(rolled) => writer.append_rolled(&chunk, &rolled[range.clone()]).await,
                None => writer.append(&chunk).await,
            };
            appended.map_err(WindowResult::WriteFailed)?;
        }
        let freed: u64 = chunk
            .iter()
            .map(|s| s.ts.len() as u64 * BYTES_PER_POINT_DECODED + BYTES_PER_SERIES)
            .sum();
        drop(chunk);
        held = held.saturating_sub(freed);
        reservation.resize(held);
    }
}

/// Records a failed unit (logged with why) and says what it means for the window: the run
/// stops on an authentication failure, the window is not committed otherwise.
pub(super) fn fail_unit(
    ctx: &RunCtx<'_>,
    window: &Window,
    unit: Unit,
    e: FetchError,
    outcome: &mut WindowOutcome,
) -> WindowResult {
    tracing::error!(
        metric = %ctx.plan.metrics[unit.metric].metric,
        datacenter = ?unit.datacenter,
        window = %format_rfc3339(window.start_ms),
        error = %e,
        "unit failed; its window will not be committed"
    );
    let auth = e.class() == FailureClass::Auth;
    outcome.failures.push((unit, e.to_string()));
    if auth {
        WindowResult::AuthRefused(e)
    } else {
        WindowResult::Failed
    }
}

/// Sorts `series` as [`sort_series`] does, and each table's rollups in `rolled` (one per
/// series, in the order of `series`) along with them.
pub(super) fn sort_with_rollups(
    series: &mut Vec<SeriesData>,
    rolled: &mut BTreeMap<usize, Vec<RollupOutput>>,
    labels: &[&str],
) {
    if rolled.is_empty() {
        sort_series(series, labels);
        return;
    }
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by(|&a, &b| compare_series(&series[a], &series[b], labels));
    pub(super) fn permute<T>(items: &mut Vec<T>, order: &[usize]) {
        let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
        items.extend(
            order
                .iter()
                .map(|&i| slots[i].take().expect("a permutation")),
        );
    }
    permute(series, &order);
    for rows in rolled.values_mut() {
        permute(rows, &order);
    }
}
