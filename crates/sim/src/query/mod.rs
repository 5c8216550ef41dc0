//! `/api/query`: request parsing for both dialects, series selection, and the streamed JSON
//! answer.
//!
//! The two dialects differ at every step, and each difference is deliberate:
//!
//! | step | `opentsdb` (OpenTSDB 2.4.1) | `ovh` (Erlenmeyer over Warp 10) |
//! |---|---|---|
//! | JSON types | lenient (Jackson: `"rate":"true"` is accepted) | strict (Go: a wrong type is `400 can't parse query`); keys case-insensitive |
//! | times | [`vscope_core::semantics::time::parse_time`] (length rule, `now`, RFC 3339 too) | [`super::ovh_time`] (magnitude rule, no `now`, second precision) |
//! | range check | `end > start` | `start <= end`; both optional |
//! | `tags` | converted to filters (`*`, `a\|b`, `x*` → iwildcard, `type(expr)`) | `*` → `~.*`, `a\|b` → quoted regex, else exact |
//! | filters | all 8 types; `regexp` is Java `find()` | only `literal_or`, `wildcard`, `regexp` (full match); others silently ignored |
//! | unknown metric | `400 No such name for 'metrics': 'X'` | `200 []` |
//! | stored points fetched | `[start, end]` for raw points (the hour-widened scan bounds otherwise) | Warp 10's FETCH, before any BUCKETIZE: `(start, end]` (Warp up to 2.2, the default) or `[start, end]` (2.3+), see [`FetchStart`](super::FetchStart); with second-precision times, a start of `S*1000 - 1` ms keeps the point at `S` s |
//! | `aggregator: none` | raw points; `rate` and `downsample` are applied per series | raw points; `downsample` and `rate` are ignored |
//! | other aggregators | downsample (epoch-aligned, scan bounds), rate, lerp group-by ([`vscope_core::semantics`]) | end-aligned BUCKETIZE + fill ([`downsample_erlenmeyer`](vscope_core::semantics::downsample::downsample_erlenmeyer)), REDUCE by tick, rate |
//! | output | aggregated-away keys in `aggregateTags`, integers for raw integer data, Java double format | `query.index`, group-by keys in `aggregateTags`, Go float format, keys sorted, empty series dropped |
//! | too many points | `413` JSON, `...our limit of N data points...` | Warp's `FETCHDOUBLE exceeded limit of N datapoints, current count is M` 500, or the opaque HEAD text ([`ErrorMode`](crate::warp::ErrorMode)) |
//!
//! What the simulator cannot compute (aggregators outside [`Aggregator`], Warp 10's `RESETS`)
//! is refused with a 400 that says so, never answered with made-up numbers.

mod json;
mod opentsdb;
mod output;
mod ovh;

use std::collections::BTreeMap;

use super::error::ApiError;
use super::state::Shared;
use vscope_core::dialect::Dialect;
use vscope_core::semantics::Aggregator;
use vscope_core::semantics::downsample::DownsampleSpec;

use json::{parse_lenient, parse_m, parse_strict};
use opentsdb::plan_opentsdb;
pub(crate) use output::Output;
use ovh::plan_ovh;

/// Aggregator names of OpenTSDB 2.4.1 (`Aggregators.java`), sorted.
pub(crate) const OPENTSDB_AGGREGATORS: &[&str] = &[
    "avg",
    "count",
    "dev",
    "diff",
    "ep50r3",
    "ep50r7",
    "ep75r3",
    "ep75r7",
    "ep90r3",
    "ep90r7",
    "ep95r3",
    "ep95r7",
    "ep999r3",
    "ep999r7",
    "ep99r3",
    "ep99r7",
    "first",
    "last",
    "max",
    "median",
    "mimmax",
    "mimmin",
    "min",
    "mult",
    "none",
    "p50",
    "p75",
    "p90",
    "p95",
    "p99",
    "p999",
    "pfsum",
    "squareSum",
    "sum",
    "zimsum",
];

/// Group-by aggregators Erlenmeyer accepts (`aggregatorToReduce`).
pub(crate) const OVH_AGGREGATORS: &[&str] = &[
    "avg", "count", "dev", "max", "mimmax", "mimmin", "min", "none", "p50", "p75", "p90", "p95",
    "p99", "p999", "sum", "zimsum",
];

/// Downsampling functions Erlenmeyer accepts (`downsamplerToBucketizer`).
pub(crate) const OVH_DOWNSAMPLERS: &[&str] = &[
    "avg", "count", "dev", "first", "last", "max", "mimmax", "mimmin", "min", "p50", "p75", "p90",
    "p95", "p99", "p999", "sum", "zimsum",
];

/// Size at which a chunk of the streamed answer is handed to the connection.
const CHUNK_BYTES: usize = 64 * 1024;

/// OpenTSDB's row width: scans start on the hour, which decides which series appear with an
/// empty `dps` and which stored point the first rate uses.
const ROW_SPAN_MS: i64 = 3_600_000;

/// `rateOptions` of a sub-query.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RateOptions {
    counter: bool,
    counter_max: Option<i64>,
    reset_value: Option<i64>,
    drop_resets: bool,
}

