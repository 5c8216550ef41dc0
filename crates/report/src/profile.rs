//! Every per-series statistic of a metric table over the period, computed in streaming passes
//! ([`super::scan`]) with memory bounded by the number of series, whatever the period's length:
//!
//! - the **profile** pass (one per table and period, cached in the [`Dataset`]): mean, peak,
//!   points, the least-squares sums of the trend (Welford's updates, merged with Chan's
//!   formulas), completeness (present points, first/last, a count per distinct gap between
//!   consecutive points, from which the median step and the gaps follow exactly), and the
//!   count, minimum and maximum of the percentile column;
//! - the **exact percentile**, without holding a series' values: each refinement pass counts a
//!   series' values in up to [`BINS`] equal bins of the range known to hold the two ranks the
//!   type-7 percentile interpolates between (first the series' whole range), keeping each
//!   bin's smallest and largest value: ranks in two bins are then known at once, ranks in one
//!   bin narrow the range to that bin's values; once the range holds at most [`COLLECT_MAX`]
//!   values, a pass collects them and the ranks are read off the sorted few. Typically three passes in all (profile, histogram, collect). Values
//!   are compared by their IEEE order key, so the result is the one a sort of all the values
//!   gives, bit for bit. Memory per pass is capped ([`COLLECT_BUDGET`], [`BINS_BUDGET`]):
//!   more series mean fewer bins each or one more pass, never more memory;
//! - **hourly** means (and rollup buckets above a threshold) for the few series that need a
//!   curve (hosts, datastores).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::ReportError;
use super::data::{Dataset, Kind, SeriesKey, TableInfo};
use super::scan::{self, Pass, Registry, Rows, SKIP, Visitor};
use vscope_core::semantics::time::DAY_MS;

/// Bins of one refinement pass per series at most (20 bytes each while the series is refined).
pub const BINS: usize = 1024;
/// A series' values are collected once its candidate range holds at most this many.
pub const COLLECT_MAX: u64 = 16_384;
/// Values collected by one pass in all (8 bytes each): series beyond it wait a pass.
pub const COLLECT_BUDGET: u64 = 24 << 20;
/// Bytes of histogram counters of one pass, over every CPU's visitor: with many series the
/// bins per series go down (to 16), which takes more passes, not more memory.
pub const BINS_BUDGET: usize = 128 << 20;

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

/// Centred second moments of (x, y) pairs: counts, means, Σ(x-x̄)², Σ(y-ȳ)², Σ(x-x̄)(y-ȳ).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Moments {
    n: u64,
    mx: f64,
    my: f64,
    m2x: f64,
    m2y: f64,
    cxy: f64,
}

impl Moments {
    /// Adds `o` (Chan, Golub and LeVeque's pairwise update: exact in exact arithmetic,
    /// stable in floating point).
    fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let n = na + nb;
        let dx = o.mx - self.mx;
        let dy = o.my - self.my;
        self.mx += dx * nb / n;
        self.my += dy * nb / n;
        self.m2x += o.m2x + dx * dx * na * nb / n;
        self.m2y += o.m2y + dy * dy * na * nb / n;
        self.cxy += o.cxy + dx * dy * na * nb / n;
        self.n += o.n;
    }
}

