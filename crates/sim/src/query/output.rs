//! The streamed JSON answer of a plan, one batch of series at a time, in each dialect's format.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::opentsdb::row_start;
use super::{CHUNK_BYTES, Compute, Plan, ROW_SPAN_MS, RateOptions};
use crate::format::{push_go_float, push_int, push_java_double, push_str};
use crate::model::Pcc;
use crate::state::Shared;
use vscope_core::dialect::Dialect;
use vscope_core::semantics::downsample::{FillPolicy, downsample, downsample_erlenmeyer};
use vscope_core::semantics::{Aggregator, aggregate_series};

/// How values are printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// OpenTSDB, integer data without downsample or rate: JSON integers.
    Integer,
    /// OpenTSDB doubles (`Double.toString`); NaN is `"NaN"`, or `null` under fill `null`.
    Java { nan_as_null: bool },
    /// Erlenmeyer: Go floats; NaN and infinities are dropped.
    Go,
}

/// The streamed answer of a plan: a JSON array written one batch of series at a time, so that
/// memory stays bounded whatever the number of points.
pub(crate) struct Output {
    pub(super) shared: Arc<Shared>,
    pub(super) plan: Plan,
    pub(super) sub: usize,
    pub(super) pos: usize,
    pub(super) buf: Vec<(i64, f64)>,
    pub(super) wrote_any: bool,
    pub(super) opened: bool,
    pub(super) closed: bool,
}

impl Output {
    /// Prepares the stream of `plan`.
    pub(crate) fn new(shared: Arc<Shared>, plan: Plan) -> Output {
        Output {
            shared,
            plan,
            sub: 0,
            pos: 0,
            buf: Vec::new(),
            wrote_any: false,
            opened: false,
            closed: false,
        }
    }

    pub(super) fn next_item(&mut self) -> Option<(usize, usize)> {
        while let Some(sub) = self.plan.subs.get(self.sub) {
            if self.pos < sub.outputs.len() {
                self.pos += 1;
                return Some((self.sub, self.pos - 1));
            }
            self.sub += 1;
            self.pos = 0;
        }
        None
    }

    /// Computes the points of output `out_idx` of sub-query `sub` into `self.buf`; returns
    /// whether the answer object is written even when `buf` is empty (OpenTSDB lists series
    /// that had data in the scanned hour rows, with an empty `dps`).
    pub(super) fn compute(&mut self, sub: usize, out_idx: usize) -> bool {
        let plan = &self.plan;
        let pcc = &self.shared.pcc;
        let sp = &plan.subs[sub];
        let members = &sp.outputs[out_idx];
        let (start, end) = (plan.start_ms, plan.end_ms);
        self.buf.clear();
        match sp.compute {
            Compute::Raw { rate } => {
                let Some(&series) = members.first() else {
                    return false;
                };
                match rate {
                    Some(opts) => {
                        pcc.points_into(series, row_start(start), end, &mut self.buf);
                        to_rates(&mut self.buf, opts);
                        self.buf.retain(|p| p.0 >= start);
                    }
                    None => pcc.points_into(series, plan.fetch_from_ms, end, &mut self.buf),
                }
                if !self.buf.is_empty() || plan.dialect == Dialect::Ovh {
                    return false;
                }
                let scan_end = row_start(end).saturating_add(ROW_SPAN_MS - 1);
                !pcc.points(series, row_start(start), scan_end).is_empty()
            }
            Compute::Opentsdb {
                downsample: ds,
                rate,
                aggregator,
                scan,
            } => {
                let mut had_data = false;
                let mut per_series = Vec::with_capacity(members.len());
                for &i in members {
                    let raw = pcc.points(i, scan.0, scan.1 - 1);
                    had_data |= !raw.is_empty();
                    let mut pts = match &ds {
                        None => raw,
                        Some(d) => {
                            let (ts, vs): (Vec<i64>, Vec<f64>) = raw.into_iter().unzip();
                            if d.run_all {
                                downsample(&ts, &vs, d, start, end)
                            } else {
                                downsample(&ts, &vs, d, scan.0, scan.1)
                            }
                        }
                    };
                    if let Some(opts) = rate {
                        to_rates(&mut pts, opts);
                    }
                    per_series.push(pts);
                }
                let mut result = if aggregator == Aggregator::None {
                    per_series.pop().unwrap_or_default()
                } else {
                    aggregate_series(&per_series, aggregator)
                };
                result.retain(|p| (start..=end).contains(&p.0));
                self.buf = result;
                had_data
            }
            Compute::Ovh {
                spec,
                aggregator,
                rate,
            } => {
                let mut by_tick: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                for &i in members {
                    // FETCH comes before BUCKETIZE: the buckets see what it kept.
                    let (ts, vs): (Vec<i64>, Vec<f64>) =
                        pcc.points(i, plan.fetch_from_ms, end).into_iter().unzip();
                    let bucketed = downsample_erlenmeyer(&ts, &vs, &spec, aggregator, start, end);
                    let max = rate
                        .filter(|r| r.counter)
                        .and_then(|r| r.counter_max)
                        .map(|m| m as f64);
                    for (t, v) in bucketed {
                        let v = max.map_or(v, |m| v.min(m));
                        by_tick.entry(t).or_default().push(v);
                    }
                }
                self.buf = by_tick
                    .into_iter()
                    .filter_map(|(t, vs)| warp_reduce(aggregator, &vs).map(|v| (t, v)))
                    .collect();
                if let Some(opts) = rate {
                    let span = if spec.run_all || spec.interval_ms <= 0 {
                        0
                    } else {
                        spec.interval_ms
                    };
                    let count = if span == 0 {
                        1
                    } else {
                        (end.saturating_sub(start) / span).max(1)
                    };
                    warp_rate(&mut self.buf, opts, count);
                }
                false
            }
        }
    }

