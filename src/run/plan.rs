//! Plan: the windows a run fetches (what the ledger does not hold as done, the lateness horizon,
//! every window of another cut it rewrites) and the series discovery finds.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::RunOptions;
use super::session::fatal_fetch;
use crate::config::{Discovery, Endpoint, Pipeline};
use crate::error::{Error, Result};
use crate::extract::{FetchError, MetricsClient};
use crate::load::state::Ledger;
use crate::ovh::Inventory;
use crate::plan::{Plan, SplitValues, Window, pipeline_metrics, plan_windows};

/// Resolves the time range and discovers series: the full plan, without fetching data.
///
/// With no `--start`/`--end` and a ledger that has a watermark, the run is incremental: it starts
/// at the watermark minus `scope.lateness` (so late points are picked up, and any window after
/// the watermark that failed before is retried). Committed, complete windows that end before the
/// re-fetch horizon are skipped unless `force` is set, so a backfill never redoes finished work.
/// A shard of a sharded run (`--shard I/N`) skips every window committed whole (no lateness
/// re-fetch: see below). Windows are fetched only up to `now - scope.settle`.
///
/// With `source.discovery = "inventory"`, `inventory` (from [`super::fetch_inventory`]) gives the
/// datacenters of each metric instead of `/api/search/lookup`.
///
/// `staged`: the starts of the windows this shard (of a sharded run) has already staged whole
/// and that wait for the other shards ([`crate::load::shards`]): done for this shard, like
/// committed ones.
pub async fn build_plan(
    pipeline: &Pipeline,
    client: &MetricsClient,
    opts: &RunOptions,
    ledger: Option<&Ledger>,
    staged: &std::collections::BTreeSet<i64>,
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
    let sharded = opts.split_shard();
    let mut windows: Vec<Window> = plan_windows(start, end, scope.window_ms, fetch_horizon)
        .into_iter()
        .filter(|w| {
            // Done: committed whole, for every table of the pipeline (a table added since is
            // backfilled), with today's partitioning, whatever the window size was then.
            let done = staged.contains(&w.start_ms)
                || ledger.is_some_and(|l| l.covers(w.start_ms, w.end_ms, &tables, &layout));
            // Shards re-fetch a window committed whole only with --force: a shard rerun
            // after its round (a retried pod) would otherwise stage again, alone, a window
            // the round already published, and no other shard would come to publish it.
            // Open windows are re-fetched by every shard, as by a single run.
            let late = w.end_ms > refetch_from && sharded.is_none();
            opts.force || !done || late
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
pub(super) fn cover_other_cuts(
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
            let cover = plan_windows(old.start_ms, old.end_ms, window_ms, fetch_horizon);
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
