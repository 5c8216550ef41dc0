//! OpenTSDB aggregation functions (`reference/api.md` §1.7): every name OpenTSDB 2.4.1 registers
//! in `Aggregators.java`, how each reduces a set of values (one bucket when downsampling, one
//! timestamp across series when grouping), and the group-by across series with OpenTSDB's
//! interpolation rules.
//!
//! Numerics follow OpenTSDB 2.4.1's `Aggregators.java` double path (`runDouble`), which is the
//! path every downsampler takes (`Downsampler.java` always calls `runDouble`, so downsampled
//! values are doubles): NaN inputs are skipped, sums start from `0.0` (so `-0.0` sums to `0.0`),
//! `dev` is the population standard deviation computed with Welford's method in the same order
//! of operations, and the percentiles are Apache Commons Math's `Percentile` with its default
//! (legacy) estimation. Per function:
//!
//! | name | one bucket (`runDouble`) | group-by interpolation |
//! |---|---|---|
//! | `sum`, `zimsum`, `pfsum` | `0.0 + v₁ + … + vₙ` | lerp, zero, previous value |
//! | `avg` | the same sum divided by n | lerp |
//! | `min`, `mimmin` / `max`, `mimmax` | the smallest / largest value | lerp, largest double / lerp, lowest double |
//! | `count` | n | zero |
//! | `dev` | population standard deviation (Welford) | lerp |
//! | `first`, `last` | the first / last value | zero |
//! | `median` | the **upper** median: the value at 0-based rank ⌊n/2⌋ once sorted, no averaging (`{1, 2, 3, 4}` gives 3) | lerp |
//! | `mult` | `v₁ · v₂ · … · vₙ` (NaN is **not** skipped: any NaN gives NaN) | lerp |
//! | `diff` | the last value minus the first non-NaN one; 0 for a single value | lerp |
//! | `squareSum` | `0.0 + v₁² + … + vₙ²` | zero |
//! | `p50` … `p999` | Commons Math `Percentile`, legacy estimation | lerp |
//! | `ep50r3` … `ep999r3`, `ep50r7` … `ep999r7` | **the same as `p50` … `p999`**: `PercentileAgg.runDouble` builds `new Percentile(p)` without the R-3/R-7 estimation type, which only `runLong` (integer group-by) applies; a downsampler never takes that path | lerp |
//! | `none` | the single value (OpenTSDB raises an error for more); refused for downsampling | zero |
//!
//! Deviations from OpenTSDB, chosen on purpose:
//! - `first` and `last` skip NaN like every other function (OpenTSDB returns a leading or
//!   trailing NaN as is). NaN only appears in our data as a fill value, never as a reading.
//! - `min` (`max`) of values that are all `+∞` (`−∞`) is that infinity; OpenTSDB, which starts
//!   from that infinity as "nothing yet", returns NaN. Our decoder turns infinities into nulls
//!   before any rollup, so this only concerns callers of [`Aggregator::aggregate`].
//! - We work in doubles only. OpenTSDB aggregates integer-only inputs without downsampling in
//!   integer maths (`runLong`: a `p50` of `1..=1000` prints as `500`, not `500.5`, and the
//!   `ep*` estimators apply R-3/R-7 there); our Parquet values are doubles.
//!
//! In group-by, `mimmax` fills a missing series with `f64::MIN` (= `-f64::MAX`), as 2.4.1's
//! `AggregationIterator` does with `-Double.MAX_VALUE` (2.3 used `Double.MIN_VALUE`, the
//! smallest positive double, which made `mimmax` of negative series return ~0).

use std::fmt;

use crate::dialect::Dialect;
use std::str::FromStr;

