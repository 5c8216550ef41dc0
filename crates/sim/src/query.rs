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
//! | other aggregators | downsample (epoch-aligned, scan bounds), rate, lerp group-by ([`vscope_core::semantics`]) | end-aligned BUCKETIZE + fill ([`downsample_erlenmeyer`]), REDUCE by tick, rate |
//! | output | aggregated-away keys in `aggregateTags`, integers for raw integer data, Java double format | `query.index`, group-by keys in `aggregateTags`, Go float format, keys sorted, empty series dropped |
//! | too many points | `413` JSON, `...our limit of N data points...` | Warp's `FETCHDOUBLE exceeded limit of N datapoints, current count is M` 500, or the opaque HEAD text ([`ErrorMode`]) |
//!
//! What the simulator cannot compute (aggregators outside [`Aggregator`], Warp 10's `RESETS`)
//! is refused with a 400 that says so, never answered with made-up numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::format::{push_go_float, push_int, push_java_double, push_str};
use super::model::Pcc;
use super::ovh_time;
use super::regex::{Mode, Regex, RegexError};
use super::server::{ApiError, Shared};
use super::warp::{ErrorMode, WarpError};
use vscope_core::dialect::Dialect;
use vscope_core::semantics::downsample::{
    DownsampleSpec, FillPolicy, downsample, downsample_erlenmeyer,
};
use vscope_core::semantics::time::parse_time;
use vscope_core::semantics::{Aggregator, aggregate_series};

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

// ---------------------------------------------------------------------------------------------
// JSON decoding

/// How strictly JSON types are checked: Jackson coerces, Go refuses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    Lenient,
    Strict,
}

/// A JSON object with Go's (case-insensitive fallback) or Jackson's (exact) key lookup.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    mode: Strictness,
}

impl<'a> Obj<'a> {
    /// The value of `key`, `None` when absent or `null` (both dialects treat them alike).
    fn get(&self, key: &str) -> Option<&'a Value> {
        let v = self.map.get(key).or_else(|| {
            if self.mode == Strictness::Strict {
                self.map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            } else {
                None
            }
        });
        v.filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) if self.mode == Strictness::Lenient => {
                Ok(Some(v.to_string()))
            }
            Some(v) => Err(format!("'{key}' must be a string, got {v}")),
        }
    }

    fn boolean(&self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if self.mode == Strictness::Lenient => {
                match s.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" | "" => Ok(false),
                    _ => Err(format!("'{key}' must be a boolean, got \"{s}\"")),
                }
            }
            Some(v) => Err(format!("'{key}' must be a boolean, got {v}")),
        }
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
            Some(Value::String(s)) if self.mode == Strictness::Lenient => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("'{key}' must be an integer, got \"{s}\"")),
            Some(v) => Err(format!("'{key}' must be an integer, got {v}")),
        }
    }

    /// A time field: a string, or a number taken as its JSON text.
    fn time(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) if self.mode == Strictness::Lenient => Ok(Some(b.to_string())),
            Some(v) => Err(format!("'{key}' must be a string or a number, got {v}")),
        }
    }

    fn object(&self, key: &str) -> Result<Option<Obj<'a>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                mode: self.mode,
            })),
            Some(v) => Err(format!("'{key}' must be an object, got {v}")),
        }
    }

    fn array(&self, key: &str) -> Result<&'a [Value], String> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(v) => Err(format!("'{key}' must be an array, got {v}")),
        }
    }
}

fn parse_lenient(body: &[u8]) -> Result<RawRequest, ApiError> {
    let bad = |detail: String| {
        ApiError::bad_request("Unable to parse the given JSON").with_details(detail)
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(bad("the body must be a JSON object".to_owned()));
    };
    decode(&Obj {
        map,
        mode: Strictness::Lenient,
    })
    .map_err(bad)
}

fn parse_strict(body: &[u8]) -> Result<RawRequest, ApiError> {
    let bad = || ApiError::bad_request("can't parse query");
    let value: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let map = match &value {
        Value::Object(map) => map,
        // Go's Unmarshal of `null` into a struct leaves it untouched.
        Value::Null => return Ok(RawRequest::default()),
        _ => return Err(bad()),
    };
    let obj = Obj {
        map,
        mode: Strictness::Strict,
    };
    let raw = decode(&obj).map_err(|_| bad())?;
    // Go runs TSDBTime.UnmarshalJSON while decoding: a bad date fails the decode itself.
    for t in [&raw.start, &raw.end].into_iter().flatten() {
        if ovh_time::parse(t, 0).is_err() {
            return Err(bad());
        }
    }
    Ok(raw)
}

fn decode(obj: &Obj<'_>) -> Result<RawRequest, String> {
    let mut queries = Vec::new();
    for q in obj.array("queries")? {
        let Value::Object(map) = q else {
            return Err(format!("each query must be an object, got {q}"));
        };
        queries.push(decode_sub(&Obj {
            map,
            mode: obj.mode,
        })?);
    }
    Ok(RawRequest {
        start: obj.time("start")?,
        end: obj.time("end")?,
        ms_resolution: obj.boolean("msResolution")?,
        delete: obj.boolean("delete")?,
        queries,
    })
}

