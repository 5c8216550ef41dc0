//! Planning: the windows a run covers and the work units in each, computed from the pipeline,
//! the catalogue and the series the server knows. Deterministic for the same inputs.
//!
//! Windows sit on a fixed grid (`k · window` since the epoch), so any two runs agree on them:
//! the requested range is widened to whole windows, and a rerun of a window replaces its files
//! instead of adding overlapping ones. Only "now" cuts a window short (the open window), and
//! such a window is recorded as incomplete and fetched again by the next run.

use crate::catalogue::{Catalogue, Component};
use crate::config::Pipeline;
pub use crate::extract::series_group::KnownSeries;
use crate::semantics::time::format_rfc3339;

/// One extraction and commit unit of time, half-open `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Grid-aligned start.
    pub start_ms: i64,
    /// Grid-aligned end (exclusive).
    pub end_ms: i64,
    /// Data is fetched in `[start_ms, fetch_end_ms)`; less than `end_ms` only for the window
    /// that contains "now".
    pub fetch_end_ms: i64,
}

impl Window {
    /// True when the whole window is fetched (it does not contain "now").
    pub fn complete(&self) -> bool {
        self.fetch_end_ms == self.end_ms
    }
}

/// Which share of the work this process handles (`--shard I/N`): the units of every window
/// (metric × datacenter × window) are dealt to the N shards by a stable hash
/// ([`Shard::owns`]), so any range, even one window, spreads over all of them, every process
/// agrees on who does what, and a shard run again does the same units. Each shard writes its
/// own files (`…-h<I>of<N>.parquet`); a window is published when all N shards have staged it
/// ([`crate::load::shards`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// The shard of `count` that fetches `metric` in `datacenter` for the window starting at
    /// `window_start_ms`: a stable hash (FNV-1a, the same on every machine and version) mod N.
    /// The window is part of the hash so that a large metric does not land on the same shard in
    /// every window.
    pub fn of_unit(
        metric: &str,
        datacenter: Option<&str>,
        window_start_ms: i64,
        count: u32,
    ) -> u32 {
        let h = vscope_core::hash::StableHasher::new()
            .write(metric.as_bytes())
            .write(&[0])
            .write(datacenter.unwrap_or("").as_bytes())
            .write(&[0])
            .write(&window_start_ms.to_le_bytes())
            .finish();
        (h % u64::from(count.max(1))) as u32
    }

    /// True when this shard fetches that unit ([`Shard::of_unit`]).
    pub fn owns(&self, metric: &str, datacenter: Option<&str>, window_start_ms: i64) -> bool {
        Shard::of_unit(metric, datacenter, window_start_ms, self.count) == self.index
    }

    /// More than one shard: the run stages its windows for publication by the last shard.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let err = || format!("'{s}' is not a shard: write I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: u32 = i.trim().parse().map_err(|_| err())?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

/// The windows covering `[range_start, range_end)`: grid cells of `window_ms` from the cell
/// holding `range_start` to the cell holding `range_end - 1`. A cell is fetched up to
/// `min(cell end, now)` (whole seconds); cells entirely after `now` are left out.
pub fn plan_windows(range_start: i64, range_end: i64, window_ms: i64, now_ms: i64) -> Vec<Window> {
    let first = range_start.div_euclid(window_ms);
    let last = (range_end - 1).div_euclid(window_ms);
    let now_s = now_ms.div_euclid(1000) * 1000;
    (first..=last)
        .map(|k| {
            let start_ms = k * window_ms;
            let end_ms = start_ms + window_ms;
            Window {
                start_ms,
                end_ms,
                fetch_end_ms: end_ms.min(now_s),
            }
        })
        .filter(|w| w.fetch_end_ms > w.start_ms)
        .collect()
}

/// What the planner knows of one metric.
#[derive(Debug, Clone)]
pub struct MetricPlan {
    /// Metric name.
    pub metric: String,
    /// Its component.
    pub component: Component,
    /// Indexes of the pipeline tables it feeds.
    pub tables: Vec<usize>,
    /// Datacenters with series of this metric (`None`: no discovery, one unit for all).
    pub datacenters: Option<Vec<String>>,
    /// Series the server reported, when discovered.
    pub series: Option<usize>,
    /// The series discovery found, per datacenter, as their values of the labels that tell this
    /// metric's series apart (the catalogue labels after `datacenter`: `vm`, `host` and
    /// `nicname`, `datastore`). Used only to balance series groups when an answer is too large
    /// even for the smallest time slice ([`crate::extract::series_group`]); `None` without
    /// discovery.
    pub split_values: Option<SplitValues>,
}

