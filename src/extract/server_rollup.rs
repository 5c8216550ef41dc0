//! Rollup rows computed by the server (`source.query_downsample = true`).
//!
//! Instead of fetching every raw point and rolling it up here, each aggregate of a rollup table
//! is asked from the server as a downsampled query ([`MetricsClient::query_downsampled`]), one
//! request per (metric, datacenter, window, aggregate), and the answers are joined per series
//! into the same [`RollupOutput`] rows a client-side rollup produces. This moves far fewer bytes
//! when only rollup tables are wanted, at the price of trusting the server's definitions, so an
//! aggregate is allowed only where the server computes exactly what our rollups compute
//! ([`server_exact`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::extract::{DecodeStats, FetchError, MetricsClient, SeriesData};
use crate::semantics::rollup::{Rollup, RollupColumn, RollupOutput};

/// One series' rollup rows, as the server computed them: the series (`ts`/`values` empty; its
/// metric and tags identify it) and its rows, one per bucket that holds data.
pub type SeriesRollup = (SeriesData, RollupOutput);

/// Every series' rows for one unit, plus the decoder counters of all the answers.
#[derive(Debug, Default)]
pub struct ServerRollupAnswer {
    /// Rows per series, in no particular order.
    pub series: Vec<SeriesRollup>,
    /// Decoder counters added over the aggregates' answers.
    pub stats: DecodeStats,
}

pub use vscope_core::semantics::aggregator::server_exact;

/// Asks the server for every aggregate of `rollup` over `range` (bounds multiples of the
/// bucket) for `metric`'s series (one datacenter when given), grouped on `labels`, and joins
/// the answers per series. A bucket is a row when any aggregate has a value there; an aggregate
/// without one is null (`count`: 0).
pub async fn fetch(
    client: &MetricsClient,
    metric: &str,
    labels: &[String],
    datacenter: Option<&str>,
    rollup: &Rollup,
    range: std::ops::Range<i64>,
) -> Result<ServerRollupAnswer, FetchError> {
    let mut stats = DecodeStats::default();
    let mut per_aggregate = Vec::with_capacity(rollup.aggregates.len());
    for &aggregate in &rollup.aggregates {
        let answer = client
            .query_downsampled(
                metric,
                labels,
                datacenter,
                rollup.interval_ms,
                aggregate,
                range.clone(),
            )
            .await?;
        stats.add(&answer.stats);
        per_aggregate.push(answer.series);
    }
    Ok(ServerRollupAnswer {
        series: join_aggregates(rollup, per_aggregate),
        stats,
    })
}

