//! `vscope-etl compact`: the window, shard and part files of each (table, day or month)
//! partition merged into files of a target size, sorted as a single file would be
//! (`merge.rs`). Delta tables commit them as `remove` + `add` with `dataChange = false`; plain
//! Parquet tables get them through the journal alone.
//!
//! A period (the partition folders' span: a day in `date` layouts, a calendar month in `month`
//! ones) is compacted whole, through the same journaled publication a run uses
//! ([`crate::load::publish`]): the merged files are staged, then moved in (one Delta commit per
//! table), and the ledger's windows of the period replaced by one ledger window of the period.
//! A crash anywhere leaves the journal for the next run or compaction to complete. Readers of a
//! Delta table only see the commit (before it, the old files; after it, the merged ones; the old
//! files stay for time travel until `vacuum`); readers of plain Parquet list files, so one that
//! lists them during the publication's moves and removals (milliseconds on a disk, seconds on
//! S3) can see a period's rows twice, as during a run that rewrites another cut of its range:
//! schedule `compact` right after the run (docs/operations.md). Idempotent: a partition with one
//! file, or only merged files, is left.
//!
//! Only periods that no run will rewrite by itself are compacted: wholly before `--until` (by
//! default the ledger's watermark minus `scope.lateness`), every window committed whole, none
//! staged by shards. A later `--force` over part of a compacted period re-fetches the whole
//! period (the ledger's period window is of another size: `cover_other_cuts`), and its Delta
//! commits wait for the period's last window, so Delta readers never see it both merged and
//! rewritten.

use std::collections::BTreeMap;

use super::merge::Merger;
use crate::config::{Pipeline, TableFormat, TableSpec};
use crate::error::{Error, Result};
use crate::load::Sink;
use crate::load::delta::{AddedFile, TableCommit, in_table};
use crate::load::partition::part_file_name;
use crate::load::publish::{CrashPoint, JOURNAL_VERSION, Journal, Move};
use crate::load::shards::ShardMark;
use crate::load::state::{CommittedWindow, Ledger, TableWindow};
use crate::load::writer::{FileSettings, PartWriter, WriteError, WrittenFile, writer_properties};
use crate::semantics::time::format_rfc3339;

/// Bytes per merged file by default (`--target-size`): 128 MiB. Fewer, larger files are what
/// readers through S3 want (a request or more per file); DuckDB and Spark split a large file
/// by row group anyway.
pub const DEFAULT_TARGET_BYTES: u64 = 128 << 20;

/// What `compact` asks for.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only this table (all the pipeline's when `None`).
    pub table: Option<String>,
    /// Periods ending at or before this time (ms) only; `None`: the watermark minus the
    /// lateness.
    pub until_ms: Option<i64>,
    /// Bytes per merged file, about.
    pub target_bytes: u64,
}

/// What a compaction did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CompactReport {
    /// Periods compacted: days (`YYYY-MM-DD`) or months (`YYYY-MM`), as the partition folders.
    pub periods: Vec<String>,
    /// Periods left as they were, and why.
    pub skipped: Vec<(String, String)>,
    /// Files replaced.
    pub files_before: usize,
    /// Files written.
    pub files_after: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// Seconds.
    pub seconds: f64,
}

/// The name of a merged file: the period's window name, `-c<k>`, the compaction's tag.
fn merged_name(start_ms: i64, end_ms: i64, k: usize, tag: &str) -> String {
    let stem = part_file_name(start_ms, end_ms);
    format!("{}-c{k}-r{tag}.parquet", stem.trim_end_matches(".parquet"))
}

fn is_merged(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.contains("-c") && name.contains("-r"))
}

