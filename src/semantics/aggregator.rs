//! OpenTSDB aggregation functions (`reference/api.md` §1.7): the closed set we support, how each
//! reduces a set of values (one bucket when downsampling, one timestamp across series when
//! grouping), and the group-by across series with OpenTSDB's interpolation rules.
//!
//! Numerics follow OpenTSDB 2.4's `Aggregators.java` double path: NaN inputs are skipped,
//! `dev` is the population standard deviation computed with Welford's method in the same order
//! of operations, and the percentiles are Apache Commons Math's `Percentile` with its default
//! (legacy) estimation.
//!
//! Deviations from OpenTSDB, chosen on purpose:
//! - `first` and `last` skip NaN like every other function (OpenTSDB returns a leading or
//!   trailing NaN as is). NaN only appears in our data as a fill value, never as a reading.
//! - In group-by, `mimmax` fills a missing series with `f64::MIN`. OpenTSDB's double path uses
//!   Java's `Double.MIN_VALUE`, which is the smallest *positive* double (4.9e-324), so for
//!   all-negative series it returns ~0 wherever one series lacks a point; its integer path uses
//!   `Long.MIN_VALUE`, which is what the name means and what we do.
//! - We work in doubles only. OpenTSDB aggregates integer-only inputs in integer maths (so a
//!   `p50` of `1..=1000` prints as `500`, not `500.5`); our Parquet values are doubles.

use std::fmt;
use std::str::FromStr;

/// An OpenTSDB aggregation function, by its OpenTSDB name. A closed set: the functions vScope
/// data needs and both dialects (OpenTSDB 2.4 and OVH's Erlenmeyer) understand, at least for
/// downsampling. `pfsum`, `median`, `mult`, `diff`, `squareSum` and the `ep*` estimators exist
/// in OpenTSDB but are refused by Erlenmeyer, so we do not offer them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aggregator {
    /// `avg`: mean, linear interpolation across series.
    Avg,
    /// `sum`: sum, linear interpolation across series.
    Sum,
    /// `zimsum`: sum, a missing series counts as 0 (no interpolation).
    Zimsum,
    /// `min`: minimum, linear interpolation across series.
    Min,
    /// `max`: maximum, linear interpolation across series.
    Max,
    /// `mimmin`: minimum, a missing series counts as the largest double (so it never wins).
    Mimmin,
    /// `mimmax`: maximum, a missing series counts as the smallest double (so it never wins).
    Mimmax,
    /// `count`: number of values; in group-by, the number of series whose span covers the time.
    Count,
    /// `dev`: population standard deviation (`{1, 2}` gives 0.5).
    Dev,
    /// `first`: the first value by position (time order in a bucket, series order in a group).
    First,
    /// `last`: the last value by position.
    Last,
    /// `none` (OpenTSDB's internal `raw`): no aggregation, one output per series. Refused for
    /// downsampling and rollups.
    None,
    /// `p50`: 50th percentile (Commons Math legacy estimation).
    P50,
    /// `p75`: 75th percentile.
    P75,
    /// `p90`: 90th percentile.
    P90,
    /// `p95`: 95th percentile.
    P95,
    /// `p99`: 99th percentile.
    P99,
    /// `p999`: 99.9th percentile.
    P999,
}

/// How group-by fills a series that has no point at a timestamp, while that timestamp lies
/// between the series' first and last points (before the first or after the last, the series
/// contributes nothing at all). OpenTSDB's `Aggregators.Interpolation`, minus `PREV` (`pfsum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// Linear interpolation between the previous and the next point of that series.
    Lerp,
    /// Zero if missing.
    Zim,
    /// The largest double if missing (`mimmin`).
    Max,
    /// The smallest double if missing (`mimmax`).
    Min,
}

