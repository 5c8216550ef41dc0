//! The run: plan → extract → transform → load → commit, one window at a time.
//!
//! Inside a window, units (one `/api/query` per metric and datacenter) are fetched with bounded
//! concurrency and consumed in plan order, so rows reach each table already sorted and memory
//! holds one metric's answers at a time, not the whole window. A window's files are completed
//! only when every unit of the window succeeded; then the ledger records it. A failed unit
//! aborts its window's uploads (nothing half-written becomes visible) and the run goes on with
//! the next window.
//!
//! The module reads in the order things happen:
//! - [`session`]: the clients, once per run;
//! - [`plan`]: windows and discovery;
//! - `window`, `unit`, `parts`, `files`: one window fetched and written under staging keys;
//! - `commit`: each staged window published and recorded; the manifest.

mod budget;
mod commit;
mod files;
pub mod manifest;
mod parts;
pub mod plan;
pub mod session;
mod shard_commit;
mod task;
mod unit;
mod window;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::config::Pipeline;
use crate::error::{EXIT_FAILED_UNITS, EXIT_OK, Error, Result};
use crate::extract::{DecodeStats, MetricsClient};
use crate::load::Sink;
use crate::load::lease::{Lease, LeaseKeeper};
use crate::load::publish::{CrashPoint, Journal};
use crate::load::shards::{ShardMark, shard_tag};
use crate::load::state::Ledger;
use crate::load::writer::FileSettings;
use crate::ovh::inventory::{SeenSeries, reconcile};
use crate::plan::{Plan, Shard};
use crate::semantics::time::{format_rfc3339, format_window_stamp};
use manifest::{FailedUnit, Manifest};

use commit::{CommitError, Committer, finish_manifest};
pub use plan::build_plan;
use session::refresh_inventory;
pub use session::{Connection, check_token, connect, fetch_inventory};
use shard_commit::ShardCommit;
use window::{WindowResult, process_window};

/// Run-time choices that are not part of the pipeline (flags).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `scope.start`.
    pub start: Option<String>,
    /// Overrides `scope.end`.
    pub end: Option<String>,
    /// Handle only this shard's units of every window (`--shard I/N`, [`Shard::owns`]).
    pub shard: Option<Shard>,
    /// Plan only: no data request, no file.
    pub dry_run: bool,
    /// Re-fetch windows the ledger already holds as committed and complete.
    pub force: bool,
    /// The clock, for reproducible runs and tests (`--now`); the system clock when `None`.
    pub now_ms: Option<i64>,
}

impl RunOptions {
    /// The shard, when the run is one of several (`--shard I/N` with N > 1): what makes it
    /// stage its windows for the last shard instead of publishing them ([`shard_commit`]).
    fn split_shard(&self) -> Option<Shard> {
        self.shard.filter(Shard::is_split)
    }
}

/// Progress notifications, for a terminal display.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The plan is known.
    Planned {
        /// Windows to process.
        windows: usize,
        /// Units in all windows.
        units: usize,
    },
    /// A unit's answer was received and decoded.
    UnitDone {
        /// Points it brought.
        points: u64,
    },
    /// Points of one part of a split answer were received (the unit itself is reported once,
    /// by [`Progress::UnitDone`]).
    Points {
        /// Points the part brought.
        points: u64,
    },
    /// A window ended.
    WindowDone {
        /// Its start.
        start_ms: i64,
        /// Whether it was committed.
        committed: bool,
    },
}

/// Receives [`Progress`] events.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The manifest (also written to the sink unless dry-run).
    pub manifest: Manifest,
    /// Where the manifest was written.
    pub manifest_path: Option<String>,
    /// The plan executed.
    pub plan: Plan,
    /// Process exit code: 0, or 1 when units failed or the run was stopped.
    pub exit_code: u8,
}

/// Per-run shared state for window processing.
struct RunCtx<'a> {
    pipeline: &'a Pipeline,
    client: &'a MetricsClient,
    sink: &'a Sink,
    plan: &'a Plan,
    settings: FileSettings,
    progress: ProgressFn,
    /// Record the series received, for the inventory reconciliation.
    track_series: bool,
    /// What answers may hold at once (`source.memory_limit`).
    budget: Arc<budget::MemoryBudget>,
    /// What units of each metric brought, to reserve memory for the next ones.
    estimates: Arc<budget::Estimates>,
    /// A shard of a sharded run: fetches only its units ([`Shard::owns`]) and hands its
    /// windows to the last shard ([`shard_commit`]). `None` for a run of the whole pipeline.
    shard: Option<Shard>,
    /// Added to the name of every file: `-h<I>of<N>` for a shard, then, for Delta tables,
    /// `-r<run>` (a file is never rewritten in place there: readers of older versions read it);
    /// else nothing, so a rerun rewrites the same names.
    file_suffix: String,
}

