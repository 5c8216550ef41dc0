//! JSON decoding of `/api/query` bodies: lenient like Jackson (`opentsdb`) or strict like Go
//! (`ovh`), and OpenTSDB's `m=` query-string form.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{RateOptions, RawFilter, RawRequest, RawSub};
use crate::error::ApiError;
use crate::ovh_time;

/// How strictly JSON types are checked: Jackson coerces, Go refuses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Strictness {
    Lenient,
    Strict,
}

/// A JSON object with Go's (case-insensitive fallback) or Jackson's (exact) key lookup.
pub(super) struct Obj<'a> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) mode: Strictness,
}

impl<'a> Obj<'a> {
    /// The value of `key`, `None` when absent or `null` (both dialects treat them alike).
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
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

    pub(super) fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) if self.mode == Strictness::Lenient => {
                Ok(Some(v.to_string()))
            }
            Some(v) => Err(format!("'{key}' must be a string, got {v}")),
        }
    }

    pub(super) fn boolean(&self, key: &str) -> Result<bool, String> {
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

    pub(super) fn integer(&self, key: &str) -> Result<Option<i64>, String> {
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
    pub(super) fn time(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) if self.mode == Strictness::Lenient => Ok(Some(b.to_string())),
            Some(v) => Err(format!("'{key}' must be a string or a number, got {v}")),
        }
    }

    pub(super) fn object(&self, key: &str) -> Result<Option<Obj<'a>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                mode: self.mode,
            })),
            Some(v) => Err(format!("'{key}' must be an object, got {v}")),
        }
    }

    pub(super) fn array(&self, key: &str) -> Result<&'a [Value], String> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(v) => Err(format!("'{key}' must be an array, got {v}")),
        }
    }
}

pub(super) fn parse_lenient(body: &[u8]) -> Result<RawRequest, ApiError> {
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

pub(super) fn parse_strict(body: &[u8]) -> Result<RawRequest, ApiError> {
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

pub(super) fn decode(obj: &Obj<'_>) -> Result<RawRequest, String> {
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

pub(super) fn decode_sub(obj: &Obj<'_>) -> Result<RawSub, String> {
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
pub(super) fn parse_m(m: &str) -> Result<RawSub, ApiError> {
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
pub(super) fn split_top_level(s: &str) -> Vec<&str> {
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
