//! The run: plan → extract → transform → load → commit, one window at a time.
//!
//! Inside a window, units (one `/api/query` per metric and datacenter) are fetched with bounded
//! concurrency and consumed in plan order, so rows reach each table already sorted and memory
//! holds one metric's answers at a time, not the whole window. A window's files are completed
//! only when every unit of the window succeeded; then the ledger records it. A failed unit
//! aborts its window's uploads (nothing half-written becomes visible) and the run goes on with
//! the next window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::config::{DialectChoice, Discovery, Endpoint, PartitionKey, Pipeline, TableSpec};
use crate::error::{EXIT_FAILED_UNITS, EXIT_OK, Error, Result};
use crate::extract::client::{RawPiece, SplitRequest};
use crate::extract::retry::FailureClass;
use crate::extract::server_rollup::{self, SeriesRollup, ServerRollupAnswer};
use crate::extract::{DecodeStats, FetchError, MetricsClient, RawAnswer, SeriesData};
use crate::load::Sink;
use crate::load::lease::Lease;
use crate::load::partition::{part_file_name, partition_dir};
use crate::load::publish::{CrashPoint, JOURNAL_VERSION, Journal, Move, PublishError};
use crate::load::state::{CommittedWindow, FailedUnit, Ledger, Manifest, TableWindow};
use crate::load::writer::{
    FileSettings, PartWriter, StagedFile, WriteError, WrittenFile, writer_properties,
};
use crate::ovh::inventory::{InventoryReport, SeenSeries, reconcile};
use crate::ovh::{Inventory, OvhClient};
use crate::plan::{
    KnownSeries, Plan, Shard, SplitValues, Unit, Window, pipeline_metrics, plan_windows,
};
use crate::schema::{raw_schema, raw_table_decl, rollup_schema};
use crate::semantics::rollup::{Rollup, RollupOutput};
use crate::semantics::time::{format_rfc3339, format_window_stamp};
use crate::sim::SimHandle;
use crate::transform::{
    DAY_MS, RawBatchBuilder, RollupBatchBuilder, compare_series, day_runs, sort_series,
};

/// Rows buffered per partition before a batch goes to the Parquet writer.
const BATCH_ROWS: usize = 65_536;

/// Run-time choices that are not part of the pipeline (flags).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `scope.start`.
    pub start: Option<String>,
    /// Overrides `scope.end`.
    pub end: Option<String>,
    /// Handle only this shard of the windows.
    pub shard: Option<Shard>,
    /// Plan only: no data request, no file.
    pub dry_run: bool,
    /// Re-fetch windows the ledger already holds as committed and complete.
    pub force: bool,
    /// The clock, for reproducible runs and tests (`--now`); the system clock when `None`.
    pub now_ms: Option<i64>,
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

/// A client connected to the configured endpoint (and the simulator behind it, when built in).
pub struct Connection {
    /// The metrics client, dialect decided.
    pub client: MetricsClient,
    /// The in-process simulator, kept alive as long as the connection.
    pub sim: Option<SimHandle>,
    /// The OVHcloud API v6 client, when `[source.ovh]` is configured.
    pub ovh: Option<OvhClient>,
    /// Why the client speaks its dialect (configured, or what detection saw).
    pub dialect_reason: String,
}

/// Starts the simulator if the pipeline asks for it, builds the clients and decides the dialect.
/// With an empty `source.token` and `[source.ovh] user_id`, the read token is fetched through
/// API v6 first (`POST .../metricsToken`).
pub async fn connect(pipeline: &Pipeline) -> Result<Connection> {
    let source = &pipeline.source;
    // `None`: the endpoint comes with the token (`source.url` left out).
    let (mut base, sim) = match &source.endpoint {
        Endpoint::Url(u) => (Some(u.clone()), None),
        Endpoint::FromToken => (None, None),
        Endpoint::Sim(_) => {
            let cfg = source.sim_config().unwrap_or_default();
            let handle = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
                .await
                .map_err(Error::Sim)?;
            let base = url::Url::parse(&handle.base_url()).expect("simulator URL is valid");
            (Some(base), Some(handle))
        }
    };
    let initial = match source.dialect {
        DialectChoice::Fixed(d) => d,
        DialectChoice::Auto => crate::dialect::Dialect::Ovh,
    };
    let sim_base = sim.as_ref().map(SimHandle::base_url);
    // One retry budget and deadline for the run, whichever API the requests go to.
    let limits = Arc::new(crate::extract::retry::RunLimits::new(
        source.retry_budget,
        source.deadline,
    ));
    let ovh = match &source.ovh {
        Some(spec) => Some(
            crate::ovh::build_client(source, spec, sim_base.as_deref())
                .map_err(Error::Ovh)?
                .with_limits(limits.clone()),
        ),
        None => None,
    };
    let mut effective = source.clone();
    if let (true, Some(api), Some(spec)) = (source.token.is_empty(), &ovh, &source.ovh)
        && spec.user_id.is_some()
    {
        let (user_id, token) = crate::ovh::metrics_token(api, &spec.service_name, spec.user_id)
            .await
            .map_err(Error::Ovh)?;
        tracing::info!(user_id, opentsdb_endpoint = %token.opentsdb_endpoint,
            "fetched the metrics read token through OVHcloud API v6");
        base = Some(crate::ovh::metrics_endpoint(base.as_ref(), &token).map_err(Error::Ovh)?);
        effective.token = token.token;
    }
    let Some(base) = base else {
        return Err(Error::Config(crate::config::ConfigError::Invalid {
            key: "source.url".into(),
            message: "is not set and no token was fetched through OVHcloud API v6 to take \
                      the endpoint from: set source.url"
                .into(),
        }));
    };
    let mut client = MetricsClient::new(&effective, base, initial)
        .map_err(Error::Fetch)?
        .with_limits(limits);
    let mut dialect_reason = "source.dialect".to_string();
    if source.dialect == DialectChoice::Auto {
        let probe = pipeline_metrics(pipeline).first().map_or_else(
            || "vscope.host.cpu.usage.perc".to_string(),
            |m| m.metric.clone(),
        );
        let (d, why) = client.detect_dialect(&probe).await.map_err(fatal_fetch)?;
        tracing::info!(dialect = %d, reason = why, "detected server dialect (source.dialect = \"auto\")");
        crate::config::check_server_downsampling(source, d, &pipeline.tables)?;
        client.set_dialect(d);
        dialect_reason = format!("detected: {why}");
    }
    Ok(Connection {
        client,
        sim,
        ovh,
        dialect_reason,
    })
}