/// Runs a pipeline: the whole extract-transform-load of its range, window by window.
/// `cancel` turning true (SIGINT/SIGTERM) stops the run after aborting the current window.
pub async fn run(
    pipeline: &Pipeline,
    opts: &RunOptions,
    progress: ProgressFn,
    mut cancel: watch::Receiver<bool>,
) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    // One shard of several: its share of the token's request rate (`source.shard_rate`).
    let shared = pipeline.for_shards(opts.shard.map_or(1, |s| s.count));
    let pipeline = shared.as_ref();
    let now_ms = opts.now_ms.unwrap_or_else(|| started_at.timestamp_millis());
    let run_id = format!("{}-{:08x}", format_window_stamp(now_ms), fastrand::u32(..));
    // A shard has a lease and a staging folder of its own (`<pipeline>.s<I>of<N>`): shards of
    // one run work side by side, and only their commit steps take the pipeline's lease.
    let shard = opts.split_shard();
    let lease_name = match shard {
        Some(s) => format!("{}.{}", pipeline.name, shard_tag(s.index, s.count)),
        None => pipeline.name.clone(),
    };
    let sink = Sink::open_with(&pipeline.sink.url, &pipeline.sink.s3)?.for_pipeline(&lease_name);
    let conn = connect(pipeline).await?;
    // Is the token accepted? One tiny query, before discovery or any write, so that a refused
    // token (even behind an opaque 500) ends the run at once with exit 3.
    session::check_token(pipeline, &conn.client, now_ms).await?;
    // One run per pipeline and sink at a time; a dry run writes nothing and needs no lease.
    // Kept alive by a heartbeat from now on (`LeaseKeeper`).
    if shard.is_none() && !opts.dry_run {
        // A whole-pipeline run would remove what running shards write: refused while one does.
        let now = chrono::Utc::now().timestamp_millis();
        if let Some((_, path, holder)) = crate::load::lease::shard_holders(&sink, &pipeline.name)
            .await?
            .into_iter()
            .find(|(_, _, h)| h.is_live(now))
        {
            return Err(crate::load::lease::LeaseError::Held {
                path,
                holder: Box::new(holder),
            }
            .into());
        }
    }
    let lease = if opts.dry_run {
        None
    } else {
        Some(
            Lease::acquire(&sink, &lease_name, &run_id, pipeline.sink.lease_ttl_ms)
                .await?
                .keep(),
        )
    };
    let mut committer = Committer {
        ledger: Ledger::load(&sink, &pipeline.name).await?,
        crash: CrashPoint::from_env(),
        run_id: run_id.clone(),
        replaced_later: BTreeMap::new(),
        abandoned: Vec::new(),
    };
    let table_names: Vec<String> = pipeline.tables.iter().map(|t| t.name.clone()).collect();
    // Refused at once when another pipeline owns a table; claimed once there is something to
    // commit (a run that finds nothing writes nothing).
    crate::load::owner::claim_tables(&sink, &pipeline.name, &table_names, false)
        .await
        .map_err(Error::Owner)?;
    let mut staged_before = std::collections::BTreeSet::new();
    if lease.is_some()
        && let Some(s) = shard
    {
        // A publication a killed shard left half done is completed first (its staged files
        // are in the journal, not in a mark: the clean-up below would remove them).
        committer
            .recover_publication(&sink, pipeline, &cancel)
            .await?;
        staged_before = clean_shard_staging(&sink, &pipeline.name, s).await?;
    } else if lease.is_some() {
        // A publication a killed run left half done is completed (or its window cleared)
        // before anything else, and before the staging folder is emptied.
        if let Some(journal) = Journal::load(&sink, &pipeline.name).await? {
            let completed = journal
                .recover(&sink, &mut committer.ledger, &committer.crash)
                .await?;
            tracing::warn!(
                window = %Ledger::window_key(journal.window.start_ms, journal.window.end_ms),
                completed,
                "finished the publication an interrupted run left"
            );
        }
        let removed = sink.remove_leftovers().await?;
        if removed > 0 {
            tracing::warn!(
                removed,
                "removed temporary files left by an interrupted run"
            );
        }
        // The tables, and the staging folder where the parts of split answers are staged.
        let dirs: Vec<&str> = pipeline
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .chain([sink.staging_dir.as_str()])
            .collect();
        let aborted = sink.abort_orphan_uploads(&dirs).await?;
        if aborted > 0 {
            tracing::warn!(
                aborted,
                "aborted multipart uploads left by an interrupted run"
            );
        }
    }
    let result = run_leased(
        pipeline,
        opts,
        progress,
        &mut cancel,
        &sink,
        &conn,
        lease.as_ref(),
        &staged_before,
        committer,
        now_ms,
        started,
    )
    .await;
    if let Some(l) = lease {
        l.release_or_warn().await;
    }
    if let Some(sim) = conn.sim {
        sim.shutdown().await;
    }
    result
}

