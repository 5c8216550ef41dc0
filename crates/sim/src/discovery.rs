//! Discovery endpoints: `/api/search/lookup`, `/api/suggest`, `/api/aggregators`,
//! `/api/version` and `/api/config/filters`, per dialect (`reference/api.md` §1.9 and §2.6).
//!
//! The ETL enumerates series with `lookup`, so its dialect differences matter most:
//! OpenTSDB honours `limit` (default 25, results cut, no paging), returns hex TSUIDs and the
//! elapsed `time` in ms; Erlenmeyer ignores `limit` (everything is returned, `limit` is echoed
//! as 25), returns `tsuid: 0` and `time` in µs, and accepts only identifier-like names.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use serde_json::Value;

use super::error::ApiError;
use super::format::{push_int, push_str};
use super::query::{OPENTSDB_AGGREGATORS, OVH_AGGREGATORS, OVH_DOWNSAMPLERS};
use super::regex::{Mode, Regex};
use super::state::Shared;
use super::warp::WarpError;
use vscope_core::dialect::Dialect;

/// Default and OVH-echoed `limit` / `max`.
const DEFAULT_LIMIT: usize = 25;

/// A lookup request, either dialect.
#[derive(Debug, Default)]
struct LookupRequest {
    metric: Option<String>,
    /// `None` only for an OVH POST without `tags` (echoed as `null`).
    tags: Option<Vec<(String, String)>>,
    limit: Option<usize>,
}

/// `GET|POST /api/search/lookup`.
pub(crate) fn lookup(
    shared: &Shared,
    method_is_get: bool,
    query: &[(String, String)],
    body: &[u8],
    bad_token: Option<&str>,
    elapsed_since: std::time::Instant,
) -> Result<String, ApiError> {
    match shared.dialect {
        Dialect::Opentsdb => lookup_opentsdb(shared, method_is_get, query, body, elapsed_since),
        Dialect::Ovh => lookup_ovh(shared, method_is_get, query, body, bad_token, elapsed_since),
    }
}

fn first<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Splits `metric{k=v,k2=v2}` into the metric and the pairs; `None` when malformed.
fn split_metric_tags(m: &str) -> Option<(String, Vec<(String, String)>)> {
    let m = m.trim();
    let Some(open) = m.find('{') else {
        return Some((m.to_owned(), Vec::new()));
    };
    let inner = m[open + 1..].strip_suffix('}')?;
    let mut tags = Vec::new();
    for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=')?;
        tags.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Some((m[..open].to_owned(), tags))
}

fn decode_lookup_body(body: &[u8], strict: bool) -> Result<LookupRequest, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Value::Object(map) = value else {
        return Err("the body must be a JSON object".to_owned());
    };
    let get = |key: &str| {
        map.get(key)
            .or_else(|| {
                strict
                    .then(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
                    .flatten()
                    .map(|(_, v)| v)
            })
            .filter(|v| !v.is_null())
    };
    let metric = match get("metric") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(format!("'metric' must be a string, got {v}")),
    };
    let tags = match get("tags") {
        None => None,
        Some(Value::Array(items)) => {
            let mut tags = Vec::new();
            for item in items {
                let pair = |k: &str| match item.get(k) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(v) => Err(format!("tag '{k}' must be a string, got {v}")),
                };
                if !item.is_object() {
                    return Err(format!("each tag must be an object, got {item}"));
                }
                tags.push((pair("key")?, pair("value")?));
            }
            Some(tags)
        }
        Some(v) => return Err(format!("'tags' must be an array, got {v}")),
    };
    let limit = match get("limit") {
        None => None,
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) if !strict => s.parse().ok(),
        Some(v) => return Err(format!("'limit' must be an integer, got {v}")),
    };
    Ok(LookupRequest {
        metric,
        tags,
        limit,
    })
}

