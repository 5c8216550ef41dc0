//! The datastores section: used space, its least-squares trend and the day it reaches the
//! capacity.

use std::collections::BTreeMap;

use super::super::data::{self, Component, Dataset, TableInfo};
use super::super::model::{Cell, Column, Section, Table};
use super::super::render::utc;
use super::super::stats::{Fit, Forecast, forecast};
use super::super::svg::{Line, LineChart};
use super::super::{ReportError, ReportOptions};
use super::*;
use vscope_core::semantics::time::DAY_MS;

pub(super) fn filers(
    ds: &Dataset,
    t: &TableInfo,
    opts: &ReportOptions,
    from: i64,
    to: i64,
    findings: &mut Vec<Finding>,
) -> Result<Section, ReportError> {
    let sums = data::trend_sums(ds, t, FILER_USED, from, to)?;
    let inventory = match ds.inventory(Component::Filer) {
        Some(inv) => super::super::inventory::filer_capacities(ds, inv)?,
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
        bands: Vec::new(),
        marks: Vec::new(),
        now: None,
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
