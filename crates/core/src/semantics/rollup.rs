//! Client-side rollups: raw points of one series reduced to fixed, epoch-aligned buckets,
//! computing every requested aggregate in **one pass** over the points.
//!
//! Why client-side: vScope's real endpoint (Erlenmeyer) aligns buckets on the query end and
//! invents values at the edges (`reference/api.md` §2.3), so we fetch raw points and bucket them
//! ourselves with OpenTSDB's reference semantics (epoch-aligned `[start, start + interval)`,
//! stamped with the start). Each aggregate gives exactly what [`Aggregator::aggregate`] gives for
//! the bucket's values, bit for bit, which the tests check.
//!
//! The output is columnar ([`RollupOutput`]) so it maps straight onto Arrow arrays, and a
//! series can be fed in slices (pages, windows): as long as each slice ends on a bucket
//! boundary, appending the slices gives the same rows as the whole series at once.

use super::aggregator::{
    Aggregator, DOWNSAMPLING_FUNCTIONS, Welford, median_of_sorted, percentile_of_sorted,
    percentile_positions,
};
use super::downsample::bucket_start;

/// What a rollup computes: the bucket length and the aggregates, in column order. Build it with
/// [`Rollup::new`], which refuses `none` (not an aggregation) and repeated aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    /// Bucket length in ms; buckets are `[k·interval, (k+1)·interval)` since the epoch, UTC.
    pub interval_ms: i64,
    /// The aggregates to compute, one output column each, in this order.
    pub aggregates: Vec<Aggregator>,
}

/// Why a rollup definition was refused; each message names the offending value and what is
/// allowed, since it surfaces as a pipeline-file validation error.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RollupError {
    /// The interval is zero or negative.
    #[error("invalid rollup interval {interval_ms} ms: must be at least 1 ms")]
    Interval {
        /// The interval given, in ms.
        interval_ms: i64,
    },
    /// The list of aggregates is empty, which would give a table with no values.
    #[error(
        "a rollup needs at least one aggregate (allowed: any OpenTSDB downsampling function: {list})",
        list = DOWNSAMPLING_FUNCTIONS
    )]
    NoAggregates,
    /// An aggregate that is not an aggregation (`none`).
    #[error(
        "aggregate '{aggregate}' cannot be used in a rollup: {why} (allowed: any OpenTSDB downsampling function: {list})",
        list = DOWNSAMPLING_FUNCTIONS
    )]
    Unsupported {
        /// The aggregate refused.
        aggregate: Aggregator,
        /// Why, in a few words.
        why: &'static str,
    },
    /// The same aggregate twice, which would give two columns with the same name.
    #[error(
        "aggregate '{aggregate}' is listed twice in the rollup (each gives one column named after it)"
    )]
    Duplicate {
        /// The aggregate repeated.
        aggregate: Aggregator,
    },
}

/// One output column. `count` is an integer column (it is a number of points, and an integer
/// Parquet column compresses and reads better); every other aggregate is a nullable double.
#[derive(Debug, Clone, PartialEq)]
pub enum RollupColumn {
    /// The values of `count`.
    Int(Vec<i64>),
    /// The values of any other aggregate. Always `Some` today (a row exists only for a bucket
    /// with data); `Option` so the column maps onto a nullable Arrow array without a copy.
    Float(Vec<Option<f64>>),
}

impl RollupColumn {
    /// Number of rows in the column.
    pub fn len(&self) -> usize {
        match self {
            RollupColumn::Int(v) => v.len(),
            RollupColumn::Float(v) => v.len(),
        }
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rollup rows in columnar form: one bucket timestamp per row, then one column per aggregate
/// in the order of [`Rollup::aggregates`]. Reused across calls to avoid reallocation.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupOutput {
    /// Start of each bucket, ms since the epoch (UTC).
    pub bucket_ts: Vec<i64>,
    /// One column per aggregate, in the rollup's order.
    pub columns: Vec<RollupColumn>,
}

impl RollupOutput {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.bucket_ts.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.bucket_ts.is_empty()
    }

