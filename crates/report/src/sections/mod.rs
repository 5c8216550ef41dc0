//! The report's sections, built from the grouped statistics of [`super::data`]: summary
//! (period, completeness, top findings), hosts, VMs and datastores. Each section has a chart
//! and tables; the tables carry every number the charts show.
//!
//! One module per section; this one holds what they share (metric names, the period, the
//! findings) and [`build`], which runs them in reading order.

mod capacity;
mod filers;
mod hosts;
mod rightsizing;
mod summary;
mod vms;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::data::{Component, Dataset};
use super::data::{Kind, SeriesKey, Stats, TableInfo};
use super::model::Report;
use super::render::utc;
use super::{PERCENTILE_DOC, ReportError, ReportOptions};

const HOST_CPU: &str = "vscope.host.cpu.usage.perc";
const HOST_RAM: &str = "vscope.host.mem.usage.perc";
const HOST_RX: &str = "vscope.host.net.rx";
const HOST_TX: &str = "vscope.host.net.tx";
const VM_CPU: &str = "vscope.vm.cpu.usage.perc";
const VM_RAM: &str = "vscope.vm.mem.usage.perc";
const VM_READY: &str = "vscope.vm.cpu.ready";
const VM_IO_R: &str = "vscope.vm.disk.io.read";
const VM_IO_W: &str = "vscope.vm.disk.io.write";
const VM_BW_R: &str = "vscope.vm.disk.bandwidth.read";
const VM_BW_W: &str = "vscope.vm.disk.bandwidth.write";
const VM_LAT_R: &str = "vscope.vm.disk.latency.read";
const VM_LAT_W: &str = "vscope.vm.disk.latency.write";
const VM_NET_RX: &str = "vscope.vm.net.rx";
const VM_NET_TX: &str = "vscope.vm.net.tx";
const FILER_USED: &str = "vscope.filer.datastore.diskspace.used";
/// KB per GB (binary, as the metric's KB).
const KB_PER_GB: f64 = 1024.0 * 1024.0;
/// Findings shown in the summary.
const TOP_FINDINGS: usize = 15;

/// One finding for the summary: severity rank (0 = most severe), area, object, text.
type Finding = (u8, &'static str, String, String);

fn severity_name(s: u8) -> &'static str {
    ["critical", "high", "medium", "info"][s.min(3) as usize]
}

fn source_note(t: &TableInfo) -> String {
    match t.kind {
        Kind::Raw => format!("Source: raw table {} (every point of the period).", t.name),
        Kind::Rollup { bucket_ms } => format!(
            "Source: rollup table {} ({} s buckets): avg = count-weighted mean of bucket averages, peak = largest bucket max, p95 = p95 of the bucket p95s.",
            t.name,
            bucket_ms / 1000
        ),
        Kind::Inventory => format!("Source: inventory table {}.", t.name),
    }
}

fn label(key: &SeriesKey, i: usize) -> Option<&str> {
    key.1.get(i).and_then(|v| v.as_deref())
}

/// The period: the options', or the data's first point floored and last point rounded up to
/// whole hours.
fn period(
    ds: &Dataset,
    opts: &ReportOptions,
    sources: &[&TableInfo],
) -> Result<(i64, i64), ReportError> {
    const HOUR: i64 = 3_600_000;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    if opts.from_ms.is_none() || opts.to_ms.is_none() {
        for t in sources {
            if let Some((a, b)) = super::layout::ts_range(ds, t)? {
                lo = lo.min(a);
                let end = match t.kind {
                    Kind::Rollup { bucket_ms } => b + bucket_ms,
                    _ => b + 1,
                };
                hi = hi.max(end);
            }
        }
    }
    let from = opts.from_ms.unwrap_or(lo.div_euclid(HOUR) * HOUR);
    let to = opts
        .to_ms
        .unwrap_or((hi + HOUR - 1).div_euclid(HOUR) * HOUR);
    if lo > hi && (opts.from_ms.is_none() || opts.to_ms.is_none()) {
        return Err(ReportError::NoDataset(
            "the metric tables hold no points: give --from and --to, or run the pipeline first"
                .into(),
        ));
    }
    if to <= from {
        return Err(ReportError::Invalid(format!(
            "empty period: {} to {}",
            utc(from),
            utc(to)
        )));
    }
    Ok((from, to))
}

