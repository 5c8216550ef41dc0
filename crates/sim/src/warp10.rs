//! Warp 10's own HTTP API, the subset a client of vScope's `warpEndpoint` uses: `/api/v0/fetch`
//! (raw points, GTS text format) and `/api/v0/find` (series metadata), served from the same
//! synthetic PCC as `/api/query`, under `/api/v0/...` and under the `/warp10` prefix of the
//! `warpEndpoint` the simulator's API v6 hands out (`apiv6.rs`).
//!
//! Everything here follows the public senx/warp10-platform sources, release 2.9.0 (a 2.x, as
//! OVH runs, `warp.rs`); a deviation is said with a 400, never faked.
//!
//! # `/api/v0/fetch` (`EgressFetchHandler.handle`)
//! - The token: the `X-Warp10-Token` header, else the `token` parameter. `Tokens.extractReadToken`
//!   refuses an unknown one with `WarpScriptException("Invalid token.")`, which the handler
//!   turns into `403` (`httpStatusCode = SC_FORBIDDEN`) and `resp.sendError(403, message)`.
//! - The range: `now` (µs) and `timespan` (µs) go through `FETCH.computeTimeRange`, where
//!   `startTs = endTs - timespan + 1`: the points with `now - timespan < ts <= now` are kept,
//!   the same `(start, end]` as OVH's OpenTSDB path. The simulator takes integer `now` and
//!   `timespan` only (ISO dates, `start`/`end`, `count` are refused with a 400 that says so).
//! - The selector: `class{labels}` (`SELECTOR_RE = ^([^{]+)\{(.*)\}$`), the class and each
//!   label value percent-decoded (`WarpURLDecoder`), `~` before a value for a regular
//!   expression matched whole (`Pattern.matcher().matches()` in the directory), `=` for an
//!   exact value (`GTSHelper.parseLabelsSelectors`).
//! - `format=text` (the default, `textDump`): a series' first point is
//!   `TS/LAT:LON/ELEV class{labels} VALUE`, each next point `=TS/LAT:LON/ELEV VALUE`; no
//!   location or elevation here, so `TS// VALUE`. Names are percent-encoded
//!   (`GTSHelper.encodeName`), values written by `GTSHelper.encodeValue`: a `Long` as an
//!   integer, a `Double` by Java's `Double.toString` (`4.38`, `1.2345678E7`, `NaN`). Series with
//!   no point in range print nothing. Other formats are refused with a 400.
//! - No fetch limit: unlike WarpScript's `FETCH` (`warpscript.maxfetch`, the `exceeded limit`
//!   error of `warp.rs`), the fetch endpoint streams whatever the range holds. Answers are
//!   bounded by the client (`source.max_answer_size`).
//! - Errors after the first bytes: the answer is committed, so `sendError` is skipped and the
//!   body simply ends; with `showerrors` set, a last line `# ERROR: <url-encoded stack>`
//!   (`Constants.EGRESS_FETCH_ERROR_PREFIX`) says so. The fault plan's `cut` covers a
//!   connection lost mid-body.
//!
//! # `/api/v0/find` (`EgressFindHandler.handle`)
//! The `selector` as for fetch, the token from the `token` parameter, else the header
//! (`403 Missing token.`, `403 Missing or invalid token.`); one line per series,
//! `class{labels}{attributes}` (`showattr` defaults to true; no attribute is `{}`).
//!
//! # Error pages
//! Warp 10 2.9.0 sets no error handler of its own (no class extends Jetty's `ErrorHandler`), so
//! `sendError(status, reason)` gives Jetty's default HTML page, with the reason in the title and
//! in a `<pre>`: [`jetty_error`](super::error::jetty_error). The reason never quotes the token.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::jetty_error;
use super::format::push_java_double;
use super::regex::{Mode, Regex};
use super::state::Shared;

/// The header Warp 10 reads the token from (`Constants.HTTP_HEADER_TOKEN_DEFAULT`).
pub const TOKEN_HEADER: &str = "X-Warp10-Token";

/// The first characters of the line that says a fetch failed after its answer was committed,
/// when the request set `showerrors` (`Constants.EGRESS_FETCH_ERROR_PREFIX`).
pub const FETCH_ERROR_PREFIX: &str = "# ERROR: ";

/// One side of a selector: an exact value or a regular expression matched whole.
#[derive(Debug)]
pub(crate) enum Matcher {
    Exact(String),
    Re(Regex),
}

impl Matcher {
    /// `~re` or a literal, percent-decoded first (`WarpURLDecoder`).
    fn parse(raw: &str) -> Result<Matcher, String> {
        let text = percent_decode(raw)?;
        match text.strip_prefix('~') {
            Some(re) => Regex::new(re, Mode::Full)
                .map(Matcher::Re)
                .map_err(|e| format!("bad regular expression '{re}': {e}")),
            None => Ok(Matcher::Exact(text)),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == value,
            Matcher::Re(re) => re.is_match(value),
        }
    }
}