/// Why an aggregator name was refused. The message is OpenTSDB's ("No such aggregation
/// function: X") for unknown names, so the simulator can answer like a TSD, and says so
/// explicitly for OpenTSDB names we chose not to support.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseAggregatorError {
    /// Not an OpenTSDB aggregator name (names are case-sensitive: `SUM` is unknown).
    #[error("No such aggregation function: {name}")]
    Unknown {
        /// The name as given.
        name: String,
    },
    /// An OpenTSDB 2.4 aggregator that OVH's endpoint refuses, so we do not offer it.
    #[error(
        "aggregation function '{name}' exists in OpenTSDB but is not supported here (OVH's endpoint refuses it); use one of avg, sum, zimsum, min, max, mimmin, mimmax, count, dev, first, last, none, p50, p75, p90, p95, p99, p999"
    )]
    Unsupported {
        /// The name as given.
        name: String,
    },
}

/// OpenTSDB 2.4 aggregator names outside our closed set, so that refusing them can say why.
const OPENTSDB_ONLY: &[&str] = &[
    "pfsum",
    "median",
    "mult",
    "diff",
    "squareSum",
    "multiply",
    "ep50r3",
    "ep75r3",
    "ep90r3",
    "ep95r3",
    "ep99r3",
    "ep999r3",
    "ep50r7",
    "ep75r7",
    "ep90r7",
    "ep95r7",
    "ep99r7",
    "ep999r7",
];

impl Aggregator {
    /// Every aggregator, in declaration order (handy for `/api/aggregators` and for tests).
    pub const ALL: [Aggregator; 18] = [
        Aggregator::Avg,
        Aggregator::Sum,
        Aggregator::Zimsum,
        Aggregator::Min,
        Aggregator::Max,
        Aggregator::Mimmin,
        Aggregator::Mimmax,
        Aggregator::Count,
        Aggregator::Dev,
        Aggregator::First,
        Aggregator::Last,
        Aggregator::None,
        Aggregator::P50,
        Aggregator::P75,
        Aggregator::P90,
        Aggregator::P95,
        Aggregator::P99,
        Aggregator::P999,
    ];