/// Discovered series of one metric per datacenter (see [`MetricPlan::split_values`]).
#[derive(Debug, Clone, Default)]
pub struct SplitValues {
    /// Per datacenter: the labels every discovered series there has, and each series' values of
    /// them, in that order.
    pub by_datacenter: std::collections::BTreeMap<String, std::sync::Arc<KnownSeries>>,
}

impl SplitValues {
    /// Collects the discovered series per datacenter from their tag sets; `labels` are the
    /// metric's labels other than `datacenter`, in catalogue order. A tag set without a
    /// datacenter is skipped.
    pub fn from_tag_sets<'a>(
        labels: &[String],
        tag_sets: impl IntoIterator<Item = &'a std::collections::BTreeMap<String, String>>,
    ) -> SplitValues {
        let mut by: std::collections::BTreeMap<
            String,
            Vec<&'a std::collections::BTreeMap<String, String>>,
        > = Default::default();
        for tags in tag_sets {
            if let Some(dc) = tags.get("datacenter") {
                by.entry(dc.clone()).or_default().push(tags);
            }
        }
        let by_datacenter = by
            .into_iter()
            .map(|(dc, sets)| {
                let labels: Vec<String> = labels
                    .iter()
                    .filter(|l| sets.iter().all(|t| t.contains_key(*l)))
                    .cloned()
                    .collect();
                let mut rows: Vec<Vec<String>> = sets
                    .iter()
                    .map(|t| labels.iter().map(|l| t[l].clone()).collect())
                    .collect();
                rows.sort();
                rows.dedup();
                (dc, std::sync::Arc::new(KnownSeries { labels, rows }))
            })
            .collect();
        SplitValues { by_datacenter }
    }
}

impl MetricPlan {
    /// The series discovery found in `datacenter`, when it found any there.
    pub fn known_series(&self, datacenter: Option<&str>) -> Option<std::sync::Arc<KnownSeries>> {
        self.split_values
            .as_ref()?
            .by_datacenter
            .get(datacenter?)
            .cloned()
    }

    /// The labels that tell this metric's series apart within a datacenter (catalogue order).
    pub fn split_labels(&self) -> Vec<String> {
        Catalogue::builtin()
            .get(&self.metric)
            .map(|m| {
                m.labels
                    .iter()
                    .filter(|l| l.as_str() != "datacenter")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `(metric index, datacenter)` units of one window for this metric.
    fn units(&self) -> Vec<Option<String>> {
        match &self.datacenters {
            None => vec![None],
            Some(dcs) => dcs.iter().cloned().map(Some).collect(),
        }
    }
}

/// One request's worth of work in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Index into [`Plan::metrics`].
    pub metric: usize,
    /// Datacenter filter.
    pub datacenter: Option<String>,
}

/// A whole run's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Widened range start.
    pub range_start_ms: i64,
    /// Widened range end.
    pub range_end_ms: i64,
    /// Windows, in time order.
    pub windows: Vec<Window>,
    /// Metrics to extract, sorted by name (the row order of every file).
    pub metrics: Vec<MetricPlan>,
    /// Ledger windows of another window size that this run rewrites in today's windows: by
    /// ledger key, the starts of the planned windows that cover each. Their files are removed
    /// with the last of those windows.
    pub supersede: std::collections::BTreeMap<String, Vec<i64>>,
}

impl Plan {
    /// The units of one window, in metric then datacenter order (the order rows are written).
    pub fn units(&self) -> Vec<Unit> {
        self.metrics
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                m.units().into_iter().map(move |dc| Unit {
                    metric: i,
                    datacenter: dc,
                })
            })
            .collect()
    }

    /// The units of the window starting at `window_start_ms` that `shard` fetches (all of
    /// them without a shard), in plan order.
    pub fn units_of(&self, window_start_ms: i64, shard: Option<Shard>) -> Vec<Unit> {
        let mut units = self.units();
        if let Some(s) = shard {
            units.retain(|u| {
                s.owns(
                    &self.metrics[u.metric].metric,
                    u.datacenter.as_deref(),
                    window_start_ms,
                )
            });
        }
        units
    }

    /// Units in all windows.
    pub fn total_units(&self) -> usize {
        self.units().len() * self.windows.len()
    }

    /// Series discovered in all metrics.
    pub fn series_discovered(&self) -> usize {
        self.metrics.iter().filter_map(|m| m.series).sum()
    }

    /// A human-readable description for `vscope-etl plan`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let units = self.units().len();
        out.push_str(&format!(
            "range    {} .. {} ({} windows)\n",
            format_rfc3339(self.range_start_ms),
            format_rfc3339(self.range_end_ms),
            self.windows.len()
        ));
        out.push_str(&format!(
            "units    {} per window, {} in all; {} series discovered\n",
            units,
            self.total_units(),
            self.series_discovered()
        ));
        out.push_str("metrics\n");
        for m in &self.metrics {
            let dcs = match &m.datacenters {
                None => "all datacenters in one request".to_string(),
                Some(d) if d.is_empty() => "no series on the server".to_string(),
                Some(d) => d.join(", "),
            };
            let series = m.series.map_or(String::new(), |s| format!("{s} series, "));
            out.push_str(&format!("  {:<45} {}{}\n", m.metric, series, dcs));
        }
        out.push_str("windows\n");
        for w in &self.windows {
            let note = if w.complete() {
                String::new()
            } else {
                format!(" (open: fetched until {})", format_rfc3339(w.fetch_end_ms))
            };
            out.push_str(&format!(
                "  [{}, {}){}\n",
                format_rfc3339(w.start_ms),
                format_rfc3339(w.end_ms),
                note
            ));
        }
        out
    }
}