/// The suffix of every file name of a run (see `RunCtx::file_suffix`).
fn file_suffix(pipeline: &Pipeline, shard: Option<Shard>, run_id: &str) -> String {
    let mut suffix = shard.map_or_else(String::new, |s| format!("-h{}of{}", s.index, s.count));
    if pipeline.sink.table_format == crate::config::TableFormat::Delta {
        // The run id's random part: unique per run.
        let tag = run_id.rsplit('-').next().unwrap_or(run_id);
        suffix.push_str(&format!("-r{tag}"));
    }
    suffix
}

/// A shard's start: removes what its killed runs left in its staging folder, except the files
/// its marks still hand to the other shards, and aborts its orphan uploads. Returns the starts
/// of the windows it staged whole and that wait for the others (done for this shard).
async fn clean_shard_staging(
    sink: &Sink,
    pipeline: &str,
    shard: Shard,
) -> Result<std::collections::BTreeSet<i64>> {
    let mine: Vec<ShardMark> = ShardMark::all(sink, pipeline)
        .await?
        .into_iter()
        .filter(|m| m.shard == shard.index && m.shards == shard.count)
        .collect();
    let keep = mine
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.staging.clone()))
        .collect();
    let removed = sink.remove_staged_except(&keep).await?;
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed staged files left by an interrupted run of this shard"
        );
    }
    let aborted = sink
        .abort_orphan_uploads(&[sink.staging_dir.as_str()])
        .await?;
    if aborted > 0 {
        tracing::warn!(
            aborted,
            "aborted multipart uploads left by an interrupted run of this shard"
        );
    }
    Ok(mine
        .iter()
        .filter(|m| m.complete)
        .map(|m| m.start_ms)
        .collect())
}

/// Ends a run before its windows are done: the manifest says `why`, carries the inventory
/// report and the run's counters, and is saved. The save's result is the caller's: a stop with
/// a worse error to report ignores it.
async fn save_stopped(
    manifest: &mut Manifest,
    inventory: Option<crate::ovh::InventoryReport>,
    client: &MetricsClient,
    started: Instant,
    sink: &Sink,
    why: String,
) -> std::result::Result<String, crate::load::store::StoreError> {
    manifest.aborted = Some(why);
    manifest.inventory = inventory;
    finish_manifest(manifest, client, started);
    manifest.save(sink).await
}

