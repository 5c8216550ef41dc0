//! Every per-series statistic of a metric table over the period, computed in streaming passes
//! ([`super::scan`]) with memory bounded by the number of series, whatever the period's length:
//!
//! - the **profile** pass (one per table and period, cached in the [`Dataset`]): mean, peak,
//!   points, the least-squares sums of the trend (Welford's updates, merged with Chan's
//!   formulas), completeness (present points, first/last, a count per distinct gap between
//!   consecutive points, from which the median step and the gaps follow exactly), and the
//!   count, minimum and maximum of the percentile column;
//! - the **exact percentile**, without holding a series' values: each refinement pass counts a
//!   series' values in [`BINS`] equal bins of the range known to hold the two ranks the type-7
//!   percentile interpolates between (first the series' whole range), then narrows the range to
//!   the bins holding them; once the range holds at most [`COLLECT_MAX`] values, one more pass
//!   collects them and the ranks are read off the sorted few. Typically three passes in all
//!   (profile, histogram, collect); values are compared by their IEEE order key, so the result
//!   is the one a sort of all the values gives, bit for bit;
//! - **hourly** means (and rollup buckets above a threshold) for the few series that need a
//!   curve (hosts, datastores).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::ReportError;
use super::data::{Dataset, Kind, SeriesKey, TableInfo};
use super::scan::{self, Pass, Registry, Rows, SKIP, Visitor};
use vscope_core::semantics::time::DAY_MS;

/// Bins of one refinement pass per series (4 bytes each while the series is refined).
pub const BINS: usize = 1024;
/// A series' values are collected once its candidate range holds at most this many.
pub const COLLECT_MAX: u64 = 4096;

/// A total order on `f64` as `u64` (IEEE 754 bits, negatives flipped): `a < b` as numbers iff
/// `key(a) < key(b)` (with -0 before +0), so ranges of values are ranges of keys.
pub fn order_key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

/// The value of an order key.
pub fn from_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// A series' statistics from the profile pass.
#[derive(Debug, Clone)]
pub struct SeriesProfile {
    /// Rows of the period (any value).
    pub rows: u64,
    /// Non-null values of the percentile column (raw `value`, rollup `p95`).
    pub p_n: u64,
    p_min: u64,
    p_max: u64,
    w_sum: f64,
    w_den: f64,
    w_any: bool,
    peak: f64,
    /// Raw points behind the numbers (rollup: summed bucket counts).
    pub points: i64,
    // Trend (x = days since the period start, y = value or avg): Welford's running sums.
    t_n: u64,
    mx: f64,
    my: f64,
    m2x: f64,
    m2y: f64,
    cxy: f64,
    first: (i64, f64),
    last: (i64, f64),
    // Completeness.
    present: i64,
    c_first: i64,
    c_last: i64,
    /// Distinct gaps between consecutive present points with their counts, sorted by gap.
    gaps: Vec<(i64, u64)>,
    /// A point came before the previous one (unsorted rows, or files overlapping in time).
    pub unsorted: bool,
}

impl Default for SeriesProfile {
    fn default() -> Self {
        SeriesProfile {
            rows: 0,
            p_n: 0,
            p_min: u64::MAX,
            p_max: 0,
            w_sum: 0.0,
            w_den: 0.0,
            w_any: false,
            peak: f64::NEG_INFINITY,
            points: 0,
            t_n: 0,
            mx: 0.0,
            my: 0.0,
            m2x: 0.0,
            m2y: 0.0,
            cxy: 0.0,
            first: (i64::MAX, f64::NAN),
            last: (i64::MIN, f64::NAN),
            present: 0,
            c_first: i64::MAX,
            c_last: i64::MIN,
            gaps: Vec::new(),
            unsorted: false,
        }
    }
}

fn add_gap(gaps: &mut Vec<(i64, u64)>, gap: i64, count: u64) {
    match gaps.binary_search_by_key(&gap, |g| g.0) {
        Ok(i) => gaps[i].1 += count,
        Err(i) => gaps.insert(i, (gap, count)),
    }
}

impl SeriesProfile {
    fn percentile_value(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        self.p_n += 1;
        let k = order_key(v);
        self.p_min = self.p_min.min(k);
        self.p_max = self.p_max.max(k);
    }