fn lookup_opentsdb(
    shared: &Shared,
    method_is_get: bool,
    query: &[(String, String)],
    body: &[u8],
    elapsed_since: std::time::Instant,
) -> Result<String, ApiError> {
    let req = if method_is_get {
        let mut req = LookupRequest::default();
        if let Some(m) = first(query, "m") {
            let (metric, tags) = split_metric_tags(m).ok_or_else(|| {
                ApiError::bad_request(format!("Unable to parse the 'm' parameter: {m}"))
            })?;
            req.metric = (!metric.is_empty()).then_some(metric);
            req.tags = Some(tags);
        }
        if let Some(l) = first(query, "limit") {
            req.limit = Some(
                l.parse()
                    .map_err(|_| ApiError::bad_request("Unable to parse 'limit' as a number"))?,
            );
        }
        req
    } else {
        decode_lookup_body(body, false)
            .map_err(|e| ApiError::bad_request("Unable to parse the given JSON").with_details(e))?
    };
    let tags = req.tags.clone().unwrap_or_default();
    let all_metrics = matches!(req.metric.as_deref(), None | Some("") | Some("*"));
    if all_metrics && tags.is_empty() {
        return Err(ApiError::bad_request(
            "Missing metric and tags. Please supply at least one value.",
        ));
    }
    let index = &shared.index;
    if let Some(m) = req.metric.as_deref().filter(|_| !all_metrics)
        && !index.metrics.contains_key(m)
    {
        return Err(ApiError::bad_request(format!(
            "No such name for 'metrics': '{m}'"
        )));
    }
    for (k, v) in &tags {
        if k != "*" && !index.has_tagk(k) {
            return Err(ApiError::bad_request(format!(
                "No such name for 'tagk': '{k}'"
            )));
        }
        if v != "*" && !index.has_tagv(v) {
            return Err(ApiError::bad_request(format!(
                "No such name for 'tagv': '{v}'"
            )));
        }
    }
    // Pairs with the same key are ORed; different keys (and `*` keys) are ANDed.
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut any_key: Vec<&str> = Vec::new();
    for (k, v) in &tags {
        if k == "*" {
            any_key.push(v);
        } else {
            by_key.entry(k).or_default().push(v);
        }
    }
    let mut results: Vec<(String, usize)> = shared
        .pcc
        .series()
        .iter()
        .enumerate()
        .filter(|(_, s)| all_metrics || Some(s.metric.as_str()) == req.metric.as_deref())
        .filter(|(_, s)| {
            by_key.iter().all(|(k, vs)| {
                s.tags
                    .get(*k)
                    .is_some_and(|tv| vs.iter().any(|v| *v == "*" || v == tv))
            }) && any_key
                .iter()
                .all(|v| *v == "*" || s.tags.values().any(|tv| tv == v))
        })
        .map(|(i, s)| (index.tsuid(&s.metric, &s.tags), i))
        .collect();
    results.sort();
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    results.truncate(limit);
    let mut out = String::with_capacity(256 + 200 * results.len());
    out.push_str("{\"type\":\"LOOKUP\",\"metric\":");
    match req.metric.as_deref() {
        Some(m) => push_str(&mut out, m),
        None => out.push_str("null"),
    }
    out.push_str(",\"tags\":");
    push_pairs(&mut out, &tags);
    out.push_str(",\"limit\":");
    push_int(&mut out, limit as i64);
    out.push_str(",\"startIndex\":0,\"time\":");
    push_int(&mut out, elapsed_since.elapsed().as_millis() as i64);
    out.push_str(",\"totalResults\":");
    push_int(&mut out, results.len() as i64);
    out.push_str(",\"results\":[");
    for (n, (tsuid, i)) in results.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let s = &shared.pcc.series()[*i];
        out.push_str("{\"tsuid\":");
        push_str(&mut out, tsuid);
        out.push_str(",\"metric\":");
        push_str(&mut out, &s.metric);
        out.push_str(",\"tags\":");
        push_map(&mut out, &s.tags);
        out.push('}');
    }
    out.push_str("]}");
    Ok(out)
}

/// `[-a-zA-Z0-9_./]+`, Erlenmeyer's identifier rule.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

/// Erlenmeyer's per-key lookup selector (`processTags`).
enum Selector {
    Exact(String),
    Alternatives(String),
    Any,
}

