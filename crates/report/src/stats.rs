//! The statistics of the report, in plain Rust: the percentile definition, the least-squares
//! trend and the capacity forecast. The polars queries compute the same quantities on whole
//! columns; these functions are the reference the unit tests pin down, and the forecast runs
//! here on the fitted sums the queries return.

/// The percentile used everywhere in the report: linear interpolation between the two closest
/// ranks (`(n - 1) * q`, "type 7" of Hyndman and Fan), the definition of polars'
/// `QuantileMethod::Linear`, DuckDB's `quantile_cont` and numpy's default. `None` for no values.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// A least-squares line `y = intercept + slope * x` and how well it fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Points used.
    pub n: u64,
    /// Slope, y units per x unit.
    pub slope: f64,
    /// Value at x = 0.
    pub intercept: f64,
    /// Coefficient of determination in `[0, 1]` (1 for a perfect fit; 0 when y does not vary).
    pub r2: f64,
}

impl Fit {
    /// The fit from centred sums (numerically stable for large y such as KB counts):
    /// `sxx = Σ(x-x̄)²`, `sxy = Σ(x-x̄)(y-ȳ)`, `syy = Σ(y-ȳ)²`. `None` with fewer than two
    /// points or no spread in x.
    pub fn from_centred(
        n: u64,
        mean_x: f64,
        mean_y: f64,
        sxx: f64,
        sxy: f64,
        syy: f64,
    ) -> Option<Fit> {
        if n < 2 || sxx <= 0.0 || !sxx.is_finite() {
            return None;
        }
        let slope = sxy / sxx;
        let intercept = mean_y - slope * mean_x;
        let r2 = if syy > 0.0 {
            (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some(Fit {
            n,
            slope,
            intercept,
            r2,
        })
    }

    /// The least-squares fit of points `(x, y)` (the reference for the query's sums).
    pub fn of_points(points: &[(f64, f64)]) -> Option<Fit> {
        let n = points.len();
        if n == 0 {
            return None;
        }
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n as f64;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        for (x, y) in points {
            sxx += (x - mx) * (x - mx);
            sxy += (x - mx) * (y - my);
            syy += (y - my) * (y - my);
        }
        Fit::from_centred(n as u64, mx, my, sxx, sxy, syy)
    }

    /// The fitted value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// When a datastore fills up, from its trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forecast {
    /// The last observed value is at or above the capacity.
    AlreadyFull,
    /// The trend is flat or falling: it never reaches the capacity.
    Never,
    /// The trend reaches the capacity this many days after the end of the period (0 when the
    /// line already crossed it although the last observation is still below).
    InDays(f64),
    /// No capacity is known, or too few points for a trend.
    Unknown,
}

/// The capacity forecast of a series fitted with x in days since the period start: `last_used`
/// is the last observed value, `end_day` the end of the period in the same x units.
pub fn forecast(
    fit: Option<&Fit>,
    capacity: Option<f64>,
    last_used: Option<f64>,
    end_day: f64,
) -> Forecast {
    let Some(capacity) = capacity.filter(|c| *c > 0.0) else {
        return Forecast::Unknown;
    };
    if last_used.is_some_and(|u| u >= capacity) {
        return Forecast::AlreadyFull;
    }
    let Some(fit) = fit else {
        return Forecast::Unknown;
    };
    if fit.slope <= 0.0 || !fit.slope.is_finite() {
        return Forecast::Never;
    }
    let full_day = (capacity - fit.intercept) / fit.slope;
    Forecast::InDays((full_day - end_day).max(0.0))
}

/// Two-sided 95 % quantiles of Student's t (`t_{0.975}`) for 1 to 30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// `t_{0.975}` with `df` degrees of freedom: the table up to 30, then the Cornish-Fisher
/// expansion around the normal quantile 1.96 (error below 1e-3 from 31 on).
pub fn t_975(df: u64) -> f64 {
    match df {
        0 => f64::INFINITY,
        1..=30 => T_975[df as usize - 1],
        _ => {
            let (z, v) = (1.959_964_f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * v)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        }
    }
}

/// A least-squares line with what a prediction band needs: the residual standard error and
/// the spread of x. The band at `x` is `fit ± t · s · √(1 + 1/n + (x − x̄)² / Sxx)`, the
/// classical 95 % prediction interval of one new observation (it widens away from the data).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// The line.
    pub fit: Fit,
    /// Mean x of the points.
    pub mean_x: f64,
    /// Σ(x − x̄)².
    pub sxx: f64,
    /// Residual standard error, `√(SSE / (n − 2))`.
    pub s: f64,
    /// `t_{0.975}` with `n − 2` degrees of freedom.
    pub t: f64,
}

impl Trend {
    /// The trend of points `(x, y)`; `None` under three points (no residual degree of freedom)
    /// or without spread in x.
    pub fn of_points(points: &[(f64, f64)]) -> Option<Trend> {
        let n = points.len();
        if n < 3 {
            return None;
        }
        let fit = Fit::of_points(points)?;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n as f64;
        let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        let sse: f64 = points.iter().map(|(x, y)| (y - fit.at(*x)).powi(2)).sum();
        Some(Trend {
            fit,
            mean_x,
            sxx,
            s: (sse / (n - 2) as f64).sqrt(),
            t: t_975(n as u64 - 2),
        })
    }