    fn trend(&mut self, t: i64, x: f64, y: f64) {
        if y.is_nan() {
            return;
        }
        self.t_n += 1;
        let n = self.t_n as f64;
        let dx = x - self.mx;
        let dy = y - self.my;
        self.mx += dx / n;
        self.my += dy / n;
        self.m2x += dx * (x - self.mx);
        self.m2y += dy * (y - self.my);
        self.cxy += dx * (y - self.my);
        if t < self.first.0 {
            self.first = (t, y);
        }
        if t >= self.last.0 {
            self.last = (t, y);
        }
    }

    fn present_at(&mut self, t: i64) {
        if self.present > 0 {
            if t < self.c_last {
                self.unsorted = true;
            } else {
                let gap = t - self.c_last;
                match self.gaps.last_mut() {
                    Some(g) if g.0 == gap => g.1 += 1,
                    _ => add_gap(&mut self.gaps, gap, 1),
                }
            }
        } else {
            self.c_first = t;
        }
        self.present += 1;
        self.c_last = self.c_last.max(t);
    }

    /// Adds `later` (rows of later files).
    fn merge(&mut self, later: &SeriesProfile) {
        self.rows += later.rows;
        self.p_n += later.p_n;
        self.p_min = self.p_min.min(later.p_min);
        self.p_max = self.p_max.max(later.p_max);
        self.w_sum += later.w_sum;
        self.w_den += later.w_den;
        self.w_any |= later.w_any;
        self.peak = self.peak.max(later.peak);
        self.points += later.points;
        if later.t_n > 0 {
            if self.t_n == 0 {
                (self.t_n, self.mx, self.my, self.m2x, self.m2y, self.cxy) = (
                    later.t_n, later.mx, later.my, later.m2x, later.m2y, later.cxy,
                );
            } else {
                let (na, nb) = (self.t_n as f64, later.t_n as f64);
                let n = na + nb;
                let dx = later.mx - self.mx;
                let dy = later.my - self.my;
                self.mx += dx * nb / n;
                self.my += dy * nb / n;
                self.m2x += later.m2x + dx * dx * na * nb / n;
                self.m2y += later.m2y + dy * dy * na * nb / n;
                self.cxy += later.cxy + dx * dy * na * nb / n;
                self.t_n += later.t_n;
            }
            if later.first.0 < self.first.0 {
                self.first = later.first;
            }
            if later.last.0 >= self.last.0 {
                self.last = later.last;
            }
        }
        if later.present > 0 {
            if self.present > 0 {
                if later.c_first < self.c_last {
                    self.unsorted = true;
                } else {
                    add_gap(&mut self.gaps, later.c_first - self.c_last, 1);
                }
            } else {
                self.c_first = later.c_first;
            }
            for (g, c) in &later.gaps {
                add_gap(&mut self.gaps, *g, *c);
            }
            self.present += later.present;
            self.c_first = self.c_first.min(later.c_first);
            self.c_last = self.c_last.max(later.c_last);
        }
        self.unsorted |= later.unsorted;
    }

    /// The time-weighted mean (raw: mean of the points; rollup: count-weighted mean of the
    /// bucket averages).
    pub fn avg(&self) -> Option<f64> {
        (self.w_any && self.w_den != 0.0).then(|| self.w_sum / self.w_den)
    }

    /// The highest value (raw) or bucket max (rollup).
    pub fn peak(&self) -> Option<f64> {
        (self.peak > f64::NEG_INFINITY).then_some(self.peak)
    }

    /// The trend's centred least-squares sums, when the series has a value.
    pub fn trend_sums(&self) -> Option<super::data::TrendSums> {
        (self.t_n > 0).then_some(super::data::TrendSums {
            n: self.t_n,
            mean_x: self.mx,
            mean_y: self.my,
            sxx: self.m2x,
            sxy: self.cxy,
            syy: self.m2y,
            first: Some(self.first.1),
            last: Some(self.last.1),
            last_ms: self.last.0,
        })
    }