    /// Appends the answer object of one output, or nothing when the dialect omits it.
    pub(super) fn render(&mut self, sub: usize, out_idx: usize, out: &mut String) {
        let keep_empty = self.compute(sub, out_idx);
        let plan = &self.plan;
        let shared = &self.shared;
        let pcc = &shared.pcc;
        let sp = &plan.subs[sub];
        if plan.dialect == Dialect::Ovh {
            self.buf.retain(|p| p.1.is_finite());
        }
        if self.buf.is_empty() && !keep_empty {
            return;
        }
        let members = &sp.outputs[out_idx];
        let (tags, aggregated) = group_tags(pcc, members);
        let style = match (plan.dialect, sp.compute) {
            (Dialect::Ovh, _) => Style::Go,
            (Dialect::Opentsdb, Compute::Raw { rate: None })
                if members.first().is_some_and(|&i| pcc.is_integer(i)) =>
            {
                Style::Integer
            }
            (Dialect::Opentsdb, Compute::Opentsdb { downsample, .. }) => Style::Java {
                nan_as_null: downsample.is_some_and(|d| d.fill == FillPolicy::Null),
            },
            (Dialect::Opentsdb, _) => Style::Java { nan_as_null: false },
        };
        if self.wrote_any {
            out.push(',');
        }
        self.wrote_any = true;
        out.push_str("{\"metric\":");
        push_str(out, &sp.metric);
        out.push_str(",\"tags\":{");
        for (i, (k, v)) in tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, k);
            out.push(':');
            push_str(out, v);
        }
        out.push('}');
        if plan.dialect == Dialect::Ovh {
            out.push_str(",\"query\":{\"index\":");
            push_int(out, sp.index as i64);
            out.push('}');
        }
        out.push_str(",\"aggregateTags\":[");
        // OpenTSDB: the keys aggregated away; Erlenmeyer: the group-by keys.
        let agg_tags: &[String] = match plan.dialect {
            Dialect::Opentsdb => &aggregated,
            Dialect::Ovh => &sp.group_by,
        };
        for (i, k) in agg_tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, k);
        }
        out.push_str("],\"dps\":");
        let key = |ts: i64| {
            if plan.ms_resolution {
                ts
            } else {
                ts.div_euclid(1000)
            }
        };
        let value = |out: &mut String, v: f64| match style {
            Style::Integer => push_int(out, v as i64),
            Style::Java { nan_as_null: true } if v.is_nan() => out.push_str("null"),
            Style::Java { .. } => push_java_double(out, v),
            Style::Go => push_go_float(out, v),
        };
        let arrays = plan.arrays && plan.dialect == Dialect::Opentsdb;
        out.push(if arrays { '[' } else { '{' });
        // Go sorts map keys as strings: the numeric order unless the key widths differ.
        let same_width = match (self.buf.first(), self.buf.last()) {
            (Some(a), Some(b)) => key(a.0) >= 0 && digits(key(a.0)) == digits(key(b.0)),
            _ => true,
        };
        if plan.dialect == Dialect::Ovh && !same_width {
            let mut keyed: Vec<(String, f64)> = self
                .buf
                .iter()
                .map(|&(ts, v)| (key(ts).to_string(), v))
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            for (i, (k, v)) in keyed.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(out, k);
                out.push(':');
                value(out, *v);
            }
        } else {
            for (i, &(ts, v)) in self.buf.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if arrays {
                    out.push('[');
                    push_int(out, key(ts));
                    out.push(',');
                    value(out, v);
                    out.push(']');
                } else {
                    out.push('"');
                    push_int(out, key(ts));
                    out.push_str("\":");
                    value(out, v);
                }
            }
        }
        out.push(if arrays { ']' } else { '}' });
        out.push('}');
        let c = &shared.counters;
        c.series.fetch_add(1, Ordering::Relaxed);
        c.points.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
    }
}

