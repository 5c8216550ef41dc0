//! The hosts section: CPU and RAM avg / p95 / peak and hours above the threshold, ranked, and
//! network per NIC.

use super::super::data::{self, Dataset, TableInfo};
use super::super::model::{Cell, Column, Section, Table};
use super::super::svg::BarChart;
use super::super::{ReportError, ReportOptions};
use super::*;

pub(super) fn hosts(
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