    /// Completeness, when the series has a present point (and its rows came in time order).
    pub fn completeness(&self) -> Option<super::completeness::Completeness> {
        if self.present == 0 {
            return None;
        }
        let m: u64 = self.gaps.iter().map(|g| g.1).sum();
        let step = (m > 0).then(|| {
            let pos = (m - 1) as f64 * 0.5;
            let at = |rank: u64| {
                let mut seen = 0;
                for (g, c) in &self.gaps {
                    seen += c;
                    if rank < seen {
                        return *g as f64;
                    }
                }
                f64::NAN
            };
            let (lo, hi) = (at(pos.floor() as u64), at(pos.ceil() as u64));
            lo + (hi - lo) * (pos - pos.floor())
        });
        let gaps = step.map_or(0, |s| {
            self.gaps
                .iter()
                .filter(|g| g.0 as f64 > s * 1.5)
                .map(|g| g.1 as i64)
                .sum()
        });
        Some(super::completeness::Completeness {
            step_ms: step,
            present: self.present,
            gaps,
            first_ms: self.c_first,
            last_ms: self.c_last,
        })
    }
}

/// The value columns a table's profile reads: raw `value`; rollup `avg`, `p95`, `max`,
/// `count`.
fn profile_columns(t: &TableInfo) -> &'static [&'static str] {
    match t.kind {
        Kind::Raw => &["value"],
        _ => &["avg", "p95", "max", "count"],
    }
}

/// The column the percentile is taken over: raw `value`, rollup `p95`.
fn percentile_column(t: &TableInfo) -> &'static str {
    match t.kind {
        Kind::Raw => "value",
        _ => "p95",
    }
}

struct ProfileVisitor {
    raw: bool,
    from_ms: i64,
    series: Vec<SeriesProfile>,
}

impl ProfileVisitor {
    fn at(&mut self, id: u32) -> &mut SeriesProfile {
        let i = id as usize;
        if i >= self.series.len() {
            self.series.resize_with(i + 1, SeriesProfile::default);
        }
        &mut self.series[i]
    }
}

impl Visitor for ProfileVisitor {
    fn rows(&mut self, rows: &Rows<'_>) {
        let from = self.from_ms;
        for (i, &id) in rows.ids.iter().enumerate() {
            if id == SKIP {
                continue;
            }
            let t = rows.ts[i];
            let x = (t - from) as f64 / DAY_MS as f64;
            let raw = self.raw;
            let s = self.at(id);
            s.rows += 1;
            if raw {
                let v = rows.columns[0][i];
                s.percentile_value(v);
                if !v.is_nan() {
                    s.w_sum += v;
                    s.w_den += 1.0;
                    s.w_any = true;
                    s.peak = s.peak.max(v);
                    s.points += 1;
                    s.present_at(t);
                }
                s.trend(t, x, v);
            } else {
                let (avg, p95, max, count) = (
                    rows.columns[0][i],
                    rows.columns[1][i],
                    rows.columns[2][i],
                    rows.columns[3][i],
                );
                s.percentile_value(p95);
                if !avg.is_nan() && !count.is_nan() {
                    s.w_sum += avg * count;
                    s.w_any = true;
                }
                if !count.is_nan() {
                    s.w_den += count;
                    s.points += count as i64;
                    s.present_at(t);
                }
                if !max.is_nan() {
                    s.peak = s.peak.max(max);
                }
                s.trend(t, x, avg);
            }
        }
    }

    fn merge(&mut self, later: Self) {
        for (i, s) in later.series.iter().enumerate() {
            if s.rows > 0 {
                self.at(i as u32).merge(s);
            }
        }
    }
}

/// A table's profile over one period: its series and their statistics, and the exact
/// percentiles computed so far.
pub struct TableProfile {
    registry: Mutex<Registry>,
    series: Vec<SeriesProfile>,
    keys: Vec<SeriesKey>,
    p95: Mutex<HashMap<u32, Option<f64>>>,
    from_ms: i64,
    to_ms: i64,
}