/// A parsed `class{label=value,label~re}` selector.
#[derive(Debug)]
pub(crate) struct Selector {
    pub(crate) class: Matcher,
    pub(crate) labels: Vec<(String, Matcher)>,
}

impl Selector {
    /// Parses one selector as `EgressFetchHandler` and `GTSHelper.parseLabelsSelectors` do.
    /// Several space-separated selectors are refused (the simulator serves one).
    pub(crate) fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        if text.split_whitespace().count() != 1 {
            return Err("the simulator serves a single selector per request".into());
        }
        let open = text
            .find('{')
            .filter(|&i| i > 0 && text.ends_with('}'))
            .ok_or_else(|| format!("selector '{text}' is not class{{labels}}"))?;
        let class = Matcher::parse(&text[..open])?;
        let inner = &text[open + 1..text.len() - 1];
        let mut labels = Vec::new();
        for part in inner.split(',').filter(|p| !p.is_empty()) {
            let at = part
                .find(['=', '~'])
                .ok_or_else(|| format!("label selector '{part}' has no '=' or '~'"))?;
            let name = percent_decode(&part[..at])?;
            // `k~re` keeps the `~` with the value: that is what makes it a regex.
            let value = if part.as_bytes()[at] == b'~' {
                &part[at..]
            } else {
                &part[at + 1..]
            };
            labels.push((name, Matcher::parse(value)?));
        }
        Ok(Selector { class, labels })
    }

    /// Indexes of the PCC's series the selector matches, in the PCC's order.
    pub(crate) fn matching(&self, shared: &Shared) -> Vec<usize> {
        let pcc = &shared.pcc;
        let ranges: Vec<std::ops::Range<usize>> = match &self.class {
            Matcher::Exact(c) => pcc.metric_series(c).into_iter().collect(),
            Matcher::Re(_) => pcc
                .metric_names()
                .filter(|m| self.class.matches(m))
                .filter_map(|m| pcc.metric_series(m))
                .collect(),
        };
        let mut out: Vec<usize> = ranges
            .into_iter()
            .flatten()
            .filter(|&i| {
                let tags = &pcc.series()[i].tags;
                self.labels
                    .iter()
                    .all(|(k, m)| tags.get(k).is_some_and(|v| m.matches(v)))
            })
            .collect();
        out.sort_unstable();
        out
    }
}

/// `%XX` sequences decoded as UTF-8 bytes; `+` stays `+` (`WarpURLDecoder`, unlike
/// `java.net.URLDecoder`, keeps it).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' does not decode to UTF-8"))
}

/// Appends `name` as `GTSHelper.encodeName` writes it (`WarpURLEncoder`: `URLEncoder` with a
/// space as `%20`): ASCII letters, digits and `.-*_` as they are, every other byte `%XX`.
fn encode_name(out: &mut String, name: &str) {
    for &c in name.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'*' | b'_') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
}

/// Appends `class{k=v,...}` of series `index`.
fn push_class_labels(out: &mut String, shared: &Shared, index: usize) {
    let s = &shared.pcc.series()[index];
    encode_name(out, &s.metric);
    out.push('{');
    for (n, (k, v)) in s.tags.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        encode_name(out, k);
        out.push('=');
        encode_name(out, v);
    }
    out.push('}');
}

/// The query string as decoded pairs.
pub(crate) fn params(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Checks the token as `Tokens.extractReadToken` would: `None` when accepted, else the reason
/// of the 403. With no token configured, any token (or none) is accepted.
fn refused(shared: &Shared, sent: Option<&str>, unknown: &'static str) -> Option<&'static str> {
    let expected = shared.token.as_deref()?;
    match sent {
        None => Some("Missing token."),
        Some(t) if t == expected => None,
        Some(_) => Some(unknown),
    }
}

/// `GET`/`POST /api/v0/fetch`: the points of the selected series in `(now - timespan, now]`.
pub(crate) async fn fetch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let path = uri.path().to_owned();
    let q = params(raw);
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| param(&q, "token"));
    let bad = |reason: &str| jetty_error(StatusCode::BAD_REQUEST, &path, reason);
    if param(&q, "start").is_some() || param(&q, "end").is_some() || param(&q, "stop").is_some() {
        return bad("the simulator implements now and timespan (microseconds) only");
    }
    let (Some(now), Some(span)) = (param(&q, "now"), param(&q, "timespan")) else {
        return bad("Missing now/timespan or start/stop parameters.");
    };
    let (Ok(now), Ok(span)) = (now.parse::<i64>(), span.parse::<i64>()) else {
        return bad("the simulator takes integer now and timespan (microseconds) only");
    };
    if span < 0 {
        return bad("the simulator does not implement a negative timespan (a count)");
    }
    if let Some(f) = param(&q, "format").filter(|f| *f != "text") {
        return bad(&format!(
            "the simulator implements format=text only, not '{f}'"
        ));
    }
    if let Some(reason) = refused(&shared, token, "Invalid token.") {
        return jetty_error(StatusCode::FORBIDDEN, &path, reason);
    }
    let Some(selector) = param(&q, "selector") else {
        return bad("Missing 'selector' parameter.");
    };
    let selector = match Selector::parse(selector) {
        Ok(s) => s,
        Err(e) => return bad(&e),
    };
    // `startTs = now - timespan + 1` (µs), as whole milliseconds: the stored points are on
    // whole seconds, so the first kept millisecond is the ceiling.
    let first_us = now.saturating_sub(span).saturating_add(1);
    let first_ms = first_us.div_euclid(1000) + i64::from(first_us.rem_euclid(1000) != 0);
    let last_ms = now.div_euclid(1000);
    let series = selector.matching(&shared);
    let answer = TextAnswer {
        shared: Arc::clone(&shared),
        series,
        next: 0,
        first_ms,
        last_ms,
        points: Vec::new(),
    };
    let mut resp = (
        StatusCode::OK,
        Body::from_stream(futures::stream::iter(answer)),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=utf-8"),
    );
    resp
}