#[allow(clippy::too_many_arguments)]
async fn run_leased(
    pipeline: &Pipeline,
    opts: &RunOptions,
    progress: ProgressFn,
    cancel: &mut watch::Receiver<bool>,
    sink: &Sink,
    conn: &Connection,
    lease: Option<&LeaseKeeper>,
    staged_before: &std::collections::BTreeSet<i64>,
    mut committer: Committer,
    now_ms: i64,
    started: Instant,
) -> Result<RunReport> {
    let client = &conn.client;
    let run_id = committer.run_id.clone();
    let shard = opts.split_shard();
    let (inventory, mut inventory_report) =
        refresh_inventory(pipeline, conn, sink, opts, now_ms).await?;
    let plan = build_plan(
        pipeline,
        client,
        opts,
        Some(&committer.ledger),
        staged_before,
        now_ms,
        inventory.as_ref(),
    )
    .await?;
    // A shard's units: its share of every window's.
    let units_planned: usize = plan
        .windows
        .iter()
        .map(|w| plan.units_of(w.start_ms, shard).len())
        .sum();
    progress(&Progress::Planned {
        windows: plan.windows.len(),
        units: units_planned,
    });

    let mut manifest = Manifest {
        run_id: run_id.clone(),
        pipeline: pipeline.name.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        dialect: match client.protocol() {
            crate::config::Protocol::Opentsdb => client.dialect().to_string(),
            p @ crate::config::Protocol::Warp10 => p.as_str().to_string(),
        },
        started: format_rfc3339(now_ms),
        finished: String::new(),
        seconds: 0.0,
        range_start: format_rfc3339(plan.range_start_ms),
        range_end: format_rfc3339(plan.range_end_ms),
        windows_planned: plan.windows.len(),
        windows_committed: 0,
        windows_deferred: 0,
        windows_staged: 0,
        shard: shard.map(|s| format!("{}/{}", s.index, s.count)),
        units_planned,
        units_done: 0,
        series_discovered: plan.series_discovered(),
        series: 0,
        requests: 0,
        retries: 0,
        splits: 0,
        throttled: 0,
        throttle_wait_seconds: 0.0,
        min_in_flight: 0,
        memory_waits: 0,
        memory_reserved_peak_mb: 0.0,
        bytes_received: 0,
        bytes_on_wire: 0,
        points: DecodeStats::default(),
        files: Vec::new(),
        failures: Vec::new(),
        aborted: None,
        inventory: None,
    };
    if opts.dry_run {
        manifest.inventory = inventory_report;
        finish_manifest(&mut manifest, client, started);
        return Ok(RunReport {
            manifest,
            manifest_path: None,
            plan,
            exit_code: EXIT_OK,
        });
    }

    let ctx = RunCtx {
        pipeline,
        client,
        sink,
        plan: &plan,
        settings: FileSettings::of(pipeline),
        progress: progress.clone(),
        // A shard sees only its units: reconciling them against the whole inventory would
        // report every other shard's series as missing.
        track_series: inventory.is_some() && shard.is_none(),
        budget: budget::MemoryBudget::new(pipeline.source.memory_limit_bytes as u64),
        estimates: Arc::new(budget::Estimates::default()),
        shard,
        file_suffix: file_suffix(pipeline, shard, &run_id),
    };
    // A fresh ledger's origin is where this run starts, not the first window it manages to
    // commit: otherwise a failed first window would lie before the origin and no incremental
    // run would ever retry it (tests/e2e/faults.rs, a permanent error in the first window).
    if committer.ledger.origin_ms.is_none() {
        committer.ledger.origin_ms = plan.windows.first().map(|w| w.start_ms);
    }
    if !plan.windows.is_empty() {
        let tables: Vec<String> = pipeline.tables.iter().map(|t| t.name.clone()).collect();
        crate::load::owner::claim_tables(sink, &pipeline.name, &tables, true)
            .await
            .map_err(Error::Owner)?;
    }
    committer.replaced_later = plan
        .supersede
        .iter()
        .map(|(k, starts)| (k.clone(), starts.iter().copied().collect()))
        .collect();
    let mut seen = SeenSeries::default();
    for (i, window) in plan.windows.iter().enumerate() {
        if *cancel.borrow() {
            manifest.aborted = Some("stopped by a signal before all windows were processed".into());
            break;
        }
        if client.limits().deadline_passed() {
            // source.deadline: what is left is deferred to the next run, which resumes from
            // the ledger; nothing of it was started, so nothing partial exists.
            manifest.windows_deferred = plan.windows.len() - i;
            manifest.aborted = Some(format!(
                "run deadline (source.deadline) reached: {} window(s) deferred to the next run",
                manifest.windows_deferred
            ));
            break;
        }
        let outcome = process_window(&ctx, window, cancel).await;
        manifest.series += outcome.series;
        manifest.points.add(&outcome.stats);
        manifest.units_done += outcome.units_done;
        seen.merge(outcome.seen);
        let window_start = format_rfc3339(window.start_ms);
        let window_end = format_rfc3339(window.end_ms);
        for (unit, err) in &outcome.failures {
            manifest.failures.push(FailedUnit {
                metric: plan.metrics[unit.metric].metric.clone(),
                datacenter: unit.datacenter.clone(),
                window_start: window_start.clone(),
                window_end: window_end.clone(),
                error: err.clone(),
            });
        }
        let result = match outcome.result {
            WindowResult::Staged(staged) => {
                // Never commit under a lease this run may no longer hold.
                if let Some(Err(e)) = lease.map(LeaseKeeper::check) {
                    for f in staged.files {
                        f.discard(sink).await;
                    }
                    let why = format!("the run lease was lost: {e}");
                    let _ = save_stopped(
                        &mut manifest,
                        inventory_report.take(),
                        client,
                        started,
                        sink,
                        why,
                    )
                    .await;
                    return Err(e.into());
                }
                let committed = match shard {
                    None => committer
                        .commit(&ctx, window, staged)
                        .await
                        .map(WindowResult::Written),
                    Some(s) => committer
                        .commit_shard(&ctx, window, staged, s, cancel)
                        .await
                        .map(|c| match c {
                            ShardCommit::Published(files) => WindowResult::Written(files),
                            ShardCommit::Waiting(missing) => WindowResult::Marked(missing),
                        }),
                };
                match committed {
                    Ok(result) => result,
                    Err(CommitError::Window(e)) => WindowResult::WriteFailed(e),
                    Err(CommitError::Fatal(e)) => {
                        // The publication or the ledger cannot be trusted to go on: stop, the
                        // next run completes or clears what was journaled.
                        let why = format!("publishing stopped the run: {e}");
                        let _ = save_stopped(
                            &mut manifest,
                            inventory_report.take(),
                            client,
                            started,
                            sink,
                            why,
                        )
                        .await;
                        return Err(e);
                    }
                }
            }
            other => other,
        };
        match result {
            WindowResult::Staged(_) => unreachable!("published above"),
            WindowResult::Written(files) => {
                manifest.files.extend(files);
                manifest.windows_committed += 1;
                progress(&Progress::WindowDone {
                    start_ms: window.start_ms,
                    committed: true,
                });
            }
            WindowResult::Marked(missing) => {
                tracing::info!(
                    window = %commit::window_label(window),
                    waiting_for = ?missing,
                    "window staged; published when the other shards have staged it"
                );
                manifest.windows_staged += 1;
                progress(&Progress::WindowDone {
                    start_ms: window.start_ms,
                    committed: false,
                });
            }
            WindowResult::Failed => {
                progress(&Progress::WindowDone {
                    start_ms: window.start_ms,
                    committed: false,
                });
            }
            WindowResult::AuthRefused(e) => {
                let why = format!("authentication refused: {e}");
                save_stopped(
                    &mut manifest,
                    inventory_report.take(),
                    client,
                    started,
                    sink,
                    why,
                )
                .await?;
                return Err(Error::Auth(e));
            }
            WindowResult::Cancelled => {
                manifest.aborted =
                    Some("stopped by a signal; the current window was abandoned".into());
                break;
            }
            WindowResult::WriteFailed(e) => {
                manifest.failures.push(FailedUnit {
                    metric: "*".into(),
                    datacenter: None,
                    window_start: format_rfc3339(window.start_ms),
                    window_end: format_rfc3339(window.end_ms),
                    error: e.to_string(),
                });
                progress(&Progress::WindowDone {
                    start_ms: window.start_ms,
                    committed: false,
                });
            }
        }
    }
    for (start_ms, end_ms) in std::mem::take(&mut committer.abandoned) {
        manifest.failures.push(FailedUnit {
            metric: "*".into(),
            datacenter: None,
            window_start: format_rfc3339(start_ms),
            window_end: format_rfc3339(end_ms),
            error: "an interrupted publication of this window could not be completed (its \
                    staged files are gone): the window and every shard's part of it were \
                    cleared; run every shard again"
                .into(),
        });
    }
    manifest.memory_waits = ctx.budget.waits();
    manifest.memory_reserved_peak_mb = ctx.budget.peak() as f64 / (1024.0 * 1024.0);
    if manifest.memory_waits > 0 {
        tracing::info!(
            waits = manifest.memory_waits,
            limit_mb = ctx.budget.limit() >> 20,
            "units waited for memory (source.memory_limit) before their requests"
        );
    }
    if let (Some(inv), Some(report), true) =
        (&inventory, inventory_report.as_mut(), ctx.track_series)
    {
        let failed: Vec<(String, Option<String>)> = manifest
            .failures
            .iter()
            .map(|f| (f.metric.clone(), f.datacenter.clone()))
            .collect();
        report.reconciliation = reconcile(inv, &plan.metrics, &seen, &failed);
        if let Some(r) = &report.reconciliation
            && r.missing_on_server_count + r.not_in_inventory_count > 0
        {
            tracing::warn!(
                missing_on_server = r.missing_on_server_count,
                not_in_inventory = r.not_in_inventory_count,
                "the live inventory and the metrics server disagree (listed in the manifest)"
            );
        }
    }
    manifest.inventory = inventory_report;
    finish_manifest(&mut manifest, client, started);
    let manifest_path = manifest.save(sink).await?;
    let exit_code = if manifest.failures.is_empty() && manifest.aborted.is_none() {
        EXIT_OK
    } else {
        EXIT_FAILED_UNITS
    };
    Ok(RunReport {
        manifest,
        manifest_path: Some(manifest_path),
        plan,
        exit_code,
    })
}
