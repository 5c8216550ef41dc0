//! Parts: an answer too large to take whole, written piece by piece to files of their own as the
//! pieces arrive.

use tokio::sync::watch;

use super::files::TableWindowWriter;
use super::unit::RawParts;
use super::{Progress, RunCtx};
use crate::extract::split::RawPiece;
use crate::extract::{DecodeStats, FetchError};
use crate::load::writer::{StagedFile, WriteError};
use crate::ovh::inventory::SeenSeries;
use crate::plan::{Unit, Window};
use crate::schema::raw_table_decl;
use crate::transform::sort_series;

/// What the parts of a split answer brought.
pub(super) struct PartsSeen {
    pub(super) stats: DecodeStats,
    /// Distinct series over all parts.
    pub(super) series: u64,
    /// The series of the parts, when the run tracks them (`RunCtx::track_series`).
    pub(super) seen: SeenSeries,
}

/// Why writing the parts of a split answer stopped.
pub(super) enum PartsFailed {
    Cancelled,
    Fetch(FetchError),
    Write(WriteError),
}

/// Writes each part of a split raw answer, as it arrives, to the part's own files
/// (`-s<i>of<n>`) of every table of the metric that is made from raw points. Each part's files
/// are completed under staging keys as soon as the part is written, so memory holds one part
/// at a time; they join `staged`, published (or removed) with the rest of the window.
pub(super) async fn write_parts<'a>(
    ctx: &'a RunCtx<'a>,
    window: &Window,
    unit: &Unit,
    parts: RawParts,
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
    let (mut rx, task) = parts.start();
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
            p = rx.recv() => p,
        };
        let piece = match next {
            Some(Ok(piece)) => piece,
            Some(Err(e)) => return Err(PartsFailed::Fetch(e)),
            // The fetch task ended: every part was sent (a panic there is raised here).
            None => {
                task.join().await;
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

/// Names the unit a part file comes from, so that the parts of two split units (two metrics,
/// or two datacenters of one metric) in one partition never share a file name: `u` and 8 hex
/// digits of a stable hash (FNV-1a, 64 bits) of the metric and the datacenter.
pub(super) fn part_unit_tag(metric: &str, datacenter: Option<&str>) -> String {
    let h = vscope_core::hash::StableHasher::new()
        .write(metric.as_bytes())
        .write(&[0])
        .write(datacenter.unwrap_or("").as_bytes())
        .finish();
    format!("u{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_unit_tags_are_stable_and_tell_units_apart() {
        let a = part_unit_tag("vscope.vm.cpu.usage.perc", Some("dc1"));
        // Pinned: it names files, a rerun must find the same names.
        assert_eq!(a, "ue24396d8");
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
}