impl TableProfile {
    /// Runs the profile pass of `t` over `[from_ms, to_ms)`.
    pub fn build(
        ds: &Dataset,
        t: &TableInfo,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<TableProfile, ReportError> {
        let registry = Mutex::new(Registry::default());
        let pass = Pass {
            table: t,
            from_ms,
            to_ms,
            metrics: None,
            columns: profile_columns(t),
        };
        let started = std::time::Instant::now();
        let v = scan::run(ds, &pass, &registry, || ProfileVisitor {
            raw: t.kind == Kind::Raw,
            from_ms,
            series: Vec::new(),
        })?;
        let keys = registry.lock().expect("registry lock").keys().to_vec();
        let mut series = v.series;
        series.resize_with(keys.len(), SeriesProfile::default);
        tracing::debug!(
            table = %t.name,
            series = keys.len(),
            seconds = started.elapsed().as_secs_f64(),
            "profile pass done"
        );
        Ok(TableProfile {
            registry,
            series,
            keys,
            p95: Mutex::new(HashMap::new()),
            from_ms,
            to_ms,
        })
    }

    /// The series of the given metrics that have rows in the period, with their profiles.
    pub fn of_metrics<'a>(
        &'a self,
        metrics: &'a [&str],
    ) -> impl Iterator<Item = (u32, &'a SeriesKey, &'a SeriesProfile)> + 'a {
        self.keys
            .iter()
            .zip(&self.series)
            .enumerate()
            .filter(move |(_, (k, s))| s.rows > 0 && metrics.contains(&k.0.as_str()))
            .map(|(i, (k, s))| (i as u32, k, s))
    }

    /// Every series with rows in the period.
    pub fn all(&self) -> impl Iterator<Item = (u32, &SeriesKey, &SeriesProfile)> + '_ {
        self.keys
            .iter()
            .zip(&self.series)
            .enumerate()
            .filter(|(_, (_, s))| s.rows > 0)
            .map(|(i, (k, s))| (i as u32, k, s))
    }

    /// The exact p95 of each of `ids` (cached): refinement passes over the table until every
    /// one is known.
    pub fn p95(
        &self,
        ds: &Dataset,
        t: &TableInfo,
        ids: &[u32],
    ) -> Result<HashMap<u32, Option<f64>>, ReportError> {
        let mut known = self.p95.lock().expect("p95 lock");
        let todo: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !known.contains_key(id))
            .collect();
        if !todo.is_empty() {
            let found = self.refine(ds, t, &todo, 0.95)?;
            known.extend(found);
        }
        Ok(ids
            .iter()
            .map(|id| (*id, known.get(id).copied().flatten()))
            .collect())
    }

    fn refine(
        &self,
        ds: &Dataset,
        t: &TableInfo,
        ids: &[u32],
        q: f64,
    ) -> Result<HashMap<u32, Option<f64>>, ReportError> {
        let mut out = HashMap::new();
        let mut open: Vec<Target> = Vec::new();
        for &id in ids {
            let s = &self.series[id as usize];
            if s.p_n == 0 {
                out.insert(id, None);
                continue;
            }
            let pos = (s.p_n - 1) as f64 * q;
            let target = Target {
                id,
                pos,
                lo_rank: pos.floor() as u64,
                hi_rank: pos.ceil() as u64,
                range: (s.p_min, s.p_max),
                below: 0,
                in_range: s.p_n,
            };
            match target.settled() {
                Some(v) => {
                    out.insert(id, Some(v));
                }
                None => open.push(target),
            }
        }
        let metrics: BTreeSet<String> = open
            .iter()
            .map(|o| self.keys[o.id as usize].0.clone())
            .collect();
        let column = [percentile_column(t)];
        let mut passes = 0;
        while !open.is_empty() {
            passes += 1;
            let pass = Pass {
                table: t,
                from_ms: self.from_ms,
                to_ms: self.to_ms,
                metrics: Some(&metrics),
                columns: &column,
            };
            let slots: HashMap<u32, usize> =
                open.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
            let plan = RefinePlan {
                ranges: open.iter().map(|o| o.range).collect(),
                collect: open.iter().map(|o| o.in_range <= COLLECT_MAX).collect(),
                slots,
            };
            let mut v = scan::run(ds, &pass, &self.registry, || RefineVisitor::new(&plan))?;
            let mut still = Vec::new();
            for (i, mut o) in open.into_iter().enumerate() {
                if plan.collect[i] {
                    let mut vals = std::mem::take(&mut v.values[i]);
                    vals.sort_unstable_by_key(|v| order_key(*v));
                    let at = |rank: u64| vals.get((rank - o.below) as usize).copied();
                    let value = match (at(o.lo_rank), at(o.hi_rank)) {
                        (Some(a), Some(b)) => a + (b - a) * (o.pos - o.pos.floor()),
                        _ => {
                            return Err(ReportError::Query {
                                what: t.name.clone(),
                                message: "the table changed while the report read it (a percentile's values were not found again); run the report again".into(),
                            });
                        }
                    };
                    out.insert(o.id, Some(value));
                } else {
                    o.narrow(&v.bins[i * BINS..(i + 1) * BINS]);
                    match o.settled() {
                        Some(v) => {
                            out.insert(o.id, Some(v));
                        }
                        None => still.push(o),
                    }
                }
            }
            open = still;
        }
        tracing::debug!(table = %t.name, series = ids.len(), passes, "percentiles done");
        Ok(out)
    }
}