fn lookup_ovh(
    shared: &Shared,
    method_is_get: bool,
    query: &[(String, String)],
    body: &[u8],
    bad_token: Option<&str>,
    elapsed_since: std::time::Instant,
) -> Result<String, ApiError> {
    let req = if method_is_get {
        let m = first(query, "m").unwrap_or("");
        let bad = || ApiError::bad_request(format!("can't parse query param 'm={m}'"));
        let trimmed = m.trim();
        if trimmed.is_empty() {
            return Err(bad());
        }
        // Both braces absent, or `{` before `}` with room for a tag and `}` last.
        let (l, r) = (trimmed.find('{'), trimmed.find('}'));
        let braces_ok = match (l, r) {
            (None, None) => true,
            (Some(l), Some(r)) => l + 3 < r && r == trimmed.len() - 1,
            _ => false,
        };
        if !braces_ok {
            return Err(bad());
        }
        let (metric, tags) = split_metric_tags(trimmed).ok_or_else(bad)?;
        for (k, v) in &tags {
            if !is_identifier(k) || !(v == "*" || is_identifier(v)) {
                return Err(bad());
            }
        }
        LookupRequest {
            metric: Some(metric),
            tags: Some(tags),
            limit: None,
        }
    } else {
        decode_lookup_body(body, true).map_err(ApiError::bad_request)?
    };
    let unbuildable = || ApiError::bad_request("Unable to build a backend query from the request");
    let metric = req.metric.clone().unwrap_or_default();
    let all_metrics = metric.is_empty() || metric == "*";
    if !all_metrics && !is_identifier(&metric) {
        return Err(unbuildable());
    }
    let mut selectors: BTreeMap<&str, Selector> = BTreeMap::new();
    for (k, v) in req.tags.iter().flatten() {
        if !is_identifier(k) || !(v == "*" || is_identifier(v)) {
            return Err(unbuildable());
        }
        if v == "*" {
            selectors.insert(k, Selector::Any);
            continue;
        }
        let next = match selectors.remove(k.as_str()) {
            None => Selector::Exact(v.clone()),
            Some(Selector::Any) => Selector::Any,
            Some(Selector::Exact(prev)) | Some(Selector::Alternatives(prev)) => {
                Selector::Alternatives(format!("{prev}|{v}"))
            }
        };
        selectors.insert(k, next);
    }
    // The lookup script runs FIND through `QueryGTS`, so a refused token is relayed like any
    // Warp error of `/api/query` (`lookup.go`, `HandleLookup`).
    if bad_token.is_some() {
        return Err(WarpError::invalid_token_find().relay(shared.errors));
    }
    let mut compiled: Vec<(&str, Option<Regex>, &Selector)> = Vec::new();
    for (k, sel) in &selectors {
        let re = match sel {
            // Identifiers only: the alternation is always a valid pattern.
            Selector::Alternatives(p) => Some(
                Regex::new(p, Mode::Full)
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
            ),
            _ => None,
        };
        compiled.push((k, re, sel));
    }
    let mut results: Vec<usize> = Vec::new();
    for (i, s) in shared.pcc.series().iter().enumerate() {
        if !all_metrics && s.metric != metric {
            continue;
        }
        let mut ok = true;
        for (k, re, sel) in &compiled {
            let hit = match (s.tags.get(*k), sel) {
                (None, _) => false,
                (Some(_), Selector::Any) => true,
                (Some(v), Selector::Exact(e)) => v == e,
                (Some(v), Selector::Alternatives(_)) => {
                    re.as_ref().map(|re| re.is_match(v)).unwrap_or(false)
                }
            };
            if !hit {
                ok = false;
                break;
            }
        }
        if ok {
            results.push(i);
        }
    }
    let series = shared.pcc.series();
    results.sort_by(|a, b| series[*a].cmp(&series[*b]));
    let mut out = String::with_capacity(256 + 200 * results.len());
    out.push_str("{\"type\":\"LOOKUP\",\"limit\":25,\"startIndex\":0,\"metric\":");
    push_str(&mut out, &metric);
    out.push_str(",\"tags\":");
    match &req.tags {
        Some(tags) => push_pairs(&mut out, tags),
        None => out.push_str("null"),
    }
    out.push_str(",\"time\":");
    push_int(&mut out, elapsed_since.elapsed().as_micros() as i64);
    out.push_str(",\"totalResults\":");
    push_int(&mut out, results.len() as i64);
    out.push_str(",\"results\":[");
    for (n, i) in results.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let s = &series[*i];
        out.push_str("{\"metric\":");
        push_str(&mut out, &s.metric);
        out.push_str(",\"tsuid\":0,\"tags\":");
        push_map(&mut out, &s.tags);
        out.push('}');
    }
    out.push_str("]}\n");
    Ok(out)
}