    /// The OpenTSDB name (`avg`, `p999`, ...): what requests carry, and our rollup column names.
    pub fn name(self) -> &'static str {
        match self {
            Aggregator::Avg => "avg",
            Aggregator::Sum => "sum",
            Aggregator::Zimsum => "zimsum",
            Aggregator::Min => "min",
            Aggregator::Max => "max",
            Aggregator::Mimmin => "mimmin",
            Aggregator::Mimmax => "mimmax",
            Aggregator::Count => "count",
            Aggregator::Dev => "dev",
            Aggregator::First => "first",
            Aggregator::Last => "last",
            Aggregator::None => "none",
            Aggregator::P50 => "p50",
            Aggregator::P75 => "p75",
            Aggregator::P90 => "p90",
            Aggregator::P95 => "p95",
            Aggregator::P99 => "p99",
            Aggregator::P999 => "p999",
        }
    }

    /// How group-by treats a series that lacks a point at a timestamp (OpenTSDB's table).
    pub fn interpolation(self) -> Interpolation {
        match self {
            Aggregator::Zimsum
            | Aggregator::Count
            | Aggregator::First
            | Aggregator::Last
            | Aggregator::None => Interpolation::Zim,
            Aggregator::Mimmin => Interpolation::Max,
            Aggregator::Mimmax => Interpolation::Min,
            _ => Interpolation::Lerp,
        }
    }

    /// True for `p50` … `p999`: these need their values sorted, which callers such as the
    /// rollup use to decide whether to sort a bucket at all.
    pub fn is_percentile(self) -> bool {
        self.percentile().is_some()
    }

    /// The percentile rank (50.0 … 99.9) for `p*` aggregators, as OpenTSDB passes it to
    /// Commons Math; `None` for the others.
    pub fn percentile(self) -> Option<f64> {
        match self {
            Aggregator::P50 => Some(50.0),
            Aggregator::P75 => Some(75.0),
            Aggregator::P90 => Some(90.0),
            Aggregator::P95 => Some(95.0),
            Aggregator::P99 => Some(99.0),
            Aggregator::P999 => Some(99.9),
            _ => None,
        }
    }

    /// Whether OVH's Erlenmeyer accepts this as the group-by `aggregator` of a sub-query
    /// (§2.2): everything but `first` and `last`, which it only knows as downsamplers.
    pub fn is_supported_by_ovh_groupby(self) -> bool {
        !matches!(self, Aggregator::First | Aggregator::Last)
    }

    /// Whether OVH's Erlenmeyer accepts this as a downsampling function (§2.2): everything but
    /// `none` (which OpenTSDB refuses for downsampling too).
    pub fn is_supported_by_ovh_downsample(self) -> bool {
        self != Aggregator::None
    }

    /// Reduces `values` (one downsample bucket in time order, or one timestamp across series in
    /// series order) to one value, skipping NaN. `None` when no non-NaN value is left, because
    /// an empty bucket has no value (callers decide between skipping and filling).
    ///
    /// `count` returns the number of non-NaN values as `f64`; `none` returns the value when
    /// there is exactly one (OpenTSDB raises an error for more). Percentiles allocate a sorted
    /// copy; when computing many aggregates of the same values use [`percentile_of_sorted`].
    ///
    /// ```
    /// use vscope_etl::semantics::Aggregator;
    /// assert_eq!(Aggregator::Dev.aggregate(&[1.0, 2.0]), Some(0.5));
    /// assert_eq!(Aggregator::Sum.aggregate(&[f64::NAN, 2.0]), Some(2.0));
    /// assert_eq!(Aggregator::Avg.aggregate(&[]), None);
    /// ```
    pub fn aggregate(&self, values: &[f64]) -> Option<f64> {
        let mut present = values.iter().copied().filter(|v| !v.is_nan());
        let first = present.next()?;
        let result = match self {
            Aggregator::Sum | Aggregator::Zimsum => present.fold(first, |acc, v| acc + v),
            Aggregator::Avg => {
                let (sum, n) = present.fold((first, 1_u64), |(s, n), v| (s + v, n + 1));
                sum / n as f64
            }
            Aggregator::Min | Aggregator::Mimmin => {
                present.fold(first, |m, v| if v < m { v } else { m })
            }
            Aggregator::Max | Aggregator::Mimmax => {
                present.fold(first, |m, v| if v > m { v } else { m })
            }
            Aggregator::Count => (1 + present.count()) as f64,
            Aggregator::Dev => {
                let mut dev = Welford::new(first);
                present.for_each(|v| dev.push(v));
                dev.population_std()
            }
            Aggregator::First => first,
            Aggregator::Last => present.next_back().unwrap_or(first),
            Aggregator::None => {
                if present.next().is_some() {
                    return Option::None;
                }
                first
            }
            Aggregator::P50
            | Aggregator::P75
            | Aggregator::P90
            | Aggregator::P95
            | Aggregator::P99
            | Aggregator::P999 => {
                let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
                sorted.sort_unstable_by(f64::total_cmp);
                return percentile_of_sorted(&sorted, self.percentile().unwrap_or(50.0));
            }
        };
        Some(result)
    }

    /// The value OpenTSDB emits for `values`: [`Aggregator::aggregate`], or when nothing is
    /// left after skipping NaN, NaN (0 for `count`). Used where OpenTSDB has to emit a point
    /// anyway (a group-by timestamp, a downsample bucket whose values are all NaN).
    pub fn aggregate_or_nan(&self, values: &[f64]) -> f64 {
        match self.aggregate(values) {
            Some(v) => v,
            Option::None if *self == Aggregator::Count => 0.0,
            Option::None => f64::NAN,
        }
    }
}

