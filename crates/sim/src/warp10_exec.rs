//! Warp 10's `/api/v0/exec` for one script: a raw `FETCH` of one selection, the alternative to
//! `/api/v0/fetch` that `benches/e2e.sh` measures against it (vscope-etl reads through
//! `/api/v0/fetch`; `src/extract/warp10.rs` says why).
//!
//! The script the simulator runs, and nothing else (any other is refused with a 400 that says
//! so, never answered as if run):
//!
//! ```text
//! '<token>' AUTHENTICATE <N> LIMIT
//! [ '<token>' '<class>' { '<label>' '<value or ~regex>' ... } <end µs> <timespan µs> ] FETCH
//! ```
//!
//! What Warp 10 2.9.0 does with it, as served here:
//! - `FETCH` with the list form `[ token class labels end timespan ]` keeps
//!   `end - timespan < ts <= end` (`FETCH.computeTimeRange`, as `/api/v0/fetch`).
//! - The fetch limit: `WarpScriptStack.DEFAULT_FETCH_LIMIT` (100 000 datapoints) unless the
//!   script raises it with `AUTHENTICATE` and `LIMIT` (Erlenmeyer's `20000000 LIMIT`), up to
//!   the server's hard limit, here [`SimConfig::max_fetch_points`](crate::SimConfig). Over it,
//!   `FETCH exceeded limit of N datapoints, current count is M` (`FETCH.java`).
//! - Nothing is sent before the script ends: `EgressExecHandler` runs the whole script, then
//!   writes the stack with `StackUtils.toJSON`: `[[{"c":class,"l":{labels},"a":{},"la":0,
//!   "v":[[ts,value],...]},...]]` (the stack's only level holds the list `FETCH` pushed).
//! - An error is a 500 with `X-Warp10-Error-Line` and `X-Warp10-Error-Message` (the message
//!   of the exception chain, `warp.rs`); a bad token fails `AUTHENTICATE` (`Invalid token.`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::format::{push_java_double, push_str};
use super::state::Shared;
use super::warp10::Selector;

/// `WarpScriptStack.DEFAULT_FETCH_LIMIT`: what a script may fetch without `LIMIT`.
const DEFAULT_FETCH_LIMIT: u64 = 100_000;

/// A 500 as `EgressExecHandler` answers a failed script: the message in
/// `X-Warp10-Error-Message`, the line in `X-Warp10-Error-Line`, and as the body.
fn script_error(line: usize, message: &str) -> Response {
    let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, message.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert("X-Warp10-Error-Line", HeaderValue::from(line));
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("X-Warp10-Error-Message", v);
    }
    resp
}

/// The words of a script: `'quoted strings'` (without their quotes, `%27`-style escapes
/// decoded) and bare words, one vector per line (for the error line).
fn words(script: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    for (n, line) in script.lines().enumerate() {
        let mut rest = line.trim_start();
        while !rest.is_empty() {
            if let Some(body) = rest.strip_prefix('\'') {
                let end = body.find('\'').unwrap_or(body.len());
                out.push((n + 1, body[..end].to_string(), true));
                rest = body.get(end + 1..).unwrap_or("").trim_start();
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push((n + 1, rest[..end].to_string(), false));
                rest = rest[end..].trim_start();
            }
        }
    }
    out
}

/// What the one supported script asks for.
struct Script {
    auth_token: Option<String>,
    limit: Option<u64>,
    token: String,
    class: String,
    labels: Vec<(String, String)>,
    end_us: i64,
    span_us: i64,
    fetch_line: usize,
}

fn parse(script: &str) -> Result<Script, String> {
    let w = words(script);
    let word = |i: usize| w.get(i).map(|(_, s, q)| (s.as_str(), *q));
    let mut i = 0;
    let (mut auth_token, mut limit) = (None, None);
    if let (Some((t, true)), Some(("AUTHENTICATE", false))) = (word(0), word(1)) {
        auth_token = Some(t.to_string());
        i = 2;
        if let (Some((n, false)), Some(("LIMIT", false))) = (word(2), word(3)) {
            limit = Some(n.parse::<u64>().map_err(|_| format!("bad LIMIT '{n}'"))?);
            i = 4;
        }
    }
    let shape = "the simulator runs only ['<token>' AUTHENTICATE <N> LIMIT] \
                 [ '<token>' '<class>' { '<label>' '<value>' ... } <end> <timespan> ] FETCH";
    let expect = |i: usize, what: &str| -> Result<(), String> {
        match word(i) {
            Some((s, false)) if s == what => Ok(()),
            _ => Err(shape.to_string()),
        }
    };
    expect(i, "[")?;
    let (Some((token, true)), Some((class, true))) = (word(i + 1), word(i + 2)) else {
        return Err(shape.to_string());
    };
    expect(i + 3, "{")?;
    let mut j = i + 4;
    let mut labels = Vec::new();
    while let (Some((k, true)), Some((v, true))) = (word(j), word(j + 1)) {
        labels.push((k.to_string(), v.to_string()));
        j += 2;
    }
    expect(j, "}")?;
    let num = |i: usize| match word(i) {
        Some((n, false)) => n.parse::<i64>().ok(),
        _ => None,
    };
    let (Some(end_us), Some(span_us)) = (num(j + 1), num(j + 2)) else {
        return Err(shape.to_string());
    };
    expect(j + 3, "]")?;
    expect(j + 4, "FETCH")?;
    if w.len() != j + 5 {
        return Err(shape.to_string());
    }
    Ok(Script {
        auth_token,
        limit,
        token: token.to_string(),
        class: class.to_string(),
        labels,
        end_us,
        span_us,
        fetch_line: w[j + 4].0,
    })
}