    /// Removes every row, keeping the column kinds and the allocations.
    pub fn clear(&mut self) {
        self.bucket_ts.clear();
        for col in &mut self.columns {
            match col {
                RollupColumn::Int(v) => v.clear(),
                RollupColumn::Float(v) => v.clear(),
            }
        }
    }
}

/// Which optional accumulators a rollup needs, decided once per call: each costs work per
/// point that the usual tables (avg, min, max, count, a percentile) do not need.
#[derive(Debug, Clone, Copy)]
struct Wants {
    /// `dev`: Welford's update, a division per point.
    dev: bool,
    /// `squareSum`.
    square_sum: bool,
    /// `mult`.
    product: bool,
}

/// The running state of one bucket: every aggregate's accumulator at once, so that a single
/// pass serves all of them. Plain numbers, no allocation; percentiles and `median` use the
/// caller's scratch.
#[derive(Debug, Clone, Copy)]
struct Accumulator {
    first: f64,
    last: f64,
    sum: f64,
    min: f64,
    max: f64,
    count: u64,
    /// Only kept up to date when `dev` is asked for: a division per point otherwise wasted.
    dev: Option<Welford>,
    /// `0.0 + v₁² + …`, only when `squareSum` is asked for.
    square_sum: Option<f64>,
    /// `v₁ · v₂ · …`, only when `mult` is asked for.
    product: Option<f64>,
}

impl Accumulator {
    /// Starts a bucket with its first value (the order of operations matches
    /// [`Aggregator::aggregate`], so sums and products are bit-identical; like OpenTSDB's
    /// `Sum`, the sum starts from `0.0`, which turns a lone `-0.0` into `0.0`).
    fn new(v: f64, wants: Wants) -> Accumulator {
        Accumulator {
            first: v,
            last: v,
            sum: 0.0 + v,
            min: v,
            max: v,
            count: 1,
            dev: wants.dev.then(|| Welford::new(v)),
            square_sum: wants.square_sum.then_some(0.0 + v * v),
            product: wants.product.then_some(v),
        }
    }

    fn push(&mut self, v: f64) {
        self.last = v;
        self.sum += v;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        self.count += 1;
        if let Some(dev) = &mut self.dev {
            dev.push(v);
        }
        if let Some(s) = &mut self.square_sum {
            *s += v * v;
        }
        if let Some(p) = &mut self.product {
            *p *= v;
        }
    }
}

/// The first timestamp after the bucket of `t` (one past its last), in i128: for `t` near
/// `i64::MAX` it lies beyond the i64 range.
fn bucket_end(t: i64, interval_ms: i64) -> i128 {
    if interval_ms <= 0 {
        // `bucket_start` leaves such timestamps alone: one bucket per timestamp.
        return i128::from(t) + 1;
    }
    i128::from(t) - i128::from(t.rem_euclid(interval_ms)) + i128::from(interval_ms)
}

/// Per-call buffers of [`Rollup::apply_into`]: the current bucket's values (only when a
/// percentile or `median` is asked for, as [`total_key`]s; and as values again once
/// selected), the percentile ranks asked for, whether `median` is, and the positions they read.
struct Scratch {
    keys: Vec<i64>,
    values: Vec<f64>,
    percentiles: Vec<f64>,
    median: bool,
    positions: Vec<usize>,
}

