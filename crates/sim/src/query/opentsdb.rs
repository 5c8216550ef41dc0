//! The `opentsdb` dialect: OpenTSDB 2.4.1's filters, scan bounds and query planning.

use std::collections::{BTreeMap, BTreeSet};

use super::{Compute, OPENTSDB_AGGREGATORS, Plan, ROW_SPAN_MS, RawRequest, SubPlan};
use crate::error::ApiError;
use crate::fetch_limit::too_large;
use crate::model::Pcc;
use crate::regex::{Mode, Regex, RegexError};
use crate::state::Shared;
use vscope_core::dialect::Dialect;
use vscope_core::semantics::Aggregator;
use vscope_core::semantics::downsample::DownsampleSpec;
use vscope_core::semantics::time::parse_time;

/// An OpenTSDB tag-value filter (`src/query/filter/*`).
#[derive(Debug)]
pub(super) enum TsdbFilter {
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
    pub(super) fn tagk(&self) -> &str {
        match self {
            TsdbFilter::Literal { tagk, .. }
            | TsdbFilter::Wildcard { tagk, .. }
            | TsdbFilter::Regexp { tagk, .. }
            | TsdbFilter::NotKey { tagk } => tagk,
        }
    }

    pub(super) fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
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
pub(super) fn star_match(pattern: &str, text: &str) -> bool {
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
pub(super) fn tsdb_filter(kind: &str, tagk: &str, expr: &str) -> Result<TsdbFilter, ApiError> {
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
pub(super) fn tag_to_filter(tagk: &str, value: &str) -> Result<TsdbFilter, ApiError> {
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

pub(super) fn plan_opentsdb(
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

pub(super) fn not_implemented(what: &str) -> ApiError {
    ApiError::bad_request(format!("The simulator does not implement {what}"))
}

/// The start of the OpenTSDB row (hour) holding `ms`.
pub(super) fn row_start(ms: i64) -> i64 {
    ms.saturating_sub(ms.rem_euclid(ROW_SPAN_MS))
}

/// OpenTSDB's scan bounds `[start, end)` in ms (`TsdbQuery.getScanStartTimeSeconds` and
/// `getScanEndTimeSeconds`): the start goes back to its downsample bucket, then to its hour;
/// the end goes forward to the next bucket, then to the next hour. The filling downsampler
/// emits buckets over these bounds (§1.11 item 24).
pub(super) fn opentsdb_scan(start_ms: i64, end_ms: i64, ds: Option<&DownsampleSpec>) -> (i64, i64) {
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
pub(super) fn group(pcc: &Pcc, series: &[usize], keys: &[&str]) -> Vec<Vec<usize>> {
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
pub(super) fn check_limit(
    shared: &Shared,
    series: &[usize],
    from: i64,
    to: i64,
) -> Result<(), ApiError> {
    let limit = shared.max_fetch_points;
    let mut total: u64 = 0;
    for &i in series {
        total = total.saturating_add(shared.pcc.max_points(i, from, to));
        if total > limit {
            return Err(too_large(shared.dialect, shared.errors, limit, total));
        }
    }
    Ok(())
}
