//! The `ovh` dialect: what Erlenmeyer turns a query into (Warp 10 selectors, FETCH, BUCKETIZE,
//! REDUCE), planned the same way.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;

use super::opentsdb::{check_limit, group, not_implemented};
use super::{Compute, OVH_AGGREGATORS, Plan, RawRequest, SubPlan};
use crate::error::ApiError;
use crate::ovh_time;
use crate::regex::{Mode, Regex, RegexError};
use crate::state::Shared;
use crate::warp::{ErrorMode, WarpError};
use vscope_core::dialect::Dialect;
use vscope_core::semantics::Aggregator;
use vscope_core::semantics::downsample::DownsampleSpec;

/// A Warp 10 label selector value as Erlenmeyer writes it into the script: `=exact` or
/// `~regex`. Warp compiles the regex only when FETCH runs, after AUTHENTICATE ([`Selector::compile`]).
#[derive(Debug)]
pub(super) enum Selector {
    Exact(String),
    Pattern(String),
}

impl Selector {
    /// The matcher Warp's FETCH uses; an invalid regex is its error, relayed in `errors` mode.
    pub(super) fn compile(self, errors: ErrorMode) -> Result<LabelMatch, ApiError> {
        Ok(match self {
            Selector::Exact(v) => LabelMatch::Exact(v),
            Selector::Pattern(p) => LabelMatch::Regex(warp_regex(errors, &p)?),
        })
    }
}

/// A compiled Warp 10 label selector: exact value or full-match regex.
#[derive(Debug)]
pub(super) enum LabelMatch {
    Exact(String),
    Regex(Regex),
}

/// Compiles a Warp 10 regex selector: an invalid pattern is a Warp error (a 500 relayed in
/// `errors` mode), a pattern the simulator cannot run is a 400 that says so.
pub(super) fn warp_regex(errors: ErrorMode, pattern: &str) -> Result<Regex, ApiError> {
    Regex::new(pattern, Mode::Full).map_err(|e| match e {
        RegexError::Invalid(m) => WarpError::bad_selector(pattern, &m).relay(errors),
        RegexError::Unsupported(_) => ApiError::bad_request(e.to_string()),
    })
}

/// Quotes regex metacharacters like Go's `regexp.QuoteMeta`.
pub(super) fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(super) fn plan_ovh(
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
pub(super) const AUTO_SPANS_US: [i64; 16] = [
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
pub(super) fn auto_downsample(start_ms: i64, end_ms: i64) -> Result<DownsampleSpec, ApiError> {
    let range_ms = end_ms.saturating_sub(start_ms);
    let span_us = AUTO_SPANS_US
        .iter()
        .copied()
        .find(|&v| range_ms <= v)
        .unwrap_or(AUTO_SPANS_US[15]);
    DownsampleSpec::parse_ovh(&format!("{}ms-avg", span_us / 1000))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