fn push_pairs(out: &mut String, pairs: &[(String, String)]) {
    out.push('[');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        push_str(out, k);
        out.push_str(",\"value\":");
        push_str(out, v);
        out.push('}');
    }
    out.push(']');
}

fn push_map(out: &mut String, map: &BTreeMap<String, String>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, k);
        out.push(':');
        push_str(out, v);
    }
    out.push('}');
}

fn push_names<'a>(out: &mut String, names: impl IntoIterator<Item = &'a str>) {
    out.push('[');
    for (i, n) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, n);
    }
    out.push(']');
}

/// `GET|POST /api/suggest` (`type`, `q`, `max`).
pub(crate) fn suggest(
    shared: &Shared,
    method_is_get: bool,
    query: &[(String, String)],
    body: &[u8],
    bad_token: Option<&str>,
) -> Result<String, ApiError> {
    let ovh = shared.dialect == Dialect::Ovh;
    let (kind, q, max) = if method_is_get {
        if ovh {
            // gorilla/schema refuses unknown keys, and the error goes out as an empty 400.
            if query
                .iter()
                .any(|(k, _)| !matches!(k.as_str(), "type" | "q" | "max"))
            {
                return Err(ApiError::raw(StatusCode::BAD_REQUEST, "text/plain", ""));
            }
        }
        let max = match first(query, "max") {
            None | Some("") => None,
            Some(m) => Some(m.trim().parse::<i64>().map_err(|_| {
                if ovh {
                    ApiError::raw(StatusCode::BAD_REQUEST, "text/plain", "")
                } else {
                    ApiError::bad_request("Unable to parse 'max' as a number")
                }
            })?),
        };
        (
            first(query, "type").map(str::to_owned),
            first(query, "q").unwrap_or("").to_owned(),
            max,
        )
    } else {
        let parsed: Result<(Option<String>, String, Option<i64>), String> = (|| {
            let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            let Value::Object(map) = value else {
                return Err("the body must be a JSON object".to_owned());
            };
            let text = |k: &str| match map.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(format!("'{k}' must be a string, got {v}")),
            };
            let max = match map.get("max") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
                Some(Value::String(s)) if !ovh => Some(
                    s.parse()
                        .map_err(|_| "Unable to parse 'max' as a number".to_owned())?,
                ),
                Some(v) => return Err(format!("'max' must be an integer, got {v}")),
            };
            Ok((text("type")?, text("q")?.unwrap_or_default(), max))
        })();
        parsed.map_err(|e| {
            if ovh {
                ApiError::bad_request(format!("can't parse query: {e}"))
            } else {
                ApiError::bad_request("Unable to parse the given JSON").with_details(e)
            }
        })?
    };
    let index = &shared.index;
    let names: Box<dyn Iterator<Item = &str>> = match kind.as_deref() {
        Some("metrics") => Box::new(index.metrics.keys().map(String::as_str)),
        Some("tagk") => Box::new(index.tagks.keys().map(String::as_str)),
        Some("tagv") => Box::new(index.tagvs.keys().map(String::as_str)),
        other if ovh => {
            let _ = other;
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Invalid type value (must be 'metrics', 'tagk' or 'tagv')",
            ));
        }
        None => return Err(ApiError::bad_request("Missing 'type' parameter")),
        Some(t) => {
            return Err(ApiError::bad_request(format!(
                "Invalid 'type' parameter:{t}"
            )));
        }
    };
    let max = match max {
        None | Some(0) if ovh => DEFAULT_LIMIT,
        None => DEFAULT_LIMIT,
        Some(m) if m < 0 && ovh => {
            // A negative max makes Go slice out of bounds; echo's Recover answers this.
            return Err(ApiError::raw(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/json; charset=UTF-8",
                "{\"message\":\"Internal Server Error\"}\n",
            ));
        }
        Some(m) => usize::try_from(m).unwrap_or(0),
    };
    // Suggest calls Warp's `/api/v0/find`, not a script (`suggest.go`, `core.FindGTS`): the
    // refusal is that endpoint's `403 Missing or invalid token.` (`EgressFindHandler`), whose
    // error page Erlenmeyer returns as the text of a 500, untouched by the `errors` mode. The
    // simulator sends the reason without Jetty's HTML around it.
    if bad_token.is_some() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Missing or invalid token.",
        ));
    }
    let substring = ovh && kind.as_deref() == Some("metrics");
    let picked: Vec<&str> = names
        .filter(|n| {
            if substring {
                n.contains(q.as_str())
            } else {
                n.starts_with(q.as_str())
            }
        })
        .take(max)
        .collect();
    let mut out = String::new();
    push_names(&mut out, picked);
    if ovh {
        out.push('\n');
    }
    Ok(out)
}