/// An OpenTSDB aggregation function, by its OpenTSDB name: the 35 names OpenTSDB 2.4.1
/// registers (`Aggregators.java`, static block). Names are case-sensitive (`squareSum`).
///
/// OVH's Erlenmeyer accepts only some of them, and fewer for group-by than for downsampling:
/// see [`Aggregator::is_supported_by_ovh_groupby`] and
/// [`Aggregator::is_supported_by_ovh_downsample`].
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
    /// `pfsum` (OpenTSDB 2.4): sum; in group-by a missing series counts as its previous value.
    Pfsum,
    /// `median` (OpenTSDB 2.4): the upper median, the value at 0-based rank ⌊n/2⌋ once sorted.
    Median,
    /// `mult` (OpenTSDB 2.3, internally `multiply`): the product, NaN not skipped.
    Mult,
    /// `diff` (OpenTSDB 2.4): last value minus first value (0 for one value).
    Diff,
    /// `squareSum` (OpenTSDB 2.4): sum of squares; a missing series counts as 0 in group-by.
    SquareSum,
    /// `ep50r3`: "estimated" 50th percentile, R-3 by name; computed as `p50` on the double path.
    Ep50r3,
    /// `ep75r3`: as `p75` on the double path.
    Ep75r3,
    /// `ep90r3`: as `p90` on the double path.
    Ep90r3,
    /// `ep95r3`: as `p95` on the double path.
    Ep95r3,
    /// `ep99r3`: as `p99` on the double path.
    Ep99r3,
    /// `ep999r3`: as `p999` on the double path.
    Ep999r3,
    /// `ep50r7`: "estimated" 50th percentile, R-7 by name; computed as `p50` on the double path.
    Ep50r7,
    /// `ep75r7`: as `p75` on the double path.
    Ep75r7,
    /// `ep90r7`: as `p90` on the double path.
    Ep90r7,
    /// `ep95r7`: as `p95` on the double path.
    Ep95r7,
    /// `ep99r7`: as `p99` on the double path.
    Ep99r7,
    /// `ep999r7`: as `p999` on the double path.
    Ep999r7,
}

/// How group-by fills a series that has no point at a timestamp, while that timestamp lies
/// between the series' first and last points (before the first or after the last, the series
/// contributes nothing at all). OpenTSDB's `Aggregators.Interpolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// Linear interpolation between the previous and the next point of that series.
    Lerp,
    /// Zero if missing.
    Zim,
    /// The largest double if missing (`mimmin`).
    Max,
    /// The lowest double if missing (`mimmax`).
    Min,
    /// The previous point's value if missing (`pfsum`).
    Prev,
}

/// Why an aggregator name was refused. The message is OpenTSDB's ("No such aggregation
/// function: X"), so the simulator can answer like a TSD.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseAggregatorError {
    /// Not an OpenTSDB aggregator name (names are case-sensitive: `SUM` is unknown).
    #[error("No such aggregation function: {name}")]
    Unknown {
        /// The name as given.
        name: String,
    },
}

/// The names a downsampler (and so a rollup) accepts, comma-separated, for error messages:
/// every aggregator but `none`, in [`Aggregator::ALL`] order.
pub const DOWNSAMPLING_FUNCTIONS: &str = "avg, sum, zimsum, min, max, mimmin, mimmax, count, dev, \
     first, last, p50, p75, p90, p95, p99, p999, pfsum, median, mult, diff, squareSum, \
     ep50r3, ep75r3, ep90r3, ep95r3, ep99r3, ep999r3, ep50r7, ep75r7, ep90r7, ep95r7, ep99r7, ep999r7";

impl Aggregator {
    /// Every aggregator, in declaration order (handy for `/api/aggregators` and for tests).
    pub const ALL: [Aggregator; 35] = [
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
        Aggregator::Pfsum,
        Aggregator::Median,
        Aggregator::Mult,
        Aggregator::Diff,
        Aggregator::SquareSum,
        Aggregator::Ep50r3,
        Aggregator::Ep75r3,
        Aggregator::Ep90r3,
        Aggregator::Ep95r3,
        Aggregator::Ep99r3,
        Aggregator::Ep999r3,
        Aggregator::Ep50r7,
        Aggregator::Ep75r7,
        Aggregator::Ep90r7,
        Aggregator::Ep95r7,
        Aggregator::Ep99r7,
        Aggregator::Ep999r7,
    ];

