//! The HTTP side of the simulator: axum routes, authentication, per-dialect error bodies and
//! request counters.
//!
//! Every route is registered with `any()` so that the handlers, not axum, decide what a wrong
//! method gets: each dialect answers it differently (OpenTSDB: JSON 405; Erlenmeyer: text 405
//! with `Allow: POST, DELETE`, or 501 for `GET /api/query`).
//!
//! # Fault injection
//! Every request passes through [`count_requests`], a middleware that sees the request before
//! any handler. When [`SimConfig::faults`](crate::SimConfig::faults) has rules, `/api/query` requests go through
//! [`Faults::apply`](super::faults::Faults) there, which answers with the handler's response or
//! an injected failure (`faults.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;

use super::discovery;
use super::error::ApiError;
use super::faults::Answering;
use super::gzip::GzipRules;
use super::query::{self, Output};
use super::state::Shared;
use vscope_core::dialect::Dialect;

/// Builds the router of one simulator; gzip, when on, wraps everything (faults included), by
/// the rules of the server that answers each API (`gzip.rs`): OpenTSDB's own Netty for the
/// OpenTSDB API in the `opentsdb` dialect, none for Erlenmeyer's (`ovh`: plain answers), the
/// nginx assumed in front of API v6, Warp 10's Jetty for Warp 10's own API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let gzip = shared.gzip;
    // Warp 10's own API, at the root and under the `warpEndpoint` API v6 hands out.
    let warp10 = Router::new()
        .route("/api/v0/fetch", any(super::warp10::fetch))
        .route("/api/v0/find", any(super::warp10::find))
        .route("/warp10/api/v0/fetch", any(super::warp10::fetch))
        .route("/warp10/api/v0/find", any(super::warp10::find))
        .route("/api/v0/exec", any(super::warp10_exec::exec))
        .route("/warp10/api/v0/exec", any(super::warp10_exec::exec));
    let mut opentsdb = Router::new()
        .route("/api/query", any(query))
        .route("/api/search/lookup", any(lookup))
        .route("/api/suggest", any(suggest))
        .route("/api/aggregators", any(aggregators))
        .route("/api/config/filters", any(config_filters));
    if shared.dialect == Dialect::Opentsdb {
        // Erlenmeyer does not implement /api/version: it falls through to the 404.
        opentsdb = opentsdb.route("/api/version", any(version));
    }
    let opentsdb = opentsdb.fallback(not_found);
    let api_v6 = Router::new()
        .route("/1.0", any(api_v6))
        .route("/1.0/{*path}", any(api_v6));
    let finish = |r: Router<Arc<Shared>>, rules: Option<GzipRules>| {
        let r = r
            .layer(middleware::from_fn_with_state(
                Arc::clone(&shared),
                count_requests,
            ))
            .with_state(Arc::clone(&shared));
        match rules {
            Some(rules) if gzip => super::gzip::layer(r, rules),
            _ => r,
        }
    };
    finish(opentsdb, GzipRules::for_opentsdb_api(shared.dialect))
        .merge(finish(api_v6, Some(GzipRules::NGINX)))
        .merge(finish(warp10, Some(GzipRules::JETTY)))
}

/// Counts every request and, when a fault plan is set, runs `/api/query` and Warp 10's
/// `/api/v0/fetch` through it.
async fn count_requests(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    let warp = path.ends_with("/api/v0/fetch");
    match &shared.faults {
        Some(faults) if path == "/api/query" || warp => {
            let answering = Answering {
                warp,
                dialect: shared.dialect,
                errors: shared.errors,
                max_fetch_points: shared.max_fetch_points,
                injected: &shared.counters.faults,
            };
            faults.apply(answering, req, next).await
        }
        _ => next.run(req).await,
    }
}

/// OVHcloud API v6 (`/1.0`, full paths, so that the handler sees the URL exactly as the client
/// signed it).
async fn api_v6(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    super::apiv6::handle(&shared.api, &shared.pcc, &method, &headers, &uri, &body)
}

/// The query string as decoded pairs, in order.
fn pairs(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The result of checking a caller's credentials when a token is configured.
enum Caller {
    /// No token configured, or the right one.
    Allowed,
    /// `ovh` only: a token was sent but it is not the configured one. Erlenmeyer cannot tell;
    /// Warp 10 refuses it when a script runs, so the handlers decide when it shows.
    BadToken(String),
}

/// The password of an `Authorization` header the way Erlenmeyer reads it: split on the first
/// space, base64-decode the rest, keep what follows the first `:`. Empty when absent or
/// malformed.
pub(crate) fn basic_password(headers: &HeaderMap) -> String {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return String::new();
    };
    let Some((_, encoded)) = value.split_once(' ') else {
        return String::new();
    };
    let Some(decoded) = base64_decode(encoded.trim()) else {
        return String::new();
    };
    let decoded = String::from_utf8_lossy(&decoded);
    decoded
        .split_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default()
}

/// Standard base64 with optional padding; `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Checks the caller against the configured token. `ovh`: Basic auth password, else the `p`
/// query parameter; missing → `401 Not authorized` (text). `opentsdb` (which has no auth of its
/// own; the simulator models a proxy in front of it): Basic auth only, missing or wrong → JSON 401.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Caller, ApiError> {
    let Some(expected) = &shared.token else {
        return Ok(Caller::Allowed);
    };
    let mut sent = basic_password(headers);
    if sent.is_empty() && shared.dialect == Dialect::Ovh {
        sent = query
            .iter()
            .find(|(k, _)| k == "p")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
    }
    if sent.is_empty() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Not authorized"));
    }
    if sent == *expected {
        return Ok(Caller::Allowed);
    }
    match shared.dialect {
        Dialect::Ovh => Ok(Caller::BadToken(sent)),
        Dialect::Opentsdb => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Not authorized: invalid token",
        )),
    }
}