/// Sums of (x, y) shifted by a first pair, accumulated without a division per row over one
/// run of a series (the shift keeps them small: stable), then turned into [`Moments`].
#[derive(Debug, Clone, Copy, Default)]
struct ShiftedSums {
    n: u64,
    kx: f64,
    ky: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl ShiftedSums {
    #[inline]
    fn add(&mut self, x: f64, y: f64) {
        if self.n == 0 {
            self.kx = x;
            self.ky = y;
        }
        self.n += 1;
        let (dx, dy) = (x - self.kx, y - self.ky);
        self.sx += dx;
        self.sy += dy;
        self.sxx += dx * dx;
        self.syy += dy * dy;
        self.sxy += dx * dy;
    }

    fn moments(&self) -> Moments {
        if self.n == 0 {
            return Moments::default();
        }
        let n = self.n as f64;
        let (ax, ay) = (self.sx / n, self.sy / n);
        Moments {
            n: self.n,
            mx: self.kx + ax,
            my: self.ky + ay,
            m2x: (self.sxx - self.sx * ax).max(0.0),
            m2y: (self.syy - self.sy * ay).max(0.0),
            cxy: self.sxy - self.sx * ay,
        }
    }
}

/// Consecutive present points of a series: first, last, and the count of each distinct gap
/// between them (sorted by gap), equal gaps counted in a run before they reach the list.
#[derive(Debug, Clone, Default)]
struct Spacing {
    present: i64,
    first: i64,
    last: i64,
    gaps: Vec<(i64, u64)>,
    /// The gap being counted and how many times in a row it came.
    run: (i64, u64),
    unsorted: bool,
}

impl Spacing {
    #[inline]
    fn at(&mut self, t: i64) {
        if self.present == 0 {
            self.first = t;
            self.last = t;
        } else if t < self.last {
            self.unsorted = true;
        } else {
            let gap = t - self.last;
            if gap == self.run.0 {
                self.run.1 += 1;
            } else {
                self.flush();
                self.run = (gap, 1);
            }
            self.last = t;
        }
        self.present += 1;
    }

    fn flush(&mut self) {
        if self.run.1 > 0 {
            add_gap(&mut self.gaps, self.run.0, self.run.1);
            self.run = (0, 0);
        }
    }

    /// Adds `later` (points of later files).
    fn merge(&mut self, later: &Spacing) {
        if later.present == 0 {
            return;
        }
        self.flush();
        if self.present == 0 {
            *self = later.clone();
            self.flush();
            return;
        }
        if later.first < self.last {
            self.unsorted = true;
        } else {
            add_gap(&mut self.gaps, later.first - self.last, 1);
        }
        for (g, c) in later.gaps.iter().chain(std::iter::once(&later.run)) {
            if *c > 0 {
                add_gap(&mut self.gaps, *g, *c);
            }
        }
        self.present += later.present;
        self.last = self.last.max(later.last);
        self.unsorted |= later.unsorted;
    }
}

/// What the profile sums over a series' rows, for one run as for the whole period: the
/// percentile column's count and key range, the mean's sums, the peak, the points, and the
/// first and last (time, y) of the trend.
#[derive(Debug, Clone)]
struct Totals {
    p_n: u64,
    p_min: u64,
    p_max: u64,
    w_sum: f64,
    w_den: f64,
    w_any: bool,
    peak: f64,
    points: i64,
    first: (i64, f64),
    last: (i64, f64),
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            p_n: 0,
            p_min: u64::MAX,
            p_max: 0,
            w_sum: 0.0,
            w_den: 0.0,
            w_any: false,
            peak: f64::NEG_INFINITY,
            points: 0,
            first: (i64::MAX, f64::NAN),
            last: (i64::MIN, f64::NAN),
        }
    }
}

impl Totals {
    #[inline]
    fn percentile_value(&mut self, v: f64) {
        if !v.is_nan() {
            self.p_n += 1;
            let k = order_key(v);
            self.p_min = self.p_min.min(k);
            self.p_max = self.p_max.max(k);
        }
    }

    #[inline]
    fn trend_ends(&mut self, t: i64, y: f64) {
        if t < self.first.0 {
            self.first = (t, y);
        }
        if t >= self.last.0 {
            self.last = (t, y);
        }
    }

    /// Adds `later` (rows after these).
    fn merge(&mut self, later: &Totals) {
        self.p_n += later.p_n;
        self.p_min = self.p_min.min(later.p_min);
        self.p_max = self.p_max.max(later.p_max);
        self.w_sum += later.w_sum;
        self.w_den += later.w_den;
        self.w_any |= later.w_any;
        self.peak = self.peak.max(later.peak);
        self.points += later.points;
        if later.first.0 < self.first.0 {
            self.first = later.first;
        }
        if later.last.0 >= self.last.0 {
            self.last = later.last;
        }
    }
}

/// A series' statistics from the profile pass.
#[derive(Debug, Clone, Default)]
pub struct SeriesProfile {
    /// Rows of the period (any value).
    pub rows: u64,
    totals: Totals,
    /// Trend: x = days since the period start, y = value (raw) or avg (rollup).
    trend: Moments,
    spacing: Spacing,
    /// The percentile column's values counted in the first histogram (bins of the metric's
    /// range from the row-group statistics; empty without one).
    first_bins: Vec<Bin>,
}