impl Iterator for Output {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.closed {
            return None;
        }
        let mut out = String::with_capacity(CHUNK_BYTES + 4096);
        if !self.opened {
            out.push('[');
            self.opened = true;
        }
        while out.len() < CHUNK_BYTES {
            match self.next_item() {
                Some((sub, idx)) => self.render(sub, idx, &mut out),
                None => {
                    out.push(']');
                    if self.plan.dialect == Dialect::Ovh {
                        // Go's json.Encoder ends with a newline.
                        out.push('\n');
                    }
                    self.closed = true;
                    break;
                }
            }
        }
        Some(Ok(Bytes::from(out)))
    }
}

/// The `tags` and OpenTSDB `aggregateTags` of an answer object made of `members`: the tag
/// pairs every member shares, and the keys every member has but with different values (both
/// servers keep only the common pairs; Warp 10 does not report the others).
pub(super) fn group_tags(pcc: &Pcc, members: &[usize]) -> (BTreeMap<String, String>, Vec<String>) {
    let mut it = members.iter().map(|&i| &pcc.series()[i].tags);
    let Some(first) = it.next() else {
        return (BTreeMap::new(), Vec::new());
    };
    let mut common = first.clone();
    let mut aggregated = BTreeSet::new();
    for tags in it {
        common.retain(|k, v| match tags.get(k) {
            Some(x) if x == v => true,
            Some(_) => {
                aggregated.insert(k.clone());
                false
            }
            None => false,
        });
    }
    (common, aggregated.into_iter().collect())
}

/// Warp 10's reducer for an Erlenmeyer group-by aggregator, over the values of one tick:
/// `reducer.mean.exclude-nulls`, `reducer.sum`, `reducer.min`/`max`, `reducer.count`,
/// `N reducer.percentile` (nearest rank) and `true reducer.sd` (with Bessel's correction).
pub(super) fn warp_reduce(aggregator: Aggregator, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    if let Some(p) = aggregator.percentile() {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let rank = (p / 100.0 * n as f64).ceil() as usize;
        return Some(sorted[rank.saturating_sub(1).min(n - 1)]);
    }
    match aggregator {
        Aggregator::Dev => {
            let n = values.len();
            if n == 1 {
                return Some(0.0);
            }
            let mean = values.iter().sum::<f64>() / n as f64;
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            Some((ss / (n - 1) as f64).sqrt())
        }
        Aggregator::Count => Some(values.iter().filter(|v| !v.is_nan()).count() as f64),
        other => other.aggregate(values),
    }
}

/// Erlenmeyer's rate after REDUCE: with `counter` and a `resetValue` other than 1, values at
/// or above it become 0 first; then `mapper.rate` (per second against the previous tick, 0 on
/// the first), limited to the last `bucketcount - 1` ticks.
pub(super) fn warp_rate(points: &mut Vec<(i64, f64)>, opts: RateOptions, bucket_count: i64) {
    if opts.counter
        && let Some(reset) = opts.reset_value
        && reset != 1
    {
        for p in points.iter_mut() {
            if p.1 >= reset as f64 {
                p.1 = 0.0;
            }
        }
    }
    let mut rates = Vec::with_capacity(points.len());
    for (i, &(t, v)) in points.iter().enumerate() {
        let rate = match i.checked_sub(1).map(|j| points[j]) {
            Some((t0, v0)) if t != t0 => (v - v0) / ((t - t0) as f64 / 1000.0),
            _ => 0.0,
        };
        rates.push((t, rate));
    }
    let keep = usize::try_from(bucket_count - 1).unwrap_or(0);
    if keep > 0 && rates.len() > keep {
        rates.drain(..rates.len() - keep);
    }
    *points = rates;
}

pub(super) fn digits(v: i64) -> usize {
    v.unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1)
}

/// Turns ascending raw points into OpenTSDB per-second rates (`RateSpan`), in place: the first
/// point has no rate; with `counter`, a decrease is a roll-over at `counterMax` (or a dropped
/// point with `dropResets`), and a roll-over rate above a positive `resetValue` becomes 0.
pub(super) fn to_rates(points: &mut Vec<(i64, f64)>, opts: RateOptions) {
    let mut out = Vec::with_capacity(points.len());
    let mut prev: Option<(i64, f64)> = None;
    for &(ts, v) in points.iter() {
        if let Some((pts, pv)) = prev {
            let dt = (ts - pts) as f64 / 1000.0;
            if opts.counter && v < pv {
                if !opts.drop_resets {
                    let max = opts.counter_max.unwrap_or(i64::MAX) as f64;
                    let mut rate = (max - pv + v) / dt;
                    if let Some(reset) = opts.reset_value
                        && reset > 0
                        && rate > reset as f64
                    {
                        rate = 0.0;
                    }
                    out.push((ts, rate));
                }
            } else {
                out.push((ts, (v - pv) / dt));
            }
        }
        prev = Some((ts, v));
    }
    *points = out;
}