fn decode_sub(obj: &Obj<'_>) -> Result<RawSub, String> {
    let mut tags = BTreeMap::new();
    if let Some(t) = obj.object("tags")? {
        for (k, v) in t.map {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Number(_) | Value::Bool(_) if obj.mode == Strictness::Lenient => {
                    v.to_string()
                }
                v => return Err(format!("tag values must be strings, got {v}")),
            };
            tags.insert(k.clone(), v);
        }
    }
    let mut filters = Vec::new();
    for f in obj.array("filters")? {
        let Value::Object(map) = f else {
            return Err(format!("each filter must be an object, got {f}"));
        };
        let f = Obj {
            map,
            mode: obj.mode,
        };
        filters.push(RawFilter {
            kind: f.string("type")?.unwrap_or_default(),
            tagk: f.string("tagk")?.unwrap_or_default(),
            filter: f.string("filter")?.unwrap_or_default(),
            group_by: f.boolean("groupBy")?,
        });
    }
    let rate_options = match obj.object("rateOptions")? {
        Some(r) => RateOptions {
            counter: r.boolean("counter")?,
            counter_max: r.integer("counterMax")?,
            reset_value: r.integer("resetValue")?,
            drop_resets: r.boolean("dropResets")?,
        },
        None => RateOptions::default(),
    };
    Ok(RawSub {
        aggregator: obj.string("aggregator")?,
        metric: obj.string("metric")?,
        rate: obj.boolean("rate")?,
        rate_options,
        downsample: obj.string("downsample")?,
        tags,
        filters,
        explicit_tags: obj.boolean("explicitTags")?,
        has_tsuids: !obj.array("tsuids")?.is_empty(),
    })
}

/// Parses OpenTSDB's `m=` syntax:
/// `<agg>:[rate[{counter[,max[,reset]]}]:][<downsample>:][explicit_tags:]<metric>{groupby}{filters}`,
/// where each brace group holds `tagk=value` pairs and a value may be `type(expr)`.
fn parse_m(m: &str) -> Result<RawSub, ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("Invalid parameter m={m} ({why})"));
    // Split on the ':' outside braces: `rate{...}` and tag groups may hold any character.
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0i32, 0);
    for (i, c) in m.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&m[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&m[from..]);
    if parts.len() < 2 {
        return Err(invalid("not enough :-separated parts"));
    }
    let last = parts[parts.len() - 1];
    let (metric, groups) = last.split_at(last.find('{').unwrap_or(last.len()));
    let mut sub = RawSub {
        aggregator: Some(parts[0].to_owned()),
        metric: Some(metric.to_owned()),
        ..RawSub::default()
    };
    for part in &parts[1..parts.len() - 1] {
        if let Some(rest) = part.strip_prefix("rate") {
            sub.rate = true;
            if let Some(opts) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                let fields: Vec<&str> = opts.split(',').collect();
                let mut o = RateOptions {
                    counter: matches!(fields[0], "counter" | "dropcounter"),
                    drop_resets: fields[0] == "dropcounter",
                    ..RateOptions::default()
                };
                let num = |s: &str| -> Result<Option<i64>, ApiError> {
                    if s.is_empty() {
                        Ok(None)
                    } else {
                        s.parse()
                            .map(Some)
                            .map_err(|_| invalid("bad number in rate options"))
                    }
                };
                o.counter_max = num(fields.get(1).copied().unwrap_or(""))?;
                o.reset_value = num(fields.get(2).copied().unwrap_or(""))?;
                sub.rate_options = o;
            } else if !rest.is_empty() {
                return Err(invalid("bad rate options"));
            }
        } else if *part == "explicit_tags" {
            sub.explicit_tags = true;
        } else if part.starts_with("percentiles") {
            return Err(ApiError::bad_request(
                "The simulator does not support histogram percentiles",
            ));
        } else {
            sub.downsample = Some((*part).to_owned());
        }
    }
    // Brace groups: the first groups by, the second only filters.
    let mut rest = groups;
    let mut group_index = 0;
    while !rest.is_empty() {
        let Some(inner_end) = rest.find('}') else {
            return Err(invalid("missing '}'"));
        };
        if !rest.starts_with('{') || group_index > 1 {
            return Err(invalid("unexpected text after the metric"));
        }
        let inner = &rest[1..inner_end];
        for pair in split_top_level(inner) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(invalid(&format!("missing '=' in '{pair}'")));
            };
            let (k, v) = (k.trim(), v.trim());
            if group_index == 0 {
                sub.tags.insert(k.to_owned(), v.to_owned());
            } else {
                let (kind, expr) = match v.split_once('(') {
                    Some((kind, e)) if e.ends_with(')') => (kind, &e[..e.len() - 1]),
                    _ => ("literal_or", v),
                };
                sub.filters.push(RawFilter {
                    kind: kind.to_ascii_lowercase(),
                    tagk: k.to_owned(),
                    filter: expr.to_owned(),
                    group_by: false,
                });
            }
        }
        rest = &rest[inner_end + 1..];
        group_index += 1;
    }
    Ok(sub)
}

/// Splits `a=b,c=regexp(x{1,2})` on the commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out.retain(|p| !p.trim().is_empty());
    out
}

// ---------------------------------------------------------------------------------------------
// The opentsdb dialect

/// An OpenTSDB tag-value filter (`src/query/filter/*`).
#[derive(Debug)]
enum TsdbFilter {
    Literal {
        tagk: String,
        values: BTreeSet<String>,
        case_insensitive: bool,
        negate: bool,
    },
    Wildcard {
        tagk: String,
        pattern: String,
        case_insensitive: bool,
    },
    Regexp {
        tagk: String,
        re: Regex,
    },
    NotKey {
        tagk: String,
    },
}