    /// The 95 % prediction band `(low, high)` at `x`.
    pub fn band(&self, x: f64) -> (f64, f64) {
        let n = self.fit.n as f64;
        let half = self.t * self.s * (1.0 + 1.0 / n + (x - self.mean_x).powi(2) / self.sxx).sqrt();
        let y = self.fit.at(x);
        (y - half, y + half)
    }
}

/// How long until a demand series reaches its usable capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeRemaining {
    /// Fewer than three buckets: no trend can be fitted (and no band).
    NotEnoughData,
    /// The last bucket is already at or above the usable capacity.
    Already,
    /// The trend is flat or falling.
    Never,
    /// The trend reaches the capacity only after [`HORIZON_DAYS`].
    BeyondHorizon,
    /// The trend reaches the capacity `days` after the period end (0: the line is above it
    /// although the last bucket is not). `earliest` is where the band's upper edge reaches it,
    /// `latest` where its lower edge does (`None`: the lower edge does not within the horizon,
    /// the growth is not distinguishable from noise).
    InDays {
        /// Days after the period end, central estimate.
        days: f64,
        /// Earliest, days after the period end.
        earliest: f64,
        /// Latest, days after the period end, if within the horizon.
        latest: Option<f64>,
    },
}

/// How far ahead a crossing is still reported, days after the period end (10 years): beyond
/// that a linear extrapolation of one period means nothing.
pub const HORIZON_DAYS: f64 = 3650.0;