/// A series whose percentile is being refined: the two ranks and the key range holding them.
#[derive(Debug, Clone)]
struct Target {
    id: u32,
    pos: f64,
    lo_rank: u64,
    hi_rank: u64,
    /// Inclusive key range holding both ranks.
    range: (u64, u64),
    /// Values below the range.
    below: u64,
    /// Values in the range.
    in_range: u64,
}

impl Target {
    /// The value, when the range is one key (every value in it is the same).
    fn settled(&self) -> Option<f64> {
        (self.range.0 == self.range.1).then(|| from_key(self.range.0))
    }

    fn width(&self) -> u128 {
        ((self.range.1 - self.range.0) as u128 + 1).div_ceil(BINS as u128)
    }

    /// Narrows the range to the bins holding the two ranks, from one pass's counts.
    fn narrow(&mut self, bins: &[u32]) {
        let w = self.width();
        let (mut b_lo, mut b_hi) = (None, None);
        let mut seen = self.below;
        let mut below_lo = self.below;
        for (b, c) in bins.iter().enumerate() {
            let next = seen + *c as u64;
            if b_lo.is_none() && self.lo_rank < next {
                b_lo = Some(b);
                below_lo = seen;
            }
            if self.hi_rank < next {
                b_hi = Some(b);
                break;
            }
            seen = next;
        }
        let (Some(b_lo), Some(b_hi)) = (b_lo, b_hi) else {
            // Fewer values than counted before (the table changed): keep the whole range,
            // collected next time.
            self.in_range = 0;
            return;
        };
        let lo = self.range.0 as u128 + b_lo as u128 * w;
        let hi = (self.range.0 as u128 + (b_hi as u128 + 1) * w - 1).min(self.range.1 as u128);
        self.in_range = bins[b_lo..=b_hi].iter().map(|c| *c as u64).sum();
        self.below = below_lo;
        self.range = (lo as u64, hi as u64);
    }
}

struct RefinePlan {
    ranges: Vec<(u64, u64)>,
    collect: Vec<bool>,
    slots: HashMap<u32, usize>,
}

struct RefineVisitor<'a> {
    plan: &'a RefinePlan,
    /// Series id → slot (dense for speed: ids are small).
    slot_of: Vec<u32>,
    bins: Vec<u32>,
    values: Vec<Vec<f64>>,
}

impl<'a> RefineVisitor<'a> {
    fn new(plan: &'a RefinePlan) -> Self {
        let max_id = plan.slots.keys().max().copied().unwrap_or(0) as usize;
        let mut slot_of = vec![SKIP; max_id + 1];
        for (id, s) in &plan.slots {
            slot_of[*id as usize] = *s as u32;
        }
        let n = plan.ranges.len();
        RefineVisitor {
            plan,
            slot_of,
            bins: vec![0; n * BINS],
            values: vec![Vec::new(); n],
        }
    }
}

impl Visitor for RefineVisitor<'_> {
    fn rows(&mut self, rows: &Rows<'_>) {
        let col = rows.columns[0];
        for (i, &id) in rows.ids.iter().enumerate() {
            let Some(&slot) = self.slot_of.get(id as usize) else {
                continue;
            };
            if slot == SKIP {
                continue;
            }
            let v = col[i];
            if v.is_nan() {
                continue;
            }
            let slot = slot as usize;
            let (lo, hi) = self.plan.ranges[slot];
            let k = order_key(v);
            if k < lo || k > hi {
                continue;
            }
            if self.plan.collect[slot] {
                self.values[slot].push(v);
            } else {
                let w = ((hi - lo) as u128 + 1).div_ceil(BINS as u128);
                let b = ((k - lo) as u128 / w) as usize;
                self.bins[slot * BINS + b] += 1;
            }
        }
    }

    fn merge(&mut self, later: Self) {
        for (a, b) in self.bins.iter_mut().zip(&later.bins) {
            *a += b;
        }
        for (a, mut b) in self.values.iter_mut().zip(later.values) {
            a.append(&mut b);
        }
    }
}