impl TsdbFilter {
    fn tagk(&self) -> &str {
        match self {
            TsdbFilter::Literal { tagk, .. }
            | TsdbFilter::Wildcard { tagk, .. }
            | TsdbFilter::Regexp { tagk, .. }
            | TsdbFilter::NotKey { tagk } => tagk,
        }
    }

    fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        let value = tags.get(self.tagk());
        match self {
            TsdbFilter::NotKey { .. } => value.is_none(),
            TsdbFilter::Literal {
                values,
                case_insensitive,
                negate,
                ..
            } => match value {
                // not_literal_or matches series without the tag; literal_or does not.
                None => *negate,
                Some(v) => {
                    let hit = if *case_insensitive {
                        values.contains(&v.to_lowercase())
                    } else {
                        values.contains(v)
                    };
                    hit != *negate
                }
            },
            TsdbFilter::Wildcard {
                pattern,
                case_insensitive,
                ..
            } => match value {
                None => false,
                Some(v) if *case_insensitive => star_match(pattern, &v.to_lowercase()),
                Some(v) => star_match(pattern, v),
            },
            TsdbFilter::Regexp { re, .. } => match value {
                None => false,
                Some(v) => re.is_match(v),
            },
        }
    }
}

/// Glob matching where only `*` is special (OpenTSDB's wildcard filter).
fn star_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Builds one filter from its type name and expression (`TagVFilter.Builder`).
fn tsdb_filter(kind: &str, tagk: &str, expr: &str) -> Result<TsdbFilter, ApiError> {
    if tagk.is_empty() {
        return Err(ApiError::bad_request("Tagk cannot be null or empty"));
    }
    let tagk = tagk.to_owned();
    let java_split = |s: &str, trim: bool, lower: bool| -> BTreeSet<String> {
        let mut parts: Vec<&str> = s.split('|').collect();
        // Java's String.split drops trailing empty strings.
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        parts
            .into_iter()
            .map(|p| if trim { p.trim() } else { p })
            .map(|p| {
                if lower {
                    p.to_lowercase()
                } else {
                    p.to_owned()
                }
            })
            .collect()
    };
    let empty = || ApiError::bad_request("Filter cannot be null or empty");
    Ok(match kind {
        "literal_or" | "iliteral_or" => {
            if expr.is_empty() {
                return Err(empty());
            }
            if expr == "|" {
                return Err(ApiError::bad_request(
                    "Filter must contain more than just a pipe",
                ));
            }
            let ci = kind == "iliteral_or";
            TsdbFilter::Literal {
                tagk,
                values: java_split(expr, true, ci),
                case_insensitive: ci,
                negate: false,
            }
        }
        "not_literal_or" | "not_iliteral_or" => {
            if expr.chars().count() < 2 {
                return Err(empty());
            }
            let ci = kind == "not_iliteral_or";
            TsdbFilter::Literal {
                tagk,
                values: java_split(expr, false, ci),
                case_insensitive: ci,
                negate: true,
            }
        }
        "wildcard" | "iwildcard" => {
            if expr.is_empty() {
                return Err(empty());
            }
            if !expr.contains('*') {
                return Err(ApiError::bad_request("Filter must contain an asterisk"));
            }
            let ci = kind == "iwildcard";
            TsdbFilter::Wildcard {
                tagk,
                pattern: if ci {
                    expr.to_lowercase()
                } else {
                    expr.to_owned()
                },
                case_insensitive: ci,
            }
        }
        "regexp" => {
            if expr.is_empty() {
                return Err(empty());
            }
            let re = Regex::new(expr, Mode::Find).map_err(|e| match e {
                RegexError::Invalid(m) => {
                    ApiError::bad_request(format!("Invalid regular expression '{expr}': {m}"))
                }
                RegexError::Unsupported(_) => ApiError::bad_request(e.to_string()),
            })?;
            TsdbFilter::Regexp { tagk, re }
        }
        "not_key" => {
            if !expr.is_empty() {
                return Err(ApiError::bad_request(
                    "The filter expression must be empty for not_key",
                ));
            }
            TsdbFilter::NotKey { tagk }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "Could not find a tag value filter of type: {other}"
            )));
        }
    })
}

/// `TagVFilter.getFilter` + `mapToFilters`: how a `tags` entry becomes a filter.
fn tag_to_filter(tagk: &str, value: &str) -> Result<TsdbFilter, ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_request("Filter cannot be null or empty"));
    }
    if value == "*" {
        return tsdb_filter("iwildcard", tagk, "*");
    }
    if let Some(paren) = value.find('(') {
        let kind = value[..paren].to_lowercase();
        let inner = &value[paren + 1..];
        let inner = inner.strip_suffix(')').unwrap_or(inner);
        return tsdb_filter(&kind, tagk, inner);
    }
    if value.contains('*') {
        return tsdb_filter("iwildcard", tagk, value);
    }
    tsdb_filter("literal_or", tagk, value)
}