fn add_gap(gaps: &mut Vec<(i64, u64)>, gap: i64, count: u64) {
    match gaps.binary_search_by_key(&gap, |g| g.0) {
        Ok(i) => gaps[i].1 += count,
        Err(i) => gaps.insert(i, (gap, count)),
    }
}

impl SeriesProfile {
    /// Whether a point came before the previous one (unsorted rows, or files overlapping in
    /// time): the completeness is then computed by a sorting query.
    pub fn unsorted(&self) -> bool {
        self.spacing.unsorted
    }

    /// Adds `later` (rows of later files).
    fn merge(&mut self, later: &SeriesProfile) {
        self.rows += later.rows;
        self.totals.merge(&later.totals);
        self.trend.merge(&later.trend);
        self.spacing.merge(&later.spacing);
        if self.first_bins.len() < later.first_bins.len() {
            self.first_bins.resize(later.first_bins.len(), Bin::EMPTY);
        }
        for (a, b) in self.first_bins.iter_mut().zip(&later.first_bins) {
            a.merge(b);
        }
    }

    /// The time-weighted mean (raw: mean of the points; rollup: count-weighted mean of the
    /// bucket averages).
    pub fn avg(&self) -> Option<f64> {
        let t = &self.totals;
        (t.w_any && t.w_den != 0.0).then(|| t.w_sum / t.w_den)
    }

    /// Raw points behind the numbers (rollup: summed bucket counts).
    pub fn points(&self) -> i64 {
        self.totals.points
    }

    /// The highest value (raw) or bucket max (rollup).
    pub fn peak(&self) -> Option<f64> {
        (self.totals.peak > f64::NEG_INFINITY).then_some(self.totals.peak)
    }

    /// The trend's centred least-squares sums, when the series has a value.
    pub fn trend_sums(&self) -> Option<super::data::TrendSums> {
        let m = &self.trend;
        (m.n > 0).then_some(super::data::TrendSums {
            n: m.n,
            mean_x: m.mx,
            mean_y: m.my,
            sxx: m.m2x,
            sxy: m.cxy,
            syy: m.m2y,
            first: Some(self.totals.first.1),
            last: Some(self.totals.last.1),
            last_ms: self.totals.last.0,
        })
    }

