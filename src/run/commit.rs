//! Commit: a staged window published (journaled) and recorded in the ledger; the manifest.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::RunCtx;
use super::manifest::Manifest;
use crate::config::TableFormat;
use crate::error::Error;
use crate::extract::MetricsClient;
use crate::load::delta::{AddedFile, TableCommit, in_table};
use crate::load::partition::part_file_name;
use crate::load::publish::{CrashPoint, JOURNAL_VERSION, Journal, Move, PublishError};
use crate::load::state::{CommittedWindow, Ledger, TableWindow};
use crate::load::writer::{StagedFile, WriteError, WrittenFile};
use crate::plan::Window;
use crate::semantics::time::format_rfc3339;

/// A window whose units all succeeded: its files, complete under their staging keys, and the
/// partition folders of each table where files of earlier cuts are looked for.
pub(super) struct StagedWindow {
    pub(super) files: Vec<StagedFile>,
    pub(super) dirs: BTreeMap<String, Vec<String>>,
    /// Sharded runs: the marks of every shard whose files are published together (deleted
    /// with the publication), and files of marks of another cut (another shard count) to
    /// remove. Empty for an unsharded run.
    pub(super) marks: Vec<String>,
    pub(super) stale: Vec<String>,
}

impl StagedWindow {
    /// An unsharded run's window.
    pub(super) fn of_run(files: Vec<StagedFile>, dirs: BTreeMap<String, Vec<String>>) -> Self {
        StagedWindow {
            files,
            dirs,
            marks: Vec::new(),
            stale: Vec::new(),
        }
    }
}

/// What the publication of a window replaces ([`Committer::superseded`]).
pub(super) struct Superseded {
    /// Files of other cuts of its time range.
    pub(super) removals: Vec<String>,
    /// Ledger windows it replaces.
    pub(super) replaces: Vec<String>,
    /// A larger ledger window (an older window size, or a compacted day) covers it and still
    /// waits for other windows of this run: with Delta tables, this window's commit waits too,
    /// so that readers never see the old cut and part of the new one together.
    pub(super) deferred: bool,
    /// With the last window of such a larger one: the files of the windows of this run inside
    /// it, committed to Delta with this one.
    pub(super) siblings: Vec<String>,
}

/// Why a window could not be committed.
pub(super) enum CommitError {
    /// This window only: its staged files were discarded, nothing of it became visible; the
    /// next run fetches it again.
    Window(WriteError),
    /// The ledger changed under the run, or a publication could neither be completed nor
    /// given up: the run stops, the next one completes or clears what the journal says.
    Fatal(Error),
}

/// The commit stage of a run: publishes each staged window (journaled, [`Journal`]) and records
/// it in the ledger, removing the files of every other cut of its time range.
pub(super) struct Committer {
    pub(super) ledger: Ledger,
    pub(super) crash: CrashPoint,
    pub(super) run_id: String,
    /// Ledger windows of another window size that overlap windows of this run without being
    /// inside one of them (a shorter `scope.window` than when they were written): their files
    /// are removed with the last window of this run that overlaps them; the starts of the
    /// windows still to commit, by ledger key.
    pub(super) replaced_later: BTreeMap<String, std::collections::BTreeSet<i64>>,
    /// Sharded runs: windows whose interrupted publication could not be completed (staged files
    /// lost) and was given up, with every shard's mark: each shard must run them again, so the
    /// run reports them as failures (exit 1).
    pub(super) abandoned: Vec<(i64, i64)>,
}