fn plan_opentsdb(
    shared: &Shared,
    raw: RawRequest,
    arrays: bool,
    now_ms: i64,
) -> Result<Plan, ApiError> {
    if raw.delete {
        return Err(ApiError::bad_request("Deleting data is not enabled"));
    }
    let time =
        |s: &str| parse_time(s, now_ms).map_err(|e| ApiError::bad_request(e.opentsdb_message()));
    let start_ms = match raw.start.as_deref() {
        None | Some("") => return Err(ApiError::bad_request("Missing start time")),
        Some(s) => time(s)?,
    };
    let end_ms = match raw.end.as_deref() {
        None | Some("") => now_ms,
        Some(s) => time(s)?,
    };
    if end_ms <= start_ms {
        return Err(ApiError::bad_request(format!(
            "End time [{end_ms}] must be greater than the start time [{start_ms}]"
        )));
    }
    if raw.queries.is_empty() {
        return Err(ApiError::bad_request("Missing queries"));
    }
    // Validation of every sub-query comes before any name resolution, as in TSQuery.
    let mut validated = Vec::new();
    for sub in raw.queries {
        let aggregator = match sub.aggregator.as_deref() {
            None | Some("") => {
                return Err(ApiError::bad_request("Missing the aggregation function"));
            }
            Some(a) if !OPENTSDB_AGGREGATORS.contains(&a) => {
                return Err(ApiError::bad_request(format!(
                    "No such aggregation function: {a}"
                )));
            }
            Some(a) => a
                .parse::<Aggregator>()
                .map_err(|_| not_implemented(&format!("the aggregator '{a}'")))?,
        };
        if sub.has_tsuids {
            return Err(ApiError::bad_request(
                "The simulator does not support TSUID queries: give a metric",
            ));
        }
        let metric = match sub.metric.as_deref() {
            None | Some("") => {
                return Err(ApiError::bad_request(
                    "Missing the metric or tsuids, provide at least one",
                ));
            }
            Some(m) => m.to_owned(),
        };
        let downsample = match &sub.downsample {
            None => None,
            Some(ds) => Some(
                ds.parse::<DownsampleSpec>()
                    .map_err(|e| ApiError::bad_request(e.opentsdb_message()))?,
            ),
        };
        // `tags` entries always group; filters group when they say so.
        let mut filters = Vec::new();
        let mut group_keys = BTreeSet::new();
        for (k, v) in &sub.tags {
            filters.push(tag_to_filter(k, v)?);
            group_keys.insert(k.clone());
        }
        for f in &sub.filters {
            filters.push(tsdb_filter(&f.kind.to_lowercase(), &f.tagk, &f.filter)?);
            if f.group_by {
                group_keys.insert(f.tagk.clone());
            }
        }
        let rate = sub.rate.then_some(sub.rate_options);
        let compute = match (aggregator, downsample) {
            (Aggregator::None, None) => Compute::Raw { rate },
            (aggregator, downsample) => Compute::Opentsdb {
                downsample,
                rate,
                aggregator,
                scan: opentsdb_scan(start_ms, end_ms, downsample.as_ref()),
            },
        };
        validated.push((metric, filters, sub.explicit_tags, compute, group_keys));
    }
    let pcc = &shared.pcc;
    let mut subs = Vec::new();
    for (index, (metric, filters, explicit, compute, group_keys)) in
        validated.into_iter().enumerate()
    {
        let Some(range) = pcc.metric_series(&metric) else {
            return Err(ApiError::bad_request(format!(
                "No such name for 'metrics': '{metric}'"
            )));
        };
        for f in &filters {
            if !shared.index.has_tagk(f.tagk()) {
                return Err(ApiError::bad_request(format!(
                    "No such name for 'tagk': '{}'",
                    f.tagk()
                )));
            }
            if let TsdbFilter::Literal {
                values,
                case_insensitive: false,
                negate: false,
                ..
            } = f
                && let Some(v) = values.iter().find(|v| !shared.index.has_tagv(v))
            {
                return Err(ApiError::bad_request(format!(
                    "No such name for 'tagv': '{v}'"
                )));
            }
        }
        let keys: BTreeSet<&str> = filters.iter().map(TsdbFilter::tagk).collect();
        let mut series = Vec::new();
        for i in range {
            let tags = &pcc.series()[i].tags;
            if explicit && !tags.keys().map(String::as_str).eq(keys.iter().copied()) {
                continue;
            }
            let mut ok = true;
            for f in &filters {
                if !f.matches(tags) {
                    ok = false;
                    break;
                }
            }
            if ok {
                series.push(i);
            }
        }
        let (fetch_start, fetch_end) = match compute {
            Compute::Raw { rate: None } | Compute::Ovh { .. } => (start_ms, end_ms),
            Compute::Raw { rate: Some(_) } => (row_start(start_ms), end_ms),
            Compute::Opentsdb { scan, .. } => (scan.0, scan.1 - 1),
        };
        check_limit(shared, &series, fetch_start, fetch_end)?;
        let outputs = match compute {
            Compute::Opentsdb { aggregator, .. } if aggregator != Aggregator::None => {
                let keys: Vec<&str> = group_keys.iter().map(String::as_str).collect();
                group(pcc, &series, &keys)
            }
            _ => series.iter().map(|&i| vec![i]).collect(),
        };
        subs.push(SubPlan {
            metric,
            index,
            group_by: Vec::new(),
            outputs,
            compute,
        });
    }
    Ok(Plan {
        dialect: Dialect::Opentsdb,
        start_ms,
        end_ms,
        fetch_from_ms: start_ms,
        ms_resolution: raw.ms_resolution,
        arrays,
        subs,
    })
}

fn not_implemented(what: &str) -> ApiError {
    ApiError::bad_request(format!("The simulator does not implement {what}"))
}

/// The start of the OpenTSDB row (hour) holding `ms`.
fn row_start(ms: i64) -> i64 {
    ms.saturating_sub(ms.rem_euclid(ROW_SPAN_MS))
}