/// `POST /api/v0/exec`: runs the one supported script (module docs).
pub(crate) async fn exec(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let script = String::from_utf8_lossy(&body);
    let s = match parse(&script) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let known = |t: &str| shared.token.as_deref().is_none_or(|k| k == t);
    if s.auth_token.as_deref().is_some_and(|t| !known(t)) {
        return script_error(
            1,
            "Exception at '=>AUTHENTICATE<=' in section [TOP] (AUTHENTICATE given an invalid \
             read token. (Invalid token.))",
        );
    }
    if !known(&s.token) {
        return script_error(
            s.fetch_line,
            "Exception at '=>FETCH<=' in section [TOP] (FETCH given an invalid token. (Invalid token.))",
        );
    }
    let limit = match (s.auth_token.is_some(), s.limit) {
        (true, Some(n)) => n.min(shared.max_fetch_points),
        _ => DEFAULT_FETCH_LIMIT.min(shared.max_fetch_points),
    };
    // The labels as a fetch selector: the values as they are (`~` kept), escaped for it.
    let mut sel = String::new();
    encode(&mut sel, &s.class);
    sel.push('{');
    for (n, (k, v)) in s.labels.iter().enumerate() {
        if n > 0 {
            sel.push(',');
        }
        encode(&mut sel, k);
        match v.strip_prefix('~') {
            Some(re) => {
                sel.push('~');
                encode(&mut sel, re);
            }
            None => {
                sel.push('=');
                encode(&mut sel, v);
            }
        }
    }
    sel.push('}');
    let selector = match Selector::parse(&sel) {
        Ok(sel) => sel,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let first_us = s.end_us.saturating_sub(s.span_us).saturating_add(1);
    let first_ms = first_us.div_euclid(1000) + i64::from(first_us.rem_euclid(1000) != 0);
    let last_ms = s.end_us.div_euclid(1000);
    let pcc = &shared.pcc;
    let mut out = String::from("[[");
    let mut fetched = 0u64;
    let mut points = Vec::new();
    for (n, index) in selector.matching(&shared).into_iter().enumerate() {
        points.clear();
        if first_ms <= last_ms {
            pcc.points_into(index, first_ms, last_ms, &mut points);
        }
        fetched += points.len() as u64;
        if fetched > limit {
            return script_error(
                s.fetch_line,
                &format!(
                    "Exception at '=>FETCH<=' in section [TOP] (FETCH exceeded limit of {limit} \
                     datapoints, current count is {fetched})"
                ),
            );
        }
        if n > 0 {
            out.push(',');
        }
        let series = &pcc.series()[index];
        out.push_str("{\"c\":");
        push_str(&mut out, &series.metric);
        out.push_str(",\"l\":{");
        for (m, (k, v)) in series.tags.iter().enumerate() {
            if m > 0 {
                out.push(',');
            }
            push_str(&mut out, k);
            out.push(':');
            push_str(&mut out, v);
        }
        out.push_str("},\"a\":{},\"la\":0,\"v\":[");
        let integer = pcc.is_integer(index);
        // Newest first, as the store reads them.
        for (m, &(ts, v)) in points.iter().rev().enumerate() {
            if m > 0 {
                out.push(',');
            }
            let _ = write!(out, "[{}", ts * 1000);
            out.push(',');
            if integer {
                let _ = write!(out, "{}", v as i64);
            } else {
                push_java_double(&mut out, v);
            }
            out.push(']');
        }
        out.push_str("]}");
        shared.counters.series.fetch_add(1, Ordering::Relaxed);
    }
    shared.counters.points.fetch_add(fetched, Ordering::Relaxed);
    out.push_str("]]");
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

/// Percent-encodes everything but ASCII letters, digits and `.-_`.
fn encode(out: &mut String, s: &str) {
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_') {
            out.push(c as char);
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_one_fetch_script_is_run() {
        let s = parse(
            "'tok' AUTHENTICATE 20000000 LIMIT\n\
             [ 'tok' 'vscope.vm.cpu' { 'datacenter' 'dc1' 'vm' '~vm-0.*' } 1000000 500000 ] FETCH\n",
        )
        .unwrap();
        assert_eq!(s.limit, Some(20_000_000));
        assert_eq!(s.class, "vscope.vm.cpu");
        assert_eq!(s.labels.len(), 2);
        assert_eq!((s.end_us, s.span_us, s.fetch_line), (1_000_000, 500_000, 2));
        assert!(parse("[ 'tok' 'c' { } 1 1 ] FETCH").is_ok());
        assert!(parse("[ 'tok' 'c' { } 1 1 ] FETCH DUP").is_err());
        assert!(parse("'x' 'y' ==").is_err());
        assert!(parse("[ 'tok' 'c' { 'k' } 1 1 ] FETCH").is_err());
    }
}
