//! The capacity section: time remaining per datacenter (CPU, RAM) and per datastore, and
//! whether each datacenter survives the loss of its busiest host (N+1).
//!
//! Demand is built from hourly means, the finest grain a planner's question needs and small
//! enough for a year (8,760 hours per series): a host's hourly mean (raw: the mean of the
//! hour's points; rollup: the mean of the hour's bucket averages), then per datacenter and
//! hour the mean over its hosts (its utilisation, hosts taken as equal-sized as in one OVH PCC
//! cluster) and the sum (its demand in "hosts' worth"). The trend is fitted on the p95 of each
//! bucket: a day, or an hour when the period is shorter than a week.

use std::collections::BTreeMap;

use super::super::data::{self, Dataset, SeriesKey, TableInfo};
use super::super::model::{Cell, Column, Section, Table};
use super::super::render::utc;
use super::super::stats::{HORIZON_DAYS, TimeRemaining, Trend, percentile, time_remaining};
use super::super::svg::{Band, Line, LineChart};
use super::super::{ReportError, ReportOptions};
use super::*;
use vscope_core::semantics::time::{DAY_MS, HOUR_MS};

/// Periods at least this long are bucketed by day, shorter ones by hour.
const DAILY_FROM_MS: i64 = 7 * DAY_MS;

/// The trend bucket of a period: a day, or an hour under a week.
pub(super) fn bucket_ms(from: i64, to: i64) -> i64 {
    if to - from >= DAILY_FROM_MS {
        DAY_MS
    } else {
        HOUR_MS
    }
}

/// One demand series: hourly values in, bucket p95s and their trend out.
struct Demand {
    /// `(bucket start ms, p95 of the bucket's hourly values)`, ascending.
    buckets: Vec<(i64, f64)>,
}

impl Demand {
    /// The p95 per bucket of hourly `(hour ms, value)` points (any order).
    fn of_hours(hours: &BTreeMap<i64, f64>, from: i64, bucket: i64) -> Demand {
        let mut per: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for (h, v) in hours {
            let b = from + (h - from).div_euclid(bucket) * bucket;
            per.entry(b).or_default().push(*v);
        }
        Demand {
            buckets: per
                .into_iter()
                .filter_map(|(b, v)| percentile(&v, 0.95).map(|p| (b, p)))
                .collect(),
        }
    }

    /// `(x in days since the period start, y)` for the fit.
    fn points(&self, from: i64) -> Vec<(f64, f64)> {
        self.buckets
            .iter()
            .map(|(b, y)| ((b - from) as f64 / DAY_MS as f64, *y))
            .collect()
    }
}

/// The severity of the finding a forecast makes, if any: already over the usable capacity
/// (0), or reaching it within 60 days (0) or 180 days (1). Only a trend the band bounds (its
/// lower edge crosses too) is a finding: a crossing of noise is no news.
fn remaining_severity(tr: TimeRemaining) -> Option<u8> {
    match tr {
        TimeRemaining::Already => Some(0),
        TimeRemaining::InDays {
            days,
            latest: Some(_),
            ..
        } if days <= 180.0 => Some(if days <= 60.0 { 0 } else { 1 }),
        _ => None,
    }
}