/// Compacts the pipeline's tables (the caller holds the pipeline's lease).
pub async fn compact(
    pipeline: &Pipeline,
    sink: &Sink,
    opts: &CompactOptions,
    run_id: &str,
) -> Result<CompactReport> {
    let started = std::time::Instant::now();
    let mut ledger = Ledger::load(sink, &pipeline.name).await?;
    let crash = CrashPoint::from_env();
    // A publication a killed run or compaction left is completed first.
    if let Some(journal) = Journal::load(sink, &pipeline.name).await? {
        journal.recover(sink, &mut ledger, &crash).await?;
    }
    let until = match opts.until_ms {
        Some(u) => u,
        None => match ledger.watermark_ms {
            Some(w) => w - pipeline.scope.lateness_ms,
            None => i64::MIN,
        },
    };
    let tables: Vec<&TableSpec> = pipeline
        .tables
        .iter()
        .filter(|t| opts.table.as_ref().is_none_or(|n| &t.name == n))
        .collect();
    if tables.is_empty() {
        return Err(crate::config::ConfigError::Invalid {
            key: "--table".into(),
            message: format!(
                "'{}' is not a table of pipeline {}",
                opts.table.as_deref().unwrap_or_default(),
                pipeline.name
            ),
        }
        .into());
    }
    let period = pipeline.sink.period();
    let noun = period.noun();
    let marked: std::collections::BTreeSet<i64> = ShardMark::all(sink, &pipeline.name)
        .await?
        .iter()
        .map(|m| period.start_of(m.start_ms))
        .collect();
    let periods: std::collections::BTreeSet<i64> = ledger
        .windows
        .values()
        .map(|w| period.start_of(w.start_ms))
        .filter(|&p| period.end_of(p) <= until)
        .collect();
    let all_tables: Vec<String> = pipeline.tables.iter().map(|t| t.name.clone()).collect();
    let layout = pipeline.sink.partition_names();
    let tag = run_id.rsplit('-').next().unwrap_or(run_id).to_string();
    let mut report = CompactReport::default();
    for start in periods {
        let end = period.end_of(start);
        let label = period.label(start);
        let inside: Vec<(String, CommittedWindow)> = ledger
            .overlapping(start, end)
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        // The span the merged files stand for: the period's committed windows, which start
        // later than the period where the pipeline's range does (and end earlier where it
        // ends). It is all the new ledger window claims, so a backfill of the rest of the
        // period is still fetched.
        let span = (
            inside
                .iter()
                .map(|(_, w)| w.start_ms)
                .min()
                .unwrap_or(start),
            inside.iter().map(|(_, w)| w.end_ms).max().unwrap_or(end),
        );
        let why_not = if inside
            .iter()
            .any(|(_, w)| w.start_ms < start || w.end_ms > end)
        {
            Some(format!(
                "its windows do not fit in the {noun} (scope.window over a {noun})"
            ))
        } else if !ledger.covers(span.0, span.1, &all_tables, &layout) {
            Some(format!("not every window of the {noun} is committed whole"))
        } else if marked.contains(&start) {
            Some(format!(
                "shards have staged windows of the {noun} that are not published yet"
            ))
        } else {
            None
        };
        if let Some(why) = why_not {
            report.skipped.push((label, why));
            continue;
        }
        let Some(plan) = compact_period(pipeline, sink, &tables, span, &inside, opts, &tag).await?
        else {
            continue;
        };
        report.files_before += plan.replaced;
        report.files_after += plan.journal.moves.len();
        report.rows += plan.rows;
        plan.journal.publish(sink, &mut ledger, &crash).await?;
        report.periods.push(label);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The journal of one period's compaction, its merged files staged; `None` when nothing in the
/// period needs it.
struct PeriodPlan {
    journal: Journal,
    replaced: usize,
    rows: u64,
}

async fn compact_period(
    pipeline: &Pipeline,
    sink: &Sink,
    tables: &[&TableSpec],
    (start, end): (i64, i64),
    inside: &[(String, CommittedWindow)],
    opts: &CompactOptions,
    tag: &str,
) -> Result<Option<PeriodPlan>> {
    // The period's ledger window: every table's files and rows of its windows.
    let mut merged_tables: BTreeMap<String, TableWindow> = BTreeMap::new();
    for (_, w) in inside {
        for (t, tw) in &w.tables {
            let e = merged_tables.entry(t.clone()).or_default();
            e.rows += tw.rows;
            e.files.extend(tw.files.iter().cloned());
        }
    }
    let settings = FileSettings::of(pipeline);
    let delta_tables = pipeline.sink.table_format == TableFormat::Delta;
    let (mut moves, mut removals, mut delta) = (Vec::new(), Vec::new(), Vec::new());
    let (mut replaced, mut rows) = (0, 0u64);
    for spec in tables {
        let Some(tw) = merged_tables.get_mut(&spec.name) else {
            continue;
        };
        let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &tw.files {
            let dir = f.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            by_dir.entry(dir).or_default().push(f.clone());
        }
        let mut adds = Vec::new();
        let mut removes = Vec::new();
        let mut kept = Vec::new();
        for (dir, mut files) in by_dir {
            files.sort();
            if files.len() <= 1 || files.iter().all(|f| is_merged(f)) {
                kept.extend(files);
                continue;
            }
            let written =
                merge_partition(sink, spec, &settings, &dir, &files, (start, end), opts, tag)
                    .await
                    .map_err(Error::Write)?;
            rows += written.iter().map(|w| w.file.rows).sum::<u64>();
            replaced += files.len();
            for (staging, file) in written.iter().map(|w| (w.staging.clone(), w)) {
                moves.push(Move {
                    from: staging,
                    to: file.file.path.clone(),
                });
                adds.push(AddedFile {
                    path: table_path(&file.file.path, spec),
                    size: file.file.bytes,
                    rows: file.file.rows,
                    stats: file.file.stats.clone(),
                });
                kept.push(file.file.path.clone());
            }
            removes.extend(files.iter().map(|f| table_path(f, spec)));
            removals.extend(files);
        }
        if adds.is_empty() {
            continue;
        }
        kept.sort();
        tw.files = kept;
        if delta_tables {
            delta.push(TableCommit::next(sink, pipeline, spec, adds, removes, false).await?);
        }
    }
    if moves.is_empty() {
        return Ok(None);
    }
    let run_id = format!("compact-{tag}");
    let journal = Journal {
        version: JOURNAL_VERSION,
        pipeline: pipeline.name.clone(),
        run_id: run_id.clone(),
        moves,
        removals,
        replaces: inside.iter().map(|(k, _)| k.clone()).collect(),
        window: CommittedWindow {
            start: format_rfc3339(start),
            end: format_rfc3339(end),
            start_ms: start,
            end_ms: end,
            fetched_until_ms: end,
            complete: true,
            run_id,
            committed_at: format_rfc3339(chrono::Utc::now().timestamp_millis()),
            tables: merged_tables,
            partition_by: Some(pipeline.sink.partition_names()),
        },
        marks: Vec::new(),
        delta,
        keep_table_files: delta_tables,
    };
    Ok(Some(PeriodPlan {
        journal,
        replaced,
        rows,
    }))
}

/// A file of the table `spec` (the ledger lists only those) relative to its directory.
fn table_path(path: &str, spec: &TableSpec) -> String {
    in_table(path, &spec.name).unwrap_or(path).to_string()
}

/// A merged file, complete under its staging key.
struct Merged {
    staging: String,
    file: WrittenFile,
}

/// Inputs one merge reads at once, at most. Each holds a row group and a share of the batches
/// (`merge.rs`), so a folder with more files (a month of 1 h windows: 720) is merged in
/// passes: groups of this many consecutive files into staged intermediate files, then those.
const MAX_MERGE_INPUTS: usize = 64;

/// Merges the sorted `files` of the partition folder `dir` into staged files of about
/// `opts.target_bytes` each, in passes of at most [`MAX_MERGE_INPUTS`] inputs. Intermediate
/// files are deleted whatever happens (a crash leaves them in the staging folder, which the
/// next run sweeps).
#[allow(clippy::too_many_arguments)]
async fn merge_partition(
    sink: &Sink,
    spec: &TableSpec,
    settings: &FileSettings,
    dir: &str,
    files: &[String],
    span: (i64, i64),
    opts: &CompactOptions,
    tag: &str,
) -> std::result::Result<Vec<Merged>, WriteError> {
    let mut inputs = files.to_vec();
    let mut intermediates: Vec<String> = Vec::new();
    let result = async {
        let mut pass = 0;
        while inputs.len() > MAX_MERGE_INPUTS {
            let mut next = Vec::new();
            for (g, group) in inputs.chunks(MAX_MERGE_INPUTS).enumerate() {
                let name = format!("{tag}-p{pass}g{g}");
                for m in merge_files(sink, spec, settings, dir, group, span, None, &name).await? {
                    intermediates.push(m.staging.clone());
                    next.push(m.staging);
                }
            }
            inputs = next;
            pass += 1;
        }
        let target = Some(opts.target_bytes);
        merge_files(sink, spec, settings, dir, &inputs, span, target, tag).await
    }
    .await;
    for key in intermediates {
        let _ = sink.delete_if_exists(&key).await;
    }
    result
}

/// Merges the sorted `files` (at most [`MAX_MERGE_INPUTS`] of them) into staged files of
/// about `target_bytes` each (one file when `None`).
#[allow(clippy::too_many_arguments)]
async fn merge_files(
    sink: &Sink,
    spec: &TableSpec,
    settings: &FileSettings,
    dir: &str,
    files: &[String],
    (start, end): (i64, i64),
    target_bytes: Option<u64>,
    tag: &str,
) -> std::result::Result<Vec<Merged>, WriteError> {
    let schema = spec.file_schema();
    let mut merger = Merger::open(sink, files)
        .await
        .map_err(|e| WriteError::Compact(e.to_string()))?;
    // Rows per merged file, from the inputs' bytes per row.
    let rows_per_file = match target_bytes {
        Some(target) if merger.input_bytes > 0 => {
            (target as u128 * merger.input_rows as u128 / merger.input_bytes as u128).max(1) as u64
        }
        _ => u64::MAX,
    };
    let mut done: Vec<Merged> = Vec::new();
    let mut current: Option<PartWriter> = None;
    let result = async {
        while let Some(batch) = merger
            .next_batch(65_536)
            .await
            .map_err(|e| WriteError::Compact(e.to_string()))?
        {
            if current.is_none() {
                let path = format!("{dir}/{}", merged_name(start, end, done.len(), tag));
                let props = writer_properties(&schema, settings, &spec.name, (start, end));
                current = Some(PartWriter::create_staged(
                    sink,
                    path,
                    &spec.name,
                    schema.clone(),
                    props,
                )?);
            }
            let w = current.as_mut().expect("opened above");
            w.write(&batch).await?;
            if w.rows() >= rows_per_file {
                let f = current.take().expect("open").finish_staged().await?;
                done.push(Merged {
                    staging: f.staging.expect("staged"),
                    file: f.file,
                });
            }
        }
        if let Some(w) = current.take() {
            let f = w.finish_staged().await?;
            done.push(Merged {
                staging: f.staging.expect("staged"),
                file: f.file,
            });
        }
        Ok::<(), WriteError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(done),
        Err(e) => {
            if let Some(w) = current.take() {
                w.abort().await;
            }
            for m in done {
                let _ = sink.delete_if_exists(&m.staging).await;
            }
            Err(e)
        }
    }
}