/// One entry of `filters`, as sent.
#[derive(Debug, Clone, PartialEq)]
struct RawFilter {
    kind: String,
    tagk: String,
    filter: String,
    group_by: bool,
}

/// One sub-query, as sent, after type checking.
#[derive(Debug, Clone, Default, PartialEq)]
struct RawSub {
    aggregator: Option<String>,
    metric: Option<String>,
    rate: bool,
    rate_options: RateOptions,
    downsample: Option<String>,
    tags: BTreeMap<String, String>,
    filters: Vec<RawFilter>,
    explicit_tags: bool,
    has_tsuids: bool,
}

/// A whole request, as sent, after type checking.
#[derive(Debug, Clone, Default, PartialEq)]
struct RawRequest {
    start: Option<String>,
    end: Option<String>,
    ms_resolution: bool,
    delete: bool,
    queries: Vec<RawSub>,
}

/// A validated query, ready to stream.
#[derive(Debug)]
pub(crate) struct Plan {
    dialect: Dialect,
    start_ms: i64,
    end_ms: i64,
    /// The first instant (ms) the stored-point selection keeps: `start_ms` in `opentsdb`
    /// (`[start, end]`), after it in `ovh` when Warp's FETCH excludes the start.
    fetch_from_ms: i64,
    ms_resolution: bool,
    arrays: bool,
    subs: Vec<SubPlan>,
}

/// How the points of one answer object are computed.
#[derive(Debug, Clone, Copy)]
enum Compute {
    /// The stored points in range. `rate` (the `opentsdb` dialect only) applies OpenTSDB's
    /// `RateSpan` to them, using stored points from the start of the hour row.
    Raw { rate: Option<RateOptions> },
    /// OpenTSDB (§1.6): per series, downsample over the scan bounds `[scan.0, scan.1)`, then
    /// rate, then group-by across series with interpolation; cut to `[start, end]`.
    Opentsdb {
        downsample: Option<DownsampleSpec>,
        rate: Option<RateOptions>,
        aggregator: Aggregator,
        scan: (i64, i64),
    },
    /// Erlenmeyer (§2.3): per series BUCKETIZE (end-aligned) and fill, then REDUCE tick by
    /// tick, then rate on the result.
    Ovh {
        spec: DownsampleSpec,
        aggregator: Aggregator,
        rate: Option<RateOptions>,
    },
}

/// A validated sub-query and the series it selected.
#[derive(Debug)]
struct SubPlan {
    /// The metric as the request spelled it (echoed in every answer object).
    metric: String,
    index: usize,
    /// Group-by keys; the `ovh` dialect echoes them in `aggregateTags`.
    group_by: Vec<String>,
    /// One answer object per entry: the series it is made of (one each without group-by).
    outputs: Vec<Vec<usize>>,
    compute: Compute,
}

/// Parses and validates a JSON `/api/query` body, selects the series, and returns the plan.
/// `query` holds the query-string pairs (`arrays` switches `dps` to arrays in `opentsdb`);
/// `bad_token` is the token of an `ovh` caller who sent one other than the configured one:
/// Warp 10 only notices it when it runs the first sub-query.
pub(crate) fn plan_post(
    shared: &Shared,
    body: &[u8],
    query: &[(String, String)],
    bad_token: Option<&str>,
    now_ms: i64,
) -> Result<Plan, ApiError> {
    let raw = match shared.dialect {
        Dialect::Opentsdb => parse_lenient(body)?,
        Dialect::Ovh => parse_strict(body)?,
    };
    let arrays = query.iter().any(|(k, _)| k == "arrays");
    plan(shared, raw, arrays, bad_token, now_ms)
}

/// Builds the plan of a `GET /api/query?start=..&m=..` (the `opentsdb` dialect only).
pub(crate) fn plan_get(
    shared: &Shared,
    query: &[(String, String)],
    now_ms: i64,
) -> Result<Plan, ApiError> {
    let mut raw = RawRequest::default();
    let mut arrays = false;
    for (k, v) in query {
        match k.as_str() {
            "start" => raw.start = Some(v.clone()),
            "end" => raw.end = Some(v.clone()),
            "ms" => raw.ms_resolution = true,
            "arrays" => arrays = true,
            "m" => raw.queries.push(parse_m(v)?),
            "tsuid" | "tsuids" => {
                return Err(ApiError::bad_request(
                    "The simulator does not support TSUID queries: use m=<aggregator>:<metric>{...}",
                ));
            }
            _ => {}
        }
    }
    plan(shared, raw, arrays, None, now_ms)
}

fn plan(
    shared: &Shared,
    raw: RawRequest,
    arrays: bool,
    bad_token: Option<&str>,
    now_ms: i64,
) -> Result<Plan, ApiError> {
    match shared.dialect {
        Dialect::Opentsdb => plan_opentsdb(shared, raw, arrays, now_ms),
        Dialect::Ovh => plan_ovh(shared, raw, bad_token, now_ms),
    }
}

#[cfg(test)]
mod tests;