/// OpenTSDB's scan bounds `[start, end)` in ms (`TsdbQuery.getScanStartTimeSeconds` and
/// `getScanEndTimeSeconds`): the start goes back to its downsample bucket, then to its hour;
/// the end goes forward to the next bucket, then to the next hour. The filling downsampler
/// emits buckets over these bounds (§1.11 item 24).
fn opentsdb_scan(start_ms: i64, end_ms: i64, ds: Option<&DownsampleSpec>) -> (i64, i64) {
    const HOUR: i128 = 3_600;
    let interval = ds
        .filter(|d| !d.run_all && d.interval_ms > 0)
        .map(|d| i128::from(d.interval_ms));
    let mut start = i128::from(start_ms).div_euclid(1000);
    let end = i128::from(end_ms).div_euclid(1000);
    if let Some(iv) = interval {
        start -= (1000 * start).rem_euclid(iv) / 1000;
    }
    start = (start - start.rem_euclid(HOUR)).max(0);
    let end = match interval {
        Some(iv) => {
            let aligned = end + (iv - (1000 * end).rem_euclid(iv)) / 1000;
            if aligned.rem_euclid(HOUR) == 0 {
                aligned
            } else {
                aligned + HOUR - aligned.rem_euclid(HOUR)
            }
        }
        None => end + HOUR - end.rem_euclid(HOUR),
    };
    let ms = |s: i128| i64::try_from(s * 1000).unwrap_or(i64::MAX);
    (ms(start), ms(end))
}

/// Partitions `series` by their values of `keys` (group-by), in key order; no keys means one
/// group. A missing key counts as an empty value, as a Warp 10 partition does.
fn group(pcc: &Pcc, series: &[usize], keys: &[&str]) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
    for &i in series {
        let tags = &pcc.series()[i].tags;
        let key = keys
            .iter()
            .map(|k| tags.get(*k).map_or("", String::as_str))
            .collect();
        groups.entry(key).or_default().push(i);
    }
    groups.into_values().collect()
}

/// Refuses a sub-query whose fetch selects more than [`Shared::max_fetch_points`] stored
/// points, the way each server refuses it ([`too_large`]).
///
/// The count of a series is its steps in `[from, to]` ([`Pcc::max_points`]: an upper bound that
/// does not subtract the ~0.5 % missing points), so it costs nothing per point, is the same on
/// every run, and drops with every series a filter leaves out. Like Warp's FETCH, which adds each
/// series' points to a running total and fails as soon as the total passes the limit
/// (`FETCH.java`: `fetched.addAndGet(...) > fetchLimit`), the count reported is that running
/// total, in the simulator's series order.
fn check_limit(shared: &Shared, series: &[usize], from: i64, to: i64) -> Result<(), ApiError> {
    let limit = shared.max_fetch_points;
    let mut total: u64 = 0;
    for &i in series {
        total = total.saturating_add(shared.pcc.max_points(i, from, to));
        if total > limit {
            return Err(too_large(shared, total));
        }
    }
    Ok(())
}

/// The answer of each server to a sub-query over its datapoint limit, having counted `count`
/// points: OpenTSDB's 413 (`QueryRpc`, `reference/api.md` §1.10), or Warp 10's FETCH limit
/// error as Erlenmeyer relays it (a 500, [`WarpError::relay`]). Also the `fetch-limit` fault.
pub(crate) fn too_large(shared: &Shared, count: u64) -> ApiError {
    let limit = shared.max_fetch_points;
    match shared.dialect {
        Dialect::Opentsdb => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Sorry, you have attempted to fetch more than our limit of {limit} data points. \
                 Please try filtering using more tags or decrease your time range."
            ),
        ),
        Dialect::Ovh => WarpError::fetch_limit(limit, count).relay(shared.errors),
    }
}

// ---------------------------------------------------------------------------------------------
// The ovh dialect

/// A Warp 10 label selector value as Erlenmeyer writes it into the script: `=exact` or
/// `~regex`. Warp compiles the regex only when FETCH runs, after AUTHENTICATE ([`Selector::compile`]).
#[derive(Debug)]
enum Selector {
    Exact(String),
    Pattern(String),
}

impl Selector {
    /// The matcher Warp's FETCH uses; an invalid regex is its error, relayed in `errors` mode.
    fn compile(self, errors: ErrorMode) -> Result<LabelMatch, ApiError> {
        Ok(match self {
            Selector::Exact(v) => LabelMatch::Exact(v),
            Selector::Pattern(p) => LabelMatch::Regex(warp_regex(errors, &p)?),
        })
    }
}

/// A compiled Warp 10 label selector: exact value or full-match regex.
#[derive(Debug)]
enum LabelMatch {
    Exact(String),
    Regex(Regex),
}

/// Compiles a Warp 10 regex selector: an invalid pattern is a Warp error (a 500 relayed in
/// `errors` mode), a pattern the simulator cannot run is a 400 that says so.
fn warp_regex(errors: ErrorMode, pattern: &str) -> Result<Regex, ApiError> {
    Regex::new(pattern, Mode::Full).map_err(|e| match e {
        RegexError::Invalid(m) => WarpError::bad_selector(pattern, &m).relay(errors),
        RegexError::Unsupported(_) => ApiError::bad_request(e.to_string()),
    })
}

