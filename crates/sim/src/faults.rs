//! Deterministic fault injection on `/api/query`: the failures a scheduled job meets in the
//! wild (`reference/reliability.md` §c), reproduced on demand so that every retry, split and
//! abort path of the client can be tested against a real HTTP server.
//!
//! A fault plan is a list of rules written `KIND[:ARG][@WHEN]` (the `vscope-etl sim --fault`
//! flag, or `faults = [...]` in a pipeline's `[source.sim]`):
//!
//! | KIND | What the client receives |
//! |---|---|
//! | `429[:S]` | `429 Too Many Requests` with `Retry-After: S` (seconds); `429:date+S` / `429:date-S` sends an HTTP-date S seconds ahead / in the past; `429:garbage` an unparseable value; `429` alone no header |
//! | `500`, `502`, `503`, `504` | that status: a 500 is the dialect's own error (OpenTSDB's JSON, or Warp 10's storage timeout as Erlenmeyer relays it: Warp's text, or the opaque `invalid character 'E' ...` with `errors = head`), 502/503/504 the HTML page of a proxy |
//! | `cut` | the real answer's first half with a `Content-Length` of the whole, then the connection closes |
//! | `empty` | `200` with an empty body (Erlenmeyer writes the status before encoding) |
//! | `html` | `200` with an HTML page (a proxy's error page served as success) |
//! | `stall:DUR` | the real answer's first half, a pause of DUR (e.g. `30s`), then the rest |
//! | `fetch-limit[:DUR]` | the dialect's too-large answer for every range longer than DUR (default: every range), whatever the points: `413` for `opentsdb`, Warp's `500 ... FETCHDOUBLE exceeded limit of N datapoints, current count is N+1` (or the opaque text) for `ovh`, N being `max_fetch_points` |
//! | `400` | a permanent refusal: OpenTSDB's `No such name for 'metrics'` (JSON), Erlenmeyer's `Invalid query` (text) |
//! | `no-data` | `200 []`, what Erlenmeyer answers for a metric that does not exist |
//! | `401`, `403` | the dialect's refusal (`Not authorized`) |
//! | `bad-token` | Warp 10's invalid-token `500` (`ovh`: `... (AUTHENTICATE given an invalid read token. (Invalid token.))`, or the opaque text); a `401` on `opentsdb` |
//! | `transient` | one of 429 (`Retry-After: 1`), 500, 502, 503, 504, `cut`, `empty`, `html`, picked from the seed |
//!
//! WHEN is `first=N` (the first N query requests), `requests=A-B` (query requests A to B; a
//! run's first query is its token check, so `requests=2` is its first data request), `every=N` (requests N, 2N, 3N...),
//! `rate=P` (a fraction P of requests) or `always` (the default). `transient=P` is short for
//! `transient@rate=P`.
//!
//! Determinism: `first`/`every` count query requests in arrival order. `rate` does not depend
//! on the order at all: attempt k of a given request body fails when a hash of (seed, body, k,
//! rule position) falls below P, so a concurrent client sees the same faults for the same
//! requests on every run, and a retried request eventually passes.
//!
//! Rules are tried in order; the first one whose WHEN matches decides. Each `rate` rule draws
//! independently: `429:1@rate=0.15` then `503@rate=0.2` give 429 to 15 % of requests and 503
//! to 20 % of the rest (17 % of all).
//!
//! Faults apply to `/api/query` and to Warp 10's `/api/v0/fetch` only: discovery (lookup,
//! find), dialect detection and API v6 stay healthy, so a test isolates the extraction path.
//! On `/api/v0/fetch` the faults that differ between servers answer as Warp 10 does
//! (`warp10_answer`: Jetty error pages, `403 Invalid token.` for `bad-token`); `fetch-limit`
//! there stands for a limit in front of Warp, whose fetch endpoint has none of its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::ApiError;
use super::fetch_limit::too_large;
use super::model::mix;
use super::warp::{ErrorMode, WarpError};
use vscope_core::dialect::Dialect;
use vscope_core::hash::stable_hash;