/// Takes a snapshot of the live inventory through `api` (`[source.ovh]` must be set), stamped
/// `now_ms` to the second.
pub async fn fetch_inventory(
    pipeline: &Pipeline,
    api: &OvhClient,
    now_ms: i64,
) -> std::result::Result<Inventory, crate::ovh::OvhError> {
    let service_name = pipeline
        .source
        .ovh
        .as_ref()
        .map_or("", |o| o.service_name.as_str());
    Inventory::fetch(
        api,
        service_name,
        pipeline.source.concurrency,
        now_ms.div_euclid(1000) * 1000,
    )
    .await
}

fn fatal_fetch(e: FetchError) -> Error {
    if e.class() == FailureClass::Auth {
        Error::Auth(e)
    } else {
        Error::Fetch(e)
    }
}

/// Resolves the time range and discovers series: the full plan, without fetching data.
///
/// With no `--start`/`--end` and a ledger that has a watermark, the run is incremental: it starts
/// at the watermark minus `scope.lateness` (so late points are picked up, and any window after
/// the watermark that failed before is retried). Committed, complete windows that end before the
/// re-fetch horizon are skipped unless `force` is set, so a backfill never redoes finished work.
/// Windows are fetched only up to `now - scope.settle`.
///
/// With `source.discovery = "inventory"`, `inventory` (from [`fetch_inventory`]) gives the
/// datacenters of each metric instead of `/api/search/lookup`.
pub async fn build_plan(
    pipeline: &Pipeline,
    client: &MetricsClient,
    opts: &RunOptions,
    ledger: Option<&Ledger>,
    now_ms: i64,
    inventory: Option<&Inventory>,
) -> Result<Plan> {
    let mut scope = pipeline.scope.clone();
    let origin = ledger.and_then(|l| l.origin_ms);
    let watermark = ledger.and_then(|l| l.watermark_ms);
    let incremental = opts.start.is_none() && opts.end.is_none() && origin.is_some();
    if let (true, Some(o)) = (incremental, origin) {
        // From the origin (or the scope's start when it is earlier), not the watermark: a
        // window the ledger no longer holds (its files were lost, or a publication could not
        // be completed) is fetched again, wherever it is. Done windows are skipped below.
        let configured = crate::semantics::time::parse_time(&scope.start, now_ms).unwrap_or(o);
        // 13+ digits: read as milliseconds.
        scope.start = format!("{:013}", o.min(configured).max(0));
    }
    // The flags are checked under their own names (resolve_range names the scope keys).
    if let Some(s) = &opts.start {
        crate::config::export_time("--start", s, now_ms)?;
        scope.start = s.clone();
    }
    if let Some(e) = &opts.end {
        crate::config::export_time("--end", e, now_ms)?;
        scope.end = e.clone();
    }
    if incremental {
        // Already past the configured end (a fixed range that is done): nothing to do.
        let end = crate::config::export_time("scope.end", &scope.end, now_ms)?;
        let start = crate::semantics::time::parse_time(&scope.start, now_ms).unwrap_or(end);
        if start >= end {
            return Ok(Plan {
                range_start_ms: end,
                range_end_ms: end,
                windows: Vec::new(),
                metrics: pipeline_metrics(pipeline),
                supersede: BTreeMap::new(),
            });
        }
    }
    let (start, end) = scope.resolve_range(now_ms)?;
    let refetch_from = match (incremental, watermark.or(origin)) {
        (true, Some(w)) => w - scope.lateness_ms,
        _ => now_ms - scope.lateness_ms,
    };
    let tables: Vec<String> = pipeline.tables.iter().map(|t| t.name.clone()).collect();
    let layout = pipeline.sink.partition_names();
    let fetch_horizon = now_ms - scope.settle_ms;
    let mut windows: Vec<Window> =
        plan_windows(start, end, scope.window_ms, fetch_horizon, opts.shard)
            .into_iter()
            .filter(|w| {
                // Done: committed whole, for every table of the pipeline (a table added since is
                // backfilled), with today's partitioning, whatever the window size was then.
                let done = ledger.is_some_and(|l| l.covers(w.start_ms, w.end_ms, &tables, &layout));
                opts.force || !done || w.end_ms > refetch_from
            })
            .collect();
    let supersede = match ledger {
        Some(l) => cover_other_cuts(l, &mut windows, scope.window_ms, fetch_horizon),
        None => BTreeMap::new(),
    };
    let mut metrics = pipeline_metrics(pipeline);
    if pipeline.source.discovery == Discovery::Lookup {
        let lookups = futures::stream::iter(metrics.iter().map(|m| m.metric.clone()))
            .map(|metric| async move { (client.lookup(&metric).await, metric) })
            .buffered(pipeline.source.concurrency)
            .collect::<Vec<_>>()
            .await;
        for (m, (result, _)) in metrics.iter_mut().zip(lookups) {
            match result {
                Ok(tag_sets) => {
                    let mut dcs: Vec<String> = tag_sets
                        .iter()
                        .filter_map(|t| t.get("datacenter").cloned())
                        .collect();
                    dcs.sort();
                    dcs.dedup();
                    m.series = Some(tag_sets.len());
                    m.datacenters = Some(dcs);
                    m.split_values = Some(SplitValues::from_tag_sets(&m.split_labels(), &tag_sets));
                }
                // OpenTSDB answers 400 "No such name" for a metric it never stored (e.g. an
                // undocumented one): that metric simply has no series here.
                Err(FetchError::Status {
                    status: 400 | 404,
                    ref body,
                    ..
                }) if body.contains("No such name") => {
                    tracing::info!(metric = %m.metric, "metric unknown to the server, nothing to extract");
                    m.series = Some(0);
                    m.datacenters = Some(Vec::new());
                }
                Err(e) => return Err(fatal_fetch(e)),
            }
        }
    }
    if pipeline.source.discovery == Discovery::Inventory {
        let inventory = inventory.ok_or_else(|| crate::config::ConfigError::Invalid {
            key: "source.discovery".into(),
            message: "'inventory' needs the live inventory of [source.ovh], which was not fetched"
                .into(),
        })?;
        for m in metrics.iter_mut() {
            let objects = inventory.objects(m.component);
            m.series = Some(objects.len());
            m.datacenters = Some(inventory.datacenters_with(m.component));
            // The object's name is its series' label (`vm` = moRef, `host` = IP, `datastore`).
            let label = crate::ovh::inventory::object_label(m.component);
            let tag_sets: Vec<BTreeMap<String, String>> = objects
                .into_iter()
                .map(|(dc, name)| BTreeMap::from([("datacenter".into(), dc), (label.into(), name)]))
                .collect();
            m.split_values = Some(SplitValues::from_tag_sets(&[label.to_string()], &tag_sets));
        }
    }
    // Nothing at all on the server for the whole scope: a wrong region or another PCC's token,
    // never an empty dataset to commit (the next, correct run would skip those windows).
    if let Some(discovery) = match pipeline.source.discovery {
        Discovery::Lookup => Some("lookup"),
        Discovery::Inventory => Some("inventory"),
        Discovery::None => None,
    } && !metrics.is_empty()
        && metrics.iter().all(|m| m.series == Some(0))
    {
        return Err(Error::NothingDiscovered {
            discovery,
            metrics: metrics.len(),
            endpoint: match &pipeline.source.endpoint {
                Endpoint::Sim(_) => pipeline.source.endpoint_text(),
                _ => client.base_url().to_string(),
            },
        });
    }
    let range_start_ms = windows.first().map_or(start, |w| w.start_ms);
    let range_end_ms = windows.last().map_or(end, |w| w.end_ms);
    Ok(Plan {
        range_start_ms,
        range_end_ms,
        windows,
        metrics,
        supersede,
    })
}