    /// The OpenTSDB name (`avg`, `p999`, `squareSum`, ...): what requests carry, and our rollup
    /// column names. It is the only spelling OpenTSDB accepts, so it is also the name as the
    /// user wrote it.
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
            Aggregator::Pfsum => "pfsum",
            Aggregator::Median => "median",
            Aggregator::Mult => "mult",
            Aggregator::Diff => "diff",
            Aggregator::SquareSum => "squareSum",
            Aggregator::Ep50r3 => "ep50r3",
            Aggregator::Ep75r3 => "ep75r3",
            Aggregator::Ep90r3 => "ep90r3",
            Aggregator::Ep95r3 => "ep95r3",
            Aggregator::Ep99r3 => "ep99r3",
            Aggregator::Ep999r3 => "ep999r3",
            Aggregator::Ep50r7 => "ep50r7",
            Aggregator::Ep75r7 => "ep75r7",
            Aggregator::Ep90r7 => "ep90r7",
            Aggregator::Ep95r7 => "ep95r7",
            Aggregator::Ep99r7 => "ep99r7",
            Aggregator::Ep999r7 => "ep999r7",
        }
    }

    /// How group-by treats a series that lacks a point at a timestamp (OpenTSDB's table).
    pub fn interpolation(self) -> Interpolation {
        match self {
            Aggregator::Zimsum
            | Aggregator::Count
            | Aggregator::First
            | Aggregator::Last
            | Aggregator::None
            | Aggregator::SquareSum => Interpolation::Zim,
            Aggregator::Mimmin => Interpolation::Max,
            Aggregator::Mimmax => Interpolation::Min,
            Aggregator::Pfsum => Interpolation::Prev,
            _ => Interpolation::Lerp,
        }
    }

    /// True for `p50` … `p999` and `ep50r3` … `ep999r7`: these need order statistics of their
    /// values, which callers such as the rollup use to decide whether to keep a bucket's values.
    pub fn is_percentile(self) -> bool {
        self.percentile().is_some()
    }

    /// The percentile rank (50.0 … 99.9) of `p*` and `ep*` aggregators, as OpenTSDB passes it
    /// to Commons Math; `None` for the others.
    pub fn percentile(self) -> Option<f64> {
        match self {
            Aggregator::P50 | Aggregator::Ep50r3 | Aggregator::Ep50r7 => Some(50.0),
            Aggregator::P75 | Aggregator::Ep75r3 | Aggregator::Ep75r7 => Some(75.0),
            Aggregator::P90 | Aggregator::Ep90r3 | Aggregator::Ep90r7 => Some(90.0),
            Aggregator::P95 | Aggregator::Ep95r3 | Aggregator::Ep95r7 => Some(95.0),
            Aggregator::P99 | Aggregator::Ep99r3 | Aggregator::Ep99r7 => Some(99.0),
            Aggregator::P999 | Aggregator::Ep999r3 | Aggregator::Ep999r7 => Some(99.9),
            _ => None,
        }
    }

    /// Whether OVH's Erlenmeyer accepts this as the group-by `aggregator` of a sub-query
    /// (§2.2, `aggregators.go`): `avg sum zimsum min max mimmin mimmax p50 … p999 dev count
    /// none`. Not `first` and `last` (downsampling only), nor OpenTSDB's later additions.
    pub fn is_supported_by_ovh_groupby(self) -> bool {
        matches!(
            self,
            Aggregator::Avg
                | Aggregator::Sum
                | Aggregator::Zimsum
                | Aggregator::Min
                | Aggregator::Max
                | Aggregator::Mimmin
                | Aggregator::Mimmax
                | Aggregator::Count
                | Aggregator::Dev
                | Aggregator::None
                | Aggregator::P50
                | Aggregator::P75
                | Aggregator::P90
                | Aggregator::P95
                | Aggregator::P99
                | Aggregator::P999
        )
    }

    /// Whether OVH's Erlenmeyer accepts this as a downsampling function (§2.2; ovh/erlenmeyer
    /// `proto/opentsdb/query.go`, `downsamplerToBucketizer`): `avg sum zimsum mimmin mimmax
    /// min max count first last p50 … p999 dev`. Not `none` (OpenTSDB refuses it for
    /// downsampling too), `pfsum`, `median`, `mult`, `diff`, `squareSum` or the `ep*`.
    pub fn is_supported_by_ovh_downsample(self) -> bool {
        matches!(
            self,
            Aggregator::Avg
                | Aggregator::Sum
                | Aggregator::Zimsum
                | Aggregator::Min
                | Aggregator::Max
                | Aggregator::Mimmin
                | Aggregator::Mimmax
                | Aggregator::Count
                | Aggregator::Dev
                | Aggregator::First
                | Aggregator::Last
                | Aggregator::P50
                | Aggregator::P75
                | Aggregator::P90
                | Aggregator::P95
                | Aggregator::P99
                | Aggregator::P999
        )
    }

    /// Reduces `values` (one downsample bucket in time order, or one timestamp across series in
    /// series order) to one value, as OpenTSDB's `runDouble` does (see the module table).
    /// `None` when no non-NaN value is there, because an empty bucket has no value (callers
    /// decide between skipping and filling).
    ///
    /// NaN is skipped by every function except `mult`, which multiplies it in (OpenTSDB's
    /// `Multiply` does not test for NaN), and `diff`, which subtracts the first non-NaN value
    /// from the last value even when that last one is NaN (as `Diff` does). `count` returns the
    /// number of non-NaN values as `f64`; `none` returns the value when there is exactly one
    /// (OpenTSDB raises an error for more). Percentiles and `median` allocate a sorted copy;
    /// when computing many aggregates of the same values use [`percentile_of_sorted`].
    ///
    /// ```
    /// use vscope_core::semantics::Aggregator;
    /// assert_eq!(Aggregator::Dev.aggregate(&[1.0, 2.0]), Some(0.5));
    /// assert_eq!(Aggregator::Sum.aggregate(&[f64::NAN, 2.0]), Some(2.0));
    /// assert_eq!(Aggregator::Median.aggregate(&[1.0, 2.0, 3.0, 4.0]), Some(3.0));
    /// assert_eq!(Aggregator::Avg.aggregate(&[]), None);
    /// ```
    pub fn aggregate(&self, values: &[f64]) -> Option<f64> {
        let mut present = values.iter().copied().filter(|v| !v.is_nan());
        let first = present.next()?;
        let result = match self {
            // `Sum.runDouble` starts from `0.`, so a lone -0.0 sums to 0.0.
            Aggregator::Sum | Aggregator::Zimsum | Aggregator::Pfsum => {
                present.fold(0.0 + first, |acc, v| acc + v)
            }
            Aggregator::Avg => {
                let (sum, n) = present.fold((0.0 + first, 1_u64), |(s, n), v| (s + v, n + 1));
                sum / n as f64
            }
            Aggregator::SquareSum => present.fold(0.0 + first * first, |acc, v| acc + v * v),
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
            // `Multiply.runDouble`: every value, NaN included, left to right.
            Aggregator::Mult => values[1..].iter().fold(values[0], |acc, v| acc * v),
            // `Diff.runDouble`: the first non-NaN value; 0 if nothing follows it, else the
            // last value (NaN or not) minus it.
            Aggregator::Diff => {
                let at = values.iter().position(|v| !v.is_nan()).unwrap_or(0);
                if at + 1 == values.len() {
                    0.0
                } else {
                    values[values.len() - 1] - first
                }
            }
            Aggregator::Median => {
                let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
                sorted.sort_unstable_by(f64::total_cmp);
                return median_of_sorted(&sorted);
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
            | Aggregator::Ep999r7 => {
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

/// OpenTSDB's `median` of `sorted` (ascending, no NaN): the element at index ⌊n/2⌋
/// (`Median.runDouble`: `collection.get(collection.size() / 2)` after `Collections.sort`), so
/// the upper of the two middle values when n is even. `None` for an empty slice.
///
/// Only that position is read, so `sorted` need only hold the right order statistic there.
pub fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    sorted.get(sorted.len() / 2).copied()
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
        Err(ParseAggregatorError::Unknown { name: s.to_owned() })
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
///   (lerp `y0 + (x - x0)(y1 - y0)/(x1 - x0)`, 0, the largest or the lowest double, or the
///   previous point's value `y0` for `pfsum`);
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
/// use vscope_core::semantics::{Aggregator, aggregate_series};
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
                        Interpolation::Prev => y0,
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

/// Whether `dialect` computes `aggregate` inside one bucket exactly as our client-side rollup
/// does, and if not, why. OpenTSDB's downsamplers are our reference implementation, so all
/// agree there (every downsampling function, `ep*` included: OpenTSDB's downsampler computes
/// them on the same double path as ours). On OVH (Erlenmeyer → Warp 10):
/// - `pfsum`, `median`, `mult`, `diff`, `squareSum` and the `ep*` estimators do not exist
///   (Erlenmeyer's `downsamplerToBucketizer` lacks them and answers "Downsampling operator 'X'
///   is not available");
/// - percentiles are nearest-rank (`p50` of 1..=4 is 2, OpenTSDB says 2.5) and `dev` is the
///   sample standard deviation (Bessel);
/// - `zimsum`, `mimmin`, `mimmax` map to `bucketizer.sum`, `.min`, `.max`, the same as `sum`,
///   `min`, `max` within one series, so they are exact.
///
/// A pipeline that asked the refused ones server-side would fail or silently get other
/// numbers than the same table computed client-side; config validation refuses it instead
/// (see `reference/api.md` §2.2, §2.3).
pub fn server_exact(dialect: Dialect, aggregate: Aggregator) -> Result<(), &'static str> {
    match dialect {
        Dialect::Opentsdb => Ok(()),
        Dialect::Ovh
            if aggregate.percentile().is_some() && !aggregate.is_supported_by_ovh_downsample() =>
        {
            Err(
                "Erlenmeyer has no such downsampling function (it offers p50 … p999 only, computed by nearest rank)",
            )
        }
        Dialect::Ovh if aggregate.percentile().is_some() => Err(
            "Warp 10 computes percentiles by nearest rank, not OpenTSDB's estimation, so the values would differ from a client-side rollup",
        ),
        Dialect::Ovh if aggregate == Aggregator::Dev => Err(
            "Warp 10 computes the sample standard deviation (n - 1), not OpenTSDB's population one",
        ),
        Dialect::Ovh if !aggregate.is_supported_by_ovh_downsample() => Err(
            "Erlenmeyer has no such downsampling function (it offers avg, sum, zimsum, min, max, mimmin, mimmax, count, first, last, dev, p50 … p999)",
        ),
        Dialect::Ovh => Ok(()),
    }
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
        // `multiply` is `mult`'s internal name (its `toString`), not a registered one.
        for bad in ["squaresum", "multiply", "raw", "ep50", "p51"] {
            assert_eq!(
                bad.parse::<Aggregator>(),
                Err(ParseAggregatorError::Unknown { name: bad.into() })
            );
        }
    }

    #[test]
    fn the_names_are_the_ones_opentsdb_2_4_1_registers() {
        // The keys of `Aggregators.java`'s static block (v2.4.1), which `/api/aggregators`
        // lists: 17 `put`s plus the 18 percentile aggregators.
        let registered = [
            "sum",
            "min",
            "max",
            "avg",
            "none",
            "median",
            "mult",
            "dev",
            "diff",
            "count",
            "zimsum",
            "mimmin",
            "mimmax",
            "first",
            "last",
            "pfsum",
            "squareSum",
            "p999",
            "p99",
            "p95",
            "p90",
            "p75",
            "p50",
            "ep999r3",
            "ep99r3",
            "ep95r3",
            "ep90r3",
            "ep75r3",
            "ep50r3",
            "ep999r7",
            "ep99r7",
            "ep95r7",
            "ep90r7",
            "ep75r7",
            "ep50r7",
        ];
        let mut want: Vec<&str> = registered.to_vec();
        want.sort_unstable();
        let mut got: Vec<&str> = Aggregator::ALL.iter().map(|a| a.name()).collect();
        got.sort_unstable();
        assert_eq!(got, want);
        let listed: Vec<&str> = DOWNSAMPLING_FUNCTIONS.split(", ").collect();
        let all_but_none: Vec<&str> = Aggregator::ALL
            .iter()
            .filter(|a| **a != Aggregator::None)
            .map(|a| a.name())
            .collect();
        assert_eq!(listed, all_but_none);
    }

    #[test]
    fn median_is_the_upper_middle_value_as_in_opentsdb_tests() {
        // TestAggregators.testMedian (v2.4.1), double cases.
        let m = |v: &[f64]| Aggregator::Median.aggregate(v);
        assert_eq!(m(&[5.1, 2.434, -1.99, 400.69487, 3.15168]), Some(3.15168));
        assert_eq!(
            m(&[5.1, 2.434, -1.99, 400.69487, 3.15168, -42.0]),
            Some(3.15168)
        );
        assert_eq!(m(&[42.5]), Some(42.5));
        assert_eq!(m(&[]), None);
        // Even count: index n/2 of the sorted values, no averaging (p50 would say 2.5).
        assert_eq!(m(&[4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(Aggregator::P50.aggregate(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(m(&[f64::NAN, 7.0, f64::NAN]), Some(7.0));
    }

    #[test]
    fn square_sum_mult_diff_and_pfsum_follow_their_definitions() {
        // TestAggregators.testSquareSumFewDataInputs: {1, 2} gives 5.
        assert_eq!(Aggregator::SquareSum.aggregate(&[1.0, 2.0]), Some(5.0));
        assert_eq!(
            Aggregator::SquareSum.aggregate(&[f64::NAN, -3.0, 0.5]),
            Some(9.25)
        );
        // Multiply.runDouble: left to right, NaN not skipped.
        assert_eq!(Aggregator::Mult.aggregate(&[2.0, -3.0, 4.0]), Some(-24.0));
        assert_eq!(Aggregator::Mult.aggregate(&[0.5]), Some(0.5));
        assert!(
            Aggregator::Mult
                .aggregate(&[2.0, f64::NAN])
                .unwrap()
                .is_nan()
        );
        assert_eq!(Aggregator::Mult.aggregate(&[f64::NAN]), None);
        // Diff.runDouble: last minus first non-NaN; 0 when nothing follows the first.
        assert_eq!(Aggregator::Diff.aggregate(&[3.0, 5.0, 10.0]), Some(7.0));
        assert_eq!(Aggregator::Diff.aggregate(&[10.0, 5.0]), Some(-5.0));
        assert_eq!(Aggregator::Diff.aggregate(&[7.0]), Some(0.0));
        assert_eq!(Aggregator::Diff.aggregate(&[f64::NAN, 2.0, 5.0]), Some(3.0));
        assert_eq!(Aggregator::Diff.aggregate(&[f64::NAN, 2.0]), Some(0.0));
        assert!(
            Aggregator::Diff
                .aggregate(&[2.0, f64::NAN])
                .unwrap()
                .is_nan()
        );
        // pfsum is Sum (with PREV interpolation, which only matters across series).
        assert_eq!(Aggregator::Pfsum.aggregate(&[1.5, 2.5, 3.0]), Some(7.0));
        // Sum.runDouble starts from 0., so a lone -0.0 sums to +0.0 (avg too).
        for agg in [
            Aggregator::Sum,
            Aggregator::Zimsum,
            Aggregator::Pfsum,
            Aggregator::Avg,
        ] {
            assert_eq!(
                agg.aggregate(&[-0.0]).map(f64::to_bits),
                Some(0.0_f64.to_bits())
            );
        }
        assert_eq!(
            Aggregator::Min.aggregate(&[-0.0]).map(f64::to_bits),
            Some((-0.0_f64).to_bits())
        );
    }

    #[test]
    fn estimated_percentiles_take_the_double_path_like_opentsdb() {
        // TestAggregators.testPercentiles (v2.4.1) expects 500 … 999 for ep*r3 and ep*r7 over
        // 1..=1000, through runLong. Downsamplers use runDouble, which ignores the estimation
        // type: the values are p*'s, bit for bit.
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let cases = [
            (Aggregator::Ep50r3, Aggregator::Ep50r7, Aggregator::P50, 500),
            (Aggregator::Ep75r3, Aggregator::Ep75r7, Aggregator::P75, 750),
            (Aggregator::Ep90r3, Aggregator::Ep90r7, Aggregator::P90, 900),
            (Aggregator::Ep95r3, Aggregator::Ep95r7, Aggregator::P95, 950),
            (Aggregator::Ep99r3, Aggregator::Ep99r7, Aggregator::P99, 990),
            (
                Aggregator::Ep999r3,
                Aggregator::Ep999r7,
                Aggregator::P999,
                999,
            ),
        ];
        for (r3, r7, p, opentsdb) in cases {
            let want = p.aggregate(&values).unwrap();
            assert_eq!(want as i64, opentsdb, "{p}");
            for ep in [r3, r7] {
                assert_eq!(
                    ep.aggregate(&values).map(f64::to_bits),
                    Some(want.to_bits())
                );
                assert!(ep.is_percentile());
            }
        }
        // Where R-3 (nearest rank: 2) would differ from legacy (2.5), the double path says 2.5.
        assert_eq!(
            Aggregator::Ep50r3.aggregate(&[1.0, 2.0, 3.0, 4.0]),
            Some(2.5)
        );
    }

    #[test]
    fn pfsum_fills_a_missing_series_with_its_previous_value() {
        let a = vec![(0, 1.0), (20, 3.0)];
        let b = vec![(10, -5.0), (30, -7.0)];
        // At 10, a contributes its previous 1.0; at 20, b its previous -5.0.
        assert_eq!(
            aggregate_series(&[a.clone(), b.clone()], Aggregator::Pfsum),
            vec![(0, 1.0), (10, -4.0), (20, -2.0), (30, -7.0)]
        );
        // squareSum does not interpolate (ZIM).
        assert_eq!(
            aggregate_series(&[a, b], Aggregator::SquareSum),
            vec![(0, 1.0), (10, 25.0), (20, 9.0), (30, 49.0)]
        );
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
        // reference/api.md §2.2, from ovh/erlenmeyer `aggregators.go` and `query.go`.
        let groupby =
            "avg sum zimsum min max mimmin mimmax p50 p75 p90 p95 p99 p999 dev count none";
        let downsample =
            "avg sum zimsum mimmin mimmax min max count first last p50 p75 p90 p95 p99 p999 dev";
        for agg in Aggregator::ALL {
            let name = agg.name();
            assert_eq!(
                agg.is_supported_by_ovh_groupby(),
                groupby.split(' ').any(|n| n == name),
                "{name}"
            );
            assert_eq!(
                agg.is_supported_by_ovh_downsample(),
                downsample.split(' ').any(|n| n == name),
                "{name}"
            );
        }
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
            fn median_is_the_order_statistic_at_half(
                values in proptest::collection::vec(-1e6_f64..1e6, 1..60),
            ) {
                let m = Aggregator::Median.aggregate(&values).unwrap();
                let below = values.iter().filter(|v| **v < m).count();
                let at_most = values.iter().filter(|v| **v <= m).count();
                let half = values.len() / 2;
                prop_assert!(below <= half && half < at_most, "{} in {:?}", m, values);
            }

            #[test]
            fn estimated_percentiles_equal_the_plain_ones(
                values in proptest::collection::vec(-1e6_f64..1e6, 0..60),
            ) {
                for ep in Aggregator::ALL.into_iter().filter(|a| a.name().starts_with("ep")) {
                    let p = Aggregator::ALL
                        .into_iter()
                        .find(|a| a.name().starts_with('p') && a.percentile() == ep.percentile())
                        .unwrap();
                    prop_assert_eq!(
                        ep.aggregate(&values).map(f64::to_bits),
                        p.aggregate(&values).map(f64::to_bits)
                    );
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