/// Largest request body read for fault decisions (query bodies are a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The value a `429` carries in `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// No header.
    None,
    /// Delay-seconds.
    Seconds(u64),
    /// An HTTP-date this many seconds from now (negative: in the past).
    Date(i64),
    /// A value that is neither (clients must fall back to their own backoff).
    Garbage,
}

/// One kind of failure (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `429 Too Many Requests`.
    TooMany(RetryAfter),
    /// A 5xx status.
    Status(u16),
    /// Half the real body, then the connection closes.
    CutBody,
    /// `200` with no body.
    EmptyOk,
    /// `200` with an HTML page.
    HtmlOk,
    /// Half the real body, a pause of this many ms, then the rest.
    Stall(u64),
    /// The dialect's too-large answer for ranges longer than this many ms.
    FetchLimit(i64),
    /// A permanent `400`.
    BadRequest,
    /// `200 []`.
    NoData,
    /// `401 Not authorized`.
    Unauthorized,
    /// `403`.
    Forbidden,
    /// Warp 10's invalid-token `500` (`ovh`), a `401` on `opentsdb`.
    BadToken,
    /// A transient fault picked from the seed.
    Transient,
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every query request.
    Always,
    /// The first N query requests.
    First(u64),
    /// Query requests A to B (1-based, inclusive): `requests=2-3`, or `requests=2` for one.
    /// A run's first query is its token check; `requests=2` is its first data request.
    Requests(u64, u64),
    /// Query requests N, 2N, 3N, ... (1-based).
    Every(u64),
    /// This many requests per million, decided per (request body, attempt).
    Rate(u32),
}

/// A fault and when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRule {
    /// What goes wrong.
    pub fault: Fault,
    /// On which requests.
    pub when: When,
}

/// Why a fault rule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault '{spec}': {message}")]
pub struct FaultParseError {
    spec: String,
    message: String,
}

impl std::str::FromStr for FaultRule {
    type Err = FaultParseError;

    /// Parses `KIND[:ARG][@WHEN]` or `transient=P` (module docs).
    fn from_str(spec: &str) -> Result<FaultRule, FaultParseError> {
        let err = |m: &str| FaultParseError {
            spec: spec.to_string(),
            message: m.to_string(),
        };
        let text = spec.trim();
        if let Some(p) = text.strip_prefix("transient=") {
            return Ok(FaultRule {
                fault: Fault::Transient,
                when: When::Rate(parse_rate(p).map_err(|m| err(&m))?),
            });
        }
        let (kind, when) = match text.split_once('@') {
            Some((k, w)) => (k, parse_when(w).map_err(|m| err(&m))?),
            None => (text, When::Always),
        };
        let (name, arg) = match kind.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (kind, None),
        };
        let no_arg = |f: Fault| match arg {
            None => Ok(f),
            Some(_) => Err(err(&format!("'{name}' takes no argument"))),
        };
        let fault = match name {
            "429" => Fault::TooMany(match arg {
                None => RetryAfter::None,
                Some("garbage") => RetryAfter::Garbage,
                Some(a) => match a.strip_prefix("date") {
                    Some(off) => RetryAfter::Date(
                        off.parse::<i64>()
                            .map_err(|_| err("write 429:date+S or 429:date-S"))?,
                    ),
                    None => RetryAfter::Seconds(
                        a.parse::<u64>()
                            .map_err(|_| err("429 takes seconds, date+S, date-S or garbage"))?,
                    ),
                },
            }),
            "500" | "502" | "503" | "504" => {
                no_arg(Fault::Status(name.parse().expect("matched digits")))?
            }
            "cut" => no_arg(Fault::CutBody)?,
            "empty" => no_arg(Fault::EmptyOk)?,
            "html" => no_arg(Fault::HtmlOk)?,
            "stall" => Fault::Stall(
                parse_ms(arg.ok_or_else(|| err("write stall:DURATION, e.g. stall:30s"))?)
                    .map_err(|m| err(&m))? as u64,
            ),
            "fetch-limit" => Fault::FetchLimit(match arg {
                None => 0,
                Some(a) => parse_ms(a).map_err(|m| err(&m))?,
            }),
            "400" => no_arg(Fault::BadRequest)?,
            "no-data" => no_arg(Fault::NoData)?,
            "401" => no_arg(Fault::Unauthorized)?,
            "403" => no_arg(Fault::Forbidden)?,
            "bad-token" => no_arg(Fault::BadToken)?,
            "transient" => no_arg(Fault::Transient)?,
            _ => {
                return Err(err(
                    "unknown kind; use 429, 500, 502, 503, 504, cut, empty, html, stall, \
                     fetch-limit, 400, no-data, 401, 403, bad-token or transient",
                ));
            }
        };
        Ok(FaultRule { fault, when })
    }
}