/// Quotes regex metacharacters like Go's `regexp.QuoteMeta`.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn plan_ovh(
    shared: &Shared,
    raw: RawRequest,
    bad_token: Option<&str>,
    now_ms: i64,
) -> Result<Plan, ApiError> {
    let invalid = |m: &str| ApiError::bad_request(format!("Invalid query: {m}"));
    // Times were checked while decoding; a missing start is Go's zero time (year 1).
    let time = |t: &Option<String>, default: i64| match t {
        Some(s) => {
            ovh_time::parse(s, now_ms).map_err(|_| ApiError::bad_request("can't parse query"))
        }
        None => Ok(default),
    };
    const YEAR_ONE_MS: i64 = -62_135_596_800_000;
    let start_ms = time(&raw.start, YEAR_ONE_MS)?;
    let end_ms = time(&raw.end, now_ms)?;
    if start_ms > end_ms {
        return Err(invalid("Start date is after end date"));
    }
    // Warp 10's FETCH with two ISO dates: (start, end] or [start, end] by release (`warp.rs`).
    let fetch_from_ms = shared.fetch_start.first_kept_ms(start_ms);
    let errors = shared.errors;
    for sub in &raw.queries {
        if sub.metric.as_deref().unwrap_or("").is_empty() {
            return Err(invalid("missing metric name"));
        }
        let aggregator = sub.aggregator.as_deref().unwrap_or("");
        if !OVH_AGGREGATORS.contains(&aggregator) {
            return Err(invalid(&format!("invalid aggregator {aggregator}")));
        }
    }
    if raw.delete {
        return Err(ApiError::bad_request(
            "Deleting data is not enabled in the simulator",
        ));
    }
    let pcc = &shared.pcc;
    let mut subs = Vec::new();
    for (index, sub) in raw.queries.into_iter().enumerate() {
        let metric = sub.metric.unwrap_or_default();
        let aggregator = sub.aggregator.unwrap_or_default();
        // Selection: tags first, then the three filter types Erlenmeyer knows; a later
        // selector on the same key replaces an earlier one (WarpScript ->MAP).
        let mut group_by = Vec::new();
        let mut selectors: BTreeMap<String, Selector> = BTreeMap::new();
        for (k, v) in &sub.tags {
            let m = if v == "*" {
                group_by.push(k.clone());
                Selector::Pattern(".*".to_owned())
            } else if v.contains('|') {
                group_by.push(k.clone());
                let quoted: Vec<String> = v.split('|').map(|p| quote_meta(p.trim())).collect();
                Selector::Pattern(quoted.join("|"))
            } else {
                Selector::Exact(v.clone())
            };
            selectors.insert(k.clone(), m);
        }
        for f in &sub.filters {
            let m = match f.kind.as_str() {
                "literal_or" if f.filter.contains('|') => Selector::Pattern(f.filter.clone()),
                "literal_or" => Selector::Exact(f.filter.clone()),
                "wildcard" => Selector::Pattern(f.filter.replace('*', ".*")),
                "regexp" => Selector::Pattern(f.filter.clone()),
                // Every other type is silently ignored by Erlenmeyer.
                _ => continue,
            };
            if f.group_by {
                group_by.push(f.tagk.clone());
            }
            selectors.insert(f.tagk.clone(), m);
        }
        // explicitTags compares with every filter key, even the ignored ones.
        let explicit_keys: BTreeSet<&str> = sub
            .filters
            .iter()
            .map(|f| f.tagk.as_str())
            .chain(sub.tags.keys().map(String::as_str))
            .collect();
        let aggregator: Aggregator = aggregator
            .parse()
            .map_err(|_| not_implemented(&format!("the aggregator '{aggregator}'")))?;
        let compute = if aggregator == Aggregator::None {
            // Erlenmeyer skips downsampling and rate entirely with `none`.
            Compute::Raw { rate: None }
        } else {
            let spec = match &sub.downsample {
                Some(ds) => DownsampleSpec::parse_ovh(ds)
                    .map_err(|e| ApiError::bad_request(e.opentsdb_message()))?,
                None => auto_downsample(start_ms, end_ms)?,
            };
            let rate = sub.rate.then_some(sub.rate_options);
            if rate.is_some_and(|r| r.counter && r.drop_resets) {
                return Err(not_implemented(
                    "dropResets (Warp 10's RESETS) for the ovh dialect",
                ));
            }
            Compute::Ovh {
                spec,
                aggregator,
                rate,
            }
        };
        // Warp 10 runs the script: AUTHENTICATE first, then FETCH.
        if bad_token.is_some() {
            return Err(WarpError::invalid_token().relay(errors));
        }
        let class = match metric.strip_prefix('~') {
            Some(re) => Some(warp_regex(errors, re)?),
            None => None,
        };
        let labels = selectors
            .into_iter()
            .map(|(k, sel)| Ok((k, sel.compile(errors)?)))
            .collect::<Result<Vec<(String, LabelMatch)>, ApiError>>()?;
        let exact = metric.strip_prefix('=').unwrap_or(&metric);
        let mut series = Vec::new();
        for (i, s) in pcc.series().iter().enumerate() {
            let class_ok = match &class {
                Some(re) => re.is_match(&s.metric),
                None => s.metric == exact,
            };
            if !class_ok {
                continue;
            }
            if sub.explicit_tags
                && !s
                    .tags
                    .keys()
                    .map(String::as_str)
                    .eq(explicit_keys.iter().copied())
            {
                continue;
            }
            let mut ok = true;
            for (k, m) in &labels {
                let hit = match (s.tags.get(k), m) {
                    (None, _) => false,
                    (Some(v), LabelMatch::Exact(e)) => v == e,
                    (Some(v), LabelMatch::Regex(re)) => re.is_match(v),
                };
                if !hit {
                    ok = false;
                    break;
                }
            }
            if ok {
                series.push(i);
            }
        }
        check_limit(shared, &series, fetch_from_ms, end_ms)?;
        let outputs = match compute {
            Compute::Ovh { .. } => {
                let keys: BTreeSet<&str> = group_by.iter().map(String::as_str).collect();
                group(pcc, &series, &keys.into_iter().collect::<Vec<_>>())
            }
            _ => series.iter().map(|&i| vec![i]).collect(),
        };
        subs.push(SubPlan {
            metric,
            index,
            group_by,
            outputs,
            compute,
        });
    }
    Ok(Plan {
        dialect: Dialect::Ovh,
        start_ms,
        end_ms,
        fetch_from_ms,
        ms_resolution: raw.ms_resolution,
        arrays: false,
        subs,
    })
}