/// The first x in `[lo, hi]` where `f(x) >= 0`, given `f(hi) >= 0` (bisection to 1e-6 day).
fn first_crossing(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    if f(lo) >= 0.0 {
        return lo;
    }
    for _ in 0..200 {
        if hi - lo < 1e-6 {
            break;
        }
        let mid = (lo + hi) / 2.0;
        if f(mid) >= 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// When the trend of `points` (x in days since the period start, y the bucket p95) reaches
/// `capacity`; `end_day` is the period end in the same x units.
pub fn time_remaining(points: &[(f64, f64)], capacity: f64, end_day: f64) -> TimeRemaining {
    let Some(tr) = Trend::of_points(points) else {
        return TimeRemaining::NotEnoughData;
    };
    let last = points
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|p| p.1);
    if last.is_some_and(|y| y >= capacity) {
        return TimeRemaining::Already;
    }
    let slope = tr.fit.slope;
    if slope <= 0.0 || !slope.is_finite() {
        return TimeRemaining::Never;
    }
    let central = (capacity - tr.fit.intercept) / slope;
    let horizon = end_day + HORIZON_DAYS;
    if central > horizon {
        return TimeRemaining::BeyondHorizon;
    }
    let central = central.max(end_day);
    let earliest = first_crossing(|x| tr.band(x).1 - capacity, end_day, central);
    let lower = |x: f64| tr.band(x).0 - capacity;
    let latest = (lower(horizon) >= 0.0).then(|| first_crossing(lower, central, horizon));
    TimeRemaining::InDays {
        days: central - end_day,
        earliest: earliest - end_day,
        latest: latest.map(|l| l - end_day),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_linearly_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(4.0));
        assert_eq!(percentile(&v, 0.5), Some(2.5));
        // (4 - 1) * 0.95 = 2.85: 3 + 0.85 * (4 - 3).
        assert!((percentile(&v, 0.95).unwrap() - 3.85).abs() < 1e-12);
        // Order does not matter, NaN is ignored.
        assert_eq!(percentile(&[4.0, f64::NAN, 1.0, 3.0, 2.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.95), None);
    }

    #[test]
    fn percentile_of_0_to_100_is_the_rank() {
        let v: Vec<f64> = (0..=100).rev().map(f64::from).collect();
        for q in [0.05, 0.5, 0.95, 0.99] {
            assert!((percentile(&v, q).unwrap() - q * 100.0).abs() < 1e-9);
        }
    }

    #[test]
    fn least_squares_recovers_an_exact_line() {
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 3.0 + 2.5 * i as f64)).collect();
        let f = Fit::of_points(&pts).unwrap();
        assert!((f.slope - 2.5).abs() < 1e-12);
        assert!((f.intercept - 3.0).abs() < 1e-9);
        assert!((f.r2 - 1.0).abs() < 1e-12);
        assert!((f.at(100.0) - 253.0).abs() < 1e-9);
    }

    #[test]
    fn least_squares_r2_drops_with_noise_and_is_zero_for_flat_data() {
        let noisy: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, i as f64 + if i % 2 == 0 { 40.0 } else { -40.0 }))
            .collect();
        let f = Fit::of_points(&noisy).unwrap();
        assert!(f.r2 < 0.9 && f.r2 > 0.5, "{}", f.r2);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        let f = Fit::of_points(&flat).unwrap();
        assert_eq!(f.slope, 0.0);
        assert_eq!(f.r2, 0.0);
        assert!(Fit::of_points(&[(1.0, 1.0)]).is_none());
        assert!(Fit::of_points(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }

    /// A datastore series with a known slope: 1 TB capacity in KB, 600 GB used at day 0,
    /// growing 2 GB/day with ±0.5 GB deterministic noise, one point an hour for 30 days.
    /// The forecast must land within one day of the exact answer.
    #[test]
    fn forecast_of_a_known_slope_is_within_one_day() {
        let gb = 1024.0 * 1024.0;
        let capacity = 1024.0 * gb;
        let (base, slope) = (600.0 * gb, 2.0 * gb);
        let mut pts = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for h in 0..(30 * 24) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = ((state % 1000) as f64 / 1000.0 - 0.5) * gb;
            let day = h as f64 / 24.0;
            pts.push((day, base + slope * day + noise));
        }
        let fit = Fit::of_points(&pts).unwrap();
        let last = pts.last().unwrap().1;
        let end_day = 30.0;
        // Exact: (1024 - 600) / 2 = 212 days after day 0, so 182 days after the period end.
        match forecast(Some(&fit), Some(capacity), Some(last), end_day) {
            Forecast::InDays(d) => assert!((d - 182.0).abs() < 1.0, "{d}"),
            other => panic!("{other:?}"),
        }
        assert!(fit.r2 > 0.99);
    }

    #[test]
    fn forecast_handles_full_flat_and_unknown() {
        let up = Fit::of_points(&[(0.0, 10.0), (1.0, 20.0)]).unwrap();
        let down = Fit::of_points(&[(0.0, 20.0), (1.0, 10.0)]).unwrap();
        assert_eq!(
            forecast(Some(&up), Some(15.0), Some(20.0), 1.0),
            Forecast::AlreadyFull
        );
        assert_eq!(
            forecast(Some(&down), Some(100.0), Some(10.0), 1.0),
            Forecast::Never
        );
        assert_eq!(
            forecast(Some(&up), None, Some(20.0), 1.0),
            Forecast::Unknown
        );
        assert_eq!(
            forecast(None, Some(100.0), Some(20.0), 1.0),
            Forecast::Unknown
        );
        // 10 + 10 x = 100 at x = 9: 8 days after the end (x = 1).
        assert_eq!(
            forecast(Some(&up), Some(100.0), Some(20.0), 1.0),
            Forecast::InDays(8.0)
        );
        // Line crossed already although the last point is below: due now.
        assert_eq!(
            forecast(Some(&up), Some(25.0), Some(20.0), 3.0),
            Forecast::InDays(0.0)
        );
    }

    /// A deterministic noise in [-1, 1).
    fn noise(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % 2000) as f64 / 1000.0 - 1.0
    }

    #[test]
    fn t_quantiles_match_the_table_and_tend_to_the_normal() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(30), 2.042);
        // Published t_{0.975}: 40 df 2.021, 60 df 2.000, 120 df 1.980.
        assert!((t_975(40) - 2.021).abs() < 2e-3, "{}", t_975(40));
        assert!((t_975(60) - 2.000).abs() < 2e-3);
        assert!((t_975(120) - 1.980).abs() < 2e-3);
        assert!(t_975(0).is_infinite());
    }

    /// Daily p95 of a cluster's CPU: 40 % growing 0.2 %/day with ±3 % noise over 90 days.
    /// The exact crossing of 80 % is day 200, 110 days after the period end: the estimate
    /// is close, and the true date lies inside the band.
    #[test]
    fn time_remaining_of_a_known_slope_lands_within_the_band() {
        let mut st = 0x2545_f491_4f6c_dd1d_u64;
        let pts: Vec<(f64, f64)> = (0..90)
            .map(|d| (d as f64, 40.0 + 0.2 * d as f64 + 3.0 * noise(&mut st)))
            .collect();
        match time_remaining(&pts, 80.0, 90.0) {
            TimeRemaining::InDays {
                days,
                earliest,
                latest,
            } => {
                assert!((days - 110.0).abs() < 15.0, "{days}");
                let latest = latest.expect("a clear trend bounds the latest date");
                assert!(earliest <= 110.0 && 110.0 <= latest, "{earliest}..{latest}");
                assert!(earliest < days && days < latest);
            }
            other => panic!("{other:?}"),
        }
        // Without noise the band collapses onto the line.
        let exact: Vec<(f64, f64)> = (0..90).map(|d| (d as f64, 40.0 + 0.2 * d as f64)).collect();
        let TimeRemaining::InDays {
            days,
            earliest,
            latest,
        } = time_remaining(&exact, 80.0, 90.0)
        else {
            panic!()
        };
        assert!((days - 110.0).abs() < 1e-6 && (earliest - 110.0).abs() < 1e-3);
        assert!((latest.unwrap() - 110.0).abs() < 1e-3);
    }

    #[test]
    fn time_remaining_says_never_already_and_not_enough_data() {
        let flat: Vec<(f64, f64)> = (0..30).map(|d| (d as f64, 50.0 - 0.1 * d as f64)).collect();
        assert_eq!(time_remaining(&flat, 80.0, 30.0), TimeRemaining::Never);
        let hot: Vec<(f64, f64)> = (0..30).map(|d| (d as f64, 70.0 + d as f64)).collect();
        assert_eq!(time_remaining(&hot, 80.0, 30.0), TimeRemaining::Already);
        assert_eq!(
            time_remaining(&[(0.0, 1.0), (1.0, 2.0)], 80.0, 2.0),
            TimeRemaining::NotEnoughData
        );
        // 1e-4 %/day from 10 %: 700,000 days away, beyond the horizon.
        let slow: Vec<(f64, f64)> = (0..30)
            .map(|d| (d as f64, 10.0 + 1e-4 * d as f64))
            .collect();
        assert_eq!(
            time_remaining(&slow, 80.0, 30.0),
            TimeRemaining::BeyondHorizon
        );
        // A small slope under large noise (±15 %, orthogonal to x: the slope is exactly 0.5): a
        // crossing, but the lower edge of the band never gets there.
        let noisy: Vec<(f64, f64)> = (0..11)
            .map(|d| {
                (
                    d as f64,
                    50.0 + 0.5 * d as f64 + if d % 2 == 0 { 15.0 } else { -15.0 },
                )
            })
            .collect();
        match time_remaining(&noisy, 79.0, 11.0) {
            TimeRemaining::InDays { latest, days, .. } => {
                assert!(days > 0.0);
                assert_eq!(latest, None);
            }
            other => panic!("{other:?}"),
        }
    }
}