fn parse_when(w: &str) -> Result<When, String> {
    if w == "always" {
        return Ok(When::Always);
    }
    let (k, v) = w
        .split_once('=')
        .ok_or("WHEN is first=N, requests=A-B, every=N, rate=P or always")?;
    let count = || {
        v.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("'{v}' is not a positive count"))
    };
    match k {
        "first" => Ok(When::First(count()?)),
        "requests" => {
            let (a, b) = v.split_once('-').unwrap_or((v, v));
            let n = |x: &str| x.parse::<u64>().ok().filter(|n| *n > 0);
            match (n(a), n(b)) {
                (Some(a), Some(b)) if a <= b => Ok(When::Requests(a, b)),
                _ => Err(format!(
                    "'{v}' is not a range of requests A-B with 1 <= A <= B"
                )),
            }
        }
        "every" => Ok(When::Every(count()?)),
        "rate" => Ok(When::Rate(parse_rate(v)?)),
        _ => Err("WHEN is first=N, requests=A-B, every=N, rate=P or always".into()),
    }
}

/// A fraction in [0, 1] as parts per million.
fn parse_rate(p: &str) -> Result<u32, String> {
    match p.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok((f * 1e6).round() as u32),
        _ => Err(format!("'{p}' is not a fraction within 0..=1")),
    }
}

fn parse_ms(d: &str) -> Result<i64, String> {
    vscope_core::semantics::time::parse_duration(d).map_err(|e| e.to_string())
}

/// How the server answers, for the faults that imitate its own errors, and where injected
/// faults are counted.
pub(crate) struct Answering<'a> {
    /// The request is Warp 10's `/api/v0/fetch`: the faults that differ between servers
    /// answer as Warp 10 does there ([`warp10_answer`]).
    pub(crate) warp: bool,
    /// The server's dialect.
    pub(crate) dialect: Dialect,
    /// How Erlenmeyer relays Warp 10's errors (`ovh`).
    pub(crate) errors: ErrorMode,
    /// The server's datapoint limit, for the `fetch-limit` fault.
    pub(crate) max_fetch_points: u64,
    /// The server's `faults` counter.
    pub(crate) injected: &'a AtomicU64,
}

/// The range of a Warp 10 fetch in milliseconds: its `timespan` parameter (µs).
fn warp_timespan_ms(query: Option<&str>) -> Option<i64> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "timespan")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .map(|us| us / 1000)
}