    /// Completeness, when the series has a present point.
    pub fn completeness(&self) -> Option<super::completeness::Completeness> {
        let mut sp = self.spacing.clone();
        sp.flush();
        if sp.present == 0 {
            return None;
        }
        let m: u64 = sp.gaps.iter().map(|g| g.1).sum();
        let step = (m > 0).then(|| {
            let pos = (m - 1) as f64 * 0.5;
            let at = |rank: u64| {
                let mut seen = 0;
                for (g, c) in &sp.gaps {
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
            sp.gaps
                .iter()
                .filter(|g| g.0 as f64 > s * 1.5)
                .map(|g| g.1 as i64)
                .sum()
        });
        Some(super::completeness::Completeness {
            step_ms: step,
            present: sp.present,
            gaps,
            first_ms: sp.first,
            last_ms: sp.last,
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

struct ProfileVisitor<'a> {
    raw: bool,
    from_ms: i64,
    series: Vec<SeriesProfile>,
    /// The first histogram's binning per metric, and the registry to find a series' metric.
    first: Option<(&'a HashMap<String, Binning>, &'a Mutex<Registry>)>,
    /// Per series id: its metric's binning (looked up once per worker).
    binning_of: Vec<Option<Option<Binning>>>,
}

/// Bins per series of the first histogram, counted by the profile pass itself (20 bytes each:
/// 7 MB for 11,000 series); ranks that fall in a bin of at most [`COLLECT_MAX`] values are
/// then collected by the next pass.
pub const FIRST_BINS: usize = 32;

impl ProfileVisitor<'_> {
    fn binning(&mut self, id: u32) -> Option<Binning> {
        let (by_metric, registry) = self.first?;
        let i = id as usize;
        if i >= self.binning_of.len() {
            self.binning_of.resize(i + 1, None);
        }
        *self.binning_of[i].get_or_insert_with(|| {
            let reg = registry.lock().expect("registry lock");
            by_metric.get(&reg.keys()[i].0).copied()
        })
    }
}

/// What one run of a series adds, kept in registers and folded into its profile once.
#[derive(Default)]
struct RunAcc {
    totals: Totals,
    trend: ShiftedSums,
}

impl RunAcc {
    #[inline]
    fn trend(&mut self, t: i64, x: f64, y: f64) {
        if !y.is_nan() {
            self.trend.add(x, y);
            self.totals.trend_ends(t, y);
        }
    }

    fn fold_into(self, s: &mut SeriesProfile) {
        s.totals.merge(&self.totals);
        s.trend.merge(&self.trend.moments());
    }
}

impl Visitor for ProfileVisitor<'_> {
    fn rows(&mut self, rows: &Rows<'_>) {
        let from = self.from_ms;
        let day = DAY_MS as f64;
        let pcol = if self.raw { 0 } else { 1 };
        for run in rows.runs {
            let i = run.id as usize;
            if i >= self.series.len() {
                self.series.resize_with(i + 1, SeriesProfile::default);
            }
            if let Some(b) = self.binning(run.id) {
                let s = &mut self.series[i];
                if s.first_bins.is_empty() {
                    s.first_bins = vec![Bin::EMPTY; FIRST_BINS];
                }
                for &v in &rows.columns[pcol][run.start..run.end] {
                    if !v.is_nan() {
                        let k = order_key(v);
                        s.first_bins[b.bin(k, v)].add(k);
                    }
                }
            }
            let s = &mut self.series[i];
            s.rows += (run.end - run.start) as u64;
            let mut acc = RunAcc::default();
            let ts = &rows.ts[run.start..run.end];
            if self.raw {
                let vals = &rows.columns[0][run.start..run.end];
                for (&t, &v) in ts.iter().zip(vals) {
                    if v.is_nan() {
                        continue;
                    }
                    let a = &mut acc.totals;
                    a.percentile_value(v);
                    a.w_sum += v;
                    a.w_den += 1.0;
                    a.w_any = true;
                    a.peak = a.peak.max(v);
                    a.points += 1;
                    s.spacing.at(t);
                    acc.trend(t, (t - from) as f64 / day, v);
                }
            } else {
                let c = |j: usize| &rows.columns[j][run.start..run.end];
                let (avg, p95, max, count) = (c(0), c(1), c(2), c(3));
                for (r, &t) in ts.iter().enumerate() {
                    let (a, n) = (avg[r], count[r]);
                    let tot = &mut acc.totals;
                    tot.percentile_value(p95[r]);
                    if !a.is_nan() && !n.is_nan() {
                        tot.w_sum += a * n;
                        tot.w_any = true;
                    }
                    if !n.is_nan() {
                        tot.w_den += n;
                        tot.points += n as i64;
                        s.spacing.at(t);
                    }
                    if !max[r].is_nan() {
                        tot.peak = tot.peak.max(max[r]);
                    }
                    acc.trend(t, (t - from) as f64 / day, a);
                }
            }
            acc.fold_into(s);
        }
    }

    fn merge(&mut self, later: Self) {
        if later.series.len() > self.series.len() {
            self.series
                .resize_with(later.series.len(), SeriesProfile::default);
        }
        for (i, s) in later.series.iter().enumerate() {
            if s.rows > 0 {
                self.series[i].merge(s);
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
            needs_ts: true,
        };
        let started = std::time::Instant::now();
        let by_metric: HashMap<String, Binning> =
            scan::metric_ranges(ds, &pass, percentile_column(t))?
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, (lo, hi))| lo.is_finite() && hi.is_finite() && lo <= hi)
                .map(|(m, (lo, hi))| {
                    let b = Binning::new((order_key(lo), order_key(hi)), FIRST_BINS);
                    (m, b)
                })
                .collect();
        let v = scan::run(ds, &pass, &registry, || ProfileVisitor {
            raw: t.kind == Kind::Raw,
            from_ms,
            series: Vec::new(),
            first: Some((&by_metric, &registry)),
            binning_of: Vec::new(),
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
            let (p_n, p_min, p_max) = (s.totals.p_n, s.totals.p_min, s.totals.p_max);
            if p_n == 0 {
                out.insert(id, None);
                continue;
            }
            let pos = (p_n - 1) as f64 * q;
            let mut target = Target {
                id,
                pos,
                lo_rank: pos.floor() as u64,
                hi_rank: pos.ceil() as u64,
                range: (p_min, p_max),
                below: 0,
                in_range: p_n,
            };
            let first = match target.settled() {
                Some(v) => Narrowed::Value(v),
                // The profile pass's histogram, when it has one, is the first pass's.
                None if s.first_bins.len() == FIRST_BINS => target.narrow(&s.first_bins),
                None => Narrowed::Range,
            };
            match first {
                Narrowed::Value(v) => {
                    out.insert(id, Some(v));
                }
                Narrowed::Range => open.push(target),
                Narrowed::Lost => return Err(changed(t)),
            }
        }
        let metrics: BTreeSet<String> = open
            .iter()
            .map(|o| self.keys[o.id as usize].0.clone())
            .collect();
        let column = [percentile_column(t)];
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut passes = 0;
        while !open.is_empty() {
            passes += 1;
            let pass = Pass {
                table: t,
                from_ms: self.from_ms,
                to_ms: self.to_ms,
                metrics: Some(&metrics),
                columns: &column,
                needs_ts: false,
            };
            let plan = RefinePlan::new(&open, cpus);
            let mut v = scan::run(ds, &pass, &self.registry, || RefineVisitor::new(&plan))?;
            let mut still = Vec::new();
            for (i, mut o) in open.into_iter().enumerate() {
                match plan.modes[i] {
                    Mode::Collect(c) => {
                        let mut vals = std::mem::take(&mut v.values[c]);
                        vals.sort_unstable_by_key(|v| order_key(*v));
                        let at = |rank: u64| {
                            rank.checked_sub(o.below)
                                .and_then(|r| vals.get(r as usize).copied())
                        };
                        let (Some(a), Some(b)) = (at(o.lo_rank), at(o.hi_rank)) else {
                            return Err(changed(t));
                        };
                        out.insert(o.id, Some(o.interpolate(a, b)));
                    }
                    Mode::Hist(h) => {
                        let bins = &v.bins[h * plan.bins..(h + 1) * plan.bins];
                        match o.narrow(bins) {
                            Narrowed::Value(x) => {
                                out.insert(o.id, Some(x));
                            }
                            Narrowed::Range => still.push(o),
                            Narrowed::Lost => return Err(changed(t)),
                        }
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

    /// The type-7 percentile from the values at the two ranks.
    fn interpolate(&self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.pos - self.pos.floor())
    }

    /// Narrows the range from one pass's bins: when the two ranks fall in different bins,
    /// they are the largest value of the first and the smallest of the second (the ranks are
    /// consecutive: no value lies between); in one bin, the range becomes that bin's smallest
    /// to largest value, which leaves out the range's smallest or largest value (they fall in
    /// the first and the last bin), so every pass makes progress.
    fn narrow(&mut self, bins: &[Bin]) -> Narrowed {
        let (mut b_lo, mut b_hi) = (None, None);
        let mut seen = self.below;
        let mut below_lo = self.below;
        for (b, bin) in bins.iter().enumerate() {
            let next = seen + bin.count as u64;
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
            return Narrowed::Lost;
        };
        if b_lo != b_hi {
            return Narrowed::Value(
                self.interpolate(from_key(bins[b_lo].max), from_key(bins[b_hi].min)),
            );
        }
        let bin = &bins[b_lo];
        self.in_range = bin.count as u64;
        self.below = below_lo;
        self.range = (bin.min, bin.max);
        match self.settled() {
            Some(v) => Narrowed::Value(v),
            None => Narrowed::Range,
        }
    }
}

/// One bin of a histogram pass: how many values, and the order keys of the smallest and the
/// largest.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bin {
    count: u32,
    min: u64,
    max: u64,
}

impl Bin {
    const EMPTY: Bin = Bin {
        count: 0,
        min: u64::MAX,
        max: 0,
    };

    #[inline]
    fn add(&mut self, k: u64) {
        self.count += 1;
        self.min = self.min.min(k);
        self.max = self.max.max(k);
    }

    fn merge(&mut self, o: &Bin) {
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// How a range of values is cut into bins: equal widths of value when its ends are finite and
/// their difference is too (so 0 to 100 is cut in steps of 0.1, not by exponent), else equal
/// widths of order key. Either way monotonic: a larger value never lands in a lower bin.
#[derive(Debug, Clone, Copy)]
enum Binning {
    Value { lo: f64, scale: f64, last: usize },
    Key { lo: u64, width: u128 },
}

impl Binning {
    fn new(range: (u64, u64), bins: usize) -> Binning {
        let (a, b) = (from_key(range.0), from_key(range.1));
        let scale = bins as f64 / (b - a);
        if a.is_finite() && b.is_finite() && scale.is_finite() && scale > 0.0 {
            Binning::Value {
                lo: a,
                scale,
                last: bins - 1,
            }
        } else {
            Binning::Key {
                lo: range.0,
                width: ((range.1 - range.0) as u128 + 1).div_ceil(bins as u128),
            }
        }
    }

    #[inline]
    fn bin(&self, k: u64, v: f64) -> usize {
        match *self {
            Binning::Value { lo, scale, last } => (((v - lo) * scale) as usize).min(last),
            Binning::Key { lo, width } => ((k - lo) as u128 / width) as usize,
        }
    }
}

/// What a histogram pass left of a target.
#[derive(Debug, PartialEq)]
enum Narrowed {
    /// The percentile is known.
    Value(f64),
    /// A smaller range, refined by the next pass.
    Range,
    /// The ranks were not found: the table changed under the report.
    Lost,
}

fn changed(t: &TableInfo) -> ReportError {
    ReportError::Query {
        what: t.name.clone(),
        message: "the table changed while the report read it (a percentile's values were not found again); run the report again".into(),
    }
}

/// What one refinement pass does for a target: collect its values in range (into slot `c`),
/// or count them in bins (slot `h`).
#[derive(Debug, Clone, Copy)]
enum Mode {
    Collect(usize),
    Hist(usize),
}

/// One refinement pass: each open target's range and mode, and the bins per histogram.
struct RefinePlan {
    ranges: Vec<(u64, u64)>,
    modes: Vec<Mode>,
    /// How each histogram target's range is cut (`None` for collected ones).
    binnings: Vec<Option<Binning>>,
    /// Bins per histogram of this pass.
    bins: usize,
    collects: usize,
    hists: usize,
    /// Series id → index in `ranges`/`modes` ([`SKIP`] for none).
    slot_of: Vec<u32>,
}

impl RefinePlan {
    /// Collects the targets whose ranges are small, smallest first, up to [`COLLECT_BUDGET`]
    /// values in all; the others get histograms of as many bins as [`BINS_BUDGET`] allows
    /// for all of them on every CPU (at least 16, at most [`BINS`]).
    fn new(open: &[Target], cpus: usize) -> RefinePlan {
        let mut order: Vec<usize> = (0..open.len()).collect();
        order.sort_by_key(|i| open[*i].in_range);
        let mut modes = vec![Mode::Hist(0); open.len()];
        let (mut collects, mut budget) = (0, COLLECT_BUDGET);
        for i in order {
            let n = open[i].in_range;
            if n <= COLLECT_MAX && n <= budget {
                budget -= n;
                modes[i] = Mode::Collect(collects);
                collects += 1;
            }
        }
        let mut hists = 0;
        for m in modes.iter_mut() {
            if let Mode::Hist(h) = m {
                *h = hists;
                hists += 1;
            }
        }
        let per = BINS_BUDGET / (size_of::<Bin>() * cpus.max(1) * hists.max(1));
        let bins = if per >= BINS {
            BINS
        } else {
            (1usize << per.max(16).ilog2()).max(16)
        };
        let max_id = open.iter().map(|o| o.id).max().unwrap_or(0) as usize;
        let mut slot_of = vec![SKIP; max_id + 1];
        for (i, o) in open.iter().enumerate() {
            slot_of[o.id as usize] = i as u32;
        }
        let binnings = open
            .iter()
            .zip(&modes)
            .map(|(o, m)| matches!(m, Mode::Hist(_)).then(|| Binning::new(o.range, bins)))
            .collect();
        RefinePlan {
            ranges: open.iter().map(|o| o.range).collect(),
            modes,
            binnings,
            bins,
            collects,
            hists,
            slot_of,
        }
    }
}

struct RefineVisitor<'a> {
    plan: &'a RefinePlan,
    bins: Vec<Bin>,
    values: Vec<Vec<f64>>,
}

impl<'a> RefineVisitor<'a> {
    fn new(plan: &'a RefinePlan) -> Self {
        RefineVisitor {
            plan,
            bins: vec![Bin::EMPTY; plan.hists * plan.bins],
            values: vec![Vec::new(); plan.collects],
        }
    }
}

impl Visitor for RefineVisitor<'_> {
    fn rows(&mut self, rows: &Rows<'_>) {
        let plan = self.plan;
        for run in rows.runs {
            let Some(&slot) = plan.slot_of.get(run.id as usize) else {
                continue;
            };
            if slot == SKIP {
                continue;
            }
            let slot = slot as usize;
            let (lo, hi) = plan.ranges[slot];
            let vals = &rows.columns[0][run.start..run.end];
            let in_range = vals.iter().filter_map(|v| {
                let k = order_key(*v);
                (!v.is_nan() && k >= lo && k <= hi).then_some((k, *v))
            });
            match plan.modes[slot] {
                Mode::Collect(c) => self.values[c].extend(in_range.map(|(_, v)| v)),
                Mode::Hist(h) => {
                    let binning = plan.binnings[slot].expect("a histogram target has a binning");
                    let bins = &mut self.bins[h * plan.bins..(h + 1) * plan.bins];
                    for (k, v) in in_range {
                        bins[binning.bin(k, v)].add(k);
                    }
                }
            }
        }
    }

    fn merge(&mut self, later: Self) {
        for (a, b) in self.bins.iter_mut().zip(&later.bins) {
            a.merge(b);
        }
        for (a, mut b) in self.values.iter_mut().zip(later.values) {
            a.append(&mut b);
        }
    }
}

/// What the profile pass and a percentile refinement pass of `metrics` read (`--explain`).
pub fn explain(
    ds: &Dataset,
    t: &TableInfo,
    metrics: &[&str],
    from_ms: i64,
    to_ms: i64,
) -> Result<String, ReportError> {
    let wanted: BTreeSet<String> = metrics.iter().map(|m| m.to_string()).collect();
    let column = [percentile_column(t)];
    let profile = scan::explain(
        ds,
        &Pass {
            table: t,
            from_ms,
            to_ms,
            metrics: None,
            columns: profile_columns(t),
            needs_ts: true,
        },
    )?;
    let refine = scan::explain(
        ds,
        &Pass {
            table: t,
            from_ms,
            to_ms,
            metrics: Some(&wanted),
            columns: &column,
            needs_ts: false,
        },
    )?;
    Ok(format!(
        "profile: {profile}\npercentile refinement (each pass): {refine}"
    ))
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
        for run in rows.runs {
            let hours = self.hours.entry(run.id).or_default();
            let mut above = 0;
            for r in run.start..run.end {
                let y = rows.columns[0][r];
                if y.is_nan() {
                    continue;
                }
                let t = rows.ts[r];
                add_hour(hours, t - t.rem_euclid(3_600_000), y, 1);
                if self.threshold.is_some_and(|thr| y > thr) {
                    above += 1;
                }
            }
            if above > 0 {
                *self.above.entry(run.id).or_default() += above;
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
        needs_ts: true,
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

    fn target(lo: f64, hi: f64, n: u64) -> Target {
        let pos = (n - 1) as f64 * 0.95;
        Target {
            id: 0,
            pos,
            lo_rank: pos.floor() as u64,
            hi_rank: pos.ceil() as u64,
            range: (order_key(lo), order_key(hi)),
            below: 0,
            in_range: n,
        }
    }

    fn bins_of(values: &[f64], t: &Target, n: usize) -> Vec<Bin> {
        let binning = Binning::new(t.range, n);
        let mut bins = vec![Bin::EMPTY; n];
        for v in values {
            let k = order_key(*v);
            if k >= t.range.0 && k <= t.range.1 {
                bins[binning.bin(k, *v)].add(k);
            }
        }
        bins
    }

    #[test]
    fn ranks_in_two_bins_are_read_off_their_ends() {
        // 0.0, 0.1, ..., 99.9: ranks 949 and 950 (94.9 and 95.0) in two bins of 0.1.
        let values: Vec<f64> = (0..1000).map(|i| i as f64 / 10.0).collect();
        let mut t = target(0.0, 99.9, 1000);
        let bins = bins_of(&values, &t, BINS);
        let want = crate::stats::percentile(&values, 0.95).unwrap();
        assert_eq!(t.narrow(&bins), Narrowed::Value(want));
    }

    #[test]
    fn ranks_in_one_bin_narrow_to_its_values_and_then_settle() {
        // 990 values at 1.0..=2.0 and 10 spread to 100: the ranks sit in the dense low part.
        let mut values: Vec<f64> = (0..990).map(|i| 1.0 + i as f64 / 989.0).collect();
        values.extend((0..10).map(|i| 10.0 * (i + 1) as f64));
        let want = crate::stats::percentile(&values, 0.95).unwrap();
        let mut t = target(1.0, 100.0, 1000);
        let mut passes = 0;
        let got = loop {
            passes += 1;
            let bins = bins_of(&values, &t, 16);
            match t.narrow(&bins) {
                Narrowed::Value(v) => break v,
                Narrowed::Range => assert!(t.in_range < 1000 && passes < 20),
                Narrowed::Lost => panic!("lost"),
            }
        };
        assert_eq!(got.to_bits(), want.to_bits());
    }

    #[test]
    fn two_values_far_apart_or_adjacent_are_settled_not_refined_forever() {
        let a = 1.0f64;
        for b in [f64::from_bits(a.to_bits() + 1), 1e300] {
            // 940 copies of a then 60 of b: ranks 949/950 both on b; 950 of a: a and b.
            for split in [940, 950] {
                let values: Vec<f64> = (0..1000).map(|i| if i < split { a } else { b }).collect();
                let want = crate::stats::percentile(&values, 0.95).unwrap();
                let mut t = target(a, b, 1000);
                let got = match t.narrow(&bins_of(&values, &t, 16)) {
                    Narrowed::Value(v) => v,
                    other => panic!("{other:?} for {b} split {split}"),
                };
                assert_eq!(got.to_bits(), want.to_bits());
            }
        }
        // A count that no longer holds the ranks: the table changed.
        let mut t = target(a, 2.0, 1000);
        assert_eq!(t.narrow(&vec![Bin::EMPTY; 16]), Narrowed::Lost);
    }

    #[test]
    fn binning_is_monotonic_and_covers_the_range() {
        for (lo, hi) in [(0.0, 100.0), (-5.0, 5.0), (1e-300, 1e300), (-1e308, 1e308)] {
            let b = Binning::new((order_key(lo), order_key(hi)), 64);
            let mut prev = 0;
            for i in 0..=1000 {
                let v = lo + (hi / 1000.0 - lo / 1000.0) * i as f64;
                let v = v.clamp(lo, hi);
                let bin = b.bin(order_key(v), v);
                assert!(bin >= prev && bin < 64, "{lo}..{hi}: {v} -> {bin}");
                prev = bin;
            }
            assert_eq!(b.bin(order_key(hi), hi), 63);
            assert_eq!(b.bin(order_key(lo), lo), 0);
        }
    }

    #[test]
    fn a_plan_collects_small_ranges_within_the_budget_and_bins_the_rest() {
        let mut open: Vec<Target> = (0..3)
            .map(|i| {
                let mut t = target(0.0, 1.0, 100_000);
                t.id = i;
                t
            })
            .collect();
        open[1].in_range = 10;
        let plan = RefinePlan::new(&open, 2);
        assert!(matches!(plan.modes[1], Mode::Collect(0)));
        assert!(matches!(plan.modes[0], Mode::Hist(0)) && matches!(plan.modes[2], Mode::Hist(1)));
        assert_eq!(plan.bins, BINS);
        // 100,000 series: bins per series shrink so that all fit the budget.
        let many: Vec<Target> = (0..100_000)
            .map(|i| {
                let mut t = target(0.0, 1.0, 100_000);
                t.id = i;
                t
            })
            .collect();
        let plan = RefinePlan::new(&many, 2);
        assert!(plan.bins >= 16);
        assert!(plan.bins * size_of::<Bin>() * 2 * plan.hists <= BINS_BUDGET);
    }
}