/// `/api/aggregators`: the names each server accepts (sorted; Erlenmeyer's order is random).
pub(crate) fn aggregators(dialect: Dialect) -> String {
    let mut out = String::new();
    match dialect {
        Dialect::Opentsdb => push_names(&mut out, OPENTSDB_AGGREGATORS.iter().copied()),
        Dialect::Ovh => {
            let names: BTreeSet<&str> = OVH_AGGREGATORS
                .iter()
                .chain(OVH_DOWNSAMPLERS)
                .copied()
                .collect();
            push_names(&mut out, names);
            out.push('\n');
        }
    }
    out
}

/// `/api/version` of the `opentsdb` dialect.
pub(crate) fn version() -> String {
    let map: BTreeMap<&str, &str> = [
        ("version", "2.4.1"),
        ("short_revision", "vscope-sim"),
        ("full_revision", "vscope-etl-simulator"),
        ("timestamp", "0"),
        ("host", "127.0.0.1"),
        ("repo", "vscope-etl/src/sim"),
        ("user", "vscope-etl"),
        ("repo_status", "MODIFIED"),
    ]
    .into_iter()
    .collect();
    let mut out = String::from("{");
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, k);
        out.push(':');
        push_str(&mut out, v);
    }
    out.push('}');
    out
}

/// `/api/config/filters`: every OpenTSDB filter type, or the three Erlenmeyer applies.
pub(crate) fn config_filters(dialect: Dialect) -> String {
    let all: &[(&str, &str)] = &[
        ("iliteral_or", "Case-insensitive literal_or."),
        ("iwildcard", "Case-insensitive wildcard."),
        (
            "literal_or",
            "Accepts one or more exact values separated by |; case sensitive.",
        ),
        ("not_iliteral_or", "Case-insensitive not_literal_or."),
        (
            "not_key",
            "Skips any time series with the given tag key; the filter must be empty.",
        ),
        (
            "not_literal_or",
            "Matches series that do NOT have any of the given values.",
        ),
        (
            "regexp",
            "Java-style regular expression (the simulator supports a documented subset).",
        ),
        (
            "wildcard",
            "Glob on '*'; case sensitive; at least one '*' is required.",
        ),
    ];
    let mut out = String::from("{");
    let mut n = 0;
    for (name, description) in all {
        if dialect == Dialect::Ovh && !matches!(*name, "literal_or" | "regexp" | "wildcard") {
            continue;
        }
        if n > 0 {
            out.push(',');
        }
        n += 1;
        push_str(&mut out, name);
        out.push_str(":{\"examples\":");
        push_str(&mut out, &format!("host={name}(web01)"));
        out.push_str(",\"description\":");
        push_str(&mut out, description);
        out.push('}');
    }
    out.push('}');
    if dialect == Dialect::Ovh {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_and_tags_split() {
        assert_eq!(
            split_metric_tags("m{a=b,c=*}"),
            Some((
                "m".to_owned(),
                vec![("a".into(), "b".into()), ("c".into(), "*".into())]
            ))
        );
        assert_eq!(split_metric_tags("m"), Some(("m".to_owned(), vec![])));
        assert_eq!(split_metric_tags("m{a}"), None);
        assert_eq!(split_metric_tags("m{a=b"), None);
        assert!(is_identifier("172.17.86.51"));
        assert!(is_identifier("pcc-37-187-228-180_datacenter869"));
        assert!(!is_identifier("a b"));
        assert!(!is_identifier("*"));
    }
}