/// Welford's running variance, in the exact order of operations of OpenTSDB's `StdDev`
/// (so that results match to the last bit), shared by [`Aggregator::aggregate`] and the rollup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Welford {
    mean: f64,
    m2: f64,
    /// One more than the number of values seen, as in OpenTSDB (`n` starts at 2 for the
    /// second value).
    n: u64,
}

impl Welford {
    /// Starts with one value.
    pub(crate) fn new(first: f64) -> Welford {
        Welford {
            mean: first,
            m2: 0.0,
            n: 2,
        }
    }

    /// Adds one value.
    pub(crate) fn push(&mut self, x: f64) {
        let new_mean = self.mean + (x - self.mean) / self.n as f64;
        self.m2 += (x - self.mean) * (x - new_mean);
        self.mean = new_mean;
        self.n += 1;
    }

    /// The population standard deviation (0 for a single value).
    pub(crate) fn population_std(&self) -> f64 {
        if self.n == 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }
}

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending, no NaN), with Apache Commons
/// Math's `Percentile` default ("legacy") estimation, which OpenTSDB's `p*` aggregators use:
///
/// - position `pos = (p / 100) · (n + 1)` (1-based);
/// - `pos < 1` gives the minimum, `pos ≥ n` the maximum;
/// - otherwise linear interpolation between the values at ranks `⌊pos⌋` and `⌊pos⌋ + 1`.
///
/// So `p50` of `1..=1000` is 500.5. OpenTSDB's own test expects 500 only because integer
/// inputs go through its `runLong` path, which truncates the double to a `long`.
/// `None` for an empty slice. Public so that callers computing several percentiles of one
/// bucket sort once.
///
/// Only the positions given by [`percentile_positions`] are read, so `sorted` need only hold
/// the right order statistics there (what `select_nth_unstable_by(i, f64::total_cmp)` puts at
/// `i`); the rollup uses that to select two values instead of sorting the bucket.
pub fn percentile_of_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let (lo, hi) = percentile_positions(sorted.len(), p)?;
    let lower = sorted[lo];
    if lo == hi {
        return Some(lower);
    }
    let upper = sorted[hi];
    let pos = p / 100.0 * (sorted.len() as f64 + 1.0);
    Some(lower + (pos - pos.floor()) * (upper - lower))
}

/// The 0-based positions in `n` ascending values that [`percentile_of_sorted`] reads for the
/// `p`-th percentile: `(lower, upper)`, the same position twice when one value is the answer
/// (`n = 1`, `pos < 1`, `pos ≥ n`), else two neighbours to interpolate between. `None` for
/// `n = 0`.
pub fn percentile_positions(n: usize, p: f64) -> Option<(usize, usize)> {
    if n == 0 {
        return Option::None;
    }
    if n == 1 {
        return Some((0, 0));
    }
    let pos = p / 100.0 * (n as f64 + 1.0);
    if pos < 1.0 {
        return Some((0, 0));
    }
    if pos >= n as f64 {
        return Some((n - 1, n - 1));
    }
    // 1 ≤ ⌊pos⌋ < n here, so both ranks (1-based ⌊pos⌋ and ⌊pos⌋ + 1) are in bounds.
    let rank = pos.floor() as usize;
    Some((rank - 1, rank))
}

impl fmt::Display for Aggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Aggregator {
    type Err = ParseAggregatorError;

    /// Case-sensitive, like OpenTSDB's `Aggregators.get` (`SUM` is unknown).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(agg) = Aggregator::ALL.iter().find(|a| a.name() == s) {
            return Ok(*agg);
        }
        let name = s.to_owned();
        if OPENTSDB_ONLY.contains(&s) {
            Err(ParseAggregatorError::Unsupported { name })
        } else {
            Err(ParseAggregatorError::Unknown { name })
        }
    }
}