/// The faults whose answer is the server's own, as Warp 10's `/api/v0/fetch` gives them
/// (`warp10.rs`): Jetty error pages for the statuses and the refused token (`403 Invalid
/// token.`), `200` with an empty body for `no-data` (a fetch that selects nothing). `fetch-limit`
/// answers what WarpScript's `FETCH` says over `warpscript.maxfetch` (`FETCH.java`: `exceeded
/// limit of N datapoints`), in the `X-Warp10-Error-Message` header and the page: the fetch
/// endpoint itself has no such limit in the public sources, so this stands for a limit a
/// deployment puts in front of it. `None`: the fault is the same for every server (429, 502 to
/// 504 proxy pages, cut, stall, empty, HTML).
fn warp10_answer(fault: Fault, max_fetch_points: u64, path: &str) -> Option<Response> {
    use super::error::jetty_error;
    Some(match fault {
        Fault::Status(500) => jetty_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            path,
            "java.net.SocketTimeoutException: Read timed out",
        ),
        Fault::FetchLimit(_) => {
            let text = format!(
                "FETCH exceeded limit of {max_fetch_points} datapoints, current count is {}",
                max_fetch_points.saturating_add(1)
            );
            let mut resp = jetty_error(StatusCode::INTERNAL_SERVER_ERROR, path, &text);
            if let Ok(v) = HeaderValue::from_str(&text) {
                resp.headers_mut().insert("X-Warp10-Error-Message", v);
            }
            resp
        }
        Fault::BadRequest => jetty_error(StatusCode::BAD_REQUEST, path, "Bad Request"),
        Fault::NoData => (StatusCode::OK, Body::empty()).into_response(),
        Fault::Unauthorized => jetty_error(StatusCode::UNAUTHORIZED, path, "Unauthorized"),
        Fault::Forbidden | Fault::BadToken => {
            jetty_error(StatusCode::FORBIDDEN, path, "Invalid token.")
        }
        _ => return None,
    })
}

/// A fault plan at run time: the rules, the seed and the counters that make `first`/`every`
/// and `rate` work.
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
    seed: u64,
    /// Query requests seen so far.
    requests: AtomicU64,
    /// Attempts seen per request-body hash.
    attempts: Mutex<HashMap<u64, u32>>,
}

impl Faults {
    /// The runtime state of `rules`; `None` when there are none (no overhead then).
    pub(crate) fn new(rules: &[FaultRule], seed: u64) -> Option<Faults> {
        (!rules.is_empty()).then(|| Faults {
            rules: rules.to_vec(),
            seed,
            requests: AtomicU64::new(0),
            attempts: Mutex::new(HashMap::new()),
        })
    }

    /// Decides which fault, if any, request number `n` (0-based) with body hash `body` gets
    /// on its `attempt`-th sending. Each `rate` rule draws on its own (the hash is salted with
    /// the rule's position), so `429@rate=0.15` then `503@rate=0.2` fail 15 % of requests with
    /// 429 and 20 % of the others with 503, not only the 5 % a shared draw leaves above 0.15.
    fn pick(&self, n: u64, body: u64, attempt: u32, range_ms: Option<i64>) -> Option<Fault> {
        let request = mix(self.seed ^ mix(body ^ mix(u64::from(attempt))));
        for (position, rule) in self.rules.iter().enumerate() {
            let draw = mix(request ^ mix(RULE_SALT ^ position as u64));
            let fires = match rule.when {
                When::Always => true,
                When::First(k) => n < k,
                When::Requests(a, b) => (a - 1..b).contains(&n),
                When::Every(k) => (n + 1).is_multiple_of(k),
                When::Rate(ppm) => draw % 1_000_000 < u64::from(ppm),
            };
            if !fires {
                continue;
            }
            return match rule.fault {
                Fault::FetchLimit(span) if range_ms.is_some_and(|r| r <= span) => continue,
                Fault::Transient => Some(TRANSIENT_MIX[(mix(draw) % 8) as usize]),
                f => Some(f),
            };
        }
        None
    }