/// The plain-words forecast and its table cells: status, days, date, earliest, latest.
fn remaining_cells(tr: TimeRemaining, to: i64) -> (String, [Cell; 5]) {
    let date = |d: f64| utc(to + (d * DAY_MS as f64) as i64)[..10].to_string();
    match tr {
        TimeRemaining::NotEnoughData => (
            "not enough data (fewer than 3 buckets)".into(),
            [
                Cell::Text("not enough data".into()),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
        ),
        TimeRemaining::Already => (
            "already above the usable capacity".into(),
            [
                Cell::Text("already".into()),
                Cell::Num(0.0),
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
        ),
        TimeRemaining::Never => (
            "never (flat or falling)".into(),
            [
                Cell::Text("never".into()),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
        ),
        TimeRemaining::BeyondHorizon => (
            format!("not within {} years", HORIZON_DAYS / 365.0),
            [
                Cell::Text("beyond_horizon".into()),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
        ),
        TimeRemaining::InDays {
            days,
            earliest,
            latest,
        } => (
            format!(
                "in {days:.0} days ({}), 95 % band {} to {}",
                date(days),
                date(earliest),
                latest.map_or("beyond the horizon (trend not significant)".into(), date)
            ),
            [
                Cell::Text("in_days".into()),
                Cell::Num(days),
                Cell::Text(date(days)),
                Cell::Text(date(earliest)),
                latest.map_or(Cell::Null, |l| Cell::Text(date(l))),
            ],
        ),
    }
}

/// Where a forecast is drawn: the period, how far past its end, in which colour and with which
/// factor from the fitted unit to the chart's.
struct Plot {
    from: i64,
    to: i64,
    ahead: i64,
    colour: usize,
    scale: f64,
}

/// The chart lines of one forecast: history, trend, band, extended `ahead` ms past the end.
fn forecast_lines(
    name: &str,
    d: &Demand,
    trend: Option<&Trend>,
    p: Plot,
    out: (&mut Vec<Line>, &mut Vec<Band>),
) {
    let Plot {
        from,
        to,
        ahead,
        colour,
        scale,
    } = p;
    out.0.push(Line {
        name: name.trim_end_matches('/').to_string(),
        points: d.buckets.iter().map(|(b, v)| (*b, v * scale)).collect(),
        dashed: false,
        colour,
    });
    let Some(tr) = trend else { return };
    let x = |t: i64| (t - from) as f64 / DAY_MS as f64;
    let first = d.buckets.first().map_or(from, |b| b.0);
    let steps = 40;
    let span = to + ahead - first;
    let ts: Vec<i64> = (0..=steps).map(|i| first + span * i / steps).collect();
    // A name ending in '/' asks for an unlabelled trend and band (many series on one chart).
    let (name, quiet) = match name.strip_suffix('/') {
        Some(n) => (n, true),
        None => (name, false),
    };
    let sub = |what: &str| {
        if quiet {
            String::new()
        } else {
            format!("{name} {what}")
        }
    };
    out.0.push(Line {
        name: sub("trend"),
        points: ts.iter().map(|t| (*t, tr.fit.at(x(*t)) * scale)).collect(),
        dashed: true,
        colour,
    });
    out.1.push(Band {
        name: sub("95 % band"),
        points: ts
            .iter()
            .map(|t| {
                let (lo, hi) = tr.band(x(*t));
                (*t, lo * scale, hi * scale)
            })
            .collect(),
        colour,
    });
}

/// One datacenter's demand chart: CPU and RAM lines, bands and usable-capacity lines.
#[derive(Default)]
struct DcChart {
    lines: Vec<Line>,
    bands: Vec<Band>,
    marks: Vec<(f64, String)>,
}

/// How far past the period end a chart shows the forecast: the period's length, or up to
/// four of them to reach a crossing.
fn ahead_ms(from: i64, to: i64, tr: TimeRemaining) -> i64 {
    let len = to - from;
    match tr {
        TimeRemaining::InDays { days, .. } => {
            ((days * 1.1 * DAY_MS as f64) as i64).clamp(len, 4 * len)
        }
        _ => len,
    }
}

/// Per datacenter and hour, the hourly host means of `metric`: `dc → hour → (sum, hosts)`.
fn dc_hours(
    hourly: &BTreeMap<SeriesKey, Vec<(i64, f64)>>,
    metric: &str,
) -> BTreeMap<String, BTreeMap<i64, (f64, usize)>> {
    let mut out: BTreeMap<String, BTreeMap<i64, (f64, usize)>> = BTreeMap::new();
    for (k, pts) in hourly.iter().filter(|(k, _)| k.0 == metric) {
        let dc = label(k, 0).unwrap_or_default().to_string();
        let hours = out.entry(dc).or_default();
        for (h, v) in pts {
            let e = hours.entry(*h).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
    }
    out
}

/// The capacity section over the host table `hosts` and the filer table `filers`.
pub(super) fn capacity(
    ds: &Dataset,
    hosts: Option<&TableInfo>,
    filers: Option<&TableInfo>,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    findings: &mut Vec<Finding>,
) -> Result<Section, ReportError> {
    let bucket = bucket_ms(from, to);
    let end_day = (to - from) as f64 / DAY_MS as f64;
    let bucket_name = if bucket == DAY_MS { "day" } else { "hour" };
    let remaining_cols = || {
        vec![
            Column::new("status", None),
            Column::new("days_remaining", Some("days")),
            Column::new("date", None),
            Column::new("earliest_date", None),
            Column::new("latest_date", None),
        ]
    };
    let mut dc_table = Table {
        name: "time_remaining".into(),
        title: "Time remaining per datacenter: when CPU and RAM demand reach the usable capacity"
            .into(),
        note: format!(
            "Demand = per hour, the mean over the datacenter's hosts of each host's hourly mean usage (hosts taken as equal-sized); model = ordinary least squares on the p95 of each {bucket_name} (x = days since the period start, at the {bucket_name} start), 95 % prediction band = fit ± t(0.975, n-2)·s·√(1 + 1/n + (x-x̄)²/Sxx). Usable capacity: CPU {} %, RAM {} %. Dates count from the period end; earliest/latest = where the band's upper/lower edge crosses; latest empty = the lower edge does not cross within {} years.",
            opts.usable_cpu,
            opts.usable_ram,
            HORIZON_DAYS / 365.0
        ),
        source: hosts.map(|t| t.name.clone()),
        columns: [
            vec![
                Column::new("datacenter", None),
                Column::new("resource", None),
                Column::new("buckets", None),
                Column::new("last_p95", Some("%")),
                Column::new("slope", Some("%/day")),
                Column::new("r2", None),
                Column::new("usable", Some("%")),
            ],
            remaining_cols(),
        ]
        .concat(),
        rows: Vec::new(),
    };
    let mut headroom = Table {
        name: "headroom_n1".into(),
        title: "N+1 headroom: can each datacenter lose its busiest host?".into(),
        note: format!(
            "demand_p95 = p95 over the hours of the sum of the hosts' hourly means, in % of one host (hosts taken as equal-sized); busiest host = the highest p95 of its hourly means; after losing it, the other hosts carry the demand: utilisation_n_minus_1 = demand_p95 / (hosts - 1). survives = yes when that is at most the usable capacity (CPU {} %, RAM {} %), 'over usable' when at most 100 %, no above.",
            opts.usable_cpu, opts.usable_ram
        ),
        source: hosts.map(|t| t.name.clone()),
        columns: vec![
            Column::new("datacenter", None),
            Column::new("resource", None),
            Column::new("hosts", None),
            Column::new("busiest_host", None),
            Column::new("busiest_host_p95", Some("%")),
            Column::new("demand_p95", Some("% of a host")),
            Column::new("capacity_n_minus_1", Some("% of a host")),
            Column::new("utilisation_n_minus_1", Some("%")),
            Column::new("usable", Some("%")),
            Column::new("survives", None),
        ],
        rows: Vec::new(),
    };
    let mut charts = Vec::new();
    let mut text = vec![format!(
        "Trends are least squares on the p95 of each {bucket_name}, with a 95 % prediction band; the charts show the history, the trend and its band beyond the period end, and the usable capacity."
    )];
    if let Some(t) = hosts {
        let mut hourly = BTreeMap::new();
        for m in [HOST_CPU, HOST_RAM] {
            hourly.append(&mut data::hourly_means(ds, t, m, from, to)?);
        }
        // Per datacenter: the chart's lines and bands over both resources.
        let mut per_dc: BTreeMap<String, DcChart> = BTreeMap::new();
        for (ri, (metric, resource, usable)) in [
            (HOST_CPU, "CPU", opts.usable_cpu),
            (HOST_RAM, "RAM", opts.usable_ram),
        ]
        .into_iter()
        .enumerate()
        {
            for (dc, hours) in dc_hours(&hourly, metric) {
                let means: BTreeMap<i64, f64> = hours
                    .iter()
                    .map(|(h, (s, n))| (*h, s / *n as f64))
                    .collect();
                let d = Demand::of_hours(&means, from, bucket);
                let pts = d.points(from);
                let trend = Trend::of_points(&pts);
                let tr = time_remaining(&pts, usable, end_day);
                let (words, cells) = remaining_cells(tr, to);
                if let Some(severity) = remaining_severity(tr) {
                    let finding = if tr == TimeRemaining::Already {
                        format!("{resource} demand p95 already above the usable {usable} %")
                    } else {
                        format!("{resource} reaches the usable {usable} % {words}")
                    };
                    findings.push((severity, "capacity", dc.clone(), finding));
                }
                let mut row = vec![
                    Cell::Text(dc.clone()),
                    Cell::Text(resource.into()),
                    Cell::Int(d.buckets.len() as i64),
                    Cell::num(d.buckets.last().map(|b| b.1)),
                    Cell::num(trend.map(|t| t.fit.slope)),
                    Cell::num(trend.map(|t| t.fit.r2)),
                    Cell::Num(usable),
                ];
                row.extend(cells);
                dc_table.rows.push(row);
                let e = per_dc.entry(dc.clone()).or_default();
                e.marks
                    .push((usable, format!("usable {resource} {usable} %")));
                forecast_lines(
                    &format!("{resource} p95 per {bucket_name}"),
                    &d,
                    trend.as_ref(),
                    Plot {
                        from,
                        to,
                        ahead: ahead_ms(from, to, tr),
                        colour: ri,
                        scale: 1.0,
                    },
                    (&mut e.lines, &mut e.bands),
                );
                headroom
                    .rows
                    .push(n_plus_one(&dc, resource, usable, &hours, &hourly, metric));
            }
        }
        for (
            dc,
            DcChart {
                lines,
                bands,
                mut marks,
            },
        ) in per_dc
        {
            marks.dedup_by(|a, b| a.0 == b.0);
            if marks.len() == 1 {
                marks[0].1 = format!("usable {} %", marks[0].0);
            }
            let title = format!("{dc}: CPU and RAM demand, trend and 95 % band");
            charts.push(
                LineChart {
                    title: &title,
                    y_label: "demand p95 (% of the datacenter)",
                    lines,
                    bands,
                    marks,
                    now: Some((to, "period end".into())),
                }
                .render(),
            );
        }
        for r in &headroom.rows {
            if let (Cell::Text(dc), Cell::Text(res), Cell::Text(s)) = (&r[0], &r[1], &r[9])
                && s != "yes"
            {
                findings.push((
                    if s == "no" { 0 } else { 1 },
                    "capacity",
                    dc.clone(),
                    format!("{res}: losing the busiest host leaves the others {s} capacity"),
                ));
            }
        }
    } else {
        text.push("No host metric table: no datacenter time remaining and no N+1 headroom.".into());
    }
    let (ds_table, ds_chart) = match filers {
        Some(t) => datastores(ds, t, opts, from, to, findings)?,
        None => (None, None),
    };
    charts.extend(ds_chart);
    let mut tables = vec![dc_table, headroom];
    tables.extend(ds_table);
    Ok(Section {
        id: "capacity".into(),
        title: "Capacity: time remaining and N+1 headroom".into(),
        text,
        charts,
        tables,
    })
}

/// One row of the N+1 table for `dc` and `resource`.
fn n_plus_one(
    dc: &str,
    resource: &str,
    usable: f64,
    hours: &BTreeMap<i64, (f64, usize)>,
    hourly: &BTreeMap<SeriesKey, Vec<(i64, f64)>>,
    metric: &str,
) -> Vec<Cell> {
    let sums: Vec<f64> = hours.values().map(|(s, _)| *s).collect();
    let demand = percentile(&sums, 0.95);
    let mut busiest: Option<(f64, String)> = None;
    let mut n = 0usize;
    for (k, pts) in hourly
        .iter()
        .filter(|(k, _)| k.0 == metric && label(k, 0) == Some(dc))
    {
        n += 1;
        let v: Vec<f64> = pts.iter().map(|p| p.1).collect();
        if let Some(p) = percentile(&v, 0.95)
            && busiest.as_ref().is_none_or(|b| p > b.0)
        {
            busiest = Some((p, label(k, 1).unwrap_or_default().to_string()));
        }
    }
    let cap = (n as f64 - 1.0) * 100.0;
    let util = demand.filter(|_| n > 1).map(|d| d / (n as f64 - 1.0));
    let survives = match util {
        None => "no (a single host)".to_string(),
        Some(u) if u <= usable => "yes".into(),
        Some(u) if u <= 100.0 => "over usable".into(),
        Some(_) => "no".into(),
    };
    vec![
        Cell::Text(dc.to_string()),
        Cell::Text(resource.into()),
        Cell::Int(n as i64),
        Cell::text(busiest.as_ref().map(|b| b.1.as_str())),
        Cell::num(busiest.as_ref().map(|b| b.0)),
        Cell::num(demand),
        Cell::Num(cap),
        Cell::num(util),
        Cell::Num(usable),
        Cell::Text(survives),
    ]
}

/// Time remaining per datastore: the p95 per bucket of its hourly mean used space against
/// `usable_datastore` % of its capacity; the chart in % of the capacity.
fn datastores(
    ds: &Dataset,
    t: &TableInfo,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    findings: &mut Vec<Finding>,
) -> Result<(Option<Table>, Option<String>), ReportError> {
    let bucket = bucket_ms(from, to);
    let bucket_name = if bucket == DAY_MS { "day" } else { "hour" };
    let end_day = (to - from) as f64 / DAY_MS as f64;
    let capacities = match ds.inventory(data::Component::Filer) {
        Some(inv) => super::super::inventory::filer_capacities(ds, inv)?,
        None => BTreeMap::new(),
    };
    let hourly = data::hourly_means(ds, t, FILER_USED, from, to)?;
    let usable_pct = opts.usable_datastore;
    let mut table = Table {
        name: "datastore_time_remaining".into(),
        title: format!(
            "Time remaining per datastore: when used space reaches {usable_pct} % of the capacity"
        ),
        note: format!(
            "Used = {FILER_USED} (KB, shown in GB); model = least squares on the p95 of each {bucket_name} of the hourly mean used space, with a 95 % prediction band (see time_remaining). Capacity: {}.",
            if opts.capacity_kb.is_some() {
                "--capacity"
            } else {
                "latest filers inventory snapshot"
            }
        ),
        source: Some(t.name.clone()),
        columns: [
            vec![
                Column::new("datacenter", None),
                Column::new("datastore", None),
                Column::new("buckets", None),
                Column::new("last_p95", Some("GB")),
                Column::new("slope", Some("GB/day")),
                Column::new("capacity", Some("GB")),
                Column::new("usable", Some("GB")),
            ],
            vec![
                Column::new("status", None),
                Column::new("days_remaining", Some("days")),
                Column::new("date", None),
                Column::new("earliest_date", None),
                Column::new("latest_date", None),
            ],
        ]
        .concat(),
        rows: Vec::new(),
    };
    let (mut lines, mut bands) = (Vec::new(), Vec::new());
    for (i, (k, pts)) in hourly.iter().enumerate() {
        let dc = label(k, 0).unwrap_or_default().to_string();
        let name = label(k, 1).unwrap_or_default().to_string();
        let means: BTreeMap<i64, f64> = pts.iter().copied().collect();
        let d = Demand::of_hours(&means, from, bucket);
        let xy: Vec<(f64, f64)> = d
            .points(from)
            .into_iter()
            .map(|(x, y)| (x, y / KB_PER_GB))
            .collect();
        let cap_gb = opts
            .capacity_kb
            .or_else(|| capacities.get(&(dc.clone(), name.clone())).copied())
            .map(|c| c / KB_PER_GB);
        let trend = Trend::of_points(&xy);
        let mut row = vec![
            Cell::Text(dc.clone()),
            Cell::Text(name.clone()),
            Cell::Int(d.buckets.len() as i64),
            Cell::num(xy.last().map(|p| p.1)),
            Cell::num(trend.map(|t| t.fit.slope)),
            Cell::num(cap_gb),
            Cell::num(cap_gb.map(|c| c * usable_pct / 100.0)),
        ];
        match cap_gb {
            Some(c) => {
                let tr = time_remaining(&xy, c * usable_pct / 100.0, end_day);
                let (words, cells) = remaining_cells(tr, to);
                row.extend(cells);
                if let Some(severity) = remaining_severity(tr) {
                    let finding = if tr == TimeRemaining::Already {
                        format!("already above {usable_pct} % of its capacity")
                    } else {
                        format!("reaches {usable_pct} % {words}")
                    };
                    findings.push((severity, "datastores", format!("{dc}/{name}"), finding));
                }
                // Plotted in % of the capacity, so datastores of any size share the chart.
                let scale = 100.0 / (c * KB_PER_GB);
                let trend_kb = Trend::of_points(&d.points(from));
                forecast_lines(
                    &format!("{name}/"),
                    &d,
                    trend_kb.as_ref(),
                    Plot {
                        from,
                        to,
                        ahead: ahead_ms(from, to, tr),
                        colour: i,
                        scale,
                    },
                    (&mut lines, &mut bands),
                );
            }
            None => row.extend([
                Cell::Text("unknown capacity".into()),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ]),
        }
        table.rows.push(row);
    }
    let chart = (!lines.is_empty()).then(|| {
        LineChart {
            title: "Datastores: used space in % of the capacity, trend (dashed) and 95 % band",
            y_label: "used p95 (% of capacity)",
            lines,
            bands,
            marks: vec![(usable_pct, format!("usable {usable_pct} %"))],
            now: Some((to, "period end".into())),
        }
        .render()
    });
    Ok((Some(table), chart))
}