/// The text answer of a fetch, one chunk per series with points, generated as it is sent.
struct TextAnswer {
    shared: Arc<Shared>,
    series: Vec<usize>,
    next: usize,
    first_ms: i64,
    last_ms: i64,
    points: Vec<(i64, f64)>,
}

impl Iterator for TextAnswer {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(&index) = self.series.get(self.next) {
            self.next += 1;
            self.points.clear();
            let pcc = &self.shared.pcc;
            if self.first_ms <= self.last_ms {
                pcc.points_into(index, self.first_ms, self.last_ms, &mut self.points);
            }
            if self.points.is_empty() {
                continue;
            }
            let integer = pcc.is_integer(index);
            let mut out = String::with_capacity(self.points.len() * 24 + 256);
            for (n, &(ts_ms, v)) in self.points.iter().enumerate() {
                if n > 0 {
                    out.push('=');
                }
                // `write!` into the buffer: no allocation per point (the answer of a day holds
                // millions).
                let _ = write!(out, "{}// ", ts_ms * 1000);
                if n == 0 {
                    push_class_labels(&mut out, &self.shared, index);
                    out.push(' ');
                }
                if integer {
                    let _ = write!(out, "{}", v as i64);
                } else if v.is_nan() {
                    out.push_str("NaN");
                } else {
                    push_java_double(&mut out, v);
                }
                out.push('\n');
            }
            let counters = &self.shared.counters;
            counters.series.fetch_add(1, Ordering::Relaxed);
            counters
                .points
                .fetch_add(self.points.len() as u64, Ordering::Relaxed);
            return Some(Ok(bytes::Bytes::from(out)));
        }
        None
    }
}

/// `GET`/`POST /api/v0/find`: one `class{labels}{}` line per series the selector matches.
pub(crate) async fn find(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let path = uri.path().to_owned();
    let q = params(raw);
    let token =
        param(&q, "token").or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()));
    if let Some(reason) = refused(&shared, token, "Missing or invalid token.") {
        return jetty_error(StatusCode::FORBIDDEN, &path, reason);
    }
    if let Some(f) = param(&q, "format").filter(|f| *f != "text") {
        let reason = format!("the simulator implements format=text only, not '{f}'");
        return jetty_error(StatusCode::BAD_REQUEST, &path, &reason);
    }
    let selector = match param(&q, "selector").map(Selector::parse) {
        Some(Ok(s)) => s,
        Some(Err(e)) => return jetty_error(StatusCode::BAD_REQUEST, &path, &e),
        None => return jetty_error(StatusCode::BAD_REQUEST, &path, "Missing selector."),
    };
    let mut out = String::new();
    for index in selector.matching(&shared) {
        push_class_labels(&mut out, &shared, index);
        out.push_str("{}\n");
    }
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_like_warp() {
        let s = Selector::parse("vscope.vm.cpu{datacenter=dc%2D1,vm~vm-0.*}").unwrap();
        assert!(matches!(&s.class, Matcher::Exact(c) if c == "vscope.vm.cpu"));
        assert_eq!(s.labels.len(), 2);
        assert!(s.labels[0].1.matches("dc-1"));
        assert!(!s.labels[0].1.matches("dc-10"));
        assert!(s.labels[1].1.matches("vm-012"));
        assert!(!s.labels[1].1.matches("xvm-012"), "matched whole");
        assert!(Selector::parse("~vscope\\.vm\\..*{}").is_ok());
        assert!(Selector::parse("{a=b}").is_err());
        assert!(Selector::parse("m{a}").is_err());
        assert!(Selector::parse("m{} n{}").is_err());
        assert!(Selector::parse("m{a=%ZZ}").is_err());
    }

    #[test]
    fn names_are_encoded_like_warp_url_encoder() {
        let mut out = String::new();
        encode_name(&mut out, "a b,c{d}=é.-_*");
        assert_eq!(out, "a%20b%2Cc%7Bd%7D%3D%C3%A9.-_*");
        assert_eq!(percent_decode(&out).unwrap(), "a b,c{d}=é.-_*");
        assert_eq!(percent_decode("a+b").unwrap(), "a+b");
    }
}
