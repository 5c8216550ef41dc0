//! The report's sections, built from the grouped statistics of [`super::data`]: summary
//! (period, completeness, top findings), hosts, VMs and datastores. Each section has a chart
//! and tables; the tables carry every number the charts show.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::data::{self, Component, Dataset, Kind, SeriesKey, Stats, TableInfo};
use super::model::{Cell, Column, Report, Section, Table};
use super::render::utc;
use super::stats::{Fit, Forecast, forecast};
use super::svg::{BarChart, Line, LineChart, Scatter};
use super::{PERCENTILE_DOC, ReportError, ReportOptions};
use vscope_core::semantics::time::DAY_MS;

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
            if let Some((a, b)) = data::ts_range(ds, t)? {
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

/// Builds the whole report; `explain` receives the optimised plan of one query per section.
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
    if let Some(t) = host_src {
        explain.push(format!(
            "-- hosts: {}\n{}",
            t.name,
            data::explain_stats(ds, t, &[HOST_CPU, HOST_RAM], from, to)?
        ));
        sections.push(hosts(ds, t, opts, from, to, &mut findings)?);
    }
    if let Some(t) = vm_src {
        explain.push(format!(
            "-- vms: {}\n{}",
            t.name,
            data::explain_stats(ds, t, &[VM_CPU, VM_RAM], from, to)?
        ));
        sections.push(vms(ds, t, opts, from, to, &mut findings)?);
    }
    if let Some(t) = filer_src {
        sections.push(filers(ds, t, opts, from, to, &mut findings)?);
    }
    let (summary, appendix) = summary(ds, opts, from, to, &sources, &mut findings)?;
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

fn hosts(
    ds: &Dataset,
    t: &TableInfo,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    findings: &mut Vec<Finding>,
) -> Result<Section, ReportError> {
    let thr = opts.threshold;
    let st = data::series_stats(ds, t, &[HOST_CPU, HOST_RAM], from, to)?;
    let above = data::hours_above(ds, t, &[HOST_CPU, HOST_RAM], from, to, thr)?;
    let hours = |m: &str, l: &[Option<String>]| {
        above
            .get(&(m.to_string(), l.to_vec()))
            .copied()
            .unwrap_or(0.0)
    };
    let mut rows: Vec<(f64, Vec<Option<String>>)> = objects(&st, &[HOST_CPU, HOST_RAM])
        .into_iter()
        .map(|l| {
            let cpu = stat(&st, HOST_CPU, &l)
                .and_then(|s| s.p95)
                .unwrap_or(f64::MIN);
            let ram = stat(&st, HOST_RAM, &l)
                .and_then(|s| s.p95)
                .unwrap_or(f64::MIN);
            (cpu.max(ram), l)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut table = Table {
        name: "host_usage".into(),
        title: "Hosts: CPU and RAM usage, ranked by the higher p95".into(),
        note: format!(
            "{} hours_above = hours whose average is above {thr} %.",
            source_note(t)
        ),
        source: Some(t.name.clone()),
        columns: vec![
            Column::new("rank", None),
            Column::new("datacenter", None),
            Column::new("host", None),
            Column::new("cpu_avg", Some("%")),
            Column::new("cpu_p95", Some("%")),
            Column::new("cpu_peak", Some("%")),
            Column::new("cpu_hours_above", Some("h")),
            Column::new("ram_avg", Some("%")),
            Column::new("ram_p95", Some("%")),
            Column::new("ram_peak", Some("%")),
            Column::new("ram_hours_above", Some("h")),
        ],
        rows: Vec::new(),
    };
    let (mut cats, mut cpu_p95, mut ram_p95) = (Vec::new(), Vec::new(), Vec::new());
    for (rank, (_, l)) in rows.iter().enumerate() {
        let c = stat(&st, HOST_CPU, l).copied().unwrap_or_default();
        let r = stat(&st, HOST_RAM, l).copied().unwrap_or_default();
        let (ch, rh) = (hours(HOST_CPU, l), hours(HOST_RAM, l));
        let name = name_of(l);
        for (what, s, h) in [("CPU", c, ch), ("RAM", r, rh)] {
            if let Some(p) = s.p95.filter(|p| *p >= thr) {
                findings.push((
                    1,
                    "hosts",
                    name.clone(),
                    format!("{what} p95 {p:.1} % ≥ {thr} % ({h} h above)"),
                ));
            }
        }
        cats.push(name);
        cpu_p95.push(c.p95);
        ram_p95.push(r.p95);
        table.rows.push(vec![
            Cell::Int(rank as i64 + 1),
            Cell::text(label(&(String::new(), l.clone()), 0)),
            Cell::text(l.get(1).and_then(|v| v.as_deref())),
            Cell::num(c.avg),
            Cell::num(c.p95),
            Cell::num(c.peak),
            Cell::Num(ch),
            Cell::num(r.avg),
            Cell::num(r.p95),
            Cell::num(r.peak),
            Cell::Num(rh),
        ]);
    }
    let chart = BarChart {
        title: "Host CPU and RAM usage, p95 over the period",
        value_label: "usage p95 (%)",
        categories: cats,
        series: vec![("CPU p95".into(), cpu_p95), ("RAM p95".into(), ram_p95)],
        marker: Some((thr, format!("threshold {thr} %"))),
    }
    .render();
    // Network per host and NIC.
    let net = data::series_stats(ds, t, &[HOST_RX, HOST_TX], from, to)?;
    let mut ntable = Table {
        name: "host_network".into(),
        title: "Hosts: network receive/transmit per NIC".into(),
        note: format!(
            "{} vScope gives no unit for net.rx/net.tx: values as the API reports them.",
            source_note(t)
        ),
        source: Some(t.name.clone()),
        columns: vec![
            Column::new("datacenter", None),
            Column::new("host", None),
            Column::new("nicname", None),
            Column::new("rx_avg", None),
            Column::new("rx_p95", None),
            Column::new("rx_peak", None),
            Column::new("tx_avg", None),
            Column::new("tx_p95", None),
            Column::new("tx_peak", None),
        ],
        rows: Vec::new(),
    };
    let (mut ncats, mut rx, mut tx) = (Vec::new(), Vec::new(), Vec::new());
    for l in objects(&net, &[HOST_RX, HOST_TX]) {
        let r = stat(&net, HOST_RX, &l).copied().unwrap_or_default();
        let x = stat(&net, HOST_TX, &l).copied().unwrap_or_default();
        ncats.push(name_of(&l));
        rx.push(r.p95);
        tx.push(x.p95);
        let mut row: Vec<Cell> = l.iter().map(|v| Cell::text(v.as_deref())).collect();
        row.resize(3, Cell::Null);
        row.extend([
            Cell::num(r.avg),
            Cell::num(r.p95),
            Cell::num(r.peak),
            Cell::num(x.avg),
            Cell::num(x.p95),
            Cell::num(x.peak),
        ]);
        ntable.rows.push(row);
    }
    let nchart = BarChart {
        title: "Host network per NIC, p95 over the period",
        value_label: "throughput p95 (vScope units)",
        categories: ncats,
        series: vec![("rx p95".into(), rx), ("tx p95".into(), tx)],
        marker: None,
    }
    .render();
    Ok(Section {
        id: "hosts".into(),
        title: "Hosts".into(),
        text: vec![format!(
            "{} hosts, ranked by the higher of their CPU and RAM p95. Threshold: {thr} %.",
            table.rows.len()
        )],
        charts: vec![chart, nchart],
        tables: vec![table, ntable],
    })
}

fn vms(
    ds: &Dataset,
    t: &TableInfo,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    findings: &mut Vec<Finding>,
) -> Result<Section, ReportError> {
    let metrics = [
        VM_CPU, VM_RAM, VM_READY, VM_IO_R, VM_IO_W, VM_BW_R, VM_BW_W, VM_LAT_R, VM_LAT_W,
    ];
    let st = data::series_stats(ds, t, &metrics, from, to)?;
    let p95 = |m: &str, l: &[Option<String>]| stat(&st, m, l).and_then(|s| s.p95);
    let mut objs: Vec<(f64, Vec<Option<String>>)> = objects(&st, &metrics)
        .into_iter()
        .map(|l| {
            let k = p95(VM_CPU, &l)
                .unwrap_or(f64::MIN)
                .max(p95(VM_RAM, &l).unwrap_or(f64::MIN));
            (k, l)
        })
        .collect();
    objs.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let cols: Vec<Column> = vec![
        Column::new("datacenter", None),
        Column::new("vm", None),
        Column::new("cpu_avg", Some("%")),
        Column::new("cpu_p95", Some("%")),
        Column::new("cpu_peak", Some("%")),
        Column::new("ram_avg", Some("%")),
        Column::new("ram_p95", Some("%")),
        Column::new("ram_peak", Some("%")),
        Column::new("cpu_ready_avg", Some("ms")),
        Column::new("cpu_ready_p95", Some("ms")),
        Column::new("disk_io_read_p95", Some("IO/s")),
        Column::new("disk_io_write_p95", Some("IO/s")),
        Column::new("disk_bandwidth_read_p95", None),
        Column::new("disk_bandwidth_write_p95", None),
        Column::new("disk_latency_read_p95", None),
        Column::new("disk_latency_write_p95", None),
    ];
    let mut usage = Table {
        name: "vm_usage".into(),
        title: "VMs: CPU, RAM, CPU ready and disk, ranked by the higher usage p95".into(),
        note: format!(
            "{} Bandwidth and latency have no unit in the vScope catalogue: values as reported.",
            source_note(t)
        ),
        source: Some(t.name.clone()),
        columns: cols,
        rows: Vec::new(),
    };
    let list_cols = || {
        vec![
            Column::new("datacenter", None),
            Column::new("vm", None),
            Column::new("cpu_p95", Some("%")),
            Column::new("ram_p95", Some("%")),
            Column::new("cpu_ready_p95", Some("ms")),
            Column::new("reason", None),
        ]
    };
    let mut over = Table {
        name: "vm_over_provisioned".into(),
        title: "VMs likely over-provisioned".into(),
        note: format!(
            "CPU p95 < {} % and RAM p95 < {} %: candidates for fewer vCPUs / less RAM.",
            opts.over_cpu, opts.over_ram
        ),
        source: Some(t.name.clone()),
        columns: list_cols(),
        rows: Vec::new(),
    };
    let mut under = Table {
        name: "vm_under_provisioned".into(),
        title: "VMs likely under-provisioned".into(),
        note: format!(
            "CPU p95 ≥ {thr} %, or RAM p95 ≥ {thr} %, or CPU ready p95 ≥ {} ms.",
            opts.ready_ms,
            thr = opts.threshold
        ),
        source: Some(t.name.clone()),
        columns: list_cols(),
        rows: Vec::new(),
    };
    let mut points = Vec::new();
    let mut ready_bars: Vec<(f64, String)> = Vec::new();
    for (_, l) in &objs {
        let s = |m: &str| stat(&st, m, l).copied().unwrap_or_default();
        let (c, r, rd) = (s(VM_CPU), s(VM_RAM), s(VM_READY));
        let dc = l.first().cloned().flatten();
        let vm = l.get(1).cloned().flatten();
        usage.rows.push(vec![
            Cell::text(dc.as_deref()),
            Cell::text(vm.as_deref()),
            Cell::num(c.avg),
            Cell::num(c.p95),
            Cell::num(c.peak),
            Cell::num(r.avg),
            Cell::num(r.p95),
            Cell::num(r.peak),
            Cell::num(rd.avg),
            Cell::num(rd.p95),
            Cell::num(s(VM_IO_R).p95),
            Cell::num(s(VM_IO_W).p95),
            Cell::num(s(VM_BW_R).p95),
            Cell::num(s(VM_BW_W).p95),
            Cell::num(s(VM_LAT_R).p95),
            Cell::num(s(VM_LAT_W).p95),
        ]);
        let name = name_of(l);
        let list_row = |reason: String| {
            vec![
                Cell::text(dc.as_deref()),
                Cell::text(vm.as_deref()),
                Cell::num(c.p95),
                Cell::num(r.p95),
                Cell::num(rd.p95),
                Cell::Text(reason),
            ]
        };
        let mut cls = 0;
        if let (Some(cp), Some(rp)) = (c.p95, r.p95)
            && cp < opts.over_cpu
            && rp < opts.over_ram
        {
            over.rows.push(list_row(format!(
                "CPU p95 {cp:.1} % < {} % and RAM p95 {rp:.1} % < {} %",
                opts.over_cpu, opts.over_ram
            )));
            cls = 1;
        }
        let mut reasons = Vec::new();
        if let Some(cp) = c.p95.filter(|v| *v >= opts.threshold) {
            reasons.push(format!("CPU p95 {cp:.1} % ≥ {} %", opts.threshold));
        }
        if let Some(rp) = r.p95.filter(|v| *v >= opts.threshold) {
            reasons.push(format!("RAM p95 {rp:.1} % ≥ {} %", opts.threshold));
        }
        if let Some(rp) = rd.p95.filter(|v| *v >= opts.ready_ms) {
            reasons.push(format!("CPU ready p95 {rp:.0} ms ≥ {} ms", opts.ready_ms));
        }
        if !reasons.is_empty() {
            let text = reasons.join("; ");
            findings.push((1, "vms", name.clone(), format!("under-provisioned: {text}")));
            under.rows.push(list_row(text));
            cls = 2;
        }
        if let (Some(x), Some(y)) = (c.p95, r.p95) {
            points.push((name.clone(), x, y, [0usize, 2, 3][cls]));
        }
        if let Some(v) = rd.p95 {
            ready_bars.push((v, name));
        }
    }
    if !over.rows.is_empty() {
        let names: Vec<String> = over
            .rows
            .iter()
            .take(5)
            .map(|r| match &r[1] {
                Cell::Text(s) => s.clone(),
                _ => String::new(),
            })
            .collect();
        findings.push((
            2,
            "vms",
            format!("{} VMs", over.rows.len()),
            format!(
                "likely over-provisioned (CPU p95 < {} %, RAM p95 < {} %): {}{}",
                opts.over_cpu,
                opts.over_ram,
                names.join(", "),
                if over.rows.len() > 5 { ", …" } else { "" }
            ),
        ));
    }
    let scatter = Scatter {
        title: "VM CPU p95 vs RAM p95 (blue: normal, green: over-, red: under-provisioned)",
        x_label: "CPU usage p95 (%)",
        y_label: "RAM usage p95 (%)",
        points,
        x_marks: vec![
            (opts.over_cpu, format!("over < {} %", opts.over_cpu)),
            (opts.threshold, format!("{} %", opts.threshold)),
        ],
        y_marks: vec![
            (opts.over_ram, format!("over < {} %", opts.over_ram)),
            (opts.threshold, format!("{} %", opts.threshold)),
        ],
        range: Some((0.0, 100.0)),
    }
    .render();
    ready_bars.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ready_bars.truncate(20);
    let ready_chart = BarChart {
        title: "VM CPU ready p95, top 20",
        value_label: "CPU ready p95 (ms)",
        categories: ready_bars.iter().map(|b| b.1.clone()).collect(),
        series: vec![(
            "CPU ready p95".into(),
            ready_bars.iter().map(|b| Some(b.0)).collect(),
        )],
        marker: Some((opts.ready_ms, format!("{} ms", opts.ready_ms))),
    }
    .render();
    Ok(Section {
        id: "vms".into(),
        title: "Virtual machines".into(),
        text: vec![format!(
            "{} VMs: {} likely over-provisioned, {} likely under-provisioned.",
            usage.rows.len(),
            over.rows.len(),
            under.rows.len()
        )],
        charts: vec![scatter, ready_chart],
        tables: vec![usage, over, under],
    })
}

fn filers(
    ds: &Dataset,
    t: &TableInfo,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    findings: &mut Vec<Finding>,
) -> Result<Section, ReportError> {
    let sums = data::trend_sums(ds, t, FILER_USED, from, to)?;
    let inventory = match ds.inventory(Component::Filer) {
        Some(inv) => data::filer_capacities(ds, inv)?,
        None => BTreeMap::new(),
    };
    let hourly = data::hourly_means(ds, t, FILER_USED, from, to)?;
    let end_day = (to - from) as f64 / DAY_MS as f64;
    let mut table = Table {
        name: "datastore_forecast".into(),
        title: "Datastores: used space, linear trend and forecast of the day they fill up".into(),
        note: format!(
            "{} Used space is {FILER_USED} (KB) shown in GB (1 GB = 1024² KB). Trend: least squares over the period, slope in GB/day, R² = fit confidence. Capacity: {}.",
            source_note(t),
            if opts.capacity_kb.is_some() {
                "--capacity (overrides the inventory)"
            } else {
                "latest filers inventory snapshot (size)"
            }
        ),
        source: Some(t.name.clone()),
        columns: vec![
            Column::new("datacenter", None),
            Column::new("datastore", None),
            Column::new("points", None),
            Column::new("first_used", Some("GB")),
            Column::new("last_used", Some("GB")),
            Column::new("slope", Some("GB/day")),
            Column::new("r2", None),
            Column::new("capacity", Some("GB")),
            Column::new("capacity_source", None),
            Column::new("used_pct", Some("%")),
            Column::new("days_until_full", Some("days")),
            Column::new("full_date", None),
            Column::new("forecast", None),
        ],
        rows: Vec::new(),
    };
    let mut lines = Vec::new();
    for (i, (key, s)) in sums.iter().enumerate() {
        let dc = label(key, 0).unwrap_or_default().to_string();
        let name = label(key, 1).unwrap_or_default().to_string();
        let fit = Fit::from_centred(s.n, s.mean_x, s.mean_y, s.sxx, s.sxy, s.syy);
        let (capacity, cap_src) = match opts.capacity_kb {
            Some(c) => (Some(c), "--capacity"),
            None => match inventory.get(&(dc.clone(), name.clone())) {
                Some(c) => (Some(*c), "inventory"),
                None => (None, "unknown"),
            },
        };
        let fc = forecast(fit.as_ref(), capacity, s.last, end_day);
        let (days, date, text) = match fc {
            Forecast::AlreadyFull => (Some(0.0), None, "already full".to_string()),
            Forecast::Never => (None, None, "never (flat or shrinking)".to_string()),
            Forecast::Unknown if capacity.is_none() => (None, None, "unknown capacity".into()),
            Forecast::Unknown => (None, None, "too few points".into()),
            Forecast::InDays(d) => {
                let date = utc(to + (d * DAY_MS as f64) as i64)[..10].to_string();
                (
                    Some(d),
                    Some(date.clone()),
                    format!("full in {d:.1} days ({date})"),
                )
            }
        };
        let object = format!("{dc}/{name}");
        match fc {
            Forecast::AlreadyFull => {
                findings.push((0, "datastores", object.clone(), "already full".into()))
            }
            Forecast::InDays(d) if d <= 90.0 => findings.push((
                if d <= 30.0 { 0 } else { 1 },
                "datastores",
                object.clone(),
                text.clone(),
            )),
            Forecast::InDays(d) if d <= 365.0 => {
                findings.push((2, "datastores", object.clone(), text.clone()))
            }
            _ => {}
        }
        table.rows.push(vec![
            Cell::Text(dc.clone()),
            Cell::Text(name.clone()),
            Cell::Int(s.n as i64),
            Cell::num(s.first.map(|v| v / KB_PER_GB)),
            Cell::num(s.last.map(|v| v / KB_PER_GB)),
            Cell::num(fit.map(|f| f.slope / KB_PER_GB)),
            Cell::num(fit.map(|f| f.r2)),
            Cell::num(capacity.map(|c| c / KB_PER_GB)),
            Cell::Text(cap_src.into()),
            Cell::num(match (s.last, capacity) {
                (Some(l), Some(c)) => Some(l / c * 100.0),
                _ => None,
            }),
            Cell::num(days),
            Cell::text(date.as_deref()),
            Cell::Text(text),
        ]);
        // Growth since the first hourly mean: datastores of a few TB growing by MB a day
        // would be flat lines on an absolute scale.
        let base = hourly.get(key).and_then(|p| p.first()).map(|p| p.1);
        if let (Some(pts), Some(base)) = (hourly.get(key), base) {
            lines.push(Line {
                name: name.clone(),
                points: pts
                    .iter()
                    .map(|(t, v)| (*t, (v - base) / KB_PER_GB))
                    .collect(),
                dashed: false,
                colour: i,
            });
            if let Some(f) = fit {
                let first_t = pts.first().map_or(from, |p| p.0);
                lines.push(Line {
                    name: format!("{name} trend (R² {:.2})", f.r2),
                    points: [first_t, to]
                        .iter()
                        .map(|t| {
                            (
                                *t,
                                (f.at((t - from) as f64 / DAY_MS as f64) - base) / KB_PER_GB,
                            )
                        })
                        .collect(),
                    dashed: true,
                    colour: i,
                });
            }
        }
    }
    let chart = LineChart {
        title: "Datastore growth since the period start (hourly mean) and linear trend",
        y_label: "used space growth (GB)",
        lines,
    }
    .render();
    Ok(Section {
        id: "datastores".into(),
        title: "Datastores".into(),
        text: vec![format!(
            "{} datastores. Forecasts count from the end of the period ({}).",
            table.rows.len(),
            utc(to)
        )],
        charts: vec![chart],
        tables: vec![table],
    })
}

fn summary(
    ds: &Dataset,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    sources: &[&TableInfo],
    findings: &mut Vec<Finding>,
) -> Result<(Section, Section), ReportError> {
    // Completeness on the raw tables (the data as collected), rollups only where no raw exists.
    let mut comp_tables: Vec<&TableInfo> = Vec::new();
    for c in [Component::Host, Component::Vm, Component::Filer] {
        if let Some(t) = ds.source(c, false) {
            comp_tables.push(t);
        }
    }
    let mut comp = Table {
        name: "completeness".into(),
        title: "Data completeness per series".into(),
        note: "step = median gap between consecutive points; expected = floor(period / step); missing = max(expected - present, 0); gaps = consecutive points more than 1.5 steps apart. Sorted by completeness, lowest first.".into(),
        source: Some(
            comp_tables
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
        columns: vec![
            Column::new("table", None),
            Column::new("metric", None),
            Column::new("datacenter", None),
            Column::new("object", None),
            Column::new("nicname", None),
            Column::new("step", Some("s")),
            Column::new("expected", None),
            Column::new("present", None),
            Column::new("missing", None),
            Column::new("gaps", None),
            Column::new("completeness_pct", Some("%")),
        ],
        rows: Vec::new(),
    };
    let (mut exp_total, mut present_total, mut gaps_total, mut series) = (0i64, 0i64, 0i64, 0usize);
    let mut rows = Vec::new();
    for t in &comp_tables {
        for (key, c) in data::completeness(ds, t, from, to)? {
            let expected = c
                .step_ms
                .filter(|s| *s > 0.0)
                .map(|s| ((to - from) as f64 / s).floor() as i64);
            let missing = expected.map(|e| (e - c.present).max(0));
            let pct = expected
                .filter(|e| *e > 0)
                .map(|e| c.present as f64 / e as f64 * 100.0);
            exp_total += expected.unwrap_or(c.present);
            present_total += c.present;
            gaps_total += c.gaps;
            series += 1;
            rows.push((
                pct.unwrap_or(100.0),
                vec![
                    Cell::Text(t.name.clone()),
                    Cell::Text(key.0.clone()),
                    Cell::text(label(&key, 0)),
                    Cell::text(label(&key, 1)),
                    Cell::text(label(&key, 2)),
                    Cell::num(c.step_ms.map(|s| s / 1000.0)),
                    expected.map_or(Cell::Null, Cell::Int),
                    Cell::Int(c.present),
                    missing.map_or(Cell::Null, Cell::Int),
                    Cell::Int(c.gaps),
                    Cell::num(pct),
                ],
            ));
        }
    }
    rows.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| format!("{:?}", a.1).cmp(&format!("{:?}", b.1)))
    });
    // Chart: completeness per metric (present over expected, summed over its series).
    let mut per_metric: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (_, r) in &rows {
        if let (Cell::Text(m), Cell::Int(p)) = (&r[1], &r[7]) {
            let e = match r[6] {
                Cell::Int(e) => e,
                _ => *p,
            };
            let acc = per_metric
                .entry(m.trim_start_matches("vscope.").to_string())
                .or_default();
            acc.0 += p;
            acc.1 += e;
        }
    }
    let chart = BarChart {
        title: "Data completeness per metric (present / expected points)",
        value_label: "completeness (%)",
        categories: per_metric.keys().cloned().collect(),
        series: vec![(
            "completeness".into(),
            per_metric
                .values()
                .map(|(p, e)| (*e > 0).then(|| *p as f64 / *e as f64 * 100.0))
                .collect(),
        )],
        marker: Some((100.0, "100 %".into())),
    }
    .render();
    let low: Vec<_> = rows.iter().filter(|r| r.0 < 95.0).collect();
    if !low.is_empty() {
        findings.push((
            2,
            "data",
            format!("{} series", low.len()),
            "less than 95 % of the expected points: check collection gaps".into(),
        ));
    }
    comp.rows = rows.into_iter().map(|r| r.1).collect();
    let overall = if exp_total > 0 {
        Some(present_total as f64 / exp_total as f64 * 100.0)
    } else {
        None
    };
    let mut summary = Table {
        name: "summary".into(),
        title: "Key figures".into(),
        note: String::new(),
        source: None,
        columns: vec![Column::new("item", None), Column::new("value", None)],
        rows: Vec::new(),
    };
    let mut kv = |k: &str, v: Cell| summary.rows.push(vec![Cell::Text(k.into()), v]);
    kv("period_from", Cell::Text(utc(from)));
    kv("period_to", Cell::Text(utc(to)));
    kv("period_days", Cell::Num((to - from) as f64 / DAY_MS as f64));
    kv(
        "sources",
        Cell::Text(
            sources
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    kv("series", Cell::Int(series as i64));
    kv("points_expected", Cell::Int(exp_total));
    kv("points_present", Cell::Int(present_total));
    kv("gaps", Cell::Int(gaps_total));
    kv("completeness_pct", Cell::num(overall));
    kv("threshold_pct", Cell::Num(opts.threshold));
    findings.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.cmp(b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    let mut top = Table {
        name: "findings".into(),
        title: format!("Top findings (at most {TOP_FINDINGS}, most severe first)"),
        note: format!(
            "{} findings in all; the section tables list every object.",
            findings.len()
        ),
        source: None,
        columns: vec![
            Column::new("rank", None),
            Column::new("severity", None),
            Column::new("area", None),
            Column::new("object", None),
            Column::new("finding", None),
        ],
        rows: Vec::new(),
    };
    for (i, f) in findings.iter().take(TOP_FINDINGS).enumerate() {
        top.rows.push(vec![
            Cell::Int(i as i64 + 1),
            Cell::Text(severity_name(f.0).into()),
            Cell::Text(f.1.into()),
            Cell::Text(f.2.clone()),
            Cell::Text(f.3.clone()),
        ]);
    }
    let text = vec![
        format!(
            "Period {} to {} (UTC, {:.1} days). Data completeness {}: {} of {} expected points in {} series, {} gaps.",
            utc(from),
            utc(to),
            (to - from) as f64 / DAY_MS as f64,
            overall.map_or("n/a".into(), |p| format!("{p:.2} %")),
            present_total,
            exp_total,
            series,
            gaps_total
        ),
        PERCENTILE_DOC.to_string(),
    ];
    Ok((
        Section {
            id: "summary".into(),
            title: "Summary".into(),
            text,
            charts: vec![chart],
            tables: vec![summary, top],
        },
        Section {
            id: "completeness".into(),
            title: "Appendix: completeness per series".into(),
            text: vec![
                "Every series of the raw tables (rollups where no raw table exists), least complete first."
                    .into(),
            ],
            charts: Vec::new(),
            tables: vec![comp],
        },
    ))
}