    /// Runs one request through the plan: either the handler's answer or a fault (counted in
    /// the server's `faults` counter). Warp 10's errors are relayed in the server's `errors`
    /// mode, like the real ones.
    pub(crate) async fn apply(&self, server: Answering<'_>, req: Request, next: Next) -> Response {
        let dialect = server.dialect;
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return ApiError::bad_request("request body too large").into_response(dialect);
            }
        };
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let key = stable_hash(&bytes) ^ stable_hash(parts.uri.query().unwrap_or("").as_bytes());
        let attempt = {
            let mut seen = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let a = seen.entry(key).or_insert(0);
            *a += 1;
            *a
        };
        let range = if server.warp {
            warp_timespan_ms(parts.uri.query())
        } else {
            query_range_ms(&bytes)
        };
        let metric = first_metric(&bytes);
        let req = Request::from_parts(parts, Body::from(bytes));
        let Some(fault) = self.pick(n, key, attempt, range) else {
            return next.run(req).await;
        };
        server.injected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(?fault, request = n, attempt, "simulator: injecting a fault");
        if server.warp
            && let Some(resp) = warp10_answer(fault, server.max_fetch_points, req.uri().path())
        {
            return resp;
        }
        match fault {
            Fault::TooMany(ra) => {
                let mut resp = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests, slow down",
                )
                .into_response(dialect);
                let value = match ra {
                    RetryAfter::None => None,
                    RetryAfter::Seconds(s) => Some(s.to_string()),
                    RetryAfter::Date(off) => Some(
                        (chrono::Utc::now() + chrono::Duration::seconds(off))
                            .format("%a, %d %b %Y %H:%M:%S GMT")
                            .to_string(),
                    ),
                    RetryAfter::Garbage => Some("in a little while".to_string()),
                };
                if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                resp
            }
            Fault::Status(500) => match dialect {
                // What Erlenmeyer relays when Warp 10's storage times out.
                Dialect::Ovh => WarpError::socket_timeout().relay(server.errors),
                Dialect::Opentsdb => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                }
            }
            .into_response(dialect),
            Fault::Status(code) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let reason = status.canonical_reason().unwrap_or("Error");
                ApiError::raw(
                    status,
                    "text/html",
                    format!(
                        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n\
                         <center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
                    ),
                )
                .into_response(dialect)
            }
            Fault::EmptyOk => {
                let mut resp = (StatusCode::OK, Body::empty()).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            Fault::HtmlOk => ApiError::raw(
                StatusCode::OK,
                "text/html",
                "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>\
                 <h1>We'll be back soon</h1></body></html>",
            )
            .into_response(dialect),
            Fault::CutBody => {
                let (head, full) = split_answer(next.run(req).await).await;
                let mut resp = head;
                let len = full.len();
                let half = full.slice(..len / 2);
                // The pause lets hyper flush the head and the first half before the error
                // aborts the connection, so the client sees a body cut short, not no answer.
                let first = futures::stream::iter([Ok::<_, std::io::Error>(half)]);
                let cut = futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulator: body cut",
                    ))
                });
                use futures::StreamExt;
                *resp.body_mut() = Body::from_stream(first.chain(cut));
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                resp
            }
            Fault::Stall(ms) => {
                let (mut resp, full) = split_answer(next.run(req).await).await;
                let len = full.len();
                let (a, b) = (full.slice(..len / 2), full.slice(len / 2..));
                let first = futures::stream::iter([Ok::<_, std::io::Error>(a)]);
                let rest = futures::stream::once(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, std::io::Error>(b)
                });
                use futures::StreamExt;
                *resp.body_mut() = Body::from_stream(first.chain(rest));
                resp
            }
            // The real count is unknown here: one point over the limit.
            Fault::FetchLimit(_) => too_large(
                dialect,
                server.errors,
                server.max_fetch_points,
                server.max_fetch_points.saturating_add(1),
            )
            .into_response(dialect),
            Fault::BadRequest => match dialect {
                Dialect::Opentsdb => {
                    ApiError::bad_request(format!("No such name for 'metrics': '{metric}'"))
                        .with_details(format!("No such name for 'metrics': '{metric}'"))
                }
                Dialect::Ovh => {
                    ApiError::bad_request(format!("Invalid query: unknown metric class '{metric}'"))
                }
            }
            .into_response(dialect),
            Fault::NoData => {
                let mut resp = (StatusCode::OK, Body::from("[]\n")).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            Fault::Unauthorized => {
                ApiError::new(StatusCode::UNAUTHORIZED, "Not authorized").into_response(dialect)
            }
            Fault::Forbidden => {
                ApiError::new(StatusCode::FORBIDDEN, "Forbidden").into_response(dialect)
            }
            Fault::BadToken => match dialect {
                Dialect::Ovh => WarpError::invalid_token().relay(server.errors),
                Dialect::Opentsdb => {
                    ApiError::new(StatusCode::UNAUTHORIZED, "Not authorized: invalid token")
                }
            }
            .into_response(dialect),
            Fault::Transient => unreachable!("resolved by pick"),
        }
    }
}

