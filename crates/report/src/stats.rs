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
}