fn bad_token(caller: &Caller) -> Option<&str> {
    match caller {
        Caller::Allowed => None,
        Caller::BadToken(t) => Some(t),
    }
}

fn json(dialect: Dialect, status: StatusCode, body: impl Into<Body>) -> Response {
    let ct = match dialect {
        Dialect::Opentsdb => "application/json; charset=UTF-8",
        Dialect::Ovh => "application/json",
    };
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn opentsdb_method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed").with_details(format!(
        "The HTTP method [{method}] is not permitted for this endpoint"
    ))
}

async fn query(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    shared.counters.queries.fetch_add(1, Ordering::Relaxed);
    let dialect = shared.dialect;
    let q = pairs(raw);
    let caller = match authenticate(&shared, &headers, &q) {
        Ok(c) => c,
        Err(e) => return e.into_response(dialect),
    };
    let now = now_ms();
    let plan = match (dialect, &method) {
        (_, &Method::POST) => query::plan_post(&shared, &body, &q, bad_token(&caller), now),
        (Dialect::Opentsdb, &Method::GET) => query::plan_get(&shared, &q, now),
        (Dialect::Opentsdb, &Method::DELETE) => {
            Err(ApiError::bad_request("Deleting data is not enabled"))
        }
        (Dialect::Opentsdb, m) => Err(opentsdb_method_not_allowed(m)),
        (Dialect::Ovh, &Method::GET) => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Please use the POST version of queries",
        )),
        (Dialect::Ovh, &Method::DELETE) => Err(ApiError::bad_request(
            "Deleting data is not enabled in the simulator",
        )),
        (Dialect::Ovh, m) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method '{m}' is not allowed"),
        )
        .with_allow("POST, DELETE")),
    };
    match plan {
        Ok(plan) => {
            let chunks = Output::new(Arc::clone(&shared), plan);
            json(
                dialect,
                StatusCode::OK,
                Body::from_stream(futures::stream::iter(chunks)),
            )
        }
        Err(e) => e.into_response(dialect),
    }
}

async fn lookup(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let dialect = shared.dialect;
    let q = pairs(raw);
    let caller = match authenticate(&shared, &headers, &q) {
        Ok(c) => c,
        Err(e) => return e.into_response(dialect),
    };
    let result = if method == Method::GET || method == Method::POST {
        discovery::lookup(
            &shared,
            method == Method::GET,
            &q,
            &body,
            bad_token(&caller),
            started,
        )
    } else if dialect == Dialect::Ovh {
        Err(ApiError::bad_request(format!(
            "Unsupported HTTP method: {method}"
        )))
    } else {
        Err(opentsdb_method_not_allowed(&method))
    };
    match result {
        Ok(body) => json(dialect, StatusCode::OK, body),
        Err(e) => e.into_response(dialect),
    }
}

async fn suggest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let dialect = shared.dialect;
    let q = pairs(raw);
    let caller = match authenticate(&shared, &headers, &q) {
        Ok(c) => c,
        Err(e) => return e.into_response(dialect),
    };
    let result = if dialect == Dialect::Opentsdb && method != Method::GET && method != Method::POST
    {
        Err(opentsdb_method_not_allowed(&method))
    } else {
        discovery::suggest(
            &shared,
            method == Method::GET,
            &q,
            &body,
            bad_token(&caller),
        )
    };
    match result {
        Ok(body) => json(dialect, StatusCode::OK, body),
        Err(e) => e.into_response(dialect),
    }
}

async fn aggregators(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    // Erlenmeyer only checks that a token is present: no Warp 10 call validates it here.
    fixed_answer(&shared, &headers, raw, discovery::aggregators)
}

async fn config_filters(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    fixed_answer(&shared, &headers, raw, discovery::config_filters)
}

/// A listing that depends only on the dialect, behind the same token check as every route.
fn fixed_answer(
    shared: &Shared,
    headers: &HeaderMap,
    raw: Option<String>,
    listing: fn(Dialect) -> String,
) -> Response {
    if let Err(e) = authenticate(shared, headers, &pairs(raw)) {
        return e.into_response(shared.dialect);
    }
    json(shared.dialect, StatusCode::OK, listing(shared.dialect))
}

async fn version(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = pairs(raw);
    if let Err(e) = authenticate(&shared, &headers, &q) {
        return e.into_response(shared.dialect);
    }
    if method != Method::GET && method != Method::POST {
        return opentsdb_method_not_allowed(&method).into_response(shared.dialect);
    }
    json(shared.dialect, StatusCode::OK, discovery::version())
}

/// Unknown paths: OpenTSDB's JSON 404, or the 404 of Erlenmeyer's router (echo), which is JSON
/// too (`{"message":"Not Found"}`).
async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    match shared.dialect {
        Dialect::Opentsdb => ApiError::new(StatusCode::NOT_FOUND, "Endpoint not found")
            .with_details("The requested endpoint was not found")
            .into_response(Dialect::Opentsdb),
        Dialect::Ovh => ApiError::raw(
            StatusCode::NOT_FOUND,
            "application/json; charset=UTF-8",
            "{\"message\":\"Not Found\"}\n",
        )
        .into_response(Dialect::Ovh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_password_is_read_like_erlenmeyer() {
        let mut h = HeaderMap::new();
        // "read:s3cr:et" → the password keeps everything after the first ':'.
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic cmVhZDpzM2NyOmV0"),
        );
        assert_eq!(basic_password(&h), "s3cr:et");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert_eq!(basic_password(&h), "");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(basic_password(&h), "");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
    }
}