/// Ledger windows of another size than `window_ms` (the pipeline's `scope.window` changed) that
/// overlap a planned window: their time range is planned whole in today's windows, so that the
/// run rewrites all of it and removes their files when the last of those windows is committed
/// (never two cuts of a time range once the run is done). Returns, for each such ledger window,
/// the starts of today's windows that cover it. `windows` stays sorted.
fn cover_other_cuts(
    ledger: &Ledger,
    windows: &mut Vec<Window>,
    window_ms: i64,
    fetch_horizon: i64,
) -> BTreeMap<String, Vec<i64>> {
    let mut supersede = BTreeMap::new();
    loop {
        let mut added = false;
        for (key, old) in &ledger.windows {
            let other_size =
                old.end_ms - old.start_ms != window_ms || old.start_ms.rem_euclid(window_ms) != 0;
            if !other_size || supersede.contains_key(key) {
                continue;
            }
            let overlaps = windows
                .iter()
                .any(|w| w.start_ms < old.end_ms && old.start_ms < w.end_ms);
            if !overlaps {
                continue;
            }
            let cover = plan_windows(old.start_ms, old.end_ms, window_ms, fetch_horizon, None);
            for c in &cover {
                if !windows.iter().any(|w| w.start_ms == c.start_ms) {
                    windows.push(*c);
                    added = true;
                }
            }
            supersede.insert(key.clone(), cover.iter().map(|c| c.start_ms).collect());
        }
        windows.sort_by_key(|w| w.start_ms);
        if !added {
            return supersede;
        }
    }
}

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
    let now_ms = opts.now_ms.unwrap_or_else(|| started_at.timestamp_millis());
    let run_id = format!("{}-{:08x}", format_window_stamp(now_ms), fastrand::u32(..));
    let sink = Sink::open_with(&pipeline.sink.url, &pipeline.sink.s3)?.for_pipeline(&pipeline.name);
    let conn = connect(pipeline).await?;
    // Is the token accepted? One tiny query, before discovery or any write, so that a refused
    // token (even behind an opaque 500) ends the run at once with exit 3.
    crate::preflight::check_token(pipeline, &conn.client, now_ms).await?;
    // One run per pipeline and sink at a time; a dry run writes nothing and needs no lease.
    let mut lease = if opts.dry_run {
        None
    } else {
        Some(Lease::acquire(&sink, &pipeline.name, &run_id, pipeline.sink.lease_ttl_ms).await?)
    };
    let crash = CrashPoint::from_env();
    let mut ledger = Ledger::load(&sink, &pipeline.name).await?;
    let table_names: Vec<String> = pipeline.tables.iter().map(|t| t.name.clone()).collect();
    // Refused at once when another pipeline owns a table; claimed once there is something to
    // commit (a run that finds nothing writes nothing).
    crate::load::owner::claim_tables(&sink, &pipeline.name, &table_names, false)
        .await
        .map_err(Error::Owner)?;
    if lease.is_some() {
        // A publication a killed run left half done is completed (or its window cleared)
        // before anything else, and before the staging folder is emptied.
        if let Some(journal) = Journal::load(&sink, &pipeline.name).await? {
            let completed = journal.recover(&sink, &mut ledger, &crash).await?;
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
        lease.as_mut(),
        Committer {
            ledger,
            crash,
            run_id: run_id.clone(),
            replaced_later: BTreeMap::new(),
        },
        now_ms,
        started,
    )
    .await;
    if let Some(l) = lease
        && let Err(e) = l.release().await
    {
        tracing::warn!(error = %e, "could not release the run lease; it expires by itself");
    }
    if let Some(sim) = conn.sim {
        sim.shutdown().await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_leased(
    pipeline: &Pipeline,
    opts: &RunOptions,
    progress: ProgressFn,
    cancel: &mut watch::Receiver<bool>,
    sink: &Sink,
    conn: &Connection,
    mut lease: Option<&mut Lease>,
    mut committer: Committer,
    now_ms: i64,
    started: Instant,
) -> Result<RunReport> {
    let client = &conn.client;
    let run_id = committer.run_id.clone();
    let (inventory, mut inventory_report) =
        refresh_inventory(pipeline, conn, sink, opts, now_ms).await?;
    let plan = build_plan(
        pipeline,
        client,
        opts,
        Some(&committer.ledger),
        now_ms,
        inventory.as_ref(),
    )
    .await?;
    progress(&Progress::Planned {
        windows: plan.windows.len(),
        units: plan.total_units(),
    });

    let mut manifest = Manifest {
        run_id: run_id.clone(),
        pipeline: pipeline.name.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        dialect: client.dialect().to_string(),
        started: format_rfc3339(now_ms),
        finished: String::new(),
        seconds: 0.0,
        range_start: format_rfc3339(plan.range_start_ms),
        range_end: format_rfc3339(plan.range_end_ms),
        windows_planned: plan.windows.len(),
        windows_committed: 0,
        windows_deferred: 0,
        units_planned: plan.total_units(),
        units_done: 0,
        series_discovered: plan.series_discovered(),
        series: 0,
        requests: 0,
        retries: 0,
        splits: 0,
        throttled: 0,
        throttle_wait_seconds: 0.0,
        min_in_flight: 0,
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
        settings: FileSettings {
            pipeline: pipeline.name.clone(),
            zstd_level: pipeline.sink.zstd_level,
            row_group_rows: pipeline.sink.row_group_rows,
        },
        progress: progress.clone(),
        track_series: inventory.is_some(),
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
                match committer.commit(&ctx, window, staged).await {
                    Ok(files) => WindowResult::Written(files),
                    Err(CommitError::Window(e)) => WindowResult::WriteFailed(e),
                    Err(CommitError::Fatal(e)) => {
                        // The publication or the ledger cannot be trusted to go on: stop, the
                        // next run completes or clears what was journaled.
                        manifest.aborted = Some(format!("publishing stopped the run: {e}"));
                        manifest.inventory = inventory_report.take();
                        finish_manifest(&mut manifest, client, started);
                        let _ = manifest.save(sink).await;
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
                if let Some(l) = lease.as_deref_mut() {
                    l.renew().await?;
                }
                manifest.windows_committed += 1;
                progress(&Progress::WindowDone {
                    start_ms: window.start_ms,
                    committed: true,
                });
            }
            WindowResult::Failed => {
                progress(&Progress::WindowDone {
                    start_ms: window.start_ms,
                    committed: false,
                });
            }
            WindowResult::AuthRefused(e) => {
                manifest.aborted = Some(format!("authentication refused: {e}"));
                manifest.inventory = inventory_report.take();
                finish_manifest(&mut manifest, client, started);
                manifest.save(sink).await?;
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
    if let (Some(inv), Some(report)) = (&inventory, inventory_report.as_mut()) {
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

/// Takes the inventory snapshot of a run when `[source.ovh]` is configured and writes its
/// tables (not in a dry run, which fetches it only when discovery needs it). A failure other
/// than refused credentials only ends the run when discovery needs the inventory; otherwise
/// the run goes on and the manifest records why there is no snapshot.
async fn refresh_inventory(
    pipeline: &Pipeline,
    conn: &Connection,
    sink: &Sink,
    opts: &RunOptions,
    now_ms: i64,
) -> Result<(Option<Inventory>, Option<InventoryReport>)> {
    let needed = pipeline.source.discovery == Discovery::Inventory;
    let Some(api) = conn.ovh.as_ref().filter(|_| needed || !opts.dry_run) else {
        return Ok((None, None));
    };
    match fetch_inventory(pipeline, api, now_ms).await {
        Ok(inventory) => {
            let mut report = InventoryReport::of(&inventory, api);
            if !opts.dry_run {
                report.files = crate::ovh::snapshot::write(
                    sink,
                    &inventory,
                    &crate::ovh::file_settings(pipeline),
                )
                .await?;
            }
            Ok((Some(inventory), Some(report)))
        }
        Err(e) if !needed && e.class() != FailureClass::Auth => {
            tracing::warn!(error = %e, "could not refresh the live inventory; the run goes on without it");
            let report = InventoryReport {
                error: Some(e.to_string()),
                ..InventoryReport::default()
            };
            Ok((None, Some(report)))
        }
        Err(e) => Err(Error::Ovh(e)),
    }
}

fn finish_manifest(manifest: &mut Manifest, client: &MetricsClient, started: Instant) {
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
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

enum WindowResult {
    /// Every unit succeeded: the window's files are complete under their staging keys.
    Staged(StagedWindow),
    /// The window was published and committed: its files.
    Written(Vec<WrittenFile>),
    /// A unit failed; nothing of the window was published.
    Failed,
    /// The token was refused: stop the run.
    AuthRefused(FetchError),
    /// A signal arrived.
    Cancelled,
    /// Writing failed.
    WriteFailed(WriteError),
}

struct WindowOutcome {
    result: WindowResult,
    failures: Vec<(Unit, String)>,
    /// Units whose data was fully fetched and handed to the writers (the manifest's
    /// `units_done`): every part of a split answer written, and the series of the unit's metric
    /// appended to every table. Counted whatever happens to the window afterwards (a later
    /// unit's failure, a write or publish failure), never for a unit that failed, nor for one
    /// fetched but not yet handed over when its window was abandoned.
    units_done: usize,
    series: u64,
    stats: DecodeStats,
    seen: SeenSeries,
}

async fn process_window(
    ctx: &RunCtx<'_>,
    window: &Window,
    cancel: &mut watch::Receiver<bool>,
) -> WindowOutcome {
    let plan = ctx.plan;
    let units = plan.units();
    let client = ctx.client;
    let mut outcome = WindowOutcome {
        result: WindowResult::Failed,
        failures: Vec::new(),
        units_done: 0,
        series: 0,
        stats: DecodeStats::default(),
        seen: SeenSeries::default(),
    };
    let mut writers: Vec<TableWindowWriter> = ctx
        .pipeline
        .tables
        .iter()
        .map(|t| TableWindowWriter::new(t, ctx, window, String::new()))
        .collect();
    // Each fetch (HTTP and decode) is its own task, so answers are decoded on the other cores
    // while this task transforms and writes; `buffered` bounds how many are in flight.
    let mut fetches = futures::stream::iter(units)
        .map(|unit| {
            let request = unit_request(ctx, &unit, window);
            let task = AbortOnDrop(tokio::spawn(fetch_unit(client.clone(), request)));
            async move { (unit, task.join().await) }
        })
        .buffered(ctx.pipeline.source.concurrency);

    // Complete files of the parts of split answers, published with the window.
    let mut staged: Vec<StagedFile> = Vec::new();
    let mut current: Option<usize> = None;
    let mut pending: Vec<SeriesData> = Vec::new();
    // Server-computed rollup rows of the current metric, per table index.
    let mut pending_rollups: BTreeMap<usize, Vec<SeriesRollup>> = BTreeMap::new();
    // Client-side rollups of `pending`, per table index, in the order of `pending`.
    let mut pending_rolled: BTreeMap<usize, Vec<RollupOutput>> = BTreeMap::new();
    // Units of the current metric fetched whole (the parts of a split one written): done once
    // `pending` is handed to the writers (see `WindowOutcome::units_done`).
    let mut pending_units = 0;
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.changed() => None,
            n = fetches.next() => Some(n),
        };
        let Some(next) = next else {
            abort_all(writers, staged, ctx.sink).await;
            outcome.result = WindowResult::Cancelled;
            return outcome;
        };
        let (boundary, item) = match next {
            Some((unit, r)) => (current.is_some_and(|c| c != unit.metric), Some((unit, r))),
            None => (true, None),
        };
        if boundary && let Some(m) = current.take() {
            let metric_plan = &plan.metrics[m];
            let labels = raw_table_decl(metric_plan.component).label_columns();
            sort_with_rollups(&mut pending, &mut pending_rolled, &labels);
            for rows in pending_rollups.values_mut() {
                rows.sort_by(|a, b| compare_series(&a.0, &b.0, &labels));
            }
            for &t in &metric_plan.tables {
                let appended = match (pending_rollups.get(&t), pending_rolled.get(&t)) {
                    (Some(rows), _) => writers[t].append_rollup_rows(rows).await,
                    (None, Some(rolled)) => writers[t].append_rolled(&pending, rolled).await,
                    (None, None) => writers[t].append(&pending).await,
                };
                if let Err(e) = appended {
                    abort_all(writers, staged, ctx.sink).await;
                    outcome.result = WindowResult::WriteFailed(e);
                    return outcome;
                }
            }
            pending.clear();
            pending_rollups.clear();
            pending_rolled.clear();
            outcome.units_done += std::mem::take(&mut pending_units);
        }
        let Some((unit, result)) = item else { break };
        match result {
            Ok(UnitAnswer {
                raw,
                rollups,
                rolled,
                parts,
            }) => {
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
                if ctx.track_series {
                    let m = &plan.metrics[unit.metric];
                    outcome
                        .seen
                        .record(&m.metric, m.component, unit.datacenter.as_deref(), seen);
                }
                current = Some(unit.metric);
                pending.extend(raw.series);
                for (t, rows) in rolled {
                    pending_rolled.entry(t).or_default().extend(rows);
                }
                for (t, r) in rollups {
                    pending_rollups.entry(t).or_default().extend(r.series);
                }
                if let Some(parts) = parts {
                    // Too large to take whole: each part goes to its own files as it comes.
                    let written = write_parts(ctx, window, &unit, parts, &mut staged, cancel).await;
                    match written {
                        Ok(seen) => {
                            outcome.stats.add(&seen.stats);
                            outcome.series += seen.series;
                            outcome.seen.merge(seen.seen);
                            pending_units += 1;
                        }
                        Err(PartsFailed::Cancelled) => {
                            abort_all(writers, staged, ctx.sink).await;
                            outcome.result = WindowResult::Cancelled;
                            return outcome;
                        }
                        Err(PartsFailed::Write(e)) => {
                            abort_all(writers, staged, ctx.sink).await;
                            outcome.result = WindowResult::WriteFailed(e);
                            return outcome;
                        }
                        Err(PartsFailed::Fetch(e)) => {
                            let failed = fail_unit(ctx, window, unit, e, &mut outcome);
                            abort_all(writers, staged, ctx.sink).await;
                            outcome.result = failed;
                            return outcome;
                        }
                    }
                } else {
                    pending_units += 1;
                }
            }
            Err(e) => {
                let failed = fail_unit(ctx, window, unit, e, &mut outcome);
                abort_all(writers, staged, ctx.sink).await;
                outcome.result = failed;
                return outcome;
            }
        }
    }
    // Every unit succeeded: complete every file under its staging key; the commit stage
    // publishes them.
    let mut dirs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut writers = writers.into_iter();
    while let Some(w) = writers.next() {
        dirs.entry(w.spec.name.clone())
            .or_insert_with(|| w.partition_dirs());
        match w.finish().await {
            Ok(files) => staged.extend(files),
            Err(e) => {
                abort_all(writers.collect(), staged, ctx.sink).await;
                outcome.result = WindowResult::WriteFailed(e);
                return outcome;
            }
        }
    }
    outcome.result = WindowResult::Staged(StagedWindow {
        files: staged,
        dirs,
    });
    outcome
}

/// Records a failed unit (logged with why) and says what it means for the window: the run
/// stops on an authentication failure, the window is not committed otherwise.
fn fail_unit(
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

/// A window whose units all succeeded: its files, complete under their staging keys, and the
/// partition folders of each table where files of earlier cuts are looked for.
struct StagedWindow {
    files: Vec<StagedFile>,
    dirs: BTreeMap<String, Vec<String>>,
}

/// Why a window could not be committed.
enum CommitError {
    /// This window only: its staged files were discarded, nothing of it became visible; the
    /// next run fetches it again.
    Window(WriteError),
    /// The ledger changed under the run, or a publication could neither be completed nor
    /// given up: the run stops, the next one completes or clears what the journal says.
    Fatal(Error),
}

/// The commit stage of a run: publishes each staged window (journaled, [`Journal`]) and records
/// it in the ledger, removing the files of every other cut of its time range.
struct Committer {
    ledger: Ledger,
    crash: CrashPoint,
    run_id: String,
    /// Ledger windows of another window size that overlap windows of this run without being
    /// inside one of them (a shorter `scope.window` than when they were written): their files
    /// are removed with the last window of this run that overlaps them; the starts of the
    /// windows still to commit, by ledger key.
    replaced_later: BTreeMap<String, std::collections::BTreeSet<i64>>,
}

impl Committer {
    /// Publishes `staged` and records the window. The files removed with it: what the ledger
    /// says earlier runs wrote for this time range and this run did not write again (another
    /// split, partitioning, or window size; a partition without rows now), and files of this
    /// window's name found in its partition folders that no ledger knows of.
    async fn commit(
        &mut self,
        ctx: &RunCtx<'_>,
        window: &Window,
        staged: StagedWindow,
    ) -> std::result::Result<Vec<WrittenFile>, CommitError> {
        let sink = ctx.sink;
        let StagedWindow { files, dirs } = staged;
        let fresh: std::collections::BTreeSet<String> =
            files.iter().map(|f| f.file.path.clone()).collect();
        let (removals, replaces) = match self.superseded(ctx, window, &dirs, &fresh).await {
            Ok(r) => r,
            Err(e) => {
                for f in files {
                    f.discard(sink).await;
                }
                return Err(CommitError::Window(WriteError::Cleanup(e)));
            }
        };
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
    async fn superseded(
        &mut self,
        ctx: &RunCtx<'_>,
        window: &Window,
        dirs: &BTreeMap<String, Vec<String>>,
        fresh: &std::collections::BTreeSet<String>,
    ) -> std::result::Result<(Vec<String>, Vec<String>), crate::load::store::StoreError> {
        let key = Ledger::window_key(window.start_ms, window.end_ms);
        let mut removals = std::collections::BTreeSet::new();
        let mut replaces = Vec::new();
        for (k, old) in self.ledger.overlapping(window.start_ms, window.end_ms) {
            let inside = old.start_ms >= window.start_ms && old.end_ms <= window.end_ms;
            if *k == key {
                removals.extend(old.files().filter(|f| !fresh.contains(*f)).cloned());
            } else if inside {
                removals.extend(old.files().cloned());
                replaces.push(k.clone());
            } else if let Some(waiting) = self.replaced_later.get_mut(k) {
                // Larger than this window (the window size shrank): removed with the last of
                // this run's windows that cover it (the plan holds them all).
                waiting.remove(&window.start_ms);
                if waiting.is_empty() {
                    removals.extend(old.files().cloned());
                    replaces.push(k.clone());
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
        Ok((removals.into_iter().collect(), replaces))
    }
}

/// `[start, end)` of a window, for messages.
fn window_label(window: &Window) -> String {
    format!(
        "[{}, {})",
        format_rfc3339(window.start_ms),
        format_rfc3339(window.end_ms)
    )
}

/// Names the unit a part file comes from, so that the parts of two split units (two metrics,
/// or two datacenters of one metric) in one partition never share a file name: `u` and 8 hex
/// digits of a stable hash (FNV-1a, 64 bits) of the metric and the datacenter.
fn part_unit_tag(metric: &str, datacenter: Option<&str>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = metric
        .bytes()
        .chain(std::iter::once(0))
        .chain(datacenter.unwrap_or("").bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("u{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
}

/// What the parts of a split answer brought.
struct PartsSeen {
    stats: DecodeStats,
    /// Distinct series over all parts.
    series: u64,
    /// The series of the parts, when the run tracks them (`RunCtx::track_series`).
    seen: SeenSeries,
}

/// Why writing the parts of a split answer stopped.
enum PartsFailed {
    Cancelled,
    Fetch(FetchError),
    Write(WriteError),
}

/// Writes each part of a split raw answer, as it arrives, to the part's own files
/// (`-s<i>of<n>`) of every table of the metric that is made from raw points. Each part's files
/// are completed under staging keys as soon as the part is written, so memory holds one part
/// at a time; they join `staged`, published (or removed) with the rest of the window.
async fn write_parts<'a>(
    ctx: &'a RunCtx<'a>,
    window: &Window,
    unit: &Unit,
    mut parts: RawParts,
    staged: &mut Vec<StagedFile>,
    cancel: &mut watch::Receiver<bool>,
) -> std::result::Result<PartsSeen, PartsFailed> {
    let metric_plan = &ctx.plan.metrics[unit.metric];
    let labels = raw_table_decl(metric_plan.component).label_columns();
    let server_side = ctx.pipeline.source.query_downsample;
    let tables: Vec<usize> = metric_plan
        .tables
        .iter()
        .copied()
        .filter(|&t| !(server_side && ctx.pipeline.tables[t].rollup.is_some()))
        .collect();
    let mut seen = PartsSeen {
        stats: DecodeStats::default(),
        series: 0,
        seen: SeenSeries::default(),
    };
    let mut keys = std::collections::BTreeSet::new();
    let unit_tag = part_unit_tag(&metric_plan.metric, unit.datacenter.as_deref());
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.changed() => return Err(PartsFailed::Cancelled),
            p = parts.rx.recv() => p,
        };
        let piece = match next {
            Some(Ok(piece)) => piece,
            Some(Err(e)) => return Err(PartsFailed::Fetch(e)),
            // The fetch task ended: every part was sent (a panic there is raised here).
            None => {
                parts.task.join().await;
                break;
            }
        };
        let RawPiece {
            index,
            of,
            group,
            answer,
            ..
        } = piece;
        (ctx.progress)(&Progress::Points {
            points: answer.stats.points,
        });
        seen.stats.add(&answer.stats);
        let mut series = answer.series;
        sort_series(&mut series, &labels);
        for &t in &tables {
            let group = group
                .as_deref()
                .map(|g| format!("-{g}"))
                .unwrap_or_default();
            let suffix = format!("-{unit_tag}{group}-s{index}of{of}");
            let mut w = TableWindowWriter::new(&ctx.pipeline.tables[t], ctx, window, suffix);
            if let Err(e) = w.append(&series).await {
                w.abort().await;
                return Err(PartsFailed::Write(e));
            }
            staged.extend(w.finish().await.map_err(PartsFailed::Write)?);
        }
        keys.extend(series.iter().map(|s| (s.metric.clone(), s.tags.clone())));
        if ctx.track_series {
            let (metric, component) = (&metric_plan.metric, metric_plan.component);
            let dc = unit.datacenter.as_deref();
            seen.seen.record(metric, component, dc, &series);
        }
    }
    seen.series = keys.len() as u64;
    Ok(seen)
}

/// What one unit asks the server for, owned so that the fetch runs as its own task.
struct UnitRequest {
    metric: String,
    datacenter: Option<String>,
    window: Window,
    /// A table of the metric needs raw points (a raw table, or a client-side rollup).
    raw: bool,
    /// The metric's labels, the group-by of server-side downsampling.
    labels: Vec<String>,
    /// Server-side rollup tables of the metric (`source.query_downsample`), by table index.
    rollups: Vec<(usize, Rollup)>,
    /// Client-side rollup tables of the metric, by table index: computed by the fetch task
    /// from the raw series, on the cores that decode, not by the task that writes.
    client_rollups: Vec<(usize, Rollup)>,
    /// Where a too-large raw answer may be cut: a multiple of every client-side rollup bucket
    /// of the metric, so each bucket is made from one part.
    split_align_ms: i64,
    /// The series discovery found in this unit's datacenter: how series are split when even
    /// the smallest time slice is too large.
    series: Option<Arc<KnownSeries>>,
}

/// What one unit brought: raw series for the tables that need raw points (raw tables and
/// client-side rollups), and server-computed rows per server-side rollup table.
struct UnitAnswer {
    raw: RawAnswer,
    rollups: Vec<(usize, ServerRollupAnswer)>,
    /// Per client-side rollup table: the rollup of each of `raw.series`, in the same order.
    rolled: Vec<(usize, Vec<RollupOutput>)>,
    /// The raw answer was too large to take whole (`raw` is then empty): its parts, in time
    /// order, fetched by their own task as the window takes them.
    parts: Option<RawParts>,
}

/// The parts of a split raw answer ([`MetricsClient::query_raw_split`]). The channel holds
/// one part, and the task waits for room before fetching the next, so at most two parts are
/// in memory: the one being written and the next.
struct RawParts {
    rx: mpsc::Receiver<std::result::Result<RawPiece, FetchError>>,
    task: AbortOnDrop<()>,
}

/// The requests of one unit: the raw query when a table of its metric needs raw points, and
/// with `source.query_downsample` one downsampled query per aggregate of each rollup table.
fn unit_request(ctx: &RunCtx<'_>, unit: &Unit, window: &Window) -> UnitRequest {
    let metric_plan = &ctx.plan.metrics[unit.metric];
    let server_side = ctx.pipeline.source.query_downsample;
    let tables = metric_plan
        .tables
        .iter()
        .map(|&t| (t, &ctx.pipeline.tables[t]));
    let rollups: Vec<(usize, Rollup)> = if server_side {
        tables
            .clone()
            .filter_map(|(t, spec)| spec.rollup.clone().map(|r| (t, r)))
            .collect()
    } else {
        Vec::new()
    };
    let labels = match crate::catalogue::Catalogue::builtin().get(&metric_plan.metric) {
        Some(def) => def.labels.clone(),
        None => raw_table_decl(metric_plan.component)
            .label_columns()
            .iter()
            .map(|l| l.to_string())
            .collect(),
    };
    let split_align_ms = tables
        .clone()
        .filter(|_| !server_side)
        .filter_map(|(_, spec)| spec.rollup.as_ref().map(|r| r.interval_ms))
        .fold(1000, lcm);
    let client_rollups = tables
        .clone()
        .filter(|_| !server_side)
        .filter_map(|(t, spec)| spec.rollup.clone().map(|r| (t, r)))
        .collect();
    let series = metric_plan.known_series(unit.datacenter.as_deref());
    UnitRequest {
        series,
        metric: metric_plan.metric.clone(),
        datacenter: unit.datacenter.clone(),
        window: *window,
        raw: tables
            .clone()
            .any(|(_, spec)| !server_side || spec.rollup.is_none()),
        labels,
        rollups,
        client_rollups,
        split_align_ms,
    }
}

/// Fetches one unit. The server-side rollup range is the window with its end rounded up to a
/// whole bucket (an open window's last bucket is partial either way and is fetched again by
/// the next run).
async fn fetch_unit(
    client: MetricsClient,
    req: UnitRequest,
) -> std::result::Result<UnitAnswer, FetchError> {
    let (metric, dc, window) = (&req.metric, req.datacenter.as_deref(), req.window);
    let mut parts = None;
    let raw = if req.raw {
        let range = (window.start_ms, window.fetch_end_ms);
        match client.query_raw(metric, dc, range.0, range.1).await {
            Ok(raw) => raw,
            Err(e) if matches!(e.class(), FailureClass::TooLarge | FailureClass::Opaque) => {
                if e.class() == FailureClass::Opaque {
                    // An opaque `ovh` 500 may be a fetch limit or a refused token: a one-second
                    // query tells which before splitting anything.
                    client.probe_token(metric, dc, window.start_ms).await?;
                    tracing::info!(metric, datacenter = ?dc, error = %e,
                        "opaque server error while the token works: taking it for a fetch limit");
                }
                let (tx, rx) = mpsc::channel(1);
                let request = SplitRequest {
                    metric: metric.clone(),
                    datacenter: req.datacenter.clone(),
                    range,
                    align_ms: req.split_align_ms,
                    series: req.series.clone(),
                };
                let client = client.clone();
                let task = AbortOnDrop(tokio::spawn(async move {
                    client.query_raw_split(request, e, &tx).await;
                }));
                parts = Some(RawParts { rx, task });
                RawAnswer::default()
            }
            Err(e) => return Err(e),
        }
    } else {
        RawAnswer::default()
    };
    let mut rollups = Vec::with_capacity(req.rollups.len());
    for (t, rollup) in &req.rollups {
        let bucket = rollup.interval_ms;
        let end = (window.fetch_end_ms.div_euclid(bucket)
            + i64::from(window.fetch_end_ms.rem_euclid(bucket) != 0))
            * bucket;
        let range = window.start_ms..end.min(window.end_ms);
        let answer = server_rollup::fetch(&client, metric, &req.labels, dc, rollup, range).await?;
        rollups.push((*t, answer));
    }
    let rolled = req
        .client_rollups
        .iter()
        .map(|(t, rollup)| (*t, raw.series.iter().map(|s| rollup.of(s)).collect()))
        .collect();
    Ok(UnitAnswer {
        raw,
        rollups,
        rolled,
        parts,
    })
}

/// A spawned fetch that is cancelled when its window is abandoned.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> T {
        match (&mut self.0).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a fetch task was cancelled while awaited: {e}"),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Abandons a window: every open file is aborted, every staged one removed.
async fn abort_all(writers: Vec<TableWindowWriter<'_>>, staged: Vec<StagedFile>, sink: &Sink) {
    for w in writers {
        w.abort().await;
    }
    for f in staged {
        f.discard(sink).await;
    }
}

/// A table's builder and open file for one partition.
struct PartitionState {
    builder: Builder,
    writer: PartWriter,
}

#[allow(clippy::large_enum_variant)] // one per open partition: a handful per window
enum Builder {
    Raw(RawBatchBuilder),
    Rollup(RollupBatchBuilder),
}

impl Builder {
    fn len(&self) -> usize {
        match self {
            Builder::Raw(b) => b.len(),
            Builder::Rollup(b) => b.len(),
        }
    }

    fn finish(
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
struct TableWindowWriter<'a> {
    spec: &'a TableSpec,
    ctx: &'a RunCtx<'a>,
    window: Window,
    schema: arrow::datatypes::SchemaRef,
    /// Added to the file name: empty for the window's file, `-s<i>of<n>` for a part of a split
    /// answer.
    suffix: String,
    partitions: BTreeMap<String, PartitionState>,
}

impl<'a> TableWindowWriter<'a> {
    fn new(
        spec: &'a TableSpec,
        ctx: &'a RunCtx<'a>,
        window: &Window,
        suffix: String,
    ) -> TableWindowWriter<'a> {
        let schema = match &spec.rollup {
            None => raw_schema(spec.component),
            Some(r) => rollup_schema(spec.component, &r.aggregates),
        };
        TableWindowWriter {
            spec,
            ctx,
            window: *window,
            schema,
            suffix,
            partitions: BTreeMap::new(),
        }
    }

    fn partition_path(&self, metric: &str, day_ms: i64) -> String {
        let dir = partition_dir(
            &self.spec.name,
            &self.ctx.pipeline.sink.partition_by,
            metric,
            day_ms,
        );
        let name = part_file_name(self.window.start_ms, self.window.end_ms);
        let stem = name.trim_end_matches(".parquet");
        format!("{dir}/{stem}{}.parquet", self.suffix)
    }

    fn state(&mut self, path: String) -> std::result::Result<&mut PartitionState, WriteError> {
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
    async fn append(&mut self, series: &[SeriesData]) -> std::result::Result<(), WriteError> {
        // Rollups of every series are computed first, on every core (each series alone, so
        // the result does not depend on the split), then appended in order.
        let rolled: Vec<RollupOutput> = match &self.spec.rollup {
            Some(rollup) => rollup_all(rollup, series),
            None => Vec::new(),
        };
        self.append_rolled(series, &rolled).await
    }

    /// Appends the (sorted) series of one metric whose rollups are already computed: `rolled`
    /// holds the rollup of each series, in order (empty for a raw table).
    async fn append_rolled(
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
    async fn append_rollup_rows(
        &mut self,
        rows: &[SeriesRollup],
    ) -> std::result::Result<(), WriteError> {
        for (series, rows) in rows {
            self.append_rollup_series(series, rows).await?;
        }
        Ok(())
    }

    /// Appends one series' rollup rows, each to the partition of its bucket's day.
    async fn append_rollup_series(
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

    /// The partition folders this window may write in (every day it covers; every metric of
    /// the table when partitioned by metric), where files of earlier runs are looked for.
    fn partition_dirs(&self) -> Vec<String> {
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
        out
    }

    /// Completes every file: those with a staging key wait there to be published.
    async fn finish(self) -> std::result::Result<Vec<StagedFile>, WriteError> {
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

    async fn abort(self) {
        for (_, st) in self.partitions {
            st.writer.abort().await;
        }
    }
}

/// Least common multiple of two positive durations.
fn lcm(a: i64, b: i64) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    a / gcd(a, b) * b
}

/// The rollup of each series, in order, computed on up to
/// [`crate::load::writer::encode_threads`] threads.
fn rollup_all(
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

/// Sorts `series` as [`sort_series`] does, and each table's rollups in `rolled` (one per
/// series, in the order of `series`) along with them.
fn sort_with_rollups(
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
    fn permute<T>(items: &mut Vec<T>, order: &[usize]) {
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

async fn flush_if_full(st: &mut PartitionState) -> std::result::Result<(), WriteError> {
    if st.builder.len() >= BATCH_ROWS {
        let batch = st.builder.finish()?;
        st.writer.write(&batch).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_unit_tags_are_stable_and_tell_units_apart() {
        let a = part_unit_tag("vscope.vm.cpu.usage.perc", Some("dc1"));
        assert_eq!(a, part_unit_tag("vscope.vm.cpu.usage.perc", Some("dc1")));
        assert_eq!(a.len(), 9);
        assert!(a.starts_with('u') && a[1..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, part_unit_tag("vscope.vm.cpu.usage.perc", Some("dc2")));
        assert_ne!(a, part_unit_tag("vscope.vm.cpu.usage.perc", None));
        assert_ne!(a, part_unit_tag("vscope.vm.cpu.ready", Some("dc1")));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            part_unit_tag("ab", Some("c")),
            part_unit_tag("a", Some("bc"))
        );
    }

    #[test]
    fn split_alignment_is_the_least_common_multiple() {
        assert_eq!(lcm(1000, 3_600_000), 3_600_000);
        assert_eq!(lcm(1000, 1500), 3000);
        assert_eq!(lcm(lcm(1000, 3_600_000), 86_400_000), 86_400_000);
    }

    /// The metrics client and the API v6 client of a run spend from one retry budget.
    #[tokio::test]
    async fn both_clients_of_a_run_share_its_limits() {
        let text = "name = \"t\"\n[source]\nurl = \"sim\"\nrequests_per_second = 0\n\
                    [source.ovh]\nservice_name = \"pcc-37-187-228-180\"\n\
                    [scope]\nstart = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-01T01:00:00Z\"\n\
                    [[table]]\nname = \"vm\"\nmetrics = [\"vscope.vm.cpu.usage.perc\"]\n\
                    [sink]\nurl = \"./unused\"\n";
        let pipeline = crate::config::parse(text, "t.toml", &|_| None).unwrap();
        let conn = connect(&pipeline).await.unwrap();
        let ovh = conn.ovh.as_ref().expect("[source.ovh] configured");
        assert!(std::ptr::eq(conn.client.limits(), ovh.limits()));
    }
}