/// Mixed with a rule's position into its draw, so that no two rules share one.
const RULE_SALT: u64 = 0x7275_6c65_5f64_7261;

/// The faults `transient` draws from: all must be retried by a correct client.
const TRANSIENT_MIX: [Fault; 8] = [
    Fault::TooMany(RetryAfter::Seconds(1)),
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::Status(504),
    Fault::CutBody,
    Fault::EmptyOk,
    Fault::HtmlOk,
];

/// The head of a response and its whole body (the simulator's answers fit in memory).
async fn split_answer(resp: Response) -> (Response, Bytes) {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    (Response::from_parts(parts, Body::empty()), bytes)
}

/// The span of whole seconds a POST query body selects, in ms, when both bounds are numbers
/// (what our client sends); `None` otherwise (then a `fetch-limit` rule with a span does not
/// fire). The start is rounded up to a whole second: a client asking Warp's (start, end] from
/// one millisecond before a second selects the same points as one asking [start, end] from it.
fn query_range_ms(body: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let ms = |x: &serde_json::Value| {
        let n = x.as_i64()?;
        Some(if n < (1 << 32) { n * 1000 } else { n })
    };
    let start = ms(v.get("start")?)?;
    Some(ms(v.get("end")?)? - (start + 999).div_euclid(1000) * 1000)
}