impl Committer {
    /// Publishes `staged` and records the window. The files removed with it: what the ledger
    /// says earlier runs wrote for this time range and this run did not write again (another
    /// split, partitioning, or window size; a partition without rows now), and files of this
    /// window's name found in its partition folders that no ledger knows of.
    pub(super) async fn commit(
        &mut self,
        ctx: &RunCtx<'_>,
        window: &Window,
        staged: StagedWindow,
    ) -> std::result::Result<Vec<WrittenFile>, CommitError> {
        let sink = ctx.sink;
        let StagedWindow {
            files,
            dirs,
            marks,
            stale,
        } = staged;
        let fresh: std::collections::BTreeSet<String> =
            files.iter().map(|f| f.file.path.clone()).collect();
        let Superseded {
            mut removals,
            replaces,
            deferred,
            siblings,
        } = match self.superseded(ctx, window, &dirs, &fresh).await {
            Ok(r) => r,
            Err(e) => {
                // Other shards' files stay staged under their marks for the next try.
                if marks.is_empty() {
                    for f in files {
                        f.discard(sink).await;
                    }
                }
                return Err(CommitError::Window(WriteError::Cleanup(e)));
            }
        };
        removals.extend(stale);
        let mut tables: BTreeMap<String, TableWindow> = dirs
            .keys()
            .map(|t| (t.clone(), TableWindow::default()))
            .collect();
        let mut moves = Vec::with_capacity(files.len());
        let mut written = Vec::with_capacity(files.len());
        for f in files {
            let entry = tables.entry(f.file.table.clone()).or_default();
            entry.rows += f.file.rows;
            entry.files.push(f.file.path.clone());
            moves.push(Move {
                from: f
                    .staging
                    .clone()
                    .expect("window files are always staged before publication"),
                to: f.file.path.clone(),
            });
            written.push(f.file);
        }
        for t in tables.values_mut() {
            t.files.sort();
        }
        written.sort_by(|a, b| a.path.cmp(&b.path));
        let delta = match ctx.pipeline.sink.table_format {
            TableFormat::Parquet => Vec::new(),
            TableFormat::Delta if deferred => Vec::new(),
            TableFormat::Delta => match delta_commits(ctx, &written, &siblings, &removals).await {
                Ok(c) => c,
                Err(e) => {
                    if marks.is_empty() {
                        for m in &moves {
                            let _ = sink.delete_if_exists(&m.from).await;
                        }
                    }
                    return Err(CommitError::Window(WriteError::Unpublished(e.to_string())));
                }
            },
        };
        let journal = Journal {
            version: JOURNAL_VERSION,
            pipeline: ctx.pipeline.name.clone(),
            run_id: self.run_id.clone(),
            moves,
            removals,
            replaces,
            window: CommittedWindow {
                start: format_rfc3339(window.start_ms),
                end: format_rfc3339(window.end_ms),
                start_ms: window.start_ms,
                end_ms: window.end_ms,
                fetched_until_ms: window.fetch_end_ms,
                complete: window.complete(),
                run_id: self.run_id.clone(),
                committed_at: format_rfc3339(chrono::Utc::now().timestamp_millis()),
                tables,
                partition_by: Some(ctx.pipeline.sink.partition_names()),
            },
            marks,
            delta,
            keep_table_files: ctx.pipeline.sink.table_format == TableFormat::Delta,
        };
        match journal.publish(sink, &mut self.ledger, &self.crash).await {
            Ok(()) => Ok(written),
            Err(PublishError::Ledger(e)) => Err(CommitError::Fatal(Error::Ledger(e))),
            Err(e) => {
                tracing::error!(error = %e, "publication failed; trying to complete it once more");
                let failed = match journal.recover(sink, &mut self.ledger, &self.crash).await {
                    Ok(true) => return Ok(written),
                    Ok(false) => {
                        format!("staged files of window {} are gone", window_label(window))
                    }
                    Err(PublishError::Ledger(e)) => {
                        return Err(CommitError::Fatal(Error::Ledger(e)));
                    }
                    // Some tables may have the commit already: the window cannot be given up
                    // (its files are listed); the next run completes the journal.
                    Err(e @ PublishError::Delta { .. }) => {
                        return Err(CommitError::Fatal(Error::Publish(e)));
                    }
                    Err(e) => e.to_string(),
                };
                // It cannot be completed: give the window up whole (its files removed, its
                // ledger entry dropped) and go on; the next run fetches it again.
                match journal.abandon(sink, &mut self.ledger).await {
                    Ok(()) => Err(CommitError::Window(WriteError::Unpublished(failed))),
                    Err(e) => Err(CommitError::Fatal(Error::Publish(e))),
                }
            }
        }
    }

    /// The files the publication of `window` removes, and the ledger windows it replaces.
    pub(super) async fn superseded(
        &mut self,
        ctx: &RunCtx<'_>,
        window: &Window,
        dirs: &BTreeMap<String, Vec<String>>,
        fresh: &std::collections::BTreeSet<String>,
    ) -> std::result::Result<Superseded, crate::load::store::StoreError> {
        let key = Ledger::window_key(window.start_ms, window.end_ms);
        let mut removals = std::collections::BTreeSet::new();
        let mut replaces = Vec::new();
        let (mut deferred, mut siblings) = (false, Vec::new());
        for (k, old) in self.ledger.overlapping(window.start_ms, window.end_ms) {
            let inside = old.start_ms >= window.start_ms && old.end_ms <= window.end_ms;
            if *k == key {
                removals.extend(old.files().filter(|f| !fresh.contains(*f)).cloned());
            } else if inside {
                removals.extend(old.files().cloned());
                replaces.push(k.clone());
            } else if let Some(waiting) = self.replaced_later.get_mut(k) {
                // Larger than this window (the window size shrank): removed with the last of
                // this run's windows that cover it (the plan holds them all). A covering
                // window already in the ledger (committed by this run, or by another shard of a
                // sharded one, which publishes windows this process never commits) is done.
                let size = window.end_ms - window.start_ms;
                waiting.remove(&window.start_ms);
                waiting.retain(|s| self.ledger.get(*s, s + size).is_none());
                if waiting.is_empty() {
                    removals.extend(old.files().cloned());
                    replaces.push(k.clone());
                    // The windows of this run inside it, committed before this one.
                    siblings.extend(
                        self.ledger
                            .overlapping(old.start_ms, old.end_ms)
                            .filter(|(sk, w)| {
                                **sk != key
                                    && w.start_ms >= old.start_ms
                                    && w.end_ms <= old.end_ms
                                    && w.end_ms - w.start_ms == size
                            })
                            .flat_map(|(_, w)| w.files().cloned()),
                    );
                } else {
                    deferred = true;
                }
            }
        }
        // Files of this window's name that no ledger lists (left by versions that did not
        // journal their publications, or by a ledger that was lost).
        let prefix = part_file_name(window.start_ms, window.end_ms);
        let prefix = prefix.trim_end_matches(".parquet");
        for dir_list in dirs.values() {
            for dir in dir_list {
                for name in ctx.sink.list_dir(dir).await? {
                    let path = format!("{dir}/{name}");
                    if name.starts_with(prefix)
                        && name.ends_with(".parquet")
                        && !fresh.contains(&path)
                    {
                        removals.insert(path);
                    }
                }
            }
        }
        for r in &removals {
            tracing::info!(path = %r, "removing a file of another cut of this window");
        }
        Ok(Superseded {
            removals: removals.into_iter().collect(),
            replaces,
            deferred,
            siblings,
        })
    }
}