/// The integer that orders like `v` under [`f64::total_cmp`] (the key `total_cmp` itself
/// compares): selecting on these is plain integer compares, where `total_cmp` recomputes both
/// keys at every compare.
fn total_key(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The value of a [`total_key`] (the transform is its own inverse: it keeps the sign bit).
fn from_total_key(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

/// Puts at each of `positions` (ascending, distinct, in bounds) the key a sort would put
/// there, in O(n) per position instead of sorting: each `select_nth_unstable` leaves only
/// larger-or-equal keys after its position, so the next position is selected among those.
/// Equal keys are the same bits, so the values read are bit-identical to a sort's.
fn select_order_statistics(keys: &mut [i64], positions: &[usize]) {
    let mut from = 0;
    for &i in positions {
        if i < from || i >= keys.len() {
            continue;
        }
        keys[from..].select_nth_unstable(i - from);
        from = i + 1;
    }
}

impl Rollup {
    /// Validates and builds a rollup. Accepts every OpenTSDB downsampling function, each
    /// computed as OpenTSDB's downsampler computes it inside one bucket (see
    /// [`Aggregator::aggregate`]); the group-by variants mean, within one series, their plain
    /// counterparts (`zimsum` and `pfsum` = `sum`, `mimmin` = `min`, `mimmax` = `max`) and keep
    /// the name the user wrote as their column name. Refuses a non-positive interval, an empty
    /// or repeated aggregate list (two columns with one name), and `none`, which is not an
    /// aggregation (OpenTSDB refuses it for downsampling too).
    pub fn new(interval_ms: i64, aggregates: Vec<Aggregator>) -> Result<Rollup, RollupError> {
        if interval_ms <= 0 {
            return Err(RollupError::Interval { interval_ms });
        }
        if aggregates.is_empty() {
            return Err(RollupError::NoAggregates);
        }
        for (i, &aggregate) in aggregates.iter().enumerate() {
            if aggregate == Aggregator::None {
                return Err(RollupError::Unsupported {
                    aggregate,
                    why: "'none' is not an aggregation (OpenTSDB refuses it for downsampling too); \
                          a table without downsample holds the raw points",
                });
            }
            if aggregates[..i].contains(&aggregate) {
                return Err(RollupError::Duplicate { aggregate });
            }
        }
        Ok(Rollup {
            interval_ms,
            aggregates,
        })
    }

    /// An empty output with one column of the right kind per aggregate, ready for
    /// [`Rollup::apply_into`].
    pub fn output(&self) -> RollupOutput {
        RollupOutput {
            bucket_ts: Vec::new(),
            columns: self
                .aggregates
                .iter()
                .map(|a| match a {
                    Aggregator::Count => RollupColumn::Int(Vec::new()),
                    _ => RollupColumn::Float(Vec::new()),
                })
                .collect(),
        }
    }

    /// The rollup rows of one series.
    pub fn of(&self, series: &crate::series::SeriesData) -> RollupOutput {
        let mut rows = self.output();
        self.apply_into(&series.ts, &series.values, &mut rows);
        rows
    }

    /// Rolls up one series and appends the rows to `out`.
    ///
    /// `ts` must be ascending and unique; `values[i]` is the value at `ts[i]`, NaN for a null
    /// point ([`crate::series::SeriesData::values`]), which is skipped. One row is appended per bucket holding at least one
    /// non-null value, stamped with the bucket start ([`bucket_start`]); empty buckets get no
    /// row (the table is sparse, like OpenTSDB's default fill). If the lengths differ, the
    /// extra tail of the longer slice is ignored. Unsorted input does not panic but may give
    /// several rows for one bucket.
    ///
    /// `out` must come from [`Rollup::output`] of this rollup; a column of the wrong kind is
    /// left untouched rather than panicking, which would make the columns' lengths differ.
    ///
    /// Cost: one pass, no allocation per bucket. Values are copied into one scratch buffer
    /// (allocated once per call) only when a percentile or `median` is asked for, and then the
    /// bucket is not sorted: the order statistics each of them reads are selected
    /// (`select_order_statistics`), which gives the same values, bit for bit.
    pub fn apply_into(&self, ts: &[i64], values: &[f64], out: &mut RollupOutput) {
        let percentiles: Vec<f64> = self
            .aggregates
            .iter()
            .filter_map(|a| a.percentile())
            .collect();
        let median = self.aggregates.contains(&Aggregator::Median);
        let wants_values = !percentiles.is_empty() || median;
        let wants = Wants {
            dev: self.aggregates.contains(&Aggregator::Dev),
            square_sum: self.aggregates.contains(&Aggregator::SquareSum),
            product: self.aggregates.contains(&Aggregator::Mult),
        };
        let mut scratch = Scratch {
            keys: Vec::new(),
            values: Vec::new(),
            positions: Vec::with_capacity(2 * percentiles.len() + 1),
            percentiles,
            median,
        };
        // The open bucket: its start (as `bucket_start` gives it), the end of its range of
        // timestamps (exclusive; i128 so that no edge of the i64 range overflows), its state.
        // A point belongs to it iff `start <= t < end`, which is `bucket_start(t) == start`
        // without a division per point.
        let mut current: Option<(i64, i128, Accumulator)> = None;
        let points = ts
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_nan())
            .map(|(&t, &v)| (t, v));
        for (t, v) in points {
            match &mut current {
                Some((start, end, acc)) if t >= *start && i128::from(t) < *end => acc.push(v),
                _ => {
                    if let Some((b, _, acc)) = current.take() {
                        self.emit(b, &acc, &mut scratch, out);
                    }
                    scratch.keys.clear();
                    current = Some((
                        bucket_start(t, self.interval_ms),
                        bucket_end(t, self.interval_ms),
                        Accumulator::new(v, wants),
                    ));
                }
            }
            if wants_values {
                scratch.keys.push(total_key(v));
            }
        }
        if let Some((b, _, acc)) = current {
            self.emit(b, &acc, &mut scratch, out);
        }
    }

    /// Appends the row of one finished bucket.
    fn emit(&self, bucket: i64, acc: &Accumulator, scratch: &mut Scratch, out: &mut RollupOutput) {
        scratch.values.clear();
        if !scratch.keys.is_empty() {
            let n = scratch.keys.len();
            scratch.positions.clear();
            for &p in &scratch.percentiles {
                if let Some((lo, hi)) = percentile_positions(n, p) {
                    scratch.positions.extend([lo, hi]);
                }
            }
            if scratch.median {
                // The one position `median_of_sorted` reads.
                scratch.positions.push(n / 2);
            }
            scratch.positions.sort_unstable();
            scratch.positions.dedup();
            select_order_statistics(&mut scratch.keys, &scratch.positions);
            scratch
                .values
                .extend(scratch.keys.iter().map(|&k| from_total_key(k)));
        }
        out.bucket_ts.push(bucket);
        for (agg, col) in self.aggregates.iter().zip(out.columns.iter_mut()) {
            match col {
                RollupColumn::Int(v) => v.push(i64::try_from(acc.count).unwrap_or(i64::MAX)),
                RollupColumn::Float(v) => v.push(Self::value(*agg, acc, &scratch.values)),
            }
        }
    }

    /// The value of one float aggregate for a finished bucket. `selected` holds the bucket's
    /// values with the order statistics the percentiles and `median` read in place.
    fn value(agg: Aggregator, acc: &Accumulator, selected: &[f64]) -> Option<f64> {
        let value = match agg {
            Aggregator::Avg => acc.sum / acc.count as f64,
            Aggregator::Sum | Aggregator::Zimsum | Aggregator::Pfsum => acc.sum,
            Aggregator::Min | Aggregator::Mimmin => acc.min,
            Aggregator::Max | Aggregator::Mimmax => acc.max,
            Aggregator::Count => acc.count as f64,
            Aggregator::Dev => acc.dev.map_or(0.0, |d| d.population_std()),
            Aggregator::First => acc.first,
            Aggregator::Last => acc.last,
            Aggregator::SquareSum => acc.square_sum?,
            Aggregator::Mult => acc.product?,
            // `Diff.runDouble`: 0 for a lone value, else last - first.
            Aggregator::Diff if acc.count == 1 => 0.0,
            Aggregator::Diff => acc.last - acc.first,
            Aggregator::Median => return median_of_sorted(selected),
            Aggregator::None => {
                return if acc.count == 1 {
                    Some(acc.first)
                } else {
                    None
                };
            }
            Aggregator::P50
            | Aggregator::P75
            | Aggregator::P90
            | Aggregator::P95
            | Aggregator::P99
            | Aggregator::P999
            | Aggregator::Ep50r3
            | Aggregator::Ep75r3
            | Aggregator::Ep90r3
            | Aggregator::Ep95r3
            | Aggregator::Ep99r3
            | Aggregator::Ep999r3
            | Aggregator::Ep50r7
            | Aggregator::Ep75r7
            | Aggregator::Ep90r7
            | Aggregator::Ep95r7
            | Aggregator::Ep99r7
            | Aggregator::Ep999r7 => return percentile_of_sorted(selected, agg.percentile()?),
        };
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000;

    /// Every downsampling function: all aggregators but `none`.
    fn all_rollup_aggregates() -> Vec<Aggregator> {
        Aggregator::ALL
            .into_iter()
            .filter(|a| *a != Aggregator::None)
            .collect()
    }

    /// The slow reference: group by bucket, then [`Aggregator::aggregate`] per bucket.
    fn reference(rollup: &Rollup, ts: &[i64], values: &[f64]) -> RollupOutput {
        let mut out = rollup.output();
        let mut buckets: Vec<(i64, Vec<f64>)> = Vec::new();
        for (&t, &v) in ts.iter().zip(values) {
            if v.is_nan() {
                continue;
            }
            let b = bucket_start(t, rollup.interval_ms);
            match buckets.last_mut() {
                Some((lb, vs)) if *lb == b => vs.push(v),
                _ => buckets.push((b, vec![v])),
            }
        }
        for (b, vs) in buckets {
            out.bucket_ts.push(b);
            for (agg, col) in rollup.aggregates.iter().zip(out.columns.iter_mut()) {
                let value = agg.aggregate(&vs);
                match col {
                    RollupColumn::Int(c) => c.push(value.unwrap_or(0.0) as i64),
                    RollupColumn::Float(c) => c.push(value),
                }
            }
        }
        out
    }

    /// Bitwise equality of outputs (so that -0.0 vs 0.0 and last-bit differences show up).
    fn same(a: &RollupOutput, b: &RollupOutput) -> bool {
        let bits = |c: &RollupColumn| match c {
            RollupColumn::Int(v) => v.iter().map(|x| Some(*x as u64)).collect::<Vec<_>>(),
            RollupColumn::Float(v) => v.iter().map(|x| x.map(f64::to_bits)).collect(),
        };
        a.bucket_ts == b.bucket_ts
            && a.columns.len() == b.columns.len()
            && a.columns.iter().zip(&b.columns).all(|(x, y)| {
                std::mem::discriminant(x) == std::mem::discriminant(y) && bits(x) == bits(y)
            })
    }

    #[test]
    fn constructor_rules() {
        assert!(Rollup::new(HOUR, vec![Aggregator::Avg]).is_ok());
        assert_eq!(
            Rollup::new(0, vec![Aggregator::Avg]),
            Err(RollupError::Interval { interval_ms: 0 })
        );
        assert_eq!(Rollup::new(HOUR, vec![]), Err(RollupError::NoAggregates));
        let err = Rollup::new(HOUR, vec![Aggregator::None]).unwrap_err();
        assert!(
            err.to_string().contains("'none'") && err.to_string().contains("squareSum"),
            "{err}"
        );
        assert!(Rollup::new(HOUR, vec![Aggregator::Zimsum, Aggregator::Sum]).is_ok());
        assert_eq!(
            Rollup::new(HOUR, vec![Aggregator::Max, Aggregator::Max]),
            Err(RollupError::Duplicate {
                aggregate: Aggregator::Max
            })
        );
        assert!(Rollup::new(HOUR, all_rollup_aggregates()).is_ok());
    }

    #[test]
    fn hourly_example() {
        let rollup = Rollup::new(
            HOUR,
            vec![
                Aggregator::Avg,
                Aggregator::Count,
                Aggregator::Min,
                Aggregator::Max,
                Aggregator::First,
                Aggregator::Last,
                Aggregator::P50,
            ],
        )
        .unwrap();
        let base = 1_356_998_400_000; // an hour boundary
        let ts = [
            base,
            base + 60_000,
            base + 120_000,
            base + HOUR + 5,
            base + 3 * HOUR,
        ];
        let values = [1.0, f64::NAN, 3.0, 10.0, f64::NAN];
        let mut out = rollup.output();
        rollup.apply_into(&ts, &values, &mut out);
        assert_eq!(out.bucket_ts, vec![base, base + HOUR]);
        assert_eq!(
            out.columns[0],
            RollupColumn::Float(vec![Some(2.0), Some(10.0)])
        );
        assert_eq!(out.columns[1], RollupColumn::Int(vec![2, 1]));
        assert_eq!(
            out.columns[2],
            RollupColumn::Float(vec![Some(1.0), Some(10.0)])
        );
        assert_eq!(
            out.columns[3],
            RollupColumn::Float(vec![Some(3.0), Some(10.0)])
        );
        assert_eq!(
            out.columns[4],
            RollupColumn::Float(vec![Some(1.0), Some(10.0)])
        );
        assert_eq!(
            out.columns[5],
            RollupColumn::Float(vec![Some(3.0), Some(10.0)])
        );
        assert_eq!(
            out.columns[6],
            RollupColumn::Float(vec![Some(2.0), Some(10.0)])
        );
        // Appending, not overwriting.
        rollup.apply_into(&ts[..1], &values[..1], &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        assert!(out.is_empty() && out.columns.iter().all(RollupColumn::is_empty));
    }

    /// One bucket's row for `aggs` over `values` (one value per second from 0).
    fn one_bucket(aggs: &[Aggregator], values: &[f64]) -> Vec<RollupColumn> {
        let rollup = Rollup::new(HOUR, aggs.to_vec()).unwrap();
        let ts: Vec<i64> = (0..values.len() as i64).map(|i| i * 1000).collect();
        let vs: Vec<f64> = values.to_vec();
        let out = rollup.of(&crate::series::SeriesData {
            metric: "m".into(),
            tags: Default::default(),
            ts,
            values: vs,
        });
        assert_eq!(out.bucket_ts, vec![0]);
        out.columns
    }

    #[test]
    fn group_by_variants_are_their_plain_counterparts_within_one_series() {
        let values = [3.5, -2.0, 7.25, 0.0, -2.0];
        let cols = one_bucket(
            &[
                Aggregator::Zimsum,
                Aggregator::Sum,
                Aggregator::Pfsum,
                Aggregator::Mimmin,
                Aggregator::Min,
                Aggregator::Mimmax,
                Aggregator::Max,
            ],
            &values,
        );
        let f = |i: usize| cols[i].clone();
        assert_eq!(f(0), RollupColumn::Float(vec![Some(6.75)]));
        assert_eq!(f(0), f(1));
        assert_eq!(f(2), f(1));
        assert_eq!(f(3), RollupColumn::Float(vec![Some(-2.0)]));
        assert_eq!(f(3), f(4));
        assert_eq!(f(5), RollupColumn::Float(vec![Some(7.25)]));
        assert_eq!(f(5), f(6));
    }

    #[test]
    fn opentsdb_only_functions_in_one_bucket() {
        // Median: TestAggregators.testMedian's doubles; the rest by definition.
        let values = [5.1, 2.434, -1.99, 400.69487, 3.15168, -42.0];
        let cols = one_bucket(
            &[
                Aggregator::Median,
                Aggregator::Diff,
                Aggregator::Mult,
                Aggregator::SquareSum,
                Aggregator::Ep50r3,
                Aggregator::P50,
                Aggregator::Ep95r7,
            ],
            &values,
        );
        let one = |i: usize| match &cols[i] {
            RollupColumn::Float(v) => v[0].unwrap(),
            RollupColumn::Int(_) => panic!("float column expected"),
        };
        assert_eq!(one(0), 3.15168);
        assert_eq!(one(1), -42.0 - 5.1);
        assert_eq!(one(2), 5.1 * 2.434 * -1.99 * 400.69487 * 3.15168 * -42.0);
        let squares = values.iter().fold(0.0, |a, v| a + v * v);
        assert_eq!(one(3), squares);
        // ep50r3 = p50 (legacy: position 3.5, halfway between 2.434 and 3.15168).
        assert_eq!(one(4), one(5));
        assert!((one(4) - (2.434 + 3.15168) / 2.0).abs() < 1e-12);
        assert_eq!(one(6), Aggregator::P95.aggregate(&values).unwrap());
        // A lone value: diff 0, median and mult the value itself.
        let cols = one_bucket(
            &[Aggregator::Diff, Aggregator::Median, Aggregator::Mult],
            &[9.0],
        );
        assert_eq!(
            cols,
            vec![
                RollupColumn::Float(vec![Some(0.0)]),
                RollupColumn::Float(vec![Some(9.0)]),
                RollupColumn::Float(vec![Some(9.0)])
            ]
        );
    }

    #[test]
    fn negative_timestamps_floor_and_mismatched_lengths_do_not_panic() {
        let rollup = Rollup::new(1000, vec![Aggregator::Sum]).unwrap();
        let mut out = rollup.output();
        rollup.apply_into(&[-1500, -1, 0, 999], &[1.0, 2.0, 4.0], &mut out);
        assert_eq!(out.bucket_ts, vec![-2000, -1000, 0]);
        assert_eq!(
            out.columns[0],
            RollupColumn::Float(vec![Some(1.0), Some(2.0), Some(4.0)])
        );
        let mut wrong = RollupOutput {
            bucket_ts: vec![],
            columns: vec![],
        };
        rollup.apply_into(&[i64::MIN, i64::MAX], &[1.0, 2.0], &mut wrong);
        assert_eq!(wrong.bucket_ts.len(), 2);
    }

    #[test]
    fn buckets_at_the_edges_of_the_i64_range_match_the_reference() {
        // bucket_start saturates at i64::MIN, and the bucket of i64::MAX ends past it.
        let ts = [
            i64::MIN,
            i64::MIN + 1,
            i64::MIN + 807,
            i64::MIN + 808,
            i64::MIN + 999,
            i64::MIN + 1808,
            -1,
            0,
            i64::MAX - 1500,
            i64::MAX - 807,
            i64::MAX - 806,
            i64::MAX,
        ];
        let values: Vec<f64> = (0..ts.len()).map(|i| i as f64).collect();
        for interval in [1, 1000, HOUR, i64::MAX] {
            let rollup = Rollup::new(interval, all_rollup_aggregates()).unwrap();
            let mut out = rollup.output();
            rollup.apply_into(&ts, &values, &mut out);
            let want = reference(&rollup, &ts, &values);
            assert!(
                same(&out, &want),
                "interval {interval}: {out:?}\n!=\n{want:?}"
            );
        }
    }

    /// A series: strictly ascending timestamps (from positive gaps) and values with nulls.
    fn series() -> impl Strategy<Value = (Vec<i64>, Vec<f64>)> {
        (
            -10_000_000_i64..10_000_000,
            proptest::collection::vec(
                (
                    1_i64..400_000,
                    prop_oneof![
                        2 => Just(f64::NAN),
                        8 => -1e6_f64..1e6,
                        1 => (0_i32..4).prop_map(f64::from),
                    ],
                ),
                0..200,
            ),
        )
            .prop_map(|(start, steps)| {
                let mut t = start;
                let mut ts = Vec::with_capacity(steps.len());
                let mut vs = Vec::with_capacity(steps.len());
                for (gap, v) in steps {
                    t += gap;
                    ts.push(t);
                    vs.push(v);
                }
                (ts, vs)
            })
    }

    /// `values` with the order statistics at `positions` selected, through their keys.
    fn select(values: &[f64], positions: &[usize]) -> Vec<f64> {
        let mut keys: Vec<i64> = values.iter().map(|&v| total_key(v)).collect();
        select_order_statistics(&mut keys, positions);
        keys.into_iter().map(from_total_key).collect()
    }

    #[test]
    fn total_keys_order_like_total_cmp_and_give_the_same_bits_back() {
        let values = [
            f64::NEG_INFINITY,
            -1e300,
            -1.5,
            -0.0,
            0.0,
            5e-324,
            1.5,
            1e300,
            f64::INFINITY,
        ];
        for a in values {
            assert_eq!(from_total_key(total_key(a)).to_bits(), a.to_bits());
            for b in values {
                assert_eq!(total_key(a).cmp(&total_key(b)), a.total_cmp(&b), "{a} {b}");
            }
        }
    }

    proptest! {
        /// Selecting the order statistics gives every percentile bit for bit what sorting
        /// gives, including ties, -0.0 next to 0.0, and infinities.
        #[test]
        fn selection_equals_sort(
            values in proptest::collection::vec(prop_oneof![
                4 => -1e6_f64..1e6,
                1 => (-3_i32..3).prop_map(f64::from),
                1 => Just(-0.0_f64),
                1 => Just(f64::INFINITY),
                1 => Just(f64::NEG_INFINITY),
            ], 1..300),
        ) {
            let mut sorted = values.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let ps: Vec<f64> = Aggregator::ALL.iter().filter_map(|a| a.percentile()).collect();
            let mut positions: Vec<usize> = ps
                .iter()
                .filter_map(|&p| percentile_positions(values.len(), p))
                .flat_map(|(lo, hi)| [lo, hi])
                .collect();
            positions.sort_unstable();
            positions.dedup();
            let selected = select(&values, &positions);
            for &p in &ps {
                let want = percentile_of_sorted(&sorted, p).map(f64::to_bits);
                let got = percentile_of_sorted(&selected, p).map(f64::to_bits);
                prop_assert_eq!(got, want, "p{}", p);
            }
            // One percentile alone (the usual table) selects fewer positions.
            let (lo, hi) = percentile_positions(values.len(), 95.0).unwrap();
            let one = select(&values, &[lo, hi][..if lo == hi { 1 } else { 2 }]);
            prop_assert_eq!(
                percentile_of_sorted(&one, 95.0).map(f64::to_bits),
                percentile_of_sorted(&sorted, 95.0).map(f64::to_bits)
            );
        }
    }

    proptest! {
        #[test]
        fn one_pass_equals_per_bucket_aggregate(
            (ts, values) in series(),
            interval in prop_oneof![Just(1_i64), Just(1000), Just(60_000), Just(HOUR), 1_i64..5_000_000],
        ) {
            let rollup = Rollup::new(interval, all_rollup_aggregates()).unwrap();
            let mut out = rollup.output();
            rollup.apply_into(&ts, &values, &mut out);
            let want = reference(&rollup, &ts, &values);
            prop_assert!(same(&out, &want), "{:?}\n!=\n{:?}", out, want);
        }

        #[test]
        fn splitting_at_bucket_boundaries_changes_nothing(
            (ts, values) in series(),
            interval in prop_oneof![Just(60_000_i64), Just(HOUR), 1_i64..5_000_000],
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let rollup = Rollup::new(interval, all_rollup_aggregates()).unwrap();
            let mut whole = rollup.output();
            rollup.apply_into(&ts, &values, &mut whole);

            // Cut positions: the first point of some bucket (a bucket boundary).
            let mut positions: Vec<usize> = cuts.iter().map(|c| c.index(ts.len() + 1)).collect();
            positions.push(0);
            positions.push(ts.len());
            positions.sort_unstable();
            positions.dedup();
            let boundaries: Vec<usize> = positions
                .into_iter()
                .map(|p| {
                    // Move p back to the first index of its bucket.
                    let mut q = p;
                    while q > 0 && q < ts.len()
                        && bucket_start(ts[q - 1], interval) == bucket_start(ts[q], interval)
                    {
                        q -= 1;
                    }
                    q
                })
                .collect();
            let mut pieces = rollup.output();
            for w in boundaries.windows(2) {
                let (a, b) = (w[0], w[1].max(w[0]));
                rollup.apply_into(&ts[a..b], &values[a..b], &mut pieces);
            }
            prop_assert!(same(&whole, &pieces), "{:?}\n!=\n{:?}", whole, pieces);
        }
    }
}