/// Hourly means of the y column (raw `value`, rollup `avg`) per series of `metrics`, and, with
/// a threshold, the rows whose y is above it.
pub struct Hourly {
    /// Per series: (hour start ms, sum, count), ascending.
    pub hours: BTreeMap<SeriesKey, Vec<(i64, f64, u64)>>,
    /// Per series: rows with y above the threshold.
    pub above: BTreeMap<SeriesKey, u64>,
}

struct HourlyVisitor {
    threshold: Option<f64>,
    hours: HashMap<u32, Vec<(i64, f64, u64)>>,
    above: HashMap<u32, u64>,
}

fn add_hour(h: &mut Vec<(i64, f64, u64)>, hour: i64, sum: f64, n: u64) {
    match h.last_mut() {
        Some(last) if last.0 == hour => {
            last.1 += sum;
            last.2 += n;
        }
        Some(last) if last.0 < hour => h.push((hour, sum, n)),
        None => h.push((hour, sum, n)),
        _ => match h.binary_search_by_key(&hour, |e| e.0) {
            Ok(i) => {
                h[i].1 += sum;
                h[i].2 += n;
            }
            Err(i) => h.insert(i, (hour, sum, n)),
        },
    }
}

impl Visitor for HourlyVisitor {
    fn rows(&mut self, rows: &Rows<'_>) {
        let y = rows.columns[0];
        for (i, &id) in rows.ids.iter().enumerate() {
            if id == SKIP || y[i].is_nan() {
                continue;
            }
            let t = rows.ts[i];
            let hour = t - t.rem_euclid(3_600_000);
            add_hour(self.hours.entry(id).or_default(), hour, y[i], 1);
            if let Some(thr) = self.threshold
                && y[i] > thr
            {
                *self.above.entry(id).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, later: Self) {
        for (id, hs) in later.hours {
            let h = self.hours.entry(id).or_default();
            for (hour, s, n) in hs {
                add_hour(h, hour, s, n);
            }
        }
        for (id, n) in later.above {
            *self.above.entry(id).or_default() += n;
        }
    }
}

/// Hourly sums per series of `metrics` (one pass over their row groups).
pub fn hourly(
    ds: &Dataset,
    t: &TableInfo,
    metrics: &[&str],
    from_ms: i64,
    to_ms: i64,
    threshold: Option<f64>,
) -> Result<Hourly, ReportError> {
    let registry = Mutex::new(Registry::default());
    let wanted: BTreeSet<String> = metrics.iter().map(|m| m.to_string()).collect();
    let column = [match t.kind {
        Kind::Raw => "value",
        _ => "avg",
    }];
    let pass = Pass {
        table: t,
        from_ms,
        to_ms,
        metrics: Some(&wanted),
        columns: &column,
    };
    let v = scan::run(ds, &pass, &registry, || HourlyVisitor {
        threshold,
        hours: HashMap::new(),
        above: HashMap::new(),
    })?;
    let reg = registry.lock().expect("registry lock");
    let key = |id: u32| reg.keys()[id as usize].clone();
    Ok(Hourly {
        hours: v.hours.into_iter().map(|(id, h)| (key(id), h)).collect(),
        above: v.above.into_iter().map(|(id, n)| (key(id), n)).collect(),
    })
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod behaviour_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_like_the_numbers() {
        let vals = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1e-300,
            -0.0,
            0.0,
            1e-300,
            0.1,
            2.5,
            1e300,
            f64::INFINITY,
        ];
        for w in vals.windows(2) {
            assert!(order_key(w[0]) < order_key(w[1]), "{} < {}", w[0], w[1]);
        }
        for v in vals {
            assert_eq!(from_key(order_key(v)).to_bits(), v.to_bits());
        }
    }

    #[test]
    fn narrowing_keeps_both_ranks_inside_the_range() {
        let mut t = Target {
            id: 0,
            pos: 949.05,
            lo_rank: 949,
            hi_rank: 950,
            range: (order_key(0.0), order_key(100.0)),
            below: 0,
            in_range: 1000,
        };
        let mut bins = vec![0u32; BINS];
        // 1,000 values spread over the bins one per bin.
        for b in bins.iter_mut().take(1000) {
            *b = 1;
        }
        let w = t.width();
        t.narrow(&bins);
        assert_eq!(t.below, 949);
        assert_eq!(t.in_range, 2);
        assert_eq!(t.range.0, order_key(0.0) + (949 * w) as u64);
    }
}