impl serde::Serialize for Aggregator {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Aggregator {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Group-by across series, exactly as OpenTSDB's `AggregationIterator` does it (§1.7):
///
/// - output timestamps are the **union** of all series' timestamps, ascending;
/// - at each one, a series with a point there contributes that value; a series with no point
///   there but points before and after contributes per [`Aggregator::interpolation`]
///   (lerp `y0 + (x - x0)(y1 - y0)/(x1 - x0)`, 0, the largest or the smallest double);
/// - a series contributes **nothing** before its first point or after its last (no
///   extrapolation);
/// - the contributions are reduced with [`Aggregator::aggregate_or_nan`] in series order.
///
/// So `count` is the number of series whose span covers the timestamp (interpolated zeros
/// count), which is OpenTSDB's behaviour (its own source warns that counts are "off"), and
/// `zimsum`, `mimmin`, `mimmax` reduce the present points only. `none` means "do not group":
/// given here, a timestamp with exactly one contributing series yields its value and any other
/// is dropped (OpenTSDB raises an error).
///
/// Each series must be sorted by timestamp; repeated timestamps within a series are tolerated
/// (each yields its own output point). Never panics.
///
/// ```
/// use vscope_etl::semantics::{Aggregator, aggregate_series};
/// let a = vec![(0, 40.0), (10, 50.0), (30, 70.0)];
/// let b = vec![(10, 37.0), (20, 48.0)];
/// let sum = aggregate_series(&[a, b], Aggregator::Sum);
/// assert_eq!(sum, vec![(0, 40.0), (10, 87.0), (20, 108.0), (30, 70.0)]);
/// ```
pub fn aggregate_series(series: &[Vec<(i64, f64)>], agg: Aggregator) -> Vec<(i64, f64)> {
    let method = agg.interpolation();
    // Index of the next unconsumed point of each series.
    let mut next = vec![0_usize; series.len()];
    let mut values = Vec::with_capacity(series.len());
    let total: usize = series.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    while let Some(x) = series
        .iter()
        .zip(&next)
        .filter_map(|(s, &i)| s.get(i).map(|p| p.0))
        .min()
    {
        values.clear();
        for (s, &i) in series.iter().zip(&next) {
            match s.get(i) {
                Some(&(t, v)) if t == x => values.push(v),
                // Not started yet (i == 0) or already ended (no point at i): no contribution.
                Some(&(x1, y1)) if i > 0 => {
                    let (x0, y0) = s[i - 1];
                    values.push(match method {
                        Interpolation::Lerp => {
                            y0 + (x.wrapping_sub(x0) as f64 * (y1 - y0))
                                / x1.wrapping_sub(x0) as f64
                        }
                        Interpolation::Zim => 0.0,
                        Interpolation::Max => f64::MAX,
                        Interpolation::Min => f64::MIN,
                    });
                }
                _ => {}
            }
        }
        for (s, i) in series.iter().zip(next.iter_mut()) {
            if s.get(*i).is_some_and(|p| p.0 == x) {
                *i += 1;
            }
        }
        if agg == Aggregator::None {
            if let [v] = values[..] {
                out.push((x, v));
            }
        } else {
            out.push((x, agg.aggregate_or_nan(&values)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: i64 = 1_356_998_400_000;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for agg in Aggregator::ALL {
            assert_eq!(agg.name().parse::<Aggregator>(), Ok(agg));
            assert_eq!(agg.to_string(), agg.name());
        }
        let err = "SUM".parse::<Aggregator>().unwrap_err();
        assert_eq!(err.to_string(), "No such aggregation function: SUM");
        assert!(matches!(
            "median".parse::<Aggregator>(),
            Err(ParseAggregatorError::Unsupported { .. })
        ));
    }

    #[test]
    fn dev_is_population_std() {
        // reference/api.md §1.11 item 20.
        assert_eq!(Aggregator::Dev.aggregate(&[1.0, 2.0]), Some(0.5));
        assert_eq!(Aggregator::Dev.aggregate(&[3.0, 3.0, 3.0]), Some(0.0));
        assert_eq!(Aggregator::Dev.aggregate(&[7.0]), Some(0.0));
    }

    #[test]
    fn percentiles_of_1_to_1000() {
        // §1.11 item 21. OpenTSDB's test expects 500, 750, 900, 950, 990 because its inputs
        // are integers and `runLong` truncates `(long) percentile.evaluate()`. The doubles
        // Commons Math computes (and we return) are 500.5, 750.75, 900.9, 950.95, 990.99.
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let cases = [
            (Aggregator::P50, 500.5),
            (Aggregator::P75, 750.75),
            (Aggregator::P90, 900.9),
            (Aggregator::P95, 950.95),
            (Aggregator::P99, 990.99),
            (Aggregator::P999, 999.999),
        ];
        for (agg, want) in cases {
            let got = agg.aggregate(&values).unwrap();
            assert!((got - want).abs() < 1e-9, "{agg}: {got} vs {want}");
            // And the truncation OpenTSDB's integer path applies gives its expected values.
            assert_eq!(got as i64, want as i64);
        }
    }

    #[test]
    fn percentile_edges_clamp() {
        assert_eq!(Aggregator::P50.aggregate(&[4.0]), Some(4.0));
        assert_eq!(Aggregator::P999.aggregate(&[1.0, 2.0]), Some(2.0));
        assert_eq!(percentile_of_sorted(&[1.0, 2.0, 3.0], 10.0), Some(1.0));
        assert_eq!(Aggregator::P50.aggregate(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(Aggregator::P99.aggregate(&[]), None);
    }

    #[test]
    fn first_last_count_and_nan() {
        // §1.11 item 22.
        let values: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(Aggregator::First.aggregate(&values), Some(0.0));
        assert_eq!(Aggregator::Last.aggregate(&values), Some(9.0));
        assert_eq!(Aggregator::Count.aggregate(&values), Some(10.0));
        let gappy = [f64::NAN, 2.0, f64::NAN, 6.0, f64::NAN];
        assert_eq!(Aggregator::First.aggregate(&gappy), Some(2.0));
        assert_eq!(Aggregator::Last.aggregate(&gappy), Some(6.0));
        assert_eq!(Aggregator::Count.aggregate(&gappy), Some(2.0));
        assert_eq!(Aggregator::Avg.aggregate(&gappy), Some(4.0));
        assert_eq!(Aggregator::Min.aggregate(&[f64::NAN]), None);
        assert_eq!(Aggregator::Count.aggregate_or_nan(&[f64::NAN]), 0.0);
        assert!(Aggregator::Sum.aggregate_or_nan(&[]).is_nan());
        assert_eq!(Aggregator::None.aggregate(&[1.0]), Some(1.0));
        assert_eq!(Aggregator::None.aggregate(&[1.0, 2.0]), None);
    }

    #[test]
    fn ovh_support_tables() {
        assert!(!Aggregator::First.is_supported_by_ovh_groupby());
        assert!(!Aggregator::Last.is_supported_by_ovh_groupby());
        assert!(Aggregator::None.is_supported_by_ovh_groupby());
        assert!(!Aggregator::None.is_supported_by_ovh_downsample());
        assert!(Aggregator::First.is_supported_by_ovh_downsample());
    }

    #[test]
    fn lerp_sum_from_opentsdb_tests() {
        // §1.11 item 15: B is not extrapolated after its last point.
        let a = vec![(B, 40.0), (B + 10_000, 50.0), (B + 30_000, 70.0)];
        let b = vec![(B + 10_000, 37.0), (B + 20_000, 48.0)];
        assert_eq!(
            aggregate_series(&[a, b], Aggregator::Sum),
            vec![
                (B, 40.0),
                (B + 10_000, 87.0),
                (B + 20_000, 108.0),
                (B + 30_000, 70.0)
            ]
        );
    }

    #[test]
    fn lerp_sum_from_opentsdb_docs() {
        // §1.11 item 16 (user_guide/query/aggregators.rst). The reference lists 25 at t=30, but
        // lerp gives A=15 (a real point) + B=15 (halfway from 20@20 to 10@40) = 30; the docs
        // page itself prints yet other numbers (-7, -2). We assert the arithmetic.
        let a = vec![(10, 5.0), (30, 15.0), (50, 5.0)];
        let b = vec![(0, 10.0), (20, 20.0), (40, 10.0), (60, 20.0)];
        assert_eq!(
            aggregate_series(&[a, b], Aggregator::Sum),
            vec![
                (0, 10.0),
                (10, 20.0),
                (20, 30.0),
                (30, 30.0),
                (40, 20.0),
                (50, 20.0),
                (60, 20.0)
            ]
        );
    }

    #[test]
    fn non_lerp_group_by_rules() {
        let a = vec![(0, 1.0), (20, 3.0)];
        let b = vec![(10, -5.0), (30, -7.0)];
        let series = [a, b];
        // zimsum: missing = 0.
        assert_eq!(
            aggregate_series(&series, Aggregator::Zimsum),
            vec![(0, 1.0), (10, -5.0), (20, 3.0), (30, -7.0)]
        );
        // count: series whose span covers the time.
        assert_eq!(
            aggregate_series(&series, Aggregator::Count),
            vec![(0, 1.0), (10, 2.0), (20, 2.0), (30, 1.0)]
        );
        // mimmin: missing never wins.
        assert_eq!(
            aggregate_series(&series, Aggregator::Mimmin),
            vec![(0, 1.0), (10, -5.0), (20, 3.0), (30, -7.0)]
        );
        // mimmax: missing never wins, even against negatives.
        assert_eq!(
            aggregate_series(&series, Aggregator::Mimmax),
            vec![(0, 1.0), (10, -5.0), (20, 3.0), (30, -7.0)]
        );
        // max with lerp: a at 10 is 2.0.
        assert_eq!(
            aggregate_series(&series, Aggregator::Max),
            vec![(0, 1.0), (10, 2.0), (20, 3.0), (30, -7.0)]
        );
        // none: only timestamps with a single contributor survive.
        assert_eq!(
            aggregate_series(&series, Aggregator::None),
            vec![(0, 1.0), (30, -7.0)]
        );
    }

    #[test]
    fn group_by_edge_cases() {
        assert!(aggregate_series(&[], Aggregator::Sum).is_empty());
        assert!(aggregate_series(&[vec![], vec![]], Aggregator::Sum).is_empty());
        let dup = vec![(5, 1.0), (5, 2.0)];
        assert_eq!(
            aggregate_series(&[dup], Aggregator::Sum),
            vec![(5, 1.0), (5, 2.0)]
        );
        let nan = vec![(0, f64::NAN)];
        let out = aggregate_series(&[nan], Aggregator::Avg);
        assert!(out[0].1.is_nan());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn aggregator_names_never_panic(s in any::<String>()) {
                let _ = s.parse::<Aggregator>();
            }

            #[test]
            fn group_by_of_one_series_is_identity(
                points in proptest::collection::btree_map(any::<i64>(), -1e9_f64..1e9, 0..40)
            ) {
                let series: Vec<(i64, f64)> = points.into_iter().collect();
                for agg in [Aggregator::Sum, Aggregator::Avg, Aggregator::Max, Aggregator::Last] {
                    prop_assert_eq!(aggregate_series(std::slice::from_ref(&series), agg), series.clone());
                }
            }

            #[test]
            fn percentile_is_within_range(
                mut values in proptest::collection::vec(-1e12_f64..1e12, 1..50),
                p in 0.001_f64..=100.0,
            ) {
                values.sort_unstable_by(f64::total_cmp);
                let got = percentile_of_sorted(&values, p).unwrap();
                prop_assert!(got >= values[0] && got <= values[values.len() - 1]);
            }
        }
    }
}