/// Builds the whole report; `explain` receives what the passes of the host and VM sections read.
pub fn build(
    ds: &Dataset,
    opts: &ReportOptions,
    explain: &mut Vec<String>,
) -> Result<Report, ReportError> {
    let prefer_rollup = !opts.raw_only;
    let host_src = ds.source(Component::Host, prefer_rollup);
    let vm_src = ds.source(Component::Vm, prefer_rollup);
    let filer_src = ds.source(Component::Filer, prefer_rollup);
    let sources: Vec<&TableInfo> = [host_src, vm_src, filer_src]
        .into_iter()
        .flatten()
        .collect();
    if sources.is_empty() {
        return Err(ReportError::NoDataset(format!(
            "no host, VM or filer metric table in {}",
            ds.origin
        )));
    }
    let (from, to) = period(ds, opts, &sources)?;
    let mut findings: Vec<Finding> = Vec::new();
    let mut sections = Vec::new();
    let mut vm_stats = None;
    // The planner's first questions (when does it run out, can it lose a host) come first.
    sections.push(capacity::capacity(
        ds,
        host_src,
        filer_src,
        opts,
        from,
        to,
        &mut findings,
    )?);
    if let Some(t) = host_src {
        explain.push(format!(
            "-- hosts: {}\n{}",
            t.name,
            super::profile::explain(ds, t, &[HOST_CPU, HOST_RAM], from, to)?
        ));
        sections.push(hosts::hosts(ds, t, opts, from, to, &mut findings)?);
    }
    if let Some(t) = vm_src {
        explain.push(format!(
            "-- vms: {}\n{}",
            t.name,
            super::profile::explain(ds, t, &[VM_CPU, VM_RAM], from, to)?
        ));
        let (section, st) = vms::vms(ds, t, opts, from, to, &mut findings)?;
        sections.push(section);
        vm_stats = Some((t, st));
    }
    if let Some(t) = filer_src {
        sections.push(filers::filers(ds, t, opts, from, to, &mut findings)?);
    }
    sections.push(rightsizing::rightsizing(
        ds,
        vm_stats.as_ref().map(|(t, st)| (*t, st)),
        opts,
        &mut findings,
    )?);
    let (summary, appendix) = summary::summary(ds, opts, from, to, &sources, &mut findings)?;
    sections.insert(0, summary);
    sections.push(appendix);
    let mut parameters = vec![
        ("dataset".to_string(), json!(ds.origin)),
        ("threshold_pct".into(), json!(opts.threshold)),
        (
            "over_provisioned_cpu_p95_below_pct".into(),
            json!(opts.over_cpu),
        ),
        (
            "over_provisioned_ram_p95_below_pct".into(),
            json!(opts.over_ram),
        ),
        (
            "under_provisioned_cpu_ready_p95_ms".into(),
            json!(opts.ready_ms),
        ),
        ("capacity_override_kb".into(), json!(opts.capacity_kb)),
        ("usable_cpu_pct".into(), json!(opts.usable_cpu)),
        ("usable_ram_pct".into(), json!(opts.usable_ram)),
        ("usable_datastore_pct".into(), json!(opts.usable_datastore)),
        (
            "trend_bucket_ms".into(),
            json!(capacity::bucket_ms(from, to)),
        ),
        (
            "time_remaining".into(),
            json!(
                "hourly means (host or datastore; a datacenter = the mean of its hosts' hourly means), p95 per trend bucket (a day, an hour under a week), ordinary least squares on x = days since the period start at the bucket start, 95 % prediction band fit ± t(0.975, n-2)·s·√(1 + 1/n + (x-x̄)²/Sxx); crossing of the usable capacity counted from the period end; 'already' = last bucket at or above it; 'never' = slope ≤ 0; 'beyond_horizon' = after 10 years; 'not enough data' = fewer than 3 buckets"
            ),
        ),
        ("rightsize_on".into(), json!(opts.rightsize_on.name())),
        ("idle_cpu_p95_below_pct".into(), json!(opts.idle_cpu)),
        ("idle_net_p95_below".into(), json!(opts.idle_net)),
        ("percentile".into(), json!(PERCENTILE_DOC)),
        (
            "hours_above".into(),
            json!(
                "hours whose average is above the threshold: raw = mean of each UTC hour's points; rollup = buckets whose avg is above, times bucket/1h"
            ),
        ),
        (
            "completeness".into(),
            json!(
                "per series: step = median gap between consecutive points; expected = floor(period / step); missing = max(expected - present, 0); a gap = consecutive points more than 1.5 steps apart"
            ),
        ),
        (
            "trend".into(),
            json!(
                "ordinary least squares of used space on time (days since the period start) over the period's points; R² = confidence of the fit; forecast = where the line meets the capacity, counted from the period end"
            ),
        ),
    ];
    for (c, t) in [("hosts", host_src), ("vms", vm_src), ("filers", filer_src)] {
        parameters.push((format!("source_{c}"), json!(t.map(|t| t.name.clone()))));
    }
    Ok(Report {
        title: "vScope capacity report".into(),
        from_ms: from,
        to_ms: to,
        parameters,
        sections,
    })
}

fn stat<'a>(
    m: &'a BTreeMap<SeriesKey, Stats>,
    metric: &str,
    labels: &[Option<String>],
) -> Option<&'a Stats> {
    m.get(&(metric.to_string(), labels.to_vec()))
}

/// The objects (label tuples) that have any of the metrics.
fn objects(m: &BTreeMap<SeriesKey, Stats>, metrics: &[&str]) -> BTreeSet<Vec<Option<String>>> {
    m.keys()
        .filter(|k| metrics.contains(&k.0.as_str()))
        .map(|k| k.1.clone())
        .collect()
}

fn name_of(labels: &[Option<String>]) -> String {
    labels
        .iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join("/")
}
