//! The summary (period, completeness, key figures, top findings) and the completeness
//! appendix.

use std::collections::BTreeMap;

use super::super::data::{Component, Dataset, TableInfo};
use super::super::model::{Cell, Column, Section, Table};
use super::super::render::utc;
use super::super::svg::BarChart;
use super::super::{PERCENTILE_DOC, ReportError, ReportOptions};
use super::*;
use vscope_core::semantics::time::DAY_MS;

pub(super) fn summary(
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
        for (key, c) in crate::completeness::completeness(ds, t, from, to)? {
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