/// The metrics a pipeline needs (union of its tables), sorted, each with its tables.
pub fn pipeline_metrics(pipeline: &Pipeline) -> Vec<MetricPlan> {
    let catalogue = Catalogue::builtin();
    let mut names: Vec<&String> = pipeline.tables.iter().flat_map(|t| &t.metrics).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| MetricPlan {
            metric: name.clone(),
            component: catalogue
                .get(name)
                .map(|m| m.component)
                .expect("tables hold catalogue metrics"),
            tables: pipeline
                .tables
                .iter()
                .enumerate()
                .filter(|(_, t)| t.metrics.contains(name))
                .map(|(i, _)| i)
                .collect(),
            datacenters: None,
            series: None,
            split_values: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;

    #[test]
    fn windows_are_grid_cells_covering_the_range() {
        let w = plan_windows(H / 2, 3 * H, H, i64::MAX);
        let bounds: Vec<(i64, i64)> = w.iter().map(|w| (w.start_ms, w.end_ms)).collect();
        assert_eq!(bounds, [(0, H), (H, 2 * H), (2 * H, 3 * H)]);
        assert!(w.iter().all(Window::complete));
    }

    #[test]
    fn now_cuts_the_open_window_and_drops_future_ones() {
        let w = plan_windows(0, 5 * H, H, H + 1234);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].fetch_end_ms, H + 1000);
        assert!(!w[1].complete());
    }

    #[test]
    fn shards_deal_every_unit_to_exactly_one_and_spread_one_window() {
        let metrics: Vec<String> = (0..20).map(|i| format!("vscope.m{i}")).collect();
        for count in [1u32, 2, 3, 4] {
            let mut per_shard = vec![0usize; count as usize];
            for m in &metrics {
                for dc in [Some("dc1"), Some("dc2"), None] {
                    let owners: Vec<u32> = (0..count)
                        .filter(|&i| Shard { index: i, count }.owns(m, dc, 7 * H))
                        .collect();
                    assert_eq!(owners.len(), 1, "{m} {dc:?} of {count}");
                    assert_eq!(owners[0], Shard::of_unit(m, dc, 7 * H, count));
                    per_shard[owners[0] as usize] += 1;
                }
            }
            // 60 units of one window: every shard gets some.
            assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
        }
        // Stable: the same unit goes to the same shard on every machine and version (FNV-1a of
        // metric NUL datacenter NUL window start as 8 little-endian bytes, computed by hand).
        assert_eq!(Shard::of_unit("vscope.vm.cpu.usage", Some("dc1"), 0, 4), 1);
        assert_eq!(
            Shard::of_unit("vscope.host.cpu.usage", Some("dc2"), 1_793_491_200_000, 4),
            2
        );
        assert_eq!(
            Shard::of_unit("vscope.host.cpu.usage", Some("dc2"), 1_793_491_200_000, 3),
            0
        );
        assert!("3/3".parse::<Shard>().is_err());
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
    }

    proptest! {
        #[test]
        fn windows_tile_a_superset_of_the_range_exactly_once(
            start in -10_000_000_000i64..10_000_000_000, len in 1i64..500_000_000, w_idx in 0usize..4,
        ) {
            let window = [60_000, H, 6 * H, 24 * H][w_idx];
            let ws = plan_windows(start, start + len, window, i64::MAX);
            prop_assert!(ws[0].start_ms <= start);
            prop_assert!(ws.last().unwrap().end_ms >= start + len);
            for pair in ws.windows(2) {
                prop_assert_eq!(pair[0].end_ms, pair[1].start_ms);
            }
            for w in &ws {
                prop_assert_eq!(w.start_ms.rem_euclid(window), 0);
                prop_assert_eq!(w.end_ms - w.start_ms, window);
                // Every window intersects the range: no window is planned for nothing.
                prop_assert!(w.start_ms < start + len && w.end_ms > start);
            }
        }
    }
}