/// The spans Erlenmeyer picks from when no downsample is given, in µs (`intervals`).
const AUTO_SPANS_US: [i64; 16] = [
    1_000_000,
    5_000_000,
    10_000_000,
    15_000_000,
    30_000_000,
    60_000_000,
    600_000_000,
    900_000_000,
    1_800_000_000,
    3_600_000_000,
    7_200_000_000,
    14_400_000_000,
    21_600_000_000,
    43_200_000_000,
    86_400_000_000,
    604_800_000_000,
];

/// Erlenmeyer's forced downsample when none is given: `bucketizer.mean` over the first span
/// of [`AUTO_SPANS_US`] not below the range in ms (a ms/µs comparison, so about 1000 buckets
/// or fewer), capped at 7 days.
fn auto_downsample(start_ms: i64, end_ms: i64) -> Result<DownsampleSpec, ApiError> {
    let range_ms = end_ms.saturating_sub(start_ms);
    let span_us = AUTO_SPANS_US
        .iter()
        .copied()
        .find(|&v| range_ms <= v)
        .unwrap_or(AUTO_SPANS_US[15]);
    DownsampleSpec::parse_ovh(&format!("{}ms-avg", span_us / 1000))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Output

/// How values are printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
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
    shared: Arc<Shared>,
    plan: Plan,
    sub: usize,
    pos: usize,
    buf: Vec<(i64, f64)>,
    wrote_any: bool,
    opened: bool,
    closed: bool,
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

    fn next_item(&mut self) -> Option<(usize, usize)> {
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
    fn compute(&mut self, sub: usize, out_idx: usize) -> bool {
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
    fn render(&mut self, sub: usize, out_idx: usize, out: &mut String) {
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
fn group_tags(pcc: &Pcc, members: &[usize]) -> (BTreeMap<String, String>, Vec<String>) {
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
fn warp_reduce(aggregator: Aggregator, values: &[f64]) -> Option<f64> {
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
fn warp_rate(points: &mut Vec<(i64, f64)>, opts: RateOptions, bucket_count: i64) {
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

fn digits(v: i64) -> usize {
    v.unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1)
}

/// Turns ascending raw points into OpenTSDB per-second rates (`RateSpan`), in place: the first
/// point has no rate; with `counter`, a decrease is a roll-over at `counterMax` (or a dropped
/// point with `dropResets`), and a roll-over rate above a positive `resetValue` becomes 0.
fn to_rates(points: &mut Vec<(i64, f64)>, opts: RateOptions) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m_parameter_is_parsed() {
        let s = parse_m("none:rate{counter,100,5}:explicit_tags:vscope.vm.cpu.ready{vm=vm-01254|vm-01257}{datacenter=wildcard(*869)}").unwrap();
        assert_eq!(s.aggregator.as_deref(), Some("none"));
        assert_eq!(s.metric.as_deref(), Some("vscope.vm.cpu.ready"));
        assert!(s.rate && s.explicit_tags);
        assert_eq!(
            s.rate_options,
            RateOptions {
                counter: true,
                counter_max: Some(100),
                reset_value: Some(5),
                drop_resets: false
            }
        );
        assert_eq!(s.tags["vm"], "vm-01254|vm-01257");
        assert_eq!(s.filters[0].kind, "wildcard");
        assert_eq!(s.filters[0].filter, "*869");
        let d = parse_m("sum:1h-avg:vscope.vm.cpu.ready").unwrap();
        assert_eq!(d.downsample.as_deref(), Some("1h-avg"));
        assert!(parse_m("vscope.vm.cpu.ready").is_err());
        assert!(parse_m("none:m{a=b").is_err());
        assert!(parse_m("none:m{ab}").is_err());
    }

    #[test]
    fn wildcards_and_tag_conversion_follow_opentsdb() {
        assert!(star_match("*", ""));
        assert!(star_match("vm-*", "vm-01254"));
        assert!(star_match("*869", "pcc_datacenter869"));
        assert!(star_match("a*b*c", "axxbyyc"));
        assert!(!star_match("a*b*c", "axxbyy"));
        assert!(!star_match("ab*ba", "aba"));
        let tags: BTreeMap<String, String> = [("host".to_owned(), "Web01".to_owned())]
            .into_iter()
            .collect();
        // A value with `*` becomes a case-insensitive wildcard.
        assert!(tag_to_filter("host", "web*").unwrap().matches(&tags));
        assert!(!tag_to_filter("host", "web01").unwrap().matches(&tags));
        assert!(tag_to_filter("host", "Web01|x").unwrap().matches(&tags));
        assert!(tag_to_filter("host", "regexp(eb0)").unwrap().matches(&tags));
        assert!(
            tag_to_filter("host", "iliteral_or(web01)")
                .unwrap()
                .matches(&tags)
        );
        assert!(tag_to_filter("nic", "not_key()").unwrap().matches(&tags));
        assert!(
            tag_to_filter("nic", "not_literal_or(ab)")
                .unwrap()
                .matches(&tags)
        );
        assert!(tsdb_filter("wildcard", "host", "web").is_err());
        assert!(tsdb_filter("literal_or", "host", "|").is_err());
        assert!(tsdb_filter("bogus", "host", "x").is_err());
        assert!(tsdb_filter("regexp", "host", "(x").is_err());
    }

    #[test]
    fn erlenmeyer_picks_its_automatic_span() {
        let span = |range_ms: i64| auto_downsample(0, range_ms).unwrap().interval_ms;
        assert_eq!(span(3_600_000), 5_000);
        assert_eq!(span(86_400_000), 600_000);
        assert_eq!(span(7 * 86_400_000), 900_000);
        assert_eq!(span(30 * 86_400_000), 3_600_000);
        assert_eq!(span(i64::MAX), 604_800_000);
    }

    #[test]
    fn opentsdb_scan_bounds_match_the_reference_vectors() {
        // reference/api.md §1.11 item 24.
        let m: DownsampleSpec = "1m-avg".parse().unwrap();
        assert_eq!(
            opentsdb_scan(1_356_998_400_000, 1_357_041_600_000, Some(&m)),
            (1_356_998_400_000, 1_357_045_200_000)
        );
        let q: DownsampleSpec = "15m-avg".parse().unwrap();
        let now = 1_427_415_547_000;
        assert_eq!(
            opentsdb_scan(now - 12 * 3_600_000, now, Some(&q)),
            (1_427_371_200_000, 1_427_418_000_000)
        );
    }

    #[test]
    fn warp_reducers_and_rate() {
        assert_eq!(
            warp_reduce(Aggregator::P50, &[1.0, 2.0, 3.0, 4.0]),
            Some(2.0)
        );
        assert_eq!(
            warp_reduce(Aggregator::Dev, &[1.0, 2.0]),
            Some(0.5f64.sqrt())
        );
        assert_eq!(warp_reduce(Aggregator::Sum, &[1.0, 2.0]), Some(3.0));
        assert_eq!(warp_reduce(Aggregator::Count, &[1.0, 2.0]), Some(2.0));
        let mut p = vec![(0, 1.0), (10_000, 3.0), (20_000, 2.0)];
        warp_rate(&mut p, RateOptions::default(), 3);
        assert_eq!(p, vec![(10_000, 0.2), (20_000, -0.1)]);
        let mut p = vec![(0, 1.0), (10_000, 50.0)];
        warp_rate(
            &mut p,
            RateOptions {
                counter: true,
                reset_value: Some(10),
                ..RateOptions::default()
            },
            0,
        );
        assert_eq!(p, vec![(0, 0.0), (10_000, -0.1)]);
    }

    #[test]
    fn rates_follow_rate_span() {
        // TestRateSpan: counter, counterMax 70, resetValue 1 on 40, 50, 40 at 1 s spacing.
        let mut p = vec![(0, 40.0), (1000, 50.0), (2000, 40.0)];
        to_rates(
            &mut p,
            RateOptions {
                counter: true,
                counter_max: Some(70),
                reset_value: Some(1),
                drop_resets: false,
            },
        );
        assert_eq!(p, vec![(1000, 10.0), (2000, 0.0)]);
        // dropResets on 40, 50, 40, 50.
        let mut p = vec![(0, 40.0), (1000, 50.0), (2000, 40.0), (3000, 50.0)];
        to_rates(
            &mut p,
            RateOptions {
                counter: true,
                drop_resets: true,
                ..RateOptions::default()
            },
        );
        assert_eq!(p, vec![(1000, 10.0), (3000, 10.0)]);
        // Plain rate, negative allowed.
        let mut p = vec![(0, 40.0), (2000, 30.0)];
        to_rates(&mut p, RateOptions::default());
        assert_eq!(p, vec![(2000, -5.0)]);
    }

    #[test]
    fn strict_decoding_refuses_wrong_types() {
        assert!(
            parse_strict(
                br#"{"start":1,"queries":[{"metric":"m","aggregator":"none","rate":"true"}]}"#
            )
            .is_err()
        );
        assert!(parse_strict(br#"{"start":1,"msResolution":"true"}"#).is_err());
        assert!(parse_strict(br#"{"start":"now"}"#).is_err());
        assert!(parse_strict(br#"{"start":true}"#).is_err());
        assert!(parse_strict(b"[1]").is_err());
        assert_eq!(parse_strict(b"null").unwrap(), RawRequest::default());
        let ok = parse_strict(br#"{"START":"1h-ago","MSResolution":true,"queries":null}"#).unwrap();
        assert_eq!(ok.start.as_deref(), Some("1h-ago"));
        assert!(ok.ms_resolution);
        let lenient = parse_lenient(
            br#"{"start":1,"queries":[{"metric":"m","aggregator":"none","rate":"true"}]}"#,
        )
        .unwrap();
        assert!(lenient.queries[0].rate);
        assert!(parse_lenient(b"{").is_err());
    }
}