/// The Delta commit of each table the publication touches (`sink.table_format = "delta"`):
/// its added files, the files it replaces, and the next transaction version of the pipeline
/// there.
async fn delta_commits(
    ctx: &RunCtx<'_>,
    written: &[WrittenFile],
    siblings: &[String],
    removals: &[String],
) -> Result<Vec<TableCommit>, crate::load::delta::DeltaError> {
    // The files of windows whose commit waited for this one (their rows are not known here:
    // no statistics for them).
    let mut all: Vec<WrittenFile> = written.to_vec();
    for path in siblings {
        let size = ctx.sink.size_of(path).await?;
        all.push(WrittenFile {
            path: path.clone(),
            table: path.split('/').next().unwrap_or_default().to_string(),
            rows: 0,
            bytes: size,
            stats: None,
        });
    }
    let written = &all;
    let mut commits = Vec::new();
    for spec in &ctx.pipeline.tables {
        let adds: Vec<AddedFile> = written
            .iter()
            .filter_map(|f| {
                in_table(&f.path, &spec.name).map(|path| AddedFile {
                    path: path.to_string(),
                    size: f.bytes,
                    rows: f.rows,
                    stats: f.stats.clone(),
                })
            })
            .collect();
        let removes: Vec<String> = removals
            .iter()
            .filter_map(|r| in_table(r, &spec.name).map(str::to_string))
            .collect();
        if adds.is_empty() && removes.is_empty() {
            continue;
        }
        commits.push(TableCommit::next(ctx.sink, ctx.pipeline, spec, adds, removes, true).await?);
    }
    Ok(commits)
}

/// `[start, end)` of a window, for messages.
pub(super) fn window_label(window: &Window) -> String {
    format!(
        "[{}, {})",
        format_rfc3339(window.start_ms),
        format_rfc3339(window.end_ms)
    )
}

pub(super) fn finish_manifest(manifest: &mut Manifest, client: &MetricsClient, started: Instant) {
    let stats = client.stats();
    manifest.requests = stats.requests.load(Ordering::Relaxed);
    manifest.retries = stats.retries.load(Ordering::Relaxed);
    manifest.splits = stats.splits.load(Ordering::Relaxed);
    manifest.bytes_received = stats.bytes.load(Ordering::Relaxed);
    let throttle = client.throttle_report();
    manifest.throttled = throttle.throttled;
    manifest.throttle_wait_seconds = throttle.wait_seconds;
    manifest.min_in_flight = throttle.min_in_flight;
    manifest.bytes_on_wire = stats.bytes_on_wire.load(Ordering::Relaxed);
    manifest.finished = format_rfc3339(chrono::Utc::now().timestamp_millis());
    manifest.seconds = started.elapsed().as_secs_f64();
    let points = manifest.points.points;
    tracing::info!(
        points,
        seconds = format!("{:.2}", manifest.seconds),
        points_per_s = (points as f64 / manifest.seconds.max(1e-9)).round() as u64,
        requests = manifest.requests,
        splits = manifest.splits,
        throttled = manifest.throttled,
        throttle_wait_s = format!("{:.1}", manifest.throttle_wait_seconds),
        bytes_received = manifest.bytes_received,
        bytes_on_wire = manifest.bytes_on_wire,
        peak_rss_mb = peak_rss_mb().map(|m| format!("{m:.1}")),
        "run finished"
    );
}

/// The process's peak resident memory in MiB (`VmHWM`; Linux only).
pub(super) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