/// Joins one answer per aggregate (in `rollup.aggregates` order) into rows per series.
fn join_aggregates(rollup: &Rollup, per_aggregate: Vec<Vec<SeriesData>>) -> Vec<SeriesRollup> {
    // Per series (metric, tags): per aggregate, bucket → value.
    type Key = (String, BTreeMap<String, String>);
    let n = rollup.aggregates.len();
    let mut joined: BTreeMap<Key, Vec<BTreeMap<i64, f64>>> = BTreeMap::new();
    for (a, series) in per_aggregate.into_iter().enumerate() {
        for s in series {
            let slot = joined
                .entry((s.metric, s.tags))
                .or_insert_with(|| vec![BTreeMap::new(); n]);
            for (t, v) in s.ts.into_iter().zip(s.values) {
                if !v.is_nan() {
                    slot[a].insert(t, v);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(joined.len());
    for ((metric, tags), values) in joined {
        let buckets: BTreeSet<i64> = values.iter().flat_map(|m| m.keys().copied()).collect();
        if buckets.is_empty() {
            continue;
        }
        let mut rows = rollup.output();
        rows.bucket_ts.extend(buckets.iter().copied());
        for (col, by_bucket) in rows.columns.iter_mut().zip(&values) {
            match col {
                RollupColumn::Int(c) => c.extend(
                    buckets
                        .iter()
                        .map(|b| by_bucket.get(b).map_or(0, |v| v.round() as i64)),
                ),
                RollupColumn::Float(c) => {
                    c.extend(buckets.iter().map(|b| by_bucket.get(b).copied()))
                }
            }
        }
        let series = SeriesData {
            metric,
            tags,
            ts: Vec::new(),
            values: Vec::new(),
        };
        out.push((series, rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Dialect;
    use crate::semantics::aggregator::Aggregator;

    fn series(vm: &str, points: &[(i64, Option<f64>)]) -> SeriesData {
        SeriesData {
            metric: "m".into(),
            tags: [("vm".to_string(), vm.to_string())].into(),
            ts: points.iter().map(|p| p.0).collect(),
            values: points.iter().map(|p| p.1.unwrap_or(f64::NAN)).collect(),
        }
    }

    #[test]
    fn answers_are_joined_per_series_and_bucket() {
        let rollup = Rollup::new(10, vec![Aggregator::Avg, Aggregator::Count]).unwrap();
        let avg = vec![
            series("b", &[(0, Some(2.0)), (10, Some(3.0))]),
            series("a", &[(10, None), (20, Some(1.5))]),
        ];
        let count = vec![
            series("a", &[(10, Some(2.0)), (20, Some(1.0))]),
            series("b", &[(0, Some(4.0)), (10, Some(1.0))]),
        ];
        let out = join_aggregates(&rollup, vec![avg, count]);
        assert_eq!(out.len(), 2);
        let (a, rows_a) = &out[0];
        assert_eq!(a.tags["vm"], "a");
        assert_eq!(rows_a.bucket_ts, vec![10, 20]);
        assert_eq!(
            rows_a.columns[0],
            RollupColumn::Float(vec![None, Some(1.5)])
        );
        assert_eq!(rows_a.columns[1], RollupColumn::Int(vec![2, 1]));
        let (b, rows_b) = &out[1];
        assert_eq!(b.tags["vm"], "b");
        assert_eq!(rows_b.bucket_ts, vec![0, 10]);
        assert_eq!(
            rows_b.columns[0],
            RollupColumn::Float(vec![Some(2.0), Some(3.0)])
        );
        assert_eq!(rows_b.columns[1], RollupColumn::Int(vec![4, 1]));
    }

    #[test]
    fn a_series_without_any_value_gives_no_row() {
        let rollup = Rollup::new(10, vec![Aggregator::Max]).unwrap();
        let out = join_aggregates(&rollup, vec![vec![series("a", &[(0, None)])]]);
        assert!(out.is_empty());
    }

    #[test]
    fn ovh_refuses_percentiles_dev_and_what_erlenmeyer_lacks() {
        let exact_on_ovh = [
            Aggregator::Avg,
            Aggregator::Sum,
            Aggregator::Zimsum,
            Aggregator::Min,
            Aggregator::Max,
            Aggregator::Mimmin,
            Aggregator::Mimmax,
            Aggregator::Count,
            Aggregator::First,
            Aggregator::Last,
        ];
        for agg in Aggregator::ALL {
            assert!(server_exact(Dialect::Opentsdb, agg).is_ok(), "{agg}");
            let ovh = server_exact(Dialect::Ovh, agg);
            assert_eq!(ovh.is_ok(), exact_on_ovh.contains(&agg), "{agg}: {ovh:?}");
        }
        for agg in [
            Aggregator::Median,
            Aggregator::Ep95r7,
            Aggregator::SquareSum,
        ] {
            let why = server_exact(Dialect::Ovh, agg).unwrap_err();
            assert!(
                why.contains("no such downsampling function"),
                "{agg}: {why}"
            );
        }
        assert!(
            server_exact(Dialect::Ovh, Aggregator::P95)
                .unwrap_err()
                .contains("nearest rank")
        );
    }
}
