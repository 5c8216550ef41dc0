//! The VMs section: usage, CPU ready and disk per VM, and the over- and under-provisioned
//! lists.

use super::super::data::{self, Dataset, TableInfo};
use super::super::data::{SeriesKey, Stats};
use super::super::model::{Cell, Column, Section, Table};
use super::super::svg::{BarChart, Scatter};
use super::super::{ReportError, ReportOptions};
use super::*;
use std::collections::BTreeMap;

pub(super) fn vms(
    ds: &Dataset,
    t: &TableInfo,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    findings: &mut Vec<Finding>,
) -> Result<(Section, BTreeMap<SeriesKey, Stats>), ReportError> {
    let metrics = [
        VM_CPU, VM_RAM, VM_READY, VM_IO_R, VM_IO_W, VM_BW_R, VM_BW_W, VM_LAT_R, VM_LAT_W,
    ];
    // Network too, read once here for the reclaimable VMs (rightsizing section).
    let mut all = metrics.to_vec();
    all.extend([VM_NET_RX, VM_NET_TX]);
    let st = data::series_stats(ds, t, &all, from, to)?;
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
    let section = Section {
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
    };
    Ok((section, st))
}