/// The metric of the first sub-query, for error texts that name it.
fn first_metric(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["queries"][0]["metric"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> FaultRule {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_kind_and_trigger() {
        assert_eq!(
            rule("429:7@first=1"),
            FaultRule {
                fault: Fault::TooMany(RetryAfter::Seconds(7)),
                when: When::First(1)
            }
        );
        assert_eq!(
            rule("429:date+7").fault,
            Fault::TooMany(RetryAfter::Date(7))
        );
        assert_eq!(
            rule("429:date-30").fault,
            Fault::TooMany(RetryAfter::Date(-30))
        );
        assert_eq!(
            rule("429:garbage").fault,
            Fault::TooMany(RetryAfter::Garbage)
        );
        assert_eq!(rule("429").fault, Fault::TooMany(RetryAfter::None));
        assert_eq!(rule("503@every=3").when, When::Every(3));
        assert_eq!(rule("502").fault, Fault::Status(502));
        assert_eq!(rule("cut").fault, Fault::CutBody);
        assert_eq!(rule("empty").fault, Fault::EmptyOk);
        assert_eq!(rule("html").fault, Fault::HtmlOk);
        assert_eq!(rule("stall:2s").fault, Fault::Stall(2000));
        assert_eq!(rule("fetch-limit").fault, Fault::FetchLimit(0));
        assert_eq!(rule("fetch-limit:1h").fault, Fault::FetchLimit(3_600_000));
        assert_eq!(rule("400").fault, Fault::BadRequest);
        assert_eq!(rule("no-data@first=3").fault, Fault::NoData);
        assert_eq!(rule("401").fault, Fault::Unauthorized);
        assert_eq!(rule("403").fault, Fault::Forbidden);
        assert_eq!(rule("bad-token@always").fault, Fault::BadToken);
        assert_eq!(
            rule("transient=0.1"),
            FaultRule {
                fault: Fault::Transient,
                when: When::Rate(100_000)
            }
        );
        for bad in [
            "418",
            "429:soon",
            "cut:1",
            "stall",
            "503@first=0",
            "503@sometimes",
            "transient=2",
        ] {
            assert!(bad.parse::<FaultRule>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn first_and_every_count_requests() {
        let f = Faults::new(&[rule("503@first=2")], 1).unwrap();
        let got: Vec<bool> = (0..4).map(|n| f.pick(n, n, 1, None).is_some()).collect();
        assert_eq!(got, [true, true, false, false]);
        let f = Faults::new(&[rule("503@every=3")], 1).unwrap();
        let got: Vec<bool> = (0..6).map(|n| f.pick(n, n, 1, None).is_some()).collect();
        assert_eq!(got, [false, false, true, false, false, true]);
    }

    #[test]
    fn rate_is_deterministic_per_request_and_close_to_the_fraction() {
        let f = Faults::new(&[rule("transient=0.1")], 42).unwrap();
        let g = Faults::new(&[rule("transient=0.1")], 42).unwrap();
        let mut hits = 0;
        for body in 0..20_000u64 {
            let a = f.pick(0, body, 1, None);
            // The arrival number does not matter, only (seed, body, attempt).
            assert_eq!(a, g.pick(999, body, 1, None));
            if let Some(fault) = a {
                hits += 1;
                assert!(TRANSIENT_MIX.contains(&fault));
            }
        }
        assert!((1_700..2_300).contains(&hits), "{hits} of 20000 at 10%");
        // Another seed fails other requests.
        let h = Faults::new(&[rule("transient=0.1")], 43).unwrap();
        assert!((0..200u64).any(|b| f.pick(0, b, 1, None) != h.pick(0, b, 1, None)));
    }

    /// Two `rate` rules draw independently: over many request bodies, the first fails its
    /// share and the second its share of the rest (with one shared draw it would get only the
    /// 5 % between 0.15 and 0.2). The picks depend on (seed, body, attempt) alone.
    #[test]
    fn rate_rules_draw_independently_of_each_other() {
        let rules = [rule("429:1@rate=0.15"), rule("503@rate=0.2")];
        let f = Faults::new(&rules, 5).unwrap();
        let g = Faults::new(&rules, 5).unwrap();
        let n = 40_000u64;
        let (mut too_many, mut unavailable) = (0u64, 0u64);
        for body in 0..n {
            let picked = f.pick(0, body, 1, None);
            assert_eq!(picked, g.pick(7, body, 1, None), "deterministic");
            match picked {
                Some(Fault::TooMany(RetryAfter::Seconds(1))) => too_many += 1,
                Some(Fault::Status(503)) => unavailable += 1,
                None => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // 15 % of 40 000 is 6 000 (σ ≈ 71); 20 % of the other 34 000 is 6 800 (σ ≈ 74).
        assert!(
            (5_700..=6_300).contains(&too_many),
            "429: {too_many} of {n}"
        );
        let rest = n - too_many;
        assert!(
            (rest * 19 / 100..=rest * 21 / 100).contains(&unavailable),
            "503: {unavailable} of the {rest} others"
        );
        // A retry is a new draw: the failed attempts of a body do not all fail again.
        let again = (0..n)
            .filter(|&b| f.pick(0, b, 1, None).is_some() && f.pick(0, b, 2, None).is_some())
            .count() as u64;
        assert!(again < (too_many + unavailable) / 2, "{again} fail twice");
    }

    #[test]
    fn fetch_limit_fires_only_above_its_span() {
        let f = Faults::new(&[rule("fetch-limit:1h")], 0).unwrap();
        assert_eq!(
            f.pick(0, 0, 1, Some(7_200_000)),
            Some(Fault::FetchLimit(3_600_000))
        );
        assert_eq!(f.pick(0, 0, 1, Some(3_600_000)), None);
        assert_eq!(
            query_range_ms(br#"{"start":1000000000000,"end":1000003600000}"#),
            Some(3_600_000)
        );
        assert_eq!(
            query_range_ms(br#"{"start":1000000000,"end":1000003600}"#),
            Some(3_600_000)
        );
        assert_eq!(
            query_range_ms(br#"{"start":999999999999,"end":1000003600000}"#),
            Some(3_600_000),
            "one ms before a second (Warp's range) selects the same seconds"
        );
        assert_eq!(query_range_ms(br#"{"start":"1h-ago"}"#), None);
    }
}
